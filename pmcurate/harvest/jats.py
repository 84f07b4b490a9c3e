"""JATS XML → article, paragraph, figure and table rows.

``parse(data)`` takes the bytes of one XML document (a single ``<article>``, a ``<pmc-articleset>``,
an ``<articles>`` wrapper or an OAI-PMH envelope) and returns one ``ParsedArticle`` per article,
its rows shaped as ``schema.ARTICLES``, ``PARAGRAPHS``, ``FIGURES`` and ``TABLES``.

Text follows the fidelity rules of DESIGN.md: the XML's own characters, whitespace only where a
block element starts or ends, no ``<p>`` emitted twice, floats (figures, tables, footnotes) kept out
of the running text, formulas as TeX when the XML has it.

Speed matters (PMC-OA is ~7M articles): what visits many elements (the paragraph walk, every text,
the figure and table rows, the authors) is compiled, in ``_jatswalk.pyx`` (docs/jats.md, "Speed,
and the compiled walk"); this module parses safely, reads the metadata and orders the work.

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
from pathlib import Path
from typing import Any

from lxml import etree

from pmcurate import compiled
from pmcurate.errors import SkipItem
from pmcurate.harvest.licenses import commercial_use, normalize_license, states_a_license

try:
    from pmcurate.harvest import _jatswalk
    from pmcurate.harvest._jatswalk import (
        CITATION_MODES,
        Extraction,
        Paragraphs,
        Section,
        child_steps,
        find_bytes,
        formula_text,
        mathml_text,
        norm,
        path_of,
        section_type,
        tex_body,
    )
except ImportError as exc:  # the extension is built by installing the package; say how, loudly
    raise ImportError(
        "pmcurate.harvest._jatswalk (the compiled half of the JATS parser) is not built or does not load: "
        "reinstall pmcurate with a C compiler present (`make .venv/.installed`, or `pip install -e .`)"
    ) from exc


__all__ = [
    "CITATION_MODES",
    "JatsError",
    "Paragraphs",
    "ParsedArticle",
    "check_build",
    "drop_reference_lists",
    "formula_text",
    "mathml_text",
    "normalize_doi",
    "normalize_pmcid",
    "parse",
    "path_of",
    "section_type",
    "tex_body",
]


def check_build(source: Path) -> None:
    """Refuse a compiled walk built from another version of ``source`` (``compiled.check_build``)."""
    compiled.check_build(_jatswalk, source)


check_build(Path(__file__).with_name("_jatswalk.pyx"))


class JatsError(SkipItem):
    """A document that cannot be extracted; the message names the source and the reason."""


class ParsedArticle:
    """One article's rows: ``article`` is a row of ARTICLES, the lists rows of the other tables.

    ``paragraphs`` may be given as the walk's ``Paragraphs`` (columns, texts as UTF-8): the harvest
    writes those as they are (``paragraph_columns``); reading ``paragraphs`` turns them into rows."""

    __slots__ = ("_paragraphs", "article", "figures", "tables")

    def __init__(
        self,
        article: dict[str, Any],
        paragraphs: list[dict[str, Any]] | Paragraphs | None = None,
        figures: list[dict[str, Any]] | None = None,
        tables: list[dict[str, Any]] | None = None,
    ) -> None:
        self.article = article
        self._paragraphs: list[dict[str, Any]] | Paragraphs = [] if paragraphs is None else paragraphs
        self.figures: list[dict[str, Any]] = [] if figures is None else figures
        self.tables: list[dict[str, Any]] = [] if tables is None else tables

    @property
    def paragraphs(self) -> list[dict[str, Any]]:
        if isinstance(self._paragraphs, Paragraphs):
            self._paragraphs = self._paragraphs.rows()
        return self._paragraphs

    @paragraphs.setter
    def paragraphs(self, rows: list[dict[str, Any]]) -> None:
        self._paragraphs = rows

    @property
    def paragraph_columns(self) -> Paragraphs | None:
        """The paragraphs as the walk wrote them, while ``paragraphs`` has not been read."""
        return self._paragraphs if isinstance(self._paragraphs, Paragraphs) else None

    @property
    def n_paragraphs(self) -> int:
        return len(self._paragraphs)

    def _fields(self) -> tuple[Any, ...]:
        return self.article, self.paragraphs, self.figures, self.tables

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParsedArticle):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in zip(_FIELDS, self._fields(), strict=True))
        return f"ParsedArticle({values})"


_FIELDS = ("article", "paragraphs", "figures", "tables")


XLINK_NS = "http://www.w3.org/1999/xlink"
MML_NS = "http://www.w3.org/1998/Math/MathML"
ALI_NS = "http://www.niso.org/schemas/ali/1.0/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
HREF = f"{{{XLINK_NS}}}href"
ALI_LICENSE_REF = f"{{{ALI_NS}}}license_ref"
XML_LANG = f"{{{XML_NS}}}lang"

_DEFAULT_NS = re.compile(rb"""\sxmlns\s*=\s*(["'])([^"']*)\1""")
_NAMED_ENTITY = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos);)([A-Za-z][A-Za-z0-9]*);")
_KNOWN_PREFIXES = {
    b"xlink": XLINK_NS,
    b"mml": MML_NS,
    b"ali": ALI_NS,
    b"xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
_ROOT_START = re.compile(rb"<(?![?!])[A-Za-z_][\w.:-]*")

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
    data: bytes,
    *,
    source_uri: str = "",
    include_sub_articles: bool = False,
    citations: str = "marker",
    sha256: str | None = None,
) -> list[ParsedArticle]:
    """Extract every article of one JATS document.

    ``source_uri`` is recorded on the rows and named in errors. With ``include_sub_articles``,
    paragraphs of ``sub-article`` elements (peer reviews, translations…) are emitted too, under
    their own paths; by default they are kept out of the main article's text, except for an article
    whose body has no paragraph while its sub-articles have some (meeting-abstract collections):
    its sub-articles are its text. ``citations`` is ``"marker"`` (a citation that would glue to a
    word reads `` [1]``) or ``"drop"`` (bibliography citations and their brackets are left out).
    ``sha256``: the hex sha256 of ``data`` when the caller has it (the rows' ``content_sha256``).
    Raises ``JatsError`` when the document is not well-formed, declares entities, or holds no article.
    """
    extraction = Extraction(citations)
    where = source_uri or "<bytes>"
    root = _parse_xml(data, where)
    articles = _find_articles(root)
    if not articles:
        raise JatsError(f"{where}: no <article> element (root is <{_local(root.tag)}>)")
    sha = sha256 or hashlib.sha256(data).hexdigest()
    return [_extract_article(a, source_uri, sha, include_sub_articles, extraction) for a in articles]


