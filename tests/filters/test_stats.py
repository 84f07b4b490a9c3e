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


def test_subset_report_says_why_rows_were_dropped_step_by_step(build: Path) -> None:
    make_subset(build, "long", rules=["min_words=48"], where="pub_year >= 2020")
    stats = compute_stats(build, "long")
    steps = [(s.rule, s.dropped, s.remaining) for s in stats.drops]
    assert steps == [("min_words", 1, 9), ("where", 1, 8)]
    assert stats.drops[0].condition == "n_words >= 48"
    assert stats.drops[0].example is not None and "48" in stats.drops[0].example
    page = render_html(stats)
    assert "Why rows were dropped" in page and "n_words &gt;= 48" in page
    assert "Why rows were dropped" in format_text(stats)


def test_build_report_has_no_drop_section(build: Path) -> None:
    stats = compute_stats(build)
    assert stats.drops == [] and "Why rows were dropped" not in render_html(stats)


def test_years_are_a_numeric_axis_with_the_empty_years(build: Path) -> None:
    import polars as pl

    from pmcurate import schema

    article = pl.read_parquet(schema.shard_paths(build, "articles")).head(1)
    late = article.with_columns(article_id=pl.lit("PMC999"), pub_year=pl.lit(2024, pl.Int32))
    schema.write_shard(
        late.to_arrow().cast(schema.ARTICLES), schema.table_dir(build, "articles") / "late.parquet"
    )
    paragraph = pl.read_parquet(schema.shard_paths(build, "paragraphs")).head(1)
    late_paragraph = paragraph.with_columns(article_id=pl.lit("PMC999"), paragraph_id=pl.lit("PMC999/body/p"))
    schema.write_shard(
        late_paragraph.to_arrow().cast(schema.PARAGRAPHS),
        schema.table_dir(build, "paragraphs") / "late.parquet",
    )
    years = counts(compute_stats(build), "pub_year")
    assert list(years) == ["2019", "2020", "2021", "2022", "2023", "2024"]
    assert years["2022"] == 0 and years["2023"] == 0 and years["2024"] == 1


def test_build_report_counts_figures_and_their_images(real_build) -> None:
    stats = compute_stats(real_build.path)
    figures = {d.name: d for d in stats.distributions if d.unit == "figures"}
    assert stats.totals["figures with an image"] == 2
    assert dict(figures["has_image"].counts.iter_rows())["image"] == 2
    assert stats.totals["figures"] == sum(dict(figures["has_image"].counts.iter_rows()).values())
    assert "Figures and images" in render_html(stats)


def test_report_renders_in_a_browser_with_its_charts(real_build, tmp_path: Path) -> None:
    """Headless Chromium (Debian's `chromium`, installed by .ci/run) draws the page: the bars and the
    year columns are there in the chart colour, and the page ends inside the window."""
    import shutil
    import subprocess

    import numpy as np
    from PIL import Image

    from pmcurate.filters.stats import COLOR

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is needed to render the report (apt-get install chromium; .ci/run does it)"
    make_subset(real_build.path, "long", rules=["min_words=64"], dedup=["exact"])
    _, page = write_report(real_build.path, "long", tmp_path / "report.html")
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1100,3000", f"--screenshot={shot}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    image = Image.open(shot).convert("RGB")
    assert image.size == (1100, 3000)
    pixels = np.asarray(image)
    colour = [int(COLOR[i : i + 2], 16) for i in (1, 3, 5)]
    assert (pixels == colour).all(axis=2).sum() > 5_000  # bars and columns were drawn
    assert (pixels == [192, 80, 77]).all(axis=2).sum() > 50  # the red bars of the dropped rows
    bottom = pixels[2900:].reshape(-1, 3)
    assert (bottom == [245, 247, 250]).all()  # the page background: nothing cut off
