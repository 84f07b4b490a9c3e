"""Presets: the columns and rows of paragraphs, biomed-enriched and image-text exports; subsets."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pmcurate import schema
from pmcurate.build import create_view
from pmcurate.export import exporter, presets
from pmcurate.export.exporter import (
    ArrowRows,
    ExportError,
    Splits,
    _ColumnReader,
    _create_selection,
    export,
    license_group,
    normalized_schema,
)
from pmcurate.export.presets import (
    PRESETS,
    Derived,
    KeyChecked,
    PresetError,
    Source,
    _sorted_runs,
    gather,
    get_preset,
    preset_columns,
    score_list,
    sort_indices,
)
from pmcurate.export.steps import ExportConfig
from pmcurate.filters.rules import where_rule
from pmcurate.filters.subset import make_subset

BIOMED_ENRICHED_COLUMNS = [
    "id", "article_id", "path", "section_title", "educational_score", "domain", "document_type",
    "domain_scores", "document_type_scores", "text", "authors", "article_url", "license_type",
    "license_url", "language", "language_score", "source",
]  # fmt: skip


def read(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(folder.glob("*.parquet")))


@pytest.fixture(scope="session")
def subset_build(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture build with subsets: results paragraphs (reviews upsampled ×3), cell figures."""
    path = tmp_path_factory.mktemp("subsets") / "build"
    shutil.copytree(build, path)
    make_subset(
        path,
        "results",
        where="section_type = 'results'",
        upsample=[(where_rule("document_type = 'review'", "review"), 3)],
    )
    make_subset(path, "figs", where="caption ILIKE '%cell%'", source="figures")
    return path


def test_biomed_enriched_has_the_dataset_columns_first(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path, preset="biomed-enriched"), progress=False)
    names = pq.read_schema(next((tmp_path / "data").iterdir())).names
    assert names[: len(BIOMED_ENRICHED_COLUMNS)] == BIOMED_ENRICHED_COLUMNS


def test_biomed_enriched_scores_are_lists_in_label_order(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path, preset="biomed-enriched", split_by="none"), progress=False)
    frame = read(tmp_path / "data")
    row = frame.filter(pl.col("document_type") == "review").row(0, named=True)
    assert row["document_type_scores"] == pytest.approx(
        [0.1, 0.1, 0.7, 0.1]
    )  # clinical_case, study, review, other
    assert frame.height == 465
    assert frame["article_url"].str.starts_with("https://pmc.ncbi.nlm.nih.gov/articles/PMC").all()


def test_biomed_enriched_authors_are_names(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path, preset="biomed-enriched", split_by="none"), progress=False)
    authors = read(tmp_path / "data").filter(pl.col("article_id") == "PMC3460867")["authors"][0].to_list()
    articles = duckdb.sql(f"SELECT authors FROM read_parquet('{build}/tables/articles/*.parquet') "
                          "WHERE article_id = 'PMC3460867'").fetchall()[0][0]  # fmt: skip
    assert authors == [a["name"] for a in articles] and len(authors) > 1


def test_biomed_enriched_without_labels_says_to_annotate(synthetic_build: Path, tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="pmcurate annotate"):
        export(synthetic_build, ExportConfig(out=tmp_path, preset="biomed-enriched"), progress=False)


def test_paragraphs_preset_carries_labels_and_license(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path, split_by="none"), progress=False)
    frame = read(tmp_path / "data")
    assert frame["document_type"].null_count() == 0
    assert {"license", "license_url", "article_url", "section_path"} <= set(frame.columns)


def test_image_text_has_one_row_per_figure_with_an_image(build: Path, tmp_path: Path) -> None:
    result = export(build, ExportConfig(out=tmp_path, preset="image-text", split_by="none"), progress=False)
    frame = read(tmp_path / "data")
    figures = pl.read_parquet(schema.shard_paths(build, "figures"))
    assert frame.height == figures.filter(pl.col("image").is_not_null()).height == 46
    assert result.skipped_rows == 5
    assert frame["image"].struct.field("bytes").bin.starts_with(b"\x89PNG").sum() > 0


