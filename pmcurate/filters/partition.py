"""How a subset's ranges read the build: in place where the shards allow it, else scattered.

A range is the rows whose article id lies in ``[boundaries[r-1], boundaries[r])`` (null ids in
the last range). Harvest shards usually hold consecutive articles: each shard's Parquet footer then
says which ranges it can hold rows of (the smallest and largest article id of its row groups), and a
range reads the few shards that overlap it, in place, instead of a copy of its rows scattered by
the engine. When the source's shards are disjoint, the boundaries are put at shard starts, so a
range reads whole shards and filters nothing.

A table is read in place when that reads each row about once (``MAX_OVERREAD``); shards whose ids
interleave (every shard holding articles from everywhere) are scattered as before. Labels carry no
article id: a range reads the labels shards whose paragraph ids overlap those of the paragraph
shards it reads (a label row it does not need joins no paragraph of the range).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

MAX_OVERREAD = 1.25
"""A table is read in place when its ranges read at most this many times its rows."""
MIN_SPLIT_ROWS = 20_000
"""Rows a range holds at least when a build of fewer than ``partition_rows`` rows is split into
ranges so that every worker has one."""


@dataclass(frozen=True)
class Bounds:
    """What a shard's footer says about one key column: the smallest and largest non-null value
    (None when it holds no non-null value) and whether it may hold nulls."""

    low: str | None
    high: str | None
    nulls: bool


@dataclass(frozen=True)
class Shard:
    """A shard of a table the subset reads: its path, rows, and the bounds of its key columns
    (``article_id``, ``paragraph_id``) where every row group has statistics."""

    path: Path
    rows: int
    bounds: dict[str, Bounds]
    columns: frozenset[str]


@dataclass(frozen=True)
class Reads:
    """The shards of one table read in place: ``files[r]`` by range r, ``filtered[r]`` when some of
    them hold rows of other ranges (range r keeps only its own), ``narrow[r]`` when they lack
    columns other shards of the table have (range r adds them, null)."""

    files: tuple[tuple[Path, ...], ...]
    filtered: tuple[bool, ...]
    narrow: tuple[bool, ...]


def survey(path: Path, columns: Sequence[str]) -> Shard:
    """The shard at ``path`` from its footer: rows and the bounds of ``columns`` it has."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    bounds = {}
    for column in columns:
        if column in names:
            found = _bounds(meta, names.index(column))
            if found is not None:
                bounds[column] = found
    return Shard(path, meta.num_rows, bounds, frozenset(meta.schema.to_arrow_schema().names))


def _bounds(meta: pq.FileMetaData, index: int) -> Bounds | None:
    lows, highs, nulls = [], [], False
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows == 0:
            continue
        stats = group.column(index).statistics
        if stats is None or not stats.has_null_count:
            return None
        nulls = nulls or stats.null_count > 0
        if stats.null_count == group.num_rows:
            continue
        if not stats.has_min_max or not isinstance(stats.min, str):
            return None
        lows.append(stats.min)
        highs.append(stats.max)
    return Bounds(min(lows) if lows else None, max(highs) if highs else None, nulls)


def disjoint(shards: Sequence[Shard], column: str = "article_id") -> bool:
    """Whether every shard has bounds and no two share an id: each then goes whole to one range
    (except null ids, which go to the last)."""
    known = [s.bounds.get(column) for s in shards]
    if any(b is None for b in known):
        return False
    spans = sorted(
        (b.low, b.high) for b in known if b is not None and b.low is not None and b.high is not None
    )
    return all(high < low for (_, high), (low, _) in itertools.pairwise(spans))


