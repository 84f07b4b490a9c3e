"""``open_build``: tables as Polars LazyFrames and DuckDB views over the shards."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import pmcurate
from pmcurate import schema
from pmcurate.build import NotABuild
from pmcurate.harvest.local import harvest_local

JATS_DIR = Path(__file__).parent / "data" / "jats"


@pytest.fixture(scope="module")
def build_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("build")
    harvest_local([JATS_DIR], path, batch_size=5, workers=1, progress=False)
    return path


def test_open_build_is_exposed_by_the_package() -> None:
    assert pmcurate.open_build is pmcurate.build.open_build


def test_tables_lists_the_folders_holding_shards(build_path: Path) -> None:
    assert pmcurate.open_build(build_path).tables == ["articles", "figures", "paragraphs", "tables"]


def test_table_is_a_lazy_frame_over_all_shards(build_path: Path) -> None:
    frame = pmcurate.open_build(build_path).table("articles")
    assert isinstance(frame, pl.LazyFrame)
    assert frame.select(pl.len()).collect().item() == 15


def test_missing_table_is_a_key_error_naming_the_tables(build_path: Path) -> None:
    with pytest.raises(KeyError, match=r"no table 'labels' .*articles, figures"):
        pmcurate.open_build(build_path).table("labels")


def test_duckdb_has_one_view_per_table(build_path: Path) -> None:
    con = pmcurate.open_build(build_path).duckdb()
    views = {row[0] for row in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == {"articles", "figures", "paragraphs", "tables"}


def test_duckdb_views_and_polars_agree(build_path: Path) -> None:
    build = pmcurate.open_build(build_path)
    sql = build.duckdb().sql("SELECT count(*) FROM paragraphs WHERE article_id = 'PMC3460867'").fetchall()[0]
    frame = build.table("paragraphs").filter(pl.col("article_id") == "PMC3460867").select(pl.len()).collect()
    assert sql == (frame.item(),)


def test_views_see_shards_written_after_connecting(tmp_path: Path) -> None:
    rows = [{"paragraph_id": "p1", "document_type": "study"}]
    schema.write_shard(
        schema.to_table(rows, schema.LABELS), schema.table_dir(tmp_path, "labels") / "a.parquet"
    )
    con = pmcurate.open_build(tmp_path).duckdb()
    schema.write_shard(
        schema.to_table(rows, schema.LABELS), schema.table_dir(tmp_path, "labels") / "b.parquet"
    )
    assert con.sql("SELECT count(*) FROM labels").fetchall()[0] == (2,)


def test_a_table_folder_that_is_not_an_identifier_is_a_quoted_view(tmp_path: Path) -> None:
    rows = [{"source": "a.xml", "reason": "r"}]
    schema.write_shard(
        schema.to_table(rows, schema.QUARANTINE), schema.table_dir(tmp_path, "dedup-drops") / "a.parquet"
    )
    con = pmcurate.open_build(tmp_path).duckdb()
    assert con.sql('SELECT source FROM "dedup-drops"').fetchall() == [("a.xml",)]


def test_open_build_refuses_a_folder_without_tables(tmp_path: Path) -> None:
    with pytest.raises(NotABuild, match="not a pmcurate build"):
        pmcurate.open_build(tmp_path)
