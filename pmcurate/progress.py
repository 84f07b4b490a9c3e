"""When progress bars are drawn: one rule for every command.

Bars go to a terminal only. They are off when stderr is not a TTY (a log file, CI), when
``TQDM_DISABLE`` is set to a true value (tqdm's own switch, honoured here because stages pass
``disable=`` explicitly, which tqdm lets win over its environment), and under ``pmcurate --quiet``
(which sets ``TQDM_DISABLE=1`` for the process and its workers).

Long native calls run through ``interruptible`` so that Ctrl-C takes effect at once, and ``Steps``
counts the steps of a computation with many of them (student training) to show an ETA.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")


def enabled(requested: bool = True) -> bool:
    """Whether a bar asked for (``requested``) is drawn."""
    if not requested or os.environ.get("TQDM_DISABLE", "").strip().lower() in _TRUE:
        return False
    return sys.stderr.isatty()


def interruptible(call: Callable[[], T]) -> T:
    """``call()`` in a daemon thread, the caller waiting in short joins.

    For long native calls that release the GIL (fastText training): Python delivers Ctrl-C only
    between bytecodes of the main thread, so a main thread blocked in the call would hear it when
    the call returns, minutes later. Waiting in 0.2 s joins, it raises ``KeyboardInterrupt`` at
    once; the abandoned thread ends with the process."""
    return interruptible_map([call], threads=1)[0]


def interruptible_map(calls: Sequence[Callable[[], T]], *, threads: int) -> list[T]:
    """Each of ``calls`` in ``threads`` daemon threads (each takes the next call when it is done),
    their results in the order of ``calls``; the caller waits as in ``interruptible``.

    Native calls that release the GIL run side by side (fastText trainings: one core each). The
    first failure, in the order of ``calls``, is raised once every thread stopped; after a failure
    the threads start no further call."""
    failures: dict[int, BaseException] = {}
    slots: dict[int, T] = {}
    pending = iter(enumerate(calls))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                item = None if failures else next(pending, None)
            if item is None:
                return
            index, call = item
            try:
                slots[index] = call()
            except BaseException as exc:  # handed to the caller's thread
                with lock:
                    failures[index] = exc

    workers = [
        threading.Thread(target=work, daemon=True, name="pmcurate-native-call")
        for _ in range(max(1, min(threads, len(calls))))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        while worker.is_alive():
            worker.join(0.2)
    if failures:
        raise failures[min(failures)]
    return [slots[i] for i in range(len(calls))]


class Steps:
    """A bar over the steps of a long computation whose inner function is called many times
    (``annotate.student.fit``): ``start`` it with the number of steps, ``advance`` after each."""

    current: tqdm | None = None
    _lock = threading.Lock()
    """``advance`` is called from the threads of ``interruptible_map``."""

    @classmethod
    def start(cls, total: int, desc: str) -> None:
        cls.close()
        cls.current = tqdm(total=total, desc=desc, unit=" steps", disable=not enabled(), dynamic_ncols=True)

    @classmethod
    def advance(cls) -> None:
        with cls._lock:
            if cls.current is not None:
                cls.current.update(1)

    @classmethod
    def close(cls) -> None:
        if cls.current is not None:
            cls.current.close()
            cls.current = None
