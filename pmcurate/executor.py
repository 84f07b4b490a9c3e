"""Where shard functions run: a local process pool, or Ray tasks on a cluster.

A build's heavy work is a list of independent *shard tasks* (parse one batch of input files,
label one paragraphs shard, one phase of a subset over one range), each a plain module-level
function called with picklable arguments that reads and writes the build folder itself and
returns a small result. Both executors run exactly those functions; nothing else differs between
them:

- ``LocalExecutor(workers)``: in this process when ``workers == 1`` (no pickling, easy to
  debug), else a process pool created on first use and kept for the whole build. Its workers are
  forked from a ``forkserver`` that imported ``WORKER_PRELOAD`` once: each worker starts with
  them imported, where a ``spawn`` worker would import them again (~0.4 CPU-s each).
- ``RayExecutor(workers)``: ``ray.remote`` tasks. ``RAY_ADDRESS`` (the usual Ray variable)
  names the cluster to join; without it a local Ray instance is started with ``workers`` CPUs.
  ``ray`` is an optional extra (``pip install 'pmcurate[ray]'``), imported only here and only
  when this executor is chosen.

``map`` yields results as tasks finish (not in submission order), with one progress bar per call.

The build folder may also be a URL (``s3://bucket/builds/x``, ``gs://…``, ``file:///…``, or any
fsspec protocol): the build then runs in a local working copy (``locate_build``), which is filled
from the URL before the build (``pull``) and synchronised back after it (``push``), through
``pyarrow.fs`` (fsspec for schemes pyarrow lacks). A listing of every file with its size and mtime
(``.pmcurate/files.json``, written last) lets ``push`` send only changed files and delete the ones
gone, and lets ``pull`` restore mtimes, on which the build's fingerprints rely: a build resumed
on another machine from the same URL redoes nothing that was finished.

On Ray, the tasks of a URL build share no disk with the driver (``UrlBuildExecutor``, around the
Ray executor): before each map the driver pushes its changes; each task runs against its worker
process's own working copy (``own_copy``), pulls what the map says its tasks read, reads every
path of the build it was given as a path of that copy (``pack``), and sends what it wrote back
through the URL; the driver copies those files into its working copy as tasks finish. Inputs
outside the build (a local source's JATS files) are read at the driver's paths. The export's
tasks use their own route through the URL (``fetch``/``upload``). The local executor is not
wrapped: its workers share the driver's disk.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import io
import itertools
import json
import logging
import multiprocessing
import os
import pickle
import re
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pmcurate.cache import cache_root
from pmcurate.errors import Fatal

if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
WORKER_ENV = {"POLARS_MAX_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
"""Set in every worker process before it imports anything (the one place; a local pool's forkserver
sets it before its preload: ``pmcurate._forkserver_env``): a pool runs one process per core, so each
uses one thread. Polars' pool would otherwise start one per core, and so would NumPy's OpenBLAS,
whose threads spin ~0.1 CPU-s after each start before they sleep."""
WORKER_PRELOAD = ("pyarrow.parquet", "pmcurate.schema", "pmcurate.step", "pmcurate.harvest.steps")
"""Imported once by the pool's ``forkserver``, before it forks the workers: what every step's tasks
import, and the harvest step. Never Polars: a process that forks must not have its thread pool running."""
BUILD_PRELOAD = (*WORKER_PRELOAD, "pmcurate._forkserver_pyarrow")
"""``WORKER_PRELOAD``, then pyarrow set up to read and convert without pandas
(``schema.pyarrow_datasets_without_pandas``), once for every worker: the steps after the harvest
read tables back (``pq.read_table`` imports ``pyarrow.dataset``, whose import imports pandas,
~0.14 CPU-s). The harvest's tasks need only conversions (``schema.pyarrow_without_pandas``): a
build that stops after it does without (``build_preload``)."""


def build_preload(until: str) -> tuple[str, ...]:
    """What the pool of a build that stops after the stage ``until`` preloads."""
    return WORKER_PRELOAD if until == "harvest" else BUILD_PRELOAD


class ExecutorError(Fatal):
    """The executor cannot start (``ray`` missing, cluster unreachable); the message says how to fix it."""


class Executor(Protocol):
    name: str
    workers: int

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        desc: str,
        progress: bool = True,
        reads: Sequence[Path] | None = None,
    ) -> Iterator[R]:
        """``fn`` of every item, as tasks finish. ``reads``: the files and folders of the build the
        tasks read (None: any), which a URL build's workers pull first (``UrlBuildExecutor``)."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Shard tasks in this process (one worker) or on a process pool (several)."""

    name = "local"

    def __init__(self, workers: int | None = None, *, preload: Sequence[str] = BUILD_PRELOAD) -> None:
        """``preload``: the modules the pool's forkserver imports (``WORKER_PRELOAD``, ``BUILD_PRELOAD``)."""
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.preload = tuple(preload)
        self._pool: ProcessPoolExecutor | None = None

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        desc: str,
        progress: bool = True,
        reads: Sequence[Path] | None = None,
    ) -> Iterator[R]:
        with _bar(len(items), desc, progress) as bar:
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

    def start(self) -> None:
        """Start the pool's forkserver now and return at once: it imports its ``preload`` in its own
        process while this one goes on with its own imports and planning (~0.2–0.4 s of a build's
        wall time on 2 cores), and the first ``map`` then forks the workers from it at once."""
        if self.workers > 1:
            from multiprocessing import forkserver

            self._ensure_pool()
            forkserver.ensure_running()

    def warm(self, modules: Sequence[str]) -> list[Future[int]]:
        """Have the pool's workers import ``modules`` now, without waiting: one task per worker, which
        an idle worker runs while this process does work of its own (a worker still busy imports them
        at its first task that needs them, as it would have). Polars is imported this way, never by
        the forkserver (``WORKER_PRELOAD``). The futures (of the workers' pids) are returned; a failed
        import is logged, and fails again in the first task that needs the module."""
        if self.workers == 1:
            return []
        pool = self._ensure_pool()
        futures = [pool.submit(_import, tuple(modules)) for _ in range(self.workers)]
        for future in futures:
            future.add_done_callback(_log_failed_import)
        return futures

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # a forkserver, not fork: forking a process that has Polars' thread pool running can deadlock
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["pmcurate._forkserver_env", *self.preload])
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init_worker, initargs=(dict(os.environ),)
            )
            _pools.add(id(self))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
            _pools.discard(id(self))
            if not _pools:
                _stop_forkserver()


