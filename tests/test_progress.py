from __future__ import annotations

import threading
import time

import pytest

from pmcurate.progress import interruptible_map


def test_interruptible_map_returns_results_in_the_order_of_the_calls() -> None:
    def call(value: int, delay: float) -> int:
        time.sleep(delay)
        return value

    calls = [lambda v=v, d=d: call(v, d) for v, d in ((1, 0.05), (2, 0.0), (3, 0.02))]
    assert interruptible_map(calls, threads=2) == [1, 2, 3]


def test_interruptible_map_runs_calls_side_by_side() -> None:
    both_running = threading.Barrier(2, timeout=60)  # only a bound on a hang: two threads meet
    assert interruptible_map([both_running.wait, both_running.wait], threads=2) in ([0, 1], [1, 0])


def test_interruptible_map_raises_the_first_failure_in_call_order() -> None:
    def fail(message: str, delay: float) -> None:
        time.sleep(delay)
        raise ValueError(message)

    with pytest.raises(ValueError, match="first"):
        interruptible_map([lambda: fail("first", 0.05), lambda: fail("second", 0.0)], threads=2)
