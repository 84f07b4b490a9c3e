"""Text checks of the JATS parser on the real fixtures, written by reading the XML.

The expected sentences were read in the fixture XML (the snippet of markup each one comes from is
quoted beside it). The rules are DESIGN.md's text fidelity rules: inline markup (``italic``,
``sup``, ``sub``, ``xref``, ``bold``) adds no spaces and removes none, so the text is the XML's
own characters; nested ``<p>`` are not emitted twice; the ``<p>`` of floats are not paragraph
rows (a float nested in a ``<p>`` stays in that paragraph's text, as the project's fidelity
measure reads it: see test_jats_golden.py); formulas are TeX when ``tex-math`` exists, readable
MathML otherwise.

Structural checks resolve each row's ``path`` back into the source XML with the small resolver of
``tests/conftest.py`` (steps by local name, 1-based among same-named siblings, ``p`` = ``p[1]``),
so they hold the parser to the XML rather than to itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import takewhile

import pytest
from lxml import etree

from pmcurate.harvest import jats

ParseFixture = Callable[[str], list[jats.ParsedArticle]]
SourceArticles = Callable[[str], tuple[etree._Element, ...]]
Resolve = Callable[[etree._Element, str], etree._Element]

ARTICLESET = "PMC6358576-PMC6358585-articleset.xml"
ALL_ARTICLES = [
    ("1471-2180-11-174.nxml", 0),
    ("1472-6831-8-11.nxml", 0),
    ("6605965a.nxml", 0),
    ("PMC5828200.nxml", 0),
    (ARTICLESET, 0),
    (ARTICLESET, 1),
    (ARTICLESET, 2),
    (ARTICLESET, 3),
    ("PMC6398430.nxml", 0),
    ("PMC7417471.nxml", 0),
    ("ehp-116-1694.nxml", 0),
    ("mds526.nxml", 0),
    ("pntd.0002065.nxml", 0),
    ("pone.0000217.nxml", 0),
    ("pone.0046493.nxml", 0),
]
FLOAT_TAGS = {"fig", "table-wrap", "caption", "fn", "fn-group", "supplementary-material", "table-wrap-foot"}
WORD = re.compile(r"[^\W_]+")


def every_article() -> list:
    return [pytest.param(f, i, id=f"{f.rsplit('.', 1)[0]}[{i}]") for f, i in ALL_ARTICLES]


def paragraph_texts(parsed_fixture: ParseFixture, file: str, index: int = 0) -> list[str]:
    return [" ".join(p["text"].split()) for p in parsed_fixture(file)[index].paragraphs]


def local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def xml_text(el: etree._Element) -> str:
    """All text under ``el``, whitespace-normalized, with a space at every element boundary."""
    return " ".join(" ".join(el.itertext()).split())


def cites(el: etree._Element, xml_id: str) -> bool:
    """Whether ``el`` holds an ``xref`` to ``xml_id`` that is not inside the cited object itself: a
    table nested in a paragraph whose footnote says "(Table 3)" of itself does not make the
    paragraph around it a mention of Table 3."""
    for xref in el.iter("xref"):
        if xml_id in (xref.get("rid") or "").split():
            between = takewhile(lambda a: a is not el, xref.iterancestors())
            if all(a.get("id") != xml_id for a in between):
                return True
    return False


# --- inline markup: no glued words, no added spaces -------------------------------------------------


@pytest.mark.parametrize(
    ("file", "sentence"),
    [
        # competent <italic>B. subtilis </italic>cells in one study [<xref …>18</xref>].
        ("1471-2180-11-174.nxml", "decreased the number of competent B. subtilis cells in one study [18]."),
        # for <italic>E. coli</italic>, 1.07 in VSV, 1&#x02013;2 for <italic>S. cerevisiae</italic>, …
        (
            "pone.0000217.nxml",
            "0.21 phenotypic dimensions for E. coli, 1.07 in VSV, 1–2 for S. cerevisiae, "
            "and 2–3 for D. melanogaster and C. elegans.",
        ),
        # It has been shown that <italic>M. tuberculosis</italic> is able to store …
        (
            "pone.0046493.nxml",
            "It has been shown that M. tuberculosis is able to store triacylglycerols (TAG)",
        ),
    ],
    ids=["bmc-italic-with-inner-space", "plos-italic-then-comma", "plos-italic-then-word"],
)
def test_italic_species_names_are_not_glued_to_their_neighbours(
    parsed_fixture: ParseFixture, file: str, sentence: str
) -> None:
    assert any(sentence in text for text in paragraph_texts(parsed_fixture, file))


@pytest.mark.parametrize(
    ("file", "glued"),
    [
        ("1471-2180-11-174.nxml", "competentB. subtilis"),
        ("1471-2180-11-174.nxml", "subtiliscells"),
        ("pone.0000217.nxml", "forE. coli"),
        ("pone.0046493.nxml", "thatM. tuberculosis"),
        ("pone.0046493.nxml", "tuberculosisis"),
    ],
)
def test_no_paragraph_glues_words_across_italic_tags(
    parsed_fixture: ParseFixture, file: str, glued: str
) -> None:
    assert not [t for t in paragraph_texts(parsed_fixture, file) if glued in t]


@pytest.mark.parametrize(
    ("file", "sentence"),
    [
        # BV<sub>2</sub> microglial cells: a subscript stays glued to its base
        ("PMC5828200.nxml", "BV2 microglial cells were seeded in 24-well plates"),
        # where CM<sub>t</sub> is the total number … and CM<sub>ind</sub> is the absolute number
        (
            "PMC6398430.nxml",
            "where CMt is the total number of sightings of marked birds including resightings and CMind",
        ),
        # (M<italic>m</italic>PPOX, also known as compound 7600,
        ("pone.0046493.nxml", "(MmPPOX, also known as compound 7600, Figure 1B)"),
    ],
    ids=["sub", "sub-in-symbol", "italic-inside-word"],
)
def test_inline_markup_inside_a_word_adds_no_space(
    parsed_fixture: ParseFixture, file: str, sentence: str
) -> None:
    assert any(sentence in text for text in paragraph_texts(parsed_fixture, file))


# --- citations keep their visible text -------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "index", "sentence"),
    [
        # genotypes [<xref>1</xref>-<xref>9</xref>]
        ("1471-2180-11-174.nxml", 0, "despite identical environments and genotypes [1-9]."),
        # <italic>Bacillus subtilis </italic>[<xref>17</xref>,<xref>18</xref>] and <italic>Saccharomyces
        ("1471-2180-11-174.nxml", 0, "Bacillus subtilis [17,18] and Saccharomyces cerevisiae [19-24]."),
        # deaths [<xref>2</xref>, <xref>3</xref>].
        ("mds526.nxml", 0, "to help decrease cancer-related deaths [2, 3]."),
        # needed <xref>[1]</xref>. … process <xref>[2]</xref>, <xref>[3]</xref>, …
        ("pone.0046493.nxml", 0, "are urgently needed [1]. It has been shown that"),
        ("pone.0046493.nxml", 0, "during the infection process [2], [3], [4], [5] and in vitro"),
        # (<xref>Pradel et al. 1997</xref>; <xref>Thomas et al. 2002</xref>)
        (
            "PMC6398430.nxml",
            0,
            "capture–recapture calculations (Pradel et al. 1997; Thomas et al. 2002) as we",
        ),
        # inflammation [<xref>1</xref>&#x02013;<xref>5</xref>]
        (ARTICLESET, 3, "a physiological process of sterile inflammation [1–5], characterized by"),
    ],
    ids=["bmc-range", "bmc-list", "oup-list", "plos-single", "plos-list", "author-year", "springer-range"],
)
def test_citations_keep_their_visible_text(
    parsed_fixture: ParseFixture, file: str, index: int, sentence: str
) -> None:
    assert any(sentence in text for text in paragraph_texts(parsed_fixture, file, index))


# --- no duplicated text ----------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "index"), every_article())
def test_no_paragraph_is_repeated_inside_another_unless_the_xml_repeats_it(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    file: str,
    index: int,
) -> None:
    """A paragraph (40+ characters of words) inside another paragraph of the same article is a bug,
    unless the source elements themselves repeat the text: 6605965a repeats its abstract's
    conclusion at the end of the discussion, word for word."""
    rows = parsed_fixture(file)[index].paragraphs
    article = source_articles(file)[index]
    texts = [" ".join(words(r["text"])) for r in rows]
    sources = [" ".join(words(xml_text(resolve_path(article, r["path"])))) for r in rows]
    repeated = [
        (rows[i]["path"], rows[j]["path"])
        for i, a in enumerate(texts)
        for j, b in enumerate(texts)
        if i != j and len(a) >= 40 and a in b and sources[i] not in sources[j]
    ]
    assert repeated == []


@pytest.mark.parametrize(
    "file", ["mds526.nxml", "PMC7417471.nxml", ARTICLESET], ids=["mds526", "PMC7417471", "articleset"]
)
def test_nested_caption_paragraphs_are_not_paragraph_rows(
    parsed_fixture: ParseFixture, source_articles: SourceArticles, file: str
) -> None:
    """These files put ``fig``/``table-wrap`` inside ``<p>``; the ``<p>`` of their captions and
    footnotes are nested paragraphs and must not come out as rows of their own."""
    for parsed, article in zip(parsed_fixture(file), source_articles(file), strict=True):
        nested = {" ".join(words(xml_text(p))) for p in article.xpath("body//p//p")}
        rows = {" ".join(words(r["text"])) for r in parsed.paragraphs}
        assert nested.isdisjoint(rows)


@pytest.mark.parametrize(
    "file", ["mds526.nxml", "PMC7417471.nxml", ARTICLESET], ids=["mds526", "PMC7417471", "articleset"]
)
def test_caption_of_a_float_nested_in_a_paragraph_is_in_no_paragraph(
    parsed_fixture: ParseFixture, source_articles: SourceArticles, file: str
) -> None:
    """A ``fig``/``table-wrap`` nested in a ``<p>`` leaves that paragraph (DESIGN.md): its caption
    is the float's row only, unless the XML's own running text repeats the words (PMC6358585's text
    also says "demographic characteristics of the study population")."""
    repeated, checked = [], 0
    for parsed, article in zip(parsed_fixture(file), source_articles(file), strict=True):
        captions = [" ".join(words(xml_text(c))) for c in article.xpath("body//p//caption")]
        captions = [c for c in captions if len(c) >= 40]
        texts = [" ".join(words(r["text"])) for r in parsed.paragraphs]
        sources = [" ".join(words(block_text(p, NESTED_FLOAT_TAGS))) for p in counted_paragraphs(article)]
        repeated += [
            c[:60] for c in captions if sum(t.count(c) for t in texts) > sum(t.count(c) for t in sources)
        ]
        checked += len(captions)
    assert checked and repeated == []


# --- formulas ---------------------------------------------------------------------------------------


def test_inline_formula_with_tex_math_is_given_as_tex(parsed_fixture: ParseFixture) -> None:
    """PMC7417471 body/sec[4]/p[3]: glass transition coefficient (<inline-formula><alternatives>
    <tex-math>…$${\\text{T}}_{\\text{g}}$$…</tex-math><mml:math>…</mml:math>…) value from 90.3."""
    texts = paragraph_texts(parsed_fixture, "PMC7417471.nxml")
    [text] = [t for t in texts if "glass transition coefficient (" in t]
    formula = text.split("glass transition coefficient (", 1)[1].split(") value from 90.3", 1)[0]
    assert r"{\text{T}}_{\text{g}}" in formula


def test_inline_formula_with_tex_math_does_not_also_give_its_mathml(parsed_fixture: ParseFixture) -> None:
    texts = paragraph_texts(parsed_fixture, "PMC7417471.nxml")
    [text] = [t for t in texts if "glass transition coefficient (" in t]
    formula = text.split("glass transition coefficient (", 1)[1].split(") value from 90.3", 1)[0]
    assert "Tg" not in formula.replace(" ", "")


@pytest.mark.parametrize(("file", "index"), every_article())
def test_no_paragraph_contains_tag_soup(parsed_fixture: ParseFixture, file: str, index: int) -> None:
    """Markup never leaks into text (PMC6398430 and PMC7417471 carry MathML): no ``<tag``, ``</``,
    ``mml:`` or MathML element names glued together."""
    soup = re.compile(r"<[A-Za-z/!?]|mml:|</|<mml|<mi>|<mo>")
    assert [t[:80] for t in paragraph_texts(parsed_fixture, file, index) if soup.search(t)] == []


def test_mathml_only_formula_in_a_paragraph_reads_as_text(parsed_fixture: ParseFixture) -> None:
    """A made-up paragraph (the fixtures' MathML-only formulas are block ``disp-formula`` outside
    any ``<p>``): x<sup>2</sup> in MathML becomes readable characters, not markup."""
    xml = (
        b'<article xmlns:mml="http://www.w3.org/1998/Math/MathML" article-type="research-article">'
        b'<front><article-meta><article-id pub-id-type="pmc">999001</article-id>'
        b"<title-group><article-title>Squares</article-title></title-group></article-meta></front>"
        b"<body><sec><title>Results</title><p>The area grows as <inline-formula><mml:math><mml:msup>"
        b"<mml:mi>r</mml:mi><mml:mn>2</mml:mn></mml:msup></mml:math></inline-formula> here.</p></sec></body>"
        b"</article>"
    )
    [article] = jats.parse(xml)
    [text] = [p["text"] for p in article.paragraphs]
    assert text.startswith("The area grows as ") and text.endswith(" here.")
    assert "r" in text[len("The area grows as ") :] and "2" in text and "<" not in text


# --- floats wherever they are -----------------------------------------------------------------------


def test_tables_in_floats_group_are_found_with_label_and_caption(parsed_fixture: ParseFixture) -> None:
    """6605965a keeps both tables in ``floats-group`` (after ``back``)."""
    tables = {t["xml_id"]: t for t in parsed_fixture("6605965a.nxml")[0].tables}
    assert sorted(tables) == ["tbl1", "tbl2"]
    assert tables["tbl1"]["label"] == "Table 1"
    assert tables["tbl1"]["caption"].startswith(
        "Participant characteristics at recruitment among women in the European Prospective Investigation"
    )


def test_table_cells_are_tab_separated_and_rows_newline_separated(parsed_fixture: ParseFixture) -> None:
    """6605965a tbl1, a row: <td>Mean (s.d.) age at recruitment (years)</td><td>57.4 (8.0)</td>
    <td>50.5 (9.7)</td>."""
    [table] = [t for t in parsed_fixture("6605965a.nxml")[0].tables if t["xml_id"] == "tbl1"]
    assert "Mean (s.d.) age at recruitment (years)\t57.4 (8.0)\t50.5 (9.7)" in table["text"].split("\n")


def test_figures_in_floats_group_are_found_with_label_caption_and_graphic(
    parsed_fixture: ParseFixture,
) -> None:
    """ehp-116-1694 keeps its three figures in ``floats-group``."""
    figures = {f["xml_id"]: f for f in parsed_fixture("ehp-116-1694.nxml")[0].figures}
    assert sorted(figures) == ["f1-ehp-116-1694", "f2-ehp-116-1694", "f3-ehp-116-1694"]
    first = figures["f1-ehp-116-1694"]
    assert (first["label"], first["graphics"]) == ("Figure 1", ["ehp-116-1694f1"])
    assert first["caption"].startswith("Exposure to PBDE-47 depressed circulating concentrations of total T4")


@pytest.mark.parametrize(
    ("xml_id", "mention_paths"),
    [
        ("f1-ehp-116-1694", {"body/sec[2]/sec[1]/p", "body/sec[2]/sec[4]/p"}),
        ("f2-ehp-116-1694", {"body/sec[2]/sec[2]/p"}),
        ("f3-ehp-116-1694", {"body/sec[2]/sec[3]/p[1]", "body/sec[2]/sec[3]/p[2]"}),
    ],
)
def test_figure_mentions_are_the_paragraphs_citing_it(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    xml_id: str,
    mention_paths: set[str],
) -> None:
    """Read in ehp-116-1694: the ``<p>`` holding ``xref[@rid=…]`` for each figure (f3 is cited twice
    in one paragraph: one mention). Compared as elements, so ``p`` and ``p[1]`` are the same."""
    article = source_articles("ehp-116-1694.nxml")[0]
    [figure] = [f for f in parsed_fixture("ehp-116-1694.nxml")[0].figures if f["xml_id"] == xml_id]
    prefix = "PMC2599765/"
    assert all(m.startswith(prefix) for m in figure["mention_ids"])
    got = [resolve_path(article, m.removeprefix(prefix)) for m in figure["mention_ids"]]
    expected = {resolve_path(article, p) for p in mention_paths}
    assert len(got) == len(set(got)) and set(got) == expected


@pytest.mark.parametrize(("file", "index"), every_article())
def test_figure_mentions_are_exactly_the_paragraph_rows_whose_xref_targets_it(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    file: str,
    index: int,
) -> None:
    parsed = parsed_fixture(file)[index]
    article = source_articles(file)[index]
    elements = {r["paragraph_id"]: resolve_path(article, r["path"]) for r in parsed.paragraphs}
    for figure in parsed.figures:
        expected = {pid for pid, el in elements.items() if cites(el, figure["xml_id"])}
        assert set(figure["mention_ids"]) == expected, figure["xml_id"]


@pytest.mark.parametrize(("file", "index"), every_article())
def test_table_mentions_are_exactly_the_paragraph_rows_whose_xref_targets_it(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    file: str,
    index: int,
) -> None:
    parsed = parsed_fixture(file)[index]
    article = source_articles(file)[index]
    elements = {r["paragraph_id"]: resolve_path(article, r["path"]) for r in parsed.paragraphs}
    for table in parsed.tables:
        expected = {pid for pid, el in elements.items() if cites(el, table["xml_id"])}
        assert set(table["mention_ids"]) == expected, table["xml_id"]


def test_figure_caption_is_its_title_then_its_paragraphs(parsed_fixture: ParseFixture) -> None:
    """pone.0046493 Figure 1: <caption><title>Chemical structure of inhibitors.</title><p>Chemical
    structures of <bold>A</bold>, THL and <bold>B</bold>, M<italic>m</italic>PPOX. …"""
    [figure] = [
        f for f in parsed_fixture("pone.0046493.nxml")[0].figures if f["xml_id"] == "pone-0046493-g001"
    ]
    assert figure["label"] == "Figure 1"
    assert figure["caption"].startswith(
        "Chemical structure of inhibitors. Chemical structures of A, THL and B, MmPPOX. The proposed"
    )


# --- ids, paths, order, sections --------------------------------------------------------------------


@pytest.mark.parametrize(("file", "index"), every_article())
def test_paragraph_id_is_article_id_slash_path(parsed_fixture: ParseFixture, file: str, index: int) -> None:
    parsed = parsed_fixture(file)[index]
    aid = parsed.article["article_id"]
    assert [p["paragraph_id"] for p in parsed.paragraphs] == [f"{aid}/{p['path']}" for p in parsed.paragraphs]


@pytest.mark.parametrize(("file", "index"), every_article())
def test_paragraph_ids_are_unique(parsed_fixture: ParseFixture, file: str, index: int) -> None:
    ids = [p["paragraph_id"] for p in parsed_fixture(file)[index].paragraphs]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("file", "index"), every_article())
def test_paragraph_path_resolves_to_the_p_holding_its_words(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    file: str,
    index: int,
) -> None:
    """Each path names a ``<p>`` of the source whose words include (at least 90 % of) the row's."""
    article = source_articles(file)[index]
    wrong = []
    for row in parsed_fixture(file)[index].paragraphs:
        element = resolve_path(article, row["path"])
        row_words = words(row["text"])
        source_words = set(words(xml_text(element))) | set(words("".join(element.itertext())))
        share = sum(w in source_words for w in row_words) / max(1, len(row_words))
        if local(element) != "p" or share < 0.9:
            wrong.append((row["path"], local(element), round(share, 2)))
    assert wrong == []


