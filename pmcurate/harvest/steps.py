"""The harvest steps (``step.Step``): ``harvest:local``, and ``harvest:<kind>`` for a network source.

``harvest:local`` is a per-task step (its ``fingerprint`` is None): ``plan`` gives the tasks of
``LocalSource`` whose shards are not all written, ``prepare`` removes what a killed run or a
changed input left (unfinished shards, shards of tasks no longer planned, from every table),
``run`` parses and writes one task in a worker (``local.run_task``), and ``finish`` settles
copies of one article across shards (``LocalSource.settle``) and counts the tables.

A network source (``pmc``, ``europepmc``, ``eutils``) fetches with its own polite, bounded
concurrency (``fetch.Fetcher``) in one process: its step plans no tasks and harvests in
``finish``; it always runs (finished shards are found and kept by the source itself).

Each source kind has its config (``LocalConfig``, ``PmcConfig``, ``EuropePmcConfig``,
``EutilsConfig``): the keys of its ``[[sources]]`` table and the options of its ``pmcurate harvest``
command.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pmcurate import schema
from pmcurate.harvest import HarvestInputError, archive, jats, local, source, store
from pmcurate.step import (
    Build,
    ConfigError,
    Size,
    Step,
    StepConfig,
    StepReport,
    option,
)

if TYPE_CHECKING:  # the network sources import the HTTP client: only when one harvests
    from pmcurate.harvest.europepmc import EuropePmcOptions
    from pmcurate.harvest.eutils import EutilsOptions
    from pmcurate.harvest.fetch import FetchConfig
    from pmcurate.harvest.pmc import PmcOptions

CONTENT = ("articles", "paragraphs", "figures", "tables", "quarantine")
"""The tables a harvest writes."""


@dataclass(frozen=True)
class LocalConfig(StepConfig):
    """``harvest local`` and ``[[sources]] kind = "local"``."""

    kind: ClassVar[str] = "local"

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
    shard_bytes: int = option(
        local.DEFAULT_SHARD_BYTES, "bytes of XML and images per shard", cli="", manifest=False
    )
    max_member_bytes: int = option(
        archive.DEFAULT_MAX_MEMBER_BYTES, "largest document or image read", cli="", manifest=False
    )

    @classmethod
    def merge(cls, configs: Sequence[LocalConfig]) -> LocalConfig:
        """The one config of several local sources (a build harvests them as one step): their paths;
        they must agree on the settings that make the shards."""
        settings = {}
        for name in ("batch_size", "citations"):
            values = {getattr(config, name) for config in configs}
            if len(values) > 1:
                raise ConfigError(
                    f"local sources disagree on {name} ({', '.join(sorted(map(str, values)))}); give one"
                )
            settings[name] = values.pop()
        return cls(paths=tuple(path for config in configs for path in config.paths), **settings)

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
        self._started = time.perf_counter()

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

    def setup(self) -> None:
        gc.freeze()  # the imports' objects: never garbage, never walked again by the collector

    def run(self, task: LocalTask) -> dict[str, Any]:
        """The task's counts, and under ``hashes`` the ``local.FileHash`` of its plain XML files."""
        config = self.config
        counts, hashes = local.run_task(
            task.task,
            task.build,
            batch_size=config.batch_size,
            shard_bytes=config.shard_bytes,
            max_member_bytes=config.max_member_bytes,
            citations=config.citations,
        )
        return {**asdict(counts), "hashes": hashes}

    def prepare(self, build: Build) -> None:
        self._started = time.perf_counter()
        store.remove_unfinished(build.path, prefix=f"{local.SOURCE}-")
        self._removed = local.prune_stale_shards(build.path, self.all_tasks())

    def finish(self, build: Build, counts: list[dict[str, Any]]) -> StepReport:
        """Settle copies of an article across shards, count the tables; ``result``: the
        ``local.HarvestSummary`` that ``pmcurate harvest local`` prints. The hashes of the files
        the tasks read go to the build's content hashes (provenance does not read them again)."""
        every = self.all_tasks()
        total = local.HarvestSummary(
            build=build.path, tasks=len(every), tasks_skipped=len(every) - len(counts)
        )
        for part in counts:
            part = dict(part)
            for name, (size, mtime_ns, digest) in part.pop("hashes", {}).items():
                build.hashes.record(name, size, mtime_ns, digest)
            total.add(local.Counts(**part))
        # every run: a run killed while settling left no pending task behind it
        parsed = total.articles
        removed = self._source.settle(build.path, every)
        duplicates = removed["articles"]
        total.duplicates += duplicates
        for table, removed_rows in removed.items():  # rows of an earlier, interrupted run: not counted here
            setattr(total, table, max(0, getattr(total, table) - removed_rows))
        total.seconds = time.perf_counter() - self._started
        self.result = total
        tables = {name: rows(build.path, name) for name in ("articles", "paragraphs", "figures")}
        tables["figures without image"] = figures_without_image(build.path)
        drops = {"quarantined": total.quarantined, "duplicate": total.duplicates}
        return StepReport(
            self.name,
            "ran" if counts or self._removed or duplicates else "unchanged",
            counts={
                "files": len(self._files or ()),
                "tasks run": len(counts),
                "of": len(every),
                "stale shards removed": self._removed,
                "articles parsed": parsed,
                **tables,
            },
            drops={reason: n for reason, n in drops.items() if n},
        )


