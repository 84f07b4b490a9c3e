"""The shapes JATS arrives in besides a bare legacy ``<article>``.

None of the real fixtures uses the JATS 1.4 default namespace of today's PMC Cloud Service XML, so
these tests rewrite real fixtures into that shape in memory (the files on disk stay untouched):
default namespace ``https://jats.nlm.nih.gov/ns/archiving/1.4/`` on ``<article>``, the PMC id as
``pub-id-type="pmcid"`` ``PMC123`` plus ``pmcid-ver`` ``PMC123.2``. The rewritten article must give
exactly the rows of the original (and ``version`` 2). Then: the OAI-PMH ``GetRecord`` and
``ListRecords`` envelopes, an ``<articles>`` wrapper, publisher JATS without any PMC id (keyed
``doi:<doi lowercased>``), an undeclared ``xlink:`` prefix and a DTD entity (``&nbsp;``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pmcurate.harvest import jats

JATS14 = "https://jats.nlm.nih.gov/ns/archiving/1.4/"
DOCTYPE14 = (
    '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.4 '
    '20241031//EN" "JATS-archive-oasis-article1-4.dtd">'
)
OAI = "http://www.openarchives.org/OAI/2.0/"
VOLATILE = {"version", "content_sha256", "source_uri", "source", "harvested_at"}
"""Article columns that may legitimately differ between two serializations of one article."""

NAMESPACED = {
    "6605965a.nxml": "2994229",  # tables in floats-group, no xlink at all
    "ehp-116-1694.nxml": "2599765",  # figures in floats-group
    "mds526.nxml": "3574550",  # floats nested in <p>
    "PMC7417471.nxml": "7417471",  # tex-math and MathML
}

FixturePath = Callable[[str], Path]


def read(fixture_path: FixturePath, name: str) -> str:
    return fixture_path(f"jats/{name}").read_text(encoding="utf-8")


def to_jats14(xml: str, pmc: str, version: int = 2) -> str:
    """A legacy article rewritten as PMC Cloud Service JATS 1.4: namespace, pmcid and pmcid-ver."""
    legacy_id = f'<article-id pub-id-type="pmc">{pmc}</article-id>'
    assert xml.count(legacy_id) == 1
    xml = xml.replace(
        legacy_id,
        f'<article-id pub-id-type="pmcid">PMC{pmc}</article-id>'
        f'<article-id pub-id-type="pmcid-ver">PMC{pmc}.{version}</article-id>',
    )
    xml = re.sub(r"<!DOCTYPE[^>]*>", DOCTYPE14, xml, count=1)
    return re.sub(r"<article(?=[\s>])", f'<article xmlns="{JATS14}"', xml, count=1)


def bare(xml: str) -> str:
    """The article element alone, as it sits inside an envelope (no declaration, no DOCTYPE)."""
    return xml[re.search(r"<article[\s>]", xml).start() :]


def oai_record(xml: str, pmc: str) -> str:
    return (
        f"<record><header><identifier>oai:pubmedcentral.nih.gov:{pmc}</identifier>"
        f"<datestamp>2026-05-04</datestamp><setSpec>pmc-open</setSpec></header>"
        f"<metadata>{bare(xml)}</metadata></record>"
    )


def oai_envelope(verb: str, records: str, tail: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<OAI-PMH xmlns="{OAI}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.openarchives.org/'
        'OAI/2.0/ http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"><responseDate>2026-11-25T10:00:00Z'
        f'</responseDate><request verb="{verb}" metadataPrefix="pmc">https://pmc.ncbi.nlm.nih.gov/api/oai/v1/mh/'
        f"</request><{verb}>{records}{tail}</{verb}></OAI-PMH>"
    ).encode()


def stable(article: dict) -> dict:
    return {k: v for k, v in article.items() if k not in VOLATILE}


def parse_one(xml: str | bytes) -> jats.ParsedArticle:
    [article] = jats.parse(xml.encode() if isinstance(xml, str) else xml)
    return article


# --- JATS 1.4 with a default namespace --------------------------------------------------------------


@pytest.mark.parametrize(("name", "pmc"), NAMESPACED.items())
def test_namespaced_variant_gives_the_same_paragraph_rows(
    fixture_path: FixturePath, name: str, pmc: str
) -> None:
    xml = read(fixture_path, name)
    original, namespaced = parse_one(xml), parse_one(to_jats14(xml, pmc))
    assert original.paragraphs and namespaced.paragraphs == original.paragraphs


@pytest.mark.parametrize(("name", "pmc"), NAMESPACED.items())
def test_namespaced_variant_gives_the_same_figure_and_table_rows(
    fixture_path: FixturePath, name: str, pmc: str
) -> None:
    xml = read(fixture_path, name)
    original, namespaced = parse_one(xml), parse_one(to_jats14(xml, pmc))
    assert (namespaced.figures, namespaced.tables) == (original.figures, original.tables)


@pytest.mark.parametrize(("name", "pmc"), NAMESPACED.items())
def test_namespaced_variant_gives_the_same_article_metadata(
    fixture_path: FixturePath, name: str, pmc: str
) -> None:
    xml = read(fixture_path, name)
    original, namespaced = parse_one(xml), parse_one(to_jats14(xml, pmc))
    assert stable(namespaced.article) == stable(original.article)


@pytest.mark.parametrize(("name", "pmc"), NAMESPACED.items())
def test_pmcid_ver_gives_pmcid_and_version(fixture_path: FixturePath, name: str, pmc: str) -> None:
    article = parse_one(to_jats14(read(fixture_path, name), pmc)).article
    assert (article["article_id"], article["pmcid"], article["version"]) == (f"PMC{pmc}", f"PMC{pmc}", 2)


def test_pmc_id_given_only_as_pmcid_ver_still_keys_the_article(fixture_path: FixturePath) -> None:
    xml = to_jats14(read(fixture_path, "mds526.nxml"), "3574550", version=3)
    xml = xml.replace('<article-id pub-id-type="pmcid">PMC3574550</article-id>', "")
    article = parse_one(xml).article
    assert (article["article_id"], article["version"]) == ("PMC3574550", 3)


# --- envelopes --------------------------------------------------------------------------------------


def test_oai_pmh_getrecord_envelope_gives_its_article(fixture_path: FixturePath) -> None:
    xml = to_jats14(read(fixture_path, "ehp-116-1694.nxml"), "2599765")
    expected = parse_one(xml)
    got = parse_one(oai_envelope("GetRecord", oai_record(xml, "2599765")))
    assert (got.article["article_id"], got.paragraphs, got.figures) == (
        "PMC2599765",
        expected.paragraphs,
        expected.figures,
    )


def test_oai_pmh_listrecords_envelope_gives_every_article_in_order(fixture_path: FixturePath) -> None:
    first = to_jats14(read(fixture_path, "6605965a.nxml"), "2994229")
    second = to_jats14(read(fixture_path, "pntd.0002065.nxml"), "3585041")
    token = '<resumptionToken cursor="0" completeListSize="3">oai%3Apmc%3A3585041</resumptionToken>'
    data = oai_envelope("ListRecords", oai_record(first, "2994229") + oai_record(second, "3585041"), token)
    assert [a.article["article_id"] for a in jats.parse(data)] == ["PMC2994229", "PMC3585041"]


def test_oai_pmh_record_in_an_older_jats_namespace_is_read_the_same(fixture_path: FixturePath) -> None:
    """Older OAI-PMH responses carry ``https://jats.nlm.nih.gov/ns/archiving/1.3/`` on the article."""
    xml = to_jats14(read(fixture_path, "pntd.0002065.nxml"), "3585041")
    older = xml.replace(JATS14, "https://jats.nlm.nih.gov/ns/archiving/1.3/")
    got = parse_one(oai_envelope("GetRecord", oai_record(older, "3585041")))
    assert (got.article["article_id"], got.paragraphs) == ("PMC3585041", parse_one(xml).paragraphs)


