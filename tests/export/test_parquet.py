"""Parquet shards: names, sizes, row groups, determinism, splits, and readers (DuckDB, Polars)."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pmcurate import schema
from pmcurate.build import NotABuild
from pmcurate.export import parquet
from pmcurate.export.exporter import ExportError, export
from pmcurate.export.steps import ExportConfig

SHARD_NAME = r"^(commercial|noncommercial|other|train)-\d{5}-of-\d{5}\.parquet$"
RECORDED = json.loads((Path(__file__).parent.parent / "data" / "export" / "fixture-digests.json").read_text())
SMALL = {"shard_size": 100_000, "row_group_size": 20_000}


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_shards_are_named_the_hub_way(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path), progress=False)
    names = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert names and all(pl.Series(names).str.contains(SHARD_NAME))
    for split in ("commercial", "noncommercial", "other"):
        of = {n.split("-of-")[1] for n in names if n.startswith(f"{split}-")}
        count = sum(n.startswith(f"{split}-") for n in names)
        assert of == {f"{count:05d}.parquet"}


def test_second_export_is_byte_identical(synthetic_build: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "1" / "dataset", tmp_path / "2" / "dataset"
    export(synthetic_build, ExportConfig(out=one, shard_size=400_000), progress=False)
    export(synthetic_build, ExportConfig(out=two, shard_size=400_000), progress=False)
    first, second = digests(one / "data"), digests(two / "data")
    assert len(first) > 3
    assert first == second
    assert digests(one / "provenance") == digests(two / "provenance")
    assert (one / "README.md").read_bytes() == (two / "README.md").read_bytes()


def combined_digest(folder: Path) -> dict[str, object]:
    """Shard count and a sha256 over each shard's name and sha256, as ``fixture-digests.json`` holds them."""
    digest = hashlib.sha256()
    shards = digests(folder)
    for name, value in shards.items():
        digest.update(f"{name}\0{value}\n".encode())
    return {"shards": len(shards), "sha256": digest.hexdigest()}


@pytest.mark.skipif(
    pa.__version__ != RECORDED["recorded_with"]["pyarrow"],
    reason=f"digests recorded with pyarrow {RECORDED['recorded_with']['pyarrow']}, not {pa.__version__}",
)
@pytest.mark.parametrize("name", sorted(RECORDED["exports"]))
def test_export_bytes_match_the_recorded_digests(name: str, labelled_build: Path, tmp_path: Path) -> None:
    """The shards are the very bytes the export wrote before it was pipelined (one thread, a self-join)."""
    preset, _, size = name.partition(" ")
    export(
        labelled_build,
        ExportConfig(out=tmp_path, preset=preset, **SMALL if size == "small" else {}),
        progress=False,
    )
    assert combined_digest(tmp_path / "data") == RECORDED["exports"][name]


def test_shard_sizes_are_near_the_target(synthetic_build: Path, tmp_path: Path) -> None:
    target = 256_000
    export(synthetic_build, ExportConfig(out=tmp_path, shard_size=target, split_by="none"), progress=False)
    sizes = [p.stat().st_size for p in sorted((tmp_path / "data").iterdir())]
    assert len(sizes) >= 10
    for size in sizes[:-1]:
        assert 0.9 * target <= size <= 1.3 * target
    assert sizes[-1] <= 1.3 * target


