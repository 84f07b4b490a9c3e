"""Label specs: every label-aware part derives from them, and a new label is one file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from pmcurate import labels, schema
from pmcurate.annotate import prompt, report, student
from pmcurate.filters import language, stats
from pmcurate.labels import LabelSpec, LabelSpecError


def test_the_labels_are_found_in_the_package_in_name_order() -> None:
    assert [s.name for s in labels.specs()] == ["document_type", "domain", "educational_score", "language"]
    assert [s.name for s in labels.taught()] == ["document_type", "domain", "educational_score"]
    assert [s.name for s in labels.computed()] == ["language"]


def test_the_labels_table_has_each_labels_columns() -> None:
    assert schema.LABELS.names == [
        "paragraph_id",
        "document_type",
        "document_type_scores",
        "domain",
        "domain_scores",
        "educational_score",
        "language",
        "annotator",
    ]
    assert schema.LABELS.field("document_type_scores").type.names == list(schema.DOCUMENT_TYPES)
    assert "language" not in schema.TAUGHT_LABELS.names and "language" not in schema.TEACHER_LABELS.names


def test_a_label_named_like_an_article_column_gets_the_labels_prefix_in_flat_rows() -> None:
    assert "language" in schema.ARTICLES.names
    assert schema.LABEL_COLUMNS["language"] == "labels_language"
    assert schema.LABEL_COLUMNS["document_type"] == "document_type"
    assert schema.LABEL_COLUMNS["annotator"] == "labels_annotator"
    assert schema.SUBSET_PARAGRAPHS.field("language").type == pa.string()  # the article's
    assert "labels_language" in schema.SUBSET_PARAGRAPHS.names


def test_a_label_whose_prefixed_name_is_taken_too_is_refused() -> None:
    with pytest.raises(LabelSpecError, match="both it and 'labels_language' name other columns"):
        labels.flat_names(["language", "labels_language"])


def test_the_prompt_made_from_the_specs_is_the_v1_prompt() -> None:
    # the hash of the prompt written by hand before the specs existed: cached answers stay valid
    assert prompt.PROMPT_HASH == "acd576a85079228f"
    assert list(prompt.ANSWER_SCHEMA["properties"]) == ["document_type", "domain", "educational_score"]


def test_a_teacher_answer_is_checked_against_the_specs() -> None:
    good = {"document_type": "study", "domain": "clinical", "educational_score": "4"}
    assert labels.check_answer(good) == {
        "document_type": "study",
        "domain": "clinical",
        "educational_score": 4,
    }
    with pytest.raises(LabelSpecError, match="domain 'chemistry' is not one of clinical, biomedical, other"):
        labels.check_answer({**good, "domain": "chemistry"})
    with pytest.raises(LabelSpecError, match="educational_score 6 is not an integer from 1 to 5"):
        labels.check_answer({**good, "educational_score": 6})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "class", "classes": ("only",), "rubric": "r"}, "at least two classes"),
        ({"kind": "score", "range": (5, 1), "rubric": "r"}, "needs a range"),
        ({"kind": "code", "rubric": "r"}, "must be computed"),
        ({"kind": "class", "classes": ("a", "b")}, "needs its rubric"),
        ({"kind": "ordinal", "rubric": "r"}, "is not one of class, score, code"),
    ],
)
def test_a_spec_that_cannot_work_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(LabelSpecError, match=message):
        LabelSpec(name="x", title="X", description="x", **fields)


def test_the_computed_labels_are_added_from_the_paragraphs_rows() -> None:
    texts = [
        "The patient was treated with antibiotics.",
        "Le patient a été traité par antibiotiques.",
        "12 34",
    ]
    paragraphs = pa.table({"paragraph_id": ["p1", "p2", "p3"], "text": texts})
    taught = schema.to_table([{"paragraph_id": p} for p in ("p1", "p2", "p3")], schema.TAUGHT_LABELS)
    table = labels.with_computed(taught, paragraphs)
    assert table.schema == schema.LABELS
    assert table.column("language").to_pylist() == ["en", "fr", language.UNDETERMINED]


def test_labels_out_of_the_paragraphs_order_are_refused() -> None:
    paragraphs = pa.table({"paragraph_id": ["p1", "p2"], "text": ["a", "b"]})
    rows = [{"paragraph_id": "p2"}, {"paragraph_id": "p1"}]
    with pytest.raises(ValueError, match="not in the order of the paragraphs"):
        labels.with_computed(schema.to_table(rows, schema.TAUGHT_LABELS), paragraphs)


def test_students_report_and_stats_follow_the_specs() -> None:
    assert student.TASKS == {
        "document_type": schema.DOCUMENT_TYPES,
        "domain": schema.DOMAINS,
        "educational_score": ("1", "2", "3", "4", "5"),
    }
    assert report.COMPARED["educational_score"] == ("pearson", "mae")
    assert stats.SECTIONS["Labels"] == ("document_type", "domain", "educational_score", "labels_language")


NEW_LABEL = '''
"""``study_design``: a new taught label, in one file."""

from pmcurate.labels import LabelSpec, register

SPEC = register(
    LabelSpec(
        name="study_design",
        kind="class",
        title="Study designs",
        description="the design of the study the paragraph reports",
        classes=("trial", "cohort", "none"),
        rubric="study_design: the design of the study.\\n- \\"trial\\"\\n- \\"cohort\\"\\n- \\"none\\"",
    )
)
'''

PROBE = """
import json, sys
import pmcurate.labels
pmcurate.labels.__path__.append(sys.argv[1])
from pmcurate import schema
from pmcurate.annotate import prompt, report, student
from pmcurate.export import card
from pmcurate.filters import stats
from pmcurate.filters.rules import parse_rule
print(json.dumps({
    "labels": schema.LABELS.names,
    "teacher": schema.TEACHER_LABELS.names,
    "subset": schema.SUBSET_PARAGRAPHS.names,
    "answer": list(prompt.ANSWER_SCHEMA["required"]),
    "prompt": "study_design: the design of" in prompt.SYSTEM and "exactly four keys" in prompt.SYSTEM,
    "tasks": student.TASKS.get("study_design"),
    "report": report.COMPARED.get("study_design"),
    "stats": stats.SECTIONS["Labels"],
    "card": [column for column, *_ in card.DISTRIBUTIONS],
    "rule": parse_rule("label=study_design:trial").predicate,
}))
"""


def test_a_new_label_is_one_file(tmp_path: Path) -> None:
    """A label module in the labels package (here a folder added to its path, in a fresh process)
    reaches every table, the prompt, the students, the report, stats, the card and the rules."""
    (tmp_path / "study_design.py").write_text(textwrap.dedent(NEW_LABEL))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    found = json.loads(out)
    assert found["labels"][-4:] == ["language", "study_design", "study_design_scores", "annotator"]
    assert "study_design" in found["teacher"] and "study_design_scores" in found["subset"]
    assert found["answer"] == ["document_type", "domain", "educational_score", "study_design"]
    assert found["prompt"] is True
    assert found["tasks"] == ["trial", "cohort", "none"] and found["report"] == ["macro_f1", "kappa"]
    assert "study_design" in found["stats"] and "study_design" in found["card"]
    assert found["rule"] == "labels.\"study_design\" IN ('trial')"


def test_the_computed_labels_are_added_from_a_table_of_the_paragraphs() -> None:
    texts = ["The patient was treated with antibiotics.", "Le patient a été traité par antibiotiques."]
    paragraphs = pa.table(
        {"paragraph_id": pa.array(["p1", "p2"], pa.large_string()), "text": texts}
    )  # Polars'
    taught = schema.to_table([{"paragraph_id": "p1"}, {"paragraph_id": "p2"}], schema.TAUGHT_LABELS)
    assert labels.with_computed(taught, paragraphs).column("language").to_pylist() == ["en", "fr"]