def test_articles_wrapper_gives_every_article_with_its_rows(fixture_path: FixturePath) -> None:
    a, b = read(fixture_path, "mds526.nxml"), read(fixture_path, "pone.0000217.nxml")
    data = f'<?xml version="1.0" encoding="UTF-8"?>\n<articles>{bare(a)}{bare(b)}</articles>'.encode()
    got = jats.parse(data)
    assert [x.article["article_id"] for x in got] == ["PMC3574550", "PMC1790863"]
    assert [x.paragraphs for x in got] == [parse_one(a).paragraphs, parse_one(b).paragraphs]


# --- publisher JATS without PMC ids -----------------------------------------------------------------


def without_pmc_id(xml: str, pmc: str) -> str:
    legacy_id = f'<article-id pub-id-type="pmc">{pmc}</article-id>'
    assert legacy_id in xml
    return xml.replace(legacy_id, "")


def test_publisher_jats_without_pmc_id_is_keyed_by_doi(fixture_path: FixturePath) -> None:
    article = parse_one(without_pmc_id(read(fixture_path, "6605965a.nxml"), "2994229"))
    assert (article.article["article_id"], article.article["pmcid"]) == ("doi:10.1038/sj.bjc.6605965", None)


def test_doi_key_is_lowercased(fixture_path: FixturePath) -> None:
    xml = without_pmc_id(read(fixture_path, "6605965a.nxml"), "2994229")
    xml = xml.replace(">10.1038/sj.bjc.6605965<", ">10.1038/SJ.BJC.6605965<")
    assert parse_one(xml).article["article_id"] == "doi:10.1038/sj.bjc.6605965"


