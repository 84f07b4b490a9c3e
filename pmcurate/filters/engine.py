"""The subset engine: a subset's work as tasks over partitions of the build, run on an executor.

Every task reads and writes files under the subset's work folder and returns a few numbers, so the
tasks run on the project's executor (``executor.py``: a local process pool or Ray) and each task's
memory is bounded by its partition, not by the build:

1. **Ranges.** The shards' footers give the article ids each holds (``partition.py``). Shards that
   share no article are cut into ranges at shard starts, about ``partition_rows`` rows each (and one
   a worker when each keeps ``partition.MIN_SPLIT_ROWS``); otherwise each shard of the rows' table
   samples its ``article_id`` values and the driver cuts the ids into ranges of about
   ``partition_rows`` rows. The subset's order (article, then paragraph ordinal) is the order of the
   ranges, then the order inside each range.
2. **Reading.** A range reads in place the build's shards that may hold its rows, keeping its own
   (labels: the labels shards whose paragraph ids meet its paragraphs'). A table whose shards
   interleave is **scattered** instead: each of its shards writes its rows split by range; labels
   have no article id: their shards and a (paragraph id → range) map from the paragraph shards are
   shuffled by hash of the paragraph id, joined bucket by bucket, and scattered by range.
   A range holds whole articles, so article statistics are exact within it.
3. **Judge.** Each range evaluates the rules (DuckDB, the SQL of ``views.py``) on its rows, in the
   subset's order, and keeps the rows they kept with the columns dedup compares. The driver adds up
   the ranges' row counts: a row's global position (``seq``) is its range's offset plus its position
   in the range, the same number one global sort would give.
4. **Dedup**, kind after kind, on the rows still kept:
   - exact kinds (``exact``, ``caption``, ``image``): each range drops the rows whose key an earlier
     row of the range has and writes its first row of each key hashed into buckets (the judge does
     this for the first kind); each bucket keeps the first row (lowest ``seq``) of every key, drops
     the others, and names the first row of each key a range dropped duplicates of;
   - ``near`` (bucketed MinHash): each range writes its rows' signatures and their LSH band keys,
     partitioned by key into buckets; each bucket turns rows sharing a band key into candidate pairs,
     partitioned by pair; each pair partition verifies its unique pairs on the signatures; the
     verified pairs, one edge per duplicate, are joined into clusters (``dedup.components``) whose
     first row stays.
   A dedup drop is written back to the range of the row dropped.
5. **Write.** Each range applies the drops and writes its kept rows (upsampled) and drop records in
   order; then each output shard of ``shard_rows`` rows is cut from the ranges it spans.

Nothing depends on the number of partitions, the executor, the number of workers or the order in
which tasks finish: the files are the ones a single global pass writes (``tests/filters/
test_same_outputs.py`` checks them against the single-process engine this replaced).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pmcurate import schema
from pmcurate.executor import Executor, LocalExecutor
from pmcurate.filters import dedup as dedup_mod
from pmcurate.filters import language, partition, views
from pmcurate.filters.rules import Rule

SAMPLES_PER_SHARD = 256
MEMORY_LIMIT = "1GB"
"""DuckDB's memory budget in one task; beyond it, sorts and joins spill to the work folder
(``PMCURATE_DUCKDB_MEMORY`` changes it)."""
EXACT_KINDS = {
    "exact": ("text", "dup_exact", "exact duplicate"),
    "caption": ("caption", "dup_caption", "identical caption"),
    "image": ("image_sha256", "dup_image", "identical image"),
}
"""Exact dedup kinds: the column compared, the rule name, the reason's words."""
HASHED_KINDS = frozenset({"exact", "caption"})
"""Kinds whose column is a text, compared by the hash of its normalized form (``dedup.exact_keys``)."""


@dataclass(frozen=True)
class Job:
    """What every task of one subset needs to know (small and picklable)."""

    build: Path
    work: Path
    name: str
    source: str
    unit: str
    rules: tuple[Rule, ...]
    upsample: tuple[tuple[Rule, int], ...]
    near: dedup_mod.NearDupConfig
    tables: tuple[str, ...]
    """The build tables a range reads (``articles``, the rows' table, ``labels`` when present)."""
    schemas: dict[str, pa.Schema]
    """The schema of each of those tables (for a range holding none of a table's rows)."""
    memory_limit: str
    threads: int
    boundaries: tuple[str, ...] = ()
    offsets: tuple[int, ...] = ()
    """``offsets[r]``: the ``seq`` of range r's first row; ``offsets[-1]``: every row."""
    dedup: tuple[str, ...] = ()
    """The dedup kinds, in order."""
    dedup_done: tuple[str, ...] = ()
    reads: dict[str, partition.Reads] = field(default_factory=dict)
    """The tables each range reads in place (the build's own shards); the others are scattered."""

    @property
    def ranges(self) -> int:
        return len(self.boundaries) + 1

    @property
    def view(self) -> str:
        return f"{self.unit}_rows"


