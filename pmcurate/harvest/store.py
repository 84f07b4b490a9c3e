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

Version rule, the same for every source: of several rows of one ``article_id``, the highest
``version`` wins (a missing version counts lowest); between equal versions, the most recent copy
(the later ``harvested_at``, or for ``harvest local`` the file read later in input order), then
the later shard name and row. A shard never holds one ``article_id`` twice (``ShardRows`` keeps
the winner); ``settle_versions`` applies the rule across shards. Every source writes its shards
through ``write_harvest_shard`` and settles through ``settle_versions``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pmcurate import schema
from pmcurate.harvest.jats import Paragraphs, ParsedArticle

log = logging.getLogger(__name__)

SHARD_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")

CONTENT_TABLES = ("paragraphs", "figures", "tables")
"""Tables written before ``articles``, in this order."""

CHUNK_ARTICLES = 64
"""Articles a ``ShardRows`` holds as Python values before turning them into Arrow."""


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

    Article rows get ``source`` (e.g. ``local``, ``pmc``) and ``harvested_at`` (now, UTC, unless
    given); ``n_paragraphs``/``n_figures``/``n_tables`` are filled from the rows when the parser
    left them empty. Several copies of one article keep only the winner of the version rule
    (``ShardRows``). ``articles`` is written last: see the module docstring.
    """
    rows = ShardRows(source=source)
    for article in parsed:
        rows.add(article)
    return rows.write(build, shard, harvested_at=harvested_at)


def write_harvest_shard(
    build: str | Path,
    shard: str,
    rows: ShardRows,
    quarantine: Iterable[Mapping[str, Any]],
    *,
    harvested_at: datetime | None = None,
) -> dict[str, int]:
    """Write one finished shard of any source: its quarantine rows, then its tables, ``articles`` last.

    The one writer every harvest source uses, so that a shard is complete exactly when its articles
    shard exists whatever wrote it. Returns rows per table, ``quarantined`` and ``duplicates``
    (copies of an article left out by the version rule inside the shard)."""
    quarantined = write_quarantine(build, shard, quarantine)
    written = rows.write(build, shard, harvested_at=harvested_at)
    if rows.duplicates:
        log.info("shard %s: %d older or repeated copies of an article left out", shard, rows.duplicates)
    return {**written, "quarantined": quarantined, "duplicates": rows.duplicates}


def version_rank(parsed: ParsedArticle) -> int:
    """The version of a parsed article for the version rule (a missing version counts lowest)."""
    version = parsed.article.get("version")
    return -1 if version is None else int(version)


class ShardRows:
    """The rows of one shard, added article by article, kept as Arrow; ``write`` writes the shard.

    A harvest shard holds up to a thousand articles. Held as Python objects until the shard is
    written, their millions of objects make every garbage collection walk them and keep the parser
    from reusing the memory it freed (fresh pages, cold caches): parsing inside a harvest ran ~20%
    slower than parsing alone. Here every ``CHUNK_ARTICLES`` articles their rows become Arrow
    (``_Columns``), while their values are still in the CPU caches; how many articles a chunk holds
    does not change the bytes written.

    Copies of one ``article_id`` follow the version rule: one is kept, the highest version or else
    the one added later, and it takes the later one's place (it was read last).
    """

    def __init__(self, *, source: str) -> None:
        schema.pyarrow_without_pandas()
        self.source = source
        self.duplicates = 0
        self._columns = {name: _Columns(schema.SCHEMAS[name]) for name in (*CONTENT_TABLES, "articles")}
        self._spans: dict[str, dict[str, tuple[int, int]]] = {}
        self._versions: dict[str, int] = {}
        self._unconverted = 0

    def __len__(self) -> int:
        return len(self._spans)

    def add(self, parsed: ParsedArticle) -> None:
        article_id = parsed.article["article_id"]
        version = version_rank(parsed)
        earlier = self._spans.pop(article_id, None)
        if earlier is not None:
            self.duplicates += 1
            for name, span in earlier.items():
                self._columns[name].drop(span)
            if self._versions[article_id] > version:  # the earlier copy wins: it moves last
                self._spans[article_id] = {
                    name: self._columns[name].repeat(span) for name, span in earlier.items()
                }
                return
        self._versions[article_id] = version
        self._spans[article_id] = {
            "paragraphs": self._columns["paragraphs"].extend_paragraphs(parsed),
            "figures": self._columns["figures"].extend(parsed.figures),
            "tables": self._columns["tables"].extend(parsed.tables),
            "articles": self._columns["articles"].extend([_article_row(parsed, source=self.source)]),
        }
        self._unconverted += 1
        if self._unconverted >= CHUNK_ARTICLES:
            for columns in self._columns.values():
                columns.convert()
            self._unconverted = 0

    def write(self, build: str | Path, shard: str, *, harvested_at: datetime | None = None) -> dict[str, int]:
        """Write the shard (``articles`` last); return rows per table."""
        at = harvested_at or datetime.now(UTC)
        written = {}
        for name, columns in self._columns.items():
            rows = columns.table()
            if name == "articles":
                index = schema.ARTICLES.get_field_index("harvested_at")
                stamps = pa.array([at] * rows.num_rows, schema.TIMESTAMP)
                rows = rows.set_column(index, schema.ARTICLES.field(index), stamps)
            schema.write_shard(rows, shard_path(build, name, shard))
            written[name] = rows.num_rows
        return written


class _Columns:
    """The rows of one table: Arrow chunks, then the rows not yet converted (dicts keyed by column
    name, a missing key null; or, for paragraphs, the walk's ``Paragraphs``); rows are numbered in
    the order they were added.

    The rows become Arrow as one struct array of ``schema``'s fields, flattened into the columns:
    Arrow reads each row's values in C, where pulling each column out of the rows in Python first
    (one list per column) cost more than the conversion itself. Paragraphs come as columns already,
    their texts as UTF-8 (``_paragraph_tables``): no row is built, no text encoded again."""

    def __init__(self, table_schema: pa.Schema) -> None:
        self.schema = table_schema
        self.rows = 0
        self._struct = pa.struct(list(table_schema))
        self._unconverted: list[Mapping[str, Any]] = []
        self._paragraphs: list[Paragraphs] = []
        self._chunks: list[pa.Table] = []
        self._dropped: list[tuple[int, int]] = []

    def extend(self, rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Append ``rows``; return the span of rows they take."""
        if self._paragraphs:  # in the order added
            self.convert()
        start = self.rows
        self._unconverted += rows
        self.rows += len(rows)
        return start, self.rows

    def extend_paragraphs(self, parsed: ParsedArticle) -> tuple[int, int]:
        """Append the paragraphs of ``parsed`` (a table of ``schema.PARAGRAPHS``); return their span."""
        columns = parsed.paragraph_columns
        if columns is None:
            return self.extend(parsed.paragraphs)
        if self._unconverted:
            self.convert()
        start = self.rows
        self._paragraphs.append(columns)
        self.rows += len(columns)
        return start, self.rows

    def convert(self) -> None:
        """Turn the rows not yet converted into Arrow chunks."""
        if self._unconverted:
            rows = pa.array(self._unconverted, type=self._struct)
            self._chunks.append(pa.Table.from_arrays(rows.flatten(), schema=self.schema))
            self._unconverted = []
        if self._paragraphs:
            self._chunks += _paragraph_tables(self._paragraphs, self.schema)
            self._paragraphs = []

    def drop(self, span: tuple[int, int]) -> None:
        """Leave the rows of ``span`` out of the table."""
        self._dropped.append(span)

    def repeat(self, span: tuple[int, int]) -> tuple[int, int]:
        """Append a copy of the rows of ``span``; return the span the copy takes."""
        start, stop = span
        if start == stop:
            return self.rows, self.rows
        self.convert()
        self._chunks.append(pa.concat_tables(self._chunks).slice(start, stop - start))
        self.rows += stop - start
        return self.rows - (stop - start), self.rows

    def table(self) -> pa.Table:
        """The rows in order, one chunk, without the dropped ones."""
        self.convert()
        if not self._chunks:
            return self.schema.empty_table()
        table = pa.concat_tables(self._chunks).combine_chunks()
        if self._dropped:
            keep = [True] * table.num_rows
            for start, stop in self._dropped:
                keep[start:stop] = [False] * (stop - start)
            table = table.filter(pa.array(keep, pa.bool_()))  # imports pyarrow.compute: only with copies
        return table


MAX_TEXT_BYTES = 2**31 - 1
"""The most bytes of text one Arrow ``string`` array holds (its offsets are 32-bit)."""


def _paragraph_tables(parts: list[Paragraphs], table_schema: pa.Schema) -> list[pa.Table]:
    """The paragraphs of ``parts`` as tables of ``table_schema`` (``schema.PARAGRAPHS``), as few as
    the texts' size allows (one, short of 2 GiB)."""
    tables: list[pa.Table] = []
    batch: list[Paragraphs] = []
    size = 0
    for part in parts:
        if batch and size + len(part.text) > MAX_TEXT_BYTES:
            tables.append(_paragraph_table(batch, table_schema))
            batch, size = [], 0
        batch.append(part)
        size += len(part.text)
    if batch:
        tables.append(_paragraph_table(batch, table_schema))
    return tables


def _paragraph_table(parts: list[Paragraphs], table_schema: pa.Schema) -> pa.Table:
    """One table of the paragraphs of ``parts``: each column's values gathered in one list, the texts
    one string array over the UTF-8 the walk wrote."""
    columns: dict[str, list[Any]] = {name: [] for name in table_schema.names if name != "text"}
    offsets = [0]
    for part in parts:
        count = len(part)
        columns["paragraph_id"] += part.paragraph_id
        columns["article_id"] += [part.article_id] * count
        columns["path"] += part.path
        columns["ordinal"] += range(count)
        columns["section_title"] += part.section_title
        columns["section_path"] += part.section_path
        columns["section_type"] += part.section_type
        columns["n_words"] += part.n_words
        base = offsets[-1]
        offsets += [base + end for end in part.ends]
    count = len(offsets) - 1
    data = pa.py_buffer(b"".join(part.text for part in parts))
    text = pa.Array.from_buffers(pa.string(), count, [None, pa.array(offsets, pa.int32()).buffers()[1], data])
    arrays = [
        text if field.name == "text" else pa.array(columns[field.name], type=field.type)
        for field in table_schema
    ]
    return pa.Table.from_arrays(arrays, schema=table_schema)


def settle_versions(
    build: str | Path, *, shards: Iterable[str] | None = None, order: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """Keep one row per ``article_id`` across article shards by the version rule; rows removed per table.

    ``shards``: the completed shards to consider (default: all of the build). ``order``: a
    sortable recency per shard for copies of equal version (``harvest local``: the position of
    the shard's files in the input order); default: ``harvested_at``. Each shard holding a losing
    copy is rewritten atomically without that article (content tables first, ``articles`` last),
    so a run killed half-way is finished by the next call.
    """
    names = sorted(completed_shards(build) if shards is None else set(shards) & completed_shards(build))
    if not _has_copies(build, names):
        return dict.fromkeys((*CONTENT_TABLES, "articles"), 0)
    winners: dict[str, tuple[Any, ...]] = {}
    holders: dict[str, set[str]] = {}
    copies: Counter[tuple[str, str]] = Counter()
    for name in names:
        rows = pq.ParquetFile(shard_path(build, "articles", name)).read(  # not read_table: no pyarrow.dataset
            columns=["article_id", "version", "harvested_at"]
        )
        for index, row in enumerate(rows.to_pylist()):
            recency = order[name] if order is not None else _timestamp(row["harvested_at"])
            version = -1 if row["version"] is None else int(row["version"])
            rank = (version, recency, name, index)
            article_id = row["article_id"]
            holders.setdefault(article_id, set()).add(name)
            copies[article_id, name] += 1
            if article_id not in winners or rank > winners[article_id]:
                winners[article_id] = rank
    for (article_id, name), count in copies.items():
        if count > 1:  # only shards of older pmcurate versions hold two: rows cannot be told apart
            log.warning("shard %s holds %d copies of %s; left as they are", name, count, article_id)
    losers: dict[str, set[str]] = {}
    for article_id, shard_names in holders.items():
        for name in shard_names - {winners[article_id][2]}:
            losers.setdefault(name, set()).add(article_id)
    removed = dict.fromkeys((*CONTENT_TABLES, "articles"), 0)
    for name, article_ids in sorted(losers.items()):
        for table, count in _rewrite_without(build, name, article_ids).items():
            removed[table] += count
        log.info("shard %s: replaced older copies of %s", name, ", ".join(sorted(article_ids)))
    return removed


def _has_copies(build: str | Path, names: list[str]) -> bool:
    """Whether an ``article_id`` has several rows in the articles shards ``names`` (usually not: the
    rule then has nothing to do, and only this column is read)."""
    seen: set[str] = set()
    rows = 0
    for name in names:
        ids = pq.ParquetFile(shard_path(build, "articles", name)).read(columns=["article_id"]).column(0)
        seen.update(ids.to_pylist())
        rows += len(ids)
    return len(seen) < rows


def _timestamp(value: datetime | None) -> float:
    return value.timestamp() if value is not None else float("-inf")


def _rewrite_without(build: str | Path, shard: str, article_ids: set[str]) -> dict[str, int]:
    """Rewrite every table of ``shard`` without the rows of ``article_ids``, articles last."""
    removed: dict[str, int] = {}
    value_set = pa.array(sorted(article_ids), pa.string())
    for table in (*CONTENT_TABLES, "articles"):
        path = shard_path(build, table, shard)
        if not path.is_file():
            continue
        import pyarrow.compute as pc

        data = pq.read_table(path, schema=schema.SCHEMAS[table])
        kept = data.filter(pc.invert(pc.is_in(data["article_id"], value_set=value_set)))
        schema.write_shard(kept, path)
        removed[table] = data.num_rows - kept.num_rows
    return removed


def _article_row(parsed: ParsedArticle, *, source: str) -> dict[str, Any]:
    """The articles row of ``parsed`` (``harvested_at`` is filled when the shard is written)."""
    row = dict(parsed.article)
    row["source"] = source
    if row.get("license_source") is None and row.get("license") is not None:
        row["license_source"] = "xml"
    for column, count in (
        ("n_paragraphs", parsed.n_paragraphs),
        ("n_figures", len(parsed.figures)),
        ("n_tables", len(parsed.tables)),
    ):
        if row.get(column) is None:
            row[column] = count
    return row


def write_quarantine(build: str | Path, shard: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Write ``records`` (rows of ``schema.QUARANTINE``) as ``tables/quarantine/<shard>.parquet``.

    Records without ``at`` get the current time. Nothing is written when there are no records;
    returns the number of records written. Call it before ``write_parsed`` so the shard's
    completion marker (its articles shard) comes last.
    """
    schema.pyarrow_without_pandas()
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
