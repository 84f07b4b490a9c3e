"""Writing parsed articles as shards: exact schemas, articles last, completion, quarantine, and
``ShardRows`` (rows kept as Arrow while a shard fills): the same bytes however the rows are chunked,
the copy the version rule keeps."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pmcurate import schema
from pmcurate.harvest import jats, store

Parsed = Callable[[str], list[jats.ParsedArticle]]
FIXTURES = sorted(
    p.name for p in (Path(__file__).parent.parent / "data" / "jats").iterdir() if "ml" in p.suffix
)
AT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def shard_bytes(build: Path, shard: str) -> dict[str, bytes]:
    return {
        table: store.shard_path(build, table, shard).read_bytes()
        for table in (*store.CONTENT_TABLES, "articles")
    }


def version_of(article: jats.ParsedArticle, version: int | None, tag: str) -> jats.ParsedArticle:
    """A copy of ``article`` with ``version``, its paragraphs marked with ``tag`` (to tell copies apart)."""
    return jats.ParsedArticle(
        {**article.article, "version": version},
        [{**p, "text": f"{p['text']} {tag}"} for p in article.paragraphs],
        article.figures,
        article.tables,
    )


def test_write_parsed_writes_every_table_with_its_exact_schema(
    tmp_path: Path, parsed_fixture: Parsed
) -> None:
    store.write_parsed(tmp_path, "s1", parsed_fixture("PMC5828200.nxml"), source="local")
    for table in ("articles", "paragraphs", "figures", "tables"):
        written = pq.read_schema(tmp_path / "tables" / table / "s1.parquet")
        assert written.remove_metadata() == schema.SCHEMAS[table].remove_metadata(), table


def test_write_parsed_returns_the_row_counts(tmp_path: Path, parsed_fixture: Parsed) -> None:
    [article] = parsed_fixture("PMC5828200.nxml")
    counts = store.write_parsed(tmp_path, "s1", [article], source="local")
    assert counts == {
        "articles": 1,
        "paragraphs": len(article.paragraphs),
        "figures": len(article.figures),
        "tables": len(article.tables),
    }
    assert pq.read_metadata(tmp_path / "tables" / "paragraphs" / "s1.parquet").num_rows == len(
        article.paragraphs
    )


def test_write_parsed_fills_source_and_harvested_at(tmp_path: Path, parsed_fixture: Parsed) -> None:
    at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    store.write_parsed(tmp_path, "s1", parsed_fixture("mds526.nxml"), source="pmc-cloud", harvested_at=at)
    row = pq.read_table(tmp_path / "tables" / "articles" / "s1.parquet").to_pylist()[0]
    assert (row["source"], row["harvested_at"]) == ("pmc-cloud", at)
    assert row["content_sha256"]  # from the parser


def test_write_parsed_writes_articles_last(
    tmp_path: Path, parsed_fixture: Parsed, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real = schema.write_shard
    monkeypatch.setattr(
        schema, "write_shard", lambda table, path: order.append(Path(path).parent.name) or real(table, path)
    )
    store.write_parsed(tmp_path, "s1", parsed_fixture("mds526.nxml"), source="local")
    assert order[-1] == "articles"
    assert sorted(order) == ["articles", "figures", "paragraphs", "tables"]


def test_shard_without_articles_file_is_not_complete(tmp_path: Path, parsed_fixture: Parsed) -> None:
    store.write_parsed(tmp_path, "done", parsed_fixture("mds526.nxml"), source="local")
    store.write_parsed(tmp_path, "partial", parsed_fixture("mds526.nxml"), source="local")
    (tmp_path / "tables" / "articles" / "partial.parquet").unlink()
    assert store.completed_shards(tmp_path) == {"done"}


def test_shard_with_no_articles_is_still_complete(tmp_path: Path) -> None:
    assert store.write_parsed(tmp_path, "empty", [], source="local")["articles"] == 0
    assert store.completed_shards(tmp_path) == {"empty"}


def test_completed_shards_of_a_missing_build_is_empty(tmp_path: Path) -> None:
    assert store.completed_shards(tmp_path / "nothing") == set()


def test_write_quarantine_writes_records_with_a_time(tmp_path: Path) -> None:
    written = store.write_quarantine(
        tmp_path, "s1", [{"source": "a.xml", "reason": "a.xml: not well-formed"}]
    )
    rows = pq.read_table(tmp_path / "tables" / "quarantine" / "s1.parquet").to_pylist()
    assert written == 1
    assert rows[0]["source"] == "a.xml"
    assert rows[0]["at"] is not None


def test_write_quarantine_writes_nothing_without_records(tmp_path: Path) -> None:
    assert store.write_quarantine(tmp_path, "s1", []) == 0
    assert not (tmp_path / "tables" / "quarantine").exists()


def test_remove_unfinished_deletes_only_unfinished_shards_with_the_prefix(
    tmp_path: Path, parsed_fixture: Parsed
) -> None:
    for name in ("local-a", "local-b", "other-c"):
        store.write_parsed(tmp_path, name, parsed_fixture("mds526.nxml"), source="local")
        store.write_quarantine(tmp_path, name, [{"source": "x.xml", "reason": "r"}])
    for name in ("local-b", "other-c"):
        (tmp_path / "tables" / "articles" / f"{name}.parquet").unlink()
    assert store.remove_unfinished(tmp_path, prefix="local-") == ["local-b"]
    left = sorted(p.relative_to(tmp_path / "tables").as_posix() for p in tmp_path.rglob("*b.parquet"))
    assert left == []
    assert (tmp_path / "tables" / "paragraphs" / "local-a.parquet").exists()
    assert (tmp_path / "tables" / "paragraphs" / "other-c.parquet").exists()


def test_writing_a_shard_leaves_pandas_unimported(tmp_path: Path) -> None:
    """pyarrow would import pandas (~0.2 CPU-s) on the first conversion of the rows: a harvest's
    pool does without it (``schema.pyarrow_without_pandas``)."""
    data = Path(__file__).parent.parent / "data" / "jats" / "PMC5828200.nxml"
    code = (
        "import sys; from pmcurate.harvest import jats, store; "
        f"parsed = jats.parse(open({str(data)!r}, 'rb').read()); "
        f"store.write_harvest_shard({str(tmp_path)!r}, 's1', store.ShardRows(source='local'), "
        "[{'source': 'x', 'stage': 'read', 'reason': 'r', 'error': 'e'}]); "
        f"store.write_parsed({str(tmp_path)!r}, 's2', parsed, source='local'); "
        "print('pandas' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert pq.read_metadata(store.shard_path(tmp_path, "articles", "s2")).num_rows == 1


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "x.parquet", "a b"])
def test_invalid_shard_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid shard name"):
        store.write_parsed(tmp_path, name, [], source="local")


def write_in_one_chunk(
    build: Path, shard: str, articles: list[jats.ParsedArticle], monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    with monkeypatch.context() as patch:
        patch.setattr(store, "CHUNK_ARTICLES", 10_000)
        return store.write_parsed(build, shard, articles, source="local", harvested_at=AT)


def test_shard_rows_write_the_same_bytes_however_chunked(
    tmp_path: Path, parsed_fixture: Parsed, monkeypatch: pytest.MonkeyPatch
) -> None:
    articles = [article for name in FIXTURES for article in parsed_fixture(name)]
    expected = write_in_one_chunk(tmp_path, "plain", articles, monkeypatch)
    monkeypatch.setattr(store, "CHUNK_ARTICLES", 4)  # several chunks from the fixtures' 25 articles
    rows = store.ShardRows(source="local")
    for article in articles:
        rows.add(article)
    counts = rows.write(tmp_path, "chunked", harvested_at=AT)
    assert counts == expected
    assert counts["articles"] == len(articles) > 8
    assert shard_bytes(tmp_path, "chunked") == shard_bytes(tmp_path, "plain")


def as_rows(article: jats.ParsedArticle) -> jats.ParsedArticle:
    """``article`` with its paragraphs as rows (dicts), not the walk's columns."""
    copy = jats.ParsedArticle(article.article, list(article.paragraphs), article.figures, article.tables)
    assert copy.paragraph_columns is None
    return copy


