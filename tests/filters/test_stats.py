"""Counts and distributions of builds and subsets, as text and as an HTML report with SVG charts."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from pmcurate.filters.stats import StatsError, compute_stats, format_text, render_html, write_report
from pmcurate.filters.subset import make_subset


def counts(stats, name: str) -> dict[str, int]:
    dist = next(d for d in stats.distributions if d.name == name)
    return dict(dist.counts.iter_rows())


def test_build_totals_count_paragraphs_articles_and_words(build: Path) -> None:
    stats = compute_stats(build)
    assert stats.totals["paragraphs"] == 10 and stats.totals["articles"] == 3
    assert stats.totals["words"] == 20 + 80 * 4 + 70 + 60 + 90 + 65 + 75


def test_build_distributions_count_labels_and_licenses(build: Path) -> None:
    stats = compute_stats(build)
    assert counts(stats, "document_type") == {"clinical_case": 4, "study": 4, "review": 1, "other": 1}
    assert counts(stats, "license") == {"CC BY-NC": 5, "CC BY": 4, "(none)": 1}
    assert counts(stats, "educational_score") == {
        "1": 1,
        "2": 1,
        "3": 5,
        "4": 2,
        "5": 1,
    }  # 3.5 -> 4, 4.5 -> 5


def test_word_buckets_are_in_numeric_order(build: Path) -> None:
    assert list(counts(compute_stats(build), "words")) == ["16-31", "48-63", "64-127"]


def test_build_without_labels_has_no_label_distributions(build_without_labels: Path) -> None:
    names = {d.name for d in compute_stats(build_without_labels).distributions}
    assert "document_type" not in names and "license" in names


def test_subset_stats_count_upsampled_rows(build: Path) -> None:
    make_subset(build, "up", upsample={"mostly_clinical": 10})
    stats = compute_stats(build, "up")
    assert stats.totals["paragraphs"] == 46
    assert counts(stats, "license")["CC BY"] == 40


def test_unknown_subset_lists_the_existing_ones(build: Path) -> None:
    make_subset(build, "real")
    with pytest.raises(StatsError, match="no subset 'nope' \\(subsets: real\\)"):
        compute_stats(build, "nope")


def test_html_report_has_one_svg_chart_per_distribution(build: Path) -> None:
    stats, path = write_report(build)
    page = path.read_text()
    assert path == build / "reports" / "stats.html"
    assert page.count("<svg") == len(stats.distributions)
    for svg in page.split("<svg")[1:]:
        ElementTree.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # well-formed SVG


def test_html_escapes_values(build: Path) -> None:
    stats = compute_stats(build)
    dist = stats.distributions[0]
    dist.counts[0, "value"] = "<script>"
    assert "<script>" not in render_html(stats)


def test_text_report_shows_shares(build: Path) -> None:
    text = format_text(compute_stats(build))
    assert "clinical_case" in text and "40.0%" in text
