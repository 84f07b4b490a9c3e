"""Each built-in rule keeps and drops exactly the expected rows of the synthetic build, with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmcurate.filters.rules import RuleError, parse_rule
from pmcurate.filters.subset import MissingTableError, SubsetError, make_subset
from tests.filters.conftest import read_drops, read_subset

ALL = {
    "PMC1/p1", "PMC1/p2", "PMC1/p3", "PMC1/p4",
    "PMC2/p1", "PMC2/p2", "PMC2/p3", "PMC2/p4", "PMC2/p5",
    "PMC3/p1",
}  # fmt: skip


def run(build: Path, *rules: str, where: str | None = None) -> tuple[set[str], dict[str, tuple[str, str]]]:
    """Kept ids, and dropped id -> (rule, reason)."""
    make_subset(build, "s", rules=list(rules), where=where)
    kept = set(read_subset(build, "s")["paragraph_id"])
    drops = {row["id"]: (row["rule"], row["reason"]) for row in read_drops(build, "s").iter_rows(named=True)}
    assert kept | set(drops) == ALL and not kept & set(drops)
    return kept, drops


def test_min_words_default_drops_paragraphs_under_48_words(build: Path) -> None:
    _, drops = run(build, "min_words")
    assert drops == {"PMC1/p2": ("min_words", "fewer than 48 words (20)")}


def test_min_words_takes_a_threshold(build: Path) -> None:
    _, drops = run(build, "min_words=75")
    assert set(drops) == {"PMC1/p2", "PMC1/p3", "PMC1/p4", "PMC2/p5"}


def test_license_commercial_keeps_commercial_use_articles_only(build: Path) -> None:
    kept, drops = run(build, "license=commercial")
    assert kept == {"PMC1/p1", "PMC1/p2", "PMC1/p3", "PMC1/p4"}
    assert drops["PMC2/p1"] == ("license", "CC BY-NC does not allow commercial use")
    assert drops["PMC3/p1"] == ("license", "unknown license does not allow commercial use")


def test_license_noncommercial_drops_commercial_and_unknown(build: Path) -> None:
    kept, _ = run(build, "license=noncommercial")
    assert kept == {"PMC2/p1", "PMC2/p2", "PMC2/p3", "PMC2/p4", "PMC2/p5"}


def test_license_code_list(build: Path) -> None:
    kept, drops = run(build, "license=CC BY-NC,CC BY")
    assert kept == ALL - {"PMC3/p1"}
    assert drops["PMC3/p1"][1] == "unknown license is not one of CC BY-NC, CC BY"


def test_clinical_case_keeps_clinical_case_paragraphs(build: Path) -> None:
    kept, drops = run(build, "clinical_case")
    assert kept == {"PMC1/p1", "PMC1/p2", "PMC1/p3", "PMC2/p5"}
    assert drops["PMC2/p2"] == ("clinical_case", "document type study, not clinical_case")


def test_edu_min_drops_low_educational_scores(build: Path) -> None:
    _, drops = run(build, "edu_min=3")
    assert drops == {
        "PMC1/p3": ("edu_min", "educational score 2.0 < 3"),
        "PMC1/p4": ("edu_min", "educational score 1.0 < 3"),
    }


def test_domain_keeps_listed_domains(build: Path) -> None:
    kept, drops = run(build, "domain=clinical")
    assert kept == {"PMC1/p1", "PMC1/p2", "PMC1/p3", "PMC2/p5"}
    assert drops["PMC1/p4"] == ("domain", "domain other is not clinical")


def test_not_retracted_drops_retracted_articles(build: Path) -> None:
    _, drops = run(build, "not_retracted")
    assert drops == {"PMC3/p1": ("not_retracted", "article is retracted")}


def test_boilerplate_drops_acknowledgements(build: Path) -> None:
    _, drops = run(build, "boilerplate")
    assert drops == {"PMC1/p4": ("boilerplate", "boilerplate section: Acknowledgements")}


def test_has_clinical_case_keeps_articles_with_a_clinical_paragraph(build: Path) -> None:
    _, drops = run(build, "has_clinical_case")
    assert drops == {"PMC3/p1": ("has_clinical_case", "article has 0 clinical-case paragraphs (< 1)")}


def test_mostly_clinical_keeps_articles_at_least_half_clinical(build: Path) -> None:
    kept, drops = run(build, "mostly_clinical")
    assert kept == {"PMC1/p1", "PMC1/p2", "PMC1/p3", "PMC1/p4"}
    assert drops["PMC2/p1"] == ("mostly_clinical", "article clinical-case share 0.2 < 0.5")


def test_where_condition_is_a_rule_named_where(build: Path) -> None:
    _, drops = run(build, where="pub_year >= 2020")
    assert drops == {"PMC3/p1": ("where", "does not match: pub_year >= 2020")}


def test_first_failing_rule_is_the_reason(build: Path) -> None:
    _, first_edu = run(build, "edu_min=3.5", "min_words")
    _, first_words = run(build, "min_words", "edu_min=3.5")
    assert first_edu["PMC1/p2"][0] == "edu_min"
    assert first_words["PMC1/p2"][0] == "min_words"


def test_unknown_rule_is_refused_with_the_known_names() -> None:
    with pytest.raises(RuleError, match=r"unknown rule 'min_word'.*min_words"):
        parse_rule("min_word")


def test_unknown_license_code_is_refused() -> None:
    with pytest.raises(RuleError, match="unknown license code"):
        parse_rule("license=CC-BY")


def test_label_rule_without_labels_table_says_how_to_make_it(build_without_labels: Path) -> None:
    with pytest.raises(
        MissingTableError, match=r"clinical_case needs the labels table.*pmcurate annotate apply"
    ):
        make_subset(build_without_labels, "s", rules=["clinical_case"])


def test_where_on_label_columns_without_labels_table_names_the_table(build_without_labels: Path) -> None:
    with pytest.raises(MissingTableError, match="labels table"):
        make_subset(build_without_labels, "s", where="educational_score >= 3")


def test_where_with_a_typo_names_the_rule_and_column(build: Path) -> None:
    with pytest.raises(SubsetError, match=r"where: .*n_wrds"):
        make_subset(build, "s", where="n_wrds > 3")


def test_paragraph_rule_refused_for_article_unit(build: Path) -> None:
    with pytest.raises(RuleError, match="clinical_case does not apply to articles"):
        make_subset(build, "s", rules=["clinical_case"], unit="article")
