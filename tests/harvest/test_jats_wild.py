"""JATS from the whole world (issue 16): one class of damaged text or lost article per test group.

Each test reads a real article (``tests/data/jats`` and ``tests/data/jats-wild``, provenance in
their PROVENANCE.md) or a real article reduced or reshaped in memory to the one feature under test
(the reshaping is said beside each). The classes, in the issue's order: floats nested in ``<p>``,
superscripts and citations, formulas, default namespaces, foreign-namespace containers, articles
whose text is in sub-articles, licenses stated outside ``<permissions>``, fallback ids, huge text
nodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from pmcurate import schema
from pmcurate.harvest import jats

ParseFixture = Callable[[str], list[jats.ParsedArticle]]
FixturePath = Callable[[str], Path]
ARTICLESET = "PMC6358576-PMC6358585-articleset.xml"


def texts(article: jats.ParsedArticle) -> list[str]:
    return [p["text"] for p in article.paragraphs]


def joined(article: jats.ParsedArticle) -> str:
    return "\n".join(texts(article))


def fixture_bytes(fixture_path: FixturePath, name: str) -> bytes:
    return fixture_path(f"jats/{name}").read_bytes()


def fixture_path_bytes(fixture_path: FixturePath, name: str) -> bytes:
    """A file under ``tests/data`` (``jats-wild/…``: kept out of ``jats/``, which other tests harvest)."""
    return fixture_path(name).read_bytes()


# --- 1. floats nested in <p> leave the paragraph ----------------------------------------------------


def test_table_nested_in_a_paragraph_leaves_its_text(parsed_fixture: ParseFixture) -> None:
    """mds526 body/sec[3]/p[1] holds ``<table-wrap id="MDS526TB1">``: the paragraph reads around it,
    and the table's caption and cells are in the table row only."""
    [article] = parsed_fixture("mds526.nxml")
    [table] = [t for t in article.tables if t["xml_id"] == "MDS526TB1"]
    caption = " ".join(table["caption"].split())
    assert caption and all(caption not in " ".join(t.split()) for t in texts(article))
    [holder] = [p for p in article.paragraphs if p["path"] == "body/sec[3]/p[1]"]
    cells = [c for c in table["text"].replace("\n", "\t").split("\t") if len(c) > 12]
    assert cells and [c for c in cells if c in holder["text"]] == []


# --- 2. superscripts and citations --------------------------------------------------------------------


def test_superscript_power_of_ten_reads_with_a_caret(parsed_fixture: ParseFixture) -> None:
    # a density of approximately 8&#x000d7;10<sup>4</sup> cells
    assert "approximately 8×10^4 cells" in joined(parsed_fixture("PMC5828200.nxml")[0])


def test_superscript_followed_by_a_word_character_is_braced(parsed_fixture: ParseFixture) -> None:
    # <italic>M. smegmatis</italic> mc<sup>2</sup>155 used for expression experiments
    assert "M. smegmatis mc^{2}155 used for expression experiments" in joined(
        parsed_fixture("pone.0046493.nxml")[0]
    )


def test_subscript_stays_glued(parsed_fixture: ParseFixture) -> None:
    # BV<sub>2</sub> microglial cells
    assert "BV2 microglial cells" in joined(parsed_fixture("PMC5828200.nxml")[0])


def test_citation_glued_to_a_word_becomes_a_marker(parsed_fixture: ParseFixture) -> None:
    # vegetables and fibers<xref rid="B1" ref-type="bibr">1</xref>; trichobezoars, … hair<xref …>2</xref>;
    text = joined(parsed_fixture(ARTICLESET)[0])
    assert "vegetables and fibers [1]; trichobezoars, resulting from ingestion of hair [2];" in text


def superscript_citations(fixture_path: FixturePath) -> bytes:
    """The articleset with its glued citations superscripted, as Springer and many others write
    them: ``fibers<sup><xref ref-type="bibr" rid="B1">1</xref></sup>``."""
    data = fixture_bytes(fixture_path, ARTICLESET)
    return re.sub(rb'(<xref rid="B\d+" ref-type="bibr">\d+</xref>)', rb"<sup>\1</sup>", data)


def test_superscript_citation_becomes_a_marker(fixture_path: FixturePath) -> None:
    text = joined(jats.parse(superscript_citations(fixture_path))[0])
    assert "vegetables and fibers [1]; trichobezoars" in text


def test_citations_can_be_dropped(fixture_path: FixturePath) -> None:
    text = joined(jats.parse(superscript_citations(fixture_path), citations="drop")[0])
    assert "vegetables and fibers; trichobezoars, resulting from ingestion of hair; lactobezoars" in text


