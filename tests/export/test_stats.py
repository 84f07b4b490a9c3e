"""The card's counts gathered from the rows as they are written equal those DuckDB finds in the shards."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pmcurate.export.card import shard_stats
from pmcurate.export.stats import CardStats

ROWS = pa.table(
    {
        "license_type": ["cc-by", None, "cc-by", "cc-by-nc", None],
        "educational_score": [2.5, -0.5, 3.49, None, 1.5],
        "document_type": ["review", None, "study", "review", "review"],
        "n_words": pa.array([10, 3, None, 7, 7], pa.int32()),
    }
)


def counted(rows: pa.Table, splits: dict[str, slice]) -> CardStats:
    stats = CardStats()
    for split, part in splits.items():
        for batch in rows[part].to_batches(max_chunksize=2):
            stats.observe(split, batch)
    return stats


def test_counts_of_the_rows_are_those_of_the_shards(tmp_path: Path) -> None:
    splits = {"a": slice(0, 3), "b": slice(3, 5)}
    for split, part in splits.items():
        (tmp_path / "data").mkdir(exist_ok=True)
        pq.write_table(ROWS[part], tmp_path / "data" / f"{split}-00000-of-00001.parquet")
    config = {"folder": "data", "features": dict.fromkeys(ROWS.column_names)}
    assert counted(ROWS, splits) == shard_stats(tmp_path, config)


def test_merged_counts_are_the_counts_of_all_rows() -> None:
    whole = counted(ROWS, {"a": slice(0, 5)})
    merged = counted(ROWS, {"a": slice(0, 2)})
    merged.update(CardStats.from_json(counted(ROWS, {"a": slice(2, 5)}).to_json()))
    assert merged == whole


def test_word_summary_interpolates_the_median_of_an_even_count() -> None:
    assert counted(ROWS, {"a": slice(0, 5)}).word_summary() == (27, 6.75, 7.0)
    assert counted(ROWS, {"a": slice(0, 2)}).word_summary() == (13, 6.5, 6.5)


def test_top_ranks_by_rows_then_value_nulls_last() -> None:
    assert counted(ROWS, {"a": slice(0, 5)}).top("document_type") == [("review", 3), ("study", 1), (None, 1)]
