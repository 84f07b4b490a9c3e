"""The concrete differences between pubmed_parser and pmcurate on the real fixtures, pinned.

Each test states what pubmed_parser 0.5.1 does on one fixture and what pmcurate does instead; the
full per-fixture comparison is ``bench/compare_pubmed_parser.py`` (docs/parser-vs-pubmed_parser.md).
If a pubmed_parser release fixes one of these, its test fails and the document needs updating.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pmcurate.harvest import jats

pp = pytest.importorskip("pubmed_parser", reason="pubmed_parser is not installed (pip install -e '.[dev]')")

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "jats"
JATS_14_NS = "https://jats.nlm.nih.gov/ns/archiving/1.4/"
VOLATILE_COLUMNS = {"source_uri", "content_sha256", "harvested_at"}


def fixture(name: str) -> Path:
    return FIXTURES / name


def ours(name: str) -> list[jats.ParsedArticle]:
    return jats.parse(fixture(name).read_bytes(), source_uri=name)


def our_paragraph_texts(name: str) -> list[str]:
    return [p["text"] for article in ours(name) for p in article.paragraphs]


def their_paragraph_texts(path: Path) -> list[str]:
    return [p["text"] for p in pp.parse_pubmed_paragraph(str(path), all_paragraph=True)]


def any_contains(texts: list[str], needle: str) -> bool:
    return any(needle in t for t in texts)


def with_jats_14_namespace(data: bytes) -> bytes:
    return re.sub(rb"<article(?=[\s>])", f'<article xmlns="{JATS_14_NS}"'.encode(), data, count=1)


def comparable_rows(parsed: list[jats.ParsedArticle]) -> list[Any]:
    return [
        ({k: v for k, v in a.article.items() if k not in VOLATILE_COLUMNS}, a.paragraphs, a.figures, a.tables)
        for a in parsed
    ]


def test_pubmed_parser_drops_nested_inline_text_that_ours_keeps() -> None:
    # GX<bold><underline>S</underline></bold>XG: the serine hydrolase motif loses its serine.
    name = "pone.0046493.nxml"
    theirs = their_paragraph_texts(fixture(name))
    assert any_contains(theirs, "(GXXG,") and not any_contains(theirs, "GXSXG")
    assert any_contains(our_paragraph_texts(name), "(GXSXG,")


def test_pubmed_parser_drops_the_superscript_of_chi_squared_that_ours_keeps() -> None:
    # <italic>χ</italic><sup><italic>2</italic></sup> = 15.594
    name = "PMC6398430.nxml"
    assert any_contains(their_paragraph_texts(fixture(name)), "birds: χ = 15.594")
    assert any_contains(our_paragraph_texts(name), "birds: χ^2 = 15.594")


def test_pubmed_parser_glues_the_words_around_a_display_formula() -> None:
    # could be written<disp-formula>…</disp-formula>in which
    name = "pone.0000217.nxml"
    assert any_contains(their_paragraph_texts(fixture(name)), "could be writtenin which")
    texts = our_paragraph_texts(name)
    assert not any_contains(texts, "writtenin")
    assert any_contains(texts, "could be written in which")


def test_pubmed_parser_splits_words_at_inline_tags_in_title_and_abstract() -> None:
    # M<italic>m</italic>PPOX in the title, T<sub>4</sub> in the abstract
    title_meta = pp.parse_pubmed_xml(str(fixture("pone.0046493.nxml")))
    assert title_meta["full_title"].startswith("M m PPOX")
    assert ours("pone.0046493.nxml")[0].article["title"].startswith("MmPPOX Inhibits")
    assert "thyroxine (T 4 )," in pp.parse_pubmed_xml(str(fixture("ehp-116-1694.nxml")))["abstract"]
    assert "thyroxine (T4)," in ours("ehp-116-1694.nxml")[0].article["abstract"]


def test_pubmed_parser_emits_table_footnotes_as_body_paragraphs() -> None:
    name = "pntd.0002065.nxml"
    footnote = "Values within a column with no superscripts in common differ significantly"
    assert sum(footnote in t for t in their_paragraph_texts(fixture(name))) == 2
    assert not any_contains(our_paragraph_texts(name), footnote)
    assert sum(footnote in (t["footer"] or "") for t in ours(name)[0].tables) == 2


def test_floats_group_tables_found_by_ours_and_missed_by_pubmed_parser() -> None:
    name = "6605965a.nxml"
    assert pp.parse_pubmed_table(str(fixture(name))) is None
    tables = ours(name)[0].tables
    assert [t["label"] for t in tables] == ["Table 1", "Table 2"]
    assert all(t["path"].startswith("floats-group/") for t in tables)


def test_floats_group_figures_found_by_both() -> None:
    # pubmed_parser's caption search is document-wide: no difference here, and the claim is not made.
    name = "ehp-116-1694.nxml"
    assert len(pp.parse_pubmed_caption(str(fixture(name)))) == 3
    assert len(ours(name)[0].figures) == 3


def test_pubmed_parser_reads_an_articleset_as_one_article_without_its_pmcid() -> None:
    name = "PMC6358576-PMC6358585-articleset.xml"
    assert pp.parse_pubmed_xml(str(fixture(name)))["pmc"] == ""  # ids are pub-id-type="pmcid"
    assert [a.article["pmcid"] for a in ours(name)] == [
        "PMC6358576",
        "PMC6358577",
        "PMC6358578",
        "PMC6358585",
    ]


def test_namespaced_jats_1_4_xml_gives_pubmed_parser_nothing_and_ours_the_same_rows(tmp_path: Path) -> None:
    data = fixture("pone.0000217.nxml").read_bytes()
    cloud_file = tmp_path / "PMC1790863.1.xml"  # the PMC Cloud Service names its files .xml
    cloud_file.write_bytes(with_jats_14_namespace(data))
    assert pp.parse_pubmed_paragraph(str(cloud_file), all_paragraph=True) == []
    assert pp.parse_pubmed_caption(str(cloud_file)) is None
    with pytest.raises(KeyError):
        pp.parse_pubmed_xml(str(cloud_file))
    assert comparable_rows(jats.parse(cloud_file.read_bytes())) == comparable_rows(jats.parse(data))


def test_pubmed_parser_strips_the_namespace_only_from_files_named_nxml(tmp_path: Path) -> None:
    original = fixture("pone.0000217.nxml")
    renamed = tmp_path / "pone.0000217.nxml"
    renamed.write_bytes(with_jats_14_namespace(original.read_bytes()))
    assert their_paragraph_texts(renamed) == their_paragraph_texts(original)
