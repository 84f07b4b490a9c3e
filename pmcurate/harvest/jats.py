"""JATS XML → article, paragraph, figure and table rows.  (WORK IN PROGRESS: interface only)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class JatsError(ValueError):
    """A document that cannot be extracted; the message names the source and the reason."""


@dataclass
class ParsedArticle:
    article: dict[str, Any]
    paragraphs: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)


def parse(data: bytes, *, source_uri: str = "", include_sub_articles: bool = False) -> list[ParsedArticle]:
    raise NotImplementedError
