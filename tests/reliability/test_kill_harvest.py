"""Kill ``harvest local`` anywhere (SIGKILL of the whole process group), resume, compare.

Three chains of kills on three builds, each run resuming what the killed ones left:

- *mid-write* (one worker): the process is killed in the middle of writing the K-th file it opens
  (``inject/sitecustomize.py``), K cycling through the positions of a shard's files (paragraphs,
  figures, tables, and the articles file that marks the shard complete) and reaching the final
  rewrite that removes duplicate articles;
- *calls* (one worker): killed at chosen calls spread over the run, from its start (finding the
  input, sweeping an earlier run's leftovers) through the parsing of chosen documents to the final
  rewrite;
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
LOCAL = "pmcurate.harvest.local"
STORE = "pmcurate.harvest.store"
CALL_POINTS = (
    KillPoint(call="pmcurate.harvest.archive:discover_inputs"),
    KillPoint(call=f"{STORE}:remove_unfinished"),
    KillPoint(call=f"{LOCAL}:_parse_into", nth=2),
    KillPoint(call=f"{LOCAL}:_parse_into", nth=5),
    KillPoint(call=f"{STORE}:write_quarantine", nth=2),
    KillPoint(call=f"{LOCAL}:_parse_into", nth=8),
    KillPoint(call=f"{LOCAL}:_parse_into", nth=3),
    KillPoint(call=f"{LOCAL}:_parse_into", nth=7),
    KillPoint(call=f"{LOCAL}:LocalSource.settle"),
)
"""Kills at calls: before any shard is written (finding the input, sweeping what a killed run left),
then while documents are parsed (a resumed run parses only the shards still to write: the N-th
parse is N documents into the remaining work), between a shard's parsing and its writes, and
once every shard is written, before the rewrite that removes duplicate articles."""


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


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    box = tmp_path_factory.mktemp("kill-harvest")
    write_copies(box / "in", COPIES)
    shutil.copytree(box / "in" / "copy000", box / "in" / "zz-repeats")
    return box


@pytest.fixture(scope="module")
def reference(box: Path) -> Path:
    """The uninterrupted run (one worker)."""
    kill_chain(harvest(box, "reference", 1), box, cli_env(), [], box / "reference", describe)
    return box / "reference"


@pytest.fixture(scope="module")
def mid_write(box: Path) -> ChainReport:
    points = [KillPoint(file=FILE_POINTS[i % len(FILE_POINTS)]) for i in range(400)]
    return kill_chain(harvest(box, "mid-write", 1), box, cli_env(), points, box / "mid-write", describe)


@pytest.fixture(scope="module")
def calls(box: Path) -> ChainReport:
    return kill_chain(harvest(box, "calls", 1), box, cli_env(), CALL_POINTS, box / "calls", describe)


@pytest.fixture(scope="module")
def pool(box: Path) -> ChainReport:
    """Two worker processes: the kill comes from inside a worker, in the middle of its write."""
    points = [KillPoint(file=k) for k in POOL_FILE_POINTS]
    return kill_chain(harvest(box, "pool", 2), box, cli_env(), points, box / "pool", describe)


CHAINS = ("mid-write", "calls", "pool")


def test_chains_kill_at_least_as_often_as_asked(
    mid_write: ChainReport, calls: ChainReport, pool: ChainReport
) -> None:
    assert mid_write.kills + calls.kills + pool.kills >= KILLS, (mid_write.landed, calls.landed, pool.landed)


@pytest.mark.parametrize("chain", ["mid-write", "pool"])
def test_every_kill_in_a_write_leaves_a_partial_temporary_file(
    chain: str, request: pytest.FixtureRequest
) -> None:
    report = request.getfixturevalue(chain.replace("-", "_"))
    assert report.kills > 0 and report.killed_mid_write == report.kills


def test_call_kills_land_before_during_and_after_shard_writing(calls: ChainReport, reference: Path) -> None:
    complete = [int(landed.split(": ")[1].split()[0]) for landed in calls.landed]
    shards = len(schema.shard_paths(reference, "articles"))
    assert calls.kills == len(CALL_POINTS), calls.landed
    assert complete[:2] == [0, 0], calls.landed  # before any shard is written
    assert any(0 < c < shards for c in complete[2:-1]), calls.landed  # while they are written
    assert complete[-1] == shards, calls.landed  # every shard written, before the rewrite


@pytest.mark.parametrize("chain", CHAINS)
def test_readers_never_see_a_temporary_file_or_a_corrupt_shard(
    chain: str, request: pytest.FixtureRequest
) -> None:
    assert request.getfixturevalue(chain.replace("-", "_")).problems == []


@pytest.mark.parametrize("chain", CHAINS)
def test_resumed_build_has_the_rows_of_the_uninterrupted_one(
    chain: str, box: Path, reference: Path, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(chain.replace("-", "_"))
    assert build_rows(box / chain) == build_rows(reference)


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