@dataclass(frozen=True)
class Outcome:
    """What the engine found: counts by rule, rows in, kept and written, the dedup summary."""

    input_rows: int
    kept_rows: int
    output_rows: int
    dropped: dict[str, int]
    dedup: dict[str, object] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each phase (``partition``, ``rules``, each dedup kind, ``write``): for the step's
    report and logs, never written into the subset (its files do not depend on the machine)."""


# ---------------------------------------------------------------- helpers


def _range_dir(job: Job, what: str, r: int) -> Path:
    return job.work / what / f"r{r:05d}"


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def _bucket_of(values: pa.Array | pa.ChunkedArray | pl.Series, buckets: int, seed: int) -> np.ndarray:
    """A bucket in ``0..buckets-1`` for every value, from a hash that is the same in every process."""
    series = values if isinstance(values, pl.Series) else pl.Series(values)
    return (series.hash(seed=seed).to_numpy() % np.uint64(buckets)).astype(np.int64)


def range_of(job: Job, article_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The range of each article id: ranges are ``[boundaries[r-1], boundaries[r])``, nulls last
    (as DuckDB orders them)."""
    ids = np.asarray(article_ids.to_pylist(), dtype=object)
    nulls = np.array([v is None for v in ids], dtype=bool)
    ranks = np.zeros(len(ids), dtype=np.int64)
    if job.boundaries and (~nulls).any():
        ranks[~nulls] = np.searchsorted(np.asarray(job.boundaries, dtype=object), ids[~nulls], side="right")
    ranks[nulls] = job.ranges - 1
    return ranks


def range_of_seq(job: Job, seqs: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(job.offsets[1:], dtype=np.int64), seqs, side="right")


def connect_range(job: Job, r: int) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose table views hold range ``r`` of the build, with the row views."""
    con = duckdb.connect()
    spill = job.work / "duckdb" / f"{os.getpid()}"
    con.execute(f"SET temp_directory = {views.quote(str(spill))}")
    con.execute(f"SET memory_limit = {views.quote(job.memory_limit)}")
    con.execute(f"SET threads = {job.threads}")
    con.execute("SET preserve_insertion_order = false")
    for table in job.tables:
        _create_table_view(con, job, table, r)
    rules = [*job.rules, *(rule for rule, _ in job.upsample)]
    views.create_views(con, job.source, stats=job.unit == "article" or views.reads_stats(rules))
    if any("detect_language" in rule.functions for rule in rules):
        language.register(con)
    return con


def _create_table_view(con: duckdb.DuckDBPyConnection, job: Job, table: str, r: int) -> None:
    """View ``table``: range ``r``'s rows of it, from the build's shards that may hold them (only
    its own rows kept) or from its scattered part; with every column of the table."""
    reads = job.reads.get(table)
    files = list(reads.files[r]) if reads else _files(_range_dir(job, f"scatter/{table}", r))
    if not files:
        con.register(f"empty_{table}", job.schemas[table].empty_table())
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM empty_{table}")
        return
    listing = ", ".join(views.quote(str(p)) for p in files)
    query = f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"
    if reads and reads.filtered[r]:
        query += f" WHERE {_range_condition(job, r)}"
    if reads and reads.narrow[r]:  # columns only other shards have, null here
        con.register(f"empty_{table}", job.schemas[table].empty_table())
        query = f"{query} UNION ALL BY NAME SELECT * FROM empty_{table}"
    con.execute(f"CREATE VIEW {table} AS {query}")


def _range_condition(job: Job, r: int) -> str:
    """SQL: the article id is range ``r``'s (``range_of``: null ids in the last range)."""
    conditions = []
    if r > 0:
        conditions.append(f"article_id >= {views.quote(job.boundaries[r - 1])}")
    if r < job.ranges - 1:
        conditions.append(f"article_id < {views.quote(job.boundaries[r])}")
    elif r > 0:
        conditions[-1] = f"({conditions[-1]} OR article_id IS NULL)"
    return " AND ".join(conditions) or "true"


# ---------------------------------------------------------------- 1. ranges


def sample_task(args: tuple[Path, int]) -> tuple[int, list[str | None]]:
    """A shard's row count and every ``step``-th of its sorted article ids (nulls last)."""
    path, samples = args
    ids = pq.read_table(path, columns=["article_id"]).column("article_id")
    n = len(ids)
    ordered = pl.Series(ids).sort(nulls_last=True)
    step = max(1, math.ceil(n / samples))
    return n, ordered.gather_every(step).to_list()


def boundaries(samples: Iterable[tuple[int, list[str | None]]], partition_rows: int) -> tuple[str, ...]:
    """Range boundaries from the shards' samples: about ``partition_rows`` rows a range."""
    total = 0
    weighted: list[tuple[str, float]] = []
    for n, ids in samples:
        total += n
        weighted += [(i, n / len(ids)) for i in ids if i is not None]
    ranges = max(1, math.ceil(total / partition_rows))
    if ranges == 1 or not weighted:
        return ()
    weighted.sort()
    cuts: list[str] = []
    seen, target = 0.0, total / ranges
    for article, weight in weighted:
        if seen >= target * (len(cuts) + 1) and (not cuts or article > cuts[-1]):
            cuts.append(article)
        seen += weight
    return tuple(cuts[: ranges - 1])


