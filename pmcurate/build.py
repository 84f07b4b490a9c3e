"""A build opened from Python: its tables as Polars LazyFrames and as DuckDB views.

    import pmcurate, polars as pl
    build = pmcurate.open_build("build/demo")
    build.tables          # ['articles', 'figures', 'paragraphs', 'quarantine', 'tables']
    build.table("paragraphs").filter(pl.col("n_words") > 64).collect()
    build.duckdb().sql("SELECT license, count(*) FROM articles GROUP BY ALL").show()

A table is any folder ``BUILD/tables/<name>/`` holding at least one ``.parquet`` shard; nothing is
read until asked (``scan_parquet`` / ``read_parquet`` over the shards), and temporary files of a
write in progress are never seen (see ``schema.write_shard``). Polars and DuckDB are imported when
a table or a connection is asked for: the export imports this module, and checking a manifest
imports the export's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pmcurate import schema
from pmcurate.errors import Fatal

if TYPE_CHECKING:
    import duckdb
    import polars as pl


@dataclass(frozen=True)
class Build:
    """A build folder (``BUILD/tables/<table>/*.parquet``)."""

    path: Path

    @property
    def tables(self) -> list[str]:
        """Names of the tables that have at least one shard, sorted."""
        root = self.path / "tables"
        if not root.is_dir():
            return []
        return sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and schema.shard_paths(self.path, p.name)
        )

    @property
    def subsets(self) -> list[str]:
        """Names of the subsets made by ``pmcurate filter`` (``BUILD/subsets/<name>/*.parquet``), sorted."""
        root = self.path / "subsets"
        if not root.is_dir():
            return []
        return sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.parquet"))
        )

    def shards(self, name: str) -> list[Path]:
        """The shards of table ``name``; ``KeyError`` naming the existing tables when it has none."""
        paths = schema.shard_paths(self.path, name)
        if not paths:
            raise KeyError(f"{self.path}: no table {name!r} (tables: {', '.join(self.tables) or 'none'})")
        return paths

    def table(self, name: str) -> pl.LazyFrame:
        """Table ``name`` as a LazyFrame over its shards."""
        import polars as pl

        return pl.scan_parquet(self.shards(name))

    def duckdb(self, connection: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection (a new in-memory one unless given) with one view per table.

        Views read the shard files through a glob, so shards added later are seen by later queries.
        """
        import duckdb

        con = connection or duckdb.connect()
        for name in self.tables:
            create_view(con, name, schema.table_dir(self.path, name))
        for name in self.subsets:  # subset NAME: views subset_NAME (kept rows) and subset_NAME_drops
            folder = self.path / "subsets" / name
            create_view(con, f"subset_{name}", folder)
            if any((folder / "drops").glob("*.parquet")):
                create_view(con, f"subset_{name}_drops", folder / "drops")
        return con


def create_view(con: duckdb.DuckDBPyConnection, name: str, folder: Path) -> None:
    """``CREATE OR REPLACE VIEW "name"`` over the Parquet shards of ``folder``.

    A name that is not a plain identifier (``dedup-drops``) is quoted: query it as ``"dedup-drops"``.
    """
    pattern = str(Path(folder).resolve() / "*.parquet").replace("'", "''")
    view = name.replace('"', '""')
    con.execute(
        f"CREATE OR REPLACE VIEW \"{view}\" AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)"
    )


class NotABuild(Fatal):
    """A folder given as a build that has no ``tables/``."""


def open_build(path: str | os.PathLike[str]) -> Build:
    """Open the build at ``path``; :class:`NotABuild` when it is not a build (no ``tables/``)."""
    build = Build(Path(path))
    if not (build.path / "tables").is_dir():
        raise NotABuild(f"{path}: not a pmcurate build (no tables/ folder)")
    return build
