"""Hub-ready Parquet shards: ``{folder}/{split}-{i:05d}-of-{n:05d}.parquet``.

Rows arrive as Arrow record batches in their final order (the caller's SQL sorts them by a unique
key). They are cut into row groups of about ``row_group_bytes`` of uncompressed data — the unit a
streaming reader fetches — and a shard is closed as soon as its file reaches ``shard_bytes``, so
every shard but the last of a split is just over the target. Cut points depend only on the rows
(their sizes are computed column by column, not taken from how the batches happened to arrive),
and the writer options are fixed, so the same rows give byte-identical shards however they are
chunked.

The number of shards of a split is known only at the end: shards are written under temporary
names and renamed to their final ``-of-NNNNN`` names when the split is complete.

Writer settings: zstd, statistics and page indexes (DuckDB and Polars skip row groups and pages
with them), and content-defined chunking, which keeps page boundaries stable when rows are added or
removed so that the Hub's Xet storage deduplicates a re-published shard against its last version.
Each file carries the Hugging Face features in its schema metadata (``huggingface`` key), so that
``datasets`` reads an image column as ``Image`` even without the dataset card.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pmcurate import schema

DEFAULT_SHARD_BYTES = 500 * 2**20
DEFAULT_ROW_GROUP_BYTES = 64 * 2**20
MAX_ROW_GROUP_ROWS = 100_000
"""Cap on rows per row group: small text rows would otherwise make row groups of millions of rows."""

SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")
"""What the Hub accepts as a split name."""

FOOTER_BYTES_PER_COLUMN = 160
"""First guess of the footer bytes (metadata, statistics, page index) each row group adds per column;
replaced by the measured figure once a shard is closed. The footer is written only when a shard is
closed, so a shard is closed when its data plus this estimate reaches the target."""

_TMP = f"{schema.TMP_PREFIX}export-"
_END = object()

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """One finished shard: its path, rows and size on disk."""

    path: Path
    rows: int
    nbytes: int


def shard_name(split: str, index: int, count: int, suffix: str = "parquet") -> str:
    """The Hub's shard naming: ``train-00003-of-00012.parquet``."""
    return f"{split}-{index:05d}-of-{count:05d}.{suffix}"


def check_split_name(split: str) -> str:
    if not SPLIT_NAME.match(split):
        raise ValueError(f"invalid split name {split!r}: the Hub accepts letters, digits, '_' and inner dots")
    return split


