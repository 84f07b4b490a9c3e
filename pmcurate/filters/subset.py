"""Subsets: declarative, reproducible selections of a build's rows, each dropped row with its reason.

A subset is DuckDB SQL over views of the build's tables. ``make_subset`` evaluates the rules in
order on every row (the first rule a row fails is the one recorded), removes duplicates among the
rows that pass, repeats rows that match upsampling rules, and writes:

- ``BUILD/subsets/NAME/part-NNNNN.parquet``: the kept rows, in reading order (article, then
  paragraph ordinal), with the schema ``schema.SUBSET_PARAGRAPHS`` (or ``SUBSET_FIGURES``);
- ``BUILD/subsets/NAME/drops/part-NNNNN.parquet``: one ``schema.DROPS`` row per dropped row;
- ``BUILD/subsets/NAME/subset.json``: the parameters and the counts, rule by rule.

The folder is written under a temporary name and renamed when complete, and nothing in it depends
on the time or on the machine: the same command on the same build gives byte-identical files.

Row views, one per unit (every one has ``id``, ``text`` and ``n_words``):

- ``paragraph``: the paragraph's columns, its article's columns, its labels (when the build has a
  labels table) and its article's statistics: ``article_paragraphs``, ``article_words`` and, with
  labels, ``article_clinical_paragraphs``, ``article_clinical_fraction``, ``article_educational_mean``.
- ``article``: the article's columns and the same statistics; ``text`` is title and abstract. Rules
  pick articles; the subset holds the paragraphs of the articles kept.
- ``figure``: the figure's columns and its article's; ``text`` is the caption.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from pmcurate import schema
from pmcurate.build import open_build
from pmcurate.filters import dedup as dedup_mod
from pmcurate.filters import language
from pmcurate.filters.rules import Rule, RuleError, parse_rule, where_rule

log = logging.getLogger(__name__)

SOURCES = {"paragraphs": ("paragraph", "article"), "figures": ("figure",)}
DEDUP_KINDS = {"paragraphs": ("exact", "near"), "figures": ("image", "caption")}
SHARD_ROWS = 200_000
MEMORY_LIMIT = "4GB"
"""DuckDB's memory budget for a subset; beyond it sorts and joins spill to the subset's temporary
folder, so a build of any size runs in bounded memory (set ``PMCURATE_DUCKDB_MEMORY`` to change)."""
LABEL_COLUMNS = frozenset({*schema.LABELS.names, "labels_annotator"}) - {"paragraph_id"}
LABEL_STATS = ("article_clinical_paragraphs", "article_clinical_fraction", "article_educational_mean")
ORDER = {
    "paragraph": ("article_id", "ordinal", "id"),
    "article": ("id",),
    "figure": ("article_id", "id"),
}
"""The order of a unit's rows: ``seq``, what "first" means for duplicates, and the output order."""
BASE_TABLES = {"paragraph": ("paragraphs", "paragraph_id"), "figure": ("figures", "figure_id")}
"""The table and key holding the texts that dedup reads, by unit."""


class SubsetError(ValueError):
    """A subset that cannot be made as asked: the message says why and what to do."""


class MissingTableError(SubsetError):
    """A rule or condition reads a table the build does not have."""


@dataclass(frozen=True)
class SubsetResult:
    """What a subset run wrote: where, and how many rows went each way."""

    path: Path
    input_rows: int
    kept_rows: int
    output_rows: int
    dropped: dict[str, int] = field(default_factory=dict)


def subset_dir(build: str | os.PathLike[str], name: str) -> Path:
    """The folder of subset ``name`` inside a build."""
    return Path(build) / "subsets" / name


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""A subset name: a folder name and part of the ``subset_NAME`` query view, so no spaces or slashes."""


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise SubsetError(
            f"bad subset name {name!r}: letters, digits, '-', '_' and '.' only (first a letter or digit)"
        )


def connect(
    build: str | os.PathLike[str], *, workdir: Path | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table of the build (``build.open_build``); past
    ``memory_limit`` (DuckDB syntax, ``"4GB"``) DuckDB spills its sorts and joins to ``workdir``."""
    try:
        opened = open_build(build)
    except FileNotFoundError as exc:
        raise SubsetError(str(exc)) from None
    con = duckdb.connect()
    if workdir is not None:
        con.execute(f"SET temp_directory = {_quote(str(workdir / 'duckdb'))}")
    if memory_limit is not None:
        con.execute(f"SET memory_limit = {_quote(memory_limit)}")
    return opened.duckdb(con)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }


def _missing(table: str, build: Path, what: str) -> MissingTableError:
    how = {
        "labels": "make it with `pmcurate annotate apply` (labels from the fastText student)",
        "articles": "harvest the build first (`pmcurate harvest ...`)",
        "paragraphs": "harvest the build first (`pmcurate harvest ...`)",
        "figures": "harvest the build first (`pmcurate harvest ...`)",
    }[table]
    return MissingTableError(
        f"{what} needs the {table} table, which build {build} does not have "
        f"({schema.table_dir(build, table)}/ has no shards): {how}"
    )


def _create_views(con: duckdb.DuckDBPyConnection, build: Path, source: str) -> None:
    """The row views (``paragraph_rows``, ``article_rows``, ``figure_rows``) over the table views."""
    tables = _tables(con)
    if source not in tables:
        raise _missing(source, build, f"a subset of {source}")
    if "articles" not in tables:
        raise _missing("articles", build, "a subset")
    labels = "labels" in tables
    if source == "figures":
        con.execute(
            """CREATE TEMP VIEW figure_rows AS
            SELECT f.figure_id AS id, f.*, a.* EXCLUDE (article_id), f.caption AS text,
                   CASE WHEN trim(coalesce(f.caption, '')) = '' THEN 0
                        ELSE len(regexp_split_to_array(trim(f.caption), '\\s+')) END AS n_words
            FROM figures f LEFT JOIN articles a ON a.article_id = f.article_id"""
        )
        return
    label_stats = (
        """, count(*) FILTER (WHERE l.document_type = 'clinical_case') AS article_clinical_paragraphs,
           count(*) FILTER (WHERE l.document_type = 'clinical_case') / count(*) AS article_clinical_fraction,
           avg(l.educational_score)::DOUBLE AS article_educational_mean"""
        if labels
        else ""
    )
    label_join = "LEFT JOIN labels l ON l.paragraph_id = p.paragraph_id" if labels else ""
    con.execute(
        f"""CREATE TEMP VIEW article_stats AS
        SELECT p.article_id, count(*) AS article_paragraphs, sum(p.n_words) AS article_words {label_stats}
        FROM paragraphs p {label_join} GROUP BY p.article_id"""
    )
    label_columns = (
        ", l.* EXCLUDE (paragraph_id, annotator), l.annotator AS labels_annotator" if labels else ""
    )
    con.execute(
        f"""CREATE TEMP VIEW paragraph_rows AS
        SELECT p.paragraph_id AS id, p.*, a.* EXCLUDE (article_id) {label_columns}, s.* EXCLUDE (article_id)
        FROM paragraphs p
        LEFT JOIN articles a ON a.article_id = p.article_id
        {label_join}
        LEFT JOIN article_stats s ON s.article_id = p.article_id"""
    )
    con.execute(
        """CREATE TEMP VIEW article_rows AS
        SELECT a.article_id AS id, a.*, s.* EXCLUDE (article_id),
               concat_ws(E'\\n', a.title, a.abstract) AS text, coalesce(s.article_words, 0) AS n_words
        FROM articles a LEFT JOIN article_stats s ON s.article_id = a.article_id"""
    )


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE {view}").fetchall()]


def _check_rule(rule: Rule, unit: str, tables: set[str], build: Path) -> None:
    if unit not in rule.units:
        raise RuleError(
            f"rule {rule.name} does not apply to {unit}s (it applies to {', '.join(sorted(rule.units))})"
        )
    for table in rule.needs:
        if table not in tables:
            raise _missing(table, build, f"rule {rule.name}")


def _bind_error(exc: duckdb.Error, rule: Rule, tables: set[str], build: Path, view: str) -> SubsetError:
    """A user-facing error for SQL that does not bind, with the fix when it is a missing labels table."""
    message = str(exc).splitlines()[0]
    label_words = LABEL_COLUMNS | set(LABEL_STATS)
    if "labels" not in tables and any(word in rule.predicate for word in label_words):
        return _missing("labels", build, f"{rule.name} ({rule.predicate})")
    return SubsetError(f"{rule.name}: {rule.predicate} cannot be evaluated on {view}: {message}")


