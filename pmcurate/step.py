"""The stage model: a ``Step`` with its config, and ``run_step``, the one runner of every step.

A step (NeMo Curator's ``ProcessingStage``, datatrove's ``PipelineStep``) names the tables it
reads and writes, carries one frozen config dataclass (``StepConfig``), and splits its work into
*tasks* (picklable, each with a ``key`` and a ``size``):

- ``fingerprint(build)``: a hash of its settings and of the content of what it reads; a step
  whose fingerprint equals the one of its last successful run (and whose ``outputs`` exist) is
  skipped. ``None``: the step decides per task (a shard step: ``plan`` returns only the tasks
  whose output is missing or stale).
- ``plan(build)``: the tasks to run; it writes nothing (``pmcurate build --plan`` calls it).
- ``prepare(build)``: in the driver, before the tasks run (remove what is stale).
- ``setup()`` / ``run(task)`` / ``teardown()``: in each worker; setup once per worker process
  (load a model, open a client), ``run`` once per task, returning its counts.
- ``finish(build, counts)``: in the driver, after every task: merge, settle, prune; the report.

``run_step`` runs them in that order on an executor (``executor.py``: a local process pool or
Ray), tasks largest first, records the fingerprint, counts and drops in the build state, and in a
plan (``Build.plan``) says instead whether the step would run and why. ``task_reads(build)``
names what the tasks read of the build: on Ray with a build behind a URL, workers that share no
disk with the driver pull it before a task and send back what the task wrote
(``executor.UrlBuildExecutor``); the step itself is shipped with its paths of the build relative
to it (``executor.pack``), so a worker reads them in its own copy.

A config's fields are declared with ``option``: its default, help text, choices and CLI flag. The
manifest reader (``StepConfig.from_table``) and the CLI options (``add_arguments`` /
``from_args``) are derived from them, so a default is written once and every option a command
has is a manifest key too.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import os
import pickle
import re
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar

from pmcurate.errors import Fatal, PmcurateError, Retry, one_line
from pmcurate.executor import pack

log = logging.getLogger(__name__)

STATE_FILE = Path(".pmcurate") / "state.json"

# ---------------------------------------------------------------- configs


class StepFailed(Fatal):
    """A step stopped by an error the user must fix (its policy was fatal, or one item of a step
    that has no quarantine was bad): the message names the step."""


class StepInterrupted(Retry):
    """A step stopped by its services (a transport failure): finished work is kept, a rerun resumes."""


class ConfigError(Fatal):
    """A config value that cannot be used: the message names the key and what was expected."""


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> Size:
    """``500MB``, ``1.5GB``, ``64KiB``, ``1000`` → bytes (decimal units; ``KiB``/``MiB``/``GiB`` binary);
    ``ValueError`` for anything else."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match[2].lower() not in _UNITS or float(match[1]) <= 0:
        raise ValueError(f"invalid size {text!r} (e.g. 500MB, 1GB, 64MiB)")
    return Size(float(match[1]) * _UNITS[match[2].lower()])


class Size(int):
    """A number of bytes: an option of this type takes an integer or a size with a unit (``500MB``,
    ``64MiB``) in a manifest and on the command line, and shows in binary units."""

    def __str__(self) -> str:
        for unit in ("GiB", "MiB", "KiB"):
            if self and self % _UNITS[unit.lower()] == 0:
                return f"{self // _UNITS[unit.lower()]}{unit}"
        return str(int(self))


_NO_DEFAULT: Any = dataclasses.MISSING
_LOWEST: Any = object()
"""``option(minimum=...)`` not given: integers ≥ 1, numbers ≥ 0."""


