"""The ``pmcurate`` command: harvest local, query, demo, and its error convention (one line, exit 2)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import polars as pl
import pytest

from pmcurate import cli
from pmcurate.cli import build_parser, main
from pmcurate.step import StepConfig

JATS_DIR = Path(__file__).parent / "data" / "jats"


def test_harvest_local_writes_the_build_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "--workers", "1"])
        == 0
    )
    assert "harvested 1 articles" in capsys.readouterr().out
    assert pl.read_parquet(tmp_path / "tables/articles/*.parquet")["article_id"].to_list() == ["PMC3574550"]


def test_harvest_local_of_a_missing_path_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["harvest", "local", str(tmp_path / "nope"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err == f"pmcurate: error: harvest:local: {tmp_path / 'nope'}: no such file or folder\n"


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["harvest", "local", str(JATS_DIR), "--out", str(tmp_path), "--workers", "0"])
    assert exit_.value.code == 2


def test_harvest_local_citations_drop_leaves_citation_markers_out(tmp_path: Path) -> None:
    paths = [str(JATS_DIR / "pone.0046493.nxml"), "--workers", "1"]
    assert main(["harvest", "local", *paths, "--out", str(tmp_path / "drop"), "--citations", "drop"]) == 0
    assert main(["harvest", "local", *paths, "--out", str(tmp_path / "marker")]) == 0
    dropped = pl.read_parquet(tmp_path / "drop/tables/paragraphs/*.parquet")["text"].to_list()
    marked = pl.read_parquet(tmp_path / "marker/tables/paragraphs/*.parquet")["text"].to_list()
    assert any("needed [1]." in text for text in marked)
    assert not any("[1]" in text for text in dropped) and any("needed." in text for text in dropped)


def test_harvest_local_refuses_an_unknown_citation_mode(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["harvest", "local", str(JATS_DIR), "--out", str(tmp_path), "--citations", "keep"])
    assert exit_.value.code == 2


def test_query_prints_csv(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    main(["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "--workers", "1"])
    capsysbinary.readouterr()
    assert main(["query", str(tmp_path), "SELECT article_id FROM articles", "--format", "csv"]) == 0
    assert capsysbinary.readouterr().out == b"article_id\nPMC3574550\n"


def test_query_with_bad_sql_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "--workers", "1"])
    capsys.readouterr()
    assert main(["query", str(tmp_path), "SELEC 1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmcurate: error: SQL error:")
    assert err.count("\n") == 1


def test_demo_harvests_the_bundled_sample_and_prints_a_query_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "Build: build/demo" in out
    assert "│ PMC3166277 │  2011 │ CC BY" in out
    articles = pl.read_parquet(tmp_path / "build/demo/tables/articles/*.parquet")
    assert articles.height == 8
    assert set(articles["license"]) == {"CC BY", "PD"}


def test_demo_starts_from_a_fresh_build_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(["demo", "--workers", "1"])
    stale = tmp_path / "build/demo/tables/articles/stale.parquet"
    stale.write_bytes(b"old")
    assert main(["demo", "--workers", "1"]) == 0
    assert not stale.exists()


def test_demo_refuses_to_replace_a_folder_that_is_not_a_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "is not a pmcurate build" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def closed_port_url() -> str:
    """A localhost URL nobody listens on: connections are refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/rest"


