"""Row views: labels live in their own namespace, so a label named like an article column hides nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmcurate import schema
from pmcurate.filters import stats, views
from pmcurate.filters.rules import RuleError, parse_rule
from pmcurate.filters.subset import connect, make_subset
from tests.filters.conftest import ARTICLES, label_rows, read_drops, read_subset, write_build


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """The synthetic build with every article in English and the ``language`` label saying French
    for the paragraphs of PMC2."""
    root = write_build(tmp_path / "build")
    articles = [{**article, "language": "en"} for article in ARTICLES]
    schema.write_shard(
        schema.to_table(articles, schema.ARTICLES), schema.table_dir(root, "articles") / "part-0.parquet"
    )
    labels = [
        {**row, "language": "fr" if row["paragraph_id"].startswith("PMC2/") else "en"} for row in label_rows()
    ]
    schema.write_shard(
        schema.to_table(labels, schema.LABELS), schema.table_dir(root, "labels") / "part-0.parquet"
    )
    return root


def paragraph_view(build: Path) -> tuple[list[str], list[tuple]]:
    con = connect(build)
    views.create_views(con, "paragraphs")
    names = views.columns(con, "paragraph_rows")
    rows = con.execute(
        "SELECT id, language, labels.language, labels.document_type, document_type"
        " FROM paragraph_rows ORDER BY id"
    ).fetchall()
    con.close()
    return names, rows


def test_paragraph_rows_without_statistics_have_every_other_column(build: Path) -> None:
    con = connect(build)
    views.create_views(con, "paragraphs")
    every = views.columns(con, "paragraph_rows")
    views.create_views(con, "paragraphs", stats=False)
    lean = views.columns(con, "paragraph_rows")
    con.close()
    assert lean == [name for name in every if name not in schema.ARTICLE_STATS]


def test_rules_read_statistics_when_their_sql_names_one() -> None:
    assert views.reads_stats([parse_rule("min_words"), parse_rule("mostly_clinical")])
    assert not views.reads_stats(
        [parse_rule("min_words"), parse_rule("edu_min=3"), parse_rule("boilerplate")]
    )


def test_a_label_named_like_an_article_column_renames_nothing(build: Path) -> None:
    names, _ = paragraph_view(build)
    assert names.count("language") == 1
    assert not [name for name in names if name.startswith("language_")]


def test_the_article_column_keeps_its_name_and_the_label_is_under_labels(build: Path) -> None:
    _, rows = paragraph_view(build)
    by_id = {row[0]: row[1:] for row in rows}
    assert by_id["PMC2/p2"] == ("en", "fr", "study", "study")
    assert by_id["PMC1/p1"] == ("en", "en", "clinical_case", "clinical_case")


def test_a_condition_can_read_the_label_through_its_namespace(build: Path) -> None:
    make_subset(build, "french", where="labels.language = 'fr'")
    kept = read_subset(build, "french")
    assert set(kept["article_id"]) == {"PMC2"}
    assert set(kept["language"]) == {"en"}  # the subset's language column is the article's


def test_subset_label_columns_come_from_the_labels_table(build: Path) -> None:
    make_subset(build, "all")
    rows = {row["paragraph_id"]: row for row in read_subset(build, "all").iter_rows(named=True)}
    row = rows["PMC2/p2"]
    assert (row["document_type"], row["educational_score"], row["labels_annotator"]) == (
        "study",
        3.5,
        "synthetic",
    )


def test_the_label_rule_keeps_paragraphs_by_their_language_label(build: Path) -> None:
    make_subset(build, "english", rules=["label=language:en"])
    kept, drops = read_subset(build, "english"), read_drops(build, "english")
    assert set(kept["article_id"]) == {"PMC1", "PMC3"} and set(kept["labels_language"]) == {"en"}
    assert {r["rule"] for r in drops.iter_rows(named=True)} == {"label:language"}
    assert set(drops["reason"]) == {"language fr is not en"}


def test_the_label_rule_refuses_a_value_a_class_label_lacks() -> None:
    with pytest.raises(RuleError, match=r"unknown domain value\(s\) \['chemistry'\]; known: clinical"):
        parse_rule("label=domain:chemistry")


def test_the_label_rule_names_the_known_labels_for_an_unknown_one() -> None:
    with pytest.raises(RuleError, match=r"unknown label 'lang'; known: .*language"):
        parse_rule("label=lang:en")


def test_stats_count_the_paragraphs_by_their_language_label(build: Path) -> None:
    def languages(stats_: stats.Stats) -> dict[str, int]:
        found = next(d for d in stats_.distributions if d.name == "labels_language")
        assert found.title == "Paragraph languages"
        return dict(found.counts.iter_rows())

    assert languages(stats.compute_stats(build)) == {"en": 5, "fr": 5}
    make_subset(build, "english", rules=["label=language:en"])
    assert languages(stats.compute_stats(build, "english")) == {"en": 5}
