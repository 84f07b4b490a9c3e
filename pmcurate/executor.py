"""Where shard functions run: a local process pool, or Ray tasks on a cluster.

A build's heavy work is a list of independent *shard tasks* (parse one batch of input files,
label one paragraphs shard), each a plain module-level function called with picklable
arguments that reads and writes the build folder itself and returns a small result. Both
executors run exactly those functions; nothing else differs between them:

- ``LocalExecutor(workers)``: in this process when ``workers == 1`` (no pickling, easy to
  debug), else a ``spawn`` process pool created on first use and kept for the whole build.
- ``RayExecutor(workers)``: ``ray.remote`` tasks. ``RAY_ADDRESS`` (the usual Ray variable)
  names the cluster to join; without it a local Ray instance is started with ``workers`` CPUs.
  ``ray`` is an optional extra (``pip install 'pmcurate[ray]'``), imported only here and only
  when this executor is chosen. On a cluster, a build behind a URL (below) needs no shared
  disk for the steps whose tasks read and write through the URL (``fetch``/``upload``: export);
  the other steps' tasks still need the build folder at the same path on every worker (NFS, or
  an object store mounted with s3fs/gcsfuse).

``map`` yields results as tasks finish (not in submission order), with one progress bar per call.

The build folder may also be a URL (``s3://bucket/builds/x``, ``gs://…``, ``file:///…``, or any
fsspec protocol): the build then runs in a local working copy (``locate_build``), which is filled
from the URL before the build (``pull``) and synchronised back after it (``push``), through
``pyarrow.fs`` (fsspec for schemes pyarrow lacks). A listing of every file with its size and mtime
(``.pmcurate/files.json``, written last) lets ``push`` send only changed files and delete the ones
gone, and lets ``pull`` restore mtimes, on which the build's fingerprints rely: a build resumed
on another machine from the same URL redoes nothing that was finished.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

from pmcurate.errors import Fatal

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")
WORKER_ENV = {"POLARS_MAX_THREADS": "1"}
"""Set in every worker process before it imports anything (the one place): a pool runs one
process per core, so each uses one thread (Polars' pool would otherwise start one per core)."""


class ExecutorError(Fatal):
    """The executor cannot start (``ray`` missing, cluster unreachable); the message says how to fix it."""


class Executor(Protocol):
    name: str
    workers: int

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, progress: bool = True
    ) -> Iterator[R]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Shard tasks in this process (one worker) or on a ``spawn`` process pool (several)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, progress: bool = True
    ) -> Iterator[R]:
        with tqdm(total=len(items), desc=desc, unit=" shards", disable=not progress or not items) as bar:
            if self.workers == 1 or len(items) <= 1:
                for item in items:
                    yield fn(item)
                    bar.update(1)
                return
            pool = self._ensure_pool()
            pending: set[Future[R]] = {pool.submit(fn, item) for item in items}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
                        bar.update(1)
            finally:
                for future in pending:
                    future.cancel()

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: forking a process that has Polars' thread pool running can deadlock
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _init_worker() -> None:
    """First thing in each pool worker: ``WORKER_ENV``."""
    os.environ.update(WORKER_ENV)


