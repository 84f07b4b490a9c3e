"""Fuzz target: the JATS parser.

Whatever the bytes, ``jats.parse`` returns articles whose rows fit the table schemas (with unique
keys), or raises ``JatsError``; never another exception, never a hang. Inputs are real fixtures
mutated (slices cut, repeated, moved, bytes flipped, markup spliced in) and JATS-shaped documents
generated from the elements and attributes the parser reads.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pmcurate import schema
from pmcurate.harvest import jats
from tests.fuzz.budget import FUZZ, cpu_limit

JATS_DIR = Path(__file__).parents[1] / "data" / "jats"
FIXTURES = tuple(sorted(p.read_bytes() for p in JATS_DIR.iterdir() if p.suffix in {".xml", ".nxml"}))

SNIPPETS = (
    b"<p>",
    b"</p>",
    b"<sec>",
    b"</sec>",
    b"<fig>",
    b"<table-wrap>",
    b"<xref ref-type='fig' rid='f1'>",
    b"<!DOCTYPE article>",
    b"<?pi x?>",
    b"<!-- c -->",
    b"<![CDATA[x]]>",
    b"&nbsp;",
    b"&#0;",
    b"&#xD800;",
    b"&undefined;",
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    b"<mml:math><mml:mi>x</mml:mi></mml:math>",
    b'xmlns="https://jats.nlm.nih.gov/ns/archiving/1.4/"',
    b"<ref-list>",
    b"</ref-list>",
    b"<sub-article>",
    b'<article-id pub-id-type="pmc">',
)

ELEMENTS = (
    "sec",
    "title",
    "p",
    "fig",
    "caption",
    "label",
    "graphic",
    "table-wrap",
    "table",
    "tr",
    "td",
    "th",
    "list",
    "list-item",
    "xref",
    "sup",
    "italic",
    "bold",
    "disp-formula",
    "inline-formula",
    "tex-math",
    "alternatives",
    "fn",
    "boxed-text",
    "supplementary-material",
    "abstract",
    "app",
    "table-wrap-foot",
    "ext-link",
    "break",
)
ATTRIBUTES = st.dictionaries(
    st.sampled_from(
        ["id", "rid", "ref-type", "sec-type", "abstract-type", "xlink:href", "list-type", "content-type"]
    ),
    st.sampled_from(["f1", "t1", "fig", "table", "methods", "intro", "", "a b", "x\u00e9", "1", "../x"]),
    max_size=3,
)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20).map(
    lambda s: s.replace("&", "&amp;").replace("<", "&lt;")
)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(FIXTURES)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        end = min(len(data), at + draw(st.integers(0, 2000)))
        kind = draw(st.sampled_from(["cut", "repeat", "flip", "splice", "truncate", "move"]))
        if kind == "cut":
            del data[at:end]
        elif kind == "repeat":
            data[at:at] = data[at:end]
        elif kind == "flip" and data:
            data[min(at, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif kind == "splice":
            data[at:at] = draw(st.sampled_from(SNIPPETS))
        elif kind == "truncate":
            del data[at:]
        elif kind == "move":
            piece = bytes(data[at:end])
            del data[at:end]
            to = draw(st.integers(0, len(data)))
            data[to:to] = piece
    return bytes(data)


def element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def render(parts: tuple[str, dict[str, str], list[str], str]) -> str:
        name, attrs, inner, tail = parts
        rendered = "".join(f' {k}="{v}"' for k, v in attrs.items())
        return f"<{name}{rendered}>{''.join(inner)}</{name}>{tail}"

    return st.tuples(st.sampled_from(ELEMENTS), ATTRIBUTES, st.lists(children, max_size=4), TEXT).map(render)


BODY = st.recursive(TEXT, element, max_leaves=40)


@st.composite
def generated_article(draw: st.DrawFn) -> bytes:
    ids = draw(
        st.lists(
            st.tuples(st.sampled_from(["pmc", "pmcid", "pmcid-ver", "doi", "pmid", "publisher-id"]), TEXT),
            max_size=3,
        )
    )
    id_xml = "".join(f'<article-id pub-id-type="{kind}">{value}</article-id>' for kind, value in ids)
    body = "".join(draw(st.lists(BODY, max_size=5)))
    back = "".join(draw(st.lists(BODY, max_size=2)))
    xml = (
        '<article xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mml="http://www.w3.org/1998/Math/MathML">'
        f"<front><article-meta>{id_xml}<title-group><article-title>{draw(TEXT)}</article-title>"
        f"</title-group></article-meta></front><body>{body}</body><back>{back}</back>"
        f"<floats-group>{draw(BODY)}</floats-group></article>"
    )
    if draw(st.booleans()):
        xml = f"<pmc-articleset>{xml}{xml}</pmc-articleset>"
    return xml.encode()


def check_parse(data: bytes) -> None:
    """The fuzz property: rows that fit the schemas with unique keys, or ``JatsError``."""
    with cpu_limit():
        try:
            parsed = jats.parse(data, source_uri="fuzz.xml", include_sub_articles=True)
        except jats.JatsError:
            return
    for article in parsed:
        schema.to_table([article.article], schema.ARTICLES)
        for table, rows, key in (
            ("paragraphs", article.paragraphs, "paragraph_id"),
            ("figures", article.figures, "figure_id"),
            ("tables", article.tables, "table_id"),
        ):
            schema.to_table(rows, schema.SCHEMAS[table])
            keys = [row[key] for row in rows]
            assert len(keys) == len(set(keys)), f"duplicate {key} in {article.article['article_id']}"


@FUZZ
@given(mutated_fixture())
def test_parse_of_a_mutated_fixture_gives_rows_or_jats_error(data: bytes) -> None:
    check_parse(data)


@FUZZ
@given(generated_article())
def test_parse_of_a_generated_article_gives_rows_or_jats_error(data: bytes) -> None:
    check_parse(data)


@FUZZ
@given(st.binary(max_size=2000))
def test_parse_of_arbitrary_bytes_gives_rows_or_jats_error(data: bytes) -> None:
    check_parse(data)
