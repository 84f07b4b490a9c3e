"""Subsets: declarative, reproducible selections of a build's rows, each dropped row with its reason.

A subset is DuckDB SQL over views of the build's tables (``views.py``). ``make_subset`` evaluates
the rules in order on every row (the first rule a row fails is the one recorded), removes duplicates
among the rows that pass, repeats rows that match upsampling rules, and writes:

- ``BUILD/subsets/NAME/part-NNNNN.parquet``: the kept rows, in reading order (article, then
  paragraph ordinal), with the schema ``schema.SUBSET_PARAGRAPHS`` (or ``SUBSET_FIGURES``);
- ``BUILD/subsets/NAME/drops/part-NNNNN.parquet``: one ``schema.DROPS`` row per dropped row;
- ``BUILD/subsets/NAME/subset.json``: the parameters and the counts, rule by rule.

The work runs as tasks over partitions of the build on an executor (``engine.py``), so memory is
bounded by a partition whatever the build's size. The folder is written under a temporary name and
renamed when complete, and nothing in it depends on the time, the machine, the executor or the
number of workers: the same command on the same build gives byte-identical files.

Rules see one row of a view: ``paragraph`` rows (the paragraph, its article, its labels, its
article's statistics), ``article`` rows (rules pick articles; the subset holds the paragraphs of the
articles kept) or ``figure`` rows; see ``views.py`` and docs/filters.md.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pmcurate import schema
from pmcurate.build import open_build
from pmcurate.executor import Executor
from pmcurate.filters import dedup as dedup_mod
from pmcurate.filters import engine, language, views
from pmcurate.filters.rules import Rule, RuleError, parse_rule, where_rule
from pmcurate.filters.spec import (
    DEDUP_KINDS,
    PARTITION_ROWS,
    SHARD_ROWS,
    SOURCES,
    SubsetError,
)

log = logging.getLogger(__name__)

LABEL_COLUMNS = frozenset({*schema.LABELS.names, *schema.LABEL_COLUMNS.values(), "labels"}) - {"paragraph_id"}


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
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each phase of the engine (``engine.Outcome.seconds``)."""


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