def test_dropped_bracketed_citations_take_their_brackets_along(parsed_fixture: ParseFixture) -> None:
    """1471-2180-11-174: genotypes [<xref>1</xref>-<xref>9</xref>]."""
    data = Path(parsed_fixture("1471-2180-11-174.nxml")[0].article["source_uri"]).read_bytes()
    text = joined(jats.parse(data, citations="drop")[0])
    assert "despite identical environments and genotypes." in text
    assert "[" not in text.split("despite identical environments", 1)[1][:40]


def test_unknown_citation_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="citations"):
        jats.parse(b"<article/>", citations="superscript")


# --- 3. formulas --------------------------------------------------------------------------------------


def test_tex_formula_is_its_body_without_the_latex_preamble(parsed_fixture: ParseFixture) -> None:
    """PMC7417471's tex-math wraps each formula in ``\\documentclass … \\begin{document}``."""
    text = joined(parsed_fixture("PMC7417471.nxml")[0])
    assert r"{\text{T}}_{\text{g}}" in text
    assert "documentclass" not in text and "usepackage" not in text and "begin{document}" not in text


def test_display_formula_keeps_its_label(source_articles: Callable) -> None:
    """PMC6398430 ``<disp-formula><mml:math id="M1">…</mml:math><label>(1)</label>``."""
    [article] = source_articles("PMC6398430.nxml")
    formula = next(article.iter("disp-formula"))
    text = jats.formula_text(formula)
    assert text.endswith("(1)") and text.startswith("C F=")


def test_mathml_tokens_do_not_glue_into_words(source_articles: Callable) -> None:
    """PMC6398430 M2: ``<mml:mi>i</mml:mi><mml:mi>n</mml:mi><mml:mi>d</mml:mi>`` in a subscript is
    three tokens, not the word "ind"."""
    [article] = source_articles("PMC6398430.nxml")
    second = [f for f in article.iter("disp-formula")][1]
    assert "_{i n d}" in jats.formula_text(second)


# --- 4. any default namespace -------------------------------------------------------------------------


def test_nlm_2_namespaced_oai_record_is_read(fixture_path: FixturePath) -> None:
    """PMC3902907 as PMC's OAI service served it: ``xmlns="http://dtd.nlm.nih.gov/2.0/xsd/archivearticle"``."""
    [article] = jats.parse(fixture_path_bytes(fixture_path, "jats-wild/PMC3902907-oai-nlm2.xml"))
    assert article.article["article_id"] == "PMC3902907"
    assert article.article["pmid"] == "24106086" and article.article["doi"] == "10.1093/nar/gkt903"
    assert article.article["journal"] == "Nucleic Acids Research"
    assert [p["section_title"] for p in article.paragraphs] == ["Abstract", "INTRODUCTION", "INTRODUCTION"]


def test_text_reading_xmlns_is_not_a_namespace(fixture_path: FixturePath) -> None:
    data = fixture_path_bytes(fixture_path, "jats-wild/PMC3902907-oai-nlm2.xml").replace(
        b"typically at U-rich sites", b'typically at sites xmlns="urn:x" say'
    )
    [article] = jats.parse(data)
    assert 'typically at sites xmlns="urn:x" say' in joined(article)


# --- 5. foreign-namespace containers ------------------------------------------------------------------


def taxon_treatment(fixture_path: FixturePath) -> bytes:
    """ZooKeys 100:171 (TaxPub) with its methods section written as a TaxPub treatment section, the
    way Pensoft's treatments hold their paragraphs (``tp:taxon-treatment/tp:treatment-sec/p``)."""
    data = fixture_path_bytes(fixture_path, "jats-wild/zookeys.100.1525-reduced.xml")
    data = data.replace(
        b'<sec sec-type="The lizard Podarcis sicula">',
        b'<tp:taxon-treatment><tp:treatment-sec sec-type="The lizard Podarcis sicula">',
    )
    return data.replace(
        b"</sec>\n        </sec>", b"</tp:treatment-sec></tp:taxon-treatment>\n        </sec>"
    )


def test_taxpub_treatment_paragraphs_are_extracted(fixture_path: FixturePath) -> None:
    [article] = jats.parse(taxon_treatment(fixture_path))
    [row] = [p for p in article.paragraphs if "digital camcorder" in p["text"]]
    assert row["path"] == "body/sec[2]/tp:taxon-treatment/tp:treatment-sec/p"
    assert row["section_path"] == ["Material and methods", "The lizard Podarcis sicula"]