def _bar(total: int, desc: str, progress: bool) -> tqdm[Any]:
    """The progress bar of a map over ``total`` items (tqdm, imported here: the pool's forkserver
    imports this module, and its workers draw no bar)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=" shards", disable=not progress or not total)


_pools: set[int] = set()
"""The local executors whose pool is open: the forkserver stops when the last one closes."""


def _stop_forkserver() -> None:
    """Kill the forkserver and wait for it, as a finished pool waits for its workers: it holds the
    preloaded modules' memory, and its CPU time (its workers' too) is then this process's children's,
    where ``resource.getrusage`` and ``time`` count it.

    Killed, not asked to exit: its workers are gone (the pool waited for them) and it holds no file or
    output of its own, while a Python exiting normally would tear down the modules it preloaded
    (pyarrow, pandas: 0.1–0.2 s at the end of every build), or, when no task ever used it, first finish
    importing them."""
    from multiprocessing import forkserver

    server = forkserver._forkserver
    stop = getattr(server, "_stop", None)  # private, in every Python since 3.8
    if stop is None:
        return
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    stop()


def _import(modules: tuple[str, ...]) -> int:
    for module in modules:
        importlib.import_module(module)
    return os.getpid()


def _log_failed_import(future: Future[int]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a worker could not import ahead of its tasks: %s", future.exception())


def _init_worker(environ: dict[str, str]) -> None:
    """First thing in each pool worker: the environment of the process that made the pool (the
    forkserver's is that of the process when it started, maybe an earlier pool's), and ``WORKER_ENV``."""
    os.environ.clear()
    os.environ.update(environ)
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
        self._apply: Any = None

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        desc: str,
        progress: bool = True,
        reads: Sequence[Path] | None = None,
    ) -> Iterator[R]:
        ray = self._ray
        if self._apply is None:
            self._apply = ray.remote(max_retries=2)(_apply)
        shipped = ray.put(fn)  # a callable object too (a URL build's task), sent once per map
        pending = [self._apply.remote(shipped, item) for item in items]
        with _bar(len(items), desc, progress) as bar:
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


def _apply(fn: Callable[[T], R], item: T) -> R:
    """A Ray task: ``fn(item)``."""
    return fn(item)


def make_executor(
    kind: str, workers: int | None = None, *, preload: Sequence[str] = BUILD_PRELOAD
) -> LocalExecutor | RayExecutor:
    """The executor named ``kind`` (``local`` or ``ray``), its workers already starting
    (``LocalExecutor.start``; Ray's start with it); ``preload``: a local pool's (``LocalExecutor``)."""
    if kind == "local":
        local = LocalExecutor(workers, preload=preload)
        local.start()
        return local
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
    root = cache or cache_root()
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


def pull(
    location: BuildLocation, prefixes: Sequence[str] | None = None, *, keep: AbstractSet[str] | None = None
) -> int:
    """Copy the files of a URL build that the working copy lacks or holds in another version,
    restoring their mtimes; returns how many were copied (0 for a local build). ``prefixes``:
    only the files under these folders (``tables/articles``). ``keep``: when given, also delete
    every file of the working copy that the build lacks, but these (a worker's copy, whose tasks
    list folders: the files its last tasks wrote, not listed yet). Each file is written under a
    temporary name and renamed, so processes pulling into one working copy never see half a file."""
    if location.remote is None:
        return 0
    fs, root = _filesystem(location.remote)
    remote = _read_listing(fs, root)
    copied = 0
    for name, entry in sorted(remote.items()):
        if not _under(name, prefixes):
            continue
        target = location.local / name
        if target.is_file() and _stat_entry(target) == entry:
            continue
        _receive_file(fs, f"{root}/{name}", target, entry[1])
        copied += 1
    if keep is not None and location.local.is_dir():
        for name in _local_listing(location.local):
            if name not in remote and name not in keep:
                (location.local / name).unlink()
    return copied


def _under(name: str, prefixes: Sequence[str] | None) -> bool:
    """Whether the file ``name`` is one of ``prefixes`` or under one of them (None: the whole build)."""
    if prefixes is None:
        return True
    return any(name == prefix or name.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


def _receive_file(fs: Any, source_path: str, target: Path, mtime: int) -> None:
    """Copy one file of the URL's file system to ``target`` (atomically), with mtime ``mtime``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{_PARTIAL}{os.getpid()}-{target.name}")
    with fs.open_input_stream(source_path) as source, open(partial, "wb") as sink:
        while block := source.read(1 << 22):
            sink.write(block)
    os.utime(partial, ns=(mtime, mtime))
    os.replace(partial, target)


def _send_file(fs: Any, source: Path, target_path: str) -> None:
    fs.create_dir(target_path.rsplit("/", 1)[0], recursive=True)
    with open(source, "rb") as reader, fs.open_output_stream(target_path) as sink:
        while block := reader.read(1 << 22):
            sink.write(block)


def _write_listing(fs: Any, root: str, listing: dict[str, list[int]]) -> None:
    fs.create_dir(f"{root}/.pmcurate", recursive=True)
    with fs.open_output_stream(f"{root}/{LISTING}") as sink:
        sink.write(json.dumps(listing, sort_keys=True).encode())


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
        _send_file(fs, location.local / name, f"{root}/{name}")
        sent += 1
    gone = sorted(set(remote) - set(local))
    for name in gone:
        fs.delete_file(f"{root}/{name}")
    _write_listing(fs, root, local)
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
        _send_file(fs, path, f"{root}/{path.relative_to(folder).as_posix()}")
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


# ---------------------------------------------------------------- every step's tasks on a URL build

_here: Path | None = None
"""In a worker of a URL build, while a task runs: the working copy it runs against. The paths of
the build a task was given (the driver's) are read as paths of this folder."""


class _BuildPickler(pickle.Pickler):
    """Pickles a path under ``root`` as its name in the build, read back under ``_here``."""

    def __init__(self, file: io.BytesIO, root: Path) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.root = root

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Path) and obj.is_relative_to(self.root):
            return _in_build, (str(self.root), obj.relative_to(self.root).as_posix())
        return NotImplemented


