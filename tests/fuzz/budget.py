"""How long the fuzz targets run, and a CPU-time limit that interrupts a hang.

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
EXAMPLE_CPU_SECONDS = 5.0
"""Most CPU time one example may use: the largest fixture parses in ~50 ms, so more is a hang.
CPU time, not wall time: a busy machine stretches an example's wall time, not its CPU time."""

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # hypothesis's deadline measures wall time; ``cpu_limit`` interrupts
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(Exception):
    """The code under test ran past its CPU-time limit."""


@contextmanager
def cpu_limit(seconds: float = EXAMPLE_CPU_SECONDS) -> Iterator[None]:
    """Interrupt the block with ``Hang`` once this process has used ``seconds`` of CPU time in it."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s of CPU time")

    previous = signal.signal(signal.SIGPROF, interrupt)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
