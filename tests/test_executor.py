"""Executors: the same shard functions on a local process pool and on a local Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmcurate.executor import (
    BUILD_PRELOAD,
    LISTING,
    WORKER_PRELOAD,
    BuildLocation,
    ExecutorError,
    LocalExecutor,
    RayExecutor,
    UrlBuildExecutor,
    locate_build,
    make_executor,
    own_copy,
    pack,
    unpack,
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


def test_the_worker_preload_never_imports_polars() -> None:
    """The forkserver imports ``BUILD_PRELOAD`` (``WORKER_PRELOAD`` and pyarrow set up) and forks:
    Polars' thread pool must not run there."""
    code = f"import sys; import {', '.join(BUILD_PRELOAD)}; print('polars' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def _variable(name: str) -> str | None:
    return os.environ.get(name)


def test_workers_see_the_environment_of_their_pool_not_the_forkservers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = LocalExecutor(2)
    got = list(first.map(_variable, ["PMCURATE_TEST_VARIABLE"] * 2, desc="env", progress=False))
    assert got == [None, None]
    monkeypatch.setenv("PMCURATE_TEST_VARIABLE", "set")
    second = LocalExecutor(2)  # the forkserver, started before the variable was set, still runs
    try:
        got = list(second.map(_variable, ["PMCURATE_TEST_VARIABLE"] * 2, desc="env", progress=False))
        assert got == ["set", "set"]
    finally:
        second.close()
        first.close()


def _openblas_threads(_: object) -> int:
    """The threads NumPy's OpenBLAS is set to use in this process (its library found among those
    loaded, its ``*openblas_get_num_threads*`` called)."""
    import ctypes

    import numpy  # noqa: F401  (loads OpenBLAS)

    maps = Path("/proc/self/maps").read_text().splitlines()
    library = next(line.split()[-1] for line in maps if "openblas" in line.lower())
    loaded = ctypes.CDLL(library)
    names = ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_")
    for name in names:
        if hasattr(loaded, name):
            return int(getattr(loaded, name)())
    raise AssertionError(f"{library}: no openblas_get_num_threads")


def test_workers_numpy_runs_one_blas_thread() -> None:
    """The forkserver loads NumPy (its preload) with ``WORKER_ENV`` set: a worker per core, one
    BLAS thread each, none spinning after the import."""
    pool = LocalExecutor(2)
    try:
        assert list(pool.map(_openblas_threads, [0, 1], desc="blas", progress=False)) == [1, 1]
    finally:
        pool.close()


def test_closing_the_last_pool_stops_the_forkserver() -> None:
    executor = LocalExecutor(2)
    assert sorted(executor.map(abs, [-1, -2], desc="abs", progress=False)) == [1, 2]
    executor.close()
    assert _forkserver_pid() is None


def _forkserver_pid() -> int | None:
    from multiprocessing import forkserver

    pid: int | None = forkserver._forkserver._forkserver_pid
    return pid


def test_starting_a_pool_runs_its_forkserver_before_any_task() -> None:
    executor = LocalExecutor(2)
    assert _forkserver_pid() is None
    executor.start()
    try:
        assert _forkserver_pid() is not None
        assert sorted(executor.map(abs, [-1, -2], desc="abs", progress=False)) == [1, 2]
    finally:
        executor.close()
    assert _forkserver_pid() is None


