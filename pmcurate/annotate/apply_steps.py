"""``annotate:apply``: every paragraph of the build labelled by its student, as one ``Step``.

One path for every student (fastText, distilled, embedding, encoder), from ``pmcurate annotate
apply`` and from ``pmcurate build`` alike: ``run_step`` plans the tasks, each worker loads the
student once (``setup``), and the labels land in ``tables/labels/<shard>.parquet``, one labels
shard per paragraphs shard, in the paragraphs' row order.

Work is split by size, not by shard: a task is a range of rows of one paragraphs shard, cut as
coarsely as lets the workers finish together (``task_size``): whole shards when they already share
out evenly (as many shards of a size as workers), else parts down to ``rows_per_task`` paragraphs
(a sixteenth of the build, within ``MIN_TASK_ROWS`` and ``MAX_TASK_ROWS``). A task that covers
a whole shard writes its labels shard; the parts of a larger shard are written under
``tables/labels/.parts/`` and joined, in row order, by ``finish``. A killed run resumes: a shard
whose labels carry the current annotator is done, and so is a part already written for the same
student and the same paragraphs shard.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pmcurate import labels, schema
from pmcurate.annotate import student, students
from pmcurate.annotate.apply_config import ApplyConfig
from pmcurate.executor import LocalExecutor
from pmcurate.step import Build, Runner, Step, StepReport, run_step

MIN_TASKS = 16
"""A build is cut into at least this many tasks (when it is large enough): workers stay busy to the end."""
MIN_TASK_ROWS = 2_048
MAX_TASK_ROWS = 65_536
"""Paragraphs per task at most: what one worker holds in memory at once."""
BALANCE = 1.05
"""Shards are cut no finer than needed for the workers to finish within 5% of an even share: each
task has a fixed cost (reading, setting up the step's arrays) and each part is joined again."""
PARTS = ".parts"
COLUMNS = ["paragraph_id", "article_id", "text", "section_type", "section_title"]


@dataclass(frozen=True)
class LabelTask:
    """Rows ``start``–``stop`` of one paragraphs shard; ``part``: the file they go to when the
    shard is cut into several tasks (None: the labels shard itself)."""

    source: Path
    target: Path
    start: int
    stop: int
    part: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.source.name}:{self.start}-{self.stop}"

    @property
    def size(self) -> int:
        return self.stop - self.start


def rows_per_task(total: int, workers: int | None = None) -> int:
    """Paragraphs per task: a sixteenth of ``total``, or everything on one worker (``workers`` 1:
    cutting a shard only adds work), within ``MIN_TASK_ROWS`` and ``MAX_TASK_ROWS``."""
    share = total if workers == 1 else math.ceil(total / MIN_TASKS)
    return min(MAX_TASK_ROWS, max(MIN_TASK_ROWS, share))


def task_size(shard_rows: Sequence[int], workers: int | None) -> int:
    """Rows per task for shards of ``shard_rows`` rows on ``workers``: the coarsest cut (each shard
    into equal parts of at most that many rows, ``split_shard``) under which the workers, each taking
    the next task in order as it finishes, end within ``BALANCE`` of an even share; at the finest,
    ``rows_per_task``, which also decides for one worker or an unknown number."""
    total = sum(shard_rows)
    finest = rows_per_task(total, workers)
    if workers is None or workers == 1 or not shard_rows:
        return finest
    largest = min(max(shard_rows), MAX_TASK_ROWS)
    for count in itertools.count(1):
        size = math.ceil(largest / count)
        if size <= finest:
            return finest
        if finishing_time(shard_rows, size, workers) <= BALANCE * total / workers:
            return size
    raise AssertionError("unreachable: the sizes shrink to the finest")