@dataclass(frozen=True, kw_only=True)
class NetworkConfig(StepConfig):
    """What every network source takes: how many articles, how they are cut into shards, and how
    politely and persistently they are fetched (``fetch.FetchConfig``)."""

    kind: ClassVar[str]

    base_url: str | None = option(None, "service root (default: the service's public address)", metavar="URL")
    limit: int | None = option(None, "harvest at most N articles", metavar="N")
    batch_size: int = option(100, "articles per shard", metavar="N")
    concurrency: int = option(8, "requests in flight", metavar="N")
    rate: float | None = option(
        None,
        "requests/s per host (default 10; pmc: 500; eutils: 3, or 10 with NCBI_API_KEY)",
        minimum=0,
        metavar="N",
    )
    retries: int = option(5, "attempts after the first", minimum=0, metavar="N")
    timeout: float = option(30.0, "seconds per connect/read", metavar="SECONDS")
    max_bytes: Size = option(Size(1 << 30), "byte cap per object", metavar="SIZE")

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("rate: expected a number > 0")

    def fetch_config(self, default_rate: float | None = None) -> FetchConfig:
        """How to fetch: the settings given, ``default_rate`` (else ``FetchConfig``'s) when no rate is."""
        from pmcurate.harvest.fetch import FetchConfig

        rate = self.rate or default_rate
        fetch = FetchConfig(
            concurrency=self.concurrency, retries=self.retries, timeout=self.timeout, max_bytes=self.max_bytes
        )
        return replace(fetch, rate=rate) if rate else fetch

    def service(self) -> dict[str, Any]:
        """The options of the source's harvest that are set only when given (its defaults apply)."""
        return {"base_url": self.base_url} if self.base_url else {}

    def harvest_options(self, build: Path) -> Any:
        """The source's harvest options for ``build`` (reads an id file)."""
        raise NotImplementedError


def _ids(path: Path | None, what: str) -> tuple[str, ...]:
    """The ids in the file ``path`` (none when no file); ``HarvestInputError`` for a file without any."""
    from pmcurate.harvest.fetch import read_id_file

    if path is None:
        return ()
    ids = tuple(read_id_file(path))
    if not ids:
        raise HarvestInputError(f"no {what} in {path}")
    return ids


def _exactly_one(**given: Any) -> None:
    chosen = [name for name, value in given.items() if value]
    if len(chosen) != 1:
        raise ConfigError(f"give exactly one of {', '.join(given)} (got {', '.join(chosen) or 'none'})")


BUCKET_CONCURRENCY = 32
BUCKET_RATE = 500.0
"""The PMC bucket's defaults (requests in flight, requests/s): S3 serves at least 5,500 GETs a
second per key prefix (AWS's documented floor) and each article version has a prefix of its own,
where the services' politeness default of 10 requests/s would harvest the bucket's ~7M articles
(a metadata object and an XML each) in 16 days. 500/s is ~240 articles/s; the harvest's one
process then bounds it (5 ms of CPU an article against a local S3, ~200 articles/s: ~10 h)."""