def test_taxon_names_inside_a_paragraph_are_text(fixture_path: FixturePath) -> None:
    [article] = jats.parse(fixture_path_bytes(fixture_path, "jats-wild/zookeys.100.1525-reduced.xml"))
    assert "natural insect predators: Crocidura leucodon (Hermann, 1780)" in joined(article)


def test_mathml_outside_a_paragraph_is_still_skipped(fixture_path: FixturePath) -> None:
    [article] = jats.parse(fixture_bytes(fixture_path, "PMC6398430.nxml"))
    assert all("C F=" not in t for t in texts(article))


# --- 6. articles whose text is in sub-articles --------------------------------------------------------

MEETING_ABSTRACTS = b"""<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="abstract">
<front><journal-meta><journal-title-group><journal-title>BMC Proceedings</journal-title>
</journal-title-group></journal-meta><article-meta><article-id pub-id-type="pmc">3000001</article-id>
<title-group><article-title>Abstracts of the annual meeting</article-title></title-group>
</article-meta></front>
<body/>
<sub-article article-type="abstract" id="A1"><front-stub><title-group><article-title>A1 Gut microbes
</article-title></title-group></front-stub><body><sec><title>Background</title>
<p>Gut microbes shape immunity.</p></sec></body></sub-article>
<sub-article article-type="abstract" id="A2"><front-stub><title-group><article-title>A2 Sleep
</article-title></title-group></front-stub><body><p>Sleep loss raises cortisol.</p></body></sub-article>
</article>"""
"""The shape of PMC's meeting-abstract supplements: an empty main body and one ``sub-article``
per abstract (BMC Proceedings, Critical Care and others publish 100+ in one article)."""


def test_article_whose_text_is_all_in_sub_articles_gives_their_paragraphs() -> None:
    [article] = jats.parse(MEETING_ABSTRACTS)
    assert texts(article) == ["Gut microbes shape immunity.", "Sleep loss raises cortisol."]
    assert [p["path"] for p in article.paragraphs] == ["sub-article[1]/body/sec/p", "sub-article[2]/body/p"]


def test_article_with_body_text_keeps_sub_articles_out(parsed_fixture: ParseFixture) -> None:
    from tests.harvest.test_jats_text import SUB_ARTICLE_XML

    [article] = jats.parse(SUB_ARTICLE_XML)
    assert all(not p["path"].startswith("sub-article") for p in article.paragraphs)


# --- 7. licenses outside <permissions> ----------------------------------------------------------------

SPRINGER_OPEN_ACCESS = (
    b"<ack><title>Open Access</title><p>This article is distributed under the terms of the Creative "
    b"Commons Attribution Noncommercial License which permits any noncommercial use, distribution, "
    b"and reproduction in any medium, provided the original author(s) and source are credited.</p></ack>"
)


def without_license(data: bytes) -> bytes:
    return re.sub(rb"<license[ >].*?</license>", b"", data, flags=re.S)


def test_springer_open_access_statement_in_ack_is_the_license(fixture_path: FixturePath) -> None:
    """6605965a (no license in its permissions) with the Springer/Adis statement in ``back/ack``."""
    data = fixture_bytes(fixture_path, "6605965a.nxml").replace(
        b"<back>", b"<back>" + SPRINGER_OPEN_ACCESS, 1
    )
    [article] = jats.parse(data)
    assert (article.article["license"], article.article["commercial_use"]) == ("CC BY-NC", False)


def test_a_creative_commons_mention_in_thanks_is_not_the_license(fixture_path: FixturePath) -> None:
    thanks = b"<ack><p>We thank J. Doe for images shared under a Creative Commons license.</p></ack>"
    data = fixture_bytes(fixture_path, "6605965a.nxml").replace(b"<back>", b"<back>" + thanks, 1)
    [article] = jats.parse(data)
    assert article.article["license"] is None


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        (b"This article is a U.S. Government work and is not subject to copyright in the USA.", "PD"),
        (b"This is a work of the US Government and is not subject to copyright protection in the US.", "PD"),
        (
            b"This file is available for text mining. It may also be used consistent with the principles "
            b"of fair use under the copyright law.",
            "TDM",
        ),
    ],
    ids=["us-government-work", "work-of-the-us-government", "author-manuscript-tdm"],
)
def test_license_p_statement_is_normalized(fixture_path: FixturePath, statement: bytes, code: str) -> None:
    data = without_license(fixture_bytes(fixture_path, "PMC5828200.nxml"))
    data = data.replace(
        b"</permissions>", b"<license><license-p>" + statement + b"</license-p></license></permissions>"
    )
    [article] = jats.parse(data)
    assert article.article["license"] == code