def _in_build(root: str, name: str) -> Path:
    return (_here or Path(root)) / name


def pack(obj: Any, root: Path) -> bytes:
    """``obj`` pickled with its paths under the build ``root`` recorded as names in the build:
    unpickled in a URL build's task, they are paths of the worker's own working copy; anywhere
    else, the paths they were."""
    buffer = io.BytesIO()
    _BuildPickler(buffer, root).dump(obj)
    return buffer.getvalue()


def unpack(data: bytes, root: Path | None = None) -> Any:
    """``pack``'s object, its paths of the build under ``root`` (default: as the process reads them)."""
    global _here
    if root is None:
        return pickle.loads(data)
    before, _here = _here, root
    try:
        return pickle.loads(data)
    finally:
        _here = before


@dataclass(frozen=True)
class _Reply:
    """What a task on a URL build returns: its packed result and the files it changed there."""

    result: bytes
    written: dict[str, list[int]]
    """Name in the build → [size, mtime_ns] of each file the task wrote (sent to the URL)."""
    deleted: list[str]
    """Names of the files of the copy the task deleted."""


@dataclass(frozen=True)
class _OnOwnCopy:
    """A task function run against this worker's own working copy of the build at ``url``: pull
    what it reads, run it, send what it wrote."""

    fn: Callable[[Any], Any]
    url: str
    reads: tuple[str, ...] | None
    token: str
    """Names the map: what this process wrote in it is not listed before the map's end."""

    def __call__(self, parcel: bytes) -> _Reply:
        global _here, _sent
        location = BuildLocation(own_copy(self.url), self.url)
        if _sent[0] != self.token:
            _sent = (self.token, set())
        pull(location, self.reads, keep=_sent[1])
        before = _local_listing(location.local)
        _here = location.local
        try:
            result = pack(self.fn(pickle.loads(parcel)), location.local)
        finally:
            _here = None
        after = _local_listing(location.local)
        written = {name: entry for name, entry in after.items() if before.get(name) != entry}
        fs, root = _filesystem(self.url)
        for name in sorted(written):
            _send_file(fs, location.local / name, f"{root}/{name}")
        _sent[1].update(written)
        return _Reply(result, written, sorted(set(before) - set(after)))