@dataclass(frozen=True, kw_only=True)
class PmcConfig(NetworkConfig):
    """``harvest pmc`` and ``[[sources]] kind = "pmc"``: the PMC Cloud Service bucket."""

    kind: ClassVar[str] = "pmc"

    concurrency: int = option(BUCKET_CONCURRENCY, "requests in flight", metavar="N")
    ids: Path | None = option(
        None, "PMCIDs, one per line (PMC123 or PMC123.2)", metavar="FILE", group="selection"
    )
    since: date | None = option(None, "versions new or changed since DATE", metavar="DATE", group="selection")
    all: bool = option(False, "every article in the bucket", group="selection")
    license: str | None = option(None, "commercial, noncommercial or codes (CC BY,CC0…)", metavar="SEL")
    media: bool = option(False, "also fetch figure images (MD5-verified)")
    skip_retracted: bool = option(False, "do not harvest retracted articles")
    include_manuscripts: bool = option(
        False, "also harvest author manuscripts (is_pmc_openaccess false, license TDM), left out by default"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _exactly_one(ids=self.ids, since=self.since, all=self.all)

    def harvest_options(self, build: Path) -> PmcOptions:
        from pmcurate.harvest.pmc import PmcOptions

        return PmcOptions(
            out=build,
            ids=_ids(self.ids, "PMCIDs"),
            since=self.since,
            all=self.all,
            license=self.license,
            limit=self.limit,
            media=self.media,
            skip_retracted=self.skip_retracted,
            include_manuscripts=self.include_manuscripts,
            batch_size=self.batch_size,
            fetch=self.fetch_config(BUCKET_RATE),
            **self.service(),
        )


@dataclass(frozen=True, kw_only=True)
class EuropePmcConfig(NetworkConfig):
    """``harvest europepmc`` and ``[[sources]] kind = "europepmc"``: a Europe PMC search."""

    kind: ClassVar[str] = "europepmc"

    query: str = option(help="e.g. 'OPEN_ACCESS:Y AND LICENSE:\"cc by\"'")

    def harvest_options(self, build: Path) -> EuropePmcOptions:
        from pmcurate.harvest.europepmc import EuropePmcOptions

        return EuropePmcOptions(
            out=build,
            query=self.query,
            limit=self.limit,
            batch_size=self.batch_size,
            fetch=self.fetch_config(),
            **self.service(),
        )


@dataclass(frozen=True, kw_only=True)
class EutilsConfig(NetworkConfig):
    """``harvest eutils`` and ``[[sources]] kind = "eutils"``: efetch db=pmc, by ids or a search. The
    API key comes from ``NCBI_API_KEY`` only, never from a config."""

    kind: ClassVar[str] = "eutils"

    ids: Path | None = option(
        None, "PMC ids, one per line (PMC123 or 123)", metavar="FILE", group="selection"
    )
    query: str | None = option(
        None, "an esearch term, e.g. 'cc_by_license[Filter] AND malaria'", group="selection"
    )
    email: str | None = option(None, "contact address sent to NCBI with every request")
    tool: str = option("pmcurate", "tool name sent to NCBI")

    def __post_init__(self) -> None:
        super().__post_init__()
        _exactly_one(ids=self.ids, query=self.query)

    def harvest_options(self, build: Path) -> EutilsOptions:
        from pmcurate.harvest import eutils

        api_key = os.environ.get("NCBI_API_KEY") or None
        ceiling = eutils.RATE_WITH_KEY if api_key else eutils.RATE_WITHOUT_KEY
        return eutils.EutilsOptions(
            out=build,
            ids=_ids(self.ids, "PMC ids"),
            query=self.query,
            limit=self.limit,
            batch_size=self.batch_size,
            tool=self.tool,
            email=self.email,
            api_key=api_key,
            fetch=self.fetch_config(ceiling),
            **self.service(),
        )


SourceConfig = LocalConfig | PmcConfig | EuropePmcConfig | EutilsConfig
CONFIGS: dict[str, type[SourceConfig]] = {
    config.kind: config for config in (LocalConfig, PmcConfig, EuropePmcConfig, EutilsConfig)
}
"""Source kind → its config."""


def harvest_steps(sources: Sequence[SourceConfig]) -> list[Step[Any, Any]]:
    """The harvest steps of a manifest's sources: the local ones as one step, then each network one."""
    found: list[Step[Any, Any]] = []
    local_sources = [s for s in sources if isinstance(s, LocalConfig)]
    if local_sources:
        found.append(LocalHarvest(LocalConfig.merge(local_sources)))
    for index, config in enumerate(sources, 1):
        if isinstance(config, NetworkConfig):
            found.append(NetworkHarvest(config, index))
    return found


class NetworkHarvest(Step[NetworkConfig, Any]):
    """``harvest:<kind>#<n>``: the harvest of network source ``n`` of a manifest (``harvest:<kind>``
    for the ``pmcurate harvest`` command, ``index`` None), run in the driver, where its fetcher
    bounds its concurrency and rate. An error names the step (``step.run_step``): a transport
    failure (``fetch.HarvestInterrupted``) stops it resumably, a bad input stops it for good."""

    writes = CONTENT

    def __init__(self, config: NetworkConfig, index: int | None = None) -> None:
        suffix = "" if index is None else f"#{index}"
        super().__init__(config, name=f"harvest:{config.kind}{suffix}")
        self.kind = config.kind

    def fingerprint(self, build: Build) -> None:
        return None

    def explain(self, build: Build, tasks: list[Any]) -> tuple[str, str]:
        return "run", f"asks {self.kind} for new or changed articles (finished shards are kept)"

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        """The harvest; ``result``: its summary, which ``pmcurate harvest <kind>`` prints."""
        summary = source.get(self.kind).harvest(self.config.harvest_options(build.path))
        self.result = summary
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
