"""Writing parsed articles into a build's base tables, one shard at a time.

A *shard* is the unit of work of a harvest: a batch of input documents whose rows land in one
Parquet file per table, all with the same name:

    BUILD/tables/paragraphs/<shard>.parquet
    BUILD/tables/figures/<shard>.parquet
    BUILD/tables/tables/<shard>.parquet
    BUILD/tables/quarantine/<shard>.parquet   (only when some input of the shard failed)
    BUILD/tables/articles/<shard>.parquet

Shard naming rule: a shard name is made of ``[A-Za-z0-9_.-]`` only, does not start with a dot and
does not end in ``.parquet``; the harvester that produces it makes it deterministic from its
inputs (for local files: ``local-`` plus a hash of the names, sizes and mtimes of the files in the
batch), so the same inputs always map to the same shard and a rerun finds its earlier output.

Completion rule: the articles shard is written LAST. Every shard is written atomically
(``schema.write_shard``: temporary name, then rename), so ``tables/articles/<shard>.parquet``
existing means every other table of that shard is complete too; a shard without it is
unfinished and is redone from scratch by the next run (its partial files are overwritten), or,
when the inputs changed so that no task produces that name any more, removed by
``remove_unfinished`` before the run starts. A shard whose inputs all failed still gets an
(empty) articles shard: it is finished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pmcurate import schema
from pmcurate.harvest.jats import ParsedArticle

SHARD_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")

CONTENT_TABLES = ("paragraphs", "figures", "tables")
"""Tables written before ``articles``, in this order."""


def check_shard_name(shard: str) -> str:
    """``shard`` if it follows the naming rule, else ``ValueError``."""
    if not SHARD_NAME.match(shard) or shard.endswith(".parquet"):
        raise ValueError(f"invalid shard name {shard!r}: use [A-Za-z0-9_.-], not starting with '.'")
    return shard


def shard_path(build: str | Path, table: str, shard: str) -> Path:
    """Where shard ``shard`` of table ``table`` lives in ``build``."""
    return schema.table_dir(build, table) / f"{check_shard_name(shard)}.parquet"


def write_parsed(
    build: str | Path,
    shard: str,
    parsed: Iterable[ParsedArticle],
    *,
    source: str,
    harvested_at: datetime | None = None,
) -> dict[str, int]:
    """Write the rows of ``parsed`` as shard ``shard`` of the base tables; return rows per table.

    Article rows get ``source`` (e.g. ``local``, ``pmc-cloud``) and ``harvested_at`` (now, UTC,
    unless given); ``n_paragraphs``/``n_figures``/``n_tables`` are filled from the rows when the
    parser left them empty. ``articles`` is written last: see the module docstring.
    """
    parsed = list(parsed)
    at = harvested_at or datetime.now(UTC)
    rows: dict[str, list[Mapping[str, Any]]] = {
        "paragraphs": [p for a in parsed for p in a.paragraphs],
        "figures": [f for a in parsed for f in a.figures],
        "tables": [t for a in parsed for t in a.tables],
        "articles": [_article_row(a, source=source, harvested_at=at) for a in parsed],
    }
    for table in (*CONTENT_TABLES, "articles"):
        schema.write_shard(
            schema.to_table(rows[table], schema.SCHEMAS[table]), shard_path(build, table, shard)
        )
    return {table: len(table_rows) for table, table_rows in rows.items()}


def _article_row(parsed: ParsedArticle, *, source: str, harvested_at: datetime) -> dict[str, Any]:
    row = dict(parsed.article)
    row["source"] = source
    row["harvested_at"] = harvested_at
    for column, items in (
        ("n_paragraphs", parsed.paragraphs),
        ("n_figures", parsed.figures),
        ("n_tables", parsed.tables),
    ):
        if row.get(column) is None:
            row[column] = len(items)
    return row


def write_quarantine(build: str | Path, shard: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Write ``records`` (rows of ``schema.QUARANTINE``) as ``tables/quarantine/<shard>.parquet``.

    Records without ``at`` get the current time. Nothing is written when there are no records;
    returns the number of records written. Call it before ``write_parsed`` so the shard's
    completion marker (its articles shard) comes last.
    """
    now = datetime.now(UTC)
    rows = [{**record, "at": record.get("at") or now} for record in records]
    if rows:
        schema.write_shard(schema.to_table(rows, schema.QUARANTINE), shard_path(build, "quarantine", shard))
    return len(rows)


def completed_shards(build: str | Path) -> set[str]:
    """Names of the shards whose articles shard exists, i.e. the finished ones."""
    return {path.stem for path in schema.shard_paths(build, "articles")}


def remove_unfinished(build: str | Path, *, prefix: str) -> list[str]:
    """Delete the files of unfinished shards whose names start with ``prefix``; return their names.

    Such files are left by a killed run; without their articles shard they would add orphan
    paragraphs/figures to queries. Temporary files of those shards' writes (``.tmp-<prefix>…``,
    hidden from readers but left on disk by a kill) are deleted too. Run it before a harvest
    starts, never during one.
    """
    completed = completed_shards(build)
    removed: set[str] = set()
    for table in (*CONTENT_TABLES, "quarantine", "articles"):
        schema.remove_temporaries(schema.table_dir(build, table), prefix)
    for table in (*CONTENT_TABLES, "quarantine"):
        for path in schema.shard_paths(build, table):
            if path.stem.startswith(prefix) and path.stem not in completed:
                path.unlink()
                removed.add(path.stem)
    return sorted(removed)
