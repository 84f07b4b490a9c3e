"""DuckDB views over exported datasets: an export folder, or a dataset on the Hub (``hf://``).

An export folder (``OUT/provenance/<config>.json`` beside the shards) gets, for every Parquet
config, a view named after the config's folder over all its splits, with a ``split`` column
(``data`` for the default config, as on the Hub; ``default`` is an SQL keyword), and one view per
split named ``<folder>_<split>`` (``data_commercial``, ``figures_train``).

A Hub target is read by DuckDB itself through its ``hf://`` file system (the ``httpfs`` extension;
DuckDB loads it on first use, which needs network access):

- ``hf://datasets/ORG/NAME[@REVISION]``: the default config, ``data/*.parquet``, as view ``data``;
- ``hf://datasets/ORG/NAME[@REVISION]/FOLDER``: that config folder, as a view named after it;
- a path to ``.parquet`` files (globs allowed): view ``data``.

A token in ``HF_TOKEN`` becomes a DuckDB ``huggingface`` secret, so private datasets work; it is
never printed. Split views are not made for Hub targets: their split names are in the dataset
card, and the ``split`` column (from the file names) serves instead.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import duckdb

from pmcurate.errors import Fatal
from pmcurate.export.exporter import PROVENANCE_DIR

_HF = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?P<rev>@[^/]+)?(?:/(?P<rest>.*))?$")
_SPLIT_FROM_FILE = "regexp_extract(parse_filename(filename), '^(.*)-[0-9]{5}-of-[0-9]{5}', 1)"


class TargetError(Fatal):
    """A target that is not an export folder or a well-formed ``hf://datasets/`` path."""


def is_export(path: Path) -> bool:
    return (path / PROVENANCE_DIR).is_dir()


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_sql(pattern: str) -> str:
    return (
        f"SELECT * EXCLUDE (filename), {_SPLIT_FROM_FILE} AS split "
        f"FROM read_parquet({_quote_string(pattern)}, filename = true)"
    )


def export_views(folder: Path) -> dict[str, str]:
    """View name → SQL for every Parquet config and split of the export folder ``folder``."""
    views: dict[str, str] = {}
    for path in sorted((folder / PROVENANCE_DIR).glob("*.json")):
        config = json.loads(path.read_text())
        if config.get("format") != "parquet":
            continue
        shards = (folder / config["folder"]).resolve()
        views[config["folder"]] = _view_sql(str(shards / "*.parquet"))
        for split in config["splits"]:
            views[f"{config['folder']}_{split}"] = _view_sql(str(shards / f"{split}-*.parquet"))
    if not views:
        raise TargetError(f"{folder}: the export holds no Parquet config to query")
    return views


def hub_views(target: str) -> dict[str, str]:
    """View name → SQL for a ``hf://datasets/ORG/NAME[@REV][/FOLDER | /FILES]`` target."""
    match = _HF.match(target.rstrip("/"))
    if not match:
        raise TargetError(f"{target}: expected hf://datasets/ORG/NAME[@REVISION][/FOLDER or /FILES.parquet]")
    base = f"hf://datasets/{match['repo']}{match['rev'] or ''}"
    rest = match["rest"]
    if not rest:
        return {"data": _view_sql(f"{base}/data/*.parquet")}
    if rest.endswith(".parquet"):
        return {"data": _view_sql(f"{base}/{rest}")}
    return {rest.split("/")[-1]: _view_sql(f"{base}/{rest}/*.parquet")}


def create_views(con: duckdb.DuckDBPyConnection, views: dict[str, str]) -> duckdb.DuckDBPyConnection:
    for name, sql in views.items():
        con.execute(f"CREATE OR REPLACE VIEW {_quote_name(name)} AS {sql}")
    return con


def connect_export(folder: Path) -> duckdb.DuckDBPyConnection:
    return create_views(duckdb.connect(), export_views(folder))


def connect_hub(target: str) -> duckdb.DuckDBPyConnection:
    views = hub_views(target)
    con = duckdb.connect()
    token = os.environ.get("HF_TOKEN")
    if token:
        con.execute(f"CREATE SECRET pmcurate_hf (TYPE huggingface, TOKEN {_quote_string(token)})")
    return create_views(con, views)
