"""``pmcurate export``: a build (or one of its subsets) → a Hub-ready dataset folder.

Layout of an export folder ``OUT``::

    OUT/README.md                                        dataset card (regenerated on each export)
    OUT/data/{split}-{i:05d}-of-{n:05d}.parquet          config "default"
    OUT/{config}/{split}-{i:05d}-of-{n:05d}.parquet|tar  any other config
    OUT/provenance/{config}.json                         what each config was made from, and counts

A config is one preset exported one way (Parquet or WebDataset); several configs can share a
folder and the card lists them all. Splits are license groups (``commercial``, ``noncommercial``,
``other``), the values of any column, or a single ``train``.

An export is all-or-nothing: shards are written to a staging folder inside ``OUT`` and moved into
place when every split is complete, replacing the config's previous shards. Nothing written depends
on the time or the machine, so exporting the same rows twice gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import operator
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from pmcurate import __version__, schema
from pmcurate.build import create_view, open_build
from pmcurate.errors import Fatal
from pmcurate.executor import Executor, LocalExecutor, download, fetch, is_url, remove, upload
from pmcurate.export import jsontext, parquet, webdataset
from pmcurate.export.presets import (
    SELECTION,
    JoinedRows,
    Preset,
    Source,
    check_source,
    gather,
    get_preset,
    license_group_sql,
)
from pmcurate.export.stats import CardStats

if TYPE_CHECKING:
    import duckdb

    from pmcurate.export.steps import ExportConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

Format = Literal["parquet", "webdataset"]
FORMATS: tuple[Format, ...] = ("parquet", "webdataset")
DEFAULT_CONFIG = "default"
DATASET_DIR = "dataset"
"""A build's dataset folder (``BUILD/dataset``): every export of a manifest is one config of it."""
PROVENANCE_DIR = "provenance"
SPLIT_BY_LICENSE = "license"
SPLIT_NONE = "none"
BATCH_ROWS = 16_384
ARROW_ROWS_MAX_BYTES = 2 * 2**30
"""Above this much uncompressed data in the tables read, rows stream sorted from DuckDB instead of
being computed in memory with Arrow (``ArrowRows``)."""
IMAGE_BATCH_ROWS = 64
"""Rows fetched from DuckDB at a time: figures carry their images, so fewer of them."""
SHARD_FILE = re.compile(r"^[\w.]+-\d{5}-of-\d{5}\.(parquet|tar)$")
CONFIG_NAME = re.compile(r"^[A-Za-z0-9][\w-]*$")
"""A config name: its folder name inside the dataset folder."""
COLUMN = re.compile(r"^[A-Za-z_]\w*$")


class ExportError(Fatal):
    """An export that cannot be made as asked: the message says why and what to do."""


@dataclass(frozen=True)
class SplitSummary:
    rows: int
    bytes: int
    shards: list[str]


@dataclass
class ExportResult:
    out: Path
    config: str
    preset: str
    format: Format
    folder: str
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    skipped_rows: int = 0
    seconds: float = 0.0
    card_stats: CardStats = field(default_factory=CardStats)
    """What the dataset card counts in the rows written (``export.stats``)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """The config's provenance record, as its file holds it (``provenance/{config}.json``)."""

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.splits.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.splits.values())


def config_folder(config: str) -> str:
    """Where a config's shards live: ``data`` for the default config, else the config's name."""
    return "data" if config == DEFAULT_CONFIG else config


def export(
    build: str | os.PathLike[str],
    config: ExportConfig,
    *,
    write_card: bool = True,
    progress: bool = True,
    executor: Executor | None = None,
    workers: int | None = 1,
) -> ExportResult:
    """Export ``build`` (or one of its subsets) as ``config`` says, into ``config.out`` (default
    ``BUILD/dataset``).

    The splits are written by one task per worker of ``executor`` (default: a local one with
    ``workers`` processes); the files do not depend on how many.
    """
    runner = executor or LocalExecutor(workers)
    here = isinstance(runner, LocalExecutor) and runner.workers == 1  # its one task runs in this process
    plan = make_plan(build, replace(config, tasks=runner.workers), progress=progress, load=here)
    try:
        plan.stage()
        with _BuildReads(plan) as reads:
            if not _runs_here(runner, plan):
                reads.start()
            lent = InThisProcess(Lent(plan.shards, plan.rows, reads.start))
            task = functools.partial(write_split_task, plan.job, lent=lent)
            list(runner.map(task, plan.tasks, desc=f"export {plan.job.config}", progress=progress))
            return finish(plan, write_card=write_card, inputs=reads.inputs(), facts=reads.facts())
    finally:
        plan.discard()
        if executor is None:
            runner.close()


def _runs_here(runner: Executor, plan: ExportPlan) -> bool:
    """Whether ``runner`` runs the plan's tasks in this process (``LocalExecutor``: one worker, or a
    single task), where what ``finish`` reads of the build waits until they write (``_BuildReads``)."""
    return isinstance(runner, LocalExecutor) and (runner.workers == 1 or len(plan.tasks) <= 1)


class InThisProcess(Generic[T]):
    """``value``, in this process only: sent to another (pickled with a task), it is None there."""

    def __init__(self, value: T | None) -> None:
        self.value = value

    def __reduce__(self) -> tuple[type[InThisProcess[T]], tuple[None]]:
        return (InThisProcess, (None,))


@dataclass(frozen=True)
class Lent:
    """What the driver lends a task that runs in its own process (``InThisProcess``): what its plan
    read of the build's shards (``_Shards``) and the rows it loaded, and what to call once the task
    has read its last rows (the writer then has a row group or two left to write)."""

    shards: _Shards | None
    rows: ArrowRows | None
    rows_read: Callable[[], object]


class _BuildReads:
    """What ``finish`` reads of the build (``input_checksums``, ``BuildFacts.of``), read in a thread
    once ``start`` is called: at once when the tasks run in other processes, else when the task in
    this one has read its last rows (``Lent.rows_read``), so that it takes no core (nor the GIL)
    from the thread that reads and orders them beside the writer, while the writer writes the row
    groups it still holds; and no later than ``inputs``/``facts``."""

    def __init__(self, plan: ExportPlan) -> None:
        self.plan = plan
        self._pool = ThreadPoolExecutor(1)
        self._lock = threading.Lock()
        self._inputs: Future[dict[str, dict[str, Any]]] | None = None
        self._facts: Future[BuildFacts] | None = None

    def __enter__(self) -> _BuildReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown()

    def start(self) -> None:
        with self._lock:
            if self._inputs is None:
                self._inputs = self._pool.submit(input_checksums, self.plan)
                self._facts = self._pool.submit(BuildFacts.of, self.plan)

    def inputs(self) -> dict[str, dict[str, Any]]:
        self.start()
        assert self._inputs is not None
        return self._inputs.result()

    def facts(self) -> BuildFacts:
        self.start()
        assert self._facts is not None
        return self._facts.result()