# ---------------------------------------------------------------- 2. scatter

LABEL_BUCKET_SEED = 0x1AB5


def _labels_scattered(job: Job) -> bool:
    return "labels" in job.tables and "labels" not in job.reads


def scatter_task(args: tuple[Job, str, int, Path]) -> int:
    """Write the rows of one shard of ``table`` split by range (unless the ranges read the table in
    place); for paragraphs when labels are scattered, also the (paragraph id → range) map, by hash
    bucket of the paragraph id."""
    job, table, s, path = args
    data = pq.read_table(path, columns=["article_id", "paragraph_id"] if table in job.reads else None)
    ranks = range_of(job, data.column("article_id"))
    for r in np.unique(ranks) if table not in job.reads else ():
        _write(
            data.filter(pa.array(ranks == r)),
            _range_dir(job, f"scatter/{table}", int(r)) / f"s{s:05d}.parquet",
        )
    if table == "paragraphs" and _labels_scattered(job):
        ids = data.column("paragraph_id")
        buckets = _bucket_of(ids, job.ranges, LABEL_BUCKET_SEED)
        mapping = pa.table({"paragraph_id": ids, "range": pa.array(ranks)})
        for b in np.unique(buckets):
            _write(
                mapping.filter(pa.array(buckets == b)),
                job.work / "labelmap" / f"b{b:05d}" / f"s{s:05d}.parquet",
            )
    return data.num_rows


def label_hash_task(args: tuple[Job, int, Path]) -> int:
    """Write one labels shard split by hash bucket of the paragraph id."""
    job, t, path = args
    data = pq.read_table(path)
    buckets = _bucket_of(data.column("paragraph_id"), job.ranges, LABEL_BUCKET_SEED)
    for b in np.unique(buckets):
        _write(
            data.filter(pa.array(buckets == b)), job.work / "labelhash" / f"b{b:05d}" / f"t{t:05d}.parquet"
        )
    return data.num_rows


def label_join_task(args: tuple[Job, int]) -> int:
    """Join one hash bucket of labels with the paragraphs' ranges; write the labels by range."""
    job, b = args
    labels = _files(job.work / "labelhash" / f"b{b:05d}")
    mapping = _files(job.work / "labelmap" / f"b{b:05d}")
    if not labels or not mapping:
        return 0
    con = duckdb.connect()
    try:
        listing = ", ".join(views.quote(str(p)) for p in labels)
        maps = ", ".join(views.quote(str(p)) for p in mapping)
        joined = con.sql(
            f"""SELECT l.*, m.range AS __range
            FROM read_parquet([{listing}], union_by_name = true) l
            JOIN (SELECT DISTINCT paragraph_id, range FROM read_parquet([{maps}])) m
              ON m.paragraph_id = l.paragraph_id"""
        ).to_arrow_table()
    finally:
        con.close()
    ranks = schema.numpy_of(joined.column("__range"))
    joined = joined.drop_columns(["__range"]).cast(job.schemas["labels"])
    for r in np.unique(ranks):
        _write(
            joined.filter(pa.array(ranks == r)),
            _range_dir(job, "scatter/labels", int(r)) / f"b{b:05d}.parquet",
        )
    return joined.num_rows


# ---------------------------------------------------------------- 3. judge


def judge_task(args: tuple[Job, int]) -> tuple[int, int]:
    """Evaluate the rules on range ``r`` (positions in the range: ``seq`` plus the range's offset
    is the row's global position); ``r`` and its row count. With dedup, also the rows the rules
    kept, with the columns dedup compares (``_survivors`` reads them), and the keys of the first
    dedup kind when it is an exact one."""
    job, r = args
    con = connect_range(job, r)
    try:
        views.judge(con, job.rules, job.view, job.unit)
        folder = _range_dir(job, "judged", r)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "judged.parquet"
        con.execute(f"COPY (SELECT * FROM judged ORDER BY seq) TO {views.quote(str(path))} (FORMAT parquet)")
        n = con.execute("SELECT count(*) FROM judged").fetchall()[0][0]
        columns = sorted({EXACT_KINDS.get(kind, ("text",))[0] for kind in job.dedup})
        kept = views.survivors(con, job.unit, columns, 100_000).read_all() if job.dedup else None
    finally:
        con.close()
    if kept is not None:
        kept = kept.cast(pa.schema([pa.field(f.name, _plain(f.type)) for f in kept.schema]))
        if job.dedup[0] in EXACT_KINDS:  # a later kind sees none of the rows this one drops here
            kept = kept.filter(pa.array(_exact_keys(job, job.dedup[0], r, kept)))
        if len(job.dedup) > 1 or job.dedup[0] not in EXACT_KINDS:
            with (
                pa.OSFile(str(folder / "survivors.arrow"), "wb") as sink,
                pa.ipc.new_file(sink, kept.schema) as writer,
            ):
                writer.write_table(kept)
    return r, int(n)


def _plain(kind: pa.DataType) -> pa.DataType:
    """``string`` for DuckDB's ``large_string`` or ``string_view`` (what Polars hashes alike)."""
    return pa.string() if pa.types.is_large_string(kind) or pa.types.is_string_view(kind) else kind