# --- reading XML safely ----------------------------------------------------------------------------


def _parse_xml(data: bytes, where: str) -> etree._Element:
    """Parse safely; repair the two known defects of real files only when libxml2 reports them."""
    if not data or data.isspace():
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
    if find_bytes(data, b"xmlns=") < 0 and find_bytes(data, b"xmlns =") < 0:
        return data
    pieces: list[bytes] = []
    pos = 0
    for match in _default_namespace_declarations(data):
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


def _default_namespace_declarations(data: bytes) -> Iterator[re.Match[bytes]]:
    """The matches of ``_DEFAULT_NS.finditer(data)``, each tried where an ``xmlns`` is (found by
    ``find_bytes``) rather than by the regex engine scanning the whole document."""
    search_from = 1  # a declaration starts with the whitespace before its ``xmlns``
    while (at := find_bytes(data, b"xmlns", search_from)) >= 0:
        match = _DEFAULT_NS.match(data, at - 1)
        if match:
            yield match
            search_from = match.end() + 1
        else:
            search_from = at + 1


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
    while (at := find_bytes(data, _REF_LIST_OPEN, start, end)) >= 0:
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
            close = find_bytes(data, _REF_LIST_CLOSE, cursor)
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


# --- metadata --------------------------------------------------------------------------------------


