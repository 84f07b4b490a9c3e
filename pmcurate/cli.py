"""The ``pmcurate`` command. Thin: it parses arguments and calls stage functions.

Each command has its own ``add_*`` function below, which fills in the command's parser; its
handler imports its stage modules lazily. ``main`` fills in only the command it runs (``COMMANDS``:
the others are listed with their help, their options not added): a command's options come from its
steps' configs, whose modules import Polars, DuckDB… that another command does not need.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pmcurate import __version__, errors
from pmcurate.errors import UserError

log = logging.getLogger("pmcurate")


def add_harvest(harvest: argparse.ArgumentParser) -> None:
    sources = harvest.add_subparsers(dest="source", required=True, metavar="SOURCE")
    add_harvest_local(sources)
    add_harvest_network(sources)


def add_harvest_local(sources: argparse._SubParsersAction) -> None:
    """``harvest local``: the options of ``harvest.steps.LocalConfig`` (``[[sources]] kind = "local"``)."""
    from pmcurate.harvest.steps import LocalConfig

    local = sources.add_parser(
        "local",
        help="read .xml/.nxml/.xml.gz files and .tar.gz packages (per-article or bulk) from disk",
        description="Harvest JATS files, folders and tar.gz packages into BUILD/tables/. "
        "Resumable: complete shards are skipped on a rerun. Unreadable documents go to tables/quarantine.",
    )
    local.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="file or folder (searched recursively)"
    )
    local.add_argument("--out", required=True, type=Path, metavar="BUILD", help="build folder to write")
    LocalConfig.add_arguments(local)
    _executor_options(local)
    local.set_defaults(func=_harvest_local)


def _executor_options(parser: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--workers``: where a command's tasks run (not manifest keys: a build's
    are ``pmcurate build``'s options)."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local process pool, or Ray tasks (RAY_ADDRESS, else a local Ray)")  # fmt: skip
    parser.add_argument("--workers", type=_positive_int, default=None, help="processes (default: CPU count)")


def _harvest_local(args: argparse.Namespace) -> int:
    """The ``harvest:local`` step through the one runner, as ``pmcurate build`` runs it."""
    from pmcurate import progress
    from pmcurate.executor import WORKER_PRELOAD, make_executor
    from pmcurate.harvest.steps import LocalConfig, LocalHarvest
    from pmcurate.step import Build, run_step

    step = LocalHarvest(LocalConfig.from_args(args, paths=tuple(args.paths)))
    build = Build.open(args.out, force=True, progress=progress.enabled())
    executor = make_executor(args.executor, args.workers, preload=WORKER_PRELOAD)  # no pandas: a harvest
    try:
        run_step(step, build, executor)
    finally:
        executor.close()
    print(step.result)
    return 0


NETWORK_SOURCES = {
    "pmc": (
        "PMC Cloud Service: the public S3 bucket pmc-oa-opendata (anonymous HTTPS)",
        "Harvest article versions from the PMC Cloud Service (latest version of each article; "
        "metadata JSON overrides the XML for license, version and retraction). Resumable.",
    ),
    "europepmc": (
        "Europe PMC REST: search (cursorMark paging) then fullTextXML",
        "Harvest the full texts of a Europe PMC search. Resumable.",
    ),
    "eutils": (
        "NCBI E-utilities: efetch db=pmc in batches (NCBI_API_KEY from the environment)",
        "Harvest PMC articles through efetch, by ids or an esearch query (history server). "
        "3 requests/s without NCBI_API_KEY, 10 with it. Resumable.",
    ),
}


def add_harvest_network(sources: argparse._SubParsersAction) -> None:
    """``harvest pmc|europepmc|eutils`` (docs/harvest-network.md): the options of each source's config
    in ``harvest.steps`` (the keys of its ``[[sources]]`` entry)."""
    from pmcurate.harvest.steps import CONFIGS

    for kind, (help, description) in NETWORK_SOURCES.items():
        parser = sources.add_parser(kind, help=help, description=description)
        parser.add_argument("--out", required=True, type=Path, metavar="BUILD", help="build folder to write")
        CONFIGS[kind].add_arguments(parser)
        parser.set_defaults(func=_harvest_network, kind=kind)


def _harvest_network(args: argparse.Namespace) -> int:
    """The ``harvest:<kind>`` step through the one runner, as ``pmcurate build`` runs a network
    source (in this process: its fetcher bounds the requests in flight)."""
    from pmcurate import progress
    from pmcurate.harvest.steps import CONFIGS, NetworkConfig, NetworkHarvest
    from pmcurate.step import Build, run_step

    config = CONFIGS[args.kind].from_args(args)
    assert isinstance(config, NetworkConfig)
    step = NetworkHarvest(config)
    run_step(step, Build.open(args.out, force=True, progress=progress.enabled()))
    print(step.result.line())
    return 0


def add_query(query: argparse.ArgumentParser) -> None:
    query.description = (
        "Run SQL with DuckDB. Over a BUILD: a view per folder of BUILD/tables/ (articles, "
        "paragraphs, figures, tables, labels, quarantine…) and per subset (subset_NAME, its drops "
        "subset_NAME_drops). Over an export folder: a view per config (data for the default config, "
        "else the config's name) and per split (data_commercial…). Over hf://datasets/ORG/NAME: view "
        "data. `SHOW TABLES` lists them."
    )
    query.add_argument(
        "target", metavar="TARGET", help="build folder, export folder or hf://datasets/ORG/NAME[/FOLDER]"
    )
    query.add_argument(
        "sql", metavar="SQL", help='e.g. "SELECT license, count(*) FROM articles GROUP BY ALL"'
    )
    query.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    query.add_argument(
        "--output", "-o", metavar="FILE", help="write here instead of stdout (required for parquet)"
    )
    query.set_defaults(func=_query)


def _query(args: argparse.Namespace) -> int:
    from pmcurate.export.query import run_query

    run_query(args.target, args.sql, format=args.format, output=args.output)
    return 0


def add_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--out", type=Path, default=Path("build/demo"), metavar="BUILD", help="(recreated)")
    demo.add_argument("--workers", type=_positive_int, default=None, help="processes (default: CPU count)")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from pmcurate.demo import run_demo

    run_demo(args.out, workers=args.workers)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_annotate(annotate: argparse.ArgumentParser) -> None:
    """``annotate sample|llm|train|distill|apply``: the options of sample, llm, train and distill are
    the fields of their steps' configs (``annotate/steps.py``), the keys of a manifest's
    ``[teacher]`` and ``[student]``."""
    from pmcurate.annotate import students
    from pmcurate.annotate.steps import DistillConfig, LlmTeacherConfig, SampleConfig

    steps = annotate.add_subparsers(dest="step", required=True, metavar="STEP")
    sample = steps.add_parser("sample", help="choose the paragraphs the teacher labels (stratified, seeded)")
    sample.add_argument("build", help="build folder")
    SampleConfig.add_arguments(sample)
    llm = steps.add_parser("llm", help="label the sample with an OpenAI-compatible chat-completions endpoint")
    llm.add_argument("build", help="build folder")
    LlmTeacherConfig.add_arguments(llm)
    train = steps.add_parser("train", help="train and evaluate the students (--student)")
    train.add_argument("build", help="build folder")
    train.add_argument(
        "--student",
        nargs="+",
        choices=students.kinds(),
        default=[students.BASELINE],
        metavar="STUDENT",
        help=f"the students to train, compared side by side when several ({students.help_text()})",
    )
    _add_train_options(train)
    apply = steps.add_parser("apply", help="label every paragraph with the trained students")
    apply.add_argument("build", help="build folder")
    apply.add_argument(
        "--workers", "--jobs", dest="jobs", type=_positive_int, help="processes (default: CPU count)"
    )
    apply.add_argument("--force", action="store_true", help="relabel shards already labelled by these models")
    from pmcurate.annotate.apply_config import ApplyConfig

    ApplyConfig.add_arguments(apply)
    distill = steps.add_parser(
        "distill", help="the encoder student labels a sample; a fastText student learns those labels"
    )
    distill.add_argument("build", help="build folder (with a trained encoder student)")
    DistillConfig.add_arguments(distill)
    for parser in (sample, llm, train, apply, distill):
        parser.set_defaults(func=_annotate)


def _add_train_options(train: argparse.ArgumentParser) -> None:
    """The options of every student's training configs, each once (the students share the teacher's
    options, the seed...)."""
    from pmcurate.annotate import students

    added: set[str] = set()
    for train_step in (t for name in students.kinds() for t in students.get(name).trains):
        train_step.config.add_arguments(train, skip=added)
        added |= {o.name for o in train_step.config.options()}


def _annotate(args: argparse.Namespace) -> int:
    from pmcurate.annotate import commands

    return commands.run(args)


def add_filter(filt: argparse.ArgumentParser) -> None:
    """``filter``: the options of ``filters.steps.SubsetConfig`` (the keys of ``[subsets.NAME]``)."""
    from pmcurate.filters.steps import SubsetConfig

    filt.description = (
        "Write BUILD/subsets/NAME/*.parquet (kept rows) and BUILD/subsets/NAME/drops/ "
        "(id, rule, reason, cluster of every dropped row). See docs/filters.md."
    )
    filt.add_argument("build", metavar="BUILD", help="build folder")
    filt.add_argument("--subset", metavar="NAME", help="subset name (required unless --manifest)")
    filt.add_argument(
        "--manifest", type=Path, metavar="TOML", help="make the [subsets.NAME] tables of this file instead"
    )
    SubsetConfig.add_arguments(filt)
    _executor_options(filt)
    filt.set_defaults(func=_filter)


def _filter(args: argparse.Namespace) -> int:
    """Each subset is one ``filter:NAME`` step (``filters.steps``) run by the one runner; a command
    always makes it (the build's state records it, as a build would)."""
    from pmcurate import progress
    from pmcurate.executor import make_executor
    from pmcurate.filters.steps import SubsetConfig, SubsetStep, manifest_subsets
    from pmcurate.step import Build, run_step

    if not args.manifest and not args.subset:
        raise UserError("give --subset NAME (or --manifest FILE)")
    if args.manifest:
        configs = manifest_subsets(args.manifest, [args.subset] if args.subset else None)
    else:
        configs = [SubsetConfig.from_args(args, name=args.subset)]
    build = Build.open(Path(args.build), force=True, progress=progress.enabled())
    executor = make_executor(args.executor, args.workers)
    try:
        results = []
        for config in configs:
            step = SubsetStep(config, executor=executor)
            run_step(step, build)
            results.append(step.result)
    finally:
        executor.close()
    for result in results:
        print(
            f"{result.path}: {result.input_rows:,} rows in, {result.kept_rows:,} kept, "
            f"{result.output_rows:,} written"
        )
        for rule, count in sorted(result.dropped.items(), key=lambda item: -item[1]):
            print(f"  dropped by {rule}: {count:,}")
    return 0


def add_stats(stats: argparse.ArgumentParser) -> None:
    stats.add_argument("build", metavar="BUILD", help="build folder")
    stats.add_argument("--subset", metavar="NAME", help="describe this subset instead of the whole build")
    stats.add_argument(
        "--html", type=Path, metavar="FILE", help="report path (default BUILD/reports/stats[-NAME].html)"
    )
    stats.set_defaults(func=_stats)


def _stats(args: argparse.Namespace) -> int:
    from pmcurate.filters.stats import format_text, write_report

    result, path = write_report(args.build, args.subset, args.html)
    print(format_text(result))
    print(f"HTML report: {path}")
    return 0


def add_export(export: argparse.ArgumentParser) -> None:
    """``export``: the options of ``export.steps.ExportConfig`` (the keys of ``[exports.NAME]``)."""
    from pmcurate.export.steps import ExportConfig

    export.description = (
        "Export BUILD (or its subset NAME) into DIR: data/{split}-NNNNN-of-NNNNN.parquet, "
        "README.md (dataset card), provenance/CONFIG.json. Same input, byte-identical output."
    )
    export.add_argument("build", metavar="BUILD", help="build folder")
    export.add_argument("--out", "-o", required=True, type=Path, metavar="DIR", help="export folder")
    ExportConfig.add_arguments(export)
    _executor_options(export)
    export.add_argument("--no-progress", action="store_true", help="no progress bars")
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from pmcurate import progress
    from pmcurate.executor import make_executor
    from pmcurate.export.card import check_card_target
    from pmcurate.export.exporter import export
    from pmcurate.export.steps import ExportConfig

    config = ExportConfig.from_args(args, out=args.out)
    check_card_target(args.out)  # before the shards: a README.md that is not pmcurate's is kept
    executor = make_executor(args.executor, args.workers)
    try:
        result = export(
            args.build, config, progress=progress.enabled(not args.no_progress), executor=executor
        )
    finally:
        executor.close()
    for split, summary in result.splits.items():
        where = f"{result.out / result.folder}/{split}-*"
        print(f"{where}: {summary.rows:,} rows, {len(summary.shards)} shards, {summary.bytes:,} bytes")
    if result.skipped_rows:
        print(f"left out: {result.skipped_rows:,} rows without an image")
    print(f"{result.rows:,} rows in {result.seconds:.1f} s; dataset card: {result.out / 'README.md'}")
    return 0


def add_publish(publish: argparse.ArgumentParser) -> None:
    """``publish``: the options of ``export.steps.PublishConfig`` (the keys of ``[publish]``)."""
    from pmcurate.export.steps import PublishConfig

    publish.description = (
        "Upload DIR (made by `pmcurate export`) to the dataset repo ORG/NAME; unchanged files "
        "are not sent again, and a failed run resumes when run again. Token: HF_TOKEN or `hf auth login`."
    )
    publish.add_argument("folder", metavar="DIR", type=Path, help="export folder")
    PublishConfig.add_arguments(publish)
    publish.set_defaults(func=_publish)


def _publish(args: argparse.Namespace) -> int:
    from pmcurate import progress
    from pmcurate.export.steps import PublishConfig

    result = PublishConfig.from_args(args).publish(args.folder, progress=progress.enabled())
    if result.dry_run:
        for item in result.plan:
            print(f"{item.action:9} {item.path} ({item.size:,} bytes)")
    counts = ", ".join(f"{result.count(a)} {a}" for a in ("add", "update", "delete", "unchanged"))
    verb = "would send" if result.dry_run else "sent"
    sent = f"{verb} {result.bytes_to_send:,} bytes in {len(result.commits)} commit(s)"
    print(f"{result.url} ({result.revision}): {counts}; {sent}")
    return 0


def add_build(build: argparse.ArgumentParser) -> None:
    """``build MANIFEST``: every stage of a manifest, incremental (docs/build.md)."""
    stages = ("harvest", "annotate", "filter", "export", "publish")  # pipeline.STAGES, kept lazy
    build.description = (
        "Build the dataset a TOML manifest describes (manifests/*.toml). A second run redoes "
        "only the work whose inputs or settings changed; BUILD/provenance.json records how to reproduce it."
    )
    build.add_argument(
        "manifest", type=Path, metavar="MANIFEST", help="TOML manifest, e.g. manifests/demo.toml"
    )
    build.add_argument(
        "--out",
        metavar="BUILD",
        help="build folder or URL (s3://, gs://…); default: manifest's out, else build/NAME",
    )
    _executor_options(build)
    build.add_argument("--until", choices=stages, default="publish", metavar="STAGE",
                       help=f"stop after this stage: {', '.join(stages)}")  # fmt: skip
    build.add_argument("--force", action="store_true", help="redo every step, changed or not")
    build.add_argument(
        "--plan",
        action="store_true",
        help="say which steps would run and why, and check tokens and keys; run nothing",
    )
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from pmcurate import progress
    from pmcurate.executor import build_preload, make_executor
    from pmcurate.manifest import load_manifest

    if args.plan:
        from pmcurate.pipeline import format_plan, plan_build

        manifest = load_manifest(args.manifest)
        print(format_plan(plan_build(manifest, args.out, until=args.until, force=args.force)))
        return 0
    # made first: its workers' imports run beside ours, the manifest's checks' included (they
    # import every stage's module: Polars, DuckDB…) (LocalExecutor.start)
    executor = make_executor(args.executor, args.workers, preload=build_preload(args.until))
    if args.until != "harvest":  # the steps after it read tables back: this process needs no pandas
        from pmcurate.schema import pyarrow_datasets_without_pandas

        pyarrow_datasets_without_pandas()
    try:
        manifest = load_manifest(args.manifest)
        from pmcurate.pipeline import run_build

        result = run_build(manifest, args.out, executor=executor, workers=args.workers,
                           until=args.until, force=args.force, progress=progress.enabled())  # fmt: skip
    finally:
        executor.close()
    from pmcurate.provenance import format_summary, print_dataset

    print(format_summary(result))
    print_dataset(result)
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "harvest": ("fetch or read JATS articles and write the base tables", add_harvest),
    "query": (
        "run DuckDB SQL over a build, an export folder or a Hub dataset (one view per table)",
        add_query,
    ),
    "demo": ("harvest the bundled sample articles into build/demo and query them", add_demo),
    "annotate": ("label paragraphs: LLM teacher on a sample, fastText students on all", add_annotate),
    "filter": (
        "make a subset: rules, SQL, dedup and upsampling; every dropped row keeps its reason",
        add_filter,
    ),
    "stats": (
        "counts and distributions of a build or subset: tables and an HTML report with charts",
        add_stats,
    ),
    "export": (
        "write a build or subset as Hub-ready Parquet (or WebDataset) shards with a dataset card",
        add_export,
    ),
    "publish": ("upload an export folder to a Hugging Face dataset repository", add_publish),
    "build": (
        "run a manifest: harvest → annotate → filter → export → publish, redoing only what changed",
        add_build,
    ),
}
"""Each command: its help line, and the function that adds its options to its parser."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``only``, of that command's options alone: the others
    keep their name and help line (``pmcurate --help`` lists them all) but not their options, whose
    configs' modules would be imported for nothing."""
    parser = argparse.ArgumentParser(
        prog="pmcurate",
        description="Curated training corpora from PubMed Central Open Access.",
    )
    parser.add_argument("--version", action="version", version=f"pmcurate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help, add) in COMMANDS.items():
        child = sub.add_parser(name, help=help)
        if only in (None, name):
            add(child)
    _add_output_options(parser, top=True)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs: its first word that is not an option (the program's own options
    take no value), or None (``--help``, ``--version``)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _add_output_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``--quiet`` on the program and on every subcommand, so they work before or after it.

    Below the top level their default is SUPPRESS: a subcommand that was not given the option must
    not reset what was given before it."""
    default: Any = False if top else argparse.SUPPRESS
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="log debug messages (every HTTP request too); tracebacks on errors")  # fmt: skip
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="warnings and errors only, no progress bars (results still print)")  # fmt: skip
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_output_options(child, top=False)


def _configure_output(args: argparse.Namespace) -> None:
    """Log level from -v/--quiet; one line per HTTP request only with -v; no bars under --quiet."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for name in ("httpx", "httpcore", "urllib3", "filelock"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # inherited by worker processes


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet exclude each other")
    _configure_output(args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("pmcurate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (head, less) went away: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        found = errors.report(exc)  # the message and exit status come from the error's policy
        if found is None:  # a bug: its traceback
            raise
        if args.verbose:
            log.debug("traceback of the error below", exc_info=exc)
        print(f"pmcurate: error: {found[0]}", file=sys.stderr)
        return found[1]


COMMAND_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}
"""Set for the command's process, unless already set, before it loads NumPy. OpenBLAS starts a thread
per core that spins ~2^28 cycles (~0.1 CPU-s) after it starts and after each call before it sleeps;
2^4 cycles puts it to sleep at once. The command makes few BLAS calls of its own (the pool's workers
run one thread: ``executor.WORKER_ENV``)."""


def run() -> NoReturn:
    """The ``pmcurate`` command: ``main``, then an exit that skips the interpreter's teardown.

    Python's finalization frees every module and object one at a time: with pyarrow, Polars,
    DuckDB and pandas loaded, 0.15–0.22 s after the work is written (a 2,000-article build takes
    ~3.5 s). The exit handlers still run (logging's flush, multiprocessing's and Ray's clean-up) and
    the standard streams are flushed; then the process ends. A thread still running, a profiler or
    tracer (``python -m cProfile``, a debugger: they report after ``main``), or an exception out of
    ``main`` takes the ordinary exit instead."""
    for name, value in COMMAND_ENV.items():
        os.environ.setdefault(name, value)
    code = main()
    if _ordinary_exit():
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):  # a reader gone, a stream closed
            stream.flush()
    os._exit(code)


def _ordinary_exit() -> bool:
    """Whether something may still need the interpreter's own exit: a thread, a profiler, a tracer."""
    threads = [t for t in threading.enumerate() if t is not threading.main_thread()]
    return any(t.is_alive() and not t.daemon for t in threads) or bool(sys.getprofile() or sys.gettrace())


if __name__ == "__main__":
    run()