CONDITION_TYPES = ("BOOLEAN", '"NULL"')


def _validate(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule], view: str, build: Path) -> None:
    """Bind every rule's SQL once (LIMIT 0) so a typo fails fast with the rule's name."""
    tables = _tables(con)
    for rule in rules:
        try:
            con.execute(f"SELECT ({rule.predicate})::BOOLEAN, ({rule.reason})::VARCHAR FROM {view} LIMIT 0")
            kind = str(con.sql(f"SELECT ({rule.predicate}) FROM {view} LIMIT 0").types[0])
        except duckdb.Error as exc:
            raise _bind_error(exc, rule, tables, build, view) from None
        if kind not in CONDITION_TYPES:  # a text would bind, then fail row by row while judging
            raise SubsetError(
                f"{rule.name}: {rule.predicate} is a {kind} value, not a condition "
                "(write a comparison, e.g. n_words >= 64 or license = 'CC BY')"
            )


def _case(branches: Sequence[tuple[str, str]], otherwise: str) -> str:
    """``CASE WHEN c1 THEN v1 ... ELSE otherwise END`` (just ``otherwise`` without branches)."""
    if not branches:
        return otherwise
    return "CASE " + " ".join(f"WHEN {c} THEN {v}" for c, v in branches) + f" ELSE {otherwise} END"


def _judge(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule], view: str, unit: str) -> None:
    """Table ``judged``: every row's id, position in the subset's order, and the rule that dropped it
    (the first rule it fails; a NULL predicate fails), with the rule's reason."""
    first_failing = _case(
        [(f"NOT coalesce(({r.predicate})::BOOLEAN, false)", str(k)) for k, r in enumerate(rules)], "NULL"
    )
    names = _case([(f"drop_k = {k}", _quote(r.name)) for k, r in enumerate(rules)], "NULL::VARCHAR")
    reasons = _case(
        [(f"drop_k = {k}", f"({r.reason})::VARCHAR") for k, r in enumerate(rules)], "NULL::VARCHAR"
    )
    order = ", ".join(ORDER[unit])
    extra = "".join(f", {c}" for c in ORDER[unit] if c not in ("id", "article_id"))
    # the inner query keeps only narrow columns, so the window's sort never carries texts
    con.execute(
        f"""CREATE TEMP TABLE judged AS
        SELECT id, article_id, row_number() OVER (ORDER BY {order}) - 1 AS seq, rule, reason,
               NULL::VARCHAR AS cluster
        FROM (
            SELECT id, article_id {extra}, {first_failing} AS drop_k,
                   {names} AS rule, coalesce({reasons}, {names}) AS reason
            FROM {view}
        )"""
    )


def _survivors(
    con: duckdb.DuckDBPyConnection, unit: str, column: str, batch_rows: int
) -> pa.RecordBatchReader:
    """``seq`` and ``column`` (as ``text``) of the rows still kept, in the subset's order. Read from
    the base table, not the row view: the view's joins are not needed for one column."""
    table, key = BASE_TABLES[unit]
    return con.sql(
        f"""SELECT j.seq, r.{column} AS text FROM judged j JOIN {table} r ON r.{key} = j.id
        WHERE j.rule IS NULL ORDER BY j.seq"""
    ).to_arrow_reader(batch_rows)


def _drop_repeated_keys(con: duckdb.DuckDBPyConnection, keys: str, rule: str, what: str) -> None:
    """Drop every kept row whose key (columns ``keys`` of the relation ``keyed``, joined on ``seq``)
    equals an earlier kept row's."""
    con.execute(
        f"""UPDATE judged SET rule = {_quote(rule)}, cluster = d.representative,
               reason = {_quote(what + " of ")} || d.representative
        FROM (
            SELECT j.id, first_value(j.id) OVER (PARTITION BY {keys} ORDER BY j.seq) AS representative
            FROM judged j JOIN keyed k ON k.seq = j.seq
            WHERE j.rule IS NULL
        ) d
        WHERE judged.id = d.id AND d.representative <> d.id"""
    )


