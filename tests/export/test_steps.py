"""The export step: one task per split on the executor, the same bytes however many workers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pmcurate.executor import LocalExecutor
from pmcurate.export.exporter import export, group_splits
from pmcurate.export.steps import ExportConfig, ExportStep
from pmcurate.step import Build, StepFailed, run_step


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_two_workers_write_the_bytes_one_writes(synthetic_build: Path, tmp_path: Path) -> None:
    export(
        synthetic_build, ExportConfig(out=tmp_path / "one" / "dataset", shard_size=400_000), progress=False
    )
    executor = LocalExecutor(2)
    try:
        export(
            synthetic_build,
            ExportConfig(out=tmp_path / "two" / "dataset", shard_size=400_000),
            progress=False,
            executor=executor,
        )
    finally:
        executor.close()
    one, two = digests(tmp_path / "one" / "dataset"), digests(tmp_path / "two" / "dataset")
    assert len([name for name in one if name.startswith("data/")]) > 3
    assert one == two


def test_step_shares_the_splits_among_its_tasks(synthetic_build: Path, tmp_path: Path) -> None:
    step = ExportStep(ExportConfig(out=tmp_path / "dataset", tasks=2))
    tasks = step.plan(Build(synthetic_build))
    assert len(tasks) == 2
    assert sorted(split for task in tasks for split in task.splits) == [
        "commercial",
        "noncommercial",
        "other",
    ]
    assert not (tmp_path / "dataset").exists()  # planning writes nothing


def test_largest_splits_go_to_the_emptiest_task() -> None:
    tasks = group_splits([("a", 10), ("b", 60), ("c", 30), ("d", 25)], 2)
    assert [(task.splits, task.rows) for task in tasks] == [(("b",), 60), (("a", "c", "d"), 65)]


def test_step_reruns_only_when_its_inputs_change(synthetic_build: Path, tmp_path: Path) -> None:
    config = ExportConfig(out=tmp_path / "dataset", split_by="none")
    build = Build(synthetic_build, state={"steps": {}})
    first = run_step(ExportStep(config), build)
    second = run_step(ExportStep(config), build)
    assert (first.status, second.status) == ("ran", "unchanged")
    assert first.counts["train rows"] == second.counts["train rows"] > 0
    assert (tmp_path / "dataset" / "data" / "train-00000-of-00001.parquet").is_file()


def test_step_error_names_the_step(synthetic_build: Path, tmp_path: Path) -> None:
    step = ExportStep(ExportConfig(name="mine", out=tmp_path, subset="missing"))
    with pytest.raises(StepFailed, match=r"^export:mine: .*no subset 'missing'"):
        run_step(step, Build(synthetic_build, state={"steps": {}}))


def test_task_count_and_url_are_not_part_of_the_fingerprint(synthetic_build: Path, tmp_path: Path) -> None:
    build = Build(synthetic_build)
    one = ExportStep(ExportConfig(out=tmp_path, tasks=1)).fingerprint(build)
    assert one == ExportStep(ExportConfig(out=tmp_path, tasks=4, remote="s3://b/x")).fingerprint(build)
    assert one != ExportStep(ExportConfig(out=tmp_path, tasks=1, shard_size=64 * 2**20)).fingerprint(build)