def test_image_text_mentions_are_the_citing_paragraphs(build: Path, tmp_path: Path) -> None:
    export(build, ExportConfig(out=tmp_path, preset="image-text", split_by="none"), progress=False)
    row = read(tmp_path / "data").filter(pl.col("mention_ids").list.len() >= 2).row(0, named=True)
    paragraphs = pl.read_parquet(schema.shard_paths(build, "paragraphs"))
    expected = [paragraphs.filter(pl.col("paragraph_id") == pid)["text"][0] for pid in row["mention_ids"]]
    assert row["mentions"] == expected


def test_subset_export_keeps_only_its_rows_and_repeats(subset_build: Path, tmp_path: Path) -> None:
    export(subset_build, ExportConfig(out=tmp_path, subset="results", split_by="none"), progress=False)
    frame = read(tmp_path / "data")
    assert set(frame["section_type"]) == {"results"}
    reviews = frame.filter(pl.col("document_type") == "review")
    assert sorted(reviews.group_by("paragraph_id").len()["len"].unique()) == [3]
    assert sorted(reviews["repeat"].unique()) == [0, 1, 2]


def test_figure_subset_exports_as_image_text(subset_build: Path, tmp_path: Path) -> None:
    export(
        subset_build,
        ExportConfig(out=tmp_path, subset="figs", preset="image-text", split_by="none"),
        progress=False,
    )
    frame = read(tmp_path / "data")
    assert frame.height > 0
    assert frame["caption"].str.to_lowercase().str.contains("cell").all()