def option(
    default: Any = _NO_DEFAULT,
    help: str = "",
    *,
    cli: str | None = None,
    choices: Sequence[Any] | None = None,
    minimum: float | None = _LOWEST,
    metavar: str | None = None,
    manifest: bool = True,
    group: str | None = None,
    default_factory: Any = _NO_DEFAULT,
) -> Any:
    """A field of a step config with what the manifest reader and the CLI need to know of it.

    ``cli``: the flag (``--batch-size``; default: the field name with dashes); ``""``: no flag
    (set by the command itself, e.g. a positional argument). ``choices``: the allowed values.
    ``minimum``: the smallest allowed number (default: integers ≥ 1, numbers ≥ 0; ``None``: any).
    ``manifest=False``: not a manifest key (set by the caller: the build folder, the executor).
    ``group``: fields of one group are mutually exclusive CLI options.
    """
    metadata = {
        "help": help,
        "cli": cli,
        "choices": tuple(choices) if choices is not None else None,
        "minimum": minimum,
        "metavar": metavar,
        "manifest": manifest,
        "group": group,
    }
    if default_factory is not _NO_DEFAULT:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """One config field as the manifest and the CLI see it."""

    name: str
    type: Any
    """The annotation with ``| None`` removed (``tuple`` for ``tuple[str, ...]``)."""
    item: Any
    """A tuple's item type (``str`` or ``Path``); None for any other type."""
    optional: bool
    default: Any
    help: str
    flag: str | None
    choices: tuple[Any, ...] | None
    minimum: float | None
    metavar: str | None
    manifest: bool
    group: str | None

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