def _survivors(job: Job, r: int) -> pa.Table:
    """Range ``r``'s rows still kept by the rules and the dedup kinds done (``seq``: positions in
    the range, ``id`` and the columns dedup compares), in order."""
    with pa.memory_map(str(_range_dir(job, "judged", r) / "survivors.arrow")) as source:
        kept = pa.ipc.open_file(source).read_all()
    dropped = schema.numpy_of(_dedup_drops(job, r).column("seq")) - job.offsets[r]
    if len(dropped):
        kept = kept.filter(pa.array(~np.isin(schema.numpy_of(kept.column("seq")), dropped)))
    return kept


# ---------------------------------------------------------------- 4a. exact dedup


def exact_keys_task(args: tuple[Job, str, int]) -> int:
    """Keys of range ``r``'s kept rows for exact kind ``kind`` (``_exact_keys``)."""
    job, kind, r = args
    return int(_exact_keys(job, kind, r, _survivors(job, r)).sum())


def _exact_keys(job: Job, kind: str, r: int, kept: pa.Table) -> np.ndarray:
    """Exact kind ``kind`` within range ``r``: of the rows of ``kept`` that share a key, the first
    is written to the key's hash bucket (``exact_bucket_task`` finds which of them is first in the
    whole subset), and the others (duplicates whatever the other ranges hold) to ``local/``, with
    the position of their range's first. Positions are in the range (the judge writes the first
    kind's keys before the ranges' offsets are known). Whether each row may stay (first, or keyless)."""
    values = kept.column(EXACT_KINDS[kind][0])
    keys = dedup_mod.exact_keys(values) if kind in HASHED_KINDS else pa.table({"key": values})
    names = keys.column_names
    frame = pl.DataFrame(keys).with_columns(
        seq=pl.Series(kept.column("seq")), id=pl.Series(kept.column("id"))
    )
    frame = frame.filter(pl.col(names[0]).is_not_null())
    frame = frame.with_columns(first=pl.col("seq").first().over(names), dups=pl.len().over(names) - 1)
    firsts = frame.filter(pl.col("seq") == pl.col("first"))
    buckets = _bucket_of(firsts[names[0]], job.ranges, 0xE7AC)
    firsts = firsts.select(*names, "seq", "id", "dups").with_columns(range=pl.lit(r, pl.Int32))
    for b in np.unique(buckets):
        _write(
            firsts.filter(pl.Series(buckets == b)).to_arrow(),
            job.work / f"keys/{kind}/b{b:05d}" / f"r{r:05d}.parquet",
        )
    local = frame.filter(pl.col("seq") != pl.col("first")).select("seq", "first")
    _write(local.to_arrow(), job.work / f"keys/{kind}/local" / f"r{r:05d}.parquet")
    return ~np.isin(schema.numpy_of(kept.column("seq")), local["seq"].to_numpy())


def exact_bucket_task(args: tuple[Job, str, int]) -> int:
    """In one bucket of the ranges' first rows of each key, drop every row whose key an earlier row
    (lower ``seq``) has, written by range; and, for each row with duplicates in its own range, the
    id of the first row of its key (``_local_drops`` drops them)."""
    job, kind, b = args
    files = _files(job.work / f"keys/{kind}/b{b:05d}")
    if not files:
        return 0
    keyed = pl.read_parquet(files)
    offsets = np.asarray(job.offsets[:-1], dtype=np.int64)[keyed["range"].to_numpy()]
    keyed = keyed.with_columns(pl.Series("seq", keyed["seq"].to_numpy() + offsets)).drop("range")
    keys = [c for c in keyed.columns if c not in ("seq", "id", "dups")]
    first = (
        keyed.sort("seq")
        .group_by(keys, maintain_order=True)
        .agg(pl.col("seq").first().alias("first_seq"), pl.col("id").first().alias("representative"))
    )
    joined = keyed.join(first, on=keys)
    dropped = joined.filter(pl.col("seq") != pl.col("first_seq")).sort("seq")
    _, rule, what = EXACT_KINDS[kind]
    _write_drops(
        job,
        kind,
        f"b{b:05d}",
        dropped["seq"].to_numpy(),
        dropped["representative"].to_list(),
        rule,
        f"{what} of ",
    )
    reps = joined.filter(pl.col("dups") > 0).select("seq", "representative").sort("seq")
    ranks = range_of_seq(job, reps["seq"].to_numpy())
    for r in np.unique(ranks):
        _write(
            reps.filter(pl.Series(ranks == r)).to_arrow(),
            job.work / f"keys/{kind}/reps/r{r:05d}" / f"b{b:05d}.parquet",
        )
    return dropped.height


def _dedup_drops(job: Job, r: int) -> pa.Table:
    """Range ``r``'s rows the dedup kinds done dropped: ``seq``, ``rule``, ``reason``, ``cluster``."""
    parts = [
        pq.read_table(path) for kind in job.dedup_done for path in _files(_range_dir(job, f"dups/{kind}", r))
    ]
    parts += [_local_drops(job, kind, r) for kind in job.dedup_done if kind in EXACT_KINDS]
    return pa.concat_tables(parts) if parts else DEDUP_DROPS.empty_table()