@pytest.mark.parametrize(("file", "index"), every_article())
def test_paragraphs_come_in_document_order(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    file: str,
    index: int,
) -> None:
    rows = sorted(parsed_fixture(file)[index].paragraphs, key=lambda r: r["ordinal"])
    article = source_articles(file)[index]
    position = {el: n for n, el in enumerate(article.iter())}
    order = [position[resolve_path(article, r["path"])] for r in rows]
    assert order == sorted(order) and len({r["ordinal"] for r in rows}) == len(rows)


@pytest.mark.parametrize(("file", "index"), every_article())
def test_figure_and_table_paths_resolve_to_their_elements(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    file: str,
    index: int,
) -> None:
    parsed = parsed_fixture(file)[index]
    article = source_articles(file)[index]
    resolved = [(local(resolve_path(article, f["path"])), f["xml_id"]) for f in parsed.figures]
    resolved += [(local(resolve_path(article, t["path"])), t["xml_id"]) for t in parsed.tables]
    expected = [("fig", f["xml_id"]) for f in parsed.figures] + [
        ("table-wrap", t["xml_id"]) for t in parsed.tables
    ]
    assert resolved == expected
    ids = [resolve_path(article, row["path"]).get("id") for row in parsed.figures + parsed.tables]
    assert ids == [row["xml_id"] for row in parsed.figures + parsed.tables]