def test_unknown_subset_lists_the_subsets(subset_build: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no subset 'nope' \(subsets: figs, results\)"):
        export(subset_build, ExportConfig(out=tmp_path, subset="nope"), progress=False)


def test_paragraph_preset_refuses_a_figure_subset(subset_build: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no paragraph_id column"):
        export(subset_build, ExportConfig(out=tmp_path, subset="figs"), progress=False)


def test_an_unknown_preset_is_refused_with_the_known_names() -> None:
    with pytest.raises(
        PresetError, match=r"unknown preset 'biomed'; known: paragraphs, biomed-enriched, image-text"
    ):
        get_preset("biomed")


def test_the_paragraphs_preset_exports_every_label_under_its_flat_name() -> None:
    columns = preset_columns("paragraphs", Source(has_labels=True, has_paragraphs=True, subset=None))
    assert {
        "document_type",
        "domain_scores",
        "educational_score",
        "labels_language",
        "labels_annotator",
    } <= set(columns)
    assert columns.count("language") == 1  # the article's


def sql_rows(build: Path, name: str, source: Source) -> pa.Table:
    """A preset's rows from its SQL over views of ``build``, sorted by the preset's key."""
    preset = get_preset(name)
    con = duckdb.connect()
    for table in ("articles", "paragraphs", "labels"):
        create_view(con, table, schema.table_dir(build, table))
    _create_selection(con, build, preset, source.subset)
    order = preset.order_by + (", repeat" if source.subset else "")
    rows = con.sql(f"SELECT * FROM ({preset.rows_sql(source)}) ORDER BY {order}").to_arrow_table()
    return rows.cast(normalized_schema(rows.schema))


def arrow_rows(build: Path, name: str, source: Source) -> pa.Table:
    preset = get_preset(name)
    assert preset.rows_arrow is not None
    selection = sorted((build / "subsets" / source.subset).glob("*.parquet")) if source.subset else None
    return preset.rows_arrow(_ColumnReader(build, selection), source).table()


def test_biomed_enriched_arrow_rows_are_the_sql_rows(build: Path) -> None:
    source = Source(has_labels=True, has_paragraphs=True, subset=None)
    assert arrow_rows(build, "biomed-enriched", source).equals(sql_rows(build, "biomed-enriched", source))


def test_biomed_enriched_paragraphs_are_put_in_order_while_the_articles_are_read(
    build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ordered, seen = threading.Event(), []
    articles_of, sort = presets._articles_of, presets.sort_indices

    def articles_waiting_for_the_order(read: Any) -> pa.Table:
        seen.append(ordered.wait(timeout=2))
        return articles_of(read)

    def sorted_then_told(*args: Any) -> pa.Array:
        indices = sort(*args)
        ordered.set()
        return indices

    monkeypatch.setattr(presets, "_articles_of", articles_waiting_for_the_order)
    monkeypatch.setattr(presets, "sort_indices", sorted_then_told)
    source = Source(has_labels=True, has_paragraphs=True, subset=None)
    assert arrow_rows(build, "biomed-enriched", source).equals(sql_rows(build, "biomed-enriched", source))
    assert seen == [True]


def test_biomed_enriched_arrow_rows_are_the_sql_rows_where_labels_and_articles_lack(
    build: Path, tmp_path: Path
) -> None:
    path = tmp_path / "build"
    shutil.copytree(build, path)
    labels = pq.read_table(schema.table_dir(path, "labels"))
    scores = labels["domain_scores"].combine_chunks()
    mask = pa.array([i % 3 == 0 for i in range(len(scores))])
    nulls = pa.StructArray.from_arrays(scores.flatten(), fields=list(scores.type), mask=mask)
    labels = labels.set_column(labels.schema.get_field_index("domain_scores"), "domain_scores", nulls)
    articles = pq.read_table(schema.table_dir(path, "articles"))
    for name, table in (("labels", labels.slice(0, labels.num_rows // 2)), ("articles", articles.slice(1))):
        shutil.rmtree(schema.table_dir(path, name))
        schema.write_shard(table, schema.table_dir(path, name) / "000000000.parquet")
    source = Source(has_labels=True, has_paragraphs=True, subset=None)
    rows = arrow_rows(path, "biomed-enriched", source)
    assert rows["domain_scores"].null_count > rows["domain"].null_count > 0 and rows["authors"].null_count > 0
    assert rows.equals(sql_rows(path, "biomed-enriched", source))


def test_score_lists_keep_a_missing_score_of_a_row_with_scores_null() -> None:
    fields = [pa.field("b", pa.float32()), pa.field("a", pa.float32())]
    scores = pa.StructArray.from_arrays(
        [pa.array([1.0, 2.0, None], pa.float32()), pa.array([3.0, None, 5.0], pa.float32())],
        fields=fields,
        mask=pa.array([False, True, False]),
    )
    lists = score_list(pa.chunked_array([scores.slice(0, 1), scores.slice(1)]), ("a", "b"))
    assert lists.to_pylist() == [[3.0, 1.0], None, [5.0, None]]
    whole = score_list(pa.chunked_array([scores.slice(0, 1)]), ("a", "b"))
    assert whole.to_pylist() == [[3.0, 1.0]] and whole.type == pa.list_(pa.float64())


@pytest.mark.parametrize("order", [[3000, *range(3000)], list(range(2999, -1, -1)), []])
def test_gather_is_take_whether_it_slices_or_copies(order: list[int]) -> None:
    table = pa.concat_tables([pa.table({"n": range(i, i + 1001)}) for i in range(0, 3003, 1001)])
    indices = pa.array(order, pa.int64())
    assert gather(table, indices).equals(table.take(indices))


@pytest.mark.parametrize(
    ("article", "ordinal"),
    [
        (["b", "b", "c", "a", "a"], [1, 2, 0, 5, 6]),  # two sorted runs, out of order: put in order
        (["a", "c", "b", "d"], [0, 0, 0, 0]),  # runs that overlap: sorted
        (["b", "c", "a", "b"], [1, 0, 0, 1]),  # a tie between runs: sorted (stably)
        (["a", "a", "b"], [0, 1, 0]),  # sorted already
        (["a", None, "b"], [0, 0, 0]),  # nulls: sorted
        ([], []),
    ],
)
def test_sort_indices_is_the_stable_sort(article: list[str | None], ordinal: list[int]) -> None:
    table = pa.table({"article_id": pa.array(article, pa.string()), "ordinal": pa.array(ordinal, pa.int32())})
    expected = pc.sort_indices(table, [("article_id", "ascending"), ("ordinal", "ascending")])
    assert sort_indices(table, ["article_id", "ordinal"]).equals(expected)


def test_sort_indices_puts_in_order_shards_that_ran_on_in_order_by_chance() -> None:
    shards = [pa.table({"article_id": [name]}) for name in ("b", "d", "a", "c")]  # b, d: in order
    table = pa.concat_tables(shards)
    assert _sorted_runs(table, ["article_id"]) == [(2, 3), (0, 1), (3, 4), (1, 2)]
    assert sort_indices(table, ["article_id"]).to_pylist() == [2, 0, 3, 1]


def test_arrow_reader_gives_nulls_where_an_older_shard_lacks_a_column(tmp_path: Path) -> None:
    folder = schema.table_dir(tmp_path, "labels")
    schema.write_shard(pa.table({"paragraph_id": ["a"], "annotator": ["x"]}), folder / "000000001.parquet")
    schema.write_shard(pa.table({"paragraph_id": ["b"]}), folder / "000000000.parquet")
    table = _ColumnReader(tmp_path)("labels", ["paragraph_id", "annotator"])
    assert table.to_pylist() == [
        {"paragraph_id": "b", "annotator": None},
        {"paragraph_id": "a", "annotator": "x"},
    ]


def write_numbered_paragraphs(build: Path, shards: int, rows: int) -> None:
    """``shards`` paragraph shards of ``rows`` rows, ``p0``… numbered through them all."""
    folder = schema.table_dir(build, "paragraphs")
    for shard in range(shards):
        numbers = range(shard * rows, shard * rows + rows)
        table = pa.table({"paragraph_id": [f"p{i}" for i in numbers], "text": [f"text {i}" for i in numbers]})
        schema.write_shard(table, folder / f"{shard:09d}.parquet")


def count_shard_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    read, shards_read = pq.ParquetFile.iter_batches, []
    monkeypatch.setattr(
        pq.ParquetFile, "iter_batches", lambda self, *a, **kw: shards_read.append(1) or read(self, *a, **kw)
    )
    return shards_read


def test_late_rows_are_read_by_number_in_their_order_from_the_shards_holding_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_numbered_paragraphs(tmp_path, 3, 4)
    whole = _ColumnReader(tmp_path)("paragraphs", ["text", "paragraph_id"])
    shards_read = count_shard_reads(monkeypatch)
    rows = pa.array([9, 0, 10, 2, 9], pa.int64())
    table = _ColumnReader(tmp_path).late("paragraphs", ["text", "paragraph_id"], rows).table(0, len(rows))
    assert table.equals(whole.take(rows))
    assert len(shards_read) == 2


def test_late_rows_read_each_shard_once_as_ranges_go_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_numbered_paragraphs(tmp_path, 3, 4)
    whole = _ColumnReader(tmp_path)("paragraphs", ["text"])
    shards_read = count_shard_reads(monkeypatch)
    rows = pa.array([0, 1, 4, 2, 3, 5, None, 8, 9, 6, 10, 11], pa.int64())
    late = _ColumnReader(tmp_path).late("paragraphs", ["text"], rows)
    got = pa.concat_tables([late.table(start, 3) for start in range(0, len(rows), 3)])
    assert got.equals(whole.take(rows))
    assert len(shards_read) == 3


def test_late_rows_decode_a_shard_only_as_far_as_the_rows_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_numbered_paragraphs(tmp_path, 1, 12)
    monkeypatch.setattr(exporter, "FIRST_BATCH_ROWS", 4)
    late = _ColumnReader(tmp_path).late("paragraphs", ["text"], pa.array(range(12), pa.int64()))
    assert late.table(0, 3)["text"].to_pylist() == ["text 0", "text 1", "text 2"]
    assert late._shards[0]._rows == 4


def test_late_rows_read_again_a_shard_let_go_when_asked_out_of_order(tmp_path: Path) -> None:
    write_numbered_paragraphs(tmp_path, 2, 4)
    whole = _ColumnReader(tmp_path)("paragraphs", ["text"])
    late = _ColumnReader(tmp_path).late("paragraphs", ["text"], pa.array(range(8), pa.int64()))
    assert late.table(0, 8).equals(whole)
    assert late.table(1, 2).equals(whole.slice(1, 2))


def test_biomed_enriched_arrow_rows_of_a_subset_are_the_sql_rows(subset_build: Path) -> None:
    source = Source(has_labels=True, has_paragraphs=True, subset="results")
    rows = arrow_rows(subset_build, "biomed-enriched", source)
    assert max(rows["repeat"].to_pylist()) == 2  # reviews upsampled ×3
    assert rows.equals(sql_rows(subset_build, "biomed-enriched", source))


def test_biomed_enriched_licenses_are_those_of_its_rows(subset_build: Path) -> None:
    preset = get_preset("biomed-enriched")
    assert preset.licenses_arrow is not None
    for source, selection in (
        (Source(has_labels=True, has_paragraphs=True, subset=None), None),
        (Source(has_labels=True, has_paragraphs=True, subset="results"), "results"),
    ):
        files = sorted((subset_build / "subsets" / selection).glob("*.parquet")) if selection else None
        licenses = preset.licenses_arrow(_ColumnReader(subset_build, files), source)
        rows = arrow_rows(subset_build, "biomed-enriched", source)
        assert sorted(licenses.to_pylist(), key=str) == sorted(rows["license_type"].to_pylist(), key=str)


def test_joined_rows_gather_any_range_and_order_as_the_whole_table_would(build: Path) -> None:
    preset = get_preset("biomed-enriched")
    assert preset.rows_arrow is not None
    source = Source(has_labels=True, has_paragraphs=True, subset=None)
    rows = preset.rows_arrow(_ColumnReader(build), source)
    whole = rows.table()
    assert rows.table(5, 7).equals(whole.slice(5, 7))
    order = pa.array(list(range(whole.num_rows - 1, -1, -3)), pa.int64())
    assert rows.take(order).table().equals(whole.take(order))
    assert rows.column("license_type").equals(whole["license_type"])
    assert rows.encoded("license_type").to_pylist() == whole["license_type"].to_pylist()


@pytest.mark.parametrize("encoded", [False, True])
def test_splits_are_the_license_groups_of_the_rows(encoded: bool) -> None:
    licenses = pa.array(["CC BY", None, "CC BY-NC", "other", "CC BY", None])
    if encoded:  # an article's license by index, as JoinedRows.encoded gives it
        dictionary = pa.array(["CC BY", "CC BY-NC", "CC BY", "other"])
        licenses = pa.DictionaryArray.from_arrays(pa.array([0, None, 1, 3, 2, None], pa.int32()), dictionary)
    splits = Splits.of(licenses, "license")
    expected = license_group(pa.array(licenses.to_pylist(), pa.string())).to_pylist()
    assert [splits.names[code] for code in splits.codes] == expected
    assert dict(zip(splits.names, splits.counts(), strict=True)) == {
        "commercial": 2,
        "noncommercial": 1,
        "other": 3,
    }


def test_empty_reads_have_the_columns_of_full_reads(build: Path) -> None:
    reader = _ColumnReader(build)
    columns = ("paragraph_id", "domain_scores", "annotator")
    empty = reader.read_empty()("labels", columns)
    assert empty.num_rows == 0 and empty.schema == reader("labels", columns).schema


def test_a_task_of_some_splits_gets_their_rows_split_by_split(build: Path) -> None:
    preset = get_preset("biomed-enriched")
    rows = ArrowRows.load(build, preset, Source(has_labels=True, has_paragraphs=True, subset=None), "license")
    whole = arrow_rows(build, "biomed-enriched", Source(has_labels=True, has_paragraphs=True, subset=None))
    split = license_group(whole["license_type"])
    wanted = tuple(sorted(set(split.to_pylist())))[1:]
    batches = list(rows.sorted_reader(wanted))
    got = pa.Table.from_batches(batches)
    expected = pa.concat_tables(
        [whole.filter(pc.equal(split, name)).drop_columns(["__ordinal"]) for name in wanted]
    )
    assert len(wanted) > 1 and got.drop_columns(["__split"]).equals(expected)
    assert all(len(set(batch["__split"].to_pylist())) == 1 for batch in batches)


def labels_rewritten(build: Path, tmp_path: Path, order: list[int] | None) -> Path:
    """A copy of ``build`` whose labels are one shard per paragraph shard, row for row beside it
    (``order`` None), or its rows in ``order`` (of the paragraphs' rows)."""
    path = tmp_path / "build"
    shutil.copytree(build, path)
    labels = pq.read_table(schema.table_dir(path, "labels"))
    shutil.rmtree(schema.table_dir(path, "labels"))
    paragraphs = pq.read_table(schema.table_dir(path, "paragraphs"), columns=["paragraph_id"])
    rows = pc.index_in(paragraphs["paragraph_id"], value_set=labels["paragraph_id"])
    aligned = labels.take(rows)
    schema.write_shard(
        aligned.take(pa.array(order)) if order is not None else aligned,
        schema.table_dir(path, "labels") / "000000000.parquet",
    )
    return path


def count_reads(
    monkeypatch: pytest.MonkeyPatch, method: str = "__call__"
) -> list[tuple[str, tuple[str, ...]]]:
    """The whole columns read through ``_ColumnReader.<method>`` (``_read``: those read from the
    shards, not served from the plan's reads), not their empty schemas, not late rows."""
    reads: list[tuple[str, tuple[str, ...]]] = []
    call = getattr(_ColumnReader, method)

    def counted(self: _ColumnReader, name: str, columns: tuple[str, ...]) -> pa.Table:
        if not self.empty:
            reads.append((name, tuple(columns)))
        return call(self, name, columns)

    monkeypatch.setattr(_ColumnReader, method, counted)
    return reads


def test_labels_row_for_row_beside_their_paragraphs_are_read_without_their_keys_first(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = labels_rewritten(build, tmp_path, None)
    source = Source(has_labels=True, has_paragraphs=True, subset=None)
    reads = count_reads(monkeypatch)
    rows = arrow_rows(path, "biomed-enriched", source)
    assert not [read for read in reads if read[0] == "labels"]
    assert rows.equals(sql_rows(path, "biomed-enriched", source))


@pytest.mark.parametrize("moved", ["all", "last"])
def test_labels_as_many_as_the_paragraphs_in_another_order_are_joined_by_key(
    build: Path, tmp_path: Path, moved: str
) -> None:
    n = sum(pq.read_metadata(p).num_rows for p in schema.shard_paths(build, "paragraphs"))
    order = list(range(n - 1, -1, -1)) if moved == "all" else [*range(n - 2), n - 1, n - 2]
    path = labels_rewritten(build, tmp_path, order)
    source = Source(has_labels=True, has_paragraphs=True, subset=None)
    preset = get_preset("biomed-enriched")
    assert preset.rows_arrow is not None
    rows = preset.rows_arrow(_ColumnReader(path), source)
    expected = sql_rows(path, "biomed-enriched", source)
    batches = [rows.table(start, 7) for start in range(0, rows.num_rows, 7)]
    assert pa.concat_tables(batches).equals(expected)
    assert rows.table().equals(expected)


def test_an_empty_range_of_labels_row_for_row_keeps_them_read_by_row_number(
    build: Path, tmp_path: Path
) -> None:
    path = labels_rewritten(build, tmp_path, None)
    preset = get_preset("biomed-enriched")
    assert preset.rows_arrow is not None
    rows = preset.rows_arrow(_ColumnReader(path), Source(has_labels=True, has_paragraphs=True, subset=None))
    labels = next(late.rows for late in rows.late if isinstance(late, Derived))
    assert isinstance(labels, KeyChecked)
    labels.table(0, 0)
    labels.table(3, 5)
    assert labels._joined is None


def test_the_columns_a_plan_read_serve_the_rows_of_its_task_in_its_process(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = count_reads(monkeypatch, "_read")
    plan = exporter.make_plan(
        build, ExportConfig(out=tmp_path / "out", preset="biomed-enriched"), progress=False
    )
    assert plan.shards is not None
    planned = list(reads)
    source = Source(has_labels=True, has_paragraphs=True, subset=None)
    rows = ArrowRows.load(build, get_preset("biomed-enriched"), source, "license", plan.shards)
    read_again = {(name, column) for name, columns in reads[len(planned) :] for column in columns}
    assert not read_again & {(name, column) for name, columns in planned for column in columns}
    assert rows.rows.table().equals(arrow_rows(build, "biomed-enriched", source).drop_columns(["__ordinal"]))


def test_batches_grow_from_the_first_to_their_full_size() -> None:
    sizes = exporter.batch_sizes()
    first = [next(sizes) for _ in range(8)]
    assert first[0] == exporter.FIRST_BATCH_ROWS and first[-1] == exporter.BATCH_ROWS
    assert all(b in (a, 2 * a) for a, b in itertools.pairwise(first))


def test_an_export_on_one_worker_loads_its_rows_once(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    load = ArrowRows.load.__func__  # type: ignore[attr-defined]

    def counted(cls: type[ArrowRows], build: Path, *args: object) -> ArrowRows:
        loads.append(build)
        return load(cls, build, *args)

    monkeypatch.setattr(ArrowRows, "load", classmethod(counted))
    config = ExportConfig(out=tmp_path / "one", preset="biomed-enriched")
    result = export(build, config, progress=False, workers=1)
    assert loads == [build]
    paragraphs = sum(pq.read_metadata(path).num_rows for path in schema.shard_paths(build, "paragraphs"))
    assert result.rows == read(tmp_path / "one" / "data").height == paragraphs


def test_an_export_computes_its_rows_once_and_its_features_from_them(
    build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = get_preset("biomed-enriched")
    assert preset.rows_arrow is not None
    computed: list[int] = []

    def counted(read: Any, source: Source) -> Any:
        rows = preset.rows_arrow(read, source)  # type: ignore[misc]
        computed.append(rows.num_rows)
        return rows

    monkeypatch.setitem(PRESETS._entries, preset.name, replace(preset, rows_arrow=counted))
    result = export(build, ExportConfig(out=tmp_path, preset="biomed-enriched"), progress=False)
    assert computed == [result.rows]
    shard = pq.read_schema(next((tmp_path / "data").iterdir()))
    features = json.loads(shard.metadata[b"huggingface"])["info"]["features"]
    assert result.provenance["features"] == features


def test_late_rows_decode_each_row_of_their_shards_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_numbered_paragraphs(tmp_path, 2, 12)
    monkeypatch.setattr(exporter, "BATCH_ROWS", 4)
    monkeypatch.setattr(exporter, "FIRST_BATCH_ROWS", 2)
    decoded: list[int] = []
    iter_batches = pq.ParquetFile.iter_batches

    def counted(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        for batch in iter_batches(self, *args, **kwargs):
            decoded.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counted)
    whole = _ColumnReader(tmp_path)("paragraphs", ["text"])
    late = _ColumnReader(tmp_path).late("paragraphs", ["text"], pa.array(range(24), pa.int64()))
    assert late.table(0, 1).equals(whole.slice(0, 1))
    assert late._shards[0]._rows == 2
    assert pa.concat_tables([late.table(1, 5), late.table(6, 18)]).equals(whole.slice(1))
    assert sum(decoded) == 24


@pytest.mark.parametrize("narrowed", [0, 10**9], ids=["always narrowed", "never narrowed"])
@pytest.mark.parametrize("selected", [["p3", "p9", "p3", "nope"], [f"p{i}" for i in range(10)] + ["p2"]])
def test_a_selection_joins_the_same_rows_narrowed_or_not(
    selected: list[str], narrowed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presets, "NARROWED_SELECTION", narrowed)
    table = pa.table({"paragraph_id": [f"p{i}" for i in range(10)], "n": list(range(10))})
    selection = pa.table({"paragraph_id": selected, "repeat": list(range(len(selected)))})
    expected = [(pid, int(pid[1:]), r) for r, pid in enumerate(selected) if pid != "nope"]
    found = presets.select(table, selection, "paragraph_id")
    assert list(zip(*found.to_pydict().values(), strict=True)) == expected