DEDUP_DROPS = pa.schema(
    [("seq", pa.int64()), ("rule", pa.string()), ("reason", pa.string()), ("cluster", pa.string())]
)


def _local_drops(job: Job, kind: str, r: int) -> pa.Table:
    """The rows exact kind ``kind`` dropped in range ``r`` as duplicates of an earlier row of the
    range: their representative is the first row of their key (``exact_bucket_task``)."""
    local = pl.read_parquet(job.work / f"keys/{kind}/local" / f"r{r:05d}.parquet")
    if not local.height:
        return DEDUP_DROPS.empty_table()
    reps = pl.read_parquet(_files(job.work / f"keys/{kind}/reps/r{r:05d}"))
    offset = job.offsets[r]
    _, rule, what = EXACT_KINDS[kind]
    found = (
        local.with_columns(pl.col("seq") + offset, pl.col("first") + offset)
        .join(reps, left_on="first", right_on="seq", how="left", maintain_order="left")
        .select(
            "seq",
            rule=pl.lit(rule),
            reason=pl.concat_str(pl.lit(f"{what} of "), pl.col("representative")),
            cluster="representative",
        )
    )
    return found.to_arrow().cast(DEDUP_DROPS)


def _write_drops(
    job: Job, kind: str, name: str, seqs: np.ndarray, representatives: Sequence[str], rule: str, why: str
) -> None:
    """Dedup drops (``seq``, rule, reason, cluster), each in the folder of its row's range."""
    drops = pa.table(
        {
            "seq": pa.array(seqs, pa.int64()),
            "rule": pa.array([rule] * len(seqs), pa.string()),
            "reason": pa.array([why + rep for rep in representatives], pa.string()),
            "cluster": pa.array(representatives, pa.string()),
        }
    )
    ranks = range_of_seq(job, np.asarray(seqs, dtype=np.int64))
    for r in np.unique(ranks):
        _write(
            drops.filter(pa.array(ranks == r)), _range_dir(job, f"dups/{kind}", int(r)) / f"{name}.parquet"
        )


# ---------------------------------------------------------------- 4b. near dedup


def _near_dir(job: Job) -> Path:
    return job.work / "near"


def signatures_task(args: tuple[Job, int]) -> int:
    """MinHash signatures of range ``r``'s kept rows (file ``sig/rNNNNN``, in ``seq`` order) and
    their band keys, partitioned by key into buckets (``bands/bNNNNN/rNNNNN.npy``)."""
    job, r = args
    config = job.near
    bands, rows_per_band = dedup_mod.lsh_bands(config.threshold, config.num_perm)
    kept = _survivors(job, r)
    seqs, keys = [], []
    folder = _near_dir(job) / "sig"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"r{r:05d}.u32", "wb") as sink:
        for start in range(0, kept.num_rows, config.batch_rows):
            batch = kept.slice(start, config.batch_rows)
            seq = schema.numpy_of(batch.column("seq")) + job.offsets[r]
            sigs = dedup_mod.signatures(batch.column("text").combine_chunks(), config, row_ids=seq)
            sink.write(sigs.tobytes())
            seqs.append(seq)
            keys.append(dedup_mod.band_keys(sigs, bands, rows_per_band))
    seq = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    np.save(folder / f"r{r:05d}.seq.npy", seq)
    if not len(seq):
        return 0
    key = np.concatenate(keys)  # n × bands
    band = np.broadcast_to(np.arange(bands, dtype=np.int64), key.shape).ravel()
    rows = np.repeat(seq, bands)
    flat = key.ravel()
    buckets = (flat % np.uint64(job.ranges)).astype(np.int64)
    for q in np.unique(buckets):
        mask = buckets == q
        out = _near_dir(job) / "bands" / f"b{q:05d}"
        out.mkdir(parents=True, exist_ok=True)
        np.save(
            out / f"r{r:05d}.npy",
            np.stack([band[mask].astype(np.uint64), flat[mask], rows[mask].astype(np.uint64)]),
        )
    return len(seq)


def bucket_task(args: tuple[Job, int]) -> int:
    """Candidate pairs of one bucket: rows sharing a key in one band (``dedup.candidate_pairs``,
    rows taken in ``seq`` order), written partitioned by pair."""
    job, q = args
    files = sorted((_near_dir(job) / "bands" / f"b{q:05d}").glob("*.npy"))
    if not files:
        return 0
    band, key, seq = np.concatenate([np.load(f) for f in files], axis=1)
    seq = seq.astype(np.int64)
    found = []
    for b in np.unique(band):
        mask = band == b
        rows, keys = seq[mask], key[mask]
        order = np.argsort(rows, kind="stable")
        rows, keys = rows[order], keys[order]
        found.append(rows[dedup_mod.candidate_pairs(keys)])
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    part = _pair_partition(pairs[:, 0], job.ranges)
    for h in np.unique(part):
        out = _near_dir(job) / "pairs" / f"h{h:05d}"
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / f"b{q:05d}.npy", pairs[part == h])
    return len(pairs)


