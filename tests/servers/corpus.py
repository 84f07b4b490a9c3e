"""Test articles and the protocol apps (Europe PMC REST, E-utilities, an S3 proxy) that serve them.

Articles are the real fixtures of ``tests/data/jats`` (one article per file), keyed by PMCID;
``clone`` makes more of them by changing the PMC id, for tests and benchmarks that need volume.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from urllib.parse import urlencode

from lxml import etree

from tests.servers.faulty import Reply

JATS_DIR = Path(__file__).resolve().parent.parent / "data" / "jats"
_PMC_ID = re.compile(rb'<article-id pub-id-type="pmc">(\d+)</article-id>')
NO_FULL_TEXT_COMMENT = (
    "The publisher of this article does not allow downloading of the full text in XML form."
)


def fixture_articles() -> dict[str, bytes]:
    """PMCID → JATS bytes, for every single-article fixture file."""
    articles: dict[str, bytes] = {}
    for path in sorted(JATS_DIR.glob("*.nxml")):
        data = path.read_bytes()
        match = _PMC_ID.search(data)
        if match:
            articles[f"PMC{match.group(1).decode()}"] = data
    return articles


def clone(data: bytes, number: int) -> bytes:
    """The same article under PMC id ``number``."""
    return _PMC_ID.sub(f'<article-id pub-id-type="pmc">{number}</article-id>'.encode(), data, count=1)


def corpus(n: int, start: int = 9_000_001) -> dict[str, bytes]:
    """``n`` articles: clones of the fixtures with ids ``start``, ``start + 1``…"""
    templates = list(fixture_articles().values())
    return {f"PMC{start + i}": clone(templates[i % len(templates)], start + i) for i in range(n)}


def front_only(data: bytes) -> bytes:
    """The article as efetch returns it when the publisher forbids XML full text."""
    root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, load_dtd=False))
    for name in ("body", "back", "floats-group"):
        for node in root.findall(name):
            root.remove(node)
    root.insert(0, etree.Comment(NO_FULL_TEXT_COMMENT))
    return etree.tostring(root)


def _article_element(data: bytes) -> bytes:
    root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, load_dtd=False))
    return etree.tostring(root)


class EuropePmcApp:
    """``/europepmc/webservices/rest/search`` (JSON, cursorMark paging) and ``/{PMCID}/fullTextXML``.

    Every search returns all articles (queries are not interpreted). ``nextCursorMark`` is opaque;
    after the last page it repeats, as the real service does.
    """

    PREFIX = "/europepmc/webservices/rest"

    def __init__(
        self,
        articles: dict[str, bytes],
        licenses: dict[str, str] | None = None,
        listed: list[str] | None = None,
    ) -> None:
        self.articles = articles
        self.licenses = licenses or {}
        self.listed = listed if listed is not None else list(articles)
        """PMCIDs the search returns (by default every article; more to simulate missing full texts)."""

    def __call__(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path == f"{self.PREFIX}/search":
            return self.search(query)
        match = re.fullmatch(rf"{self.PREFIX}/(PMC\d+)/fullTextXML", path)
        if match and match.group(1) in self.articles:
            return Reply(200, self.articles[match.group(1)], {"Content-Type": "application/xml"})
        return Reply(404, b"<errCode>404</errCode>", {"Content-Type": "application/xml"})

    def search(self, query: dict[str, list[str]]) -> Reply:
        size = int(query.get("pageSize", ["25"])[0])
        cursor = query.get("cursorMark", ["*"])[0]
        start = 0 if cursor == "*" else int(base64.urlsafe_b64decode(cursor.encode()).decode())
        ids = self.listed
        page = ids[start : start + size]
        end = min(start + size, len(ids))
        results = [
            {"id": pmcid, "source": "PMC", "pmcid": pmcid, "isOpenAccess": "Y", "inEPMC": "Y"}
            | ({"license": self.licenses[pmcid]} if pmcid in self.licenses else {})
            for pmcid in page
        ]
        body = {
            "version": "6.9",
            "hitCount": len(ids),
            "nextCursorMark": base64.urlsafe_b64encode(str(end).encode()).decode(),
            "request": {"queryString": query.get("query", [""])[0], "cursorMark": cursor, "pageSize": size},
            "resultList": {"result": results},
        }
        return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


class EutilsApp:
    """``/entrez/eutils/esearch.fcgi`` (history server) and ``efetch.fcgi`` for ``db=pmc``.

    Like NCBI, it answers 429 (JSON error) when a client exceeds 3 requests/s without ``api_key``
    or 10 with one; ``front_only`` ids come back as ``<front>`` plus the publisher's comment.
    """

    PREFIX = "/entrez/eutils"

    def __init__(self, articles: dict[str, bytes], front_only_ids: frozenset[str] = frozenset()) -> None:
        self.articles = {k: _article_element(v) for k, v in articles.items()}
        for pmcid in front_only_ids:
            self.articles[pmcid] = front_only(self.articles[pmcid])
        self.histories: dict[str, list[str]] = {}
        self.rate_limited = 0
        self._recent: dict[bool, deque[float]] = {False: deque(), True: deque()}
        self._lock = threading.Lock()

    def over_limit(self, with_key: bool) -> bool:
        limit = 10 if with_key else 3
        now = time.monotonic()
        with self._lock:
            recent = self._recent[with_key]
            while recent and now - recent[0] >= 1.0:
                recent.popleft()
            recent.append(now)
            if len(recent) > limit:
                self.rate_limited += 1
                return True
        return False

    def __call__(self, path: str, query: dict[str, list[str]]) -> Reply:
        if self.over_limit("api_key" in query):
            body = json.dumps({"error": "API rate limit exceeded", "count": "4"}).encode()
            return Reply(429, body, {"Content-Type": "application/json"})
        if path == f"{self.PREFIX}/esearch.fcgi":
            return self.esearch(query)
        if path == f"{self.PREFIX}/efetch.fcgi":
            return self.efetch(query)
        return Reply(404, b"not found")

    def esearch(self, query: dict[str, list[str]]) -> Reply:
        webenv = f"MCID_{len(self.histories) + 1:08d}"
        self.histories[webenv] = list(self.articles)
        xml = (
            f"<?xml version='1.0' encoding='UTF-8'?><eSearchResult><Count>{len(self.articles)}</Count>"
            f"<RetMax>0</RetMax><RetStart>0</RetStart><QueryKey>1</QueryKey><WebEnv>{webenv}</WebEnv>"
            "<IdList/></eSearchResult>"
        )
        return Reply(200, xml.encode(), {"Content-Type": "text/xml"})

    def efetch(self, query: dict[str, list[str]]) -> Reply:
        if "id" in query:
            wanted = [f"PMC{i}" for i in query["id"][0].split(",") if i]
        elif query.get("WebEnv", [""])[0] in self.histories:
            start, size = int(query["retstart"][0]), int(query["retmax"][0])
            wanted = self.histories[query["WebEnv"][0]][start : start + size]
        else:
            return Reply(400, b"<eFetchResult><ERROR>Unable to obtain query #1</ERROR></eFetchResult>")
        body = b"".join(self.articles[p] for p in wanted if p in self.articles)
        xml = (
            b'<?xml version="1.0" ?>\n<!DOCTYPE pmc-articleset PUBLIC "-//NLM//DTD ARTICLE SET 2.0//EN" '
            b'"https://dtd.nlm.nih.gov/ncbi/pmc/articleset/nlm-articleset-2.0.dtd">\n'
            b"<pmc-articleset>" + body + b"</pmc-articleset>"
        )
        return Reply(200, xml, {"Content-Type": "text/xml"})


class ProxyApp:
    """Forwards GETs to another server (a local S3), so faults can be injected in front of it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")

    def __call__(self, path: str, query: dict[str, list[str]]) -> Reply:
        url = self.upstream + path + (f"?{urlencode(query, doseq=True)}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return Reply(
                    response.status, response.read(), {"Content-Type": response.headers["Content-Type"]}
                )
        except urllib.error.HTTPError as exc:
            return Reply(
                exc.code, exc.read(), {"Content-Type": exc.headers.get("Content-Type", "text/plain")}
            )
