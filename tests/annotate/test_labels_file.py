from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pmcurate import schema
from pmcurate.annotate import labels_file


def test_dev_labels_are_read_with_the_teacher_schema(dev_labels: pl.DataFrame) -> None:
    assert dev_labels.height == 426
    assert dev_labels.columns[: len(schema.TEACHER_LABELS)] == schema.TEACHER_LABELS.names
    assert dev_labels["document_type"].value_counts().sort("count")["count"].to_list() == [5, 18, 85, 318]
    assert dev_labels["article_id"].null_count() == 0


def test_a_line_that_is_not_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text(
        '{"text": "x", "document_type": "study", "domain": "clinical", "educational_score": 2}\n{oops\n'
    )
    with pytest.raises(labels_file.LabelsError, match=r"l\.jsonl:2: not JSON"):
        labels_file.read_labels_jsonl(path)


def test_a_label_outside_the_rubric_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"text": "x", "document_type": "study", "domain": "physics", "educational_score": 2}\n')
    with pytest.raises(labels_file.LabelsError, match="domain 'physics'"):
        labels_file.read_labels_jsonl(path)


def test_a_row_needs_text_or_paragraph_id(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"document_type": "study", "domain": "clinical", "educational_score": 2}\n')
    with pytest.raises(labels_file.LabelsError, match="needs a non-empty `text` or a `paragraph_id`"):
        labels_file.read_labels_jsonl(path)


def test_teacher_labels_round_trip_through_the_build(build: Path) -> None:
    row = labels_file.teacher_row(
        text="Text.",
        labels={"document_type": "review", "domain": "biomedical", "educational_score": 4},
        annotator="t",
        paragraph_id="PMC1/body/p",
    )
    labels_file.write_teacher_labels(build, "llm", [row])
    frame = labels_file.read_teacher_labels(build, "llm")
    assert frame.select("paragraph_id", "educational_score").row(0) == ("PMC1/body/p", 4)
