"""``query``: DuckDB over a build in every output format, and one-line errors for bad SQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pmcurate.build import NotABuild
from pmcurate.export.query import QueryError, connect, run_query
from pmcurate.harvest.local import harvest_local

JATS_DIR = Path(__file__).parents[1] / "data" / "jats"

SQL = "SELECT article_id, pub_year FROM articles WHERE article_id IN ('PMC3460867', 'PMC3574550') ORDER BY 1"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("build")
    harvest_local([JATS_DIR], path, workers=1, progress=False)
    return path


def test_connect_creates_a_view_per_table(build: Path) -> None:
    con = connect(build)
    assert con.sql("SELECT count(*) FROM articles JOIN paragraphs USING (article_id)").fetchall()[0][0] > 15


def test_connect_refuses_a_folder_that_is_not_a_build(tmp_path: Path) -> None:
    with pytest.raises(NotABuild, match="not a pmcurate build"):
        connect(tmp_path)


def test_table_format_prints_a_box_table(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_query(build, SQL)
    out = capsys.readouterr().out
    assert "│ article_id │ pub_year │" in out
    assert "PMC3460867" in out


def test_csv_format_writes_a_header_and_rows(build: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run_query(build, SQL, format="csv")
    rows = list(csv.reader(io.StringIO(capsysbinary.readouterr().out.decode())))
    assert rows == [["article_id", "pub_year"], ["PMC3460867", "2012"], ["PMC3574550", "2012"]]


def test_json_format_writes_one_object_per_line(
    build: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    run_query(build, SQL, format="json")
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"article_id": "PMC3460867", "pub_year": 2012},
        {"article_id": "PMC3574550", "pub_year": 2012},
    ]


def test_parquet_format_writes_the_output_file(build: Path, tmp_path: Path) -> None:
    run_query(build, SQL, format="parquet", output=tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").to_pylist()[0] == {
        "article_id": "PMC3460867",
        "pub_year": 2012,
    }


def test_parquet_format_needs_an_output_file(build: Path) -> None:
    with pytest.raises(QueryError, match="needs --output"):
        run_query(build, SQL, format="parquet")


def test_csv_to_an_output_file(build: Path, tmp_path: Path) -> None:
    run_query(build, SQL, format="csv", output=tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().splitlines()[1] == "PMC3460867,2012"


def test_nested_columns_export_to_json(build: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run_query(
        build, "SELECT section_path FROM paragraphs WHERE article_id = 'PMC3460867' LIMIT 1", format="json"
    )
    assert isinstance(json.loads(capsysbinary.readouterr().out)["section_path"], list)


def test_bad_sql_is_a_one_line_query_error(build: Path) -> None:
    with pytest.raises(QueryError) as error:
        run_query(build, "SELECT nope FROM articles")
    assert str(error.value).startswith("SQL error:")
    assert "nope" in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_table_is_a_query_error(build: Path) -> None:
    with pytest.raises(QueryError, match="labels"):
        run_query(build, "SELECT * FROM labels", format="csv")


@pytest.mark.parametrize("format", ["csv", "json"])
def test_show_tables_lists_the_builds_views_only(
    build: Path, format: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    run_query(build, "SHOW TABLES", format=format)  # type: ignore[arg-type]
    out = capsysbinary.readouterr().out.decode()
    assert "articles" in out and "paragraphs" in out
    assert "pmcurate" not in out and "result" not in out


def test_query_help_names_the_subset_and_export_views(capsys: pytest.CaptureFixture[str]) -> None:
    from pmcurate.cli import main

    with pytest.raises(SystemExit):
        main(["query", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "subset_NAME" in text and "subset_NAME_drops" in text and "data_commercial" in text
