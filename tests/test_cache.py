from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pmcurate import cache
from pmcurate.cache import staged


def test_a_staged_entry_appears_whole_when_its_block_ends(tmp_path: Path) -> None:
    entry = tmp_path / "kind" / "key"
    with staged(entry) as staging:
        (staging / "a").write_text("a")
        assert not entry.exists()
    assert [path.name for path in entry.iterdir()] == ["a"]
    assert list(entry.parent.iterdir()) == [entry]


def test_a_staged_entry_replaces_the_one_there(tmp_path: Path) -> None:
    entry = tmp_path / "key"
    entry.mkdir()
    (entry / "old").write_text("old")
    with staged(entry) as staging:
        (staging / "new").write_text("new")
    assert [path.name for path in entry.iterdir()] == ["new"]


def test_an_error_while_staging_leaves_neither_entry_nor_staging(tmp_path: Path) -> None:
    entry = tmp_path / "key"
    with pytest.raises(RuntimeError), staged(entry) as staging:
        (staging / "a").write_text("a")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_staging_removes_the_staging_folders_a_killed_process_left(tmp_path: Path) -> None:
    entry = tmp_path / "students" / "key"
    left = tmp_path / "students" / ".key.abc123"
    left.mkdir(parents=True)
    (left / "model.bin").write_bytes(b"half")
    stale = time.time() - cache.STALE_STAGING_SECONDS - 60
    os.utime(left, (stale, stale))
    with cache.staged(entry) as staging:
        (staging / "model.bin").write_bytes(b"whole")
    assert not left.exists()
    assert (entry / "model.bin").read_bytes() == b"whole"


def test_staging_leaves_a_folder_another_process_is_filling(tmp_path: Path) -> None:
    entry = tmp_path / "students" / "key"
    filling = tmp_path / "students" / ".key.def456"
    filling.mkdir(parents=True)
    with cache.staged(entry) as staging:
        (staging / "model.bin").write_bytes(b"whole")
    assert filling.is_dir()