def test_closing_a_started_pool_that_ran_nothing_does_not_wait_for_its_preload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The forkserver would import ``WORKER_PRELOAD`` before it notices it is stopped: a build with
    nothing to do must not wait for that."""
    monkeypatch.setattr("pmcurate.executor.WORKER_PRELOAD", ("tests.slow_import",))
    executor = LocalExecutor(2)
    executor.start()
    pid = _forkserver_pid()
    closing = threading.Thread(target=executor.close, daemon=True)
    closing.start()
    closing.join(timeout=120)  # a guard: the kill takes milliseconds; waiting would take forever
    assert not closing.is_alive()
    assert pid is not None and _forkserver_pid() is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_one_local_worker_starts_no_forkserver() -> None:
    executor = LocalExecutor(1)
    executor.start()
    assert _forkserver_pid() is None


def test_a_local_executor_is_made_started() -> None:
    executor = make_executor("local", 2)
    try:
        assert _forkserver_pid() is not None
    finally:
        executor.close()


def test_warming_imports_the_modules_in_the_workers_not_here() -> None:
    executor = LocalExecutor(2)
    try:
        pids = [future.result() for future in executor.warm([PROBE])]
        imported = set(executor.map(_imported_probe, [0, 1], desc="probe", progress=False))
    finally:
        executor.close()
    assert len(pids) == 2 and os.getpid() not in pids
    assert PROBE not in sys.modules and True in imported


PROBE = "tests.warm_probe"


def _imported_probe(_: int) -> bool:
    return PROBE in sys.modules


def test_warming_one_local_worker_imports_nothing() -> None:
    assert LocalExecutor(1).warm([PROBE]) == []
    assert PROBE not in sys.modules


def _imported(module: str) -> bool:
    return module in sys.modules


@pytest.mark.parametrize(("preload", "datasets"), [(WORKER_PRELOAD, False), (BUILD_PRELOAD, True)])
def test_pool_workers_start_with_the_modules_their_pool_preloads(
    preload: tuple[str, ...], datasets: bool
) -> None:
    executor = LocalExecutor(2, preload=preload)
    try:
        found = list(executor.map(_imported, ["pyarrow.dataset"] * 2, desc="datasets", progress=False))
        assert found == [datasets] * 2
        assert list(executor.map(_imported, ["pandas"] * 2, desc="pandas", progress=False)) == [False] * 2
    finally:
        executor.close()


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


def test_packed_paths_of_the_build_are_read_under_the_receiving_copy(tmp_path: Path) -> None:
    data = pack(
        {"shard": tmp_path / "driver" / "tables" / "a.parquet", "input": Path("/in/x.xml")},
        tmp_path / "driver",
    )
    assert unpack(data)["shard"] == tmp_path / "driver" / "tables" / "a.parquet"
    assert unpack(data, tmp_path / "worker") == {
        "shard": tmp_path / "worker" / "tables" / "a.parquet",
        "input": Path("/in/x.xml"),
    }


def _shout(path: Path) -> Path:
    """A task: writes its input upper-cased to ``out/``, deletes ``gone/old.txt``; returns the file."""
    build = path.parents[2]
    target = build / "out" / "b.txt"
    target.parent.mkdir(parents=True)
    target.write_text(path.read_text().upper())
    (build / "gone" / "old.txt").unlink()
    return target


def test_url_build_tasks_run_on_their_own_copy_and_send_back_what_they_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = (tmp_path / "bucket" / "b").as_uri()
    driver = BuildLocation(tmp_path / "driver", url)
    for name, text in {"tables/x/a.txt": "hello", "other/skip.txt": "-", "gone/old.txt": "-"}.items():
        (driver.local / name).parent.mkdir(parents=True, exist_ok=True)
        (driver.local / name).write_text(text)
    monkeypatch.setenv("PMCURATE_CACHE", str(tmp_path / "worker"))
    executor = UrlBuildExecutor(LocalExecutor(1), driver)
    reads = [driver.local / "tables" / "x", driver.local / "gone"]

    results = list(
        executor.map(_shout, [driver.local / "tables/x/a.txt"], desc="t", progress=False, reads=reads)
    )

    assert results == [driver.local / "out" / "b.txt"]
    assert (driver.local / "out" / "b.txt").read_text() == "HELLO"
    assert not (driver.local / "gone" / "old.txt").exists()
    worker = own_copy(url)
    assert worker.is_relative_to(tmp_path / "worker")
    assert (worker / "out" / "b.txt").is_file() and not (worker / "other").exists()
    listing = json.loads((tmp_path / "bucket" / "b" / LISTING).read_text())
    assert sorted(listing) == ["other/skip.txt", "out/b.txt", "tables/x/a.txt"]
    assert not (tmp_path / "bucket" / "b" / "gone" / "old.txt").exists()

    (driver.local / "out" / "b.txt").unlink()  # gone from the build: gone from the worker's copy
    assert list(executor.map(_exists, [driver.local / "out" / "b.txt"], desc="t", progress=False)) == [False]


def _exists(path: Path) -> bool:
    return path.exists()
