"""The rules teacher: labels from JATS structure alone (article type, section type, section title).

Offline and free, it labels any number of paragraphs, and it is the baseline the evaluation report
compares the students against: a student that cannot beat "case report + case section →
clinical case" has learnt nothing from the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import polars as pl

from pmcurate.annotate import labels_file

ANNOTATOR = "rules-v1"
BACK_MATTER = re.compile(
    r"acknowledg|funding|financial (support|disclosure)|competing interest|conflicts? of interest|"
    r"declaration|author(s'|’s|s)? contribution|data (availability|sharing)|availability of data|"
    r"abbreviation|ethics (approval|statement)|consent for publication|supplementary|footnote",
    re.IGNORECASE,
)
SECTION_TITLES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("abstract", re.compile(r"abstract|summary", re.I)),
    (
        "case",
        re.compile(
            r"case (report|presentation|description|history|summary)|case \d|patient"
            r"|clinical (presentation|history)",
            re.I,
        ),
    ),
    ("introduction", re.compile(r"introduction|background", re.I)),
    (
        "methods",
        re.compile(r"method|material|experimental|procedure|statistic|study design|participants", re.I),
    ),
    ("results", re.compile(r"result|finding", re.I)),
    ("discussion", re.compile(r"discussion", re.I)),
    ("conclusion", re.compile(r"conclusion|concluding", re.I)),
)
CLINICAL_ARTICLE_TYPES = frozenset({"case-report", "clinical-trial", "brief-report"})
REVIEW_ARTICLE_TYPES = frozenset({"review-article", "systematic-review", "book-review", "overview"})
OTHER_ARTICLE_TYPES = frozenset(
    {
        "editorial",
        "letter",
        "reply",
        "correction",
        "retraction",
        "expression-of-concern",
        "news",
        "announcement",
        "obituary",
        "calendar",
        "addendum",
        "article-commentary",
        "meeting-report",
    }
)
EDU_BY_SECTION = {
    "abstract": 3,
    "introduction": 3,
    "methods": 2,
    "results": 3,
    "discussion": 3,
    "conclusion": 3,
    "case": 3,
    "other": 2,
}


def section_type_from_title(title: str | None) -> str:
    """A section title ("Materials and Methods", "Case presentation"…) as a schema.SECTION_TYPES value."""
    if not title:
        return "other"
    for section_type, pattern in SECTION_TITLES:
        if pattern.search(title):
            return section_type
    return "other"


RULES_LABELS = ("document_type", "domain", "educational_score")
"""The labels the rules teacher gives: a label added since (``pmcurate/labels/``) needs another
teacher (an LLM or a labels file)."""


def rules_label(
    article_type: str | None, section_type: str | None, section_title: str | None = None
) -> dict[str, Any]:
    """The three labels the JATS structure alone suggests."""
    article_type = (article_type or "").strip().lower()
    section_type = section_type or section_type_from_title(section_title)
    if (section_title and BACK_MATTER.search(section_title)) or article_type in OTHER_ARTICLE_TYPES:
        return {"document_type": "other", "domain": "other", "educational_score": 1}
    domain = "clinical" if article_type in CLINICAL_ARTICLE_TYPES else "biomedical"
    if article_type == "case-report":
        document_type = "review" if section_type in ("introduction", "discussion") else "clinical_case"
    elif article_type in REVIEW_ARTICLE_TYPES:
        document_type = "review"
    else:
        document_type = "review" if section_type == "introduction" else "study"
    if section_type == "case":
        document_type, domain = "clinical_case", "clinical"
    return {
        "document_type": document_type,
        "domain": domain,
        "educational_score": EDU_BY_SECTION.get(section_type, 2),
    }


def rules_labels(
    article_types: Sequence[str | None],
    section_types: Sequence[str | None],
    section_titles: Sequence[str | None] | None = None,
) -> list[dict[str, Any]]:
    titles = section_titles if section_titles is not None else [None] * len(article_types)
    return [rules_label(a, s, t) for a, s, t in zip(article_types, section_types, titles, strict=True)]


def rules_teacher_rows(sample: pl.DataFrame) -> list[dict[str, Any]]:
    """Teacher-labels rows for sampled paragraphs (columns of ``sample.stratified_sample``)."""
    guessed = rules_labels(
        sample["article_type"].to_list(), sample["section_type"].to_list(), sample["section_title"].to_list()
    )
    return [
        labels_file.teacher_row(
            text=row["text"],
            labels=labels,
            annotator=ANNOTATOR,
            paragraph_id=row["paragraph_id"],
            article_id=row["article_id"],
            model="rules",
        )
        for row, labels in zip(sample.iter_rows(named=True), guessed, strict=True)
    ]
