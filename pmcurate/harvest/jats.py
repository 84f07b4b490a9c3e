"""JATS XML → article, paragraph, figure and table rows.

``parse(data)`` takes the bytes of one XML document (a single ``<article>``, a ``<pmc-articleset>``,
an ``<articles>`` wrapper or an OAI-PMH envelope) and returns one ``ParsedArticle`` per article,
its rows shaped as ``schema.ARTICLES``, ``PARAGRAPHS``, ``FIGURES`` and ``TABLES``.

Text follows the fidelity rules of DESIGN.md: the XML's own characters, whitespace only where a
block element starts or ends, no ``<p>`` emitted twice, floats (figures, tables, footnotes) kept out
of the running text, formulas as TeX when the XML has it.

Speed matters (PMC-OA is ~7M articles): structure is walked only through container elements, and a
paragraph without block, float or formula descendants (most of them) takes its text from
``itertext()``, in C.

Safety: DTDs and external entities are never loaded and no network is used; a document that
declares entities in an internal DTD subset (XXE, billion laughs, quadratic blowup) is refused.
Two common defects of real files are repaired instead of failing: an undeclared ``xlink:``/``mml:``
prefix, and HTML named entities such as ``&nbsp;`` that only the (unloaded) DTD defines.
"""

from __future__ import annotations

import hashlib
import html.entities
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lxml import etree

from pmcurate.errors import SkipItem
from pmcurate.harvest.licenses import commercial_use, normalize_license, states_a_license


class JatsError(SkipItem):
    """A document that cannot be extracted; the message names the source and the reason."""


@dataclass
class ParsedArticle:
    """One article's rows: ``article`` is a row of ARTICLES, the lists rows of the other tables."""

    article: dict[str, Any]
    paragraphs: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)


XLINK_NS = "http://www.w3.org/1999/xlink"
MML_NS = "http://www.w3.org/1998/Math/MathML"
ALI_NS = "http://www.niso.org/schemas/ali/1.0/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
HREF = f"{{{XLINK_NS}}}href"
MML_MATH = f"{{{MML_NS}}}math"
ALI_LICENSE_REF = f"{{{ALI_NS}}}license_ref"
XML_LANG = f"{{{XML_NS}}}lang"

