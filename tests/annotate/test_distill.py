"""``annotate distill``: the encoder labels a sample of the build, a fastText student learns it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from pmcurate import cli, schema
from pmcurate.annotate import apply_steps, distill, encoder, report, student
from pmcurate.annotate.apply_config import ApplyConfig
from tests.annotate.conftest import DEV_LABELS


@pytest.fixture(scope="module")
def distilled_build(
    encoder_build: tuple[Path, encoder.EncoderResult],
    dev_labels: pl.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, distill.DistillResult]:
    build = tmp_path_factory.mktemp("distilled") / "build"
    shutil.copytree(encoder_build[0], build)
    result = distill.distill(build, dev_labels, teacher_name="dev", device="cpu", dim=20, progress=False)
    return build, result


def test_sample_takes_about_the_size_asked_with_the_context(fixture_build: Path) -> None:
    everything = distill.sample_paragraphs(fixture_build, 1_000_000)
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in schema.shard_paths(fixture_build, "paragraphs"))
    assert everything.height == total  # a smaller build: all of it
    part = distill.sample_paragraphs(fixture_build, total // 2)
    assert 0.3 * total < part.height < 0.7 * total
    assert part["article_type"].null_count() == 0
    assert distill.sample_paragraphs(fixture_build, total // 2, seed=0).equals(part)  # seeded


def test_report_scores_the_distilled_student_on_the_teachers_held_out_rows(
    distilled_build: tuple[Path, distill.DistillResult], encoder_build: tuple[Path, encoder.EncoderResult]
) -> None:
    _, result = distilled_build
    assert result.report is not None
    for key in ("teacher", "n_train", "n_validation", "n_test", "n_test_articles"):
        assert result.report[key] == encoder_build[1].report[key], key
    assert {"student", "majority", "rules"} <= set(result.report["labels"]["document_type"])


def test_distilled_student_never_learns_from_the_held_out_articles(
    distilled_build: tuple[Path, distill.DistillResult], dev_labels: pl.DataFrame
) -> None:
    build, result = distilled_build
    assert result.report is not None
    teacher = student.prepared_teacher(dev_labels)
    test = student.evaluation_splits(teacher, 0.25, 0.25, 0).test
    sample = distill.sample_paragraphs(build, distill.DEFAULT_SAMPLE)
    outside = sample.filter(~pl.col("article_id").is_in(test["article_id"].unique().implode()))
    assert result.report["n_distilled"] == outside.height < sample.height == result.sample


def test_distilled_models_are_written_with_their_sha256(
    distilled_build: tuple[Path, distill.DistillResult],
) -> None:
    build, result = distilled_build
    manifest = student.load_manifest(build, distill.FOLDER)
    assert manifest == result.manifest and manifest["annotator"].startswith("distilled-")
    assert manifest["teacher"] == "encoder:" + encoder.load_manifest(build)["annotator"]
    student.verify_models(build, manifest)  # files named relative to BUILD/models/
    assert (build / "models" / "distilled" / "joint.bin").is_file()
    assert json.loads((build / "models" / "students.json").read_text())["annotator"].startswith("fasttext-")


def test_side_by_side_shows_every_student(distilled_build: tuple[Path, distill.DistillResult]) -> None:
    table = report.side_by_side(distilled_build[0])
    header = table.splitlines()[0]
    for column in ("fasttext", "encoder", "distilled", "rules", "majority"):
        assert column in header, column


def test_apply_distilled_labels_every_paragraph(
    distilled_build: tuple[Path, distill.DistillResult], tmp_path: Path
) -> None:
    build = tmp_path / "build"
    shutil.copytree(distilled_build[0], build)
    result = apply_steps.apply(build, ApplyConfig(student="distilled"), workers=1, progress=False)
    labels = pl.read_parquet(schema.shard_paths(build, "labels"))
    assert result.counts["paragraphs_labelled"] == labels.height > 0
    assert labels["annotator"].str.starts_with("distilled-").all()


def test_distill_without_an_encoder_student_is_a_one_line_error(
    build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["annotate", "distill", str(build), "--labels", str(DEV_LABELS), "--device", "cpu"])
    assert code == 2 and "annotate train --student encoder" in capsys.readouterr().err