def connect(build: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table of the build (``build.open_build``)."""
    return open_build(build).duckdb(duckdb.connect())


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
    label_words = LABEL_COLUMNS | set(views.LABEL_STATS)
    if "labels" not in tables and any(word in rule.predicate for word in label_words):
        return _missing("labels", build, f"{rule.name} ({rule.predicate})")
    return SubsetError(f"{rule.name}: {rule.predicate} cannot be evaluated on {view}: {message}")


CONDITION_TYPES = ("BOOLEAN", '"NULL"')


def _validate(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule], view: str, build: Path) -> None:
    """Bind every rule's SQL once (LIMIT 0) so a typo fails fast with the rule's name."""
    tables = views.tables(con)
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
    partition_rows: int
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
    partition_rows: int = PARTITION_ROWS,
    executor: Executor | None = None,
    progress: bool = False,
) -> SubsetResult:
    """Make subset ``name`` of ``build``: see the module docstring for what is written where.

    ``rules`` are built-in rule specs (``min_words``, ``license=commercial``…) or ``Rule`` objects,
    applied in order; ``where`` is one more SQL condition, applied last. ``dedup`` lists the kinds
    of deduplication (``exact``, ``near`` for paragraphs; ``image``, ``caption`` for figures), run
    in that order on the rows the rules kept. ``upsample`` maps rule specs to factors: a kept row
    matching rules is written ``max(factor)`` times, with ``repeat`` 0, 1, ….

    The work runs as tasks on ``executor`` (``executor.make_executor``; this process when None),
    over ranges of about ``partition_rows`` rows: memory follows that number, not the build's size.
    """
    build = Path(build)
    plan = _plan(
        name, where, rules, source, unit, dedup, near, upsample, shard_rows, partition_rows, progress
    )
    open_build(build)  # before anything is written into a folder that is not a build
    parent = build / "subsets"
    parent.mkdir(parents=True, exist_ok=True)
    for prefix in (f"{name}-", f"old-{name}-"):  # left by a killed run of this subset
        schema.remove_temporaries(parent, prefix)
    tmp = parent / f"{schema.TMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        result = _run(build, plan, tmp, executor)
        final = subset_dir(build, name)
        _replace_folder(tmp, final)
        log.debug(
            "subset %s: %d rows in, %d kept, %d written, dropped %s",
            name, result.input_rows, result.kept_rows, result.output_rows, result.dropped,
        )  # fmt: skip
        return SubsetResult(
            final, result.input_rows, result.kept_rows, result.output_rows, result.dropped, result.seconds
        )
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
    partition_rows: int,
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
    if shard_rows < 1 or partition_rows < 1:
        raise SubsetError(
            f"shard_rows and partition_rows must be at least 1, got {shard_rows}, {partition_rows}"
        )
    return _Plan(
        name=name,
        source=source,
        unit=unit,
        rules=[parse_rule(r) for r in rules] + ([where_rule(where)] if where else []),
        dedup=list(dedup),
        near=near or dedup_mod.NearDupConfig(),
        upsample=_parse_upsample(upsample),
        shard_rows=shard_rows,
        partition_rows=partition_rows,
        progress=progress,
    )


def _prepare(con: duckdb.DuckDBPyConnection, build: Path, plan: _Plan) -> set[str]:
    """Create the row views over the whole build and check every rule against them (binding its
    SQL, reading no row); the build's tables."""
    tables = views.tables(con)
    if plan.source not in tables:
        raise _missing(plan.source, build, f"a subset of {plan.source}")
    if "articles" not in tables:
        raise _missing("articles", build, "a subset")
    views.create_views(con, plan.source)
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


def _job(con: duckdb.DuckDBPyConnection, build: Path, plan: _Plan, folder: Path, workers: int) -> engine.Job:
    """What the engine's tasks need: the plan, the tables a range reads and their schemas."""
    tables = views.tables(con)
    read = ["articles", plan.source]
    if plan.source == "paragraphs" and "labels" in tables:
        read.append("labels")
    schemas = {t: con.sql(f"SELECT * FROM {t} LIMIT 0").to_arrow_table().schema for t in read}
    return engine.Job(
        build=build,
        work=folder / "work",
        name=plan.name,
        source=plan.source,
        unit=plan.unit,
        rules=tuple(plan.rules),
        upsample=tuple(plan.upsample),
        near=plan.near,
        tables=tuple(read),
        schemas=schemas,
        memory_limit=os.environ.get("PMCURATE_DUCKDB_MEMORY", engine.MEMORY_LIMIT),
        threads=max(1, (os.cpu_count() or 1) // max(1, workers)),
    )


def _run(build: Path, plan: _Plan, folder: Path, executor: Executor | None) -> SubsetResult:
    """Make the subset inside ``folder`` (the temporary folder ``make_subset`` then renames)."""
    con = connect(build)
    try:
        tables = _prepare(con, build, plan)
        job = _job(con, build, plan, folder, executor.workers if executor else 1)
    finally:
        con.close()
    try:
        outcome = engine.run(
            job, plan.dedup, folder, plan.shard_rows, plan.partition_rows, executor, plan.progress
        )
    finally:
        engine.remove_work(job)
    summary = {
        "name": plan.name,
        "source": plan.source,
        "unit": plan.unit,
        "rules": [{"name": r.name, "predicate": r.predicate} for r in plan.rules],
        "dedup": outcome.dedup,
        "upsample": [{"rule": r.name, "predicate": r.predicate, "factor": n} for r, n in plan.upsample],
        "labels": "labels" in tables,
        "counts": {
            "input": outcome.input_rows,
            "kept": outcome.kept_rows,
            "output": outcome.output_rows,
            "dropped": outcome.dropped,
        },
    }
    (folder / "subset.json").write_text(engine.summary_json(summary))
    return SubsetResult(
        folder, outcome.input_rows, outcome.kept_rows, outcome.output_rows, outcome.dropped, outcome.seconds
    )