@pytest.mark.parametrize(("file", "index"), every_article())
def test_abstract_paragraphs_have_section_type_abstract(
    parsed_fixture: ParseFixture, file: str, index: int
) -> None:
    """Structured abstracts (Background/Methods/… sections) stay ``abstract``: the type says where
    the paragraph is in the article, and an abstract's "Methods" is not a methods section."""
    rows = [p for p in parsed_fixture(file)[index].paragraphs if p["path"].startswith("front/")]
    assert rows and {p["section_type"] for p in rows} == {"abstract"}


@pytest.mark.parametrize(
    ("file", "index", "title", "section_type"),
    [
        ("1471-2180-11-174.nxml", 0, "Background", "introduction"),
        ("1471-2180-11-174.nxml", 0, "Results", "results"),
        ("1471-2180-11-174.nxml", 0, "Discussion", "discussion"),
        ("1471-2180-11-174.nxml", 0, "Conclusions", "conclusion"),
        ("1471-2180-11-174.nxml", 0, "Methods", "methods"),
        ("1471-2180-11-174.nxml", 0, "Competing interests", "other"),
        ("1472-6831-8-11.nxml", 0, "Conclusion", "conclusion"),
        ("6605965a.nxml", 0, "Materials and Methods", "methods"),
        ("PMC5828200.nxml", 0, "INTRODUCTION", "introduction"),
        ("PMC5828200.nxml", 0, "MATERIALS AND METHODS", "methods"),
        (ARTICLESET, 0, "Introduction", "introduction"),
        (ARTICLESET, 0, "Case Report", "case"),
        (ARTICLESET, 1, "Case Report", "case"),
        (ARTICLESET, 0, "Discussion", "discussion"),
        ("PMC6398430.nxml", 0, "METHODS", "methods"),
        ("PMC6398430.nxml", 0, "FUNDING", "other"),
        ("mds526.nxml", 0, "introduction", "introduction"),
        ("ehp-116-1694.nxml", 0, "Results", "results"),
        ("pntd.0002065.nxml", 0, "Materials and Methods", "methods"),
    ],
)
def test_section_type_is_normalized_from_the_top_level_title(
    parsed_fixture: ParseFixture, file: str, index: int, title: str, section_type: str
) -> None:
    rows = [
        p
        for p in parsed_fixture(file)[index].paragraphs
        if p["path"].startswith("body/") and p["section_path"][:1] == [title]
    ]
    assert rows and {p["section_type"] for p in rows} == {section_type}