@dataclass(frozen=True)
class StepConfig:
    """Base of every step's config: a frozen dataclass whose fields are ``option``\\ s."""

    @classmethod
    def options(cls) -> list[Option]:
        """The fields of the config, in declaration order."""
        hints = typing.get_type_hints(cls)
        found = []
        for f in dataclasses.fields(cls):
            kind, optional, item = _unwrap(hints[f.name])
            meta = f.metadata
            default = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            flag = meta.get("cli")
            minimum = meta.get("minimum", _LOWEST)
            if minimum is _LOWEST:
                minimum = 1 if kind is int else 0 if kind is float else None
            found.append(
                Option(
                    name=f.name,
                    type=kind,
                    item=item,
                    optional=optional,
                    default=default,
                    help=meta.get("help", ""),
                    flag=("--" + f.name.replace("_", "-")) if flag is None else (flag or None),
                    choices=meta.get("choices"),
                    minimum=minimum,
                    metavar=meta.get("metavar"),
                    manifest=meta.get("manifest", True),
                    group=meta.get("group"),
                )
            )
        return found

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Any],
        *,
        where: str = "",
        resolve: Callable[[str, str], Path] | None = None,
        **fixed: Any,
    ) -> Self:
        """The config from a manifest table: every key checked against the fields (type, choices,
        minimum), unknown keys refused. ``resolve(value, key)``: the path a path value names
        (relative to the manifest; may raise when it does not exist). ``fixed``: values the caller
        sets (not manifest keys)."""
        values = dict(fixed)
        known = [o.name for o in cls.options() if o.manifest and o.name not in fixed]
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ConfigError(
                f"{_where(where, '')}: unknown key(s) {', '.join(map(repr, unknown))} "
                f"(known here: {', '.join(sorted(known)) or 'none'})"
            )
        for opt in cls.options():
            if opt.name not in known:
                continue
            if opt.name in table:
                value = _check(opt, table[opt.name], _where(where, opt.name))
                if resolve is not None and isinstance(value, Path):
                    value = resolve(table[opt.name], opt.name)
                elif resolve is not None and opt.item is Path:
                    value = tuple(resolve(str(item), opt.name) for item in _strings(table[opt.name]))
                values[opt.name] = value
            elif opt.required:
                raise ConfigError(f"{_where(where, opt.name)}: required key is missing")
        try:
            return cls(**values)
        except ConfigError as exc:  # a check across fields (``__post_init__``), worded with the keys
            raise ConfigError(f"{_where(where, '')} {exc}" if where else str(exc)) from None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, skip: Iterable[str] = ()) -> None:
        """One CLI option per field that has a flag (``cli=""`` fields and ``skip`` left out)."""
        groups: dict[str, Any] = {}
        for opt in cls.options():
            if opt.flag is None or opt.name in skip:
                continue
            target: Any = parser
            if opt.group is not None:
                target = groups.get(opt.group) or groups.setdefault(
                    opt.group, parser.add_mutually_exclusive_group()
                )
            default = None if opt.required else opt.default
            shown = not opt.required and default is not None and default is not False
            shown = shown and default != () and default != ""
            text = opt.help + (f" (default {default})" if shown and opt.type is not bool else "")
            if opt.type is bool:  # off by default: a switch; on by default: --x / --no-x
                action = argparse.BooleanOptionalAction if default else "store_true"
                target.add_argument(opt.flag, dest=opt.name, action=action, default=default, help=text)
                continue
            kwargs: dict[str, Any] = {"dest": opt.name, "default": default, "help": text}
            if opt.choices:
                kwargs["choices"] = opt.choices
            if opt.metavar:
                kwargs["metavar"] = opt.metavar
            if opt.type is tuple:  # repeatable, each with one or more values
                kwargs.update(action="extend", nargs="+", default=None)
                if opt.item is Path:
                    kwargs["type"] = Path
            elif opt.type is Size:
                kwargs["type"] = parse_size
            elif opt.type in (int, float, Path):
                kwargs["type"] = opt.type
            elif opt.type is date:
                kwargs["type"] = date.fromisoformat
            if opt.required:
                kwargs["required"] = True
            target.add_argument(opt.flag, **kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **fixed: Any) -> Self:
        """The config from parsed CLI options (as added by ``add_arguments``), checked like a manifest
        table; ``fixed``: values the command sets itself."""
        values: dict[str, Any] = dict(fixed)
        for opt in cls.options():
            if opt.name in fixed or not hasattr(args, opt.name):
                continue
            value = getattr(args, opt.name)
            if (value is None and (opt.optional or not opt.required)) or (
                not opt.required and value == opt.default  # not given: its default (``""`` too)
            ):
                if opt.default is not _NO_DEFAULT:
                    values[opt.name] = opt.default
                continue
            if opt.type is tuple and isinstance(value, list):
                value = tuple(value)
            values[opt.name] = _check(opt, value, opt.flag or opt.name)
        try:
            return cls(**values)
        except ConfigError as exc:  # a check across fields, worded with the keys: name the flags
            flags = {o.name: o.flag for o in cls.options() if o.flag}
            raise ConfigError(re.sub(r"\b[a-z_]+\b", lambda m: flags.get(m[0], m[0]), str(exc))) from None

    def settings(self) -> dict[str, Any]:
        """The config as plain values (paths as strings): what fingerprints and provenance record."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def _unwrap(hint: Any) -> tuple[Any, bool, Any]:
    """(type without ``None``, whether ``None`` is allowed, a tuple's item type);
    ``tuple[Path, ...]`` → ``(tuple, False, Path)``."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else hint
    origin = typing.get_origin(hint)
    item = typing.get_args(hint)[0] if origin is tuple else None
    return (origin if origin is not None else hint), optional, item


def _where(where: str, key: str) -> str:
    if not where:
        return f"key {key!r}" if key else "top level"
    return f"{where} {key}" if key else where


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list {value!r}"[:80]
    return f"{type(value).__name__} {value!r}"[:80]


def _fail(where: str, expected: str, value: Any) -> typing.NoReturn:
    raise ConfigError(f"{where}: expected {expected}, got {_show(value)}")


def _strings(value: Any) -> Any:
    """A manifest's list, or one string as a list of one."""
    return [value] if isinstance(value, str) else value


def _check(opt: Option, value: Any, where: str) -> Any:
    """``value`` converted to the field's type, or ``ConfigError`` saying what was expected."""
    if value is None and opt.optional:
        return None
    kind = opt.type
    if opt.choices is not None:
        if value not in opt.choices:
            _fail(where, f"one of {', '.join(map(repr, opt.choices))}", value)
        return value
    if kind is bool:
        if not isinstance(value, bool):
            _fail(where, "true or false", value)
        return value
    low = opt.minimum
    if kind is Size:
        try:
            size = parse_size(value) if isinstance(value, str) else Size(value)
        except (TypeError, ValueError):
            size = Size(0)
        if isinstance(value, bool) or not isinstance(value, int | str) or size < 1:
            _fail(where, "a size in bytes, or with a unit (500MB, 64MiB)", value)
        return size
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
            _fail(where, "an integer" + (f" ≥ {low:g}" if low is not None else ""), value)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or (low is not None and value < low):
            _fail(where, "a number" + (f" ≥ {low:g}" if low is not None else ""), value)
        return float(value)
    if kind is date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            _fail(where, "a date (2026-01-31)", value)
    if kind is tuple:
        items = _strings(value)
        if not isinstance(items, list | tuple) or not all(
            isinstance(v, str | Path) and str(v) for v in items
        ):
            _fail(where, "a list of non-empty strings", value)
        return tuple(Path(v).expanduser() for v in items) if opt.item is Path else tuple(items)
    if kind is Path and isinstance(value, Path):  # from the CLI (``type=Path``)
        return value
    if not isinstance(value, str) or not value.strip():
        _fail(where, "a non-empty string", value)
    return Path(value).expanduser() if kind is Path else value


# ---------------------------------------------------------------- reports and the build


@dataclass
class StepReport:
    """One step of a build: whether it ran, how long it took, what it counted and dropped."""

    step: str
    status: str
    """``ran``, ``unchanged`` (fingerprint and outputs as last time), ``planned`` (in a plan),
    ``incomplete`` (not recorded as done: the next build runs it again) or ``skipped``."""
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class PlannedStep:
    """What a plan says of one step: ``run``, ``may run`` or ``unchanged``, and why."""

    step: str
    action: str
    reason: str


def fingerprint(*parts: Any) -> str:
    """sha256 of ``parts`` as canonical JSON (paths as strings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ContentHashes:
    """sha256 of files, cached by path, size and mtime in the build state.

    A fingerprint compares contents: a file whose size and mtime are those of the last run is not
    read again, one whose mtime changed is hashed again, and equal bytes give the same fingerprint
    (a build copied with ``cp -r``, or a shard rewritten with the same rows, reruns nothing)."""

    def __init__(self, cache: dict[str, str]) -> None:
        self.cache = cache
        self.used: set[str] = set()
        self.seen: dict[str, str] = {}
        """Hashes a step of this run made of files it read anyway (``record``); cached once asked for."""

    def digest(self, path: Path, stat: os.stat_result | None = None) -> str:
        """sha256 of ``path`` (``stat``: its ``os.stat``, when the caller has it)."""
        stat = stat or path.stat()
        key = self._key(path, stat.st_size, stat.st_mtime_ns)
        digest = self.cache.get(key) or self.seen.pop(key, None)
        if digest is None:
            digest = sha256_file(path)
        self.cache[key] = digest
        self.used.add(key)
        return digest

    def record(self, path: str | os.PathLike[str], size: int, mtime_ns: int, digest: str) -> None:
        """Take the sha256 of ``path`` (of that size and mtime) from a step that read the file
        anyway (``harvest:local`` hashes each XML it parses): ``digest`` does not read it again."""
        self.seen[self._key(path, size, mtime_ns)] = digest

    @staticmethod
    def _key(path: str | os.PathLike[str], size: int, mtime_ns: int) -> str:
        return f"{resolved_text(os.fspath(path))}|{size}|{mtime_ns}"

    def files_state(self, paths: Iterable[Path], root: Path | None = None) -> list[tuple[str, int, str]]:
        """(name, size, sha256) of each file, sorted."""
        rows = []
        for path in paths:
            name = str(path.relative_to(root)) if root else path.name
            rows.append((name, path.stat().st_size, self.digest(path)))
        return sorted(rows)

    def forget_unused(self) -> None:
        """Drop the entries of files this run did not look at (removed, or rewritten since)."""
        if self.used:
            for key in set(self.cache) - self.used:
                del self.cache[key]


def resolved(path: str | os.PathLike[str]) -> Path:
    """``Path(path).resolve()``, resolving each folder once: input files sit by the thousand in few
    folders, and ``resolve`` walks every component of the path."""
    return Path(resolved_text(os.fspath(path)))


def resolved_text(text: str) -> str:
    """``resolved`` of the path ``text``, as text."""
    if not os.path.isabs(text):  # a relative path depends on the working directory
        return str(Path(text).resolve())
    return _resolved_absolute(text)


@functools.lru_cache(maxsize=1 << 16)
def _resolved_absolute(text: str) -> str:
    """An absolute path resolved once: a build names each input file four times (its task's key, the
    content hash the task records, provenance's list and its hash), ~4 µs each (an ``lstat``)."""
    if os.path.islink(text):
        return str(Path(text).resolve())
    folder, name = os.path.split(text)
    return os.path.join(_resolved_folder(folder), name)


@functools.lru_cache(maxsize=1024)
def _resolved_folder(folder: str) -> str:
    return str(Path(folder).resolve())


@dataclass
class Build:
    """The build a step runs in: its folder, its state (``.pmcurate/state.json``: each step's last
    fingerprint, counts and drops; the content hashes), and how this run was asked for."""

    path: Path
    state: dict[str, Any] = field(default_factory=lambda: {"steps": {}})
    force: bool = False
    """Run every step, even one whose fingerprint is unchanged."""
    progress: bool = True
    plan: list[PlannedStep] | None = None
    """Set for a plan (``pmcurate build --plan``): steps are decided and recorded here, never run."""
    reports: list[StepReport] = field(default_factory=list)
    pending: str | None = None
    """In a plan, the first step that would run: later steps may read what it changes."""

    def __post_init__(self) -> None:
        self.state.setdefault("steps", {})
        self.hashes = ContentHashes(self.state.setdefault("content_sha256", {}))

    @classmethod
    def open(cls, path: Path, *, force: bool = False, progress: bool = True, plan: bool = False) -> Build:
        """The build at ``path`` with its saved state (none yet: every step runs)."""
        return cls(Path(path), load_state(Path(path)), force, progress, [] if plan else None)

    def planned(self, step: str, action: str, reason: str) -> None:
        assert self.plan is not None
        self.plan.append(PlannedStep(step, action, reason))
        if action == "run" and self.pending is None:
            self.pending = step

    def save_state(self) -> None:
        path = self.path / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def shards(self, table: str) -> list[Path]:
        """The shards of ``table`` (none when it has none yet)."""
        from pmcurate import schema

        return schema.shard_paths(self.path, table)

    def tables_fingerprint(self, names: Iterable[str]) -> str:
        """Fingerprint of the content of tables ``names`` (each shard's name, size and sha256)."""
        return fingerprint({name: self.hashes.files_state(self.shards(name)) for name in sorted(names)})

    def folder_fingerprint(self, folder: Path, *, exclude: tuple[str, ...] = ()) -> str:
        """Fingerprint of the files under ``folder`` (hidden files and names in ``exclude`` left out)."""
        if not folder.is_dir():
            return fingerprint([])
        files = [
            p
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.name not in exclude
        ]
        return fingerprint(self.hashes.files_state(files, folder))


def load_state(build: Path) -> dict[str, Any]:
    """The saved state of ``build``; an unreadable one is logged and every step runs again."""
    path = build / STATE_FILE
    if not path.is_file():
        return {"steps": {}}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s: unreadable build state, every step runs again", path)
        return {"steps": {}}
    return state if isinstance(state.get("steps"), dict) else {"steps": {}}


# ---------------------------------------------------------------- steps


class Task(Protocol):
    """A unit of a step's work: picklable; ``key`` names it, ``size`` orders it (largest first)."""

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...


C = TypeVar("C", bound=StepConfig)
T = TypeVar("T")


class Step(Generic[C, T]):
    """A stage's unit of work; subclasses set ``name``, ``reads``, ``writes`` and override what they do.

    The defaults make a *whole step* (one that runs as one piece in the driver, in ``finish``)
    easy: its fingerprint is its settings plus the content of the tables it reads, it plans no
    tasks, and ``finish`` does the work.
    """

    name: str = ""
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    result: Any = None
    """What the step's last ``finish`` produced, in the driver (a command prints it)."""

    def __init__(self, config: C, *, name: str | None = None) -> None:
        self.config = config
        if name is not None:
            self.name = name

    def fingerprint(self, build: Build) -> str | None:
        """Settings and the content of what the step reads; ``None``: decided per task by ``plan``."""
        return fingerprint(self.name, self.config.settings(), build.tables_fingerprint(self.reads))

    def outputs(self, build: Build) -> list[Path]:
        """Files that must exist for an unchanged fingerprint to skip the step."""
        return []

    def plan(self, build: Build) -> list[T]:
        """The tasks to run (none: all the work is in ``finish``). Writes nothing."""
        return []

    def explain(self, build: Build, tasks: list[T]) -> tuple[str, str]:
        """For a plan of a per-task step (``fingerprint`` is None): (action, reason)."""
        if tasks:
            return "run", f"{len(tasks)} tasks to run"
        return "unchanged", "every task done"

    def task_reads(self, build: Build) -> list[Path] | None:
        """The files and folders of the build its tasks read (None: any of them). A worker that
        does not share the driver's disk (Ray on a URL build: ``executor.UrlBuildExecutor``)
        pulls them from the build's URL before a task; what a task writes anywhere in the build
        goes back without being declared."""
        return None

    def prepare(self, build: Build) -> None:
        """In the driver, before the tasks run (and not in a plan): remove what is stale."""

    def setup(self) -> None:
        """Once per worker process, before its first task (load models, open clients)."""

    def run(self, task: T) -> dict[str, int]:
        """One task, in a worker; its counts."""
        raise NotImplementedError(f"{type(self).__name__} plans tasks but does not run them")

    def teardown(self) -> None:
        """Once per worker process, after its last task of this step."""

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        """In the driver after every task: merge, settle, prune; the report (default: counts summed)."""
        total: dict[str, int] = {}
        for part in counts:
            for key, value in part.items():
                total[key] = total.get(key, 0) + value
        return StepReport(self.name, "ran", counts=total)


class Runner(Protocol):
    """What ``run_step`` needs of an executor (``executor.LocalExecutor``, ``executor.RayExecutor``)."""

    name: str
    workers: int

    def map(
        self,
        fn: Any,
        items: Sequence[Any],
        *,
        desc: str,
        progress: bool = True,
        reads: Sequence[Path] | None = None,
    ) -> Iterable[Any]: ...


def run_step(step: Step[Any, Any], build: Build, executor: Runner | None = None) -> StepReport:
    """The one runner: fingerprint check → plan → tasks on ``executor`` (largest first; the step is
    set up once per worker) → ``finish`` → state saved. In a plan, records what would happen.

    ``executor`` None: tasks run in this process."""
    key = step.fingerprint(build)
    previous = build.state["steps"].get(step.name)
    outputs = step.outputs(build)
    unchanged = bool(
        key is not None
        and not build.force
        and previous
        and previous.get("fingerprint") == key
        and all(path.exists() for path in outputs)
    )
    if build.plan is not None:
        report = _plan(step, build, key, previous, outputs, unchanged)
    elif unchanged:
        assert previous is not None
        report = StepReport(
            step.name, "unchanged", counts=previous.get("counts", {}), drops=previous.get("drops", {})
        )
    else:
        try:
            report = _run(step, build, key, executor)
        except PmcurateError as exc:
            raise _by_policy(step, exc) from exc
    build.reports.append(report)
    return report


def _by_policy(step: Step[Any, Any], exc: PmcurateError) -> PmcurateError:
    """The error a step's error becomes, named after the step: a transport failure stays
    resumable; anything else stops the run (an item a step could skip was skipped inside it)."""
    if isinstance(exc, StepFailed | StepInterrupted):  # already named after a step
        return exc
    message = one_line(exc)
    if not message.startswith(f"{step.name}:"):
        message = f"{step.name}: {message}"
    return StepInterrupted(message) if isinstance(exc, Retry) else StepFailed(message)


def _run(step: Step[Any, Any], build: Build, key: str | None, executor: Runner | None) -> StepReport:
    started = time.perf_counter()
    log.info("%s: running", step.name)
    tasks = sorted(step.plan(build), key=lambda task: -task.size)
    step.prepare(build)
    counts: list[dict[str, int]] = []
    if tasks:
        token = f"{step.name}:{os.getpid()}:{time.monotonic_ns()}"
        blob = pack(step, build.path)  # a worker with its own copy of a URL build reads its paths there
        work = [(token, blob, task) for task in tasks]
        try:
            if executor is None:
                counts = [_run_task(item) for item in work]
            else:
                reads = step.task_reads(build)
                counts = list(
                    executor.map(_run_task, work, desc=step.name, progress=build.progress, reads=reads)
                )
        finally:
            _release()  # tasks run in this process (one worker, or one task): tear the step down here
    report = step.finish(build, counts)
    report.seconds = time.perf_counter() - started
    if report.status == "ran":
        build.state["steps"][step.name] = {
            "fingerprint": key,
            "counts": report.counts,
            "drops": report.drops,
            "finished_at": datetime.now(UTC).isoformat(),
        }
        build.save_state()
    return report


def _plan(
    step: Step[Any, Any],
    build: Build,
    key: str | None,
    previous: dict[str, Any] | None,
    outputs: list[Path],
    unchanged: bool,
) -> StepReport:
    """Record whether ``step`` would run, and why."""
    if key is None:
        action, reason = step.explain(build, step.plan(build))
    elif build.force:
        action, reason = "run", "--force"
    elif not previous:
        action, reason = "run", "never ran in this build"
    elif previous.get("fingerprint") != key:
        action, reason = "run", "its settings or the files it reads changed since its last run"
    elif not unchanged:
        missing = next(path for path in outputs if not path.exists())
        action, reason = "run", f"its output {missing.relative_to(build.path)} is missing"
    elif build.pending:
        action, reason = "may run", f"if {build.pending} changes what it reads"
    else:
        action, reason = "unchanged", "same settings and inputs as its last run"
    build.planned(step.name, action, reason)
    status = "unchanged" if action == "unchanged" else "planned"
    return StepReport(step.name, status, counts=(previous or {}).get("counts", {}) if unchanged else {})


# ---------------------------------------------------------------- in the workers

_active: tuple[str, Step[Any, Any]] | None = None
"""The step this process has set up (its token and itself); torn down when another arrives."""


def _run_task(item: tuple[str, bytes, Any]) -> dict[str, int]:
    """Shard function run by the executor: set the step up on its first task here, run one task."""
    global _active
    token, blob, task = item
    if _active is None or _active[0] != token:
        _release()
        step = pickle.loads(blob)
        step.setup()
        _active = (token, step)
        _register_exit()
    return _active[1].run(task)


def _release() -> None:
    """Tear down the step set up in this process, if any."""
    global _active
    if _active is not None:
        step, _active = _active[1], None
        step.teardown()


_exit_registered = False


def _register_exit() -> None:
    """A worker process tears down its last step when it exits (the pool's end, or Ray's)."""
    global _exit_registered
    if not _exit_registered:
        from multiprocessing import util

        util.Finalize(None, _release, exitpriority=10)
        _exit_registered = True