def ranges_wanted(total: int, partition_rows: int, workers: int) -> int:
    """How many ranges: about ``partition_rows`` rows each, and one a worker when every range still
    gets ``MIN_SPLIT_ROWS`` rows (the tasks of a single range use one worker)."""
    return max(1, math.ceil(total / partition_rows), min(workers, total // MIN_SPLIT_ROWS))


def shard_boundaries(shards: Sequence[Shard], ranges: int) -> tuple[str, ...]:
    """Boundaries at shard starts cutting disjoint ``shards`` into about ``ranges`` ranges of about
    the same number of rows (fewer when there are fewer shards with ids)."""
    starts = sorted((low, s.rows) for s in shards if (low := s.bounds["article_id"].low) is not None)
    total = sum(rows for _, rows in starts)
    cuts: list[str] = []
    seen = 0
    for low, rows in starts:
        if seen >= total * (len(cuts) + 1) / ranges and len(cuts) < ranges - 1:
            cuts.append(low)
        seen += rows
    return tuple(cuts)


def _interval(boundaries: Sequence[str], r: int) -> tuple[str | None, str | None]:
    """Range r's ids: ``[low, high)``, None where unbounded."""
    return (boundaries[r - 1] if r > 0 else None, boundaries[r] if r < len(boundaries) else None)


def _article_overlap(bounds: Bounds | None, boundaries: Sequence[str], r: int) -> tuple[bool, bool]:
    """(whether a shard with these article-id bounds may hold rows of range r, whether all its rows
    are range r's)."""
    last = r == len(boundaries)
    if bounds is None:
        return True, len(boundaries) == 0
    low, high = _interval(boundaries, r)
    nulls_here = bounds.nulls and last
    if bounds.low is None or bounds.high is None:  # only nulls
        return nulls_here, nulls_here
    overlaps = (high is None or bounds.low < high) and (low is None or bounds.high >= low)
    inside = (high is None or bounds.high < high) and (low is None or bounds.low >= low)
    return overlaps or nulls_here, inside and (last or not bounds.nulls)


def article_reads(shards: Sequence[Shard], boundaries: Sequence[str]) -> Reads:
    """Each range's shards of a table keyed by ``article_id``, read in place."""
    files, filtered = [], []
    for r in range(len(boundaries) + 1):
        found = [(s.path, _article_overlap(s.bounds.get("article_id"), boundaries, r)) for s in shards]
        files.append(tuple(path for path, (overlaps, _) in found if overlaps))
        filtered.append(any(overlaps and not inside for _, (overlaps, inside) in found))
    return Reads(tuple(files), tuple(filtered), _narrow(files, shards))


def label_reads(labels: Sequence[Shard], paragraphs: Sequence[Shard], source: Reads) -> Reads:
    """Each range's labels shards, read in place: those whose paragraph ids overlap the paragraph
    ids of the paragraph shards the range reads (all of them where a footer does not say)."""
    by_path = {s.path: s.bounds.get("paragraph_id") for s in paragraphs}
    files = []
    for wanted in source.files:
        spans = [by_path.get(path) for path in wanted]
        files.append(tuple(s.path for s in labels if _meets(s.bounds.get("paragraph_id"), spans)))
    return Reads(tuple(files), tuple(False for _ in files), _narrow(files, labels))


def _narrow(files: Sequence[Sequence[Path]], shards: Sequence[Shard]) -> tuple[bool, ...]:
    """Whether each range's files lack a column some shard of the table has."""
    columns = {s.path: s.columns for s in shards}
    every = frozenset().union(*columns.values())
    return tuple(frozenset().union(*(columns[p] for p in paths)) != every for paths in files)


def _meets(bounds: Bounds | None, spans: Sequence[Bounds | None]) -> bool:
    """Whether ids within ``bounds`` may be among ids within any of ``spans``."""
    if bounds is None:
        return True
    if bounds.low is None or bounds.high is None:
        return False  # only nulls: they join no paragraph
    for span in spans:
        if span is None:
            return True
        if (
            span.low is not None
            and span.high is not None
            and bounds.low <= span.high
            and span.low <= bounds.high
        ):
            return True
    return False


def overread(reads: Reads, shards: Sequence[Shard]) -> float:
    """Rows the ranges read over the table's rows (1.0: each row read once)."""
    rows = {s.path: s.rows for s in shards}
    total = sum(rows.values())
    read = sum(rows[path] for files in reads.files for path in files)
    return read / total if total else 1.0
