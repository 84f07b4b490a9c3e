"""The shard writer and the clean-up of what killed writes leave behind."""

from __future__ import annotations

from pathlib import Path

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
