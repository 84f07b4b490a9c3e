"""Types of the compiled JATS walk (``_jatswalk.pyx``), for mypy and readers."""

from typing import Any

from lxml import etree

CITATION_MODES: tuple[str, ...]
BUILT_FROM_SHA256: str
"""SHA-256 of the ``_jatswalk.pyx`` this module was compiled from (``jats.check_build``)."""

class Extraction:
    dropping: bool
    def __init__(self, citations: str = "marker") -> None: ...
    def text(self, el: etree._Element) -> str: ...
    def formula_text(self, el: etree._Element) -> str: ...
    def walk(
        self,
        el: etree._Element,
        path: str,
        section: Section,
        article_id: str,
        paragraphs: Paragraphs,
        rids: dict[str, list[str]],
    ) -> None: ...
    def float_rows(
        self, article: etree._Element, include_sub_articles: bool, article_id: str, rids: dict[str, list[str]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...
    def authors(self, meta: etree._Element) -> list[dict[str, Any]]: ...

class Paragraphs:
    article_id: str
    paragraph_id: list[str]
    path: list[str]
    section_title: list[str | None]
    section_path: list[list[str]]
    section_type: list[str]
    n_words: list[int]
    ends: list[int]
    """Where each paragraph's text ends in ``text``."""
    text: bytearray
    """The paragraphs' texts, UTF-8, one after the other."""
    def __init__(self, article_id: str) -> None: ...
    def __len__(self) -> int: ...
    def rows(self) -> list[dict[str, Any]]: ...

class Section:
    titles: tuple[str, ...]
    sec_types: tuple[str, ...]
    fixed_type: str | None
    path: list[str]
    type: str
    def __init__(
        self, titles: tuple[str, ...] = (), sec_types: tuple[str, ...] = (), fixed_type: str | None = None
    ) -> None: ...
    def enter(self, title: str, sec_type: str) -> Section: ...

def find_bytes(data: bytes, needle: bytes, start: int = 0, end: int = -1) -> int: ...
def norm(text: str) -> str: ...
def child_steps(el: etree._Element) -> list[tuple[etree._Element, str]]: ...
def path_of(el: etree._Element, top: etree._Element) -> str: ...
def section_type(titles: tuple[str, ...], sec_types: tuple[str, ...]) -> str: ...
def formula_text(el: etree._Element) -> str: ...
def tex_body(tex: str) -> str: ...
def mathml_text(el: etree._Element) -> str: ...