@dataclass(frozen=True)
class ExportJob:
    """What every split task of one export needs (picklable: it is sent to the workers).

    ``build`` and ``staging`` are local folders, or URLs (``remote`` exports): a task then pulls
    the folders ``reads`` of the build into its machine's working copy (``executor.fetch``) and
    sends its shards to the staging URL, so workers share no disk with the driver.
    """

    build: str
    staging: str
    reads: tuple[str, ...]
    preset: str
    subset: str | None
    source: Source
    split_by: str
    format: Format
    config: str
    shard_bytes: int
    row_group_bytes: int
    extension: str | None
    progress: bool
    arrow: bool
    """The rows are computed with Arrow (``_arrow_path``, as the plan found), not by DuckDB."""


@dataclass(frozen=True)
class SplitTask:
    """Whole splits of an export, written one after the other by one task: each split's rows, in
    order, become that split's shards. Splits share a task so that a task per worker, not per
    split, scans the build (a column with hundreds of values makes hundreds of splits)."""

    splits: tuple[str, ...]
    rows: int

    @property
    def key(self) -> str:
        return ",".join(self.splits)

    @property
    def size(self) -> int:
        return self.rows


def group_splits(counts: list[tuple[str, int]], tasks: int) -> list[SplitTask]:
    """At most ``tasks`` tasks of whole splits, as even in rows as whole splits allow: each split,
    largest first, goes to the task with the fewest rows so far."""
    bins: list[list[str]] = [[] for _ in range(max(1, min(tasks, len(counts))))]
    sizes = [0] * len(bins)
    for split, rows in sorted(counts, key=lambda count: (-count[1], count[0])):
        emptiest = sizes.index(min(sizes))
        bins[emptiest].append(split)
        sizes[emptiest] += rows
    return [SplitTask(tuple(sorted(splits)), rows) for splits, rows in zip(bins, sizes, strict=True)]