def test_publisher_jats_rows_are_keyed_by_the_doi_article_id(fixture_path: FixturePath) -> None:
    parsed = parse_one(without_pmc_id(read(fixture_path, "6605965a.nxml"), "2994229"))
    rows = parsed.paragraphs + parsed.tables
    assert len(rows) == 17 and {r["article_id"] for r in rows} == {"doi:10.1038/sj.bjc.6605965"}
    assert all(p["paragraph_id"] == f"doi:10.1038/sj.bjc.6605965/{p['path']}" for p in parsed.paragraphs)


# --- recoverable damage -----------------------------------------------------------------------------


def test_undeclared_xlink_prefix_is_recovered(fixture_path: FixturePath) -> None:
    xml = read(fixture_path, "ehp-116-1694.nxml")
    broken = xml.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "", 1)
    assert "xmlns:xlink" not in broken
    original, recovered = parse_one(xml), parse_one(broken)
    assert recovered.paragraphs == original.paragraphs


def test_undeclared_xlink_prefix_keeps_graphic_hrefs(fixture_path: FixturePath) -> None:
    xml = read(fixture_path, "ehp-116-1694.nxml")
    broken = xml.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "", 1)
    graphics = [f["graphics"] for f in parse_one(broken).figures]
    assert graphics == [["ehp-116-1694f1"], ["ehp-116-1694f2"], ["ehp-116-1694f3"]]


def test_dtd_entity_nbsp_is_recovered_without_losing_paragraphs(fixture_path: FixturePath) -> None:
    xml = read(fixture_path, "1471-2180-11-174.nxml")
    damaged = xml.replace("competent <italic>B. subtilis", "competent&nbsp;<italic>B. subtilis", 1)
    assert damaged != xml
    assert len(parse_one(damaged).paragraphs) == len(parse_one(xml).paragraphs)


def test_dtd_entity_nbsp_still_separates_words(fixture_path: FixturePath) -> None:
    xml = read(fixture_path, "1471-2180-11-174.nxml")
    damaged = xml.replace("competent <italic>B. subtilis", "competent&nbsp;<italic>B. subtilis", 1)
    texts = [p["text"] for p in parse_one(damaged).paragraphs]
    assert any(re.search(r"competent[\u00a0 ]B\. subtilis cells", t) for t in texts)