def row_sizes(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """Uncompressed size of each row in bytes (variable-length data counted exactly, nulls as 0)."""
    sizes = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        sizes += _array_sizes(array)
    return sizes


_OFFSETS: dict[pa.DataType, type[np.integer]] = {
    pa.string(): np.int32,
    pa.binary(): np.int32,
    pa.large_string(): np.int64,
    pa.large_binary(): np.int64,
}
"""The type of the offsets of each variable-length type whose values ``_value_lengths`` reads."""


def _array_sizes(array: pa.Array) -> np.ndarray:
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _array_sizes(array.dictionary_decode())
    if kind in _OFFSETS:
        return _value_lengths(array, _OFFSETS[kind]) + 4
    if pa.types.is_struct(kind):
        total = np.zeros(len(array), dtype=np.int64)
        for index in range(kind.num_fields):
            total += _array_sizes(array.field(index))
        return total
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _list_sizes(array)
    return np.full(len(array), _width(kind), dtype=np.int64)


def _width(kind: pa.DataType) -> int:
    """The bytes a value of a fixed-width type counts (a boolean: 1)."""
    return max(getattr(kind, "bit_width", 8) // 8, 1)


def _value_lengths(array: pa.Array, offsets_type: type[np.integer]) -> np.ndarray:
    """The bytes of each value of a string or binary array (a null: none), read off its offsets:
    ``pc.binary_length`` without its kernel, nor a ``fill_null`` of its nulls (a column of every
    batch is sized beside the writer, and an Arrow call costs more than the arithmetic)."""
    if not len(array):
        return np.zeros(0, dtype=np.int64)
    offsets = np.frombuffer(
        array.buffers()[1],
        dtype=offsets_type,
        count=len(array) + 1,
        offset=array.offset * np.dtype(offsets_type).itemsize,
    )
    lengths = np.diff(offsets).astype(np.int64)
    if array.null_count:  # a null's offsets may span bytes: it has none
        lengths *= _validity(array)
    return lengths


def _validity(array: pa.Array) -> np.ndarray:
    """Whether each value of ``array`` (which has nulls, so a validity bitmap) is valid."""
    assert array.buffers()[0] is not None
    return schema.unpacked_bits(array.buffers()[0], array.offset, len(array))


def _list_sizes(array: pa.ListArray | pa.LargeListArray) -> np.ndarray:
    """The sizes of a list array's rows: 4, plus its values' sizes, summed between its offsets
    (a null list counts no values, whatever its offsets span); values of a primitive type count
    their width each, so their rows are their lengths times it."""
    offsets = schema.numpy_of(array.offsets).astype(np.int64)
    if pa.types.is_primitive(array.type.value_type):
        sizes = np.diff(offsets) * _width(array.type.value_type)
    else:
        start = int(offsets[0])
        values = array.values.slice(start, int(offsets[-1]) - start)
        summed = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(_array_sizes(values), out=summed[1:])
        sizes = summed[offsets[1:] - start] - summed[offsets[:-1] - start]
    if array.null_count:
        sizes *= _validity(array)
    return sizes + 4


def row_groups(
    batches: Iterable[pa.RecordBatch], target_bytes: int, max_rows: int = MAX_ROW_GROUP_ROWS
) -> Iterator[pa.Table]:
    """Re-cut a stream of batches into tables of about ``target_bytes`` (at least one row each).

    A group ends at the first row that brings it to ``target_bytes`` or ``max_rows``: the cut
    points depend on the rows alone, never on the incoming batch boundaries. A group is the slices
    of the batches it spans, not copied into one chunk: the writer's pages do not depend on how
    its rows are chunked (content-defined chunking; ``tests/export/test_parquet.py`` checks).
    """
    pending: list[pa.RecordBatch] = []
    pending_bytes = 0
    pending_rows = 0
    for batch in batches:
        sizes = row_sizes(batch)
        start = 0
        while start < batch.num_rows:
            room_rows = max_rows - pending_rows
            cumulative = np.cumsum(sizes[start : start + room_rows]) + pending_bytes
            full = np.nonzero(cumulative >= target_bytes)[0]
            if len(full):
                end = start + int(full[0]) + 1
            elif len(cumulative) == room_rows:
                end = start + room_rows
            else:
                end = batch.num_rows
            pending.append(batch.slice(start, end - start))
            pending_rows += end - start
            pending_bytes = int(cumulative[end - start - 1])
            start = end
            if pending_bytes >= target_bytes or pending_rows >= max_rows:
                yield pa.Table.from_batches(pending)
                pending, pending_bytes, pending_rows = [], 0, 0
    if pending:
        yield pa.Table.from_batches(pending)


def read_ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items``, computed in a background thread up to ``depth`` items ahead of the caller.

    The producer (DuckDB's sort and Arrow conversion, row-group cutting) and the consumer (the
    Parquet writer) are native code that releases the GIL, so they run on two cores at once. An
    exception in the producer is raised in the caller; when the caller stops early (an error, an
    interrupt, ``close()``), the producer is told to stop and is joined before this returns, so
    nothing runs on behind the caller's back.
    """
    buffer: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            put((_END, exc))
            return
        put((_END, None))

    thread = threading.Thread(target=produce, name="pmcurate-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def with_features(arrow_schema: pa.Schema, features: dict) -> pa.Schema:
    """``arrow_schema`` carrying the Hugging Face features JSON, as ``datasets`` writes it."""
    metadata = dict(arrow_schema.metadata or {})
    metadata[b"huggingface"] = json.dumps({"info": {"features": features}}).encode()
    return arrow_schema.with_metadata(metadata)


@functools.lru_cache(maxsize=64)
def leaf_paths(arrow_schema: pa.Schema) -> tuple[str, ...]:
    """The Parquet column paths of ``arrow_schema`` (``image.bytes``, ``mentions.list.element``),
    from an empty file written to memory (~0.5 ms, before the first row group of each export: kept
    for the schema)."""
    sink = pa.BufferOutputStream()
    pq.write_table(arrow_schema.empty_table(), sink)
    parquet_schema = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    return tuple(parquet_schema.column(i).path for i in range(len(parquet_schema)))


def _writer(sink: object, arrow_schema: pa.Schema, stored: frozenset[str]) -> pq.ParquetWriter:
    """The shard writer: zstd level 3, except columns in ``stored`` (already compressed images)."""
    paths = leaf_paths(arrow_schema)
    return pq.ParquetWriter(
        sink,
        arrow_schema,
        compression={path: "none" if path in stored else "zstd" for path in paths},
        compression_level={path: 3 for path in paths if path not in stored},
        use_dictionary=[path for path in paths if path not in stored],
        write_statistics=True,
        write_page_index=True,
        use_content_defined_chunking=True,
    )


def row_group_target(shard_bytes: int, row_group_bytes: int) -> int:
    """Uncompressed bytes per row group of a shard: ``row_group_bytes``, at most an eighth of the shard."""
    return max(1, min(row_group_bytes, shard_bytes // 8))


def write_split(
    batches: Iterable[pa.RecordBatch],
    arrow_schema: pa.Schema,
    folder: str | os.PathLike[str],
    split: str,
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    image_columns: tuple[str, ...] = (),
) -> list[Shard]:
    """Write one split's rows as shards ``folder/{split}-{i:05d}-of-{n:05d}.parquet``.

    ``arrow_schema`` is the schema of every shard (each row group is cast to it). A row group is at
    most an eighth of ``shard_bytes`` of uncompressed data, so a shard overshoots its target by at
    most one small row group (and the error of the footer estimate). No rows, no shards. The
    ``bytes`` of ``image_columns`` are stored without compression or dictionary: JPEG and PNG are
    compressed already, and zstd would spend time to gain nothing.
    """
    check_split_name(split)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    group_bytes = row_group_target(shard_bytes, row_group_bytes)
    stored = frozenset(f"{name}.bytes" for name in image_columns)
    written: list[tuple[Path, int]] = []
    writer: pq.ParquetWriter | None = None
    sink = None
    rows = groups = 0
    footer_per_group = FOOTER_BYTES_PER_COLUMN * len(arrow_schema.types)
    try:
        for group in read_ahead(row_groups(batches, group_bytes)):
            if writer is None or sink is None:  # opened and closed together
                path = folder / f"{_TMP}{split}-{len(written):05d}"
                sink = open(path, "wb")  # noqa: SIM115 - closed below, after the writer
                writer = _writer(sink, arrow_schema, stored)
                written.append((path, 0))
            writer.write_table(_as(group, arrow_schema), row_group_size=group.num_rows)
            rows += group.num_rows
            groups += 1
            if sink.tell() + groups * footer_per_group >= shard_bytes:
                data_bytes = sink.tell()
                writer.close()
                footer_per_group = max(footer_per_group, (sink.tell() - data_bytes) // groups)
                sink.close()
                written[-1] = (written[-1][0], rows)
                writer, sink, rows, groups = None, None, 0, 0
        if writer is not None and sink is not None:
            writer.close()
            sink.close()
            written[-1] = (written[-1][0], rows)
            writer, sink = None, None
    except BaseException:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
        for path, _ in written:
            path.unlink(missing_ok=True)
        raise
    return _rename(written, folder, split)


def _as(table: pa.Table, arrow_schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``arrow_schema``: as it is when its fields are those (the writer takes the
    schema's metadata, not the table's)."""
    return table if table.schema.equals(arrow_schema, check_metadata=False) else table.cast(arrow_schema)


def _rename(written: list[tuple[Path, int]], folder: Path, split: str) -> list[Shard]:
    shards = []
    for index, (tmp, rows) in enumerate(written):
        final = folder / shard_name(split, index, len(written))
        os.replace(tmp, final)
        shards.append(Shard(final, rows, final.stat().st_size))
    return shards