@dataclass
class ExportPlan:
    """An export checked and planned on the driver: its tasks, and what ``finish`` reports."""

    job: ExportJob
    build: Path
    out: Path
    tasks: list[SplitTask]
    selected: int
    subset_info: dict[str, Any] | None
    tables: set[str]
    started: float
    shards: _Shards | None = None
    """What the plan read of the build's shards (rows computed with Arrow)."""
    rows: ArrowRows | None = None
    """The rows, loaded by the plan for a task in its process (``make_plan``'s ``load``)."""

    @property
    def staging(self) -> Path:
        """The local staging folder (``finish`` installs the shards from it)."""
        return self.out / f"{schema.TMP_PREFIX}export-{self.job.config}"

    def stage(self) -> None:
        """Create the (empty) staging folder the tasks write into."""
        self._remove_staging()
        (self.staging / _SHARDS).mkdir(parents=True)

    def discard(self) -> None:
        """Remove the staging folder (after ``finish`` installed its shards, or after a failure)."""
        self._remove_staging()

    def _remove_staging(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if is_url(self.job.staging):
            remove(self.job.staging)


def make_plan(
    build: str | os.PathLike[str], config: ExportConfig, *, progress: bool = True, load: bool = False
) -> ExportPlan:
    """Check ``config`` against the build and plan at most ``config.tasks`` tasks (default: one per
    CPU) of whole splits (rows counted per split); writes nothing (``ExportPlan.stage`` creates the
    staging folder). ``load``: the tasks run in this process, so rows computed with Arrow are loaded
    (``ArrowRows``: what the task writes) and their splits counted, rather than counted from the
    licenses alone and loaded again by the task.

    Splits come first in the export's order (split, then the preset's key), so each split's rows
    and shards are the same whether its task runs alone or beside the others: the output does not
    depend on how many workers wrote it.
    """
    started = time.perf_counter()
    preset, subset, format, split_by, remote = (
        config.preset, config.subset, config.format, config.split_by, config.remote
    )  # fmt: skip
    chosen = get_preset(preset)
    config_name = config.name
    opened = open_build(build)
    out = Path(config.out) if config.out is not None else opened.path / DATASET_DIR
    _check_format(out, config_name, format)
    tables = set(opened.tables)
    source = Source(has_labels="labels" in tables, has_paragraphs="paragraphs" in tables, subset=subset)
    check_source(chosen, tables, source)
    extension = None
    shards = _Shards(opened.path)
    arrow = _arrow_path(shards, chosen, split_by)
    if arrow:
        rows = ArrowRows.load(opened.path, chosen, source, split_by, shards) if load else None
        selected, counts = _arrow_plan(shards, chosen, source, split_by, rows)
        subset_info = _subset_info(opened.path, subset) if subset else None
    else:
        con = _connect(opened.path, tables & _READS[chosen.unit])
        subset_info = _create_selection(con, opened.path, chosen, subset)
        _create_rows(con, chosen, source, split_by)
        selected = con.sql("SELECT count(*) FROM selection").fetchall()[0][0]
        counts = con.sql("SELECT __split, count(*) FROM export_rows GROUP BY ALL ORDER BY 1").fetchall()
        rows = None
        if format == "webdataset" and counts:
            extension = config.image_format or webdataset.choose_extension(_image_formats(con))
        con.close()
    if not counts:
        raise ExportError(_nothing_message(chosen, subset))
    for split, _ in counts:
        parquet.check_split_name(split)
    staging = str(out / f"{schema.TMP_PREFIX}export-{config_name}")
    if remote is not None:  # ``build`` is the driver's working copy of the build at ``remote``
        staging = f"{remote.rstrip('/')}/.pmcurate/{schema.TMP_PREFIX}export-{config_name}"
    reads = [f"tables/{name}" for name in sorted(tables & _READS[chosen.unit])]
    reads += [f"subsets/{subset}"] if subset else []
    job = ExportJob(
        build=remote or str(opened.path), staging=staging, reads=tuple(reads), preset=preset,
        subset=subset, source=source, split_by=split_by, format=format, config=config_name,
        shard_bytes=config.shard_size, row_group_bytes=config.row_group_size, extension=extension,
        progress=progress, arrow=arrow,
    )  # fmt: skip
    planned = group_splits(counts, config.tasks or os.cpu_count() or 1)
    return ExportPlan(
        job,
        opened.path,
        out,
        planned,
        selected,
        subset_info,
        tables,
        started,
        shards if arrow else None,
        rows,
    )


def write_split_task(
    job: ExportJob, task: SplitTask, lent: InThisProcess[Lent] | None = None
) -> dict[str, int]:
    """Write the shards of the task's splits into the job's staging folder (on a worker).

    The rows come sorted (split, then the preset's key) from DuckDB in their own connection and
    stream through the writer, so a task holds a few row groups in memory however large its
    splits; or, for tables small enough (``_arrow_path``), from Arrow in memory. What the driver
    needs of it (shard names and rows per split, the distinct license URLs and languages, the
    card's counts) goes to a small JSON file. ``lent``: what the driver lends a task in its own
    process (``Lent``).
    """
    here = lent.value if lent is not None else None
    if is_url(job.staging):
        with tempfile.TemporaryDirectory(prefix=f"{schema.TMP_PREFIX}export-") as tmp:
            counts = _write_splits(job, task, fetch(job.build, job.reads), Path(tmp), here)
            upload(Path(tmp), job.staging)
        return counts
    return _write_splits(job, task, Path(job.build), Path(job.staging), here)


def _write_splits(
    job: ExportJob, task: SplitTask, build: Path, staging: Path, lent: Lent | None
) -> dict[str, int]:
    chosen = get_preset(job.preset)
    splits: dict[str, dict[str, Any]] = {}
    card = CardStats()
    same = lent is not None and lent.shards is not None and lent.shards.build == build  # not a fetched copy
    with _sorted_rows(job, task, build, lent if same else None) as reader:
        arrow_schema = normalized_schema(reader.schema.remove(reader.schema.get_field_index("__split")))
        seen = _DistinctValues(("license_url", "language"))
        desc = f"export {job.config} {task.key}"
        batches = _progress(reader, task.rows, desc, job.progress)
        if lent is not None:
            batches = _then(batches, lent.rows_read)
        runs = split_runs(seen.observe(batches))
        writer = _SplitWriter(chosen, job.format, job.shard_bytes, job.row_group_bytes, job.extension)
        for split, group in itertools.groupby(runs, key=operator.itemgetter(0)):
            batches = _counted(card, split, (batch for _, batch in group))
            shards = writer.write(batches, arrow_schema, staging / _SHARDS, split)
            splits[split] = {
                "rows": sum(s.rows for s in shards),
                "bytes": sum(s.nbytes for s in shards),
                "shards": [s.path.name for s in shards],
            }
    summary = {
        "splits": splits,
        "features": hf_features(arrow_schema, chosen.image_columns),
        "license_url": sorted(seen.values["license_url"], key=_none_first),
        "language": sorted(seen.values["language"], key=_none_first),
        "card": card.to_json(),
    }
    (staging / _summary_name(task)).write_text(json.dumps(summary, ensure_ascii=False))
    return {
        "rows": sum(s["rows"] for s in splits.values()),
        "shards": sum(len(s["shards"]) for s in splits.values()),
        "bytes": sum(s["bytes"] for s in splits.values()),
    }


def _then(items: Iterable[T], call: Callable[[], object]) -> Iterator[T]:
    """``items``, then ``call()`` once they are all taken."""
    yield from items
    call()


def _counted(stats: CardStats, split: str, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches``, counted into ``stats`` (the card's figures) as they go by."""
    for batch in batches:
        stats.observe(split, batch)
        yield batch


@contextlib.contextmanager
def _sorted_rows(
    job: ExportJob, task: SplitTask, build: Path, lent: Lent | None = None
) -> Iterator[pa.RecordBatchReader]:
    """The rows of the task's splits with their ``__split``, sorted (split, then the preset's key):
    from Arrow when the preset computes its rows so (``ArrowRows``: those the plan loaded, or
    loaded with what it read of the shards, ``lent``), else from DuckDB."""
    chosen = get_preset(job.preset)
    if job.arrow:
        rows = lent.rows if lent is not None else None
        if rows is None:
            rows = ArrowRows.load(build, chosen, job.source, job.split_by, lent.shards if lent else None)
        yield rows.sorted_reader(task.splits)
        return
    con = _connect(build, [name.removeprefix("tables/") for name in job.reads if name.startswith("tables/")])
    con.execute("SET enable_progress_bar = false")  # the task's own bar counts rows
    try:
        _create_selection(con, build, chosen, job.subset)
        columns = _create_rows(con, chosen, job.source, job.split_by)
        order = chosen.order_by + (", repeat" if job.subset else "")
        query = (
            f"SELECT {columns}, __split FROM export_rows WHERE list_contains($splits, __split) "
            f"ORDER BY __split, {order}"
        )
        batch_rows = IMAGE_BATCH_ROWS if chosen.image_columns else BATCH_ROWS
        yield con.sql(query, params={"splits": list(task.splits)}).to_arrow_reader(batch_rows)
    finally:
        con.close()


def _arrow_path(shards: _Shards, preset: Preset, split_by: str) -> bool:
    """Whether the rows come from the preset's ``rows_arrow``: splits by license or none, and tables
    small enough to hold in memory (else DuckDB sorts them, spilling to disk)."""
    return (
        preset.rows_arrow is not None
        and preset.licenses_arrow is not None
        and split_by in (SPLIT_BY_LICENSE, SPLIT_NONE)
        and sum(_data_bytes(shards, name) for name in _READS[preset.unit]) <= ARROW_ROWS_MAX_BYTES
    )


def _data_bytes(shards: _Shards, name: str) -> int:
    """Uncompressed bytes of a table's shards (their footers say)."""
    total = 0
    for path in shards.paths(name):
        metadata = shards.metadata(path)
        total += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return total


def _arrow_plan(
    shards: _Shards, preset: Preset, source: Source, split_by: str, rows: ArrowRows | None = None
) -> tuple[int, list]:
    """What a plan needs of rows computed with Arrow, without computing them (or from ``rows``,
    loaded): the rows selected and the rows per split (from the rows' licenses alone)."""
    assert preset.rows_arrow is not None and preset.licenses_arrow is not None  # _arrow_path
    selection = _subset_files(shards.build, preset, source.subset)[0] if source.subset else None
    reader = _ColumnReader(shards.build, selection, shards=shards)
    split = rows.split if rows is not None else Splits.of(preset.licenses_arrow(reader, source), split_by)
    counts = [(name, int(n)) for name, n in zip(split.names, split.counts(), strict=True) if n]
    return reader.rows(SELECTION if selection else f"{preset.unit}s"), counts


def _split_of(licenses: pa.Array, split_by: str) -> pa.Array:
    """The split of each row, from its license (``SPLIT_BY_LICENSE``) or ``train``."""
    if split_by == SPLIT_BY_LICENSE:
        return license_group(licenses)
    return pa.repeat("train", len(licenses))


@dataclass(frozen=True)
class Splits:
    """The split of each row: ``names`` (sorted) and the index in them of each row's split."""

    names: list[str]
    codes: np.ndarray

    @classmethod
    def of(cls, licenses: pa.ChunkedArray | pa.Array, split_by: str) -> Splits:
        """The splits of rows of ``licenses`` (``_split_of``), each value of its dictionary (an
        article's license, joined by index: ``JoinedRows.encoded``) or each distinct license
        grouped once."""
        if isinstance(licenses, pa.ChunkedArray):
            licenses = licenses.combine_chunks()
        if not pa.types.is_dictionary(licenses.type):
            licenses = pc.dictionary_encode(licenses)
        values = pa.concat_arrays([licenses.dictionary, pa.nulls(1, licenses.dictionary.type)])
        groups = pc.dictionary_encode(_split_of(values, split_by))  # the last: a null license's
        found = groups.dictionary.to_pylist()  # a few names, however many licenses
        names = sorted(found)
        codes = np.array([names.index(name) for name in found], dtype=np.int32)[
            schema.numpy_of(groups.indices)
        ]
        return cls(names, codes[schema.numpy_of(licenses.indices.fill_null(len(values) - 1))])

    def counts(self) -> np.ndarray:
        """The rows of each split."""
        return np.bincount(self.codes, minlength=len(self.names))


def _visible(rows: JoinedRows) -> list[str]:
    """The exported columns of ``rows``: not those for ordering only (``__``)."""
    return [name for name, _ in rows.columns if not name.startswith("__")]


@dataclass
class ArrowRows:
    """A preset's rows computed with Arrow (``Preset.rows_arrow``), in its order, with their split:
    their columns are gathered a batch at a time as the writer asks for them."""

    rows: JoinedRows
    split: Splits

    @classmethod
    def load(
        cls, build: Path, preset: Preset, source: Source, split_by: str, shards: _Shards | None = None
    ) -> ArrowRows:
        assert preset.rows_arrow is not None  # _arrow_path
        selection = _subset_files(build, preset, source.subset)[0] if source.subset else None
        rows = preset.rows_arrow(_ColumnReader(build, selection, shards=shards), source)
        return cls(rows.select(_visible(rows)), Splits.of(rows.encoded(preset.license_column), split_by))

    def sorted_reader(self, splits: tuple[str, ...]) -> pa.RecordBatchReader:
        """The rows of ``splits`` sorted by split, then the preset's key, in batches of ``BATCH_ROWS``
        at most, each of one split.

        The rows come in the preset's order, so a stable sort by split is all that is left, and
        with a single split nothing at all: the indices move, the columns are gathered once."""
        names, codes, counts = self.split.names, self.split.codes, self.split.counts()
        wanted = [index for index, name in enumerate(names) if name in splits and counts[index]]
        counted = [(names[index], int(counts[index])) for index in wanted]
        rows = self.rows
        if len(wanted) > 1 or len(wanted) < np.count_nonzero(counts):
            order = np.argsort(codes, kind="stable")
            rows = rows.take(pa.array(order[np.isin(codes[order], wanted)]))
        schema_ = rows.table(0, 0).schema.append(pa.field("__split", pa.string()))
        return pa.RecordBatchReader.from_batches(schema_, _split_batches(rows, counted))


def _split_batches(rows: JoinedRows, counted: list[tuple[str, int]]) -> Iterator[pa.RecordBatch]:
    """``rows`` gathered ``BATCH_ROWS`` at a time with their ``__split``: ``counted`` rows of each
    split, one split after the other. The first batches are smaller (``batch_sizes``): the writer
    waits for the first, while the rest are gathered beside it."""
    start = 0
    sizes = batch_sizes()
    for split, n in counted:
        begin = start
        while begin < start + n:
            table = rows.table(begin, min(next(sizes), start + n - begin))
            yield from table.append_column(
                "__split", pa.repeat(schema.string(split), table.num_rows)
            ).to_batches()
            begin += table.num_rows
        start += n


FIRST_BATCH_ROWS = 8192
"""Rows of the first batch gathered, and of each batch a shard is decoded in (``_ShardRows``): about
the rows of a first row group of paragraphs (8 MB of ~1.5 kB rows), which the writer waits for."""


def batch_sizes() -> Iterator[int]:
    """Rows of each batch gathered: ``FIRST_BATCH_ROWS``, doubled batch after batch up to
    ``BATCH_ROWS`` (what a batch costs beyond its rows is paid a few times more, not per row)."""
    size = min(FIRST_BATCH_ROWS, BATCH_ROWS)
    while True:
        yield size
        size = min(2 * size, BATCH_ROWS)


def license_group(licenses: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``license_group_sql`` with Arrow: ``commercial``, ``noncommercial`` or ``other``."""
    commercial = pc.is_in(licenses, pa.array(sorted(schema.COMMERCIAL_LICENSES), pa.string()))
    noncommercial = pc.is_in(licenses, pa.array(sorted(schema.NONCOMMERCIAL_LICENSES), pa.string()))
    other = pc.if_else(noncommercial, schema.string("noncommercial"), schema.string("other"))
    return pc.if_else(commercial, schema.string("commercial"), other)


class _Shards:
    """The shards of a build's tables, what their footers say and the columns read whole, each
    listed or read once however many reads (and readers: ``_ColumnReader``'s ``shards``): the
    plan's reads serve the rows of a task in its process."""

    def __init__(self, build: Path) -> None:
        self.build = build
        self._paths: dict[str, list[Path]] = {}
        self._metadata: dict[Path, pq.FileMetaData] = {}
        self._schemas: dict[Path, pa.Schema] = {}
        self.columns: dict[tuple[str, str], tuple[pa.Field, pa.ChunkedArray]] = {}
        """Columns read whole, by table and name (a chunk per shard), with their fields."""

    def paths(self, name: str) -> list[Path]:
        if name not in self._paths:
            self._paths[name] = schema.shard_paths(self.build, name)
        return self._paths[name]

    def metadata(self, path: Path) -> pq.FileMetaData:
        if path not in self._metadata:
            self._metadata[path] = pq.read_metadata(path)
        return self._metadata[path]

    def schema(self, path: Path) -> pa.Schema:
        """The shard's Arrow schema."""
        if path not in self._schemas:
            self._schemas[path] = self.metadata(path).schema.to_arrow_schema()
        return self._schemas[path]


class _ColumnReader:
    """``presets.Read`` over a build's shards: the columns asked for, every shard, in shard order;
    null where a shard lacks a column (an older shard), as DuckDB's views read them by name.
    ``SELECTION`` reads the subset's shards (``selection``), with a ``repeat`` of 0 where they have
    none. ``shards``: what was read of the shards (``_Shards``), shared with other readers.
    ``empty``: the reader of no rows (``read_empty``)."""

    def __init__(
        self,
        build: Path,
        selection: list[Path] | None = None,
        *,
        empty: bool = False,
        shards: _Shards | None = None,
    ) -> None:
        self.build = build
        self.selection = selection
        self.empty = empty
        self.shards = shards or _Shards(build)

    def __call__(self, name: str, columns: Sequence[str]) -> pa.Table:
        if self.empty or name == SELECTION or not columns:
            return self._read(name, columns)
        known = self.shards.columns
        missing = [column for column in columns if (name, column) not in known]
        if missing:
            read = self._read(name, missing)
            known.update(((name, column), (read.field(column), read.column(column))) for column in missing)
        fields, arrays = zip(*(known[(name, column)] for column in columns), strict=True)
        return pa.Table.from_arrays(list(arrays), schema=pa.schema(fields))

    def _read(self, name: str, columns: Sequence[str]) -> pa.Table:
        tables = []
        for path in self.paths(name):
            table = self._empty_shard(path, columns) if self.empty else self._read_shard(path, columns)
            if name == SELECTION and "repeat" in columns and "repeat" not in table.column_names:
                table = table.append_column("repeat", pa.array(np.zeros(table.num_rows, np.int32)))
            tables.append(table)
        return pa.concat_tables(tables, promote_options="default").select(list(columns))

    def late(self, name: str, columns: Sequence[str], rows: pa.Array) -> _LateRows:
        return _LateRows(self, name, tuple(columns), rows)

    def read_empty(self) -> _ColumnReader:
        """This reader, reading no rows: the columns as the shards' schemas have them (their footers
        only)."""
        return _ColumnReader(self.build, self.selection, empty=True, shards=self.shards)

    def _read_shard(self, path: Path, columns: Sequence[str]) -> pa.Table:
        """The columns of one shard that it has."""
        names = self.shards.schema(path).names
        with pq.ParquetFile(path, metadata=self.footer(path)) as shard:
            return shard.read(columns=[c for c in columns if c in names])

    def _empty_shard(self, path: Path, columns: Sequence[str]) -> pa.Table:
        file_schema = self.shards.schema(path)
        return file_schema.empty_table().select([c for c in columns if c in file_schema.names])

    def rows(self, name: str) -> int:
        return sum(self.footer(path).num_rows for path in self.paths(name))

    def starts(self, name: str) -> np.ndarray:
        """The number of each shard's first row (and, last, the table's rows)."""
        counts = [self.footer(path).num_rows for path in self.paths(name)]
        return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])

    def footer(self, path: Path) -> pq.FileMetaData:
        return self.shards.metadata(path)

    def paths(self, name: str) -> list[Path]:
        return (self.selection or []) if name == SELECTION else self.shards.paths(name)


class _LateRows:
    """``presets.LateRows``: ``columns`` of the rows of table ``name`` numbered ``rows`` (null: a
    row of nulls), read as ranges of them are asked for. A shard is decoded as far as a range needs
    it (``_ShardRows``), and let go after the range that needs it last (ranges asked for in order,
    as the export's batches are): rows in the order of the shards hold a shard or two at a time,
    and the first batch waits for its own rows only, not for its whole shard."""

    def __init__(self, reader: _ColumnReader, name: str, columns: tuple[str, ...], rows: pa.Array) -> None:
        self.reader = reader
        self.name = name
        self.columns = columns
        self.rows = rows
        self._shards: dict[int, _ShardRows] = {}
        self._last: np.ndarray | None = None

    def take(self, indices: pa.Array) -> _LateRows:
        return _LateRows(self.reader, self.name, self.columns, self.rows.take(indices))

    def table(self, start: int, length: int) -> pa.Table:
        rows = self.rows.slice(start, length)
        empty = self._empty
        if self.reader.empty or not len(rows):
            return empty
        starts = self._starts
        valid = schema.numpy_of(rows.is_valid())
        numbers = schema.numpy_of(rows.fill_null(0))
        shard_of = np.searchsorted(starts, numbers, "right") - 1
        needed = np.flatnonzero(np.bincount(shard_of[valid], minlength=len(starts)))  # np.unique sorts
        ends = np.zeros(len(starts), dtype=np.int64)  # rows of each needed shard read so far
        np.maximum.at(ends, shard_of[valid], numbers[valid] - starts[shard_of[valid]] + 1)
        tables = [self._shard(int(index)).head(int(ends[index])) for index in needed]
        offsets = np.zeros(len(starts), dtype=np.int64)  # where each needed shard starts in found
        offsets[needed] = np.cumsum([0] + [table.num_rows for table in tables])[:-1]
        local = numbers - starts[shard_of] + offsets[shard_of]
        found = pa.concat_tables([empty, *tables])
        if start:  # the first range lets go of nothing (it needed what it opened): the writer waits for it
            self._let_go(start + len(rows))
        if valid.all():
            return gather(found, pa.array(local))
        return found.take(pa.array(local, mask=~valid))

    @functools.cached_property
    def _empty(self) -> pa.Table:
        return self.reader.read_empty()(self.name, self.columns)

    @functools.cached_property
    def _starts(self) -> np.ndarray:
        return self.reader.starts(self.name)

    def _shard(self, index: int) -> _ShardRows:
        if index not in self._shards:
            path = self.reader.paths(self.name)[index]
            self._shards[index] = _ShardRows(self.reader, path, self._empty.schema)
        return self._shards[index]

    def _let_go(self, end: int) -> None:
        """Forget the shards that no row from ``end`` on needs."""
        if self._last is None:
            numbers = schema.numpy_of(self.rows.drop_null())
            positions = np.flatnonzero(schema.numpy_of(self.rows.is_valid()))
            self._last = np.full(len(self._starts) - 1, -1, dtype=np.int64)
            np.maximum.at(self._last, np.searchsorted(self._starts, numbers, "right") - 1, positions)
        for index in [i for i in self._shards if self._last[i] < end]:
            del self._shards[index]


class _ShardRows:
    """The columns of ``arrow_schema`` of one shard, decoded ``FIRST_BATCH_ROWS`` at a time as far
    as asked for; null columns for those it lacks (an older shard). Batches of the size of the
    export's first batch, which the writer waits for, so that it waits for those rows only and no
    row is decoded twice (a first batch of its own, then larger ones from the start, decoded its
    rows again); 8,192 rows of text decode at the cost of 16,384 a row. Decoded in the calling
    thread (the one beside the writer), not on Arrow's thread pool: the writer keeps its core, and
    a pool of two threads for a few columns of 16,384 rows costs more than it gains."""

    def __init__(self, reader: _ColumnReader, path: Path, arrow_schema: pa.Schema) -> None:
        self._shard = pq.ParquetFile(path, metadata=reader.footer(path))
        names = reader.shards.schema(path).names
        self._present = [name for name in arrow_schema.names if name in names]
        self._schema = arrow_schema
        self._batches = self._shard.iter_batches(FIRST_BATCH_ROWS, columns=self._present, use_threads=False)
        self._read: list[pa.RecordBatch] = []
        self._rows = 0

    def head(self, rows: int) -> pa.Table:
        """The shard's first ``rows`` rows (at least: whole batches)."""
        while self._rows < rows:
            batch = next(self._batches)
            self._read.append(batch)
            self._rows += batch.num_rows
        table = pa.Table.from_batches(self._read) if self._read else self._schema.empty_table()
        for field_ in self._schema:
            if field_.name not in table.column_names:
                table = table.append_column(field_, pa.nulls(table.num_rows, field_.type))
        return table.select(self._schema.names)


def finish(
    plan: ExportPlan,
    *,
    write_card: bool = True,
    inputs: dict[str, dict[str, Any]] | None = None,
    facts: BuildFacts | None = None,
) -> ExportResult:
    """Install the staged shards of every split, then write the provenance (and the card).

    ``inputs``: the checksums of the tables read (``input_checksums``), and ``facts``: what the
    provenance copies from the build (``BuildFacts.of``), when already gathered."""
    job = plan.job
    chosen = get_preset(job.preset)
    result = ExportResult(
        out=plan.out,
        config=job.config,
        preset=job.preset,
        format=job.format,
        folder=config_folder(job.config),
    )
    urls: set = set()
    languages: set = set()
    if is_url(job.staging):
        download(job.staging, plan.staging)
    found: dict[str, dict[str, Any]] = {}
    features: dict[str, Any] = {}
    for task in plan.tasks:
        summary = json.loads((plan.staging / _summary_name(task)).read_text())
        found.update(summary["splits"])
        features = summary["features"]  # every task's: the rows' schema
        result.card_stats.update(CardStats.from_json(summary["card"]))
        urls.update(summary["license_url"])
        languages.update(summary["language"])
    for split in sorted(found):
        written = found[split]
        result.splits[split] = SplitSummary(
            rows=written["rows"],
            bytes=written["bytes"],
            shards=[f"{result.folder}/{name}" for name in written["shards"]],
        )
    if not result.splits:
        raise ExportError(_nothing_message(chosen, job.subset))
    _install(plan.staging / _SHARDS, plan.out / result.folder)
    result.skipped_rows = plan.selected - result.rows
    result.seconds = time.perf_counter() - plan.started
    build = plan.build
    info = _provenance(
        build,
        result,
        chosen,
        job.split_by,
        job.subset,
        plan.subset_info,
        features,
        inputs if inputs is not None else input_checksums(plan),
    )
    facts = facts or BuildFacts.of(plan)
    if job.extension is not None:
        info["image_extension"] = job.extension
    info["license_urls"] = sorted(urls, key=_none_first)
    info["languages"] = sorted(languages, key=_none_first)
    provenance = plan.out / PROVENANCE_DIR / f"{job.config}.json"
    provenance.parent.mkdir(parents=True, exist_ok=True)
    result.provenance = facts.into(info)
    with open(provenance, "w") as file:  # as write_text: the locale's encoding
        file.writelines([*facts.parts(result.provenance), "\n"])
    if write_card:
        from pmcurate.export.card import write_card as write_dataset_card

        written = {job.config: result.provenance}
        write_dataset_card(plan.out, stats={job.config: result.card_stats}, written=written)
    return result


_SHARDS = "shards"


def _connect(build: Path, tables: Iterable[str]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view of each of ``tables``: those the export reads, not every
    table and subset of the build (a view reads the footers of its shards when it is made). DuckDB is
    imported here: checking a manifest imports this module."""
    import duckdb

    con = duckdb.connect()
    for name in sorted(tables):
        create_view(con, name, schema.table_dir(build, name))
    return con


def _summary_name(task: SplitTask) -> str:
    return f"{task.splits[0]}.json"


_READS = {"paragraph": {"articles", "paragraphs", "labels"}, "figure": {"articles", "figures", "paragraphs"}}
"""The tables a preset of each unit may read (those the build has are pulled by remote tasks)."""


def _none_first(value: Any) -> tuple[bool, Any]:
    return (value is not None, value)


@dataclass(frozen=True)
class _SplitWriter:
    """Writes one split's batches as Parquet or WebDataset shards."""

    preset: Preset
    format: Format
    shard_bytes: int
    row_group_bytes: int
    extension: str | None

    def write(
        self, batches: Iterator[pa.RecordBatch], arrow_schema: pa.Schema, folder: Path, split: str
    ) -> list[parquet.Shard]:
        if self.format == "parquet":
            features = hf_features(arrow_schema, self.preset.image_columns)
            return parquet.write_split(
                batches,
                parquet.with_features(arrow_schema, features),
                folder,
                split,
                shard_bytes=self.shard_bytes,
                row_group_bytes=self.row_group_bytes,
                image_columns=self.preset.image_columns,
            )
        assert self.extension is not None
        tables = (pa.Table.from_batches([batch]) for batch in batches)
        return webdataset.write_split(
            tables, folder, split, extension=self.extension, shard_bytes=self.shard_bytes
        )


def _check_format(out: Path, config: str, format: Format) -> None:
    """One format per folder: ``datasets`` and the Hub pick a single loader for a whole repository."""
    for path in sorted((out / PROVENANCE_DIR).glob("*.json")):
        other_config, other_format = _config_and_format(path)
        if other_config != config and other_format != format:
            raise ExportError(
                f"{out} already holds {other_format} config {other_config!r}: a dataset repository is "
                f"read with one loader, so export {format} into another folder"
            )


_TOP_KEY = re.compile(r'  "(config|format)": ("(?:[^"\\]|\\.)*"),?\n')
"""A ``config`` or ``format`` line of a provenance file as ``finish`` writes it: a top-level key
(JSON indented by 2 holds no other line indented by exactly 2; its strings hold no line break)."""


def _config_and_format(path: Path) -> tuple[str, str]:
    """A provenance file's config and format: from its first lines, where ``finish`` writes them
    (top-level keys, indented by 2, before the bulky ``source``, which holds the build's whole
    provenance), else from the whole file."""
    found: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        if lines.readline() == "{\n":
            for line in itertools.islice(lines, 64):
                key = _TOP_KEY.fullmatch(line)
                if key is not None:
                    found[key[1]] = json.loads(key[2])
                if len(found) == 2:
                    return found["config"], found["format"]
    other = json.loads(path.read_text())
    return other["config"], other["format"]


def _nothing_message(preset: Preset, subset: str | None) -> str:
    what = f"subset {subset!r}" if subset else f"the build's {preset.unit}s"
    extra = " with an image (harvest the media first)" if preset.image_columns else ""
    return f"nothing to export: {what} has no {preset.unit}s{extra}"


def _create_selection(
    con: duckdb.DuckDBPyConnection, build: Path, preset: Preset, subset: str | None
) -> dict[str, Any] | None:
    """The ``selection`` view: keys (and repeat index) of the rows to export."""
    key = f"{preset.unit}_id"
    table = f"{preset.unit}s"
    if subset is None:
        con.execute(f"CREATE VIEW selection AS SELECT {key}, 0 AS repeat FROM {table}")
        return None
    files, names = _subset_files(build, preset, subset)
    paths = ", ".join("'" + str(p.resolve()).replace("'", "''") + "'" for p in files)
    repeat = "repeat" if "repeat" in names else "0 AS repeat"
    con.execute(f"CREATE VIEW selection AS SELECT {key}, {repeat} FROM read_parquet([{paths}])")
    return _subset_info(build, subset)


def _subset_files(build: Path, preset: Preset, subset: str) -> tuple[list[Path], set[str]]:
    """The shards of ``subset`` and their columns; ``ExportError`` when it has none, or no key of
    the preset's unit."""
    folder = build / "subsets" / subset
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        known = sorted(
            p.name for p in (build / "subsets").glob("*") if p.is_dir() and not p.name.startswith(".")
        )
        raise ExportError(
            f"{build}: no subset {subset!r} (subsets: {', '.join(known) or 'none'}); "
            "make it with `pmcurate filter`"
        )
    names = {name for path in files for name in pq.read_schema(path).names}
    key = f"{preset.unit}_id"
    if key not in names:
        raise ExportError(
            f"subset {subset!r} holds no {key} column: preset {preset.name} exports {preset.unit}s "
            f"(make a {preset.unit} subset)"
        )
    return files, names


def _subset_info(build: Path, subset: str) -> dict[str, Any] | None:
    """The subset's parameters (``subset.json``), as its provenance records them."""
    meta = build / "subsets" / subset / "subset.json"
    return json.loads(meta.read_text()) if meta.is_file() else None


def _split_expression(split_by: str, preset: Preset, names: list[str]) -> str:
    if split_by == SPLIT_NONE:
        return "'train'"
    if split_by == SPLIT_BY_LICENSE:
        return license_group_sql(preset.license_column)
    if split_by not in names or split_by.startswith("__"):
        visible = [n for n in names if not n.startswith("__")]
        raise ExportError(
            f"cannot split by {split_by!r}: not a column of preset {preset.name} "
            f"(use {SPLIT_BY_LICENSE}, {SPLIT_NONE} or one of: {', '.join(visible)})"
        )
    value = f'lower(CAST("{split_by}" AS VARCHAR))'
    cleaned = f"trim(regexp_replace({value}, '[^a-z0-9]+', '_', 'g'), '_')"
    return f"CASE WHEN coalesce({cleaned}, '') = '' THEN 'unknown' ELSE {cleaned} END"


def _create_rows(con: duckdb.DuckDBPyConnection, preset: Preset, source: Source, split_by: str) -> str:
    """The ``export_rows`` view (rows plus ``__split``); returns the exported column list as SQL."""
    con.execute(f"CREATE VIEW preset_rows AS {preset.rows_sql(source)}")
    names = [d[0] for d in con.sql("DESCRIBE preset_rows").fetchall()]
    split = _split_expression(split_by, preset, names)
    con.execute(f"CREATE VIEW export_rows AS SELECT *, {split} AS __split FROM preset_rows")
    return ", ".join(f'"{n}"' for n in names if not n.startswith("__"))


def _image_formats(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Image count per format: the ``format`` column, or the first bytes where it is null."""
    named = "CASE lower(format) WHEN 'jpeg' THEN 'jpg' WHEN 'tiff' THEN 'tif' ELSE lower(format) END"
    head = "CASE WHEN format IS NULL THEN upper(hex(image.bytes[1:8])) END"
    rows = con.sql(f"SELECT {named}, {head}, count(*) FROM export_rows GROUP BY ALL").fetchall()
    counts: dict[str, int] = {}
    for fmt, first_bytes, n in rows:
        fmt = fmt or webdataset.sniff_format(bytes.fromhex(first_bytes or ""))
        counts[fmt] = counts.get(fmt, 0) + n
    return counts


class _DistinctValues:
    """The distinct values of a few columns, gathered from the batches as they stream by."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.values: dict[str, set] = {column: set() for column in columns}

    def observe(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for column, values in self.values.items():
                if column in batch.schema.names:
                    values.update(pc.unique(batch.column(column)).to_pylist())
            yield batch


def split_runs(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """``(split, rows)`` for each run of equal ``__split`` values in batches sorted by split."""
    for batch in batches:
        splits = batch.column("__split")
        rows = batch.drop_columns(["__split"])
        if batch.num_rows and splits[0] == splits[-1]:  # sorted: the whole batch is one split
            yield splits[0].as_py(), rows
            continue
        values = splits.to_pylist()
        start = 0
        for index in range(1, len(values) + 1):
            if index == len(values) or values[index] != values[start]:
                yield values[start], rows.slice(start, index - start)
                start = index


def _progress(reader: pa.RecordBatchReader, total: int, desc: str, enabled: bool) -> Iterator[pa.RecordBatch]:
    with tqdm(total=total, unit=" rows", desc=desc, disable=not enabled, dynamic_ncols=True) as bar:
        for batch in reader:
            yield batch
            bar.update(batch.num_rows)


def _install(staging: Path, folder: Path) -> None:
    """Replace the shards in ``folder`` by the staged ones (other files are left alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file() and SHARD_FILE.match(old.name):
            old.unlink()
    for new in sorted(staging.iterdir()):
        os.replace(new, folder / new.name)


def normalized_schema(arrow_schema: pa.Schema) -> pa.Schema:
    """``arrow_schema`` with list children named ``item`` (DuckDB names them ``l``), no metadata."""
    return pa.schema([pa.field(f.name, _normalized(f.type), f.nullable) for f in arrow_schema])


def _normalized(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(_normalized(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _normalized(f.type), f.nullable) for f in kind])
    return kind


_DTYPES = {"float": "float32", "double": "float64", "halffloat": "float16"}


def _dtype(kind: pa.DataType) -> str:
    name = str(kind)
    return _DTYPES.get(name, name)


def hf_features(arrow_schema: pa.Schema, image_columns: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``datasets`` features of ``arrow_schema`` as JSON (``Value``/``List``/struct/``Image``)."""
    return {f.name: {"_type": "Image"} if f.name in image_columns else _feature(f.type) for f in arrow_schema}


def _feature(kind: pa.DataType) -> dict[str, Any]:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return {"feature": _feature(kind.value_type), "_type": "List"}
    if pa.types.is_struct(kind):
        return {f.name: _feature(f.type) for f in kind}
    return {"dtype": _dtype(kind), "_type": "Value"}


def _provenance(
    build: Path,
    result: ExportResult,
    preset: Preset,
    split_by: str,
    subset: str | None,
    subset_info: dict[str, Any] | None,
    features: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What this config is and what it was made from; no times or absolute paths (reproducible)."""
    return {
        "config": result.config,
        "preset": preset.name,
        "description": preset.description,
        "task_categories": list(preset.task_categories),
        "format": result.format,
        "folder": result.folder,
        "split_by": split_by,
        "splits": {name: asdict(s) for name, s in result.splits.items()},
        "skipped_rows": result.skipped_rows,
        "image_columns": list(preset.image_columns),
        "features": features,
        "tool": {"name": "pmcurate", "version": __version__},
        "source": {
            "build": build.resolve().name,
            "subset": subset,
            "subset_parameters": subset_info,
            "inputs": inputs,
            "build_provenance": None,  # BuildFacts.into
            "annotators": None,
            "student": None,
        },
    }


@dataclass(frozen=True)
class BuildFacts:
    """What a config's provenance copies from the build: the build's provenance, the annotators of
    its labels and its student's report. ``export`` reads them while the tasks write."""

    provenance: Any
    annotators: list[str]
    student: Any
    provenance_text: str | None = None
    """``provenance`` as ``json.dumps(indent=2, ensure_ascii=False)`` writes it two levels deep, at
    its place in a record (``parts``)."""

    @classmethod
    def of(cls, plan: ExportPlan) -> BuildFacts:
        labels = "labels" in plan.tables & _READS[get_preset(plan.job.preset).unit]
        written = _read_text(plan.build / "provenance.json")
        provenance = _parse_json(written)
        return cls(
            provenance,
            _annotators(plan.build, plan.shards) if labels else [],
            _read_json(plan.build / "models" / "report.json") if labels else None,
            None
            if provenance is None
            else jsontext.indented(jsontext.dumps_indented(provenance, written), 2),
        )

    def into(self, info: dict[str, Any]) -> dict[str, Any]:
        """``info`` (``_provenance``) with these facts in its ``source``, at their places."""
        source = {
            **info["source"],
            "build_provenance": self.provenance,
            "annotators": self.annotators,
            "student": self.student,
        }
        return {**info, "source": source}

    def parts(self, record: dict[str, Any]) -> list[str]:
        """``json.dumps(record, indent=2, ensure_ascii=False)`` of a record ``into`` filled, in parts:
        the build's provenance is one of them, from ``provenance_text`` rather than encoded again
        (megabytes, by the standard library's pure-Python indenting encoder: ``jsontext``) or joined
        to the rest."""
        source = record["source"]
        if self.provenance_text is None or source["build_provenance"] is not self.provenance:
            return [json.dumps(record, indent=2, ensure_ascii=False)]
        rest = {**record, "source": {**source, "build_provenance": None}}
        head, null, tail = json.dumps(rest, indent=2, ensure_ascii=False).rpartition(_BUILD_PROVENANCE_NULL)
        assert null, "a record of _provenance has source.build_provenance"
        return [head, _BUILD_PROVENANCE, self.provenance_text, tail]


_BUILD_PROVENANCE = '\n    "build_provenance": '
_BUILD_PROVENANCE_NULL = _BUILD_PROVENANCE + "null"
"""``source.build_provenance`` left null in a record's indented text: the last key indented by 4
(two levels deep) of that name, as ``source`` is the last such dict of the record and holds it."""


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def _parse_json(text: str | None) -> Any:
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


def _read_json(path: Path) -> Any:
    return _parse_json(_read_text(path))


def input_checksums(
    plan: ExportPlan, file_sha256: Callable[[Path], str] | None = None
) -> dict[str, dict[str, Any]]:
    """The checksum of each table the export reads (``_table_checksum``); ``file_sha256``: a
    cached sha256 of a file (the build's content hashes), else each file is read and hashed."""
    used = sorted(plan.tables & _READS[get_preset(plan.job.preset).unit])
    shards = plan.shards or _Shards(plan.build)
    return {name: _table_checksum(shards, name, file_sha256 or _sha256) for name in used}


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _table_checksum(shards: _Shards, name: str, file_sha256: Callable[[Path], str]) -> dict[str, Any]:
    """Shard count, rows and a sha256 over the table's shard files (name and content, sorted)."""
    digest = hashlib.sha256()
    rows = 0
    paths = shards.paths(name)
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        digest.update(bytes.fromhex(file_sha256(path)))
        rows += shards.metadata(path).num_rows
    return {"shards": len(paths), "rows": rows, "sha256": digest.hexdigest()}


def _annotators(build: Path, shards: _Shards | None = None) -> list[str]:
    """The distinct annotators of the build's labels, sorted: from each shard's statistics where
    they tell them (``_stated_values``), else from its values. ``shards``: the footers read already."""
    found: set[str] = set()
    shards = shards or _Shards(build)
    for path in shards.paths("labels"):
        stated = _stated_values(shards.metadata(path), "annotator")
        if stated is None:
            column = pq.read_table(path, columns=["annotator"]).column("annotator")
            stated = set(pc.unique(column.drop_null()).to_pylist())
        found |= stated
    return sorted(found)


def _stated_values(metadata: pq.FileMetaData, column: str) -> set[Any] | None:
    """The distinct non-null values of ``column`` in a shard, as its statistics tell them: each row
    group all nulls or one value (its minimum is its maximum: a writer that truncates them never
    makes them equal); ``None`` when they do not tell (no statistics, several values)."""
    values = set()
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        chunks = [group.column(i) for i in range(group.num_columns)]
        stats = next((c.statistics for c in chunks if c.path_in_schema == column), None)
        if stats is None or not stats.has_null_count:
            return None
        if stats.null_count == group.num_rows:
            continue
        if not stats.has_min_max or stats.min != stats.max:
            return None
        values.add(stats.min)
    return values