def test_unreachable_host_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["harvest", "europepmc", "--query", "malaria", "--out", str(tmp_path / "b")]
    assert main([*argv, "--base-url", closed_port_url(), "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pmcurate: error: harvest:europepmc: http://127.0.0.1:")
    assert "run the same command again to resume" in err and err.count("\n") == 1


def test_build_without_network_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "net.toml"
    manifest.write_text(
        'name = "net"\n[[sources]]\nkind = "europepmc"\nquery = "malaria"\n'
        f'base_url = "{closed_port_url()}"\n'
    )
    assert main(["build", str(manifest), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pmcurate: error: harvest:europepmc#1: http://127.0.0.1:")
    assert "run the same command again to resume" in err and err.count("\n") == 1


@pytest.mark.parametrize("flag", ["-v", "--verbose", "-q", "--quiet"])
def test_output_options_work_after_the_subcommand(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "--workers", "1"]
    assert main([*argv, flag]) == 0
    assert "harvested 1 articles" in capsys.readouterr().out


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(f"    {name} " in out for name in cli.COMMANDS)


def test_a_command_adds_only_its_own_options() -> None:
    parser = build_parser("query")
    assert {"target", "sql", "format"} <= {action.dest for action in parser_of(parser, "query")._actions}
    assert "subset" not in {action.dest for action in parser_of(parser, "filter")._actions}


def test_running_a_command_does_not_import_the_other_commands_modules() -> None:
    others = {"polars", "duckdb", "pmcurate.filters.steps", "pmcurate.export.steps"}
    code = (
        "import sys; from pmcurate import cli; cli.build_parser(cli.command_of(['-q', 'harvest', 'local']));"
        f"print(sorted({others!r} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def parser_of(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


def test_verbose_and_quiet_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["-v", "query", str(tmp_path), "SELECT 1", "--quiet"])


def test_quiet_turns_off_progress_bars_and_info_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from pmcurate import progress

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert progress.enabled()
    main(["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "-q"])
    assert not progress.enabled()


def test_tqdm_disable_and_a_non_terminal_turn_bars_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from pmcurate import progress

    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress.enabled() and not progress.enabled(False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress.enabled()
    monkeypatch.delenv("TQDM_DISABLE")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a log file: no bars
    assert not progress.enabled()


def test_http_requests_are_not_logged_without_verbose(tmp_path: Path) -> None:
    import logging

    main(["query", str(tmp_path), "SELECT 1"])
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)


@pytest.mark.parametrize("flag", ["--workers", "--jobs"])
def test_annotate_apply_takes_workers_like_every_command_and_jobs_as_its_old_name(flag: str) -> None:
    from pmcurate.cli import build_parser

    args = build_parser().parse_args(["annotate", "apply", "build/x", flag, "3"])
    assert args.jobs == 3


def test_a_native_call_is_interrupted_at_once_not_when_it_returns(tmp_path: Path) -> None:
    """fastText trains in native code that never looks at signals: Ctrl-C must not wait for it."""
    import os
    import random
    import signal
    import threading

    import fasttext

    from pmcurate.progress import interruptible

    corpus = tmp_path / "train.txt"
    words = [f"w{i}" for i in range(2000)]
    rng = random.Random(0)
    corpus.write_text(
        "".join(f"__label__{i % 3} {' '.join(rng.choices(words, k=30))}\n" for i in range(50_000))
    )

    def train() -> object:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, just as the native training starts
        return fasttext.train_supervised(str(corpus), epoch=50, thread=1, verbose=0)

    # Python's own Ctrl-C handler, as a terminal's Python has it: a suite started in the background
    # by a non-interactive shell inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            interruptible(train)
    finally:
        signal.signal(signal.SIGINT, previous)
    training = [t for t in threading.enumerate() if t.name == "pmcurate-native-call"]
    assert training and training[0].is_alive()  # the interrupt came while fastText was still training


def test_student_training_shows_a_bar_over_its_training_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pmcurate import progress
    from pmcurate.manifest import load_manifest
    from pmcurate.pipeline import run_build
    from tests import builds

    monkeypatch.setattr(progress, "enabled", lambda requested=True: requested)
    manifest = builds.write_manifest(tmp_path / "t.toml", builds.make_inputs(tmp_path / "in"))
    run_build(load_manifest(manifest), tmp_path / "b", workers=1, until="annotate", progress=True)
    err = capsys.readouterr().err
    assert "annotate train: 100%" in err and "3/3" in err  # one setting tried, the test model, the final


# ---------------------------------------------------------------- one front door: configs → flags and keys

RUNS = {"executor", "workers"}
COMMANDS = {
    # command: (argv with its required arguments, its config, the manifest table of that same config,
    #           the options that are the invocation's own, not settings of the step)
    "harvest local": (["in", "--out", "b"], "harvest.steps.LocalConfig", {"paths": ["in"]}, {"out", *RUNS}),
    "harvest pmc": (["--all", "--out", "b"], "harvest.steps.PmcConfig", {"all": True}, {"out"}),
    "harvest europepmc": (
        ["--query", "q", "--out", "b"],
        "harvest.steps.EuropePmcConfig",
        {"query": "q"},
        {"out"},
    ),
    "harvest eutils": (["--query", "q", "--out", "b"], "harvest.steps.EutilsConfig", {"query": "q"}, {"out"}),
    "filter": (
        ["b", "--subset", "s"],
        "filters.steps.SubsetConfig",
        {},
        {"build", "subset", "manifest", *RUNS},
    ),
    "export": (["b", "--out", "o"], "export.steps.ExportConfig", {}, {"build", "out", "no_progress", *RUNS}),
    "publish": (["d", "--repo", "o/n"], "export.steps.PublishConfig", {"repo": "o/n"}, {"folder"}),
}
OUTPUT = {"help", "verbose", "quiet"}


def command_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``argv`` starts with."""
    parser = build_parser()
    for word in argv:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or word not in subparsers[0].choices:
            break
        parser = subparsers[0].choices[word]
    return parser


def config_class(path: str) -> type[StepConfig]:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(f"pmcurate.{module}"), name)


def from_cli(argv: list[str], cls: type[StepConfig]) -> StepConfig:
    """The config a command builds from ``argv`` (with the values the command sets itself)."""
    args = build_parser().parse_args(argv)
    fixed = {"paths": tuple(args.paths)} if argv[:2] == ["harvest", "local"] else {}
    return cls.from_args(args, **fixed | ({"name": args.subset} if argv[0] == "filter" else {}))


def manifest_keys(config: StepConfig) -> dict[str, object]:
    return {option.name: getattr(config, option.name) for option in config.options() if option.manifest}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_manifest_key_is_an_option_of_the_command(command: str) -> None:
    path = COMMANDS[command][1]
    dests = {action.dest for action in command_parser(command.split())._actions}
    assert {option.name for option in config_class(path).options() if option.manifest} <= dests


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_the_command_is_a_config_field(command: str) -> None:
    _, path, _, own = COMMANDS[command]
    dests = {action.dest for action in command_parser(command.split())._actions} - own - OUTPUT
    assert dests <= {option.name for option in config_class(path).options()}


@pytest.mark.parametrize("command", COMMANDS)
def test_the_command_and_the_manifest_table_give_the_same_defaults(command: str) -> None:
    required, path, table, _ = COMMANDS[command]
    cls = config_class(path)
    fixed = {"name": "s"} if command == "filter" else {}
    assert manifest_keys(from_cli([*command.split(), *required], cls)) == manifest_keys(
        cls.from_table(table, **fixed)
    )


def test_harvest_local_runs_its_step_through_the_runner_and_records_it(tmp_path: Path) -> None:
    main(["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "--workers", "1"])
    state = json.loads((tmp_path / ".pmcurate" / "state.json").read_text())
    assert state["steps"]["harvest:local"]["counts"]["articles"] == 1


def test_harvest_pmc_without_a_selection_is_one_line_naming_the_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["harvest", "pmc", "--out", "b"]) == 2
    assert (
        capsys.readouterr().err == "pmcurate: error: give exactly one of --ids, --since, --all (got none)\n"
    )


def test_filter_dedup_kinds_may_be_comma_separated_or_repeated() -> None:
    from pmcurate.filters.steps import SubsetConfig

    argv = [
        "filter",
        "b",
        "--subset",
        "s",
        "--dedup",
        "exact,near",
        "--rule",
        "min_words",
        "--rule",
        "license=commercial",
    ]
    config = from_cli(argv, SubsetConfig)
    assert (config.dedup, config.rules) == (("exact", "near"), ("min_words", "license=commercial"))


def _command(
    *args: str, before: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pmcurate ARGS`` run as the console script runs it (``cli.run``), after the Python ``before``,
    its output buffered as a pipe's is by default (``env``: default this one's)."""
    argv = ["pmcurate", *args]
    code = f"import sys\n{before}\nfrom pmcurate.cli import run\nsys.argv = {argv!r}\nrun()"
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)


def test_the_command_writes_all_its_output_before_it_exits(tmp_path: Path) -> None:
    main(["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "--workers", "1"])
    done = _command("query", str(tmp_path), "SELECT range AS n FROM range(200000)", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["n", *map(str, range(200000))]


def test_the_command_runs_the_exit_handlers(tmp_path: Path) -> None:
    main(["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "--workers", "1"])
    handler = "import atexit\natexit.register(lambda: print('exit handler ran'))"
    done = _command("query", str(tmp_path), "SELECT 1 AS one", "--format", "csv", before=handler)
    assert done.stdout == "one\n1\nexit handler ran\n"


def test_the_command_exits_with_the_status_of_its_error(tmp_path: Path) -> None:
    done = _command("harvest", "local", str(tmp_path / "nope"), "--out", str(tmp_path / "b"))
    assert done.returncode == 2
    assert done.stderr.endswith("no such file or folder\n")


def test_the_command_under_a_profiler_exits_as_python_does(tmp_path: Path) -> None:
    """``python -m cProfile`` writes its report after the command returns."""
    main(["harvest", "local", str(JATS_DIR / "mds526.nxml"), "--out", str(tmp_path), "--workers", "1"])
    report = tmp_path / "command.prof"
    script = tmp_path / "command.py"
    script.write_text("from pmcurate.cli import run\nrun()\n")
    profiled = [sys.executable, "-m", "cProfile", "-o", str(report), str(script)]
    done = subprocess.run([*profiled, "query", str(tmp_path), "SELECT 1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert report.stat().st_size > 0


def test_the_command_lets_openblas_threads_sleep_at_once() -> None:
    report = "import atexit, os\natexit.register(lambda: print(os.environ.get('OPENBLAS_THREAD_TIMEOUT')))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    done = _command("--version", before=report, env=env)
    assert done.stdout.splitlines()[-1] == "4"


def test_the_command_keeps_an_openblas_thread_timeout_of_the_user() -> None:
    report = "import atexit, os\natexit.register(lambda: print(os.environ.get('OPENBLAS_THREAD_TIMEOUT')))"
    done = _command("--version", before=report, env={**os.environ, "OPENBLAS_THREAD_TIMEOUT": "12"})
    assert done.stdout.splitlines()[-1] == "12"


def test_a_build_that_stops_after_the_harvest_imports_neither_duckdb_nor_polars(tmp_path: Path) -> None:
    demo = resources.files("pmcurate") / "data" / "demo.toml"
    report = (
        "import atexit, sys\natexit.register(lambda: print(sorted({'duckdb', 'polars'} & set(sys.modules))))"
    )
    build = ("build", str(demo), "--out", str(tmp_path), "--until", "harvest", "--workers", "1")
    done = _command(*build, before=report)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_whole_build_imports_neither_pandas_nor_the_hub_client(tmp_path: Path) -> None:
    """pyarrow imports pandas (~0.14 CPU-s) to convert, to read datasets and for ``to_numpy``, and
    ``huggingface_hub.repocard`` imports the Hub client (~0.15 CPU-s); a build needs neither
    (``schema.pyarrow_datasets_without_pandas``, ``schema.numpy_of``; the card's ``DatasetCardData``
    alone: ``card.import_hub_card``)."""
    demo = resources.files("pmcurate") / "data" / "demo.toml"
    unwanted = {"pandas", "huggingface_hub.hf_api"}
    report = f"import atexit, sys\natexit.register(lambda: print(sorted({unwanted!r} & set(sys.modules))))"
    build = ("build", str(demo), "--out", str(tmp_path / "build"), "--workers", "1")
    done = _command(*build, before=report, env={**os.environ, "PMCURATE_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "build" / "dataset" / "README.md").exists()  # the card was written
    assert done.stdout.splitlines()[-1] == "[]"