def _pair_partition(first: np.ndarray, partitions: int) -> np.ndarray:
    return (dedup_mod.mix64(first.astype(np.uint64)) % np.uint64(partitions)).astype(np.int64)


def verify_task(args: tuple[Job, int]) -> tuple[int, int]:
    """Verify one partition's unique candidate pairs on their signatures; write the verified ones.
    Returns (unique candidate pairs, verified pairs)."""
    job, h = args
    files = sorted((_near_dir(job) / "pairs" / f"h{h:05d}").glob("*.npy"))
    if not files:
        return 0, 0
    pairs = np.unique(np.concatenate([np.load(f) for f in files]), axis=0)
    nodes, inverse = np.unique(pairs, return_inverse=True)
    sigs = _signatures_of(job, nodes)
    local = inverse.reshape(pairs.shape)
    verified = pairs[dedup_mod.verified(local, sigs, job.near.threshold)]
    out = _near_dir(job) / "edges"
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"h{h:05d}.npy", verified)
    return len(pairs), len(verified)


def _signatures_of(job: Job, seqs: np.ndarray) -> np.ndarray:
    """The signatures of rows ``seqs`` (sorted), read from their ranges' signature files."""
    out = np.zeros((len(seqs), job.near.num_perm), dtype=np.uint32)
    ranks = range_of_seq(job, seqs)
    folder = _near_dir(job) / "sig"
    for r in np.unique(ranks):
        wanted = np.flatnonzero(ranks == r)
        order = np.load(folder / f"r{r:05d}.seq.npy")
        positions = np.searchsorted(order, seqs[wanted])
        stored = np.memmap(
            folder / f"r{r:05d}.u32", dtype=np.uint32, mode="r", shape=(len(order), job.near.num_perm)
        )
        out[wanted] = stored[positions]
        del stored
    return out


def union(job: Job) -> int:
    """Join the verified pairs into clusters; drop every row but each cluster's first (lowest
    ``seq``). Memory follows the duplicates found, not the rows."""
    files = sorted((_near_dir(job) / "edges").glob("*.npy"))
    edges = np.concatenate([np.load(f) for f in files]) if files else np.zeros((0, 2), np.int64)
    if not len(edges):
        return 0
    nodes, inverse = np.unique(edges, return_inverse=True)
    labels = dedup_mod.components(len(nodes), inverse.reshape(edges.shape))
    rows = np.flatnonzero(labels != np.arange(len(nodes)))
    seqs, reps = nodes[rows], nodes[labels[rows]]
    ids = _ids_of(job, reps)
    why = f"near duplicate (MinHash Jaccard >= {job.near.threshold:g}) of "
    _write_drops(job, "near", "near", seqs, ids, "dup_near", why)
    return len(rows)


def _ids_of(job: Job, seqs: np.ndarray) -> list[str]:
    """The ids of rows ``seqs``, from their ranges' verdict files."""
    unique, inverse = np.unique(seqs, return_inverse=True)
    found = np.empty(len(unique), dtype=object)
    ranks = range_of_seq(job, unique)
    for r in np.unique(ranks):
        wanted = np.flatnonzero(ranks == r)
        judged = pq.read_table(_range_dir(job, "judged", int(r)) / "judged.parquet", columns=["seq", "id"])
        order = schema.numpy_of(judged.column("seq")) + job.offsets[int(r)]
        found[wanted] = np.asarray(judged.column("id").to_pylist(), dtype=object)[
            np.searchsorted(order, unique[wanted])
        ]
    return list(found[inverse])


# ---------------------------------------------------------------- 5. write


def finish_task(args: tuple[Job, int]) -> dict[str, Any]:
    """Range ``r``'s kept rows (upsampled) and drop records, in order, to ``out/`` and ``drops/``;
    its counts by rule and rows written."""
    job, r = args
    verdicts = _verdicts(job, r)
    rule = verdicts.column("rule")
    counts = {row["values"]: row["counts"] for row in pc.value_counts(pc.fill_null(rule, "")).to_pylist()}
    dropped = verdicts.filter(pc.is_valid(rule))
    n = dropped.num_rows
    drops = pa.table(
        [
            dropped.column("id"),
            pa.repeat(job.name, n),
            pa.repeat(job.unit, n),
            *dropped.select(["rule", "reason", "cluster"]).columns,
        ],
        schema=schema.DROPS,
    )
    _write(drops, job.work / "drops" / f"r{r:05d}.parquet")
    kept = verdicts.filter(pc.is_null(rule)).select(["id", "rule"])
    out = job.work / "out" / f"r{r:05d}.parquet"
    if not kept.num_rows:
        _write(_out_schema(job).empty_table(), out)
        return {"range": r, "counts": counts, "written": 0, "drops": n}
    con = connect_range(job, r)
    try:
        con.register("judged", kept)
        query, out_schema = views.output_select(con, job.source, job.unit, job.upsample)
        written = _stream(con.sql(query).to_arrow_reader(50_000), out_schema, out)
    finally:
        con.close()
    return {"range": r, "counts": counts, "written": written, "drops": n}


