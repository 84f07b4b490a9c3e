"""``step``: config fields as manifest keys and CLI flags, and ``run_step``, the one runner."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pmcurate.errors import Fatal, Retry, SkipItem
from pmcurate.executor import LocalExecutor
from pmcurate.step import (
    Build,
    ConfigError,
    Size,
    Step,
    StepConfig,
    StepFailed,
    StepInterrupted,
    StepReport,
    option,
    parse_size,
    run_step,
)


@dataclass(frozen=True)
class CountConfig(StepConfig):
    out: Path = option(help="where the counts go", cli="", manifest=False)
    sizes: tuple[str, ...] = option((), "task sizes, as strings")
    mode: str = option("sum", "how counts merge", choices=("sum", "max"))
    batch_size: int = option(8, "rows per batch")
    seed: int = option(0, "random seed", minimum=None)
    ratio: float = option(0.5, "a fraction")
    limit: int | None = option(None, "at most this many")
    fast: bool = option(False, "go fast")
    check: bool = option(True, "check inputs")
    labels: Path | None = option(None, "a labels file", group="source")
    teacher: str = option("llm", "a teacher", choices=("llm", "rules"), group="source")


# ---------------------------------------------------------------- configs


def test_table_values_are_checked_and_converted(tmp_path: Path) -> None:
    table = {"sizes": "3", "mode": "max", "ratio": 1, "limit": 4, "fast": True, "labels": "l.tsv"}
    config = CountConfig.from_table(
        table, where="[count]", resolve=lambda value, key: tmp_path / value, out=tmp_path
    )
    assert config == CountConfig(
        out=tmp_path, sizes=("3",), mode="max", ratio=1.0, limit=4, fast=True, labels=tmp_path / "l.tsv"
    )


def test_defaults_are_the_fields_defaults() -> None:
    config = CountConfig.from_table({}, out=Path("x"))
    assert (config.batch_size, config.mode, config.check, config.limit) == (8, "sum", True, None)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"mode": "min"}, "[count] mode: expected one of 'sum', 'max', got str 'min'"),
        ({"batch_size": 0}, "[count] batch_size: expected an integer ≥ 1, got int 0"),
        ({"batch_size": True}, "[count] batch_size: expected an integer ≥ 1, got bool True"),
        ({"ratio": -1}, "[count] ratio: expected a number ≥ 0, got int -1"),
        ({"fast": "yes"}, "[count] fast: expected true or false, got str 'yes'"),
        ({"sizes": [1]}, "[count] sizes: expected a list of non-empty strings, got a list [1]"),
        ({"labels": ""}, "[count] labels: expected a non-empty string, got str ''"),
        ({"bach_size": 3}, "[count]: unknown key(s) 'bach_size' (known here: batch_size, check, fast"),
        ({"out": "x"}, "[count]: unknown key(s) 'out'"),
    ],
)
def test_bad_table_values_name_the_key_and_what_was_expected(table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CountConfig.from_table(table, where="[count]", out=Path("x"))
    assert str(info.value).startswith(message)


def test_minimum_none_allows_any_integer() -> None:
    assert CountConfig.from_table({"seed": -3}, out=Path("x")).seed == -3


def test_required_field_missing_is_an_error() -> None:
    @dataclass(frozen=True)
    class Needs(StepConfig):
        name: str = option(help="a name")

    with pytest.raises(ConfigError, match=r"^\[needs\] name: required key is missing$"):
        Needs.from_table({}, where="[needs]")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    CountConfig.add_arguments(parser)
    return parser


def test_cli_flags_come_from_the_fields() -> None:
    argv = ["--batch-size", "3", "--fast", "--no-check", "--sizes", "1", "2", "--labels", "l.tsv"]
    config = CountConfig.from_args(_parser().parse_args(argv), out=Path("o"))
    assert config == CountConfig(
        out=Path("o"), batch_size=3, fast=True, check=False, sizes=("1", "2"), labels=Path("l.tsv")
    )


def test_fields_of_a_group_are_exclusive_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--labels", "l.tsv", "--teacher", "rules"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_defaults_equal_the_manifest_defaults() -> None:
    from_cli = CountConfig.from_args(_parser().parse_args([]), out=Path("o"))
    assert from_cli == CountConfig.from_table({}, out=Path("o"))


def test_cli_values_are_checked_like_manifest_values() -> None:
    with pytest.raises(ConfigError, match=r"^--batch-size: expected an integer ≥ 1, got int 0$"):
        CountConfig.from_args(_parser().parse_args(["--batch-size", "0"]), out=Path("o"))


def test_cli_help_shows_help_and_default() -> None:
    text = _parser().format_help()
    assert "rows per batch (default 8)" in text and "random seed (default 0)" in text
    assert "--no-check" in text and "--out" not in text


@dataclass(frozen=True)
class FilesConfig(StepConfig):
    paths: tuple[Path, ...] = option((), "input files")
    shard_size: Size = option(Size(500 * 2**20), "target shard size", metavar="SIZE")


@pytest.mark.parametrize("given", [1_000_000, "1MB", "1000KB", " 1 mb "])
def test_a_size_takes_bytes_or_a_unit(given: object) -> None:
    assert FilesConfig.from_table({"shard_size": given}).shard_size == 1_000_000


@pytest.mark.parametrize("given", [0, "big", True, 1.5, "-1MB"])
def test_a_bad_size_names_the_key(given: object) -> None:
    with pytest.raises(ConfigError, match=r"^key 'shard_size': expected a size in bytes, or with a unit"):
        FilesConfig.from_table({"shard_size": given})


def test_a_size_flag_takes_a_unit_and_shows_its_default_in_binary_units() -> None:
    parser = argparse.ArgumentParser()
    FilesConfig.add_arguments(parser)
    assert FilesConfig.from_args(parser.parse_args(["--shard-size", "64MiB"])).shard_size == 2**26
    assert "target shard size (default 500MiB)" in " ".join(parser.format_help().split())


def test_sizes_parse_with_units() -> None:
    assert [parse_size(s) for s in ("500MB", "1.5GB", "64MiB", "1000")] == [
        500 * 10**6,
        1_500_000_000,
        2**26,
        1000,
    ]
    with pytest.raises(ValueError, match="invalid size 'big'"):
        parse_size("big")


def test_a_tuple_of_paths_is_resolved_item_by_item() -> None:
    config = FilesConfig.from_table({"paths": ["a", "b"]}, resolve=lambda value, key: Path("/in") / value)
    assert config.paths == (Path("/in/a"), Path("/in/b"))


def test_a_tuple_flag_is_repeatable_and_takes_several_values() -> None:
    parser = argparse.ArgumentParser()
    FilesConfig.add_arguments(parser)
    args = parser.parse_args(["--paths", "a", "b", "--paths", "c"])
    assert FilesConfig.from_args(args).paths == (Path("a"), Path("b"), Path("c"))


# ---------------------------------------------------------------- the runner


@dataclass(frozen=True)
class Piece:
    key: str
    size: int


class CountStep(Step[CountConfig, Piece]):
    """Writes one file per task in its worker; ``finish`` writes the task keys in the order they ran."""

    name = "count"
    reads = ("paragraphs",)

    def __init__(self, config: CountConfig) -> None:
        super().__init__(config)
        self.setups = 0

    def plan(self, build: Build) -> list[Piece]:
        done = {p.stem for p in self.config.out.glob("*.json")}
        return [Piece(size, int(size)) for size in self.config.sizes if size not in done]

    def setup(self) -> None:
        self.setups += 1

    def run(self, task: Piece) -> dict[str, int]:
        record = {"pid": os.getpid(), "setups": self.setups, "seq": len(list(self.config.out.glob("*")))}
        (self.config.out / f"{task.key}.json").write_text(json.dumps(record))
        return {"tasks": 1, "size": task.size}

    def teardown(self) -> None:
        (self.config.out / f"teardown-{os.getpid()}").touch()

    def outputs(self, build: Build) -> list[Path]:
        return [self.config.out / "done"]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        (self.config.out / "done").touch()
        report = super().finish(build, counts)
        report.drops = {"none": 0}
        return report


def _step(tmp_path: Path, sizes: tuple[str, ...] = ("1", "5", "3")) -> CountStep:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return CountStep(CountConfig(out=out, sizes=sizes))


def _records(step: CountStep) -> dict[str, dict[str, int]]:
    return {
        p.stem: json.loads(p.read_text())
        for p in step.config.out.glob("*.json")
        if not p.name.startswith("t")
    }


def test_tasks_run_largest_first_in_one_worker(tmp_path: Path) -> None:
    step = _step(tmp_path)
    report = run_step(step, Build(tmp_path / "build"))
    records = _records(step)
    assert sorted(records, key=lambda k: records[k]["seq"]) == ["5", "3", "1"]
    assert report.status == "ran" and report.counts == {"tasks": 3, "size": 9}


def test_setup_and_teardown_once_in_this_process(tmp_path: Path) -> None:
    step = _step(tmp_path)
    run_step(step, Build(tmp_path / "build"))
    assert {r["setups"] for r in _records(step).values()} == {1}
    assert step.setups == 0  # the runner sets up a copy: the step object itself stays a config
    assert [p.name for p in step.config.out.glob("teardown-*")] == [f"teardown-{os.getpid()}"]


def test_pool_sets_the_step_up_once_per_worker(tmp_path: Path) -> None:
    step = _step(tmp_path, sizes=tuple(str(n) for n in range(1, 9)))
    executor = LocalExecutor(2)
    try:
        report = run_step(step, Build(tmp_path / "build", progress=False), executor)
    finally:
        executor.close()
    records = _records(step).values()
    per_worker: dict[int, list[int]] = {}
    for record in records:
        per_worker.setdefault(record["pid"], []).append(record["setups"])
    assert report.counts["tasks"] == 8
    assert all(set(setups) == {1} for setups in per_worker.values())
    assert {p.name for p in step.config.out.glob("teardown-*")} == {f"teardown-{pid}" for pid in per_worker}


def test_state_records_fingerprint_counts_and_drops(tmp_path: Path) -> None:
    build = Build(tmp_path / "build")
    step = _step(tmp_path)
    run_step(step, build)
    saved = json.loads((tmp_path / "build" / ".pmcurate" / "state.json").read_text())["steps"]["count"]
    assert saved["fingerprint"] == step.fingerprint(build)
    assert (saved["counts"], saved["drops"]) == ({"tasks": 3, "size": 9}, {"none": 0})


def test_unchanged_fingerprint_skips_the_step(tmp_path: Path) -> None:
    step = _step(tmp_path)
    run_step(step, Build.open(tmp_path / "build"))
    again = run_step(step, Build.open(tmp_path / "build"))
    assert (again.status, again.counts) == ("unchanged", {"tasks": 3, "size": 9})


def test_changed_settings_rerun_the_step(tmp_path: Path) -> None:
    run_step(_step(tmp_path), Build.open(tmp_path / "build"))
    again = run_step(_step(tmp_path, sizes=("1", "5", "3", "7")), Build.open(tmp_path / "build"))
    assert (again.status, again.counts) == ("ran", {"tasks": 1, "size": 7})


def test_missing_output_reruns_the_step(tmp_path: Path) -> None:
    step = _step(tmp_path)
    run_step(step, Build.open(tmp_path / "build"))
    (step.config.out / "done").unlink()
    assert run_step(step, Build.open(tmp_path / "build")).status == "ran"


def test_force_reruns_an_unchanged_step(tmp_path: Path) -> None:
    step = _step(tmp_path)
    run_step(step, Build.open(tmp_path / "build"))
    assert run_step(step, Build.open(tmp_path / "build", force=True)).status == "ran"


class Incomplete(CountStep):
    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        return StepReport(self.name, "incomplete")


class PerTask(CountStep):
    def fingerprint(self, build: Build) -> None:
        return None


def test_incomplete_step_is_not_recorded(tmp_path: Path) -> None:
    step = Incomplete(_step(tmp_path).config)
    run_step(step, Build.open(tmp_path / "build"))
    assert run_step(step, Build.open(tmp_path / "build")).status == "incomplete"


def test_plan_says_why_and_runs_nothing(tmp_path: Path) -> None:
    step = _step(tmp_path)
    build = Build.open(tmp_path / "build", plan=True)
    report = run_step(step, build)
    assert report.status == "planned"
    assert [(p.step, p.action, p.reason) for p in build.plan or []] == [
        ("count", "run", "never ran in this build")
    ]
    assert not list(step.config.out.iterdir())


@pytest.mark.parametrize(
    ("change", "action", "reason"),
    [
        ("none", "unchanged", "same settings and inputs as its last run"),
        ("settings", "run", "its settings or the files it reads changed since its last run"),
        ("output", "run", "its output out/done is missing"),
    ],
)
def test_plan_after_a_run(tmp_path: Path, change: str, action: str, reason: str) -> None:
    step = _step(tmp_path)
    run_step(step, Build.open(tmp_path))
    if change == "settings":
        step = _step(tmp_path, sizes=("2",))
    elif change == "output":
        (step.config.out / "done").unlink()
    build = Build.open(tmp_path, plan=True)
    run_step(step, build)
    assert [(p.action, p.reason) for p in build.plan or []] == [(action, reason)]


def test_plan_of_a_later_step_may_run_when_an_earlier_one_runs(tmp_path: Path) -> None:
    step = _step(tmp_path)
    run_step(step, Build.open(tmp_path))
    build = Build.open(tmp_path, plan=True)
    build.planned("harvest", "run", "new files")
    run_step(step, build)
    assert build.plan and build.plan[-1].action == "may run"


def test_per_task_step_plan_explains_its_tasks(tmp_path: Path) -> None:
    step = PerTask(_step(tmp_path).config)
    build = Build.open(tmp_path, plan=True)
    run_step(step, build)
    run_step(step, Build.open(tmp_path))
    run_step(step, build)
    assert [(p.action, p.reason) for p in build.plan or []] == [
        ("run", "3 tasks to run"),
        ("unchanged", "every task done"),
    ]


class Failing(CountStep):
    error: Exception = Fatal("bad input")

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        raise self.error


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (Fatal("no table"), StepFailed),
        (SkipItem("one bad article"), StepFailed),
        (Retry("503"), StepInterrupted),
    ],
)
def test_runner_decides_by_policy_and_names_the_step(
    tmp_path: Path, error: Exception, raised: type[Exception]
) -> None:
    step = Failing(_step(tmp_path).config)
    step.error = error
    with pytest.raises(raised) as info:
        run_step(step, Build(tmp_path))
    assert str(info.value) == f"count: {error}"
    assert Build.open(tmp_path).state["steps"] == {}  # a failed step is not recorded as done


def test_a_bug_keeps_its_traceback(tmp_path: Path) -> None:
    step = Failing(_step(tmp_path).config)
    step.error = KeyError("bug")
    with pytest.raises(KeyError):
        run_step(step, Build(tmp_path))
