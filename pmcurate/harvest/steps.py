"""The harvest steps (``step.Step``): ``harvest:local``, and ``harvest:<kind>`` for a network source.

``harvest:local`` is a per-task step (its ``fingerprint`` is None): ``plan`` gives the tasks of
``LocalSource`` whose shards are not all written, ``prepare`` removes what a killed run or a
changed input left (unfinished shards, shards of tasks no longer planned, from every table),
``run`` parses and writes one task in a worker (``local.run_task``), and ``finish`` settles
copies of one article across shards (``LocalSource.settle``) and counts the tables.

A network source (``pmc``, ``europepmc``, ``eutils``) fetches with its own polite, bounded
concurrency (``fetch.Fetcher``) in one process: its step plans no tasks and harvests in
``finish``; it always runs (finished shards are found and kept by the source itself).
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pmcurate import schema
from pmcurate.harvest import HarvestInputError, archive, jats, local, source, store
from pmcurate.step import Build, Step, StepConfig, StepFailed, StepInterrupted, StepReport, option

CONTENT = ("articles", "paragraphs", "figures", "tables", "quarantine")
"""The tables a harvest writes."""


@dataclass(frozen=True)
class LocalConfig(StepConfig):
    """``harvest local`` and ``[[sources]] kind = "local"``."""

    paths: tuple[Path, ...] = option(
        (), "JATS files (.xml, .nxml, .xml.gz), folders, .tar.gz packages", cli=""
    )
    batch_size: int = option(local.DEFAULT_BATCH_SIZE, "documents per shard", metavar="N")
    citations: str = option(
        "marker",
        "bibliography citations in the text: a marker such as ' [1]' where a number would glue to a "
        "word, or dropped with their brackets (docs/jats.md)",
        choices=jats.CITATION_MODES,
    )
    shard_bytes: int = option(local.DEFAULT_SHARD_BYTES, "bytes of XML and images per shard", manifest=False)
    max_member_bytes: int = option(
        archive.DEFAULT_MAX_MEMBER_BYTES, "largest document or image read", manifest=False
    )

    def source(self) -> local.LocalSource:
        return local.LocalSource(
            self.paths,
            batch_size=self.batch_size,
            shard_bytes=self.shard_bytes,
            max_member_bytes=self.max_member_bytes,
            citations=self.citations,
        )


@dataclass(frozen=True)
class LocalTask:
    """One ``local.Task`` of a build: what a worker needs to parse and write it."""

    task: local.Task
    build: Path

    @property
    def key(self) -> str:
        return self.task.key

    @property
    def size(self) -> int:
        return self.task.size


class LocalHarvest(Step[LocalConfig, LocalTask]):
    """``harvest:local``: JATS files on disk → the base tables, per task, resumable."""

    name = "harvest:local"
    writes = CONTENT

    def __init__(self, config: LocalConfig) -> None:
        super().__init__(config)
        self._source = config.source()
        self._files: list[Path] | None = None
        self._tasks: list[local.Task] | None = None
        self._removed = 0

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to workers without the plan (each task carries its files)."""
        return {**self.__dict__, "_files": None, "_tasks": None}

    def fingerprint(self, build: Build) -> None:
        return None  # per task: a task whose shards are written is done

    def all_tasks(self) -> list[local.Task]:
        """Every task of the inputs, in input order (planned once per run)."""
        if self._tasks is None:
            self._files = self._source.files()
            self._tasks = self._source.plan(self._files)
        return self._tasks

    def plan(self, build: Build) -> list[LocalTask]:
        completed = store.completed_shards(build.path)
        return [LocalTask(task, build.path) for task in self.all_tasks() if not task.is_complete(completed)]

    def explain(self, build: Build, tasks: list[LocalTask]) -> tuple[str, str]:
        every = self.all_tasks()
        files = len(self._files or ())
        stale = {local.task_key(name) for name in local.stale_shards(build.path, every)}
        if not tasks and not stale:  # --force does not parse finished shards again: they are the inputs' rows
            return "unchanged", f"all {len(every)} tasks done ({files} input files)"
        parts = [f"{len(tasks)} of {len(every)} tasks ({files} input files) to parse"]
        if stale:
            parts.append(f"shards of {len(stale)} changed or removed tasks to remove")
        return "run", "; ".join(parts)

    def task_reads(self, build: Build) -> list[Path]:
        """A task skips its shards already written: it lists the articles table (its input files
        are outside the build: a worker reads them at the driver's paths)."""
        return [schema.table_dir(build.path, "articles")]

    def prepare(self, build: Build) -> None:
        store.remove_unfinished(build.path, prefix=f"{local.SOURCE}-")
        self._removed = local.prune_stale_shards(build.path, self.all_tasks())

    def setup(self) -> None:
        gc.freeze()  # the imports' objects: never garbage, never walked again by the collector

    def run(self, task: LocalTask) -> dict[str, int]:
        config = self.config
        counts = local.run_task(
            task.task,
            task.build,
            batch_size=config.batch_size,
            shard_bytes=config.shard_bytes,
            max_member_bytes=config.max_member_bytes,
            citations=config.citations,
            report=lambda *progress: None,
        )
        return asdict(counts)

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        total = local.Counts()
        for part in counts:
            total.add(local.Counts(**part))
        # every run: a run killed while settling left no pending task behind it
        duplicates = self._source.settle(build.path, self.all_tasks())["articles"]
        total.duplicates += duplicates
        tables = {name: rows(build.path, name) for name in ("articles", "paragraphs", "figures")}
        tables["figures without image"] = figures_without_image(build.path)
        drops = {"quarantined": total.quarantined, "duplicate": total.duplicates}
        return StepReport(
            self.name,
            "ran" if counts or self._removed or duplicates else "unchanged",
            counts={
                "files": len(self._files or ()),
                "tasks run": len(counts),
                "of": len(self.all_tasks()),
                "stale shards removed": self._removed,
                "articles parsed": total.articles,
                **tables,
            },
            drops={reason: n for reason, n in drops.items() if n},
        )


