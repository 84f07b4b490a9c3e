from __future__ import annotations

import pytest

from pmcurate.annotate import rules


def test_case_section_of_a_case_report_is_a_clinical_case() -> None:
    labels = rules.rules_label("case-report", "case", "Case presentation")
    assert labels["document_type"] == "clinical_case" and labels["domain"] == "clinical"


def test_review_article_paragraphs_are_review() -> None:
    assert (
        rules.rules_label("review-article", "other", "Mechanisms of resistance")["document_type"] == "review"
    )


def test_research_methods_are_study_with_low_educational_score() -> None:
    labels = rules.rules_label("research-article", "methods", "Materials and methods")
    assert labels == {"document_type": "study", "domain": "biomedical", "educational_score": 2}


def test_back_matter_is_other_with_score_one() -> None:
    assert rules.rules_label("research-article", "other", "Competing interests") == {
        "document_type": "other",
        "domain": "other",
        "educational_score": 1,
    }


@pytest.mark.parametrize(
    ("title", "section_type"),
    [
        ("Background", "introduction"),
        ("Materials and Methods", "methods"),
        ("Case Report", "case"),
        ("Results and findings", "results"),
        ("Conclusions", "conclusion"),
        ("Mechanisms", "other"),
        (None, "other"),
    ],
)
def test_section_type_from_title(title: str | None, section_type: str) -> None:
    assert rules.section_type_from_title(title) == section_type
