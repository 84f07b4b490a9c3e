"""``pmcurate query TARGET "SQL"``: DuckDB over a build, one view per table.

``connect`` is the one place that turns a target into a DuckDB connection with views; every
command that runs SQL over pmcurate data goes through it, so teaching it a new kind of target
(an export folder ``out/<name>/data/*.parquet``, an ``hf://datasets/...`` path) makes that target
queryable everywhere.

Output formats: ``table`` (a readable box table, DuckDB's own rendering, long results elided),
``csv`` (with header), ``json`` (one JSON object per line), ``parquet`` (zstd; needs an output
file). ``csv``/``json``/``table`` go to stdout unless an output file is given; the result is
streamed by DuckDB, not loaded into Python.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Literal

import duckdb

from pmcurate.build import open_build
from pmcurate.errors import Fatal, one_line

Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json", "parquet")

_COPY_OPTIONS = {
    "csv": "FORMAT csv, HEADER true",
    "json": "FORMAT json",
    "parquet": "FORMAT parquet, COMPRESSION zstd",
}
_RESULT_VIEW = "result"
"""The result's name in the separate connection that writes it: never a view beside the user's."""


class QueryError(Fatal):
    """Bad SQL or an unusable target/format: the message is one line, fit for the user."""


def connect(target: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table of ``target``.

    ``target`` is a build folder (``BUILD/tables/<table>/*.parquet``: views ``articles``,
    ``paragraphs``, ``figures``, ``tables``, ``labels``, ``quarantine``… whichever exist), an
    export folder (a view per config and per split, see ``export.targets``) or an
    ``hf://datasets/ORG/NAME[/FOLDER]`` path, read by DuckDB from the Hub.
    """
    from pmcurate.export import targets

    text = os.fspath(target)
    try:
        if text.startswith("hf://"):
            return targets.connect_hub(text)
        if targets.is_export(Path(text)):
            return targets.connect_export(Path(text))
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from None
    return open_build(target).duckdb()


def run_query(
    target: str | os.PathLike[str],
    sql: str,
    *,
    format: Format = "table",
    output: str | os.PathLike[str] | None = None,
) -> None:
    """Run ``sql`` over ``target`` and write the result as ``format`` to ``output`` (default stdout)."""
    if format not in FORMATS:
        raise QueryError(f"unknown format {format!r} (choose from {', '.join(FORMATS)})")
    if format == "parquet" and output is None:
        raise QueryError("--format parquet needs --output FILE (Parquet is not written to a terminal)")
    con = connect(target)
    try:
        relation = con.sql(sql)
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {one_line(exc)}") from None
    if relation is None:
        raise QueryError("the SQL returned no result (use a SELECT, or a statement that returns rows)")
    try:
        if format == "table":
            _write_text(str(relation), output)
        else:
            # the result streams into a connection of its own, so SHOW TABLES lists only the target's
            writer = duckdb.connect()
            writer.register(_RESULT_VIEW, relation.to_arrow_reader())
            _copy(writer, format, output)
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {one_line(exc)}") from None


def _write_text(text: str, output: str | os.PathLike[str] | None) -> None:
    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def _copy(con: duckdb.DuckDBPyConnection, format: Format, output: str | os.PathLike[str] | None) -> None:
    """COPY the result view to ``output``, or to a temporary file streamed to stdout."""
    if output is not None:
        _copy_to(con, format, Path(output))
        return
    with tempfile.TemporaryDirectory(prefix="pmcurate-query-") as tmp:
        path = Path(tmp) / f"result.{format}"
        _copy_to(con, format, path)
        sys.stdout.flush()
        with open(path, "rb") as result:
            shutil.copyfileobj(result, sys.stdout.buffer)
        sys.stdout.buffer.flush()


def _copy_to(con: duckdb.DuckDBPyConnection, format: Format, path: Path) -> None:
    target = str(path).replace("'", "''")
    con.execute(f"COPY (FROM {_RESULT_VIEW}) TO '{target}' ({_COPY_OPTIONS[format]})")