class NetworkHarvest(Step[StepConfig, Any]):
    """``harvest:<kind>#<n>``: the harvest of one network source (``source.get(kind)``), run in the
    driver, where its fetcher bounds its concurrency and rate. ``settings``: the ``[[sources]]``
    keys given (``ids``: the file naming them, read when the step runs)."""

    writes = CONTENT

    def __init__(self, kind: str, index: int, settings: Mapping[str, Any]) -> None:
        super().__init__(StepConfig(), name=f"harvest:{kind}#{index}")
        self.kind = kind
        self.index = index
        self.settings = dict(settings)

    def fingerprint(self, build: Build) -> None:
        return None

    def explain(self, build: Build, tasks: list[Any]) -> tuple[str, str]:
        return "run", f"asks {self.kind} for new or changed articles (finished shards are kept)"

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.harvest.fetch import HarvestInterrupted, read_id_file

        where = f"harvest {self.kind} (sources #{self.index})"
        harvester = source.get(self.kind)
        settings = dict(self.settings)
        try:
            if "ids" in settings:  # the file naming them
                settings["ids"] = tuple(read_id_file(settings["ids"]))
            summary = harvester.harvest(harvester.options(build.path, settings))
        except HarvestInputError as exc:
            raise StepFailed(f"{where}: {exc}") from None
        except HarvestInterrupted as exc:
            raise StepInterrupted(f"{where}: {exc}") from None
        return StepReport(
            self.name,
            "ran",
            counts={
                "articles": summary.articles,
                "shards_written": summary.shards_written,
                "shards_skipped": summary.shards_skipped,
            },
            drops={"quarantined": summary.quarantined, **dict(summary.skipped), **dict(summary.failures)},
        )


def rows(build: Path, table: str) -> int:
    """Rows of a table, from the shards' Parquet footers."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in schema.shard_paths(build, table))


def figures_without_image(build: Path) -> int:
    """Figures of the build that have no image: the null count of ``image_sha256`` in the shards'
    Parquet statistics (the column is read only where a row group has none)."""
    import pyarrow.parquet as pq

    missing = 0
    for path in schema.shard_paths(build, "figures"):
        shard = pq.ParquetFile(path)
        column = shard.schema_arrow.get_field_index("image_sha256")
        for group in range(shard.metadata.num_row_groups):
            stats = shard.metadata.row_group(group).column(column).statistics
            if stats is not None and stats.has_null_count:
                missing += stats.null_count
            else:
                missing += shard.read_row_group(group, columns=["image_sha256"]).column(0).null_count
    return missing
