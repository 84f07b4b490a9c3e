"""The compiled half of the parser (``pmcurate/harvest/_jatswalk.pyx``) held to the rules it implements.

Whitespace normalized in C equals ``norm`` on any text (and a paragraph's word count its spaces
plus one); ``find_bytes`` equals ``bytes.find``; characters are decoded where a rule looks at one
(a citation glued to a non-ASCII letter, a superscript followed by one); and a build that is
missing or older than its source is refused loudly at import instead of running old code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from pmcurate.harvest import _jatswalk, jats

# XML whitespace, the ASCII and non-ASCII letters and digits the rules test, whitespace that is not
# XML's (no-break and thin spaces stay), and characters of 2, 3 and 4 bytes in UTF-8
CHARACTERS = [" ", "\t", "\n", "\r", "a", "Z", "9", "é", "β", "\u00a0", "\u2009", "€", "𝛼", ",", "-"]
TEXT = st.text(alphabet=st.sampled_from(CHARACTERS), max_size=40)


def references(text: str) -> str:
    """``text`` as XML character references: tabs and carriage returns reach the tree unchanged."""
    return "".join(f"&#{ord(c)};" for c in text)


def element(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_inline_text_normalized_in_c_equals_norm(before: str, inner: str) -> None:
    p = element(f"<p>{references(before)}<italic>{references(inner)}</italic></p>")
    assert jats.Extraction().text(p) == jats.norm(before + inner)


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_block_text_normalized_in_c_equals_norm(before: str, inner: str) -> None:
    p = element(f"<p>{references(before)}<list><list-item>{references(inner)}</list-item></list></p>")
    assert jats.Extraction().text(p) == jats.norm(f"{before}  {inner}  ")


@settings(max_examples=50, deadline=None)
@given(TEXT.filter(lambda t: jats.norm(t) != ""))
def test_a_paragraph_has_one_word_more_than_spaces(text: str) -> None:
    xml = (
        '<article><front><article-meta><article-id pub-id-type="pmc">1</article-id></article-meta>'
        f"</front><body><p>{references(text)}</p></body></article>"
    )
    (paragraph,) = jats.parse(xml.encode())[0].paragraphs
    assert paragraph["n_words"] == paragraph["text"].count(" ") + 1


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT, st.sampled_from(["italic", "sup"]))
def test_a_paragraph_handed_over_as_utf8_reads_as_its_text(before: str, inner: str, markup: str) -> None:
    """The walk keeps a paragraph's text as UTF-8 (``Paragraphs``), read straight from the buffer
    (inline markup) or from the string ``_collect`` made (a superscript): either reads as ``text``."""
    body = f"<p>{references(before)}<{markup}>{references(inner)}</{markup}></p>"
    xml = (
        '<article><front><article-meta><article-id pub-id-type="pmc">1</article-id></article-meta>'
        f"</front><body>{body}</body></article>"
    )
    expected = _jatswalk.Extraction().text(element(body))
    [parsed] = jats.parse(xml.encode())
    columns = parsed.paragraph_columns
    assert columns is not None
    utf8 = expected.encode()
    assert (bytes(columns.text), columns.ends) == (utf8, [len(utf8)] if utf8 else [])
    assert [row["text"] for row in parsed.paragraphs] == ([expected] if expected else [])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b"b", b"<", b"ab"]), max_size=30).map(b"".join),
    st.lists(st.sampled_from([b"a", b"b", b"<"]), min_size=1, max_size=3).map(b"".join),
    st.integers(0, 40),
    st.integers(-1, 40),
)
def test_find_bytes_equals_bytes_find(data: bytes, needle: bytes, start: int, end: int) -> None:
    expected = data.find(needle, start) if end < 0 else data.find(needle, start, end)
    assert _jatswalk.find_bytes(data, needle, start, end) == expected


def test_a_citation_glued_to_a_non_ascii_letter_is_a_marker() -> None:
    p = element('<p>seen in the café<xref ref-type="bibr" rid="b1">12</xref> too</p>')
    assert jats.Extraction().text(p) == "seen in the café [12] too"


def test_a_citation_after_a_non_ascii_symbol_keeps_its_text() -> None:
    p = element('<p>values —<xref ref-type="bibr" rid="b1">12</xref></p>')
    assert jats.Extraction().text(p) == "values —12"


def test_a_superscript_followed_by_a_non_ascii_letter_is_braced() -> None:
    p = element("<p>x<sup>2</sup>é and y<sup>β</sup>, z</p>")
    assert jats.Extraction().text(p) == "x^{2}é and y^β, z"


def test_the_extension_is_built_from_its_source() -> None:
    jats.check_build(Path(_jatswalk.__file__).with_name("_jatswalk.pyx"))


def test_a_build_older_than_its_source_is_refused(tmp_path: Path) -> None:
    changed = tmp_path / "_jatswalk.pyx"
    changed.write_text("# another version\n")
    with pytest.raises(ImportError, match="was built from another version"):
        jats.check_build(changed)


def test_a_missing_extension_is_refused_loudly() -> None:
    code = "import sys; sys.modules['pmcurate.harvest._jatswalk'] = None; import pmcurate.harvest.jats"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "is not built or does not load" in result.stderr
    assert "make .venv/.installed" in result.stderr