TAXPUB_NS = "http://www.plazi.org/taxpub"
_DEFAULT_NS = re.compile(rb"""\sxmlns\s*=\s*(["'])([^"']*)\1""")
_DEFAULT_NS_HINT = re.compile(rb"xmlns ?=")  # one scan instead of two ``in`` tests
_NAMED_ENTITY = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos);)([A-Za-z][A-Za-z0-9]*);")
_KNOWN_PREFIXES = {
    b"xlink": XLINK_NS,
    b"mml": MML_NS,
    b"ali": ALI_NS,
    b"xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
_ROOT_START = re.compile(rb"<(?![?!])[A-Za-z_][\w.:-]*")

# Elements whose text separates from its neighbours by whitespace (block boundaries).
BLOCK = frozenset(
    [
        "p",
        "title",
        "list",
        "list-item",
        "disp-quote",
        "def-list",
        "def-item",
        "term",
        "def",
        "statement",
        "boxed-text",
        "verse-group",
        "verse-line",
        "speech",
        "label",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "tr",
        "td",
        "th",
        "caption",
        "break",
        "attrib",
        "address",
        "array",
        "chem-struct-wrap",
        "preformat",
        "code",
    ]
)
# Floats and notes: they have rows (or places) of their own and never enter the running text.
FLOATS = frozenset(
    [
        "fig",
        "fig-group",
        "table-wrap",
        "table-wrap-group",
        "supplementary-material",
        "fn",
        "fn-group",
        "graphic",
        "media",
        "inline-supplementary-material",
        "ref-list",
        "sub-article",
        "response",
    ]
)
FORMULAS = frozenset(["inline-formula", "disp-formula"])
# Where paragraphs are looked for: containers walked through on the way down to <p>.
_SKIP_CONTAINERS = (
    FLOATS | FORMULAS | {"title", "label", "caption", "sec-meta", "ref-list", "glossary", "back"}
)
# Elements of other namespaces are walked as containers (TaxPub's ``tp:taxon-treatment`` and
# ``tp:treatment-sec`` hold most of a Pensoft article's paragraphs; one with a ``title`` is a
# section); only these, known to hold no running text, are skipped.
_FOREIGN_SKIPPED = frozenset([MML_MATH, ALI_LICENSE_REF])

SECTION_TYPE_BY_SEC_TYPE = {
    "intro": "introduction",
    "introduction": "introduction",
    "background": "introduction",
    "methods": "methods",
    "materials": "methods",
    "materials|methods": "methods",
    "subjects": "methods",
    "results": "results",
    "discussion": "discussion",
    "results|discussion": "results",
    "conclusions": "conclusion",
    "conclusion": "conclusion",
    "cases": "case",
    "case-report": "case",
}
_SECTION_TITLE_RULES = [
    (
        "case",
        re.compile(
            r"\bcase\b|clinical (presentation|history|description)|patient (presentation|description)", re.I
        ),
    ),
    ("introduction", re.compile(r"^\W*(\d+\.?\s*)?(introduction|background|overview|rationale)\b", re.I)),
    (
        "methods",
        re.compile(
            r"method|material|experimental (procedure|section|design)|study design|patients and"
            r"|participants|procedures",
            re.I,
        ),
    ),
    ("results", re.compile(r"\bresults?\b|findings", re.I)),
    ("discussion", re.compile(r"discussion", re.I)),
    ("conclusion", re.compile(r"conclu|summary|concluding remarks|perspectives", re.I)),
]

_PUB_DATE_PREFERENCE = ("epub", "ppub", "epub-ppub", "collection", "pub", "pmc-release")
_SEASON_MONTH = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_MAIN_ABSTRACT_EXCLUDED = {
    "teaser",
    "graphical",
    "summary",
    "author-summary",
    "plain-language-summary",
    "toc",
    "editor-summary",
    "precis",
    "web-summary",
    "short",
}


def parse(
    data: bytes, *, source_uri: str = "", include_sub_articles: bool = False, citations: str = "marker"
) -> list[ParsedArticle]:
    """Extract every article of one JATS document.

    ``source_uri`` is recorded on the rows and named in errors. With ``include_sub_articles``,
    paragraphs of ``sub-article`` elements (peer reviews, translations…) are emitted too, under
    their own paths; by default they are kept out of the main article's text, except for an article
    whose body has no paragraph while its sub-articles have some (meeting-abstract collections):
    its sub-articles are its text. ``citations`` is ``"marker"`` (a citation that would glue to a
    word reads `` [1]``) or ``"drop"`` (bibliography citations and their brackets are left out).
    Raises ``JatsError`` when the document is not well-formed, declares entities, or holds no article.
    """
    if citations not in CITATION_MODES:
        raise ValueError(f"citations must be one of {', '.join(CITATION_MODES)}, not {citations!r}")
    where = source_uri or "<bytes>"
    root = _parse_xml(data, where)
    articles = _find_articles(root)
    if not articles:
        raise JatsError(f"{where}: no <article> element (root is <{_local(root.tag)}>)")
    sha = hashlib.sha256(data).hexdigest()
    _LOCAL.tables = {}
    _LOCAL.citations = citations
    try:
        return [_extract_article(a, source_uri, sha, include_sub_articles) for a in articles]
    finally:
        _LOCAL.tables = None
        _LOCAL.citations = "marker"


# --- reading XML safely ----------------------------------------------------------------------------


def _parse_xml(data: bytes, where: str) -> etree._Element:
    """Parse safely; repair the two known defects of real files only when libxml2 reports them."""
    if not data or not data.strip():
        raise JatsError(f"{where}: empty document")
    if _may_declare_entities(data):
        raise _entities_refused(where)
    data = drop_reference_lists(_without_default_namespaces(data))
    parser = _parser()
    repairs: list[Callable[[bytes], bytes]] = [_numeric_entities, _declare_known_prefixes]
    while True:
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as exc:
            problem = str(exc)
        else:
            # Without a DOCTYPE an undeclared entity is fatal; with one, libxml2 only warns and
            # leaves an unexpanded reference in the tree.
            undeclared = [e for e in parser.error_log if e.type_name.endswith("UNDECLARED_ENTITY")]
            if _declares_entities(root):  # UTF-16 and other encodings hide them from the byte check
                raise _entities_refused(where)
            if not undeclared:
                if parser is _huge_parser():
                    _check_depth(root, where)
                return root
            problem = undeclared[0].message
        if _TEXT_NODE_TOO_LONG in problem and parser is not _huge_parser():
            parser = _huge_parser()
            continue
        repair = _repair_for(problem, repairs)
        repaired = repair(data) if repair else data
        if repaired is data:
            raise JatsError(f"{where}: not well-formed XML: {problem}")
        data = repaired


def _may_declare_entities(data: bytes) -> bool:
    """Whether a ``<!ENTITY`` follows the ``<!DOCTYPE`` (checked before parsing, on the bytes).

    Entities are declared only in a DOCTYPE's internal subset (``[ … ]``): a DOCTYPE that plainly
    has none (the usual ``<!DOCTYPE article PUBLIC "…" "….dtd">``) spares a scan of the whole
    document; anything less plain is scanned.
    """
    doctype = data.find(b"<!DOCTYPE")
    if doctype < 0:
        return False
    end = data.find(b">", doctype)
    declaration = data[doctype:end] if end >= 0 else b"["
    if b"[" not in declaration and not declaration.count(b'"') % 2 and not declaration.count(b"'") % 2:
        return False
    return data.find(b"<!ENTITY", doctype) >= 0


def _entities_refused(where: str) -> JatsError:
    return JatsError(
        f"{where}: document declares entities in its DTD (possible XXE or entity expansion); refused"
    )


def _declares_entities(root: etree._Element) -> bool:
    dtd = root.getroottree().docinfo.internalDTD
    return dtd is not None and next(iter(dtd.iterentities()), None) is not None


def _repair_for(problem: str, repairs: list[Callable[[bytes], bytes]]) -> Callable[[bytes], bytes] | None:
    """The repair for a libxml2 message, removed from ``repairs`` so that each is tried once."""
    wanted = _numeric_entities if "Entity" in problem else _declare_known_prefixes
    if ("Entity" not in problem and "Namespace prefix" not in problem) or wanted not in repairs:
        return None
    repairs.remove(wanted)
    return wanted


_LOCAL = threading.local()
_TEXT_NODE_TOO_LONG = "Text node too long"
MAX_DEPTH = 256
"""libxml2's own nesting limit without ``huge_tree``; kept when a huge text node needs ``huge_tree``."""


def _parser() -> etree.XMLParser:
    """One parser per thread: an lxml parser must not be shared by threads running at once."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = _safe_parser(huge_tree=False)
    return parser


def _huge_parser() -> etree.XMLParser:
    """The parser for a valid article with a text node over libxml2's 10 MB limit.

    ``huge_tree`` lifts libxml2's size limits; the bytes reaching it are already bounded by the
    harvesters' caps (``archive.DEFAULT_MAX_MEMBER_BYTES``), and nesting is checked afterwards
    (``_check_depth``), so only the text-node limit is really relaxed.
    """
    parser = getattr(_LOCAL, "huge_parser", None)
    if parser is None:
        parser = _LOCAL.huge_parser = _safe_parser(huge_tree=True)
    return parser


def _safe_parser(*, huge_tree: bool) -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=huge_tree,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    parser.resolvers.add(_NothingExternal())
    return parser


def _check_depth(root: etree._Element, where: str) -> None:
    """Refuse nesting deeper than libxml2 allows without ``huge_tree`` (the walk is recursive)."""
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > MAX_DEPTH:
            raise JatsError(f"{where}: not well-formed XML: nesting deeper than {MAX_DEPTH} elements")


_MATHML_NS_BYTES = MML_NS.encode()


def _without_default_namespaces(data: bytes) -> bytes:
    """The document with its default namespace declarations removed, MathML's excepted.

    JATS comes in no namespace, in JATS 1.4's (PMC Cloud Service, OAI-PMH), in NLM 2.x's
    (``http://dtd.nlm.nih.gov/2.0/xsd/archivearticle``, served by PMC's OAI service) and others;
    OAI-PMH envelopes add their own. Without the declarations every JATS element is matched by its
    local name whatever the namespace, and the tree is the one an un-namespaced file gives. Only
    declarations inside a start tag are removed (never text that happens to read ``xmlns="…"``);
    prefixed namespaces (``mml:``, ``xlink:``, ``tp:``) are kept.
    """
    if _DEFAULT_NS_HINT.search(data) is None:
        return data
    pieces: list[bytes] = []
    pos = 0
    for match in _DEFAULT_NS.finditer(data):
        start = match.start()
        in_a_start_tag = data.rfind(b"<", 0, start) > data.rfind(b">", 0, start)
        if match.group(2) == _MATHML_NS_BYTES or not in_a_start_tag:
            continue
        pieces += [data[pos:start], b' xmlns=""']
        pos = match.end()
    if not pieces:
        return data
    pieces.append(data[pos:])
    return b"".join(pieces)


class _NothingExternal(etree.Resolver):
    """Answers every external DTD or entity with an empty document.

    ``load_dtd=False`` alone does not stop libxml2 from reading a local file named by
    ``<!DOCTYPE article SYSTEM "/path">`` (with ``collect_ids=False`` it does read it, and expands
    the entities that file declares): no file or URL is ever read while parsing.
    """

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        return self.resolve_string("", context)


_REF_LIST_OPEN, _REF_LIST_CLOSE = b"<ref-list", b"</ref-list>"


def _find_ref_list(data: bytes, start: int, end: int) -> int:
    """Where the next ``<ref-list`` start tag is in ``data[start:end]``, or -1."""
    while (at := data.find(_REF_LIST_OPEN, start, end)) >= 0:
        if data[at + len(_REF_LIST_OPEN) : at + len(_REF_LIST_OPEN) + 1] in (b">", b" ", b"\n", b"\t", b"\r"):
            return at
        start = at + 1
    return -1


def drop_reference_lists(data: bytes) -> bytes:
    """The document without its ``<ref-list>`` elements.

    Nothing is extracted from reference lists, and they are ~40% of an article's bytes: cutting them
    before parsing halves the parse time. Nested lists are matched; a document whose reference lists
    do not close is returned unchanged (the parser then reports it).
    """
    first = _find_ref_list(data, 0, len(data))
    if first < 0:
        return data
    last_close = data.rfind(_REF_LIST_CLOSE)
    if last_close > first and _find_ref_list(data, first + 1, last_close) < 0:  # the usual case: one list
        return data[:first] + data[last_close + len(_REF_LIST_CLOSE) :]
    pieces: list[bytes] = []
    pos = 0
    while (start := _find_ref_list(data, pos, len(data))) >= 0:
        depth, cursor = 0, start + 1
        while True:
            close = data.find(_REF_LIST_CLOSE, cursor)
            if close < 0:
                return data
            inner = _find_ref_list(data, cursor, close)
            if inner < 0:
                if depth == 0:
                    break
                depth, cursor = depth - 1, close + len(_REF_LIST_CLOSE)
            else:
                depth, cursor = depth + 1, inner + 1
        pieces.append(data[pos:start])
        pos = close + len(_REF_LIST_CLOSE)
    if not pieces:
        return data
    pieces.append(data[pos:])
    return b"".join(pieces)


def _numeric_entities(data: bytes) -> bytes:
    """HTML named entities (``&nbsp;``, ``&eacute;``…), defined only by the unloaded DTD, as numeric ones."""
    return _NAMED_ENTITY.sub(_numeric_entity, data)


def _numeric_entity(match: re.Match[bytes]) -> bytes:
    codepoint = html.entities.name2codepoint.get(match.group(1).decode("ascii"))
    return f"&#{codepoint};".encode() if codepoint else match.group(0)


def _declare_known_prefixes(data: bytes) -> bytes:
    """Add declarations for well-known prefixes used but never declared (a defect of some PMC files)."""
    missing = [p for p in _KNOWN_PREFIXES if p + b":" in data and b"xmlns:" + p not in data]
    start = _ROOT_START.search(data)
    if not missing or not start:
        return data
    decls = b"".join(b' xmlns:%s="%s"' % (p, _KNOWN_PREFIXES[p].encode()) for p in missing)
    return data[: start.end()] + decls + data[start.end() :]


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _find_articles(root: etree._Element) -> list[etree._Element]:
    if _local(root.tag) == "article":
        return [root]
    return [el for el in root.iter("article") if not _has_article_ancestor(el)]


def _has_article_ancestor(el: etree._Element) -> bool:
    return any(_local(a.tag) == "article" for a in el.iterancestors())


# --- text ------------------------------------------------------------------------------------------


NESTED_FLOATS = frozenset(["fig", "fig-group", "table-wrap", "table-wrap-group", "supplementary-material"])
"""Floats that leave a ``<p>`` holding them: the paragraph's text flows around them, and their
caption lives once, in the figures or tables table."""
_SPECIAL = BLOCK | FLOATS | FORMULAS | {"tex-math", MML_MATH, "alternatives", "sup"}
_SPECIAL_OR_XREF = _SPECIAL | {"xref"}

CITATION_MODES = ("marker", "drop")
_DROPPED = "\x00"  # stands for a dropped citation until the text is whole; never a character of XML text
_SEPARATOR = r"[\s,;\-\u2010-\u2015\u2212]*"
_DROPPED_GROUP = re.compile(
    rf"\s*(?:\[{_SEPARATOR}(?:\x00{_SEPARATOR})+\]|\({_SEPARATOR}(?:\x00{_SEPARATOR})+\)"
    rf"|\x00(?:{_SEPARATOR}\x00)*)"
)
_CITATION_PUNCTUATION = re.compile(r"[\s,;\-\u2010-\u2015\u2212\[\]()]*")
_NUMBERED_CITATION = re.compile(r"\d+[a-z]?(?:\s*[,;\-\u2010-\u2015\u2212]\s*\d+[a-z]?)*")


def _norm(text: str) -> str:
    """Collapse runs of XML whitespace (space, tab, CR, LF) into one space; other characters stay."""
    if "  " in text or "\n" in text or "\t" in text or "\r" in text:
        if text.isascii():  # then str.split() splits exactly where XML whitespace is, and is fastest
            return " ".join(text.split())
        text = text.replace("\n", " ").replace("\t", " ").replace("\r", " ")
        while "  " in text:
            text = text.replace("  ", " ")
    return text.strip(" ")


def _dropping_citations() -> bool:
    return getattr(_LOCAL, "citations", "marker") == "drop"


def element_text(el: etree._Element) -> str:
    """The text of an element by the fidelity rules, whitespace-normalized.

    Most elements hold only inline markup, and their text is serialized by libxml2 itself; the
    others (superscripts, glued or dropped citations, lists, formulas, nested floats…) go through
    ``_collect_text``.
    """
    if len(el) == 0:
        return _norm(el.text or "")
    dropping = _dropping_citations()
    for descendant in el.iterdescendants():
        tag = descendant.tag
        if tag not in _SPECIAL_OR_XREF:  # most descendants: inline markup, one set lookup
            continue
        if tag != "xref" or (
            descendant.get("ref-type") == "bibr" and (dropping or _glued_before(descendant))
        ):
            out: list[str] = []
            _collect_text(el, out)
            text = "".join(out)
            if _DROPPED in text:
                text = _DROPPED_GROUP.sub("", text)
            return _norm(text)
    return _norm(etree.tostring(el, method="text", encoding=str, with_tail=False))


def _glued_before(el: etree._Element) -> bool:
    """Whether the text just before ``el`` (in its parent) ends with a letter or digit."""
    previous = el.getprevious()
    before = previous.tail if previous is not None else el.getparent().text
    return bool(before) and before[-1].isalnum()


_FORMULA_PARTS = FORMULAS | {"alternatives", "tex-math", MML_MATH}
_SEPARATED = BLOCK | FLOATS
_NOT_INLINE = _FORMULA_PARTS | _SEPARATED | {"sup", "xref", "table"}
"""Children that ``_collect_text`` does more with than read their text (the others, most, come first)."""


def _collect_text(el: etree._Element, out: list[str]) -> None:
    if el.text:
        out.append(el.text)
    for child in el:
        tag = child.tag
        if tag not in _NOT_INLINE or (tag == "xref" and child.get("ref-type") != "bibr"):
            if len(child):
                _collect_text(child, out)
            elif child.text:
                out.append(child.text)
        elif tag in _FORMULA_PARTS:
            out.append(" " + formula_text(child) + " ")
        elif tag in NESTED_FLOATS:
            out.append(" ")
        elif tag == "sup":
            _superscript(child, out)
        elif tag == "xref":  # a bibliography citation
            _citation(child, out)
        elif tag == "table":  # a table nested in a paragraph: cells are blocks, read the fast way
            out.append(" " + _table_text(child) + " ")
        else:  # a block or a float: whitespace around it
            out.append(" ")
            if len(child):
                _collect_text(child, out)
            elif child.text:
                out.append(child.text)
            out.append(" ")
        if child.tail:
            out.append(child.tail)


def _superscript(sup: etree._Element, out: list[str]) -> None:
    """``10<sup>4</sup>`` → ``10^4``, ``<sup>13</sup>C`` → ``^{13}C``; a superscript citation → `` [1]``."""
    if _is_citation_group(sup):
        _citation_marker("".join(sup.itertext()), out)
        return
    inner: list[str] = []
    _collect_text(sup, inner)
    text = _norm("".join(inner))
    if not text:
        return
    tail = sup.tail or ""
    braced = " " in text or (tail[:1].isalnum() and text[-1:].isalnum())
    out.append(f"^{{{text}}}" if braced else f"^{text}")


def _is_citation_group(sup: etree._Element) -> bool:
    """A ``<sup>`` holding only bibliography xrefs and the punctuation between them (``1,2``, ``[3–5]``)."""
    if len(sup) == 0 or not _CITATION_PUNCTUATION.fullmatch(sup.text or ""):
        return False
    for child in sup:
        if child.tag != "xref" or child.get("ref-type") != "bibr":
            return False
        if child.tail and not _CITATION_PUNCTUATION.fullmatch(child.tail):
            return False
    return True


def _citation(xref: etree._Element, out: list[str]) -> None:
    """A bibliography xref: its visible text, made a `` [n]`` marker when a number would glue to a word."""
    text = "".join(xref.itertext())
    if _dropping_citations():
        out.append(_DROPPED)
    elif _ends_with_word_character(out) and _NUMBERED_CITATION.fullmatch(text.strip()):
        _citation_marker(text, out)
    else:
        out.append(text)


def _citation_marker(text: str, out: list[str]) -> None:
    if _dropping_citations():
        out.append(_DROPPED)
        return
    text = _norm(text)
    if text:
        out.append(f" {text}" if text[0] in "[(" else f" [{text}]")


def _ends_with_word_character(out: list[str]) -> bool:
    for piece in reversed(out):
        if piece:
            return piece[-1].isalnum()
    return False


def formula_text(el: etree._Element) -> str:
    """A formula once: the math of its TeX when the XML has ``tex-math``, else its MathML read
    linearly, else its text; a display formula's label (``(13)``) follows it.

    PMC wraps much TeX in a whole ``\\documentclass … \\begin{document}`` document, the same
    preamble in every formula: only the math between ``\\begin{document}`` and ``\\end{document}``
    is kept (``tex_body``). Of an ``<alternatives>``, one rendering is read, never two.
    """
    math = _formula_math(el)
    label = el.find("label") if el.tag == "disp-formula" else None
    if label is not None:
        label_text = _norm("".join(label.itertext()))
        if label_text:
            return f"{math} {label_text}" if math else label_text
    return math


def _formula_math(el: etree._Element) -> str:
    tex = el if el.tag == "tex-math" else next(el.iter("tex-math"), None)
    if tex is not None:
        return tex_body("".join(tex.itertext()))
    math = el if el.tag == MML_MATH else next(el.iter(MML_MATH), None)
    if math is not None:
        return _norm(mathml_text(math)) or _norm(math.get("alttext", ""))
    out: list[str] = []
    if el.text:
        out.append(el.text)
    for child in el:
        if child.tag not in FLOATS and child.tag != "label":
            _collect_text(child, out)
        if child.tail:
            out.append(child.tail)
    return _norm("".join(out))


_TEX_DOCUMENT = re.compile(r"\\begin\{document\}(.*?)\\end\{document\}", re.S)


def tex_body(tex: str) -> str:
    """The math of a ``tex-math`` value, without the ``\\documentclass`` preamble PMC often wraps it in."""
    match = _TEX_DOCUMENT.search(tex)
    body = match.group(1) if match else tex
    body = body.strip()
    while body.startswith("$") and body.endswith("$") and len(body) > 1:
        body = body[1:-1].strip()
    return _norm(body.replace("\\[", "").replace("\\]", "") if body.startswith("\\[") else body)


def mathml_text(el: etree._Element) -> str:
    """MathML as linear text: ``x^2``, ``a_i``, ``(a)/(b)``, ``sqrt(x)``; tokens keep their characters,
    and two tokens that would read as one word (``2``, ``x``) are separated by a space."""
    name = _local(el.tag)
    kids = [c for c in el if isinstance(c.tag, str)]
    if name in ("mi", "mn", "mo", "mtext", "ms"):
        return "".join(el.itertext())
    if name == "annotation" or name == "annotation-xml":
        return ""
    if name == "semantics":
        return mathml_text(kids[0]) if kids else ""
    parts = [mathml_text(k) for k in kids]
    if name in ("msup", "msub", "msubsup") and len(parts) == (3 if name == "msubsup" else 2):
        scripts = [_script(p) for p in parts[1:]]
        marks = ("_", "^") if name == "msubsup" else (("^",) if name == "msup" else ("_",))
        return parts[0] + "".join(m + s for m, s in zip(marks, scripts, strict=True))
    if name == "mfrac" and len(parts) == 2:
        return f"({parts[0]})/({parts[1]})"
    if name == "msqrt":
        return f"sqrt({_joined(parts)})"
    if name == "mroot" and len(parts) == 2:
        return f"root({parts[1]})({parts[0]})"
    if name in ("mtr", "mlabeledtr", "mtd"):
        return " ".join(p for p in parts if p)
    if name == "mtable":
        return " ".join(p for p in parts if p)
    return _joined(parts)


def _script(text: str) -> str:
    return f"{{{text}}}" if " " in text else text


def _joined(parts: list[str]) -> str:
    """Parts side by side, with a space only where two would otherwise glue into one word."""
    out = ""
    for part in parts:
        if part:
            if out and out[-1].isalnum() and part[0].isalnum():
                out += " "
            out += part
    return out


# --- paths and sections ----------------------------------------------------------------------------


def _child_steps(el: etree._Element) -> Iterator[tuple[etree._Element, str]]:
    """Each element child with its path step: ``tag`` when alone of its name, else ``tag[n]`` (1-based)."""
    kids = [(c, c.tag) for c in el]
    counts: dict[str, int] = {}
    for _, tag in kids:
        if isinstance(tag, str):
            counts[tag] = counts.get(tag, 0) + 1
    seen: dict[str, int] = {}
    for c, tag in kids:
        if not isinstance(tag, str):
            continue
        name = tag if tag[0] != "{" else _step_name(tag)
        if counts[tag] == 1:
            yield c, name
        else:
            seen[tag] = n = seen.get(tag, 0) + 1
            yield c, f"{name}[{n}]"


def _step_name(tag: str) -> str:
    if tag.startswith("{"):
        ns, local = tag[1:].split("}", 1)
        prefix = {MML_NS: "mml", XLINK_NS: "xlink", ALI_NS: "ali", TAXPUB_NS: "tp"}.get(ns)
        return f"{prefix}:{local}" if prefix else local
    return tag


@lru_cache(maxsize=4096)
def section_type(titles: tuple[str, ...], sec_types: tuple[str, ...]) -> str:
    """The normalized section type from the outermost section that says what it is."""
    for title, sec_type in zip(titles, sec_types, strict=True):
        if sec_type:
            for part in (sec_type.lower(), *sec_type.lower().split("|")):
                if part in SECTION_TYPE_BY_SEC_TYPE:
                    return SECTION_TYPE_BY_SEC_TYPE[part]
        if title:
            for kind, rule in _SECTION_TITLE_RULES:
                if rule.search(title):
                    return kind
    return "other"


@dataclass
class _Walk:
    """State of one article's paragraph walk."""

    article_id: str
    paragraphs: list[dict[str, Any]]
    rids: dict[str, list[str]]  # xref target id → paragraph_ids citing it


class _Section:
    """Where a paragraph sits: the enclosing section titles and ``sec-type``s, outermost first.

    Built once per section, so the normalized type and the named path (``path``, ``type``) are
    worked out once for all of its paragraphs. ``fixed_type`` forces the type (``abstract``).
    """

    __slots__ = ("fixed_type", "path", "sec_types", "titles", "type")

    def __init__(
        self, titles: tuple[str, ...] = (), sec_types: tuple[str, ...] = (), fixed_type: str | None = None
    ) -> None:
        self.titles = titles
        self.sec_types = sec_types
        self.fixed_type = fixed_type
        self.path = [t for t in titles if t]
        self.type = fixed_type or section_type(titles, sec_types)

    def enter(self, title: str, sec_type: str) -> _Section:
        return _Section((*self.titles, title), (*self.sec_types, sec_type), self.fixed_type)


def _walk(el: etree._Element, path: str, section: _Section, state: _Walk) -> None:
    prefix = f"{path}/" if path else ""
    for child, step in _child_steps(el):
        tag = child.tag
        if tag == "p":
            _emit_paragraph(child, prefix + step, section, state)
        elif tag in _SKIP_CONTAINERS or tag in _FOREIGN_SKIPPED:
            continue
        elif tag == "sec" or (tag[0] == "{" and child.find("title") is not None):
            title_el = child.find("title")
            title = element_text(title_el) if title_el is not None else ""
            _walk(child, prefix + step, section.enter(title, child.get("sec-type", "")), state)
        else:
            _walk(child, prefix + step, section, state)


def _emit_paragraph(p: etree._Element, path: str, section: _Section, state: _Walk) -> None:
    text = element_text(p)
    if not text:
        return
    pid = f"{state.article_id}/{path}"
    for xref in p.iter("xref"):
        for rid in (xref.get("rid") or "").split():
            cited = state.rids.setdefault(rid, [])
            if not cited or cited[-1] != pid:
                cited.append(pid)
    named = section.path
    state.paragraphs.append(
        {
            "paragraph_id": pid,
            "article_id": state.article_id,
            "path": path,
            "ordinal": len(state.paragraphs),
            "section_title": named[-1] if named else None,
            "section_path": named,
            "section_type": section.type,
            "text": text,
            "n_words": text.count(" ") + 1,
        }
    )


# --- metadata --------------------------------------------------------------------------------------


def _text_of(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    text = element_text(el)
    return text or None


def _ids(meta: etree._Element | None) -> dict[str, str]:
    ids: dict[str, str] = {}
    if meta is None:
        return ids
    for el in meta.iterfind("article-id"):
        if (
            "version" in (el.get("specific-use") or "").lower()
        ):  # eLife's DOI of one version, not the article's
            continue
        kind = (el.get("pub-id-type") or "").strip().lower()
        value = _norm("".join(el.itertext()))
        if kind == "doi":
            value = normalize_doi(value) or ""
        if kind and value and kind not in ids:
            ids[kind] = value
    return ids


_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)


def normalize_doi(value: str | None) -> str | None:
    """``https://doi.org/10.1/x``, ``doi:10.1/x``, `` 10.1/x `` → ``10.1/x``; None when empty."""
    if not value:
        return None
    return _DOI_PREFIX.sub("", value.strip()).strip() or None


def normalize_pmcid(value: str | None) -> tuple[str | None, int | None]:
    """``3166277``, ``PMC3166277``, ``pmc3166277.2`` → (``PMC3166277``, version or None)."""
    if not value:
        return None, None
    match = re.fullmatch(r"(?:PMC)?(\d+)(?:\.(\d+))?", value.strip(), re.IGNORECASE)
    if not match:
        return None, None
    return f"PMC{match.group(1)}", int(match.group(2)) if match.group(2) else None


def _article_ids(ids: dict[str, str]) -> tuple[str | None, int | None]:
    pmcid, version = normalize_pmcid(ids.get("pmcid-ver"))
    for kind in ("pmcid", "pmc", "pmcaid"):
        if pmcid:
            break
        pmcid, v = normalize_pmcid(ids.get(kind))
        version = version or v
    return pmcid, version


def _date(el: etree._Element) -> tuple[str | None, int | None]:
    """An ISO date (``2011-08-02``, ``2011-08``, ``2011``) and its year."""
    parts: dict[str, str] = {}  # the first child of each name, as ``findtext`` reads it; one pass
    for child in el:
        tag = child.tag
        if tag in _DATE_PARTS and tag not in parts:
            parts[tag] = child.text or ""
    year_text = parts.get("year", "").strip()
    if not year_text[:4].isdigit():
        iso = (el.get("iso-8601-date") or "")[:10]
        return (iso, int(iso[:4])) if iso[:4].isdigit() else (None, None)
    year = int(year_text[:4])
    month = _month(parts.get("month"), parts.get("season"))
    day_text = parts.get("day", "").strip()
    if month is None:
        return f"{year:04d}", year
    if day_text.isdigit() and 1 <= int(day_text) <= 31:
        return f"{year:04d}-{month:02d}-{int(day_text):02d}", year
    return f"{year:04d}-{month:02d}", year


_DATE_PARTS = frozenset(("year", "month", "season", "day"))


def _month(month: str | None, season: str | None) -> int | None:
    if month and month.strip().isdigit() and 1 <= int(month) <= 12:
        return int(month)
    if month and month.strip()[:3].lower() in _MONTHS:
        return _MONTHS[month.strip()[:3].lower()]
    if season:
        first = re.split(r"[-–/\s]", season.strip().lower())[0]
        if first[:3] in _MONTHS:
            return _MONTHS[first[:3]]
        return _SEASON_MONTH.get(first)
    return None


def _date_kind(el: etree._Element) -> str:
    kind = el.get("pub-type") or el.get("date-type") or ""
    fmt = (el.get("publication-format") or "").lower()
    if kind == "pub" and fmt in ("electronic", "print"):
        return "epub" if fmt == "electronic" else "ppub"
    return kind or "pub"


def _dates(meta: etree._Element) -> tuple[list[dict[str, str]], str | None, int | None]:
    dates: list[dict[str, str]] = []
    by_kind: dict[str, tuple[str, int]] = {}
    for el in meta.iterfind("pub-date"):
        iso, year = _date(el)
        if iso is None or year is None:
            continue
        kind = _date_kind(el)
        dates.append({"type": kind, "date": iso})
        by_kind.setdefault(kind, (iso, year))
    history = meta.find("history")
    if history is not None:
        for el in history.iterfind("date"):
            iso, _ = _date(el)
            if iso:
                dates.append({"type": el.get("date-type") or "history", "date": iso})
    for kind in _PUB_DATE_PREFERENCE:
        if kind in by_kind:
            return dates, *by_kind[kind]
    if by_kind:
        return dates, *next(iter(by_kind.values()))
    return dates, None, None


def _abstracts(meta: etree._Element) -> list[dict[str, str | None]]:
    """Every abstract and trans-abstract: type, title, and text (its titles and paragraphs, one a line)."""
    found = []
    for el in meta:
        if el.tag not in ("abstract", "trans-abstract"):
            continue
        kind = el.get("abstract-type") or ("trans-abstract" if el.tag == "trans-abstract" else None)
        own_title = el.find("title")
        title = _text_of(own_title)
        blocks = (
            element_text(b)
            for b in el.iter("p", "title")
            if b is not own_title and next(b.iterancestors("p"), None) is None
        )
        text = "\n".join(b for b in blocks if b)
        found.append({"type": kind, "title": title, "text": text or None})
    return found


def _main_abstract(abstracts: list[dict[str, str | None]]) -> str | None:
    for a in abstracts:
        if a["type"] is None and a["text"]:
            return a["text"]
    for a in abstracts:
        if a["type"] not in _MAIN_ABSTRACT_EXCLUDED and a["type"] != "trans-abstract" and a["text"]:
            return a["text"]
    return next((a["text"] for a in abstracts if a["text"]), None)


def _authors(meta: etree._Element) -> list[dict[str, Any]]:
    affiliations = {aff.get("id"): _aff_text(aff) for aff in meta.iter("aff") if aff.get("id")}
    authors = []
    for group in meta.iterfind("contrib-group"):
        for contrib in group.iterfind("contrib"):
            if (contrib.get("contrib-type") or "author") == "author":
                author = _author(contrib, affiliations)
                if author:
                    authors.append(author)
    return authors


def _author(contrib: etree._Element, affiliations: dict[str | None, str | None]) -> dict[str, Any] | None:
    """One ``contrib`` as an author row, reading its children once; None when it names nobody."""
    surname = given = collab = orcid = None
    affs: list[str | None] = []
    for child in contrib:
        tag = child.tag
        if tag in ("name", "name-alternatives") and surname is None and given is None:
            name = child if tag == "name" else child.find("name")
            if name is not None:
                surname = _norm(name.findtext("surname") or "")
                given = _norm(name.findtext("given-names") or "")
        elif tag == "collab":
            collab = _text_of(child)
        elif tag == "contrib-id" and (child.get("contrib-id-type") or "").lower() == "orcid":
            orcid = _norm(child.text or "")
        elif tag == "xref" and child.get("ref-type") == "aff":
            affs.extend(affiliations.get(rid) for rid in (child.get("rid") or "").split())
        elif tag == "aff":
            affs.append(_aff_text(child))
    full = " ".join(x for x in (given, surname) if x) or collab
    if not full:
        return None
    return {
        "name": full,
        "surname": surname or None,
        "given_names": given or None,
        "orcid": orcid,
        "affiliations": [a for a in affs if a],
    }


def _aff_text(aff: etree._Element) -> str | None:
    parts = [aff.text or ""]
    for child in aff:
        if child.tag != "label":
            parts.append(" " + "".join(child.itertext()) + " ")
        parts.append(child.tail or "")
    return _norm("".join(parts)).strip(" ,;") or None


def _license(article: etree._Element, meta: etree._Element) -> tuple[str | None, str | None, str | None]:
    """(code, url, license text) from ``permissions``; older NLM files state the license only in a
    ``copyright-statement`` (inside ``permissions`` or directly in ``article-meta``), and some
    publishers (Springer/Adis: "Open Access This article is distributed under the terms of the
    Creative Commons Attribution Noncommercial License…") only in ``ack`` or ``notes``."""
    permissions = meta.find("permissions")
    holder = permissions if permissions is not None else meta
    urls: list[str] = [_norm("".join(ref.itertext())) for ref in holder.iter(ALI_LICENSE_REF)]
    types: list[str] = []
    texts: list[str] = []
    for lic in holder.iterfind("license"):
        urls.extend(lic.get(attr) for attr in (HREF, _RDF_RESOURCE) if lic.get(attr))
        urls.extend(link.get(HREF) for link in lic.iter("ext-link", "uri") if link.get(HREF))
        if lic.get("license-type"):
            types.append(lic.get("license-type"))
        texts.append(element_text(lic))
    text = " ".join(t for t in texts if t) or None
    code, url = normalize_license(urls, types[0] if types else None, text)
    if code not in (None, "other"):
        return code, url, text
    for statement in _license_statements(article, holder):
        from_statement, statement_url = normalize_license(None, None, statement)
        if from_statement not in (None, "other"):
            return from_statement, statement_url or url, text or statement
    return code, url, text


_LICENSE_PLACES = (
    "back/ack",
    "back/notes",
    "back/fn-group/fn",
    "front/notes",
    "front/article-meta/author-notes/fn",
)


def _license_statements(article: etree._Element, holder: etree._Element) -> Iterator[str]:
    """Prose that may state the license outside ``license``: the copyright statement, then
    acknowledgements and notes, each only when it reads like a license grant."""
    statement = holder.find("copyright-statement")
    if statement is not None and states_a_license(text := element_text(statement)):
        yield text
    for where in _LICENSE_PLACES:
        for el in article.iterfind(where):
            text = element_text(el)
            if states_a_license(text) and _GRANTS_THIS_ARTICLE.search(text):
                yield text


# An acknowledgement may mention a license of something else ("images from Wikimedia under a
# Creative Commons license"); a grant for the article itself names it.
_GRANTS_THIS_ARTICLE = re.compile(
    r"\b(?:this|the)\s+(?:article|work|paper|file|manuscript)\b|\bopen\s+access\b", re.IGNORECASE
)


_RDF_RESOURCE = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}resource"


def _retraction(
    article: etree._Element, meta: etree._Element, article_type: str | None
) -> tuple[bool, bool, list[str]]:
    """(retracted, is_retraction_notice, ids of the related retraction notices or retracted articles)."""
    retracted = False
    notice = (article_type or "").lower() == "retraction"
    related: list[str] = []
    for rel in meta.iter("related-article"):
        kind = (rel.get("related-article-type") or "").lower()
        if kind not in ("retracted-article", "retraction-forward", "retraction"):
            continue
        if kind == "retracted-article":
            notice = True
        else:
            retracted = True
        ref = rel.get(HREF) or rel.get("id") or _norm("".join(rel.itertext()))
        if ref:
            related.append(ref)
    return retracted, notice, related


def _article_key(
    article: etree._Element, ids: dict[str, str], pmcid: str | None, journal_meta: etree._Element | None
) -> tuple[str, str]:
    """The article's key and where it came from (``id_source``).

    PMCID, then ``doi:<doi>``, then ``pmid:<pmid>``, then ``publisher-id:<journal>/<id>`` (a
    publisher's own id means something only with its journal), then ``sha256:<hash>`` of the
    article's XML: an article is never dropped for want of an id.
    """
    if pmcid:
        return pmcid, "pmcid"
    if ids.get("doi"):
        return f"doi:{ids['doi'].lower()}", "doi"
    if ids.get("pmid"):
        return f"pmid:{ids['pmid']}", "pmid"
    journal = _journal_key(journal_meta)
    if ids.get("publisher-id") and journal:
        return f"publisher-id:{journal}/{ids['publisher-id']}", "publisher-id"
    return f"sha256:{hashlib.sha256(etree.tostring(article)).hexdigest()}", "content"


def _journal_key(journal_meta: etree._Element | None) -> str | None:
    """The journal's own id (publisher's, then NLM's, then any), else an ISSN, else its title."""
    if journal_meta is None:
        return None
    by_type = {j.get("journal-id-type"): _norm(j.text or "") for j in journal_meta.iterfind("journal-id")}
    for kind in ("publisher-id", "nlm-ta", "iso-abbrev", *by_type):
        if by_type.get(kind):
            return by_type[kind]
    issn = journal_meta.findtext("issn")
    title = journal_meta.findtext("journal-title-group/journal-title") or journal_meta.findtext(
        "journal-title"
    )
    return _norm(issn or title or "") or None


def _article_row(
    article: etree._Element, source_uri: str, sha: str
) -> tuple[dict[str, Any], etree._Element | None]:
    front = article.find("front")
    meta = front.find("article-meta") if front is not None else None
    journal_meta = front.find("journal-meta") if front is not None else None
    if meta is None:
        meta = etree.Element("article-meta")
    ids = _ids(meta)
    pmcid, version = _article_ids(ids)
    doi = ids.get("doi")
    article_id, id_source = _article_key(article, ids, pmcid, journal_meta)
    article_type = article.get("article-type")
    dates, pub_date, pub_year = _dates(meta)
    abstracts = _abstracts(meta)
    code, license_url, license_text = _license(article, meta)
    retracted, notice, related = _retraction(article, meta, article_type)
    journal = abbrev = publisher = None
    issn: list[str] = []
    if journal_meta is not None:
        journal = _text_of(journal_meta.find("journal-title-group/journal-title")) or _text_of(
            journal_meta.find("journal-title")
        )
        for jid in journal_meta.iterfind("journal-id"):
            if jid.get("journal-id-type") in ("nlm-ta", "iso-abbrev") and abbrev is None:
                abbrev = _norm(jid.text or "") or None
        issn = [_norm(i.text or "") for i in journal_meta.iterfind("issn") if i.text]
        publisher = _text_of(journal_meta.find("publisher/publisher-name"))
    row = {
        "article_id": article_id,
        "id_source": id_source,
        "pmcid": pmcid,
        "version": version,
        "pmid": ids.get("pmid"),
        "doi": doi,
        "title": _text_of(meta.find("title-group/article-title")),
        "abstract": _main_abstract(abstracts),
        "abstracts": abstracts,
        "journal": journal,
        "journal_abbrev": abbrev,
        "issn": issn,
        "publisher": publisher,
        "pub_year": pub_year,
        "pub_date": pub_date,
        "dates": dates,
        "article_type": article_type,
        "subjects": [_norm("".join(s.itertext())) for s in meta.iterfind("article-categories//subject")],
        "keywords": [k for k in (_text_of(k) for k in meta.iterfind("kwd-group/kwd")) if k],
        "authors": _authors(meta),
        "language": article.get(XML_LANG),
        "license": code,
        "license_url": license_url,
        "license_text": license_text,
        "commercial_use": commercial_use(code),
        "retracted": retracted,
        "is_retraction_notice": notice,
        "related_retractions": related,
        "source_uri": source_uri or None,
        "content_sha256": sha,
    }
    return row, meta


# --- figures and tables ----------------------------------------------------------------------------


def _float_elements(
    article: etree._Element, include_sub_articles: bool
) -> dict[str, list[tuple[etree._Element, str]]]:
    """Every ``fig`` and ``table-wrap`` of the article, wherever it sits, with its path, by tag;
    sub-articles optional. One walk of the tree finds both."""
    found: dict[str, list[tuple[etree._Element, str]]] = {"fig": [], "table-wrap": []}
    steps: dict[etree._Element, dict[etree._Element, str]] = {}  # floats share their ancestors' steps
    for el in article.iter("fig", "table-wrap"):
        if not include_sub_articles and next(el.iterancestors("sub-article", "response"), None) is not None:
            continue
        found[el.tag].append((el, path_of(el, article, steps)))
    return found


def path_of(
    el: etree._Element,
    top: etree._Element,
    steps: dict[etree._Element, dict[etree._Element, str]] | None = None,
) -> str:
    """The XPath-like path of ``el`` below ``top``, with the step rule of ``_child_steps``.

    ``steps`` keeps each parent's child steps for the next path that goes through it."""
    memo = {} if steps is None else steps
    path = []
    while el is not top:
        parent = el.getparent()
        by_child = memo.get(parent)
        if by_child is None:
            by_child = memo[parent] = dict(_child_steps(parent))
        path.append(by_child[el])
        el = parent
    return "/".join(reversed(path))


def _caption(el: etree._Element) -> str | None:
    caption = el.find("caption")
    if caption is None:
        return None
    return element_text(caption) or None


def _graphics(el: etree._Element) -> list[str]:
    return [g.get(HREF) for g in el.iter("graphic") if g.get(HREF)]


def _figure_rows(
    figures: list[tuple[etree._Element, str]], article_id: str, rids: dict[str, list[str]]
) -> list[dict[str, Any]]:
    rows = []
    for fig, path in figures:
        xml_id = fig.get("id")
        rows.append(
            {
                "figure_id": f"{article_id}/{path}",
                "article_id": article_id,
                "path": path,
                "xml_id": xml_id,
                "label": _text_of(fig.find("label")),
                "caption": _caption(fig),
                "mention_ids": list(rids.get(xml_id, [])) if xml_id else [],
                "graphics": _graphics(fig),
            }
        )
    return rows


def _table_rows(
    wraps: list[tuple[etree._Element, str]], article_id: str, rids: dict[str, list[str]]
) -> list[dict[str, Any]]:
    rows = []
    for wrap, path in wraps:
        xml_id = wrap.get("id")
        foot = wrap.find("table-wrap-foot")
        rows.append(
            {
                "table_id": f"{article_id}/{path}",
                "article_id": article_id,
                "path": path,
                "xml_id": xml_id,
                "label": _text_of(wrap.find("label")),
                "caption": _caption(wrap),
                "text": "\n".join(_table_text(t) for t in wrap.iter("table")) or None,
                "footer": element_text(foot) or None if foot is not None else None,
                "mention_ids": list(rids.get(xml_id, [])) if xml_id else [],
                "graphics": _graphics(wrap),
            }
        )
    return rows


def _table_text(table: etree._Element) -> str:
    """Cells tab-separated, rows newline-separated.

    A table inside a paragraph is read for the paragraph's text and again for its own row: the
    text is kept for the length of the ``parse`` call (``_LOCAL.tables``) and read once.
    """
    memo: dict[etree._Element, str] | None = getattr(_LOCAL, "tables", None)
    if memo is not None and table in memo:
        return memo[table]
    rows = []
    for row in table.iter("tr"):
        cells = []
        for cell in row:
            if cell.tag in _CELLS:
                cells.append(element_text(cell) if len(cell) else _norm(cell.text or ""))
        rows.append("\t".join(cells))
    text = "\n".join(rows)
    if memo is not None:
        memo[table] = text
    return text


_CELLS = frozenset(("td", "th"))


# --- one article -----------------------------------------------------------------------------------


def _extract_article(
    article: etree._Element, source_uri: str, sha: str, include_sub_articles: bool
) -> ParsedArticle:
    row, meta = _article_row(article, source_uri, sha)
    state = _Walk(article_id=row["article_id"], paragraphs=[], rids={})
    front = article.find("front")
    if meta is not None and front is not None:
        for abstract, step in _abstract_steps(meta):
            title = _text_of(abstract.find("title")) or abstract.get("abstract-type") or "Abstract"
            _walk(abstract, f"front/article-meta/{step}", _Section((title,), ("",), "abstract"), state)
    in_abstracts = len(state.paragraphs)
    sub_articles = []
    for child, step in _child_steps(article):
        if child.tag == "body":
            _walk(child, step, _Section(), state)
        elif child.tag == "sub-article":
            sub_articles.append((child, step))
    # A collection whose body is empty (meeting abstracts) has its text in its sub-articles.
    include_sub_articles = include_sub_articles or (
        len(state.paragraphs) == in_abstracts and bool(sub_articles)
    )
    if include_sub_articles:
        for sub, step in sub_articles:
            _walk_sub_article(sub, step, state)
    floats = _float_elements(article, include_sub_articles)
    figures = _figure_rows(floats["fig"], row["article_id"], state.rids)
    tables = _table_rows(floats["table-wrap"], row["article_id"], state.rids)
    row["n_paragraphs"] = len(state.paragraphs)
    row["n_figures"] = len(figures)
    row["n_tables"] = len(tables)
    return ParsedArticle(article=row, paragraphs=state.paragraphs, figures=figures, tables=tables)


def _abstract_steps(meta: etree._Element) -> list[tuple[etree._Element, str]]:
    """The ``abstract`` children of ``article-meta`` with their steps (``_child_steps``' rule)."""
    abstracts = [child for child in meta if child.tag == "abstract"]
    if len(abstracts) == 1:
        return [(abstracts[0], "abstract")]
    return [(abstract, f"abstract[{n}]") for n, abstract in enumerate(abstracts, 1)]


def _walk_sub_article(sub: etree._Element, path: str, state: _Walk) -> None:
    kind = sub.get("article-type") or "sub-article"
    for child, step in _child_steps(sub):
        if child.tag in ("front", "front-stub"):
            for abstract, astep in _child_steps(
                child.find("article-meta") if child.tag == "front" else child
            ):
                if abstract.tag == "abstract":
                    _walk(
                        abstract,
                        f"{path}/{step}/{astep}",
                        _Section((kind, "Abstract"), ("", ""), "abstract"),
                        state,
                    )
        elif child.tag == "body":
            _walk(child, f"{path}/{step}", _Section((kind,), ("",), "other"), state)
        elif child.tag == "sub-article":
            _walk_sub_article(child, f"{path}/{step}", state)