# --- abstracts, article sets, sub-articles ----------------------------------------------------------


def test_main_abstract_is_the_one_without_abstract_type(parsed_fixture: ParseFixture) -> None:
    """pntd.0002065 has ``<abstract>`` and ``<abstract abstract-type="summary">`` (Author Summary)."""
    article = parsed_fixture("pntd.0002065.nxml")[0].article
    assert article["abstract"].startswith("Rift Valley fever (RVF) is endemic in most parts of Africa")
    assert "mosquito-borne disease" not in article["abstract"]


def test_all_abstracts_are_kept_with_their_types(parsed_fixture: ParseFixture) -> None:
    abstracts = parsed_fixture("pntd.0002065.nxml")[0].article["abstracts"]
    by_type = {a["type"]: a["text"] for a in abstracts}
    assert len(abstracts) == 2 and set(by_type) == {None, "summary"}
    assert "Rift Valley fever (RVF) is a mosquito-borne disease" in by_type["summary"]


def test_teaser_abstract_is_not_the_main_abstract(parsed_fixture: ParseFixture) -> None:
    """PMC6398430: ``abstract-type="teaser"`` comes first, the main abstract second."""
    abstract = parsed_fixture("PMC6398430.nxml")[0].article["abstract"]
    assert "Social complexity arises from the formation of social relationships" in abstract
    assert "With data collected over a 1-year period" not in abstract


