"""Throughput of ``pmcurate export`` beside a plain ``pyarrow.parquet.write_table``, and DuckDB queries.

Builds a corpus by repeating the real paragraphs of ``tests/data/jats`` (harvested with
``harvest local``) under new article ids, with a label per paragraph, and figures carrying
generated PNG images, then times:

- ``export --preset biomed-enriched`` (join with articles and labels, sort, license splits, shards
  of ``--shard-mb``, row groups, statistics, page index, card, input checksums), in one process
  and on ``--workers`` processes of a pool started beforehand (as in a build; each task writes
  whole splits), against pyarrow writing the very same rows, already in memory, to one file —
  ``pq.write_table`` with its default zstd, and a ``pq.ParquetWriter`` with the export's own writer
  settings (zstd level 3, page index, content-defined chunking) and the export's row groups (cut
  by size, ``export.parquet.row_groups``, before the clock starts) — MB/s and rows/s of each, and
  the ratios;
- ``export --preset image-text`` and ``--format webdataset`` the same way (images/s, MB/s);
- three typical DuckDB queries over the exported shards (best of 3): a license × label count, a
  filtered aggregate, and a lookup of one article's paragraphs (row-group statistics prune it).

    .venv/bin/python bench/export.py [--paragraphs 300000] [--figures 5000] [--shard-mb 64]
                                     [--workers 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pmcurate import schema
from pmcurate.executor import LocalExecutor
from pmcurate.export import parquet
from pmcurate.export.exporter import export, normalized_schema
from pmcurate.export.presets import Source, get_preset
from pmcurate.export.steps import ExportConfig
from pmcurate.harvest.local import harvest_local

ROOT = Path(__file__).resolve().parent.parent
SAME_SETTINGS = {
    "compression": "zstd",
    "compression_level": 3,
    "write_page_index": True,
    "use_content_defined_chunking": True,
}
"""The export's own writer settings (``export.parquet``), for a like-for-like baseline."""


def row_groups_of(rows: pa.Table, shard_bytes: int) -> list[pa.Table]:
    """``rows`` cut into the row groups the export writes into shards of ``shard_bytes``, each one
    chunk (the export writes a group as the slices of the batches it spans: the same bytes)."""
    target = parquet.row_group_target(shard_bytes, parquet.DEFAULT_ROW_GROUP_BYTES)
    return [group.combine_chunks() for group in parquet.row_groups(rows.to_batches(), target)]


def write_groups(groups: list[pa.Table], path: Path) -> None:
    """pyarrow writing ``groups`` (``row_groups_of``) to one file, one row group each, with the
    export's writer settings: the raw library doing the export's write, without its reading,
    joining, splitting, statistics and card."""
    with pq.ParquetWriter(path, groups[0].schema, **SAME_SETTINGS) as writer:
        for group in groups:
            writer.write_table(group, row_group_size=group.num_rows)


JATS = ROOT / "tests" / "data" / "jats"


def repeat_table(build: Path, name: str, times: int) -> pl.DataFrame:
    """Table ``name`` repeated ``times`` with article ids (and ids built on them) made unique."""
    base = pl.read_parquet(schema.shard_paths(build, name))
    copies = []
    for copy in range(times):
        frame = base
        for column in ("article_id", "paragraph_id", "figure_id"):
            if column in frame.columns:
                frame = frame.with_columns(pl.col(column).str.replace(r"^([^/]+)", f"$1-{copy}"))
        if "text" in frame.columns and copy:  # distinct text, same words: compresses like real text
            frame = frame.with_columns(
                pl.col("text")
                .str.split(" ")
                .list.sample(fraction=1.0, shuffle=True, seed=copy)
                .list.join(" ")
            )
        if "mention_ids" in frame.columns:
            frame = frame.with_columns(
                pl.col("mention_ids").list.eval(pl.element().str.replace(r"^([^/]+)", f"$1-{copy}"))
            )
        copies.append(frame)
    return pl.concat(copies)


