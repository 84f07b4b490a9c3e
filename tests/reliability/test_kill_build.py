"""Kill ``pmcurate build`` (the demo manifest) anywhere, resume, compare with an uninterrupted build.

The manifest is ``manifests/demo.toml`` with a lighter student (no pretraining, no
hyper-parameter search, dim 10) so that one build takes seconds: harvest → train → apply →
filter → export. The chain kills it in the middle of shard writes of any stage (the K-th file a
run writes, ``inject/sitecustomize.py``) and inside the training (its first call of ``fit``); each
run resumes the build the killed ones left. ``RELIABILITY_BUILD_KILLS`` sets the number of kill
points (default 6). The final build must hold the rows of the uninterrupted one in every table,
subset and export shard, the export's data files byte for byte, and nothing a reader trips on. A
second, harvest-only build over input that repeats its articles is killed while the harvest step
removes duplicates.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import own_cache
from tests.reliability.builds import VOLATILE, cli_command, cli_env
from tests.reliability.corpus import write_copies
from tests.reliability.killer import ChainReport, KillPoint, kill_chain

DEMO = Path(__file__).parents[2] / "manifests" / "demo.toml"
KILLS = int(os.environ.get("RELIABILITY_BUILD_KILLS", "6"))
TRAINING = "pmcurate.annotate.student:_fit_one"
POINTS = (
    KillPoint(file=2),
    KillPoint(call=TRAINING),
    KillPoint(file=1),
    KillPoint(file=2),
    KillPoint(file=3),
)
"""A kill in the harvest's shard write, one inside the training (its first model fit), then in the
writes of the later stages (apply, filter: each resumed run skips the finished steps, so its first
files are theirs). Every point is a point of the work, never a time: the chain lands the same way on
an idle machine and on a busy one."""


def light_manifest(folder: Path) -> Path:
    text = DEMO.read_text()
    text = re.sub(
        r"\[student\][^\[]*", "[student]\ndim = 10\npretrain = false\nsearch = false\nseed = 0\n\n", text
    )
    path = folder / "demo-light.toml"
    path.write_text(text)
    return path


def stages_done(build: Path) -> str:
    marks = {
        "harvest": "tables/articles/*.parquet",
        "train": "models/students.json",
        "apply": "tables/labels/*.parquet",
        "filter": "subsets/educational/*.parquet",
        "export": "dataset/data/*.parquet",
    }
    done = [stage for stage, pattern in marks.items() if any(build.glob(pattern))]
    return "done: " + (", ".join(done) or "nothing")


def parquet_rows(build: Path) -> dict[str, list[tuple[str, ...]]]:
    """Every Parquet file's rows (volatile columns left out), grouped by folder and sorted."""
    found: dict[str, list[tuple[str, ...]]] = {}
    for path in sorted(build.rglob("*.parquet")):
        table = pq.read_table(path)
        table = table.drop_columns([c for c in table.column_names if c in VOLATILE])
        rows = found.setdefault(str(path.parent.relative_to(build)), [])
        rows += [tuple(repr(v) for v in row.values()) for row in table.to_pylist()]
    return {folder: sorted(rows) for folder, rows in found.items()}


def points(kills: int) -> list[KillPoint]:
    extra = [KillPoint(file=1 + i % 3) for i in range(max(0, kills - len(POINTS)))]
    return [*POINTS, *extra][:kills]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    box = tmp_path_factory.mktemp("kill-build")
    manifest = light_manifest(box)
    kill_chain(
        cli_command("build", str(manifest), "--out", str(box / "reference")),
        box,
        cli_env(),
        [],
        box / "reference",
        stages_done,
    )
    return box


@pytest.fixture(scope="module")
def chain(box: Path, session_cache: Path) -> ChainReport:
    """The killed builds, with a cache of their own: the reference's students are not theirs to reuse
    (the chain kills one inside the training)."""
    command = cli_command("build", str(box / "demo-light.toml"), "--out", str(box / "killed"))
    env = cli_env(PMCURATE_CACHE=str(own_cache(box / "cache", session_cache)))
    return kill_chain(command, box, env, points(KILLS), box / "killed", stages_done)


def test_kills_land_in_several_stages(chain: ChainReport) -> None:
    assert chain.kills >= min(KILLS, len(POINTS)) - 1, chain.landed
    assert len({landed.split(": ", 1)[1] for landed in chain.landed}) >= 3, chain.landed


def test_readers_never_see_a_temporary_file_or_a_corrupt_shard(chain: ChainReport) -> None:
    assert chain.problems == []


def test_resumed_build_has_the_rows_of_the_uninterrupted_one(chain: ChainReport, box: Path) -> None:
    killed, reference = parquet_rows(box / "killed"), parquet_rows(box / "reference")
    differ = {
        f: (len(killed.get(f, [])), len(reference.get(f, [])))
        for f in {*killed, *reference}
        if killed.get(f) != reference.get(f)
    }
    assert differ == {}, (differ, chain.landed)


def test_resumed_build_exports_the_same_bytes(chain: ChainReport, box: Path) -> None:
    def data(build: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted((build / "dataset" / "data").glob("*.parquet"))}

    assert data(box / "killed") == data(box / "reference") != {}


DEDUP_MANIFEST = """name = "dedup"
[[sources]]
kind = "local"
paths = ["in"]
batch_size = 3
"""


@pytest.fixture(scope="module")
def dedup_box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A harvest-only build whose input repeats its articles: the harvest step ends by rewriting the
    shards that lost the duplicates."""
    box = tmp_path_factory.mktemp("kill-build-dedup")
    write_copies(box / "in", 1)
    shutil.copytree(box / "in" / "copy000", box / "in" / "zz-repeats")
    (box / "dedup.toml").write_text(DEDUP_MANIFEST)
    return box


def harvest_step(box: Path, build: str) -> list[str]:
    return cli_command(
        "build", str(box / "dedup.toml"), "--out", str(box / build), "--until", "harvest", "--workers", "1"
    )


@pytest.fixture(scope="module")
def dedup_chain(dedup_box: Path) -> ChainReport:
    kill_chain(
        harvest_step(dedup_box, "reference"), dedup_box, cli_env(), [], dedup_box / "reference", stages_done
    )
    shard_files = len(list((dedup_box / "reference" / "tables").rglob("*.parquet")))
    # the first run dies in its second rewrite; the next ones have no shard left to write
    points = [KillPoint(file=shard_files + 2), KillPoint(file=3), KillPoint(file=6)]
    return kill_chain(
        harvest_step(dedup_box, "killed"), dedup_box, cli_env(), points, dedup_box / "killed", stages_done
    )


def test_build_killed_while_removing_duplicates_finishes_removing_them(
    dedup_chain: ChainReport, dedup_box: Path
) -> None:
    # regression: the resumed build skipped the removal when no harvest task was left to run
    assert dedup_chain.kills == 3
    assert parquet_rows(dedup_box / "killed") == parquet_rows(dedup_box / "reference")


def test_temporary_files_of_killed_writes_are_swept_by_the_next_run(chain: ChainReport) -> None:
    assert chain.orphan_temporary_files == []