def test_paragraphs_as_columns_write_the_bytes_of_paragraphs_as_rows(
    tmp_path: Path, parsed_fixture: Parsed
) -> None:
    articles = [article for name in FIXTURES for article in parsed_fixture(name)]
    assert all(article.paragraph_columns is not None for article in articles)
    store.write_parsed(tmp_path, "rows", [as_rows(a) for a in articles], source="local", harvested_at=AT)
    mixed = [as_rows(a) if index % 3 == 0 else a for index, a in enumerate(articles)]
    store.write_parsed(tmp_path, "mixed", mixed, source="local", harvested_at=AT)
    store.write_parsed(tmp_path, "columns", articles, source="local", harvested_at=AT)
    assert shard_bytes(tmp_path, "columns") == shard_bytes(tmp_path, "rows") == shard_bytes(tmp_path, "mixed")


def test_paragraph_texts_beyond_one_string_array_split_it(
    tmp_path: Path, parsed_fixture: Parsed, monkeypatch: pytest.MonkeyPatch
) -> None:
    articles = [article for name in FIXTURES for article in parsed_fixture(name)]
    store.write_parsed(tmp_path, "plain", articles, source="local", harvested_at=AT)
    monkeypatch.setattr(store, "MAX_TEXT_BYTES", 20_000)  # a few articles an array
    parts = [a.paragraph_columns for a in articles[:8] if a.paragraph_columns is not None]
    assert len(store._paragraph_tables(parts, schema.PARAGRAPHS)) > 1
    store.write_parsed(tmp_path, "split", articles, source="local", harvested_at=AT)
    assert shard_bytes(tmp_path, "split") == shard_bytes(tmp_path, "plain")


