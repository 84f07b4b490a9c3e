"""The table schemas: rows to tables, the shard writer, and the clean-up of what killed writes leave."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pmcurate import schema


def test_write_shard_leaves_only_the_finished_file(tmp_path: Path) -> None:
    table = schema.to_table(
        [{"paragraph_id": "PMC1/body/p", "article_id": "PMC1", "text": "x"}], schema.PARAGRAPHS
    )
    path = schema.write_shard(table, tmp_path / "paragraphs" / "a.parquet")
    assert [p.name for p in path.parent.iterdir()] == ["a.parquet"]
    assert pq.read_table(path).equals(table)


def test_remove_temporaries_deletes_hidden_leftovers_with_the_prefix_only(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"shard")
    (tmp_path / f"{schema.TMP_PREFIX}a.parquet.123.abcd").write_bytes(b"half")
    (tmp_path / f"{schema.TMP_PREFIX}edu-99-ff").mkdir()
    (tmp_path / f"{schema.TMP_PREFIX}edu-99-ff" / "part.parquet").write_bytes(b"half")
    (tmp_path / f"{schema.TMP_PREFIX}other-1").write_bytes(b"keep")
    assert schema.remove_temporaries(tmp_path, "edu-") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{schema.TMP_PREFIX}a.parquet.123.abcd",
        f"{schema.TMP_PREFIX}other-1",
        "a.parquet",
    ]
    assert schema.remove_temporaries(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["a.parquet"]


def test_to_table_reads_every_column_of_complete_rows() -> None:
    rows = [{"paragraph_id": f"P/p[{i}]", "article_id": "P", "path": f"p[{i}]", "ordinal": i,
             "section_title": None, "section_path": ["Intro", "Aims"], "section_type": "introduction",
             "text": "x" * i, "n_words": i} for i in range(5)]  # fmt: skip
    table = schema.to_table(rows, schema.PARAGRAPHS)
    assert table.schema == schema.PARAGRAPHS
    assert table.to_pylist() == rows


def test_to_table_fills_missing_keys_with_nulls() -> None:
    rows = [{"figure_id": "P/f1", "article_id": "P", "graphics": ["a.jpg"]},
            {"figure_id": "P/f2", "article_id": "P", "width": 10, "height": 20}]  # fmt: skip
    table = schema.to_table(rows, schema.FIGURES)
    assert table["graphics"].to_pylist() == [["a.jpg"], None]
    assert table["width"].to_pylist() == [None, 10]
    assert table["caption"].null_count == 2


def test_to_table_of_no_rows_is_an_empty_table_of_the_schema() -> None:
    table = schema.to_table([], schema.LABELS)
    assert table.num_rows == 0 and table.schema == schema.LABELS


def test_to_table_of_a_one_column_schema_keeps_string_values_whole() -> None:
    one = pa.schema([("text", pa.string())])
    assert schema.to_table([{"text": "abc"}, {"text": "de"}], one)["text"].to_pylist() == ["abc", "de"]


@pytest.mark.parametrize(
    "array",
    [
        pa.array([3, -1, 7], pa.int32()),
        pa.array(range(10), pa.uint64()).slice(3, 5),
        pa.array([0.5, 2.0], pa.float64()),
        pa.array([True, False, True, True, False, False, True, False, True, True], pa.bool_()).slice(3, 6),
        pa.array([], pa.bool_()),
        pa.array([], pa.int64()),
        pa.array([1, None], pa.int32()),
        pa.array(["a", "b"], pa.string()),
    ],
)
def test_numpy_of_is_what_to_numpy_gives(array: pa.Array) -> None:
    found = schema.numpy_of(array)
    expected = array.to_numpy(zero_copy_only=False)
    assert found.dtype == expected.dtype
    np.testing.assert_array_equal(found, expected)


def test_numpy_of_numbers_and_booleans_and_string_scalars_leave_pandas_unimported() -> None:
    code = (
        "import sys, pyarrow as pa, pyarrow.compute as pc\n"
        "from pmcurate import schema\n"
        "schema.pyarrow_without_pandas()\n"
        "flags = pc.less(pa.array([1, 2], pa.int64()), pa.array([2, 1], pa.int64()))\n"
        "text = pa.array(['a'], pa.string())\n"
        "joined = pc.binary_join_element_wise(schema.string('x'), text, schema.string(''))\n"
        "print(schema.numpy_of(flags).tolist(), joined.to_pylist(), 'pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[True, False] ['xa'] False\n"
