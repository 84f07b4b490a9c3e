"""Running ``pmcurate`` as a child process and comparing the builds it leaves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pmcurate import schema
from tests.reliability.sandbox import REPO, child_env

INJECT = Path(__file__).parent / "inject"
VOLATILE = {"harvested_at", "at"}
"""Columns that hold the time of the run: they differ between any two runs."""
KEYS = {"articles": "article_id", "paragraphs": "paragraph_id", "figures": "figure_id", "tables": "table_id"}
CLI = "import sys; from pmcurate import cli; sys.exit(cli.main(sys.argv[1:]))"


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``pmcurate``: the repository and the fault injector importable."""
    env = child_env(**extra)
    env["PYTHONPATH"] = f"{INJECT}:{REPO}"
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args), cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout
    )


def table_rows(build: Path, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` (all shards, volatile columns left out), sorted; corrupt shards raise."""
    rows: list[tuple[Any, ...]] = []
    for path in schema.shard_paths(build, table):
        data = pq.read_table(path, schema=schema.SCHEMAS[table])
        data = data.drop_columns([c for c in data.column_names if c in VOLATILE])
        rows += [tuple(repr(v) for v in row.values()) for row in data.to_pylist()]
    return sorted(rows)


def build_rows(build: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {table: table_rows(build, table) for table in (*KEYS, "quarantine")}


def duplicate_keys(build: Path) -> dict[str, int]:
    """Per table, how many key values occur more than once across its shards."""
    found = {}
    for table, key in KEYS.items():
        values = [
            v
            for path in schema.shard_paths(build, table)
            for v in pq.read_table(path, columns=[key])[key].to_pylist()
        ]
        found[table] = len(values) - len(set(values))
    return found


def visible_temporary_files(build: Path) -> list[str]:
    """Temporary files that a reader's glob (``*.parquet``) would pick up: must be none."""
    return [str(p) for p in build.rglob("*.parquet") if p.name.startswith(schema.TMP_PREFIX)]


def leftover_temporary_files(build: Path) -> list[Path]:
    return sorted(p for p in build.rglob(f"{schema.TMP_PREFIX}*"))
