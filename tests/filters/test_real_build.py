"""Rules, dedup, upsampling and determinism on a build harvested from the real JATS fixtures.

Expected rows are computed independently with Polars from the base tables (and the synthetic
labels), not with the SQL under test.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pmcurate.filters.subset import MissingTableError, make_subset
from tests.filters.conftest import RealBuild, base_rows, read_drops, read_subset

BOILERPLATE_TITLES = {
    "Competing interests",
    "Authors' contributions",
    "Data availability",
    "FUNDING",
    "funding",
    "Disclosures",
    "disclosure",
    "Electronic supplementary material",
}
"""Section titles of the fixtures' back-matter paragraphs, read off the articles by hand."""


def kept_and_drops(build: Path, name: str) -> tuple[set[str], pl.DataFrame]:
    return set(read_subset(build, name)["paragraph_id"]), read_drops(build, name)


def test_min_words_drops_exactly_the_short_paragraphs(real_build: RealBuild) -> None:
    rows = base_rows(real_build.path)
    make_subset(real_build.path, "real-min-words", rules=["min_words"])
    kept, drops = kept_and_drops(real_build.path, "real-min-words")
    assert kept == set(rows.filter(pl.col("n_words") >= 48)["paragraph_id"])
    assert set(drops["id"]) == set(rows.filter(pl.col("n_words") < 48)["paragraph_id"])
    assert set(drops["rule"]) == {"min_words"}


def test_boilerplate_drops_back_matter_sections_and_nothing_else(real_build: RealBuild) -> None:
    rows = base_rows(real_build.path)
    make_subset(real_build.path, "real-boilerplate", rules=["boilerplate"])
    _, drops = kept_and_drops(real_build.path, "real-boilerplate")
    expected = rows.filter(pl.col("section_title").is_in(BOILERPLATE_TITLES))
    assert set(drops["id"]) == set(expected["paragraph_id"])
    # 17: PMC6358585 body/sec[4]/sec/p holds only supplementary items, no text of its own, no row
    assert len(expected) == 17  # "Bioavailability of CSP" and the like are not boilerplate
    assert "boilerplate section: Competing interests" in set(drops["reason"])


def test_license_commercial_matches_the_articles_commercial_use(real_build: RealBuild) -> None:
    rows = base_rows(real_build.path)
    make_subset(real_build.path, "real-commercial", rules=["license=commercial"])
    kept, drops = kept_and_drops(real_build.path, "real-commercial")
    assert kept == set(rows.filter(pl.col("commercial_use"))["paragraph_id"])
    nc = rows.filter(pl.col("license") == "CC BY-NC-ND")["paragraph_id"][0]
    assert drops.filter(pl.col("id") == nc)["reason"][0] == "CC BY-NC-ND does not allow commercial use"


def test_clinical_case_and_education_rules_follow_the_labels(real_build: RealBuild) -> None:
    rows = base_rows(real_build.path)
    make_subset(real_build.path, "real-clinical", rules=["clinical_case", "edu_min=3"])
    kept, _ = kept_and_drops(real_build.path, "real-clinical")
    expected = rows.filter((pl.col("document_type") == "clinical_case") & (pl.col("educational_score") >= 3))
    assert kept == set(expected["paragraph_id"]) and kept


def test_language_rule_drops_the_planted_french_paragraph_only(real_build: RealBuild) -> None:
    make_subset(real_build.path, "real-language", rules=["language=en"])
    _, drops = kept_and_drops(real_build.path, "real-language")
    assert drops.select("id", "reason").rows() == [(real_build.french, "language fr is not en")]


def test_dedup_finds_planted_duplicates_and_nothing_else(real_build: RealBuild) -> None:
    make_subset(real_build.path, "real-dedup", rules=["min_words"], dedup=["exact", "near"])
    drops = read_drops(real_build.path, "real-dedup").filter(pl.col("rule") != "min_words")
    assert sorted(drops.select("id", "rule", "cluster").rows()) == sorted(
        [
            (real_build.exact_copy, "dup_exact", real_build.exact_of),
            (real_build.near_copy, "dup_near", real_build.near_of),
        ]
    )


def test_exact_dedup_finds_the_fixtures_own_repeated_paragraphs(real_build: RealBuild) -> None:
    rows = base_rows(real_build.path).sort("article_id", "ordinal", "paragraph_id")
    normalized = pl.col("text").str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()
    first = rows.with_columns(normalized.alias("key")).with_columns(
        pl.col("paragraph_id").first().over("key").alias("first")
    )
    expected = first.filter(pl.col("paragraph_id") != pl.col("first")).select("paragraph_id", "first").rows()
    make_subset(real_build.path, "real-exact", dedup=["exact"])
    drops = read_drops(real_build.path, "real-exact")
    assert sorted(drops.select("id", "cluster").rows()) == sorted(expected)
    assert len(expected) == 5  # 4 repeated case-report disclosures + the planted copy


def test_figure_dedup_finds_identical_images_and_captions(real_build: RealBuild) -> None:
    result = make_subset(real_build.path, "real-figures", source="figures", dedup=["image", "caption"])
    drops = read_drops(real_build.path, "real-figures")
    assert sorted(drops.select("id", "rule", "cluster").rows()) == sorted(
        [
            (real_build.caption_copy, "dup_caption", real_build.caption_of),
            (real_build.image_copy, "dup_image", real_build.image_first),
        ]
    )
    kept = read_subset(real_build.path, "real-figures")
    assert result.kept_rows == kept.height and {"caption", "image", "license", "repeat"} <= set(kept.columns)


def test_upsampling_mostly_clinical_articles_gives_the_expected_row_count(real_build: RealBuild) -> None:
    rows = base_rows(real_build.path)
    share = rows.group_by("article_id").agg(
        (pl.col("document_type") == "clinical_case").mean().alias("share")
    )
    clinical = set(share.filter(pl.col("share") >= 0.5)["article_id"])
    n_clinical = rows.filter(pl.col("article_id").is_in(clinical)).height
    result = make_subset(real_build.path, "real-upsample", upsample={"mostly_clinical": 10})
    assert clinical == {"PMC6358576", "PMC6358577", "PMC6358578"}  # the three case reports
    assert result.output_rows == rows.height + 9 * n_clinical


def test_same_command_twice_is_byte_identical_on_the_real_build(real_build: RealBuild) -> None:
    def snapshot() -> dict[str, bytes]:
        make_subset(
            real_build.path,
            "real-repeat",
            rules=["min_words", "boilerplate", "license=commercial"],
            dedup=["exact", "near"],
            upsample={"clinical_case": 4},
        )
        folder = real_build.path / "subsets" / "real-repeat"
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    assert snapshot() == snapshot()


def test_label_rules_on_a_build_without_labels_fail_clearly(real_build_without_labels: Path) -> None:
    with pytest.raises(
        MissingTableError, match=r"labels table.*tables/labels/ has no shards.*annotate apply"
    ):
        make_subset(real_build_without_labels, "x", rules=["min_words", "edu_min=3"])