def png(seed: int, size: int = 128) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    pixels[:, : size // 2] //= 16  # half noise, half flat: compresses like a real figure, a little
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def make_build(folder: Path, paragraphs: int, figures: int) -> Path:
    source = folder / "source"
    harvest_local([JATS], source, workers=1, progress=False)
    base_paragraphs = pl.read_parquet(schema.shard_paths(source, "paragraphs")).height
    times = max(1, paragraphs // base_paragraphs)
    build = folder / "build"
    articles = repeat_table(source, "articles", times)
    para = repeat_table(source, "paragraphs", times)
    figs = repeat_table(source, "figures", max(1, figures // 51)).head(figures)
    figs = figs.with_columns(
        pl.Series("image", [{"bytes": png(i), "path": f"{i}.png"} for i in range(figs.height)],
                  dtype=pl.Struct({"bytes": pl.Binary, "path": pl.String})),
        pl.lit("png").alias("format"),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    kinds = np.array(schema.DOCUMENT_TYPES)[rng.integers(0, 4, para.height)]
    domains = np.array(schema.DOMAINS)[rng.integers(0, 3, para.height)]
    labels = pl.DataFrame(
        {
            "paragraph_id": para["paragraph_id"],
            "document_type": kinds,
            "document_type_scores": [dict.fromkeys(schema.DOCUMENT_TYPES, 0.25)] * para.height,
            "domain": domains,
            "domain_scores": [dict.fromkeys(schema.DOMAINS, 1 / 3)] * para.height,
            "educational_score": rng.uniform(1, 5, para.height).astype(np.float32),
            "annotator": "bench",
        }
    ).with_columns(pl.lit(None, dtype=pl.String).alias("language"))  # no paragraph language label
    for name, frame, arrow_schema in (
        ("articles", articles, schema.ARTICLES),
        ("paragraphs", para, schema.PARAGRAPHS),
        ("figures", figs, schema.FIGURES),
        ("labels", labels, schema.LABELS),
    ):
        table = frame.to_arrow().select(arrow_schema.names).cast(arrow_schema)
        step = 100_000 if name != "figures" else 2_000
        for index in range(0, table.num_rows, step):
            schema.write_shard(
                table.slice(index, step), schema.table_dir(build, name) / f"{index:09d}.parquet"
            )
    return build


def preset_rows(build: Path, preset: str) -> pa.Table:
    """The rows an export writes, materialized in memory (for the plain writer)."""
    chosen = get_preset(preset)
    con = duckdb.connect()
    for name in ("articles", "paragraphs", "figures", "labels"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{build}/tables/{name}/*.parquet')")
    key = f"{chosen.unit}_id"
    con.execute(f"CREATE VIEW selection AS SELECT {key}, 0 AS repeat FROM {chosen.unit}s")
    sql = chosen.rows_sql(Source(has_labels=True, has_paragraphs=True, subset=None))
    table = con.sql(sql).to_arrow_table()
    keep = [n for n in table.column_names if not n.startswith("__")]
    return table.select(keep).cast(normalized_schema(table.select(keep).schema))


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def best_of(runs: int, contenders: list) -> list[float]:
    """Best time of each contender over ``runs`` rounds, one run of each per round (interleaved, so
    that the load of a shared machine hits them alike)."""
    best = [float("inf")] * len(contenders)
    for _ in range(runs):
        for index, function in enumerate(contenders):
            best[index] = min(best[index], timed(function)[0])
    return best


def compare(
    build: Path,
    work: Path,
    preset: str,
    shard_bytes: int,
    pool: LocalExecutor,
    runs: int,
    fmt: str = "parquet",
) -> None:
    rows = preset_rows(build, preset)
    groups = row_groups_of(rows, shard_bytes)
    plain = work / f"plain-{preset}.parquet"
    out = work / f"out-{preset}-{fmt}"
    outs = {1: work / f"out1-{preset}-{fmt}", pool.workers: out}

    def exported(executor: LocalExecutor | None) -> Callable[[], object]:
        target = outs[executor.workers if executor else 1]
        return lambda: export(
            build,
            ExportConfig(out=target, preset=preset, format=fmt, shard_size=shard_bytes),
            progress=False,
            executor=executor,
        )

    contenders = [
        lambda: pq.write_table(rows, plain, compression="zstd"),
        lambda: write_groups(groups, plain),
        exported(None),
        exported(pool),
    ]
    plain_seconds, same_seconds, one_seconds, seconds = best_of(runs, contenders)
    pq.write_table(rows, plain, compression="zstd")
    plain_bytes = plain.stat().st_size
    write_groups(groups, plain)
    same_bytes = plain.stat().st_size
    result = export(
        build,
        ExportConfig(out=out, preset=preset, format=fmt, shard_size=shard_bytes),
        progress=False,
        executor=pool,
    )
    size = folder_bytes(out / result.folder)
    raw = rows.nbytes
    shards = sum(len(s.shards) for s in result.splits.values())
    splits = ", ".join(f"{name} {summary.rows:,}" for name, summary in result.splits.items())
    print(f"\n{preset} ({fmt}): {result.rows:,} rows, {raw / 1e6:,.1f} MB in Arrow, {shards} shards, "
          f"splits {splits} (best of {runs})")  # fmt: skip
    line = "  {:28} {:6.2f} s  {:7.1f} MB/s  {:10,.0f} rows/s  {:8,.1f} MB on disk"
    for name, spent, written in (
        ("export, 1 process", one_seconds, size),
        (f"export, {pool.workers} workers", seconds, size),
        ("write_table (zstd default)", plain_seconds, plain_bytes),
        (f"same settings, {len(groups)} row groups", same_seconds, same_bytes),
    ):
        print(line.format(name, spent, raw / 1e6 / spent, rows.num_rows / spent, written / 1e6))
    for name, spent in (("1 process", one_seconds), (f"{pool.workers} workers", seconds)):
        default, same = plain_seconds / spent, same_seconds / spent
        print(
            f"  ratio export ({name}) / pyarrow: {default:.2f} (write_table, zstd default), "
            f"{same:.2f} (same settings and row groups)"
        )
    shutil.rmtree(outs[1])
    if (preset, fmt) != ("biomed-enriched", "parquet"):
        shutil.rmtree(out)  # the biomed-enriched shards stay for the queries
    plain.unlink()


def queries(out: Path) -> None:
    pattern = f"read_parquet('{out}/data/*.parquet')"
    con = duckdb.connect()
    article = con.sql(f"SELECT article_id FROM {pattern} ORDER BY article_id LIMIT 1 OFFSET 1000").fetchall()[
        0
    ][0]
    cases = {
        "license x document type count": (
            f"SELECT license_type, document_type, count(*) FROM {pattern} GROUP BY ALL"
        ),
        "clinical, educational >= 3: count, mean words": (
            f"SELECT count(*), avg(n_words) FROM {pattern} "
            "WHERE document_type = 'clinical_case' AND educational_score >= 3"
        ),
        "one article's paragraphs": f"SELECT text FROM {pattern} WHERE article_id = '{article}'",
    }
    print("\nDuckDB over the biomed-enriched shards (best of 3):")
    for name, sql in cases.items():
        best = min(timed(lambda q=sql: con.sql(q).fetchall())[0] for _ in range(3))
        print(f"  {name:48} {best * 1000:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paragraphs", type=int, default=300_000)
    parser.add_argument("--figures", type=int, default=5_000)
    parser.add_argument("--shard-mb", type=float, default=64)
    parser.add_argument("--workers", type=int, default=2, help="workers of the export's pool (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="runs per contender, best kept (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pmcurate-bench-export-") as tmp:
        work = Path(tmp)
        seconds, build = timed(make_build, work, args.paragraphs, args.figures)
        print(f"build: {args.paragraphs:,}+ paragraphs, {args.figures:,} figures in {seconds:.1f} s "
              f"(cores: {os.cpu_count()})")  # fmt: skip
        shard_bytes = int(args.shard_mb * 1e6)
        pool = LocalExecutor(args.workers)  # started once, as in a build
        list(pool.map(abs, list(range(args.workers)), desc="start the pool", progress=False))
        try:
            compare(build, work, "biomed-enriched", shard_bytes, pool, args.runs)
            compare(build, work, "image-text", shard_bytes, pool, args.runs)
            compare(build, work, "image-text", shard_bytes, pool, args.runs, fmt="webdataset")
        finally:
            pool.close()
        queries(work / "out-biomed-enriched-parquet")


if __name__ == "__main__":
    main()
