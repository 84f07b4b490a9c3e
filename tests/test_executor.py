"""Executors: the same shard functions on a local process pool and on a local Ray instance."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmcurate.executor import (
    BuildLocation,
    ExecutorError,
    LocalExecutor,
    RayExecutor,
    locate_build,
    make_executor,
)
from pmcurate.manifest import load_manifest
from pmcurate.pipeline import run_build
from pmcurate.step import fingerprint
from tests import builds

ITEMS = [f"shard-{n}" for n in range(12)]
EXPECTED = sorted(fingerprint(item) for item in ITEMS)


def test_one_local_worker_maps_in_order() -> None:
    results = list(LocalExecutor(1).map(fingerprint, ITEMS, desc="one", progress=False))
    assert results == [fingerprint(item) for item in ITEMS]


def test_local_pool_returns_every_result() -> None:
    executor = LocalExecutor(2)
    try:
        results = sorted(executor.map(fingerprint, ITEMS, desc="pool", progress=False))
    finally:
        executor.close()
    assert results == EXPECTED


def test_unknown_executor_is_refused() -> None:
    with pytest.raises(ExecutorError, match="unknown executor 'dask'"):
        make_executor("dask")


def test_missing_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ExecutorError, match=r"pip install 'pmcurate\[ray\]'"):
        RayExecutor(1)


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    """A local Ray instance with two CPUs, started once for this module."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"ray is not installed ({exc}); pip install 'pmcurate[ray]' to run the Ray tests")
    executor = RayExecutor(2)
    yield executor
    executor.close()


def test_ray_runs_shard_functions(ray_executor: RayExecutor) -> None:
    assert sorted(ray_executor.map(fingerprint, ITEMS, desc="ray", progress=False)) == EXPECTED


def test_ray_executor_builds_the_same_tables_as_local(ray_executor: RayExecutor, tmp_path: Path) -> None:
    manifest = load_manifest(
        builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "in"))
    )
    local = run_build(manifest, tmp_path / "local", workers=1, progress=False)
    distributed = run_build(manifest, tmp_path / "ray", executor=ray_executor, progress=False)
    assert distributed.executor == "ray"
    assert distributed.step("harvest:local").counts["tasks run"] == 3
    builds.assert_same_build(local.build, distributed.build)


def test_url_build_resumes_from_the_url_on_another_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = load_manifest(
        builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "in"))
    )
    url = (tmp_path / "bucket" / "builds" / "test").as_uri()
    monkeypatch.setenv("PMCURATE_CACHE", str(tmp_path / "machine-a"))
    first = run_build(manifest, url, workers=1, progress=False)
    assert first.remote == url and first.build.is_relative_to(tmp_path / "machine-a")
    stored = tmp_path / "bucket" / "builds" / "test"
    assert (stored / "provenance.json").is_file() and list((stored / "dataset" / "data").glob("*.parquet"))

    monkeypatch.setenv("PMCURATE_CACHE", str(tmp_path / "machine-b"))  # an empty working copy
    second = run_build(manifest, url, workers=1, progress=False)

    assert second.build.is_relative_to(tmp_path / "machine-b")
    assert second.ran == []
    builds.assert_same_build(first.build, second.build)


def test_local_path_is_its_own_working_copy(tmp_path: Path) -> None:
    location = locate_build(tmp_path / "build")
    assert location == BuildLocation(tmp_path / "build", None)


def _polars_threads(_: str) -> str:
    import polars as pl

    return f"{os.environ.get('POLARS_MAX_THREADS')}:{pl.thread_pool_size()}"


def test_pool_workers_run_one_polars_thread_each() -> None:
    executor = LocalExecutor(2)
    try:
        found = set(executor.map(_polars_threads, ["a", "b", "c"], desc="env", progress=False))
    finally:
        executor.close()
    assert found == {"1:1"}
