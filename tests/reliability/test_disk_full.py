"""A disk that fills up during ``harvest local``: an injected ``ENOSPC`` (``inject/sitecustomize.py``)
after a share of the bytes the complete build writes. The run stops with a clear message, leaves
no half-written shard, and once "space is freed" the same command finishes the build with the
very rows of a run that never failed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.reliability.builds import build_rows, duplicate_keys, leftover_temporary_files, run_cli
from tests.reliability.corpus import write_copies

SHARES = (0.4, 0.8)
"""Where the disk fills, as a share of the bytes a complete build writes."""


def harvest_args(box: Path, build: str) -> tuple[str, ...]:
    return (
        "harvest",
        "local",
        str(box / "in"),
        "--out",
        str(box / build),
        "--workers",
        "1",
        "--batch-size",
        "3",
    )


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    box = tmp_path_factory.mktemp("disk-full")
    write_copies(box / "in", 1)
    done = run_cli(*harvest_args(box, "reference"), cwd=box)
    assert done.returncode == 0, done.stderr
    return box


def build_bytes(build: Path) -> int:
    return sum(p.stat().st_size for p in build.rglob("*.parquet"))


@pytest.fixture(scope="module", params=SHARES, ids=lambda share: f"full-at-{share:.0%}")
def filled(request: pytest.FixtureRequest, box: Path) -> tuple[Path, str, str]:
    """(build, stderr of the run that hit the full disk, stdout of the resumed run)."""
    name = f"full-{request.param}"
    limit = int(build_bytes(box / "reference") * request.param)
    failed = run_cli(*harvest_args(box, name), cwd=box, PMCURATE_INJECT_ENOSPC_AFTER=str(limit))
    assert failed.returncode == 1, failed.stderr
    assert leftover_temporary_files(box / name) == []
    resumed = run_cli(*harvest_args(box, name), cwd=box)
    assert resumed.returncode == 0, resumed.stderr
    return box / name, failed.stderr, resumed.stdout + resumed.stderr


def test_full_disk_stops_the_run_with_a_clear_message(filled: tuple[Path, str, str]) -> None:
    _, stderr, _ = filled
    assert "pmcurate: error: disk full" in stderr
    assert "No space left on device" in stderr
    assert "Traceback" not in stderr


def test_resumed_run_gives_the_rows_of_a_run_that_never_failed(
    filled: tuple[Path, str, str], box: Path
) -> None:
    build, _, _ = filled
    assert build_rows(build) == build_rows(box / "reference")
    assert set(duplicate_keys(build).values()) == {0}


def test_resumed_run_keeps_the_shards_finished_before_the_disk_filled(filled: tuple[Path, str, str]) -> None:
    _, _, output = filled
    skipped = re.search(r"\((\d+) of (\d+) tasks skipped without reading\)", output)
    assert skipped is not None, output
    assert 0 < int(skipped[1]) < int(skipped[2])