def _exact_dedup_text(con: duckdb.DuckDBPyConnection, unit: str, column: str, rule: str, what: str) -> None:
    """Exact duplicates of normalized ``column`` text, hashed in batches (``dedup.exact_keys``);
    rows without letters or digits never match."""
    parts = []
    for batch in _survivors(con, unit, column, 100_000):
        keys = dedup_mod.exact_keys(batch.column("text"))
        # a copy: a column of DuckDB's batch would keep the whole batch (its texts) alive
        parts.append(keys.append_column("seq", pa.array(batch.column("seq").to_numpy().copy())))
    if not parts:
        return
    keyed = pa.concat_tables(parts)
    con.register("keyed", keyed.filter(pc.is_valid(keyed["k1"])))
    _drop_repeated_keys(con, "k1, k2", rule, what)
    con.unregister("keyed")


def _exact_dedup_column(con: duckdb.DuckDBPyConnection, unit: str, column: str, rule: str, what: str) -> None:
    """Exact duplicates of a column that is already a content hash (``image_sha256``); nulls never match."""
    table, key = BASE_TABLES[unit]
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW keyed AS
        SELECT j.seq, r.{column} AS key FROM judged j JOIN {table} r ON r.{key} = j.id
        WHERE r.{column} IS NOT NULL"""
    )
    _drop_repeated_keys(con, "key", rule, what)
    con.execute("DROP VIEW keyed")


def _near_dedup(
    con: duckdb.DuckDBPyConnection, unit: str, config: dedup_mod.NearDupConfig, workdir: Path, progress: bool
) -> dedup_mod.NearDuplicates:
    """Drop kept rows that are near duplicates of earlier kept rows (MinHash LSH, see ``dedup``)."""
    seqs: list[np.ndarray] = []

    def batches(bar: tqdm) -> Iterator[pa.Array]:
        for batch in _survivors(con, unit, "text", config.batch_rows):
            seqs.append(batch.column("seq").to_numpy().copy())  # a view would pin the batch
            bar.update(batch.num_rows)
            yield batch.column("text")

    total = con.execute("SELECT count(*) FROM judged WHERE rule IS NULL").fetchall()[0][0]
    with tqdm(desc="near-duplicate signatures", total=total, unit=" rows", disable=not progress) as bar:
        found = dedup_mod.near_duplicates(batches(bar), config, workdir=workdir)
    order = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    pairs = pa.table({"seq": order[found.rows], "rep_seq": order[found.representatives]})
    con.register("near_pairs", pairs)
    why = f"near duplicate (MinHash Jaccard >= {config.threshold:g}) of "
    con.execute(
        f"""UPDATE judged SET rule = 'dup_near', cluster = d.representative,
               reason = {_quote(why)} || d.representative
        FROM (
            SELECT n.seq, rep.id AS representative
            FROM near_pairs n JOIN judged rep ON rep.seq = n.rep_seq
        ) d
        WHERE judged.seq = d.seq"""
    )
    con.unregister("near_pairs")
    return found


def _output_select(
    con: duckdb.DuckDBPyConnection, source: str, unit: str, upsample: Sequence[tuple[Rule, int]]
) -> tuple[str, pa.Schema]:
    """The query for the kept rows, in the subset's schema and order, upsampled."""
    out_schema = schema.SUBSET_FIGURES if source == "figures" else schema.SUBSET_PARAGRAPHS
    view = "figure_rows" if source == "figures" else "paragraph_rows"
    available = set(_columns(con, view))
    columns = ", ".join(
        f'r."{f.name}"' if f.name in available else f'NULL AS "{f.name}"'
        for f in out_schema
        if f.name != "repeat"
    )
    key = "r.article_id" if unit == "article" else "r.id"
    copies = (
        "greatest(1, "
        + ", ".join(
            f"CASE WHEN coalesce(({r.predicate})::BOOLEAN, false) THEN {n} ELSE 1 END" for r, n in upsample
        )
        + ")"
        if upsample
        else "1"
    )
    order = "r.article_id, r.ordinal, r.id" if source == "paragraphs" else "r.article_id, r.id"
    query = f"""
        SELECT {columns}, unnest(range({copies}))::INTEGER AS "repeat"
        FROM {view} r JOIN judged j ON j.id = {key}
        WHERE j.rule IS NULL
        ORDER BY {order}, "repeat"
    """
    return query, out_schema


