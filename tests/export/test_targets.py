"""``pmcurate query`` over export folders and ``hf://`` paths (views built by ``export.targets``).

The Hub is not reachable from the test machine: for ``hf://`` targets only the views' SQL (the
paths handed to DuckDB's ``read_parquet``) is tested, not a query against the Hub.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pmcurate.export import targets
from pmcurate.export.exporter import export
from pmcurate.export.query import connect
from pmcurate.export.steps import ExportConfig


@pytest.fixture(scope="module")
def exported(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("targets") / "dataset"
    export(build, ExportConfig(out=out), progress=False)
    export(build, ExportConfig(out=out, preset="image-text", name="figures", split_by="none"), progress=False)
    return out


def test_export_folder_has_a_view_per_config_and_split(exported: Path) -> None:
    con = connect(exported)
    views = {row[0] for row in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == {"data", "data_commercial", "data_noncommercial", "data_other",
                     "figures", "figures_train"}  # fmt: skip


def test_config_view_has_every_split_with_its_name(exported: Path) -> None:
    rows = connect(exported).sql("SELECT split, count(*) FROM data GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [("commercial", 355), ("noncommercial", 95), ("other", 15)]
    assert connect(exported).sql("SELECT count(*) FROM figures_train").fetchall() == [(46,)]


def test_hub_dataset_root_reads_the_default_config() -> None:
    ((name, sql),) = targets.hub_views("hf://datasets/alice/pmc").items()
    assert name == "data"
    assert "read_parquet('hf://datasets/alice/pmc/data/*.parquet', filename = true)" in sql


def test_hub_revision_and_config_folder_are_kept_in_the_path() -> None:
    views = targets.hub_views("hf://datasets/alice/pmc@refs%2Fconvert%2Fparquet/figures/")
    assert list(views) == ["figures"]
    assert "'hf://datasets/alice/pmc@refs%2Fconvert%2Fparquet/figures/*.parquet'" in views["figures"]


def test_hub_file_glob_is_passed_through() -> None:
    views = targets.hub_views("hf://datasets/alice/pmc/data/commercial-*.parquet")
    assert "'hf://datasets/alice/pmc/data/commercial-*.parquet'" in views["data"]


def test_malformed_hub_path_is_refused() -> None:
    with pytest.raises(targets.TargetError, match="expected hf://datasets/ORG/NAME"):
        targets.hub_views("hf://models/alice")