def _text_of(el: etree._Element | None, ex: Extraction) -> str | None:
    if el is None:
        return None
    return ex.text(el) or None


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
        value = norm("".join(el.itertext()))
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


def _abstracts(meta: etree._Element, ex: Extraction) -> list[dict[str, str | None]]:
    """Every abstract and trans-abstract: type, title, and text (its titles and paragraphs, one a line)."""
    found = []
    for el in meta:
        if el.tag not in ("abstract", "trans-abstract"):
            continue
        kind = el.get("abstract-type") or ("trans-abstract" if el.tag == "trans-abstract" else None)
        own_title = el.find("title")
        title = _text_of(own_title, ex)
        blocks = (
            ex.text(b)
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


def _license(
    article: etree._Element, meta: etree._Element, ex: Extraction
) -> tuple[str | None, str | None, str | None]:
    """(code, url, license text) from ``permissions``; older NLM files state the license only in a
    ``copyright-statement`` (inside ``permissions`` or directly in ``article-meta``), and some
    publishers (Springer/Adis: "Open Access This article is distributed under the terms of the
    Creative Commons Attribution Noncommercial License…") only in ``ack`` or ``notes``."""
    permissions = meta.find("permissions")
    holder = permissions if permissions is not None else meta
    urls: list[str] = [norm("".join(ref.itertext())) for ref in holder.iter(ALI_LICENSE_REF)]
    types: list[str] = []
    texts: list[str] = []
    for lic in holder.iterfind("license"):
        urls.extend(lic.get(attr) for attr in (HREF, _RDF_RESOURCE) if lic.get(attr))
        urls.extend(link.get(HREF) for link in lic.iter("ext-link", "uri") if link.get(HREF))
        if lic.get("license-type"):
            types.append(lic.get("license-type"))
        texts.append(ex.text(lic))
    text = " ".join(t for t in texts if t) or None
    code, url = normalize_license(urls, types[0] if types else None, text)
    if code not in (None, "other"):
        return code, url, text
    for statement in _license_statements(article, holder, ex):
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


def _license_statements(article: etree._Element, holder: etree._Element, ex: Extraction) -> Iterator[str]:
    """Prose that may state the license outside ``license``: the copyright statement, then
    acknowledgements and notes, each only when it reads like a license grant."""
    statement = holder.find("copyright-statement")
    if statement is not None and states_a_license(text := ex.text(statement)):
        yield text
    for where in _LICENSE_PLACES:
        for el in article.iterfind(where):
            text = ex.text(el)
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
        ref = rel.get(HREF) or rel.get("id") or norm("".join(rel.itertext()))
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
    by_type = {j.get("journal-id-type"): norm(j.text or "") for j in journal_meta.iterfind("journal-id")}
    for kind in ("publisher-id", "nlm-ta", "iso-abbrev", *by_type):
        if by_type.get(kind):
            return by_type[kind]
    issn = journal_meta.findtext("issn")
    title = journal_meta.findtext("journal-title-group/journal-title") or journal_meta.findtext(
        "journal-title"
    )
    return norm(issn or title or "") or None


def _article_row(
    article: etree._Element, source_uri: str, sha: str, ex: Extraction
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
    abstracts = _abstracts(meta, ex)
    code, license_url, license_text = _license(article, meta, ex)
    retracted, notice, related = _retraction(article, meta, article_type)
    journal = abbrev = publisher = None
    issn: list[str] = []
    if journal_meta is not None:
        journal = _text_of(journal_meta.find("journal-title-group/journal-title"), ex) or _text_of(
            journal_meta.find("journal-title"), ex
        )
        for jid in journal_meta.iterfind("journal-id"):
            if jid.get("journal-id-type") in ("nlm-ta", "iso-abbrev") and abbrev is None:
                abbrev = norm(jid.text or "") or None
        issn = [norm(i.text or "") for i in journal_meta.iterfind("issn") if i.text]
        publisher = _text_of(journal_meta.find("publisher/publisher-name"), ex)
    row = {
        "article_id": article_id,
        "id_source": id_source,
        "pmcid": pmcid,
        "version": version,
        "pmid": ids.get("pmid"),
        "doi": doi,
        "title": _text_of(meta.find("title-group/article-title"), ex),
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
        "subjects": [norm("".join(s.itertext())) for s in meta.iterfind("article-categories//subject")],
        "keywords": [k for k in (_text_of(k, ex) for k in meta.iterfind("kwd-group/kwd")) if k],
        "authors": ex.authors(meta),
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


# --- one article -----------------------------------------------------------------------------------


def _extract_article(
    article: etree._Element, source_uri: str, sha: str, include_sub_articles: bool, ex: Extraction
) -> ParsedArticle:
    row, meta = _article_row(article, source_uri, sha, ex)
    article_id = row["article_id"]
    paragraphs = Paragraphs(article_id)
    rids: dict[str, list[str]] = {}  # xref target id → paragraph_ids citing it
    front = article.find("front")
    if meta is not None and front is not None:
        for abstract, step in _abstract_steps(meta):
            title = _text_of(abstract.find("title"), ex) or abstract.get("abstract-type") or "Abstract"
            section = Section((title,), ("",), "abstract")
            ex.walk(abstract, f"front/article-meta/{step}", section, article_id, paragraphs, rids)
    in_abstracts = len(paragraphs)
    sub_articles = []
    for child, step in child_steps(article):
        if child.tag == "body":
            ex.walk(child, step, Section(), article_id, paragraphs, rids)
        elif child.tag == "sub-article":
            sub_articles.append((child, step))
    # A collection whose body is empty (meeting abstracts) has its text in its sub-articles.
    include_sub_articles = include_sub_articles or (len(paragraphs) == in_abstracts and bool(sub_articles))
    if include_sub_articles:
        for sub, step in sub_articles:
            _walk_sub_article(sub, step, ex, article_id, paragraphs, rids)
    figures, tables = ex.float_rows(article, include_sub_articles, article_id, rids)
    row["n_paragraphs"] = len(paragraphs)
    row["n_figures"] = len(figures)
    row["n_tables"] = len(tables)
    return ParsedArticle(article=row, paragraphs=paragraphs, figures=figures, tables=tables)


def _abstract_steps(meta: etree._Element) -> list[tuple[etree._Element, str]]:
    """The ``abstract`` children of ``article-meta`` with their steps (``child_steps``' rule)."""
    abstracts = [child for child in meta if child.tag == "abstract"]
    if len(abstracts) == 1:
        return [(abstracts[0], "abstract")]
    return [(abstract, f"abstract[{n}]") for n, abstract in enumerate(abstracts, 1)]


def _walk_sub_article(
    sub: etree._Element,
    path: str,
    ex: Extraction,
    article_id: str,
    paragraphs: Paragraphs,
    rids: dict[str, list[str]],
) -> None:
    kind = sub.get("article-type") or "sub-article"
    for child, step in child_steps(sub):
        if child.tag in ("front", "front-stub"):
            for abstract, astep in child_steps(child.find("article-meta") if child.tag == "front" else child):
                if abstract.tag == "abstract":
                    section = Section((kind, "Abstract"), ("", ""), "abstract")
                    ex.walk(abstract, f"{path}/{step}/{astep}", section, article_id, paragraphs, rids)
        elif child.tag == "body":
            section = Section((kind,), ("",), "other")
            ex.walk(child, f"{path}/{step}", section, article_id, paragraphs, rids)
        elif child.tag == "sub-article":
            _walk_sub_article(child, f"{path}/{step}", ex, article_id, paragraphs, rids)