def _write_shards(
    reader: pa.RecordBatchReader, out_schema: pa.Schema, folder: Path, shard_rows: int, progress: tqdm | None
) -> int:
    """Write the reader's rows as ``part-NNNNN.parquet`` shards of ``shard_rows`` rows (at least one
    shard, maybe empty, so a subset always has a schema to read); the number of rows."""
    buffer: list[pa.RecordBatch] = []
    buffered = total = shard = 0

    def write(table: pa.Table) -> None:
        nonlocal shard
        schema.write_shard(table.cast(out_schema), folder / f"part-{shard:05d}.parquet")
        shard += 1

    for batch in reader:
        buffer.append(batch)
        buffered += batch.num_rows
        total += batch.num_rows
        if progress is not None:
            progress.update(batch.num_rows)
        while buffered >= shard_rows:
            table = pa.Table.from_batches(buffer, schema=reader.schema)
            write(table.slice(0, shard_rows))
            rest = table.slice(shard_rows)
            buffer, buffered = rest.to_batches(), rest.num_rows
    if buffered or shard == 0:
        write(pa.Table.from_batches(buffer, schema=reader.schema))
    return total


def _replace_folder(tmp: Path, final: Path) -> None:
    """Put the finished ``tmp`` folder at ``final``, replacing what was there."""
    old = final.with_name(f"{schema.TMP_PREFIX}old-{final.name}-{secrets.token_hex(4)}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _parse_upsample(upsample: Mapping[str, int] | Sequence[tuple[str | Rule, int]]) -> list[tuple[Rule, int]]:
    items = upsample.items() if isinstance(upsample, Mapping) else upsample
    parsed = []
    for spec, factor in items:
        if int(factor) < 1:
            raise SubsetError(f"upsample factor for {spec} must be >= 1, got {factor}")
        parsed.append((parse_rule(spec), int(factor)))
    return parsed


def parse_upsample_spec(spec: str) -> tuple[str, int]:
    """``RULE=FACTOR`` (the rule may carry its own argument: ``mostly_clinical=0.6=10``)."""
    rule, sep, factor = spec.rpartition("=")
    if not sep or not rule:
        raise SubsetError(f"--upsample {spec!r}: expected RULE=FACTOR, e.g. mostly_clinical=10")
    try:
        return rule, int(factor)
    except ValueError:
        raise SubsetError(f"--upsample {spec!r}: factor {factor!r} is not an integer") from None


@dataclass(frozen=True)
class _Plan:
    """A subset to make, its arguments checked and parsed."""

    name: str
    source: str
    unit: str
    rules: list[Rule]
    dedup: list[str]
    near: dedup_mod.NearDupConfig
    upsample: list[tuple[Rule, int]]
    shard_rows: int
    progress: bool

    @property
    def view(self) -> str:
        return f"{self.unit}_rows"

    @property
    def row_view(self) -> str:
        """The view upsampling rules read: paragraph rows (whatever the unit) or figure rows."""
        return "figure_rows" if self.source == "figures" else "paragraph_rows"


def make_subset(
    build: str | os.PathLike[str],
    name: str,
    *,
    where: str | None = None,
    rules: Sequence[str | Rule] = (),
    source: str = "paragraphs",
    unit: str | None = None,
    dedup: Sequence[str] = (),
    near: dedup_mod.NearDupConfig | None = None,
    upsample: Mapping[str, int] | Sequence[tuple[str | Rule, int]] = (),
    shard_rows: int = SHARD_ROWS,
    progress: bool = False,
) -> SubsetResult:
    """Make subset ``name`` of ``build``: see the module docstring for what is written where.

    ``rules`` are built-in rule specs (``min_words``, ``license=commercial``…) or ``Rule`` objects,
    applied in order; ``where`` is one more SQL condition, applied last. ``dedup`` lists the kinds
    of deduplication (``exact``, ``near`` for paragraphs; ``image``, ``caption`` for figures), run
    in that order on the rows the rules kept. ``upsample`` maps rule specs to factors: a kept row
    matching rules is written ``max(factor)`` times, with ``repeat`` 0, 1, ….
    """
    build = Path(build)
    plan = _plan(name, where, rules, source, unit, dedup, near, upsample, shard_rows, progress)
    try:
        open_build(build)  # before anything is written into a folder that is not a build
    except FileNotFoundError as exc:
        raise SubsetError(str(exc)) from None
    parent = build / "subsets"
    parent.mkdir(parents=True, exist_ok=True)
    for prefix in (f"{name}-", f"old-{name}-"):  # left by a killed run of this subset
        schema.remove_temporaries(parent, prefix)
    tmp = parent / f"{schema.TMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        result = _run(build, plan, tmp)
        final = subset_dir(build, name)
        _replace_folder(tmp, final)
        log.debug(
            "subset %s: %d rows in, %d kept, %d written, dropped %s",
            name, result.input_rows, result.kept_rows, result.output_rows, result.dropped,
        )  # fmt: skip
        return SubsetResult(final, result.input_rows, result.kept_rows, result.output_rows, result.dropped)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _plan(
    name: str,
    where: str | None,
    rules: Sequence[str | Rule],
    source: str,
    unit: str | None,
    dedup: Sequence[str],
    near: dedup_mod.NearDupConfig | None,
    upsample: Mapping[str, int] | Sequence[tuple[str | Rule, int]],
    shard_rows: int,
    progress: bool,
) -> _Plan:
    """Check and parse ``make_subset``'s arguments (before anything is read or written)."""
    _check_name(name)
    if source not in SOURCES:
        raise SubsetError(f"unknown source {source!r}: one of {', '.join(SOURCES)}")
    unit = unit or SOURCES[source][0]
    if unit not in SOURCES[source]:
        raise SubsetError(f"unit {unit!r} does not apply to {source}: one of {', '.join(SOURCES[source])}")
    unknown = [d for d in dedup if d not in DEDUP_KINDS[source]]
    if unknown:
        raise SubsetError(f"unknown dedup {unknown} for {source}: one of {', '.join(DEDUP_KINDS[source])}")
    if dedup and unit == "article":
        raise SubsetError("dedup applies to paragraphs or figures, not with --unit article")
    if shard_rows < 1:
        raise SubsetError(f"shard_rows must be at least 1, got {shard_rows}")
    return _Plan(
        name=name,
        source=source,
        unit=unit,
        rules=[parse_rule(r) for r in rules] + ([where_rule(where)] if where else []),
        dedup=list(dedup),
        near=near or dedup_mod.NearDupConfig(),
        upsample=_parse_upsample(upsample),
        shard_rows=shard_rows,
        progress=progress,
    )


def _prepare(con: duckdb.DuckDBPyConnection, build: Path, plan: _Plan) -> set[str]:
    """Create the row views and check every rule against them; the build's tables."""
    _create_views(con, build, plan.source)
    tables = _tables(con)
    for rule in plan.rules:
        _check_rule(rule, plan.unit, tables, build)
    upsample_rules = [r for r, _ in plan.upsample]
    for rule in upsample_rules:
        _check_rule(rule, plan.row_view.removesuffix("_rows"), tables, build)
    if any("detect_language" in r.functions for r in [*plan.rules, *upsample_rules]):
        language.register(con)
    _validate(con, plan.rules, plan.view, build)
    _validate(con, upsample_rules, plan.row_view, build)
    return tables


def _deduplicate(con: duckdb.DuckDBPyConnection, plan: _Plan, workdir: Path) -> dict[str, object]:
    """Run the plan's dedup kinds in order; what ``subset.json`` records about them."""
    summary: dict[str, object] = {"kinds": plan.dedup}
    for kind in plan.dedup:
        if kind == "exact":
            _exact_dedup_text(con, plan.unit, "text", "dup_exact", "exact duplicate")
        elif kind == "image":
            _exact_dedup_column(con, plan.unit, "image_sha256", "dup_image", "identical image")
        elif kind == "caption":
            _exact_dedup_text(con, plan.unit, "caption", "dup_caption", "identical caption")
        elif kind == "near":
            found = _near_dedup(con, plan.unit, plan.near, workdir, plan.progress)
            summary["near"] = {
                **asdict(plan.near),
                "lsh": dedup_mod.describe(plan.near),
                "candidate_pairs": found.candidate_pairs,
                "verified_pairs": found.verified_pairs,
            }
    return summary


def _write_rows(con: duckdb.DuckDBPyConnection, plan: _Plan, folder: Path) -> int:
    """Write the kept rows (upsampled) and the drops; the number of kept rows written."""
    query, out_schema = _output_select(con, plan.source, plan.unit, plan.upsample)
    with tqdm(desc=f"subset {plan.name}", unit=" rows", disable=not plan.progress) as bar:
        written = _write_shards(
            con.sql(query).to_arrow_reader(50_000), out_schema, folder, plan.shard_rows, bar
        )
    drops = con.sql(
        f"""SELECT id, {_quote(plan.name)} AS subset, {_quote(plan.unit)} AS unit, rule, reason, cluster
        FROM judged WHERE rule IS NOT NULL ORDER BY seq"""
    ).to_arrow_reader(50_000)
    _write_shards(drops, schema.DROPS, folder / "drops", plan.shard_rows, None)
    return written


def _run(build: Path, plan: _Plan, folder: Path) -> SubsetResult:
    """Make the subset inside ``folder`` (the temporary folder ``make_subset`` then renames)."""
    memory = os.environ.get("PMCURATE_DUCKDB_MEMORY", MEMORY_LIMIT)
    con = connect(build, workdir=folder, memory_limit=memory)
    try:
        tables = _prepare(con, build, plan)
        _judge(con, plan.rules, plan.view, plan.unit)
        dedup_summary = _deduplicate(con, plan, folder)
        counts = dict(
            con.execute("SELECT coalesce(rule, ''), count(*) FROM judged GROUP BY ALL ORDER BY 1").fetchall()
        )
        input_rows = sum(counts.values())
        kept = counts.pop("", 0)
        written = _write_rows(con, plan, folder)
        summary = {
            "name": plan.name,
            "source": plan.source,
            "unit": plan.unit,
            "rules": [{"name": r.name, "predicate": r.predicate} for r in plan.rules],
            "dedup": dedup_summary,
            "upsample": [{"rule": r.name, "predicate": r.predicate, "factor": n} for r, n in plan.upsample],
            "labels": "labels" in tables,
            "counts": {"input": input_rows, "kept": kept, "output": written, "dropped": counts},
        }
        (folder / "subset.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(folder / "duckdb", ignore_errors=True)
        return SubsetResult(folder, input_rows, kept, written, counts)
    finally:
        con.close()


MANIFEST_KEYS = frozenset(
    {"from", "unit", "rules", "where", "dedup", "near_threshold", "num_perm", "upsample"}
)


def make_subset_from_config(
    build: str | os.PathLike[str], name: str, config: Mapping[str, object]
) -> SubsetResult:
    """Make a subset described by one ``[subsets.NAME]`` table of a manifest::

    [subsets.clinical-commercial]
    rules = ["min_words", "clinical_case", "license=commercial"]
    where = "pub_year >= 2010"          # optional
    dedup = ["exact", "near"]           # optional
    near_threshold = 0.8                # optional
    upsample = { mostly_clinical = 10 } # optional
    from = "paragraphs"                 # or "figures"; unit = "article" picks whole articles
    """
    unknown = set(config) - MANIFEST_KEYS
    if unknown:
        raise SubsetError(
            f"subset {name}: unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(MANIFEST_KEYS))}"
        )
    upsample = config.get("upsample", {})
    if not isinstance(upsample, Mapping):
        raise SubsetError(f"subset {name}: upsample must be a table of RULE = FACTOR")
    return make_subset(
        build,
        name,
        where=config.get("where"),  # type: ignore[arg-type]
        rules=list(config.get("rules", [])),  # type: ignore[call-overload]
        source=str(config.get("from", "paragraphs")),
        unit=config.get("unit"),  # type: ignore[arg-type]
        dedup=list(config.get("dedup", [])),  # type: ignore[call-overload]
        near=dedup_mod.NearDupConfig(
            threshold=float(config.get("near_threshold", 0.8)),  # type: ignore[arg-type]
            num_perm=int(config.get("num_perm", 128)),  # type: ignore[call-overload]
        ),
        upsample={str(k): int(v) for k, v in upsample.items()},
        progress=True,
    )


def make_subsets_from_manifest(
    build: str | os.PathLike[str], manifest: str | os.PathLike[str], names: Sequence[str] | None = None
) -> list[SubsetResult]:
    """Make the subsets of a TOML manifest's ``[subsets.*]`` tables (all, or those in ``names``)."""
    import tomllib

    try:
        with open(manifest, "rb") as handle:
            tables = tomllib.load(handle).get("subsets", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SubsetError(f"{manifest}: {exc}") from None
    missing = [n for n in names or () if n not in tables]
    if missing or not tables:
        raise SubsetError(
            f"{manifest}: no [subsets.{(missing or ['NAME'])[0]}] table (has: {', '.join(tables) or 'none'})"
        )
    return [make_subset_from_config(build, name, tables[name]) for name in (names or list(tables))]