def finishing_time(shard_rows: Sequence[int], size: int, workers: int) -> int:
    """Rows done by the busiest of ``workers`` that take the parts of ``size`` rows at most, in
    order, each as soon as it is free (as the executor hands them out)."""
    loads = [0] * workers
    for rows in shard_rows:
        count = max(1, math.ceil(rows / size))
        for start, stop in itertools.pairwise(rows * i // count for i in range(count + 1)):
            heapq.heapreplace(loads, loads[0] + stop - start)
    return max(loads)


def parts_dir(target: Path, source: Path, annotator: str) -> Path:
    """Where the parts of ``target`` go: named for the student and the paragraphs shard's version,
    so a part left by a killed run is reused only for the same student and the same rows."""
    stat = source.stat()
    tag = hashlib.sha256(f"{annotator}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return target.parent / PARTS / f"{target.stem}.{tag}"


def split_shard(source: Path, target: Path, rows: int, size: int, annotator: str) -> list[LabelTask]:
    """Tasks of about ``size`` rows covering the ``rows`` of ``source`` (parts already written: none)."""
    count = max(1, math.ceil(rows / size))
    if count == 1:
        return [LabelTask(source, target, 0, rows)]
    folder = parts_dir(target, source, annotator)
    bounds = [rows * i // count for i in range(count + 1)]
    tasks = []
    for start, stop in itertools.pairwise(bounds):
        part = folder / f"{start:012d}-{stop:012d}.parquet"
        if not student.is_current(part, annotator):
            tasks.append(LabelTask(source, target, start, stop, part))
    return tasks


def read_rows(source: Path, start: int, stop: int, *, context: bool) -> pl.DataFrame:
    """Rows ``start``–``stop`` of a paragraphs shard: what the student reads (with the article type
    when ``context``) and what the computed labels read."""
    columns = [*(COLUMNS if context else COLUMNS[:3]), *labels.computed_reads()]
    rows = pl.scan_parquet(source).select(list(dict.fromkeys(columns))).slice(start, stop - start).collect()
    if context:
        rows = rows.join(student.article_types(source), on="article_id", how="left", maintain_order="left")
    return rows


class ApplyStep(Step[ApplyConfig, LabelTask]):
    """Label every paragraph with the student ``config.student`` names."""

    name = "annotate:apply"
    reads = ("articles", "paragraphs")
    writes = ("labels",)

    def __init__(self, config: ApplyConfig, *, name: str | None = None, workers: int | None = None) -> None:
        """``workers``: how many run the tasks, when known (1: shards are not cut)."""
        super().__init__(config, name=name)
        self.workers = 1 if self.in_process else workers
        self.build: Path | None = None
        self.annotator: str | None = None
        self.labeller: Any = None

    @property
    def in_process(self) -> bool:
        """Run the tasks in this process (a torch student uses every core, or the GPU, itself)."""
        return students.get(self.config.student).in_process

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "labeller": None}  # each worker loads the student itself

    def fingerprint(self, build: Build) -> str | None:
        return None  # decided per shard: labels made by the current student are kept

    def plan(self, build: Build) -> list[LabelTask]:
        sources = build.shards("paragraphs")
        self.annotator = None
        chosen = students.get(self.config.student)
        if build.plan is not None and not (sources and chosen.trained(build.path)):
            return []  # in a plan, before harvest or training: explain() says so
        if not sources:
            raise student.StudentError(
                f"{schema.table_dir(build.path, 'paragraphs')}: no paragraph shards to label"
            )
        manifest = chosen.manifest(build.path)
        self.build, self.annotator = build.path, manifest["annotator"]
        out = schema.table_dir(build.path, "labels")
        todo = [s for s in sources if build.force or not student.is_current(out / s.name, self.annotator)]
        rows = {s: pq.ParquetFile(s).metadata.num_rows for s in todo}
        size = task_size(list(rows.values()), self.workers)
        return [t for s in todo for t in split_shard(s, out / s.name, rows[s], size, self.annotator)]

    def explain(self, build: Build, tasks: list[LabelTask]) -> tuple[str, str]:
        sources = build.shards("paragraphs")
        shards = len({t.source for t in tasks})
        if build.force:
            return "run", "--force"
        if self.annotator is None:
            return "run", "labels every paragraph once the students exist"
        if shards:
            return "run", f"{shards} of {len(sources)} paragraphs shards lack current labels"
        if build.pending:
            return "may run", f"labels the shards {build.pending} adds or changes"
        return "unchanged", f"all {len(sources)} paragraphs shards labelled by this student"

    def task_reads(self, build: Build) -> list[Path]:
        """The paragraphs shards, the articles (their types) and the student's files."""
        return [schema.table_dir(build.path, name) for name in self.reads] + [build.path / "models"]

    def prepare(self, build: Build) -> None:
        """Remove what a killed run left half-written, labels of paragraphs shards now gone, and
        parts of older students or older paragraphs shards."""
        out = schema.table_dir(build.path, "labels")
        schema.remove_temporaries(out)
        wanted = {s.name for s in build.shards("paragraphs")}
        for orphan in build.shards("labels"):
            if orphan.name not in wanted:
                orphan.unlink()
        parts = out / PARTS
        if parts.is_dir():
            assert self.annotator is not None
            current = {parts_dir(out / s.name, s, self.annotator).name for s in build.shards("paragraphs")}
            for folder in parts.iterdir():
                if folder.name not in current:
                    shutil.rmtree(folder, ignore_errors=True)

    def setup(self) -> None:
        assert self.build is not None, "plan() sets the build before the tasks are shipped"
        self.labeller = students.get(self.config.student).load(self.build, self.config)

    def run(self, task: LabelTask) -> dict[str, int]:
        table = label_rows(self.labeller, task.source, task.start, task.stop)
        path = task.part or task.target
        path.parent.mkdir(parents=True, exist_ok=True)
        schema.write_shard(table, path)
        return {"paragraphs_labelled": table.num_rows, "shards_labelled": int(task.part is None)}

    def teardown(self) -> None:
        self.labeller = None

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        """Join the parts of each shard cut into several tasks into its labels shard, in row order."""
        joined = join_parts(schema.table_dir(build.path, "labels"))
        return StepReport(
            self.name,
            "ran" if counts or joined else "unchanged",
            counts={
                "shards": len(build.shards("paragraphs")),
                "shards_labelled": sum(c["shards_labelled"] for c in counts) + joined,
                "paragraphs_labelled": sum(c["paragraphs_labelled"] for c in counts),
            },
            note=self.annotator or "",
        )


def join_parts(out: Path) -> int:
    """Write each folder of parts under ``out/.parts/`` as its labels shard; return how many."""
    parts = out / PARTS
    if not parts.is_dir():
        return 0
    folders = sorted(p for p in parts.iterdir() if p.is_dir())
    for folder in folders:
        tables = [pq.read_table(f, schema=schema.LABELS) for f in sorted(folder.glob("*.parquet"))]
        schema.write_shard(
            pa.concat_tables(tables).combine_chunks(), out / f"{folder.name.rsplit('.', 1)[0]}.parquet"
        )
        shutil.rmtree(folder)
    shutil.rmtree(parts, ignore_errors=True)
    return len(folders)


def label_rows(labeller: Any, source: Path, start: int, stop: int) -> pa.Table:
    """The LABELS rows of rows ``start``–``stop`` of ``source``, in their order."""
    frame = read_rows(source, start, stop, context=labeller.context)
    taught = (
        _label_overlapped(labeller, frame) if hasattr(labeller, "label_tokens") else labeller.label(frame)
    )
    computed = frame.select("paragraph_id", *labels.computed_reads())
    return labels.with_computed(taught, computed.to_arrow(compat_level=pl.CompatLevel.oldest()))


def _label_overlapped(labeller: Any, frame: pl.DataFrame) -> pa.Table:
    """The encoder student: a background thread tokenizes the next batch while the model labels
    this one (the fast tokenizer releases the GIL)."""
    from pmcurate.annotate import encoder

    batches = frame.iter_slices(labeller.config.read_batch)
    tokenized = ((batch, labeller.tokenize(batch)) for batch in batches)
    parts = [
        labeller.label_tokens(batch, tokens)
        for batch, tokens in encoder.prefetch(tokenized, labeller.config.prefetch)
    ]
    return pa.concat_tables(parts) if parts else schema.TAUGHT_LABELS.empty_table()


def apply(
    build: str | os.PathLike[str],
    config: ApplyConfig | None = None,
    *,
    workers: int | None = None,
    executor: Runner | None = None,
    force: bool = False,
    progress: bool = True,
) -> StepReport:
    """``annotate apply``: the step run on its own, on ``executor`` or a local pool of ``workers``
    (default: one per core; a torch student runs in this process)."""
    config = config or ApplyConfig()
    opened = Build.open(Path(build), force=force, progress=progress)
    if students.get(config.student).in_process:
        return run_step(ApplyStep(config), opened)
    if executor is not None:
        return run_step(ApplyStep(config, workers=executor.workers), opened, executor)
    pool = LocalExecutor(workers)
    try:
        return run_step(ApplyStep(config, workers=pool.workers), opened, pool)
    finally:
        pool.close()
