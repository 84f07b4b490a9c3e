"""``harvest local``: JATS files and archives already on disk → the build's base tables.

Work plan, deterministic from the inputs so that a rerun finds its earlier output:

- The input files (``archive.discover_inputs``) are sorted and cut into *tasks*: consecutive files
  up to ``batch_size`` files or ``shard_bytes`` bytes on disk; a file larger than that is a task
  alone. A task's key is ``local-`` + a hash of its files' absolute paths, sizes and mtimes, so
  changing an input redoes only the tasks that hold it (and, since tasks are cut in order, the
  ones after it whose boundaries move).
- A task reads its documents in order and cuts them into shards of ``batch_size`` documents or
  ``shard_bytes`` bytes (XML and images): ``<key>-00000``, ``<key>-00001``…, the last one named
  ``<key>-NNNNN-end``. A shard whose articles file exists is complete (``store`` module) and is
  not parsed again; a task whose ``-end`` shard exists is not even read. Files of unfinished
  ``local-`` shards (a killed run) are deleted first, so none is left orphaned when inputs change.
- Tasks are the ``harvest:local`` step's (``steps.LocalHarvest``), run by the one runner
  (``step.run_step``) on its executor: a local process pool or Ray.

Images: a package read from a ``.tar.gz`` attaches the images of the XML's archive folder; a plain
XML file on disk (an extracted package: the XML with its images beside it) attaches the images of
its own folder (``FolderImages``), read only for the graphics its figures reference. The summary
says how many figures have no image.

A document that cannot be read or parsed becomes a row of ``tables/quarantine`` (file, archive
member, stage, a short ``reason`` code and an ``error`` message naming the file) and the run goes on.

Duplicates: an ``article_id`` seen twice in one run (e.g. an article in a bulk package and in a
later incremental package) is kept once, by the version rule every source shares
(``store.settle_versions``): the highest ``version`` (null counts as lowest); between equal
versions, the one read last (input files in sorted order, then archive order). Duplicates inside
a shard are dropped before it is written; duplicates across shards are removed at the end of the
run by rewriting the losing shards without the article's rows.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from pmcurate import schema
from pmcurate.harvest import HarvestInputError, archive, jats, store
from pmcurate.harvest.jats import ParsedArticle
from pmcurate.harvest.source import Rejection, reason_code, register
from pmcurate.step import resolved_text

SOURCE = "local"
DEFAULT_BATCH_SIZE = 1000
DEFAULT_SHARD_BYTES = 256 * 2**20
END = "-end"


@dataclass(frozen=True)
class Task:
    """Consecutive input files processed together by one worker; ``size``: their bytes on disk."""

    key: str
    files: tuple[Path, ...]
    size: int = 0

    def shard(self, index: int, *, last: bool) -> str:
        return f"{self.key}-{index:05d}{END if last else ''}"

    def is_complete(self, completed: set[str]) -> bool:
        return any(name.startswith(f"{self.key}-") and name.endswith(END) for name in completed)


@dataclass
class Counts:
    """What one task (or the whole run) did."""

    documents: int = 0
    articles: int = 0
    paragraphs: int = 0
    figures: int = 0
    tables: int = 0
    images: int = 0
    quarantined: int = 0
    duplicates: int = 0
    bytes_read: int = 0
    shards_written: int = 0
    shards_skipped: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(Counts):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class HarvestSummary(Counts):
    """The result of ``harvest_local``: counts, the build, elapsed seconds."""

    build: Path = field(default_factory=Path)
    tasks: int = 0
    tasks_skipped: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        seconds = max(self.seconds, 1e-9)
        mb = self.bytes_read / 1e6
        return (
            f"harvested {self.articles:,} articles ({self.paragraphs:,} paragraphs, {self.figures:,} figures"
            f" ({self.images:,} with an image, {max(0, self.figures - self.images):,} without),"
            f" {self.tables:,} tables) from {self.documents:,} documents\n"
            f"shards: {self.shards_written} written, {self.shards_skipped} already complete"
            f" ({self.tasks_skipped} of {self.tasks} tasks skipped without reading)\n"
            f"quarantined: {self.quarantined:,}; duplicates dropped: {self.duplicates:,}\n"
            f"{mb:,.1f} MB in {self.seconds:.1f} s"
            f" ({self.documents / seconds:,.1f} documents/s, {mb / seconds:,.1f} MB/s)"
            f" → {self.build / 'tables'}"
        )


def plan_tasks(
    files: Iterable[Path], *, batch_size: int, shard_bytes: int, citations: str = "marker"
) -> list[Task]:
    """Cut sorted ``files`` into tasks of at most ``batch_size`` files / ``shard_bytes`` bytes.

    A task's key names its files and, unless it is the default, the ``citations`` mode of the
    parse: the shards of one mode are never taken for complete shards of the other."""
    tasks: list[Task] = []
    current: list[tuple[Path, os.stat_result]] = []
    size = 0
    for path in files:
        stat = path.stat()
        if current and (len(current) >= batch_size or size + stat.st_size > shard_bytes):
            tasks.append(_task(current, citations))
            current, size = [], 0
        current.append((path, stat))
        size += stat.st_size
    if current:
        tasks.append(_task(current, citations))
    return tasks


def _task(files: list[tuple[Path, os.stat_result]], citations: str) -> Task:
    digest = hashlib.sha256()
    for path, stat in files:
        digest.update(f"{resolved_text(os.fspath(path))}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if citations != "marker":
        digest.update(f"citations={citations}\n".encode())
    size = sum(stat.st_size for _, stat in files)
    return Task(f"local-{digest.hexdigest()[:16]}", tuple(path for path, _ in files), size)


def harvest_local(
    paths: Iterable[Path],
    out: Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    workers: int | None = None,
    max_member_bytes: int = archive.DEFAULT_MAX_MEMBER_BYTES,
    citations: str = "marker",
    progress: bool = True,
) -> HarvestSummary:
    """Harvest JATS files, folders and archives under ``paths`` into the build ``out``.

    The ``harvest:local`` step (``steps.LocalHarvest``) through the one runner (``step.run_step``)
    on a ``LocalExecutor`` of ``workers`` processes (default: the number of CPUs), as ``pmcurate
    harvest local`` runs it; the build's state records it. ``citations`` is the parser's mode for
    bibliography citations (``jats.parse``: ``"marker"`` or ``"drop"``). Raises
    ``HarvestInputError`` for a missing path or an unsupported file given explicitly, an unknown
    ``citations`` mode, or when nothing to harvest is found: the inputs are planned before the
    runner starts, which would name such an error after the step (``StepFailed``).
    """
    from pmcurate.executor import WORKER_PRELOAD, LocalExecutor
    from pmcurate.harvest.steps import LocalConfig, LocalHarvest  # the steps build on this module
    from pmcurate.step import Build, run_step

    config = LocalConfig(
        paths=tuple(Path(p) for p in paths),
        batch_size=batch_size,
        citations=citations,
        shard_bytes=shard_bytes,
        max_member_bytes=max_member_bytes,
    )
    step = LocalHarvest(config)
    step.all_tasks()  # the inputs checked here: a HarvestInputError stays one
    # without pandas: a harvest's tasks only convert (schema.pyarrow_without_pandas)
    executor = LocalExecutor(workers, preload=WORKER_PRELOAD)
    try:
        run_step(step, Build.open(Path(out), progress=progress), executor)
    finally:
        executor.close()
    summary: HarvestSummary = step.result
    return summary


class ParsedDocument(NamedTuple):
    """What ``LocalSource.parse`` made of one document."""

    articles: list[ParsedArticle]
    rejections: list[Rejection]
    images: int = 0
    """Figures that got an image."""


@register
class LocalSource:
    """JATS files, gzipped files and tar archives on disk (``archive``): the ``local`` source.

    ``plan`` cuts the sorted input files into ``Task``\\ s; ``read`` yields a task's documents (or a
    ``Rejection`` for each file or member that could not be read) in input order; ``parse`` turns a
    document into articles, attaching images beside a plain file, or a ``Rejection``.
    """

    kind: ClassVar[str] = SOURCE

    def __init__(
        self,
        paths: Iterable[Path],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        max_member_bytes: int = archive.DEFAULT_MAX_MEMBER_BYTES,
        citations: str = "marker",
    ) -> None:
        if citations not in jats.CITATION_MODES:
            raise HarvestInputError(
                f"citations must be one of {', '.join(jats.CITATION_MODES)}, not {citations!r}"
            )
        self.paths = [Path(p) for p in paths]
        self.batch_size = batch_size
        self.shard_bytes = shard_bytes
        self.max_member_bytes = max_member_bytes
        self.citations = citations

    def files(self) -> list[Path]:
        """The input files under ``paths``, sorted; ``HarvestInputError`` when there are none."""
        files = archive.discover_inputs(self.paths)
        if not files:
            where = ", ".join(map(str, self.paths))
            raise HarvestInputError(f"no input files ({', '.join(archive.INPUT_SUFFIXES)}) under {where}")
        return files

    def plan(self, files: list[Path] | None = None) -> list[Task]:
        """The tasks of the input files (``files``, default: ``self.files()``), in input order."""
        return plan_tasks(
            self.files() if files is None else files,
            batch_size=self.batch_size,
            shard_bytes=self.shard_bytes,
            citations=self.citations,
        )

    def read(self, task: Task) -> Iterator[archive.Document | Rejection]:
        """The documents of ``task``'s files in order; each unreadable file or member a ``Rejection``."""
        for path in task.files:
            yield from self.read_file(path)

    def read_file(self, path: Path) -> Iterator[archive.Document | Rejection]:
        for item in archive.iter_items(path, max_member_bytes=self.max_member_bytes):
            if isinstance(item, archive.Rejected):
                yield Rejection(item.source, item.member, "read", reason_code(item.error), item.reason)
            else:
                yield item

    def parse(
        self, document: archive.Document, beside: FolderImages | None = None, *, sha256: str | None = None
    ) -> ParsedDocument:
        """The articles of ``document`` with their images attached, and the inputs rejected: the
        document itself when it cannot be parsed, an unreadable image beside a plain file.
        ``sha256``: the document's, when the caller hashed it (``jats.parse``)."""
        try:
            parsed = jats.parse(
                document.data, source_uri=document.uri, citations=self.citations, sha256=sha256
            )
        except Exception as exc:  # JatsError, or any parser failure: this document only
            message = str(exc)
            where = "" if document.uri in message else f"{document.where}: "
            error = f"{where}{type(exc).__name__}: {message}"
            return ParsedDocument(
                [], [Rejection(document.source, document.member, "parse", "parse_error", error)]
            )
        problems: list[Rejection] = []
        attached = 0
        for article in parsed:
            images = document.images
            if document.member is None and not images and beside is not None:  # images beside the file
                images, found = beside.for_figures(document.source, article.figures)
                problems += found
            attached += archive.attach_images(article.figures, images)
        return ParsedDocument(parsed, problems, attached)

    def recency(self, tasks: list[Task], shards: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Copies of equal version: the one read later wins, i.e. the later task in input order,
        then the later shard of the task."""
        order = {task.key: position for position, task in enumerate(tasks)}
        return {name: (order[task_key(name)], name) for name in shards if task_key(name) in order}

    def settle(self, build: Path, tasks: list[Task]) -> dict[str, int]:
        """Remove, from the losing shards, articles that a later shard of ``tasks`` also holds
        (``store.settle_versions``); the rows removed per table."""
        order = self.recency(tasks, store.completed_shards(build))
        return store.settle_versions(build, shards=order, order=order)


@dataclass
class _Shard:
    """The shard being filled: its articles (deduplicated, as Arrow) and quarantine records."""

    index: int
    skip: bool
    rows: store.ShardRows = field(default_factory=lambda: store.ShardRows(source=SOURCE))
    quarantine: list[Rejection] = field(default_factory=list)
    documents: int = 0
    nbytes: int = 0


FileHash = tuple[int, int, str]
"""A plain XML input file's size, mtime (ns, read before the file) and sha256."""


def run_task(
    task: Task,
    build: Path,
    *,
    batch_size: int,
    shard_bytes: int,
    max_member_bytes: int,
    citations: str = "marker",
) -> tuple[Counts, dict[str, FileHash]]:
    """Read, parse and write one task's shards, skipping the complete ones; return its counts and
    the ``FileHash`` of each plain XML file it parsed: a file is read and hashed once, its hash both
    the articles' ``content_sha256`` and the build's (``step.ContentHashes.record``)."""
    source = LocalSource((), max_member_bytes=max_member_bytes, citations=citations)
    completed = store.completed_shards(build)
    counts = Counts()
    hashes: dict[str, FileHash] = {}
    shard = _Shard(0, skip=task.shard(0, last=False) in completed)
    beside = FolderImages(max_member_bytes)
    for path in task.files:
        stat = path.stat() if _plain_xml(path) else None
        for item in source.read_file(path):
            if isinstance(item, Rejection):
                shard.quarantine.append(item)
                continue
            if shard.documents >= batch_size or shard.nbytes >= shard_bytes:
                _finish(task, shard, build, counts, last=False)
                index = shard.index + 1
                shard = _Shard(index, skip=task.shard(index, last=False) in completed)
            nbytes = len(item.data) + sum(len(image.data) for image in item.images.values())
            shard.documents += 1
            shard.nbytes += nbytes
            counts.bytes_read += nbytes
            if not shard.skip:
                sha = None
                if stat is not None:
                    sha = hashlib.sha256(item.data).hexdigest()
                    hashes[str(path)] = (stat.st_size, stat.st_mtime_ns, sha)
                _parse_into(source, shard, item, counts, beside, sha)
    _finish(task, shard, build, counts, last=True)
    return counts, hashes


def _plain_xml(path: Path) -> bool:
    """Whether the one document of input ``path`` is the file's bytes (not an archive, not gzipped)."""
    return not path.name.lower().endswith((*archive.ARCHIVE_SUFFIXES, *archive.GZIP_SUFFIXES))


def _parse_into(
    source: LocalSource,
    shard: _Shard,
    document: archive.Document,
    counts: Counts,
    beside: FolderImages,
    sha256: str | None = None,
) -> None:
    """Parse ``document`` (of sha256 ``sha256`` when known) into ``shard``; quarantine what fails."""
    parsed = source.parse(document, beside, sha256=sha256)
    shard.quarantine += parsed.rejections
    counts.images += parsed.images
    for article in parsed.articles:
        shard.rows.add(article)


class FolderImages:
    """The images beside a plain XML file on disk, for the graphics its figures reference.

    An extracted PMC package is a folder holding the XML and its figure images; they match a
    figure's ``graphic/@xlink:href`` by ``archive.image_key`` (base name without image suffix), as
    inside a ``.tar.gz``. The folder is listed once while consecutive documents share it. An href
    is never used as a path, so nothing outside the folder is read; symbolic links are not followed;
    each image is capped like an archive member. An unreadable image becomes a quarantine row.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.folder: str | None = None
        self.files: dict[str, list[Path]] = {}

    def _listing(self, folder: str) -> dict[str, list[Path]]:
        if folder != self.folder:
            files: dict[str, list[Path]] = {}
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        readable = entry.name.lower().endswith(archive.READABLE_IMAGE_SUFFIXES)
                        if readable and entry.is_file(follow_symlinks=False):
                            files.setdefault(archive.image_key(entry.name), []).append(Path(entry.path))
            except OSError:
                files = {}
            self.folder, self.files = folder, files
        return self.files

    def for_figures(
        self, source: str, figures: Iterable[dict[str, Any]]
    ) -> tuple[dict[str, archive.Image], list[Rejection]]:
        """(image key → image, rejections of unreadable images) for the graphics of ``figures``."""
        graphics = [href for figure in figures for href in figure.get("graphics") or ()]
        if not graphics:
            return {}, []
        listing = self._listing(os.path.dirname(source) or ".")  # text: no Path built per document
        if not listing:  # a folder of XML files only: no image key to compute
            return {}, []
        wanted = {archive.image_key(href) for href in graphics}
        images: dict[str, archive.Image] = {}
        problems: list[Rejection] = []
        for key in sorted(wanted & listing.keys()):
            for path in sorted(listing[key]):
                try:
                    with open(path, "rb") as stream:
                        image = archive.read_image(path.name, archive.read_bounded(stream, self.max_bytes))
                except (OSError, archive.TooLarge, archive.NotAnImage, archive.DecompressionBomb) as exc:
                    code = reason_code(type(exc).__name__)
                    problems.append(Rejection(str(path), None, "read", code, f"{path}: {exc}"))
                    continue
                current = images.get(key)
                if current is None or _preference(image) < _preference(current):
                    images[key] = image
        return images, problems


def _preference(image: archive.Image) -> int:
    return archive.IMAGE_PREFERENCE.index(image.format)


def _finish(task: Task, shard: _Shard, build: Path, counts: Counts, *, last: bool) -> None:
    name = task.shard(shard.index, last=last)
    counts.documents += shard.documents
    if shard.skip:
        counts.shards_skipped += 1
        return
    quarantine = [rejection.record() for rejection in shard.quarantine]
    written = store.write_harvest_shard(build, name, shard.rows, quarantine)
    counts.shards_written += 1
    for name in ("quarantined", "duplicates", "articles", "paragraphs", "figures", "tables"):
        setattr(counts, name, getattr(counts, name) + written[name])


def stale_shards(build: Path, tasks: Iterable[Task]) -> set[str]:
    """Names of the ``local-`` shards, in any table of the build, of no task in ``tasks``.

    A task key hashes its files' paths, sizes and mtimes: a shard of another key holds articles of
    files since changed or removed, which the current plan harvests again (or no longer wants)."""
    keys = {task.key for task in tasks}
    return {
        path.stem
        for table in _shard_tables(build)
        for path in schema.shard_paths(build, table)
        if path.stem.startswith(f"{SOURCE}-") and task_key(path.stem) not in keys
    }


def prune_stale_shards(build: Path, tasks: Iterable[Task]) -> int:
    """Remove the files of ``stale_shards`` from every table (``articles``, the completion marker,
    first; labels made from their paragraphs too); return how many shards."""
    stale = stale_shards(build, tasks)
    for table in _shard_tables(build):
        for path in schema.shard_paths(build, table):
            if path.stem in stale:
                path.unlink()
    return len(stale)


def _shard_tables(build: Path) -> list[str]:
    """The tables of the build, ``articles`` first."""
    root = Path(build) / "tables"
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return sorted(names, key=lambda name: name != "articles")


def task_key(shard: str) -> str:
    """The task key of a shard name ``<key>-NNNNN[-end]``."""
    return shard.removesuffix(END).rsplit("-", 1)[0]
