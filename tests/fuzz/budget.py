"""How long the fuzz targets run, and a wall-clock limit that interrupts a hang.

``make test`` runs ``FUZZ_EXAMPLES`` (default 150) examples per target: a few seconds in all.
Longer runs on demand: ``FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest tests/fuzz``. Hypothesis
keeps the failing examples it finds in ``.hypothesis/`` and replays them first; a crash found that
way becomes an explicit regression test in ``test_regressions.py``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
EXAMPLE_SECONDS = 5.0
"""Longest one example may run: the largest fixture parses in ~50 ms, so more is a hang."""

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # hypothesis's deadline only measures; ``time_limit`` interrupts
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(Exception):
    """The code under test ran past its time limit."""


@contextmanager
def time_limit(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
