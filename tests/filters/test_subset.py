"""Subset layout, schemas, determinism, upsampling, article units and reruns (synthetic build)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from pmcurate import schema
from pmcurate.filters.subset import SubsetError, make_subset
from tests.filters.conftest import read_drops, read_subset


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_kept_rows_have_the_subset_paragraphs_schema(build: Path) -> None:
    make_subset(build, "s", rules=["min_words"])
    shard = next((build / "subsets" / "s").glob("*.parquet"))
    assert pq.read_schema(shard).remove_metadata() == schema.SUBSET_PARAGRAPHS


def test_kept_rows_carry_article_and_label_columns(build: Path) -> None:
    make_subset(build, "s")
    row = read_subset(build, "s").filter(pl.col("paragraph_id") == "PMC2/p2").row(0, named=True)
    assert (row["license"], row["commercial_use"], row["journal"], row["pub_year"]) == (
        "CC BY-NC",
        False,
        "J Research",
        2021,
    )
    assert (row["document_type"], row["educational_score"], row["labels_annotator"]) == (
        "study",
        3.5,
        "synthetic",
    )


def test_drops_have_the_drops_schema_and_subset_name(build: Path) -> None:
    make_subset(build, "named", rules=["min_words"])
    shard = next((build / "subsets" / "named" / "drops").glob("*.parquet"))
    assert pq.read_schema(shard).remove_metadata() == schema.DROPS
    drops = read_drops(build, "named")
    assert set(drops["subset"]) == {"named"} and set(drops["unit"]) == {"paragraph"}


def test_same_command_twice_gives_identical_files(build: Path) -> None:
    args = {
        "rules": ["min_words", "boilerplate"],
        "dedup": ["exact", "near"],
        "upsample": {"mostly_clinical": 3},
    }
    make_subset(build, "s", **args)
    first = files(build / "subsets" / "s")
    make_subset(build, "s", **args)
    assert files(build / "subsets" / "s") == first
    assert "subset.json" in first and any(name.startswith("drops/") for name in first)


def test_rows_are_in_reading_order(build: Path) -> None:
    make_subset(build, "s")
    assert read_subset(build, "s")["paragraph_id"].to_list() == sorted(
        read_subset(build, "s")["paragraph_id"].to_list()
    )


def test_upsample_repeats_matching_rows_with_a_repeat_index(build: Path) -> None:
    result = make_subset(build, "s", upsample={"mostly_clinical": 10})
    rows = read_subset(build, "s")
    assert result.output_rows == rows.height == 4 * 10 + 6
    p1 = rows.filter(pl.col("paragraph_id") == "PMC1/p1")["repeat"].to_list()
    assert p1 == list(range(10))
    assert rows.filter(pl.col("article_id") != "PMC1")["repeat"].to_list() == [0] * 6


def test_upsample_takes_the_largest_factor_of_matching_rules(build: Path) -> None:
    make_subset(build, "s", upsample=[("mostly_clinical", 3), ("clinical_case", 5)])
    counts = dict(read_subset(build, "s").group_by("paragraph_id").len().iter_rows())
    assert counts["PMC1/p1"] == 5  # both rules match
    assert counts["PMC1/p4"] == 3  # only mostly_clinical
    assert counts["PMC2/p5"] == 5  # only clinical_case
    assert counts["PMC2/p1"] == 1


def test_article_unit_keeps_all_paragraphs_of_kept_articles(build: Path) -> None:
    result = make_subset(build, "s", unit="article", rules=["has_clinical_case"])
    assert set(read_subset(build, "s")["article_id"]) == {"PMC1", "PMC2"}
    assert result.output_rows == 9
    drops = read_drops(build, "s")
    assert drops.select("id", "unit", "rule").rows() == [("PMC3", "article", "has_clinical_case")]


def test_rerun_replaces_the_previous_subset(build: Path) -> None:
    make_subset(build, "s", shard_rows=3)
    assert len(list((build / "subsets" / "s").glob("*.parquet"))) == 4
    make_subset(build, "s", where="article_id = 'PMC3'", shard_rows=3)
    assert len(list((build / "subsets" / "s").glob("*.parquet"))) == 1
    assert read_subset(build, "s")["paragraph_id"].to_list() == ["PMC3/p1"]


def test_shards_split_rows_in_order(build: Path) -> None:
    make_subset(build, "s", shard_rows=3)
    shards = sorted((build / "subsets" / "s").glob("*.parquet"))
    assert [pq.read_metadata(p).num_rows for p in shards] == [3, 3, 3, 1]


def test_empty_subset_still_has_a_shard_with_the_schema(build: Path) -> None:
    result = make_subset(build, "s", where="false")
    assert result.kept_rows == 0
    shards = list((build / "subsets" / "s").glob("*.parquet"))
    assert len(shards) == 1 and pq.read_metadata(shards[0]).num_rows == 0


def test_without_labels_table_label_columns_are_null(build_without_labels: Path) -> None:
    make_subset(build_without_labels, "s", rules=["min_words"])
    rows = read_subset(build_without_labels, "s")
    assert rows.height == 9 and rows["document_type"].null_count() == 9


def test_result_counts_rows_by_rule(build: Path) -> None:
    result = make_subset(build, "s", rules=["min_words", "not_retracted"], dedup=["exact"])
    assert (result.input_rows, result.kept_rows) == (10, 7)
    assert result.dropped == {"min_words": 1, "not_retracted": 1, "dup_exact": 1}


def test_bad_subset_name_is_refused(build: Path) -> None:
    with pytest.raises(SubsetError, match="bad subset name"):
        make_subset(build, "../x")


def test_no_temporary_folders_are_left(build: Path) -> None:
    make_subset(build, "s")
    make_subset(build, "s")
    assert [p.name for p in (build / "subsets").iterdir()] == ["s"]


def test_open_build_shows_subsets_and_their_drops_as_views(build: Path) -> None:
    from pmcurate.build import open_build

    make_subset(build, "be-clinical", rules=["min_words"])
    opened = open_build(build)
    con = opened.duckdb()
    assert opened.subsets == ["be-clinical"]
    assert con.sql('SELECT count(*) FROM "subset_be-clinical"').fetchall() == [(9,)]
    assert con.sql('SELECT id, rule FROM "subset_be-clinical_drops"').fetchall() == [("PMC1/p2", "min_words")]
