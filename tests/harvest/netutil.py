"""Helpers shared by the network-source tests: fast fetch settings, the rate limiter's dispatch
times, and reading a build's tables."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pmcurate.harvest.fetch import FetchConfig, RateLimiter

FAST = FetchConfig(concurrency=8, rate=1000.0, retries=8, backoff=0.01, max_backoff=0.05, timeout=0.3)
"""Tests' fetch settings: retries quickly, times out fast (the ``slow`` fault sleeps 1 s)."""


def rows(build: Path, table: str, columns: str = "*", order: str = "1") -> list[dict[str, Any]]:
    """Rows of ``table`` across its shards (empty when the table has no shard)."""
    folder = build / "tables" / table
    if not any(folder.glob("*.parquet")):
        return []
    relation = duckdb.sql(f"SELECT {columns} FROM read_parquet('{folder}/*.parquet') ORDER BY {order}")
    names = relation.columns
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def record_dispatches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Per pass through a host's rate limiter: (when the request asked it, when it let the request
    go), on the client's monotonic clock. The limiter's guarantee is on dispatch, not on when a
    server notices the request (a busy server bunches arrivals), so rate tests read these."""
    passes: list[tuple[float, float]] = []
    wait = RateLimiter.wait

    async def recording(self: RateLimiter) -> None:
        asked = time.monotonic()
        await wait(self)
        passes.append((asked, time.monotonic()))

    monkeypatch.setattr(RateLimiter, "wait", recording)
    return passes


def dispatches_too_early(passes: list[tuple[float, float]], rate: float) -> list[int]:
    """The requests (in dispatch order) let go sooner than ``rate`` allows: the k-th may leave no
    sooner than k/rate s after the first request asked. A busy machine only makes requests leave
    later, so this holds however loaded the machine is, and fails for a limiter that lets them
    go faster than ``rate``."""
    first = min(asked for asked, _ in passes)
    gone = sorted(left for _, left in passes)
    return [k for k, left in enumerate(gone) if left - first < k / rate]
