from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pmcurate.annotate import student, student_cache
from pmcurate.cache import cache_root
from tests.annotate.conftest import SMALL_GRID

SETTINGS: dict[str, Any] = {"grid": SMALL_GRID, "pretrain": False, "dim": 10}


def train(build: Path, teacher: pl.DataFrame, **changes: Any) -> student.TrainResult:
    return student_cache.trained(build, teacher, teacher_name="dev", **(SETTINGS | changes))


def model_bytes(build: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((build / "models").iterdir())}


def entries() -> list[Path]:
    folder = cache_root() / "students"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.fixture
def builds(fixture_build: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the fixture build: a first training, and a second one."""
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(fixture_build, first)
    shutil.copytree(fixture_build, second)
    return first, second


def test_students_trained_again_on_the_same_rows_are_the_files_trained_first(
    builds: tuple[Path, Path], dev_labels: pl.DataFrame
) -> None:
    first, second = builds
    assert train(first, dev_labels).from_cache is None
    again = train(second, dev_labels)
    assert again.from_cache == str(entries()[0])
    assert model_bytes(second) == model_bytes(first)
    assert again.manifest == train(first, dev_labels).manifest


def test_students_of_changed_teacher_rows_are_trained(
    builds: tuple[Path, Path], dev_labels: pl.DataFrame
) -> None:
    first, second = builds
    train(first, dev_labels)
    relabelled = dev_labels.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("other"))
        .otherwise("document_type")
        .alias("document_type")
    )
    assert train(second, relabelled).from_cache is None
    assert len(entries()) == 2


def test_students_of_changed_settings_are_trained(
    builds: tuple[Path, Path], dev_labels: pl.DataFrame
) -> None:
    first, second = builds
    train(first, dev_labels)
    assert train(second, dev_labels, seed=1).from_cache is None


def test_pretrained_students_are_never_kept(build: Path, dev_labels: pl.DataFrame) -> None:
    assert train(build, dev_labels, pretrain=True).from_cache is None
    assert entries() == []


def test_an_entry_whose_model_changed_is_trained_again_and_replaced(
    builds: tuple[Path, Path], dev_labels: pl.DataFrame
) -> None:
    first, second = builds
    train(first, dev_labels)
    (entries()[0] / "joint.bin").write_bytes(b"not a model")
    assert train(second, dev_labels).from_cache is None
    assert model_bytes(second)["joint.bin"] == model_bytes(first)["joint.bin"]
    assert (entries()[0] / "joint.bin").read_bytes() == model_bytes(first)["joint.bin"]


def test_a_cache_that_cannot_be_written_trains_and_warns(
    build: Path,
    dev_labels: pl.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PMCURATE_CACHE", str(blocker))
    with caplog.at_level(logging.WARNING, logger="pmcurate.annotate.student_cache"):
        result = train(build, dev_labels)
    assert result.from_cache is None
    assert (build / "models" / "joint.bin").is_file()
    assert "cannot keep the trained students" in caplog.text


def test_the_key_changes_with_the_teacher_name(dev_labels: pl.DataFrame) -> None:
    assert student_cache.cache_key(dev_labels, "dev", SETTINGS) != student_cache.cache_key(
        dev_labels, "llm", SETTINGS
    )


def test_the_key_ignores_when_the_labels_were_read(dev_labels: pl.DataFrame) -> None:
    later = dev_labels.with_columns(pl.col("at").dt.offset_by("1h"))
    assert student_cache.cache_key(later, "dev", SETTINGS) == student_cache.cache_key(
        dev_labels, "dev", SETTINGS
    )
