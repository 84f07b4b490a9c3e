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
from collections.abc import Callable
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
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="pmcurate-native-call")
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if failure:
        raise failure[0]
    return result[0]


class Steps:
    """A bar over the steps of a long computation whose inner function is called many times
    (``annotate.student.fit``): ``start`` it with the number of steps, ``advance`` after each."""

    current: tqdm | None = None

    @classmethod
    def start(cls, total: int, desc: str) -> None:
        cls.close()
        cls.current = tqdm(total=total, desc=desc, unit=" steps", disable=not enabled(), dynamic_ncols=True)

    @classmethod
    def advance(cls) -> None:
        if cls.current is not None:
            cls.current.update(1)

    @classmethod
    def close(cls) -> None:
        if cls.current is not None:
            cls.current.close()
            cls.current = None