def _verdicts(job: Job, r: int) -> pa.Table:
    """Range ``r``'s rows in order: ``id``, and the ``rule`` that dropped each (null if kept), its
    ``reason`` and ``cluster``: the rules' verdicts, then the dedup kinds' drops."""
    judged = pq.read_table(
        _range_dir(job, "judged", r) / "judged.parquet", columns=["id", "rule", "reason", "cluster"]
    )
    dups = _dedup_drops(job, r)
    if not dups.num_rows:
        return judged
    # row i of ``judged`` is the range's row i (seq = offset + i); each row is dropped once at most
    index = np.full(judged.num_rows, -1, dtype=np.int64)
    index[schema.numpy_of(dups.column("seq")) - job.offsets[r]] = np.arange(dups.num_rows)
    where = pa.array(index, mask=index < 0)
    columns = {
        name: pc.coalesce(pc.take(dups.column(name), where), judged.column(name)).cast(pa.string())
        for name in ("rule", "reason", "cluster")
    }
    return pa.table({"id": judged.column("id"), **columns})


def _stream(reader: pa.RecordBatchReader, out_schema: pa.Schema, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(path, out_schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]).cast(out_schema))
            rows += batch.num_rows
    return rows


@dataclass(frozen=True)
class Piece:
    path: Path
    start: int
    rows: int


def shard_pieces(paths: Sequence[Path], sizes: Sequence[int], shard_rows: int) -> list[list[Piece]]:
    """The pieces of the range files each output shard of ``shard_rows`` rows is cut from (at least
    one shard, maybe empty, so that a subset always has a schema to read)."""
    shards: list[list[Piece]] = [[]]
    room = shard_rows
    for path, size in zip(paths, sizes, strict=True):
        start = 0
        while start < size:
            if room == 0:
                shards.append([])
                room = shard_rows
            take = min(room, size - start)
            shards[-1].append(Piece(path, start, take))
            start += take
            room -= take
    return shards


def write_shard_task(args: tuple[list[Piece], pa.Schema, Path]) -> int:
    """Write one output shard from its pieces."""
    pieces, out_schema, path = args
    parts = [_read_piece(piece) for piece in pieces]
    table = pa.concat_tables(parts) if parts else out_schema.empty_table()
    schema.write_shard(table.cast(out_schema), path)
    return table.num_rows


def _read_piece(piece: Piece) -> pa.Table:
    """Rows ``start .. start + rows`` of a range file, reading only the row groups they span."""
    handle = pq.ParquetFile(piece.path)
    batches, seen = [], 0
    for g in range(handle.num_row_groups):
        size = handle.metadata.row_group(g).num_rows
        if seen + size > piece.start and seen < piece.start + piece.rows:
            group = handle.read_row_group(g)
            lo = max(0, piece.start - seen)
            hi = min(size, piece.start + piece.rows - seen)
            batches.append(group.slice(lo, hi - lo))
        seen += size
    return pa.concat_tables(batches)


# ---------------------------------------------------------------- the driver


def _map(
    runner: Executor, job: Job, fn: Callable[[Any], Any], items: Sequence[Any], desc: str, progress: bool
) -> list[Any]:
    """``fn`` of every item on ``runner``. The tasks read the tables of ``job`` and its work folder
    (the workers of a URL build pull them: ``executor.UrlBuildExecutor``)."""
    reads = [*(schema.table_dir(job.build, table) for table in job.tables), job.work]
    return list(runner.map(fn, items, desc=desc, progress=progress, reads=reads))


def run(
    job: Job,
    dedup: Sequence[str],
    out: Path,
    shard_rows: int,
    partition_rows: int,
    executor: Executor | None,
    progress: bool,
) -> Outcome:
    """Run the subset's tasks on ``executor`` (this process when None) and write its shards into
    ``out``."""
    runner = executor or LocalExecutor(1)
    clock = _Clock()
    job = _partition(replace(job, dedup=tuple(dedup)), runner, partition_rows, progress)
    clock.lap("partition")
    judged = _map(runner, job, judge_task, [(job, r) for r in range(job.ranges)], "subset: rules", progress)
    clock.lap("rules")
    sizes = [n for _, n in sorted(judged)]  # tasks finish in any order
    job = replace(job, offsets=tuple(int(v) for v in np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))))
    summary: dict[str, object] = {"kinds": list(dedup)}
    for kind in dedup:
        if kind == "near":
            summary["near"] = _near(job, runner, progress)
        else:
            items = [(job, kind, r) for r in range(job.ranges)]
            if job.dedup_done:  # the first kind's keys were written with the verdicts
                _map(runner, job, exact_keys_task, items, f"subset: {kind} keys", progress)
            _map(runner, job, exact_bucket_task, items, f"subset: {kind} duplicates", progress)
        job = replace(job, dedup_done=(*job.dedup_done, kind))
        clock.lap(f"dedup {kind}")
    finished = sorted(
        _map(runner, job, finish_task, [(job, r) for r in range(job.ranges)], "subset: write", progress),
        key=lambda result: result["range"],
    )
    counts: dict[str, int] = {}
    for result in finished:
        for rule, n in result["counts"].items():
            counts[rule] = counts.get(rule, 0) + int(n)
    written = _write_shards(
        job, runner, finished, "out", "written", out, shard_rows, _out_schema(job), progress
    )
    _write_shards(job, runner, finished, "drops", "drops", out / "drops", shard_rows, schema.DROPS, False)
    clock.lap("write")
    input_rows = sum(counts.values())
    kept = counts.pop("", 0)
    return Outcome(input_rows, kept, written, dict(sorted(counts.items())), summary, clock.seconds)