def test_row_groups_are_cut_by_size_for_streaming(synthetic_build: Path, tmp_path: Path) -> None:
    export(
        synthetic_build,
        ExportConfig(out=tmp_path, shard_size=10**9, row_group_size=500_000, split_by="none"),
        progress=False,
    )
    (shard,) = (tmp_path / "data").iterdir()
    meta = pq.ParquetFile(shard).metadata
    sizes = [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
    assert meta.num_row_groups >= 8
    assert all(400_000 <= size <= 700_000 for size in sizes[:-1])
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_row_group_cuts_do_not_depend_on_incoming_batches() -> None:
    rng = np.random.default_rng(0)
    table = pa.table({"text": ["x" * int(n) for n in rng.integers(10, 500, 3000)]})
    whole = [t.num_rows for t in parquet.row_groups(table.to_batches(), 20_000)]
    pieces = [t.num_rows for t in parquet.row_groups(table.to_batches(max_chunksize=7), 20_000)]
    assert whole == pieces
    assert sum(whole) == 3000


def test_a_shards_bytes_do_not_depend_on_how_its_rows_are_chunked(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = np.array(["cell", "gene", "tumour", "dose", "trial", "patient", "renal", "acute"])
    n = 6000
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "text": [" ".join(words[rng.integers(0, 8, rng.integers(5, 150))]) + f" {i}" for i in range(n)],
            "scores": [None if i % 7 == 0 else rng.random(3).tolist() for i in range(n)],
            "score": rng.random(n),
        }
    )
    cuts = np.unique(np.concatenate([[0, n], rng.integers(1, n, 60)]))
    pieces = [
        table.slice(a, b - a).combine_chunks().to_batches()[0] for a, b in itertools.pairwise(cuts.tolist())
    ]
    whole = parquet.write_split(
        table.combine_chunks().to_batches(),
        table.schema,
        tmp_path / "whole",
        "train",
        row_group_bytes=200_000,
    )
    chunked = parquet.write_split(
        pieces, table.schema, tmp_path / "chunked", "train", row_group_bytes=200_000
    )
    assert max(t.column(0).num_chunks for t in parquet.row_groups(pieces, 200_000)) > 1
    assert [p.read_bytes() for p in (s.path for s in chunked)] == [
        p.read_bytes() for p in (s.path for s in whole)
    ]


def test_read_ahead_yields_every_item_in_order() -> None:
    assert list(parquet.read_ahead(iter(range(1000)), depth=3)) == list(range(1000))