def by_version_rule(added: list[jats.ParsedArticle]) -> tuple[list[jats.ParsedArticle], int]:
    """The rule spelt out: one copy per article, the highest version or else the later one, placed
    where the later copy was read; and the number of copies left out."""
    kept: dict[str, jats.ParsedArticle] = {}
    for article in added:
        article_id = article.article["article_id"]
        previous = kept.pop(article_id, None)
        if previous is not None and store.version_rank(previous) > store.version_rank(article):
            article = previous
        kept[article_id] = article
    return list(kept.values()), len(added) - len(kept)


# Versions of one article added in turn, with other articles in between (``x``): which copy is kept
# and where it lands must not depend on whether the first copy was already turned into Arrow.
@pytest.mark.parametrize(
    "versions",
    [
        [1, 2],  # the later, higher version wins
        [2, 1],  # the earlier, higher version wins and moves last
        [None, None],  # a tie: the later one
        [3, "x", "x", "x", 1],  # the winner is already in Arrow: it moves last
        [3, "x", "x", 1],  # ... after the articles not yet in Arrow
        [1, "x", "x", "x", 2, "x", "x", 0, 5],
    ],
)
def test_shard_rows_keep_the_copy_the_version_rule_keeps(
    versions: list, tmp_path: Path, parsed_fixture: Parsed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "CHUNK_ARTICLES", 2)
    [base] = parsed_fixture("mds526.nxml")
    others = iter(article for name in FIXTURES[:6] for article in parsed_fixture(name))
    added = [
        next(others) if version == "x" else version_of(base, version, f"copy{index}")
        for index, version in enumerate(versions)
    ]
    kept, left_out = by_version_rule(added)
    write_in_one_chunk(tmp_path, "expected", kept, monkeypatch)
    rows = store.ShardRows(source="local")
    for article in added:
        rows.add(article)
    rows.write(tmp_path, "chunked", harvested_at=AT)
    assert rows.duplicates == left_out > 0
    assert shard_bytes(tmp_path, "chunked") == shard_bytes(tmp_path, "expected")


def _version(version: int, text: str, article_id: str = "PMC1") -> jats.ParsedArticle:
    paragraph = {"paragraph_id": f"{article_id}/body/p", "article_id": article_id, "text": text}
    return jats.ParsedArticle({"article_id": article_id, "version": version}, [paragraph])


def _texts(build: Path) -> list[str]:
    return [r["text"] for p in schema.shard_paths(build, "paragraphs") for r in pq.read_table(p).to_pylist()]


def test_settle_versions_keeps_only_the_newest_version_of_an_article(tmp_path: Path) -> None:
    store.write_parsed(tmp_path, "new", [_version(2, "new text")], source="test")
    store.write_parsed(tmp_path, "old", [_version(1, "old text")], source="test")
    assert store.settle_versions(tmp_path)["articles"] == 1
    assert _texts(tmp_path) == ["new text"]
    assert store.settle_versions(tmp_path)["articles"] == 0


def test_settle_versions_keeps_the_winner_when_both_versions_share_a_shard(tmp_path: Path) -> None:
    store.write_parsed(tmp_path, "one", [_version(2, "new text"), _version(1, "old text")], source="test")
    store.settle_versions(tmp_path)
    rows = pq.read_table(tmp_path / "tables" / "articles" / "one.parquet").to_pylist()
    assert [(r["article_id"], r["version"]) for r in rows] == [("PMC1", 2)]
    assert _texts(tmp_path) == ["new text"]


def test_settle_versions_breaks_a_version_tie_by_the_given_order(tmp_path: Path) -> None:
    store.write_parsed(tmp_path, "a", [_version(1, "read first")], source="local")
    store.write_parsed(tmp_path, "b", [_version(1, "read last")], source="local")
    removed = store.settle_versions(tmp_path, order={"a": 1, "b": 0})
    assert (removed["articles"], _texts(tmp_path)) == (1, ["read first"])