class _Clock:
    """Wall time of consecutive phases."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self._last
        self._last = now


def _out_schema(job: Job) -> pa.Schema:
    return schema.SUBSET_FIGURES if job.source == "figures" else schema.SUBSET_PARAGRAPHS


KEYS = {"labels": ("paragraph_id",), "paragraphs": ("article_id", "paragraph_id")}
"""The key columns whose bounds a table's footers give (``article_id`` for the others)."""


def _partition(job: Job, runner: Executor, partition_rows: int, progress: bool) -> Job:
    """The ranges' boundaries, and how each range reads each table: in place, or scattered (the
    scattering done here)."""
    items = [
        (table, path, KEYS.get(table, ("article_id",)))
        for table in job.tables
        for path in schema.shard_paths(job.build, table)
    ]
    batches = [items[k :: runner.workers] for k in range(min(runner.workers, len(items)))]  # footers: quick
    surveyed = sorted(
        (
            found
            for batch in _map(runner, job, survey_task, batches, "subset: ranges", progress)
            for found in batch
        ),
        key=lambda t: t[1].path,
    )
    shards = {table: [shard for name, shard in surveyed if name == table] for table in job.tables}
    source = shards[job.source]
    if partition.disjoint(source):
        wanted = partition.ranges_wanted(sum(s.rows for s in source), partition_rows, runner.workers)
        cuts = partition.shard_boundaries(source, wanted)
    else:
        paths = [s.path for s in source]
        samples = _map(
            runner, job, sample_task, [(p, SAMPLES_PER_SHARD) for p in paths], "subset: ranges", progress
        )
        cuts = boundaries(samples, partition_rows)
    reads: dict[str, partition.Reads] = {}
    for table in job.tables:
        if table == "labels":
            if job.source not in reads:
                continue
            found = partition.label_reads(shards[table], shards[job.source], reads[job.source])
        else:
            found = partition.article_reads(shards[table], cuts)
        if partition.overread(found, shards[table]) <= partition.MAX_OVERREAD:
            reads[table] = found
    job = replace(job, boundaries=cuts, reads=reads)
    if len(reads) < len(job.tables):
        _scatter(job, runner, progress)
    return job


def survey_task(items: Sequence[tuple[str, Path, Sequence[str]]]) -> list[tuple[str, partition.Shard]]:
    """Shards of tables: their rows and the bounds of their key columns, from their footers."""
    return [(table, partition.survey(path, columns)) for table, path, columns in items]


def _scatter(job: Job, runner: Executor, progress: bool) -> None:
    """Scatter the tables the ranges do not read in place."""
    items = [
        (job, table, s, path)
        for table in job.tables
        if table not in job.reads or (table == "paragraphs" and _labels_scattered(job))
        if table != "labels"
        for s, path in enumerate(schema.shard_paths(job.build, table))
    ]
    _map(runner, job, scatter_task, items, "subset: partition", progress)
    if _labels_scattered(job):
        shards = [(job, t, path) for t, path in enumerate(schema.shard_paths(job.build, "labels"))]
        _map(runner, job, label_hash_task, shards, "subset: partition labels", progress)
        _map(
            runner,
            job,
            label_join_task,
            [(job, b) for b in range(job.ranges)],
            "subset: join labels",
            progress,
        )


def _near(job: Job, runner: Executor, progress: bool) -> dict[str, object]:
    """Near dedup's tasks; what ``subset.json`` records about it."""
    ranges = [(job, r) for r in range(job.ranges)]
    _map(runner, job, signatures_task, ranges, "subset: near signatures", progress)
    _map(runner, job, bucket_task, ranges, "subset: near buckets", progress)
    verified = _map(runner, job, verify_task, ranges, "subset: near pairs", progress)
    union(job)
    return {
        **asdict(job.near),
        "lsh": dedup_mod.describe(job.near),
        "candidate_pairs": sum(c for c, _ in verified),
        "verified_pairs": sum(v for _, v in verified),
    }


def _write_shards(
    job: Job,
    runner: Executor,
    finished: Sequence[dict[str, Any]],
    what: str,
    count: str,
    folder: Path,
    shard_rows: int,
    out_schema: pa.Schema,
    progress: bool,
) -> int:
    paths = [job.work / what / f"r{result['range']:05d}.parquet" for result in finished]
    sizes = [int(result[count]) for result in finished]
    shards = shard_pieces(paths, sizes, shard_rows)
    items = [(pieces, out_schema, folder / f"part-{k:05d}.parquet") for k, pieces in enumerate(shards)]
    _map(runner, job, write_shard_task, items, f"subset: {what} shards", progress)
    return sum(sizes)


def summary_json(summary: dict[str, object]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def remove_work(job: Job) -> None:
    shutil.rmtree(job.work, ignore_errors=True)