def test_read_ahead_raises_the_producers_error_after_its_items() -> None:
    def items():
        yield from (1, 2)
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in parquet.read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_read_ahead_stops_its_producer_when_the_caller_stops() -> None:
    produced = itertools.count()
    source = (next(produced) for _ in itertools.repeat(None))  # endless
    reader = parquet.read_ahead(source, depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    assert not [t for t in threading.enumerate() if t.name == "pmcurate-read-ahead"]
    assert next(produced) <= 3 + 2 + 2  # what was taken, the queue, and the one item in hand


def test_row_sizes_count_nested_values() -> None:
    table = pa.table({"names": [["ab", "cde"], None, []], "n": pa.array([1, 2, 3], pa.int32())})
    assert parquet.row_sizes(table).tolist() == [(2 + 4) + (3 + 4) + 4 + 4, 4 + 4, 4 + 4]


def test_row_sizes_of_a_sliced_list_count_its_own_values_and_none_under_a_null() -> None:
    values = pa.array(["a", "bb", "ccc", None, "dddd", "ee"])
    lists = pa.ListArray.from_arrays(
        pa.array([0, 2, 3, 5, 6]), values, mask=pa.array([False, False, True, False])
    )
    table = pa.table({"names": lists, "scores": pa.array([[1.0], [2.0, 3.0], None, []])})
    assert parquet.row_sizes(table.slice(1)).tolist() == [(3 + 4) + 4 + (8 * 2 + 4), 4 + 4, (6 + 4) + (0 + 4)]


def test_row_sizes_count_no_bytes_for_a_null_string_whose_offsets_span_some() -> None:
    offsets = pa.py_buffer(np.array([0, 2, 5, 6, 9], np.int32).tobytes())
    valid = pa.py_buffer(np.packbits([1, 0, 1, 1], bitorder="little").tobytes())
    strings = pa.StringArray.from_buffers(4, offsets, pa.py_buffer(b"abcdefghi"), valid)
    assert parquet.row_sizes(pa.table({"s": strings})).tolist() == [2 + 4, 4, 1 + 4, 3 + 4]
    assert parquet.row_sizes(pa.table({"s": strings.slice(1)})).tolist() == [4, 1 + 4, 3 + 4]


def test_row_sizes_of_lists_of_numbers_count_their_width_and_none_under_a_null() -> None:
    values = pa.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    offsets = pa.array([0, 1, 3, 6, 6, 9, 9, 9, 9, 9], pa.int32())
    mask = pa.array([False, False, True, False, False, False, False, False, False])
    lists = pa.ListArray.from_arrays(offsets, values, mask=mask)  # the null spans 3 values
    table = pa.table({"scores": lists, "flags": pa.array([[True]] * 9, pa.list_(pa.bool_()))})
    expected = [8 + 4, 16 + 4, 0 + 4, 0 + 4, 24 + 4, 4, 4, 4, 4]
    assert parquet.row_sizes(table).tolist() == [size + 1 + 4 for size in expected]
    assert parquet.row_sizes(table.slice(2)).tolist() == [size + 1 + 4 for size in expected[2:]]


def test_the_leaf_paths_of_a_schema_are_found_once(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[pa.Table] = []
    write_table = pq.write_table

    def counted(table: pa.Table, *args: object, **kwargs: object) -> None:
        written.append(table)
        write_table(table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pq, "write_table", counted)
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    arrow_schema = pa.schema([("image", image), ("mentions", pa.list_(pa.string()))], metadata={"a": "1"})
    paths = ("image.bytes", "image.path", "mentions.list.element")
    assert (
        parquet.leaf_paths(arrow_schema)
        == parquet.leaf_paths(arrow_schema.remove_metadata().with_metadata({"a": "1"}))
        == paths
    )
    assert len(written) == 1


def test_license_splits_hold_the_right_licenses(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path), progress=False)
    con = duckdb.connect()
    groups = con.sql(
        "SELECT split_part(parse_filename(filename), '-', 1) AS split,"
        " list(DISTINCT license ORDER BY license)"
        f" FROM read_parquet('{tmp_path}/data/*.parquet', filename = true) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert groups == [
        ("commercial", ["CC BY", "PD"]),
        ("noncommercial", ["CC BY-NC", "CC BY-NC-ND", "CC BY-NC-SA"]),
        ("other", [None]),
    ]


def test_split_by_any_column_sanitizes_values(build: Path, tmp_path: Path) -> None:
    result = export(build, ExportConfig(out=tmp_path, split_by="section_type"), progress=False)
    assert set(result.splits) <= {*schema.SECTION_TYPES, "unknown"}
    assert (
        result.splits["methods"].rows
        == duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{build}/tables/paragraphs/*.parquet')"
            " WHERE section_type = 'methods'"
        ).fetchall()[0][0]
    )


def test_split_by_an_unknown_column_names_the_columns(build: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"cannot split by 'colour'.*section_type"):
        export(build, ExportConfig(out=tmp_path, split_by="colour"), progress=False)


def test_reexport_replaces_stale_shards(synthetic_build: Path, tmp_path: Path) -> None:
    export(synthetic_build, ExportConfig(out=tmp_path, shard_size=300_000, split_by="none"), progress=False)
    many = len(list((tmp_path / "data").iterdir()))
    export(synthetic_build, ExportConfig(out=tmp_path, shard_size=3_000_000, split_by="none"), progress=False)
    names = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert many > len(names) >= 1
    assert all(n.endswith(f"-of-{len(names):05d}.parquet") for n in names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_duckdb_and_polars_read_every_row(synthetic_build: Path, tmp_path: Path) -> None:
    export(synthetic_build, ExportConfig(out=tmp_path, shard_size=500_000), progress=False)
    pattern = str(tmp_path / "data" / "*.parquet")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()[0][0] == 10_000
    frame = pl.scan_parquet(pattern).select(pl.len(), pl.col("paragraph_id").n_unique()).collect()
    assert frame.row(0) == (10_000, 10_000)


def test_rows_are_in_reading_order_within_a_split(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path, split_by="none"), progress=False)
    frame = pl.read_parquet(tmp_path / "data" / "*.parquet").select("article_id", "ordinal")
    assert frame.equals(frame.sort("article_id", "ordinal"))


def test_missing_build_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotABuild, match="not a pmcurate build"):
        export(tmp_path / "nope", ExportConfig(out=tmp_path / "out"), progress=False)


def test_image_bytes_are_stored_uncompressed_and_text_zstd(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path, preset="image-text", split_by="none"), progress=False)
    (shard,) = (tmp_path / "data").iterdir()
    group = pq.ParquetFile(shard).metadata.row_group(0)
    codecs = {group.column(i).path_in_schema: group.column(i).compression for i in range(group.num_columns)}
    assert codecs["image.bytes"] == "UNCOMPRESSED"
    assert codecs["caption"] == codecs["mentions.list.element"] == "ZSTD"
