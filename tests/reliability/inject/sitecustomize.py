"""Fault injection for the child processes of the reliability tests (on their ``PYTHONPATH`` only).

Applies to the files ``pmcurate.schema`` opens for writing (the shard writer, ``write_shard``):

- ``PMCURATE_INJECT_ENOSPC_AFTER=N``: writes succeed until the process has written ``N`` bytes
  through them, then each write fails with ``OSError(ENOSPC)``, as on a disk that just filled up.
- ``PMCURATE_INJECT_SIGKILL_AT_FILE=K``: at the first write into the K-th file the process opens,
  half of the bytes are written and flushed, then the process group gets SIGKILL: a kill in the
  middle of a shard write, at a chosen point of the run.
- ``PMCURATE_INJECT_SIGKILL_AT_CALL=MODULE:NAME[@N]``: the N-th call (default: the first) in this
  process of that module-level function, or of a method when NAME is ``CLASS.METHOD``, sends the
  process group SIGKILL. Functions are looked up when called, so calls from their own module count.
"""

from __future__ import annotations

import builtins
import errno
import itertools
import os
import signal
from typing import Any


class _Faults:
    def __init__(self, enospc_after: int | None, kill_at_file: int | None) -> None:
        self.enospc_after = enospc_after
        self.kill_at_file = kill_at_file
        self.written = 0
        self.opened = 0

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        real = builtins.open(file, mode, *args, **kwargs)  # noqa: SIM115 - handed to the caller
        if "w" not in mode and "a" not in mode:
            return real
        self.opened += 1
        return _FaultyFile(real, self, kill=self.opened == self.kill_at_file)


class _FaultyFile:
    def __init__(self, real: Any, faults: _Faults, *, kill: bool) -> None:
        self._real = real
        self._faults = faults
        self._kill = kill

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self._kill:
            self._real.write(view[: max(1, len(view) // 2)])
            self._real.flush()
            os.killpg(os.getpgrp(), signal.SIGKILL)
        limit = self._faults.enospc_after
        if limit is not None and self._faults.written + len(view) > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._faults.written += len(view)
        return self._real.write(data)

    def __enter__(self) -> _FaultyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _kill_at_call(target: str) -> None:
    import importlib

    where, _, nth = target.partition("@")
    module_name, _, qualname = where.partition(":")
    *parents, name = qualname.split(".")
    owner: Any = importlib.import_module(module_name)
    for parent in parents:
        owner = getattr(owner, parent)
    real = getattr(owner, name)
    kill_at = int(nth or 1)
    calls = itertools.count(1)  # next() on it is atomic: threads may call too

    def killing(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == kill_at:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(owner, name, killing)


def _install() -> None:
    if call := os.environ.get("PMCURATE_INJECT_SIGKILL_AT_CALL"):
        _kill_at_call(call)
    enospc = os.environ.get("PMCURATE_INJECT_ENOSPC_AFTER")
    kill = os.environ.get("PMCURATE_INJECT_SIGKILL_AT_FILE")
    if enospc is None and kill is None:
        return
    import pmcurate.schema

    faults = _Faults(int(enospc) if enospc else None, int(kill) if kill else None)
    pmcurate.schema.open = faults.open  # type: ignore[attr-defined]


_install()
