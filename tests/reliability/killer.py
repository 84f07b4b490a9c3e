"""The kill harness: run a command, SIGKILL it (its whole process group: workers too) at a chosen
point of its work, look at what a reader would see, run it again, and so on; then let it finish.

Kills form a *chain* on one build: each run resumes what the killed runs left, so a chain of N
kills costs about one full run plus N start-ups, and kills land at every phase of the work (start,
planning, shard writing, the final rewrite), not only at its beginning. Kill points are points of
the work, never times: a chain lands the same way on an idle machine and on a busy one. After every kill the
build is checked as a reader sees it (``reader_problems``). With ``RELIABILITY_REPORT=FILE`` each
chain appends its report (where every kill landed) to FILE as a JSON line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pmcurate import schema
from tests.reliability.builds import visible_temporary_files


@dataclass
class ChainReport:
    """What a chain of kills did: runs killed, runs that finished before their kill, and per kill
    the state it left (shards complete, temporary files left: a kill in the middle of a write)."""

    kills: int = 0
    finished_early: int = 0
    killed_mid_write: int = 0
    landed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    orphan_temporary_files: list[str] = field(default_factory=list)
    """Temporary files of killed writes still there at the end (hidden from readers)."""


def timed_run(command: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> float:
    """Run ``command`` to completion (it must succeed); its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {done.stderr[-3000:]}")
    return time.perf_counter() - started


@dataclass(frozen=True)
class KillPoint:
    """Where to kill a run: in the middle of writing the ``file``-th file it opens, or at the
    ``nth`` call of ``call`` (``module:function`` or ``module:Class.method``).
    ``inject/sitecustomize.py`` kills the process group itself, at that point of the work."""

    file: int | None = None
    call: str | None = None
    nth: int = 1

    def __post_init__(self) -> None:
        if (self.file is None) == (self.call is None):
            raise ValueError("a kill point is a file or a call")

    def __str__(self) -> str:
        if self.call is not None:
            return f"calling {self.call}" + (f" (call {self.nth})" if self.nth > 1 else "")
        return f"writing file {self.file}"


def kill_at(command: Sequence[str], cwd: Path, env: dict[str, str], point: KillPoint) -> bool:
    """Start ``command`` in a new session and SIGKILL its process group at ``point``.
    Returns False when it finished first (it must then have succeeded)."""
    if point.file is not None:
        env = {**env, "PMCURATE_INJECT_SIGKILL_AT_FILE": str(point.file)}
    if point.call is not None:
        env = {**env, "PMCURATE_INJECT_SIGKILL_AT_CALL": f"{point.call}@{point.nth}"}
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = process.wait(timeout=300)  # a safety net: the run kills itself at the point
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"{' '.join(command)} still running 300 s after its start") from None
    _wait_for_group_exit(process.pid)
    if code == -signal.SIGKILL:
        return True
    if code != 0:
        raise AssertionError(f"{' '.join(command)} failed with status {code} before its kill")
    return False


def _wait_for_group_exit(group: int, timeout: float = 10) -> None:
    """Wait until no process of ``group`` is left (pool workers die a moment after their parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process group {group} still alive {timeout} s after SIGKILL")


def kill_chain(
    command: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    points: Iterable[KillPoint],
    build: Path,
    describe: Callable[[Path], str],
) -> ChainReport:
    """Kill ``command`` at each point in turn, every run resuming the build the killed ones left,
    until a run finishes before its kill point (the work is done); check the build after each kill;
    then run it to completion once more."""
    report = ChainReport()
    started = time.perf_counter()
    seen: set[Path] = set()
    for point in points:
        if not kill_at(command, cwd, env, point):
            report.finished_early += 1
            break
        report.kills += 1
        temporary = set(build.rglob(f"{schema.TMP_PREFIX}*"))
        report.killed_mid_write += bool(temporary - seen)
        seen = temporary
        report.landed.append(f"{point}: {describe(build)}")
        report.problems += [f"after the kill {point}: {p}" for p in reader_problems(build)]
    timed_run(command, cwd, env)
    report.seconds = time.perf_counter() - started
    report.orphan_temporary_files = sorted(
        str(p.relative_to(build)) for p in build.rglob(f"{schema.TMP_PREFIX}*")
    )
    if log := os.environ.get("RELIABILITY_REPORT"):
        with open(log, "a") as sink:
            sink.write(json.dumps({"build": str(build), **asdict(report)}) + "\n")
    return report


def reader_problems(build: Path) -> list[str]:
    """What a reader of an interrupted build would trip on: temporary files its glob matches,
    shards that do not open."""
    problems = [f"temporary file visible to readers: {p}" for p in visible_temporary_files(build)]
    for path in sorted(build.rglob("*.parquet")):
        try:
            pq.read_table(path)
        except Exception as exc:  # any reader failure is the finding
            problems.append(f"corrupt shard {path}: {exc}")
    return problems
