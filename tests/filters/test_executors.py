"""A subset's tasks give the same files in this process, on a local process pool and on Ray."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pmcurate.executor import LocalExecutor, RayExecutor
from pmcurate.filters.subset import make_subset
from tests.filters.scale_build import write_scale_build

PARAGRAPHS: dict[str, Any] = {
    "rules": ["min_words=10", "boilerplate"],
    "dedup": ["exact", "near"],
    "upsample": {"mostly_clinical=0.2": 3},
    "shard_rows": 90,
    "partition_rows": 60,
}
FIGURES: dict[str, Any] = {"source": "figures", "dedup": ["image", "caption"], "partition_rows": 20}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scale_build(tmp_path_factory.mktemp("executors") / "build")


@pytest.fixture(scope="module")
def in_process(build: Path) -> dict[str, dict[str, bytes]]:
    return {
        name: files(make_subset(build, name, **options).path)
        for name, options in (("paragraphs", PARAGRAPHS), ("figures", FIGURES))
    }


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    """A local Ray cluster with two worker CPUs."""
    executor = RayExecutor(2)
    yield executor
    executor.close()


@pytest.mark.parametrize("name, options", [("paragraphs", PARAGRAPHS), ("figures", FIGURES)])
def test_process_pool_writes_the_same_bytes_as_one_process(
    build: Path, in_process: dict[str, dict[str, bytes]], name: str, options: dict[str, Any]
) -> None:
    pool = LocalExecutor(2)
    try:
        result = make_subset(build, name, executor=pool, **options)
    finally:
        pool.close()
    assert files(result.path) == in_process[name]


@pytest.mark.parametrize("name, options", [("paragraphs", PARAGRAPHS), ("figures", FIGURES)])
def test_ray_writes_the_same_bytes_as_the_local_executor(
    build: Path,
    in_process: dict[str, dict[str, bytes]],
    ray_executor: RayExecutor,
    name: str,
    options: dict[str, Any],
) -> None:
    result = make_subset(build, name, executor=ray_executor, **options)
    assert ray_executor.workers == 2
    assert files(result.path) == in_process[name]
