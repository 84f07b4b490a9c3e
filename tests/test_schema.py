"""The table schemas: rows to tables, the shard writer, and the clean-up of what killed writes leave."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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
