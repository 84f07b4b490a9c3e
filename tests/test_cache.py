from __future__ import annotations

from pathlib import Path

import pytest

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
