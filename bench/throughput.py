"""Every row of the throughput table (README "Measured", issue 15), side by side in one run.

For each ``--articles N``, a corpus of N files is made the way ``bench/build.py`` makes it (the
bundled sample articles copied under new PMCID/PMID/DOI), and each stage is timed next to the raw
library under it, on the same data, best of ``--runs`` (runs of the two contenders interleaved, so
that the load of a shared machine hits both alike):

- ``parse``: ``jats.parse`` vs ``lxml.etree.fromstring`` (same safe parser options) of the same
  bytes, in memory, one thread; CPU seconds (``time.process_time``), which a busy machine inflates
  less than wall time.
- ``harvest``: ``pmcurate build --until harvest --workers W`` in a subprocess (manifest of
  ``bench/build.py``): CPU seconds of the whole process tree (start-up, worker pool, reading,
  parsing, Parquet) per article vs ``parse``'s CPU seconds per article.
- ``apply 1``: the ``annotate:apply`` step on one process over the whole build's paragraphs
  (read shards, normalize, models, write labels) vs fastText ``predict(k=-1)`` of the same models
  on the same lines already in memory, in a process of its own (``OwnProcess``): the 376,250
  lines of 10,000 articles held in apply's process slowed apply by ~10% (8.1 → 8.8–9.1 s: its
  garbage collections and allocations among theirs); ``apply 2``: on a pool of 2 workers started once (as in
  ``pmcurate build``, whose executor starts its workers for the first step that needs them) vs
  one process; and, for information, ``annotate apply --jobs 2`` as a command that starts its
  own 2 workers each time.
- ``export``: ``export --preset biomed-enriched`` of the whole build vs pyarrow writing the very
  same rows, already in memory (in a process of its own, as apply's raw contender), with the
  export's writer settings and row groups (``bench/export.py`` ``write_groups``): in one process,
  and on W workers of a pool started beforehand (as in a build); each task writes whole splits
  (the bench's corpus has one split: one task, which both run in their own process).
- ``build``: the whole demo pipeline (``bench/build.py``: harvest, train, apply, filter with
  exact and near dedup, export) with W workers vs pubmed_parser → pyarrow Parquet with W
  processes (``parse_pubmed_xml``, ``parse_pubmed_paragraph(all_paragraph=True)``,
  ``parse_pubmed_caption`` per file; articles, paragraphs and captions written as zstd Parquet
  per chunk of files); and the build's articles per CPU second of its whole process tree. The
  packed language model is cached across the runs (``bench/build.py``), as on a machine that has
  built before: best of 3, the first run builds it. Each round runs the build twice: with the
  students trained (the cache of trained students emptied first), and again with the students the
  first trained (``annotate.student_cache``: as every later build of the manifest on the machine).

The apply and export rows run on the folder of the last whole build.

Then the floors (``floor_rows``, for information): what the same rows would read if pmcurate did
nothing but the work no build can skip, each part measured above or here: read and hash each input
(its sha256 is the articles' ``content_sha256`` and the build's record of its inputs), parse it
(on W processes at once, as the build's workers do: ``parse_at_once``), start the command and its
workers (the CPU of a harvest of ``STARTUP_ARTICLES`` articles less their reading, hashing and
parsing), pyarrow writing the harvest's tables (the harvest's own shards written again), fastText
``predict`` of every paragraph, and, for a build that trains its students, the training (the CPU
between the two whole builds). A whole build's floor is that CPU spread on the W cores with none
ever idle. A target above its floor cannot be met by making pmcurate faster.

    .venv/bin/python bench/throughput.py                          # 2,000 articles, ~10 min on 2 busy cores
    .venv/bin/python bench/throughput.py --articles 2000 10000
    .venv/bin/python bench/throughput.py --articles 500 --runs 1 --only parse export
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from build import compile_package, make_corpus, run, write_manifest
from export import preset_rows, row_groups_of, write_groups
from lxml import etree

from pmcurate.harvest import archive, jats

ROOT = Path(__file__).resolve().parent.parent
SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
ROWS = ("parse", "harvest", "annotate", "export", "build")
STARTUP_ARTICLES = 20
"""The corpus of the harvest that measures the start-up: a command, its pool, and little else."""


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, against what, the ratio and its target."""

    stage: str
    ours: str
    raw: str
    ratio: float
    target: str
    met: bool | None
    """None: a figure shown for information, without a target."""

    def cells(self) -> list[str]:
        return [
            self.stage,
            self.ours,
            self.raw,
            f"{self.ratio:.2f}",
            self.target,
            "" if self.met is None else "met" if self.met else "NOT met",
        ]