_sent: tuple[str, set[str]] = ("", set())
"""The map this process last ran a task of, and the files its tasks wrote in it."""


_copies: dict[str, tuple[Path, int]] = {}
"""URL → this process's working copy of it and the descriptor holding its lock."""


def own_copy(url: str) -> Path:
    """This worker process's working copy of the build at ``url``: a folder
    ``$PMCURATE_CACHE/workers/<key>/<n>`` that one process at a time holds (a lock for the
    process's life), so what a task wrote is told apart from the writes of its neighbours."""
    if url in _copies:
        return _copies[url][0]
    shared = locate_build(url).local
    base = shared.parent.parent / "workers" / shared.name
    base.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        handle = os.open(base / f"{n}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            continue
        _copies[url] = (base / str(n), handle)
        break
    return _copies[url][0]


@dataclass
class UrlBuildExecutor:
    """The executor of a URL build whose workers share no disk with the driver (Ray on a cluster).

    Each ``map`` first sends what the driver changed in its working copy to the URL (``push``).
    Each task then runs on ``inner``'s workers against the worker process's own working copy
    (``own_copy``). It pulls the files the build holds under the map's ``reads`` (all of them when
    None; files unchanged since its last task stay) and deletes those the build no longer holds
    (tasks list folders; stale work folders do not pile up); it runs with every path of the build
    it was given read as a path of that copy (``pack``); it sends the files it wrote to the URL.
    The driver copies them into its working copy as tasks finish, so ``finish`` and the next map
    see what a local run would, and adds them to the build's listing."""

    inner: Executor
    location: BuildLocation
    name: str = field(init=False)
    workers: int = field(init=False)

    def __post_init__(self) -> None:
        assert self.location.remote is not None, "a build behind a URL"
        self.name, self.workers = self.inner.name, self.inner.workers

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        desc: str,
        progress: bool = True,
        reads: Sequence[Path] | None = None,
    ) -> Iterator[R]:
        url, root = self.location.remote, self.location.local
        assert url is not None
        push(self.location)
        names = None if reads is None else tuple(_names_in(root, reads))
        if names is not None and "." in names:  # the build folder itself
            names = None
        task = _OnOwnCopy(fn, url, names, uuid.uuid4().hex)
        parcels = [pack(item, root) for item in items]
        fs, remote_root = _filesystem(url)
        written: dict[str, list[int]] = {}
        deleted: set[str] = set()
        try:
            for reply in self.inner.map(task, parcels, desc=desc, progress=progress):
                for name, entry in reply.written.items():
                    _receive_file(fs, f"{remote_root}/{name}", root / name, entry[1])
                for name in reply.deleted:
                    (root / name).unlink(missing_ok=True)
                written.update(reply.written)
                deleted.update(reply.deleted)
                yield unpack(reply.result, root)
        finally:
            self._record(written, deleted)

    def _record(self, written: dict[str, list[int]], deleted: set[str]) -> None:
        """Add what the tasks wrote to the build's listing (so that ``push`` does not send it
        again) and take out what they deleted."""
        if not written and not deleted:
            return
        assert self.location.remote is not None
        fs, root = _filesystem(self.location.remote)
        listing = _read_listing(fs, root)
        listing.update(written)
        for name in deleted - set(written):
            if listing.pop(name, None) is not None:
                fs.delete_file(f"{root}/{name}")
        _write_listing(fs, root, listing)

    def close(self) -> None:
        self.inner.close()


def _names_in(root: Path, paths: Sequence[Path]) -> Iterator[str]:
    """The names in the build of those ``paths`` under ``root`` (others are not the build's)."""
    for path in paths:
        if path.is_relative_to(root):
            yield path.relative_to(root).as_posix()