def test_articleset_articles_keep_their_own_rows(parsed_fixture: ParseFixture) -> None:
    """The four articles of the ``pmc-articleset`` must not share or swap rows."""
    articles = parsed_fixture(ARTICLESET)
    assert [a.article["title"][:20] for a in articles] == [
        "Endoscopic versus Su",
        "Chronic Pancreatitis",
        "Bile Cast Nephropath",
        "Choriodecidual leuko",
    ]
    for article in articles:
        aid = article.article["article_id"]
        assert all(p["paragraph_id"].startswith(aid + "/") for p in article.paragraphs)


SUB_ARTICLE_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article" dtd-version="1.2">
<front><journal-meta><journal-id journal-id-type="publisher-id">eLife</journal-id>
<journal-title-group><journal-title>eLife</journal-title></journal-title-group></journal-meta>
<article-meta><article-id pub-id-type="pmc">7000001</article-id>
<article-id pub-id-type="doi">10.7554/eLife.50001</article-id>
<title-group><article-title>Cortical neurons adapt to sustained input</article-title></title-group>
<pub-date pub-type="epub"><year>2020</year></pub-date>
<abstract><p>Neurons adapt to input that lasts.</p></abstract></article-meta></front>
<body><sec><title>Introduction</title><p>Adaptation is a basic property of cortical neurons (<xref
ref-type="fig" rid="fig1">Figure 1</xref>).</p>
<fig id="fig1"><label>Figure 1.</label><caption><p>Firing rate over time.</p></caption>
<graphic xlink:href="elife-50001-fig1"/></fig></sec></body>
<back><ack><p>We thank the reviewers.</p></ack></back>
<sub-article article-type="decision-letter" id="sa1"><front-stub>
<article-id pub-id-type="doi">10.7554/eLife.50001.sa1</article-id>
<title-group><article-title>Decision letter</article-title></title-group></front-stub>
<body><p>The reviewers found the adaptation claim convincing but asked for more controls.</p>
<fig id="sa1fig1"><label>Decision letter image 1.</label><caption><p>A reviewer sketch.</p></caption>
<graphic xlink:href="elife-50001-sa1-fig1"/></fig></body></sub-article>
<sub-article article-type="reply" id="sa2"><front-stub>
<article-id pub-id-type="doi">10.7554/eLife.50001.sa2</article-id>
<title-group><article-title>Author response</article-title></title-group></front-stub>
<body><p>We added the controls the reviewers asked for.</p></body></sub-article>
</article>
"""


def test_sub_articles_stay_out_of_the_main_text_by_default() -> None:
    """No fixture has a ``sub-article``; this eLife-shaped article has a decision letter and an
    author response after ``back``."""
    articles = jats.parse(SUB_ARTICLE_XML)
    texts = " ".join(p["text"] for a in articles for p in a.paragraphs)
    assert [a.article["article_id"] for a in articles] == ["PMC7000001"]
    assert "reviewers found" not in texts and "We added the controls" not in texts
    assert "Adaptation is a basic property of cortical neurons (Figure 1)." in texts


def test_sub_article_figures_stay_out_of_the_main_figures_by_default() -> None:
    [article] = jats.parse(SUB_ARTICLE_XML)
    assert [f["xml_id"] for f in article.figures] == ["fig1"]


def test_sub_articles_are_extracted_when_asked_for() -> None:
    articles = jats.parse(SUB_ARTICLE_XML, include_sub_articles=True)
    texts = " ".join(p["text"] for a in articles for p in a.paragraphs)
    assert "The reviewers found the adaptation claim convincing but asked for more controls." in texts
    assert "We added the controls the reviewers asked for." in texts
    assert "Adaptation is a basic property of cortical neurons" in texts


# --- no glued tokens, no dropped words --------------------------------------------------------------

BLOCK_TAGS = {
    "p", "title", "label", "sec", "list", "list-item", "def-list", "def-item", "term", "def", "disp-quote",
    "boxed-text", "caption", "fig", "table-wrap", "table", "tr", "td", "th", "fn", "ref", "abstract",
    "graphic", "media", "supplementary-material", "disp-formula", "inline-formula", "alternatives",
    "tex-math", "math", "statement", "verse-line",
}  # fmt: skip
FORMULA_TAGS = {"inline-formula", "disp-formula", "alternatives", "tex-math", "math"}
# A superscript, a bibliography citation and a MathML token are words of their own (DESIGN.md:
# ``10<sup>4</sup>`` reads ``10^4``, ``diseases<xref>1</xref>`` reads ``diseases [1]``).
WORD_TAGS = {"sup", "mi", "mn", "mo", "ms", "mtext"}
NESTED_FLOAT_TAGS = frozenset(
    {"fig", "fig-group", "table-wrap", "table-wrap-group", "supplementary-material"}
)


def block_text(el: etree._Element, skip: frozenset[str] = frozenset()) -> str:
    """The XML's own characters under ``el``, a space only where a block element, a superscript, a
    citation or a MathML token starts or ends; elements named in ``skip`` are left out (their tails
    kept)."""
    out = [el.text or ""]
    for child in el:
        name = local(child)
        separated = (
            name in BLOCK_TAGS or name in WORD_TAGS or (name == "xref" and child.get("ref-type") == "bibr")
        )
        gap = " " if separated else ""
        if name and name not in skip:
            out += [gap, block_text(child, skip), gap]
        else:
            out.append(gap)
        out.append(child.tail or "")
    return "".join(out)


@pytest.mark.parametrize(("file", "index"), every_article())
def test_every_paragraph_word_occurs_in_the_article_xml(
    parsed_fixture: ParseFixture, source_articles: SourceArticles, file: str, index: int
) -> None:
    """A word of the output that the XML never spells (with spaces only at block boundaries) is
    two words glued together, or invented: none may exist."""
    vocabulary = set(words(block_text(source_articles(file)[index])))
    unknown = {
        w for p in parsed_fixture(file)[index].paragraphs for w in words(p["text"]) if w not in vocabulary
    }
    assert unknown == set()


@pytest.mark.parametrize(("file", "index"), every_article())
def test_paragraph_keeps_every_word_of_its_source_p(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    file: str,
    index: int,
) -> None:
    """Nothing of a paragraph's own text is dropped (floats and formulas set aside: they are judged
    elsewhere)."""
    article = source_articles(file)[index]
    skip = frozenset(FLOAT_TAGS | FORMULA_TAGS)
    missing = {}
    for row in parsed_fixture(file)[index].paragraphs:
        lost = set(words(block_text(resolve_path(article, row["path"]), skip))) - set(words(row["text"]))
        if lost:
            missing[row["path"]] = sorted(lost)[:5]
    assert missing == {}


def counted_paragraphs(article: etree._Element) -> list[etree._Element]:
    """The ``<p>`` the paragraph-count rule of test_jats_golden.py counts: in an abstract or the
    body, not nested in another ``<p>`` or a float, and with some text of its own (the text of
    floats nested in it is theirs)."""
    outside = FLOAT_TAGS | {"p", "ref-list", "sub-article", "back"}
    counted = []
    for root in article.xpath("front/article-meta/abstract | body"):
        for p in root.iter("p"):
            between = takewhile(lambda a, root=root: a is not root, p.iterancestors())
            if outside.isdisjoint(local(a) for a in between) and words(block_text(p, NESTED_FLOAT_TAGS)):
                counted.append(p)
    return counted


@pytest.mark.parametrize(("file", "index"), every_article())
def test_every_counted_p_is_the_source_of_a_row(
    parsed_fixture: ParseFixture,
    source_articles: SourceArticles,
    resolve_path: Resolve,
    file: str,
    index: int,
) -> None:
    """No paragraph is dropped: each ``<p>`` of the count rule is some row's ``path``."""
    article = source_articles(file)[index]
    resolved = {resolve_path(article, r["path"]) for r in parsed_fixture(file)[index].paragraphs}
    expected = counted_paragraphs(article)
    assert expected and [etree.ElementTree(article).getpath(p) for p in expected if p not in resolved] == []