class RayExecutor:
    """Shard tasks as Ray tasks: the cluster at ``RAY_ADDRESS``, else a local Ray instance."""

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        *,
        address: str | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        """``runtime_env``: Ray's (``{"env_vars": {...}}``: what the workers' environment adds)."""
        try:
            import ray
        except ImportError:
            raise ExecutorError(
                "--executor ray needs Ray: pip install 'pmcurate[ray]' (or 'ray[default]')"
            ) from None
        self._ray = ray
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._started = False
        if not ray.is_initialized():
            env = {**WORKER_ENV, **(runtime_env or {}).get("env_vars", {})}
            options: dict[str, Any] = {
                "ignore_reinit_error": True,
                "log_to_driver": False,
                "runtime_env": {**(runtime_env or {}), "env_vars": env},
            }
            if self.address is None:
                options["num_cpus"] = max(1, workers or os.cpu_count() or 1)
                options["include_dashboard"] = False
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError) as exc:
                where = self.address or "a local instance"
                raise ExecutorError(f"cannot start Ray ({where}): {exc}") from None
            self._started = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self._remote: dict[Callable[..., Any], Any] = {}

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, progress: bool = True
    ) -> Iterator[R]:
        ray = self._ray
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = ray.remote(max_retries=2)(fn)
        pending = [remote.remote(item) for item in items]
        with tqdm(total=len(items), desc=desc, unit=" shards", disable=not progress or not items) as bar:
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        yield ray.get(ref)
                        bar.update(1)
            finally:
                for ref in pending:
                    ray.cancel(ref)

    def close(self) -> None:
        """Shut down the Ray instance this executor started (a joined cluster is left running)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


def make_executor(kind: str, workers: int | None = None) -> LocalExecutor | RayExecutor:
    """The executor named ``kind`` (``local`` or ``ray``)."""
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers)
    raise ExecutorError(f"unknown executor {kind!r}: one of {', '.join(EXECUTORS)}")


# ---------------------------------------------------------------- build folders behind a URL

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
LISTING = ".pmcurate/files.json"


@dataclass(frozen=True)
class BuildLocation:
    """Where a build runs (``local``) and, for a URL build, where it lives (``remote``)."""

    local: Path
    remote: str | None = None


def is_url(text: str) -> bool:
    return bool(URL.match(text))


def locate_build(out: str | os.PathLike[str], cache: Path | None = None) -> BuildLocation:
    """A local path as is; a URL with a working copy under ``cache`` (default ``$PMCURATE_CACHE``,
    else ``~/.cache/pmcurate``), one folder per URL."""
    text = os.fspath(out)
    if not is_url(text):
        return BuildLocation(Path(text))
    root = cache or Path(os.environ.get("PMCURATE_CACHE") or "~/.cache/pmcurate").expanduser()
    key = hashlib.sha256(text.rstrip("/").encode()).hexdigest()[:16]
    return BuildLocation(root / "builds" / key, text.rstrip("/"))


def _filesystem(url: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(url)
    except (pafs.ArrowInvalid, ValueError) as exc:  # a scheme pyarrow lacks: try fsspec
        try:
            import fsspec
        except ImportError:
            raise ExecutorError(f"{url}: {exc}") from None
        fs, path = fsspec.core.url_to_fs(url)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    except OSError as exc:
        raise ExecutorError(f"{url}: cannot open the file system ({exc})") from None


def _local_listing(folder: Path) -> dict[str, list[int]]:
    """Relative path → [size, mtime_ns] of every file of the working copy (temporaries excluded)."""
    listing = {}
    for path in folder.rglob("*"):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name != LISTING and ".tmp" not in path.name:
            listing[name] = _stat_entry(path)
    return listing


def _read_listing(fs: Any, root: str) -> dict[str, list[int]]:
    import pyarrow.fs as pafs

    if fs.get_file_info(f"{root}/{LISTING}").type != pafs.FileType.File:
        return {}
    with fs.open_input_stream(f"{root}/{LISTING}") as source:
        return json.loads(source.read())


def pull(location: BuildLocation, prefixes: Sequence[str] | None = None) -> int:
    """Copy the files of a URL build that the working copy lacks or holds in another version,
    restoring their mtimes; returns how many were copied (0 for a local build). ``prefixes``:
    only the files under these folders (``tables/articles``). Each file is written under a
    temporary name and renamed, so processes pulling into one working copy never see half a file."""
    if location.remote is None:
        return 0
    fs, root = _filesystem(location.remote)
    remote = _read_listing(fs, root)
    wanted = tuple(prefix.rstrip("/") + "/" for prefix in prefixes) if prefixes is not None else None
    copied = 0
    for name, (size, mtime) in sorted(remote.items()):
        if wanted is not None and not name.startswith(wanted):
            continue
        target = location.local / name
        if target.is_file() and _stat_entry(target) == [size, mtime]:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{_PARTIAL}{os.getpid()}-{target.name}")
        with fs.open_input_stream(f"{root}/{name}") as source, open(partial, "wb") as sink:
            while block := source.read(1 << 22):
                sink.write(block)
        os.utime(partial, ns=(mtime, mtime))
        os.replace(partial, target)
        copied += 1
    return copied


def _stat_entry(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


_PARTIAL = ".tmp-pull-"


def push(location: BuildLocation) -> tuple[int, int]:
    """Send changed files of the working copy to the URL, delete the ones gone, write the listing
    last; returns (files sent, files deleted)."""
    if location.remote is None:
        return 0, 0
    fs, root = _filesystem(location.remote)
    remote = _read_listing(fs, root)
    local = _local_listing(location.local)
    sent = 0
    for name, entry in sorted(local.items()):
        if remote.get(name) == entry:
            continue
        fs.create_dir(f"{root}/{name}".rsplit("/", 1)[0], recursive=True)
        with open(location.local / name, "rb") as source, fs.open_output_stream(f"{root}/{name}") as sink:
            while block := source.read(1 << 22):
                sink.write(block)
        sent += 1
    gone = sorted(set(remote) - set(local))
    for name in gone:
        fs.delete_file(f"{root}/{name}")
    fs.create_dir(f"{root}/.pmcurate", recursive=True)
    with fs.open_output_stream(f"{root}/{LISTING}") as sink:
        sink.write(json.dumps(local, sort_keys=True).encode())
    return sent, len(gone)


# ---------------------------------------------------------------- workers without a shared disk


def fetch(url: str, prefixes: Sequence[str]) -> Path:
    """On a worker: this machine's working copy of the build at ``url`` (``locate_build``, under
    ``$PMCURATE_CACHE``), with the files under ``prefixes`` pulled from the URL when missing or
    changed (the build's listing, written by ``push``, says what is there). Tasks on Ray read a URL
    build this way: nothing is read from the driver's disk."""
    location = locate_build(url)
    pull(location, prefixes)
    return location.local


def upload(folder: Path, url: str) -> int:
    """Send every file under ``folder`` to ``url`` (same relative names); returns how many."""
    fs, root = _filesystem(url)
    sent = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        fs.create_dir(f"{root}/{name}".rsplit("/", 1)[0], recursive=True)
        with open(path, "rb") as source, fs.open_output_stream(f"{root}/{name}") as sink:
            while block := source.read(1 << 22):
                sink.write(block)
        sent += 1
    return sent


def download(url: str, folder: Path) -> int:
    """Copy every file under ``url`` into ``folder`` (same relative names); returns how many."""
    import pyarrow.fs as pafs

    fs, root = _filesystem(url)
    got = 0
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        target = folder / info.path[len(root) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(info.path) as source, open(target, "wb") as sink:
            while block := source.read(1 << 22):
                sink.write(block)
        got += 1
    return got


def remove(url: str) -> None:
    """Delete the folder ``url`` and everything under it (nothing there: nothing to do)."""
    import pyarrow.fs as pafs

    fs, root = _filesystem(url)
    if fs.get_file_info(root).type != pafs.FileType.NotFound:
        fs.delete_dir(root)