@dataclass
class Figures:
    """What the rows measured that the floors are made of (``floor_rows``); None: not measured."""

    articles: int
    workers: int
    parse: float | None = None
    """CPU seconds of ``jats.parse`` per article."""
    at_once: float | None = None
    """How many times ``parse``'s CPU an article takes when ``workers`` processes parse at once."""
    read_and_hash: float | None = None
    """CPU seconds per article to read an input file and take its sha256."""
    write: float | None = None
    """CPU seconds per article for pyarrow to write the harvest's tables, with its settings."""
    startup: float | None = None
    """CPU seconds of a harvest's command and pool beyond its articles' reading, hashing, parsing."""
    predict: float | None = None
    """Seconds of fastText ``predict`` over every paragraph of the build, one thread."""
    training: float | None = None
    """CPU seconds a build spends training its students (trained less reused, best of each)."""
    pubmed_parser: float | None = None
    """Wall seconds of pubmed_parser → Parquet over the corpus on ``workers`` processes (best)."""

    @property
    def parse_on_workers(self) -> float | None:
        """CPU seconds of ``jats.parse`` per article with ``workers`` processes parsing at once."""
        return None if self.parse is None or self.at_once is None else self.parse * self.at_once


def children_cpu() -> float:
    """CPU seconds of every finished, waited-for descendant process (their workers included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_of(
    runs: int, function: Callable[[], object], clock: Callable[[], float] = time.perf_counter
) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        started = clock()
        function()
        best = min(best, clock() - started)
    return best


@dataclass(frozen=True)
class OwnProcess:
    """A contender that runs in a process of its own, which holds its data (the raw library's input,
    already in memory) so that the other contenders' process does not: ``call`` runs there, timed
    there (``timed``), and the seconds it returns leave out the round trip."""

    process: ProcessPoolExecutor
    call: Callable[[], float]

    def __call__(self) -> float:
        return self.process.submit(self.call).result()


def timed(function: Callable[[], object]) -> float:
    """Wall seconds of ``function()``, after a garbage collection (in an ``OwnProcess``)."""
    gc.collect()
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def interleaved(
    runs: int, contenders: Sequence[Callable[[], object]], clock: Callable[[], float]
) -> list[float]:
    """Best time of each contender over ``runs`` rounds, one run of each per round (an
    ``OwnProcess`` contender times itself, in wall seconds)."""
    best = [float("inf")] * len(contenders)
    for _ in range(runs):
        for index, function in enumerate(contenders):
            gc.collect()
            started = clock()
            seconds = function()
            if not isinstance(function, OwnProcess):
                seconds = clock() - started
            assert isinstance(seconds, float)
            best[index] = min(best[index], seconds)
    return best


# ---------------------------------------------------------------- parse and harvest


def parse_row(files: list[Path], runs: int) -> tuple[Row, float]:
    """``jats.parse`` vs ``lxml`` on the corpus in memory; also returns parse CPU s/article."""
    documents = [(str(path), path.read_bytes()) for path in files]

    def lxml_only() -> None:
        for _, data in documents:
            etree.fromstring(data, SAFE_PARSER)

    def pmcurate() -> None:
        for uri, data in documents:
            jats.parse(data, source_uri=uri)

    raw, ours = interleaved(runs, (lxml_only, pmcurate), time.process_time)
    n = len(documents)
    row = Row(
        "JATS extraction, one core",
        f"{n / ours:,.0f} articles/CPU-s",
        f"lxml.etree.fromstring: {n / raw:,.0f}/CPU-s",
        ours / raw,
        "≤ 1.5× lxml's time",
        ours / raw <= 1.5,
    )
    return row, ours / n


def read_and_hash_cpu(files: list[Path], runs: int) -> float:
    """CPU seconds per file to read it and take its sha256, as the harvest does each input."""

    def read_and_hash() -> None:
        for path in files:
            hashlib.sha256(path.read_bytes()).hexdigest()

    return best_of(runs, read_and_hash, time.process_time) / len(files)


AT_ONCE_ARTICLES = 1000
"""The articles each process of ``parse_at_once`` holds and parses (their CPU per article is what
counts, and each process holds them all)."""

_DOCUMENTS: list[tuple[str, bytes]] = []
"""In each process of ``parse_at_once``: its articles, in memory."""
_AT_ONCE: list[Barrier] = []
"""In each process of ``parse_at_once``: where its parses start together."""


def _hold_documents(files: list[Path], barrier: Barrier) -> None:
    _DOCUMENTS.extend((str(path), path.read_bytes()) for path in files)
    _AT_ONCE.append(barrier)


def _parse_held(together: bool) -> float:
    """CPU seconds of ``jats.parse`` of the held articles, after the other processes are ready to
    parse theirs (``together``)."""
    gc.collect()
    if together:
        _AT_ONCE[0].wait()
    started = time.process_time()
    for uri, data in _DOCUMENTS:
        jats.parse(data, source_uri=uri)
    return time.process_time() - started


def parse_at_once(files: list[Path], workers: int, runs: int) -> float:
    """How many times the CPU of parsing an article alone it takes when ``workers`` processes parse at
    once, as a harvest's workers do: they share the cores' caches and the memory (on this host two
    at once each took 0.4–2.3% more in the runs of 1 Dec, and up to 5% in a check beside them).
    Both in processes of their own, on the same articles, interleaved, best of ``runs`` each (the
    mean of the processes' CPU for those at once)."""
    spawn = multiprocessing.get_context("spawn")
    sample = files[:AT_ONCE_ARTICLES]
    barrier = spawn.Barrier(workers)
    with ProcessPoolExecutor(
        workers, mp_context=spawn, initializer=_hold_documents, initargs=(sample, barrier)
    ) as pool:
        alone = together = float("inf")
        for _ in range(runs):
            alone = min(alone, pool.submit(_parse_held, False).result())
            at_once = [pool.submit(_parse_held, True) for _ in range(workers)]  # one a process: they wait
            together = min(together, sum(future.result() for future in at_once) / workers)
    return together / alone


def startup_cpu(work: Path, workers: int, runs: int, per_article: float) -> float:
    """CPU seconds of ``build --until harvest`` on ``STARTUP_ARTICLES`` articles beyond
    ``per_article`` each: the command's start, its imports, its pool's."""
    corpus = make_corpus(work.parent / f"corpus-{STARTUP_ARTICLES}", STARTUP_ARTICLES)
    manifest = write_manifest(work / f"bench-{STARTUP_ARTICLES}.toml", corpus)
    cpu = min(harvest_build(manifest, work / "startup", workers)[1] for _ in range(runs))
    return cpu - STARTUP_ARTICLES * per_article


def write_cpu(build: Path, articles: int, runs: int) -> float:
    """CPU seconds per article for ``pq.write_table`` to write the tables of the harvest ``build``
    again, shard by shard, as ``schema.write_shard`` does (zstd, statistics), into memory."""
    shards = [pq.read_table(path) for path in sorted((build / "tables").glob("*/*.parquet"))]

    def write() -> None:
        for table in shards:
            pq.write_table(table, pa.BufferOutputStream(), compression="zstd", write_statistics=True)

    return best_of(runs, write, time.process_time) / articles


def harvest_build(manifest: Path, out: Path, workers: int) -> tuple[float, float]:
    """Wall seconds and process-tree CPU seconds of ``pmcurate build --until harvest``."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "pmcurate.cli", "build", str(manifest), "--out", str(out),
               "--workers", str(workers), "--until", "harvest"]  # fmt: skip
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(
            f"harvest build failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return seconds, children_cpu() - cpu


def harvest_row(manifest: Path, work: Path, n: int, workers: int, runs: int, parse_cpu: float) -> Row:
    results = [harvest_build(manifest, work / "harvest-only", workers) for _ in range(runs)]
    seconds, cpu = min(results, key=lambda r: r[1])
    per_article = cpu / n
    return Row(
        f"harvest local inside `build`, {workers} workers",
        f"{per_article * 1000:.2f} ms CPU/article ({n / seconds:,.0f} articles/s wall)",
        f"parse alone: {parse_cpu * 1000:.2f} ms CPU/article",
        per_article / parse_cpu,
        "≤ 1.2× parse alone",
        per_article / parse_cpu <= 1.2,
    )


# ---------------------------------------------------------------- whole build vs pubmed_parser


def _jsonable(value: object) -> object:
    return value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value)


def pubmed_parser_chunk(args: tuple[list[str], str]) -> int:
    """pubmed_parser over a chunk of files, its rows written as three zstd Parquet files."""
    import pubmed_parser as pp

    paths, out = args
    articles, paragraphs, captions = [], [], []
    for path in paths:
        articles.append(pp.parse_pubmed_xml(path))
        paragraphs += pp.parse_pubmed_paragraph(path, all_paragraph=True)
        captions += pp.parse_pubmed_caption(path) or []
    for name, rows in (("articles", articles), ("paragraphs", paragraphs), ("captions", captions)):
        table = pa.Table.from_pylist([{k: _jsonable(v) for k, v in row.items()} for row in rows])
        pq.write_table(table, f"{out}-{name}.parquet", compression="zstd")
    return len(articles)


def pubmed_parser_build(files: list[Path], out: Path, processes: int) -> float:
    """Seconds for pubmed_parser → Parquet over ``files`` with a pool of ``processes``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    size = max(1, min(1000, len(files) // (processes * 4)))
    chunks = [
        ([str(p) for p in files[i : i + size]], str(out / f"{i:08d}")) for i in range(0, len(files), size)
    ]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        done = sum(pool.imap_unordered(pubmed_parser_chunk, chunks))
    assert done == len(files)
    return time.perf_counter() - started


def build_rows(
    manifest: Path, files: list[Path], work: Path, runs: int, figures: Figures
) -> tuple[list[Row], Path]:
    workers = figures.workers
    seconds: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    theirs = []
    build = work / "whole-build"
    for _ in range(runs):  # interleaved: students trained, students reused, pubmed_parser
        for keep in (False, True):
            spent = children_cpu()
            seconds[keep].append(run(manifest, build, workers, keep_students=keep)["seconds"])  # type: ignore[arg-type]
            cpu[keep].append(children_cpu() - spent)
        theirs.append(pubmed_parser_build(files, work / "pubmed_parser", workers))
    n = len(files)
    baseline = n / min(theirs)
    figures.pubmed_parser = min(theirs)
    figures.training = max(0.0, min(cpu[False]) - min(cpu[True]))
    rows = []
    for keep, students in ((True, "students trained before"), (False, "students trained")):
        rate, per_cpu = n / min(seconds[keep]), n / min(cpu[keep])
        rows += [
            Row(
                f"whole build ({n:,} articles, {workers} workers, {students})",
                f"{rate:,.1f} articles/s",
                f"pubmed_parser → pyarrow Parquet, {workers} processes: {baseline:,.1f}/s",
                rate / baseline,
                "≥ 3×",
                rate / baseline >= 3,
            ),
            Row(
                f"whole build, CPU per article ({students})",
                f"{per_cpu:,.0f} articles per CPU-second",
                "—",
                per_cpu / 300,
                "≥ 300 articles/s/core (ratio to 300)",
                per_cpu >= 300,
            ),
        ]
    return rows, build


# ---------------------------------------------------------------- annotate apply, export


_PREDICT: Callable[[], None] | None = None
"""In the process of the raw contender (``annotate_rows``): fastText predict of the build's lines."""


def _hold_predict(build: Path) -> None:
    global _PREDICT
    import polars as pl
    from predict import fasttext_predict

    from pmcurate import schema

    texts = pl.read_parquet(schema.shard_paths(build, "paragraphs"), columns=["text"])["text"].to_list()
    _PREDICT, _ = fasttext_predict(build, texts)


def _predict_once() -> float:
    assert _PREDICT is not None
    return timed(_PREDICT)


def annotate_rows(build: Path, runs: int, figures: Figures) -> list[Row]:
    from pmcurate import schema
    from pmcurate.annotate import apply_steps
    from pmcurate.executor import LocalExecutor

    shards = schema.shard_paths(build, "paragraphs")
    n = sum(pq.read_metadata(shard).num_rows for shard in shards)
    raw_process = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=_hold_predict, initargs=(build,)
    )

    predict = OwnProcess(raw_process, _predict_once)

    def apply_one() -> None:
        apply_steps.apply(build, workers=1, force=True, progress=False)

    def apply_cold() -> None:  # `annotate apply --jobs 2`: the command starts its two workers
        apply_steps.apply(build, workers=2, force=True, progress=False)

    pool = LocalExecutor(2)  # inside `build`: workers started once, by the first step that needs them

    def apply_two() -> None:
        apply_steps.apply(build, executor=pool, force=True, progress=False)

    try:
        raw_process.submit(gc.collect).result()  # started: the lines and models loaded
        pool_started = best_of(1, apply_two)
        raw, one, two, cold = interleaved(
            runs, (predict, apply_one, apply_two, apply_cold), time.perf_counter
        )
    finally:
        pool.close()
        raw_process.shutdown()
    figures.predict = raw
    return [
        Row(
            "annotate apply, one process",
            f"{n / one:,.0f} paragraphs/s",
            f"fastText predict, same lines and models: {n / raw:,.0f}/s",
            raw / one,
            "≥ 0.8",
            raw / one >= 0.8,
        ),
        Row(
            f"annotate apply, 2 jobs vs 1 job ({len(shards)} shards; workers started, as in a build)",
            f"{n / two:,.0f} paragraphs/s",
            f"1 job: {n / one:,.0f}/s",
            one / two,
            "≥ 1.8",
            one / two >= 1.8,
        ),
        Row(
            f"annotate apply --jobs 2 vs --jobs 1, commands (starting 2 workers: {pool_started - two:.1f} s)",
            f"{n / cold:,.0f} paragraphs/s",
            f"1 job: {n / one:,.0f}/s",
            one / cold,
            "—",
            None,
        ),
    ]


_GROUPS: list[pa.Table] = []
"""In the process of the raw contender (``export_row``): the export's rows, cut into its row groups."""


def _hold_groups(build: Path, shard_mb: float) -> None:
    _GROUPS.extend(row_groups_of(preset_rows(build, "biomed-enriched"), int(shard_mb * 1e6)))


def _groups_held() -> tuple[int, int]:
    return sum(group.num_rows for group in _GROUPS), len(_GROUPS)


def _write_groups_once(path: Path) -> float:
    return timed(functools.partial(write_groups, _GROUPS, path))


def export_row(build: Path, work: Path, runs: int, shard_mb: float, workers: int) -> list[Row]:
    """``export`` in one process, and on ``workers`` processes of a pool started beforehand (as in a
    build, whose pool serves every step), beside pyarrow writing the same rows and row groups, held
    in a process of its own (as apply's raw contender: ``annotate_rows``)."""
    from pmcurate.executor import LocalExecutor
    from pmcurate.export.exporter import export
    from pmcurate.export.steps import ExportConfig

    spawn = multiprocessing.get_context("spawn")
    raw_process = ProcessPoolExecutor(
        1, mp_context=spawn, initializer=_hold_groups, initargs=(build, shard_mb)
    )
    plain = work / "plain.parquet"
    pool = LocalExecutor(workers)
    list(pool.map(abs, list(range(workers)), desc="start the pool", progress=False))

    write_table = OwnProcess(raw_process, functools.partial(_write_groups_once, plain))

    def exported(executor: LocalExecutor | None) -> Callable[[], object]:
        out = work / f"export-{executor.workers if executor else 1}"
        return lambda: export(
            build,
            ExportConfig(out=out, preset="biomed-enriched", shard_size=int(shard_mb * 1e6)),
            progress=False,
            executor=executor,
        )

    try:
        n, groups = raw_process.submit(_groups_held).result()  # started: the rows held
        raw, one, many = interleaved(runs, (write_table, exported(None), exported(pool)), time.perf_counter)
    finally:
        pool.close()
        raw_process.shutdown()
    same = f"pyarrow ParquetWriter, same rows, settings and {groups} row groups: {n / raw:,.0f}/s"
    return [
        Row("export, biomed-enriched preset, 1 process", f"{n / one:,.0f} rows/s", same, raw / one, "≥ 0.8",
            raw / one >= 0.8),
        Row(f"export, biomed-enriched preset, {workers} workers", f"{n / many:,.0f} rows/s", same, raw / many,
            "≥ 0.8", raw / many >= 0.8),
    ]  # fmt: skip


# ---------------------------------------------------------------- floors


def floor_rows(figures: Figures) -> list[Row]:
    """The harvest's and the whole build's rows as they would read if pmcurate did only the work
    no build can skip (module docstring), from the parts the other rows measured."""
    n, workers = figures.articles, figures.workers
    rows = []
    parse = figures.parse_on_workers
    if figures.parse and parse and None not in (figures.read_and_hash, figures.write, figures.startup):
        assert figures.at_once and figures.read_and_hash and figures.write and figures.startup
        per_article = parse + figures.read_and_hash + figures.write + figures.startup / n
        rows.append(
            Row(
                f"floor of the harvest: parse on {workers} cores at once (×{figures.at_once:.3f}) "
                f"+ read and sha256 ({figures.read_and_hash * 1e3:.3f} ms) "
                f"+ pyarrow writing its tables ({figures.write * 1e3:.3f} ms) "
                f"+ start-up ({figures.startup:.2f} CPU-s ÷ {n:,})",
                f"{per_article * 1e3:.2f} ms CPU/article",
                f"parse alone: {figures.parse * 1e3:.2f} ms",
                per_article / figures.parse,
                "≤ 1.2 is reachable only above it",
                None,
            )
        )
    parts = (parse, figures.read_and_hash, figures.write, figures.startup, figures.predict)
    if None in (*parts, figures.pubmed_parser):
        return rows
    assert parse and figures.read_and_hash and figures.write and figures.startup
    assert figures.predict and figures.pubmed_parser
    base = n * (parse + figures.read_and_hash + figures.write) + figures.startup + figures.predict
    trainings = [("students trained before", 0.0)]
    if figures.training is not None:
        trainings.append((f"students trained: + {figures.training:.2f} CPU-s", figures.training))
    for students, training in trainings:
        cpu = base + training
        rate, baseline = n / (cpu / workers), n / figures.pubmed_parser
        rows += [
            Row(
                f"floor of the whole build ({students}): the harvest's, and fastText predict "
                f"({figures.predict:.2f} s), on {workers} cores never idle",
                f"{rate:,.1f} articles/s",
                f"pubmed_parser: {baseline:,.1f}/s",
                rate / baseline,
                "≥ 3× is reachable only above it",
                None,
            ),
            Row(
                f"floor of the whole build's CPU per article ({students.split(':')[0]})",
                f"{n / cpu:,.0f} articles per CPU-second",
                "—",
                n / cpu / 300,
                "≥ 300 is reachable only above it",
                None,
            ),
        ]
    return rows


# ---------------------------------------------------------------- report


def markdown(rows: list[Row]) -> str:
    head = ["stage", "pmcurate", "the raw library on the same data", "ratio", "target", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def measure(n: int, args: argparse.Namespace) -> list[Row]:
    work = args.work / f"n{n}"
    corpus = make_corpus(args.work / f"corpus-{n}", n)
    work.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(work / "bench.toml", corpus)
    files = archive.discover_inputs([corpus])
    rows: list[Row] = []
    figures = Figures(n, args.workers)
    if {"parse", "harvest"} & set(args.only):
        row, figures.parse = parse_row(files, args.runs)
        rows.append(row)
        print(f"  {row.stage}: {row.ratio:.2f}", flush=True)
        figures.read_and_hash = read_and_hash_cpu(files, args.runs)
        figures.at_once = parse_at_once(files, args.workers, args.runs)
        per_article = figures.parse + figures.read_and_hash
        figures.startup = startup_cpu(work, args.workers, args.runs, per_article)
    if "harvest" in args.only and figures.parse is not None:
        rows.append(harvest_row(manifest, work, n, args.workers, args.runs, figures.parse))
        print(f"  {rows[-1].stage}: {rows[-1].ratio:.2f}", flush=True)
        figures.write = write_cpu(work / "harvest-only", n, args.runs)
    build = work / "whole-build"
    if "build" in args.only:
        built, build = build_rows(manifest, files, work, args.runs, figures)
        rows += built
        print(
            f"  whole build: {built[0].ratio:.2f} (students trained before), {built[2].ratio:.2f}", flush=True
        )
    elif {"annotate", "export"} & set(args.only):  # they run on a whole build's folder
        run(manifest, build, args.workers)
    if "annotate" in args.only:
        rows += annotate_rows(build, args.runs, figures)
        print(f"  annotate: {', '.join(f'{row.ratio:.2f}' for row in rows[-3:])}", flush=True)
    if "export" in args.only:
        rows += export_row(build, work, args.runs, args.shard_mb, args.workers)
        print(
            f"  export: {rows[-2].ratio:.2f} (1 process), {rows[-1].ratio:.2f} ({args.workers} workers)",
            flush=True,
        )
    return rows + floor_rows(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, nargs="+", default=[2000], help="corpus sizes (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per contender, best kept (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the builds and pubmed_parser")
    parser.add_argument("--only", nargs="+", choices=ROWS, default=list(ROWS), help="rows to measure")
    parser.add_argument("--shard-mb", type=float, default=64, help="export shard size (default 64 MB)")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "build" / "bench-throughput", help="scratch folder"
    )
    args = parser.parse_args()
    compile_package()
    for n in args.articles:
        load = os.getloadavg()[0]
        print(
            f"{n:,} articles, best of {args.runs}, {os.cpu_count()} cores, load average {load:.1f}",
            flush=True,
        )
        rows = measure(n, args)
        print(f"\n{n:,} articles (load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end):\n")
        print(markdown(rows), flush=True)


if __name__ == "__main__":
    main()
