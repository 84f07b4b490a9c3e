"""Helpers shared by the network-source tests: fast fetch settings and reading a build's tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pmcurate.harvest.fetch import FetchConfig

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
