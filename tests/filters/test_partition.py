"""Ranges that read the build's shards in place: the same subsets as scattered ranges, read from
the shards that may hold their rows."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pmcurate import schema
from pmcurate.executor import LocalExecutor
from pmcurate.filters import partition
from pmcurate.filters.partition import Bounds, Reads, Shard
from pmcurate.filters.subset import make_subset
from tests.filters.scale_build import write_scale_build
from tests.filters.test_executors import PARAGRAPHS, files
from tests.filters.test_same_outputs import CASES, DIGESTS, make_case


def _shard(name: str, rows: int, low: str | None, high: str | None, nulls: bool = False) -> Shard:
    return Shard(Path(name), rows, {"article_id": Bounds(low, high, nulls)}, frozenset({"article_id"}))


def _write_sorted(table: pa.Table, folder: Path, key: str, cuts: list[int]) -> None:
    """``table`` sorted by ``key`` and cut at these row numbers, each piece one shard."""
    ordered = table.sort_by([(key, "ascending")])
    edges = [0, *cuts, ordered.num_rows]
    for k, (start, end) in enumerate(itertools.pairwise(edges)):
        schema.write_shard(ordered.slice(start, end - start), folder / f"part-{k}.parquet")


def _article_cuts(table: pa.Table, every: int) -> list[int]:
    """Row numbers (of ``table`` sorted by article) about ``every`` rows apart, at article starts."""
    ids = sorted(table.column("article_id").to_pylist())
    cuts, last = [], 0
    for row in range(1, len(ids)):
        if ids[row] != ids[row - 1] and row - last >= every:
            cuts.append(row)
            last = row
    return cuts


def _relayout(source: Path, target: Path, *, labels_aligned: bool) -> Path:
    """``source``'s rows in shards of consecutive articles (as a harvest writes them): articles cut
    elsewhere than paragraphs, labels cut as the paragraphs (the first shard without two columns
    that are null everywhere) or shuffled across two shards."""
    if target.exists():
        return target
    tables = {
        t: pq.read_table(schema.shard_paths(source, t))
        for t in ("articles", "paragraphs", "labels", "figures")
    }
    paragraphs = tables["paragraphs"]
    cuts = _article_cuts(paragraphs, 60)
    _write_sorted(paragraphs, schema.table_dir(target, "paragraphs"), "article_id", cuts)
    _write_sorted(
        tables["articles"], schema.table_dir(target, "articles"), "article_id", [2, 4, 6, 8, 10, 12]
    )
    _write_sorted(
        tables["figures"],
        schema.table_dir(target, "figures"),
        "article_id",
        _article_cuts(tables["figures"], 12),
    )
    labels = tables["labels"]
    if labels_aligned:  # the order of the paragraphs: the same cuts
        order = {
            pid: k
            for k, pid in enumerate(paragraphs.sort_by("article_id").column("paragraph_id").to_pylist())
        }
        ranked = labels.append_column(
            "rank", pa.array([order[p] for p in labels.column("paragraph_id").to_pylist()])
        )
        _write_sorted(ranked, schema.table_dir(target, "labels"), "rank", cuts)
        for k, path in enumerate(schema.shard_paths(target, "labels")):
            nulls = ["language", "document_type_scores"] if k == 0 else []  # a range without them
            schema.write_shard(pq.read_table(path).drop_columns(["rank", *nulls]), path)
    else:
        for k in range(2):
            schema.write_shard(
                labels.take(list(range(k, labels.num_rows, 2))),
                schema.table_dir(target, "labels") / f"part-{k}.parquet",
            )
    return target


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    scale = write_scale_build(root / "scale")
    return {
        "aligned": _relayout(scale, root / "aligned", labels_aligned=True),
        "labels-shuffled": _relayout(scale, root / "labels-shuffled", labels_aligned=False),
    }


def test_survey_reads_the_bounds_of_key_columns_from_the_footer(tmp_path: Path) -> None:
    table = pa.table({"article_id": ["PMC2", None, "PMC10"], "paragraph_id": ["b", "c", "a"], "n": [1, 2, 3]})
    pq.write_table(table, tmp_path / "s.parquet", row_group_size=2)
    shard = partition.survey(tmp_path / "s.parquet", ["article_id", "paragraph_id", "missing"])
    assert shard.rows == 3
    assert shard.bounds == {
        "article_id": Bounds("PMC10", "PMC2", True),
        "paragraph_id": Bounds("a", "c", False),
    }
    assert shard.columns == {"article_id", "paragraph_id", "n"}


def test_shards_sharing_an_article_are_not_disjoint() -> None:
    assert partition.disjoint([_shard("a", 5, "PMC1", "PMC3"), _shard("b", 5, "PMC4", "PMC6")])
    assert not partition.disjoint([_shard("a", 5, "PMC1", "PMC3"), _shard("b", 5, "PMC3", "PMC6")])
    assert not partition.disjoint([_shard("a", 5, "PMC1", "PMC3"), Shard(Path("b"), 5, {}, frozenset())])


def test_boundaries_fall_on_shard_starts_with_about_the_same_rows_a_range() -> None:
    shards = [_shard(f"s{k}", 10, f"PMC{k}0", f"PMC{k}9") for k in range(1, 10)]
    assert partition.shard_boundaries(shards, 3) == ("PMC40", "PMC70")
    assert partition.shard_boundaries(shards[:2], 5) == ("PMC20",)


def test_a_small_build_is_split_for_the_workers_only_when_each_range_stays_large() -> None:
    assert partition.ranges_wanted(75_000, 100_000, 2) == 2
    assert partition.ranges_wanted(30_000, 100_000, 2) == 1
    assert partition.ranges_wanted(376_000, 100_000, 2) == 4


def test_a_range_filters_only_the_shards_that_hold_rows_of_other_ranges() -> None:
    shards = [
        _shard("a", 5, "PMC1", "PMC3"),
        _shard("b", 5, "PMC4", "PMC6", nulls=True),
        _shard("c", 5, "PMC7", "PMC9"),
    ]
    reads = partition.article_reads(shards, ["PMC4", "PMC5"])
    assert reads.files == ((Path("a"),), (Path("b"),), (Path("b"), Path("c")))
    assert reads.filtered == (False, True, True)  # b holds PMC4 to PMC6, and nulls (the last range's)


def test_labels_are_read_where_their_paragraph_ids_meet_the_ranges_paragraphs() -> None:
    def shard(name: str, low: str, high: str) -> Shard:
        return Shard(Path(name), 5, {"paragraph_id": Bounds(low, high, False)}, frozenset())

    paragraphs = [shard("p1", "A/1", "A/9"), shard("p2", "B/1", "B/9")]
    labels = [shard("l1", "A/1", "A/5"), shard("l2", "A/6", "B/3"), shard("l3", "C/1", "C/2")]
    source = Reads(((Path("p1"),), (Path("p2"),)), (False, False), (False, False))
    assert partition.label_reads(labels, paragraphs, source).files == (
        (Path("l1"), Path("l2")),
        (Path("l2"),),
    )


@pytest.mark.parametrize("layout", ["aligned", "labels-shuffled"])
@pytest.mark.parametrize("case", [case for case in sorted(CASES) if CASES[case][0] == "scale"])
def test_ranges_reading_shards_in_place_write_the_recorded_rows(
    case: str, layout: str, layouts: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copytree(layouts[layout], tmp_path / "scale")
    assert make_case(tmp_path, case, partition_rows=60) == json.loads(DIGESTS.read_text())[case]


def test_a_process_pool_reading_shards_in_place_writes_the_same_bytes_as_one_process(
    layouts: dict[str, Path], tmp_path: Path
) -> None:
    build = shutil.copytree(layouts["aligned"], tmp_path / "build")
    one = files(make_subset(build, "one", **PARAGRAPHS).path)
    pool = LocalExecutor(2)
    try:
        two = files(make_subset(build, "one", executor=pool, **PARAGRAPHS).path)
    finally:
        pool.close()
    assert two == one