# --- 8. ids -------------------------------------------------------------------------------------------


def with_ids(fixture_path: FixturePath, ids: bytes) -> bytes:
    """PMC5828200 with its ``article-id`` elements replaced by ``ids``."""
    data = fixture_bytes(fixture_path, "PMC5828200.nxml")
    data = re.sub(rb"<article-id[^>]*>[^<]*</article-id>\s*", b"", data)
    return data.replace(b"<article-meta>", b"<article-meta>" + ids, 1)


def test_version_doi_is_not_the_article_doi(fixture_path: FixturePath) -> None:
    """eLife lists the DOI of a version with ``specific-use="version"``, sometimes first."""
    ids = (
        b'<article-id pub-id-type="doi" specific-use="version">10.7554/eLife.84364.2</article-id>'
        b'<article-id pub-id-type="doi">10.7554/eLife.84364</article-id>'
    )
    [article] = jats.parse(with_ids(fixture_path, ids))
    assert (article.article["doi"], article.article["article_id"]) == (
        "10.7554/eLife.84364",
        "doi:10.7554/elife.84364",
    )


def test_doi_url_is_normalized(fixture_path: FixturePath) -> None:
    ids = b'<article-id pub-id-type="doi">https://doi.org/10.3390/ijms19020602</article-id>'
    [article] = jats.parse(with_ids(fixture_path, ids))
    assert (article.article["doi"], article.article["id_source"]) == ("10.3390/ijms19020602", "doi")


def test_publisher_id_with_its_journal_keys_an_article_without_doi_pmc_or_pmid(
    fixture_path: FixturePath,
) -> None:
    [article] = jats.parse(
        with_ids(fixture_path, b'<article-id pub-id-type="publisher-id">ijms-19-00602</article-id>')
    )
    assert article.article["article_id"] == "publisher-id:ImpactJ/ijms-19-00602"
    assert article.article["id_source"] == "publisher-id"
    assert all(p["article_id"] == article.article["article_id"] for p in article.paragraphs)


def test_article_without_any_id_is_kept_under_a_content_hash(fixture_path: FixturePath) -> None:
    data = with_ids(fixture_path, b"")
    [first] = jats.parse(data)
    [again] = jats.parse(data)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first.article["article_id"])
    assert (
        first.article["article_id"] == again.article["article_id"] and first.article["id_source"] == "content"
    )
    assert first.paragraphs


def test_id_source_is_a_column_of_articles() -> None:
    assert schema.ARTICLES.field("id_source").type == "string"


# --- 9. huge text nodes -------------------------------------------------------------------------------


def test_article_with_a_text_node_over_ten_megabytes_is_parsed(fixture_path: FixturePath) -> None:
    """A supplementary data dump pasted in a paragraph: libxml2 refuses text nodes over 10 MB
    without ``huge_tree``."""
    big = b"ACGT" * (11 * 2**20 // 4)
    data = fixture_bytes(fixture_path, "PMC5828200.nxml").replace(
        b"</body>", b"<p>" + big + b"</p></body>", 1
    )
    [article] = jats.parse(data)
    assert max(len(t) for t in texts(article)) == len(big)


def test_huge_text_does_not_lift_the_nesting_limit(fixture_path: FixturePath) -> None:
    deep = b"<list><list-item>" * 300 + b"x" + b"</list-item></list>" * 300
    big = b"<p>" + b"A" * (11 * 2**20) + b"</p>"
    data = fixture_bytes(fixture_path, "PMC5828200.nxml").replace(b"</body>", big + deep + b"</body>", 1)
    with pytest.raises(jats.JatsError, match="nesting"):
        jats.parse(data)


def test_a_document_over_the_depth_limit_is_refused_without_huge_text() -> None:
    deep = b"<article><body>" + b"<list>" * 300 + b"</list>" * 300 + b"</body></article>"
    with pytest.raises(jats.JatsError, match="not well-formed"):
        jats.parse(deep)


def test_parsed_tree_has_no_namespace_on_jats_elements(fixture_path: FixturePath) -> None:
    root = etree.fromstring(
        jats._without_default_namespaces(
            fixture_path_bytes(fixture_path, "jats-wild/PMC3902907-oai-nlm2.xml")
        )
    )
    assert {etree.QName(el).namespace for el in root.iter() if isinstance(el.tag, str)} == {None}
