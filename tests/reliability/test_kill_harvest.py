"""Kill ``harvest local`` anywhere (SIGKILL of the whole process group), resume, compare.

Three chains of kills on three builds, each run resuming what the killed ones left:

- *mid-write* (one worker): the process is killed in the middle of writing the K-th file it opens
  (``inject/sitecustomize.py``), K cycling through the positions of a shard's files (paragraphs,
  figures, tables, and the articles file that marks the shard complete) and reaching the final
  rewrite that removes duplicate articles;
- *timed* (one worker): killed after delays spread over an uninterrupted run's length, from the
  interpreter's start-up to the end;
- *pool* (two worker processes): killed from inside a worker in the middle of its write; the whole
  process group dies, the other worker included.

Then each build must hold exactly the rows of an uninterrupted run, with no duplicate key and
nothing a reader trips on. ``RELIABILITY_KILLS`` (default 20) is the least number of kills; raise
it for a longer run (the chains then use a larger corpus). ``RELIABILITY_REPORT=FILE`` appends
where each kill landed to FILE (JSON lines).

The corpus: copies of the real fixtures with new ids, plus a later folder repeating the first
copy's articles, so the run ends by rewriting the shards that lost those duplicates.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from pmcurate import schema
from tests.reliability.builds import build_rows, cli_command, cli_env, duplicate_keys
from tests.reliability.corpus import write_copies
from tests.reliability.killer import ChainReport, KillPoint, kill_chain

KILLS = int(os.environ.get("RELIABILITY_KILLS", "20"))
COPIES = 2 if KILLS <= 20 else KILLS // 4
"""Copies of the fixtures: the mid-write chain kills about once per shard of 3 files."""
FILE_POINTS = (5, 8, 6, 4, 7, 9, 3, 10)
"""Files at which the mid-write chain kills (cycled): every position within a shard of 4 files."""
POOL_FILE_POINTS = (6, 11)
TIMED_SHARES = (0.05, 0.25, 0.15, 0.35, 0.1, 0.3, 0.2, 0.4)
"""Timed kill points past the first finished shard, as shares of the rest of the uninterrupted run."""


def harvest(box: Path, build: str, workers: int) -> list[str]:
    return cli_command(
        "harvest",
        "local",
        str(box / "in"),
        "--out",
        str(box / build),
        "--workers",
        str(workers),
        "--batch-size",
        "3",
    )


def describe(build: Path) -> str:
    done = {p.stem for p in schema.shard_paths(build, "articles")}
    started = {p.stem for t in ("paragraphs", "figures", "tables") for p in schema.shard_paths(build, t)}
    return f"{len(done)} shards complete, {len(started - done)} unfinished shards visible"


def timed_points(first_shard: float, total: float) -> list[KillPoint]:
    """Two kills before any shard is written, then kills spread over the shard writing and the end.

    Each run of the chain starts over (interpreter, workers), then skips the finished shards: a
    delay measured on the uninterrupted run lands further into the remaining work."""
    work = total - first_shard
    early = [KillPoint(delay=first_shard * 0.3), KillPoint(delay=first_shard * 0.8)]
    return early + [KillPoint(delay=first_shard + work * share) for share in TIMED_SHARES]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    box = tmp_path_factory.mktemp("kill-harvest")
    write_copies(box / "in", COPIES)
    shutil.copytree(box / "in" / "copy000", box / "in" / "zz-repeats")
    return box


@pytest.fixture(scope="module")
def reference(box: Path) -> tuple[float, float]:
    """The uninterrupted run (one worker): (seconds to its first finished shard, seconds in all)."""
    started = time.time()
    kill_chain(harvest(box, "reference", 1), box, cli_env(), [], box / "reference", describe)
    first = min(p.stat().st_mtime for p in schema.shard_paths(box / "reference", "articles"))
    return first - started, time.time() - started


@pytest.fixture(scope="module")
def mid_write(box: Path) -> ChainReport:
    points = [KillPoint(file=FILE_POINTS[i % len(FILE_POINTS)]) for i in range(400)]
    return kill_chain(harvest(box, "mid-write", 1), box, cli_env(), points, box / "mid-write", describe)


@pytest.fixture(scope="module")
def timed(box: Path, reference: tuple[float, float]) -> ChainReport:
    points = timed_points(*reference)
    return kill_chain(harvest(box, "timed", 1), box, cli_env(), points, box / "timed", describe)


@pytest.fixture(scope="module")
def pool(box: Path) -> ChainReport:
    """Two worker processes: the kill comes from inside a worker, in the middle of its write."""
    points = [KillPoint(file=k) for k in POOL_FILE_POINTS]
    return kill_chain(harvest(box, "pool", 2), box, cli_env(), points, box / "pool", describe)


CHAINS = ("mid-write", "timed", "pool")


def test_chains_kill_at_least_as_often_as_asked(
    mid_write: ChainReport, timed: ChainReport, pool: ChainReport
) -> None:
    assert mid_write.kills + timed.kills + pool.kills >= KILLS, (mid_write.landed, timed.landed, pool.landed)


@pytest.mark.parametrize("chain", ["mid-write", "pool"])
def test_every_kill_in_a_write_leaves_a_partial_temporary_file(
    chain: str, request: pytest.FixtureRequest
) -> None:
    report = request.getfixturevalue(chain.replace("-", "_"))
    assert report.kills > 0 and report.killed_mid_write == report.kills


def test_timed_kills_land_before_during_and_after_shard_writing(timed: ChainReport) -> None:
    complete = [int(landed.split(": ")[1].split()[0]) for landed in timed.landed]
    assert complete[0] == 0 and max(complete) > 0 and len(set(complete)) > 2, timed.landed


@pytest.mark.parametrize("chain", CHAINS)
def test_readers_never_see_a_temporary_file_or_a_corrupt_shard(
    chain: str, request: pytest.FixtureRequest
) -> None:
    assert request.getfixturevalue(chain.replace("-", "_")).problems == []


@pytest.mark.parametrize("chain", CHAINS)
def test_resumed_build_has_the_rows_of_the_uninterrupted_one(
    chain: str, box: Path, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(chain.replace("-", "_"))
    assert build_rows(box / chain) == build_rows(box / "reference")


@pytest.mark.parametrize("chain", CHAINS)
def test_resumed_build_has_no_duplicate_key(chain: str, box: Path, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(chain.replace("-", "_"))
    assert set(duplicate_keys(box / chain).values()) == {0}


@pytest.mark.parametrize("chain", CHAINS)
def test_resumed_build_has_no_unfinished_shard_left(
    chain: str, box: Path, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(chain.replace("-", "_"))
    assert describe(box / chain).endswith(" 0 unfinished shards visible")


@pytest.mark.parametrize("chain", CHAINS)
def test_temporary_files_of_killed_writes_are_swept_by_the_next_run(
    chain: str, request: pytest.FixtureRequest
) -> None:
    assert request.getfixturevalue(chain.replace("-", "_")).orphan_temporary_files == []
