"""Test articles and the protocol apps (Europe PMC REST, E-utilities, an S3 proxy) that serve them.

Articles are the real fixtures of ``tests/data/jats`` (one article per file), keyed by PMCID;
``clone`` makes more of them by changing the PMC id, for tests and benchmarks that need volume.
The apps answer in the shapes recorded from the real services (``tests/data/recorded``, see its
PROVENANCE.md): Europe PMC's lite results carry no ``license``, its core results do; an unknown
``cursorMark`` gets HTTP 200 and ``{"version": "6.9"}``; E-utilities reports errors in HTTP 200
bodies (``<eFetchResult><ERROR>``), a zero-hit esearch has no ``WebEnv``, and a client over the
rate limit gets NCBI's ``{"error":"API rate limit exceeded","count":"N"}``.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

from lxml import etree

from tests.servers.faulty import Reply

JATS_DIR = Path(__file__).resolve().parent.parent / "data" / "jats"
RECORDED = Path(__file__).resolve().parent.parent / "data" / "recorded"
_PMC_ID = re.compile(rb'<article-id pub-id-type="pmc">(\d+)</article-id>')
NO_FULL_TEXT_COMMENT = (
    "The publisher of this article does not allow downloading of the full text in XML form."
)


def recorded(name: str) -> bytes:
    """A recorded answer of a real service (``tests/data/recorded/<name>``)."""
    return (RECORDED / name).read_bytes()


def recorded_json(name: str) -> object:
    return json.loads(recorded(name))


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


def without_ids(data: bytes, *kinds: str) -> bytes:
    """The article without its ``article-id`` elements of the given ``pub-id-type`` (``pmid``, ``doi``)."""
    for kind in kinds:
        data = re.sub(rb'<article-id pub-id-type="' + kind.encode() + rb'">[^<]*</article-id>', b"", data)
    return data


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


def _recorded_result(result_type: str, pmcid: str) -> dict[str, object]:
    """A recorded search result of ``result_type`` (the one for PMC12120539), as a template."""
    name = "search_lite_page1.json" if result_type == "lite" else "search_core_page1.json"
    page = recorded_json(f"europepmc/{name}")
    assert isinstance(page, dict)
    return copy.deepcopy(next(r for r in page["resultList"]["result"] if r.get("pmcid") == pmcid))


class EuropePmcApp:
    """``/europepmc/webservices/rest/search`` (JSON, cursorMark paging) and ``/{PMCID}/fullTextXML``.

    Every search returns all articles (queries are not interpreted), each result shaped like a
    recorded one of the requested ``resultType``: ``lite`` results never carry ``license``;
    ``core`` results carry the one given in ``licenses``. ``nextCursorMark`` is opaque; after the
    last page it repeats, as the real service does; a cursor it never gave gets ``{"version": "6.9"}``.
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
        self.templates = {kind: _recorded_result(kind, "PMC12120539") for kind in ("lite", "core")}

    def __call__(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path == f"{self.PREFIX}/search":
            return self.search(query)
        return full_text(self.articles, self.PREFIX, path)

    def result(self, result_type: str, pmcid: str) -> dict[str, object]:
        result = copy.deepcopy(self.templates["core" if result_type == "core" else "lite"])
        result.update(id=pmcid, source="PMC", pmcid=pmcid, fullTextIdList={"fullTextId": [pmcid]})
        for name in ("pmid", "doi"):
            result.pop(name, None)
        result.pop("license", None)
        if result_type == "core" and pmcid in self.licenses:
            result["license"] = self.licenses[pmcid]
        return result

    def search(self, query: dict[str, list[str]]) -> Reply:
        size = int(query.get("pageSize", ["25"])[0])
        result_type = query.get("resultType", ["lite"])[0]
        cursor = query.get("cursorMark", ["*"])[0]
        try:
            start = 0 if cursor == "*" else int(base64.urlsafe_b64decode(cursor.encode()).decode())
        except ValueError:
            return Reply(200, recorded("europepmc/unknown_cursor.json"), {"Content-Type": "application/json"})
        ids = self.listed
        page = ids[start : start + size]
        end = min(start + size, len(ids))
        body = {
            "version": "6.9",
            "hitCount": len(ids),
            "nextCursorMark": base64.urlsafe_b64encode(str(end).encode()).decode(),
            "request": {
                "queryString": query.get("query", [""])[0],
                "resultType": result_type,
                "cursorMark": quote(cursor, safe=""),
                "pageSize": size,
                "sort": "",
                "synonym": False,
            },
            "resultList": {"result": [self.result(result_type, pmcid) for pmcid in page]},
        }
        return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


def full_text(articles: dict[str, bytes], prefix: str, path: str) -> Reply:
    """``{prefix}/{PMCID}/fullTextXML``: the article, or Europe PMC's 404."""
    match = re.fullmatch(rf"{prefix}/(PMC\d+)/fullTextXML", path)
    if match and match.group(1) in articles:
        return Reply(200, articles[match.group(1)], {"Content-Type": "application/xml"})
    return Reply(404, b"<errCode>404</errCode>", {"Content-Type": "application/xml"})


class RecordedEuropePmcApp:
    """Europe PMC answering search pages recorded from the real service, verbatim.

    ``pages`` maps a ``resultType`` (or ``*`` for any) to recorded pages; a request is answered
    with the page whose ``request.cursorMark`` (URL-decoded) is the one sent, and a cursor no page
    was requested with gets the recorded ``{"version": "6.9"}``, as the live service answers.
    """

    PREFIX = EuropePmcApp.PREFIX

    def __init__(self, pages: dict[str, list[dict[str, object]]], articles: dict[str, bytes]) -> None:
        self.pages = {
            (kind, unquote(str(page["request"]["cursorMark"]))): json.dumps(page, indent=2).encode()  # type: ignore[index]
            for kind, recorded_pages in pages.items()
            for page in recorded_pages
        }
        self.articles = articles

    def __call__(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path != f"{self.PREFIX}/search":
            return full_text(self.articles, self.PREFIX, path)
        cursor = query.get("cursorMark", ["*"])[0]
        result_type = query.get("resultType", ["lite"])[0]
        page = self.pages.get((result_type, cursor)) or self.pages.get(("*", cursor))
        body = page if page is not None else recorded("europepmc/unknown_cursor.json")
        return Reply(200, body, {"Content-Type": "application/json;charset=UTF-8"})


class EutilsApp:
    """``/entrez/eutils/esearch.fcgi`` (history server) and ``efetch.fcgi`` for ``db=pmc``.

    ``front_only`` ids come back as ``<front>`` plus the publisher's comment; an unknown or expired
    ``WebEnv`` gets the recorded ``<eFetchResult><ERROR>`` with HTTP 200; a search that matches
    nothing gets the recorded zero-hit answer (no ``WebEnv``). ``answers`` queues recorded bodies
    to send (HTTP 200) instead of the next efetch answers; ``refuse_next`` refuses that many next
    requests as NCBI refuses a client over its limit (3 requests/s, 10 with ``api_key``): HTTP 429
    with NCBI's JSON body. Refusals are chosen, not measured: arrival times on a busy machine say
    little about the client's rate, which tests read on its limiter (``tests.harvest.netutil``).
    """

    PREFIX = "/entrez/eutils"

    def __init__(
        self,
        articles: dict[str, bytes],
        front_only_ids: frozenset[str] = frozenset(),
        *,
        no_hits: bool = False,
    ) -> None:
        self.articles = {k: _article_element(v) for k, v in articles.items()}
        for pmcid in front_only_ids:
            self.articles[pmcid] = front_only(self.articles[pmcid])
        self.no_hits = no_hits
        self.histories: dict[str, list[str]] = {}
        self.answers: list[bytes] = []
        self.refuse_next = 0
        self._lock = threading.Lock()

    def expire_histories(self) -> None:
        """NCBI forgot every WebEnv it gave (they expire after some hours)."""
        self.histories.clear()

    def refused(self) -> bool:
        with self._lock:
            if self.refuse_next <= 0:
                return False
            self.refuse_next -= 1
            return True

    def __call__(self, path: str, query: dict[str, list[str]]) -> Reply:
        if self.refused():
            count = 11 if "api_key" in query else 4  # requests NCBI saw in its one-second window
            body = recorded("eutils/rate_limited_429.json").replace(b'"11"', f'"{count}"'.encode())
            return Reply(429, body, {"Content-Type": "application/json"})
        if path == f"{self.PREFIX}/esearch.fcgi":
            return self.esearch(query)
        if path == f"{self.PREFIX}/efetch.fcgi":
            return self.efetch(query)
        return Reply(404, b"not found")

    def esearch(self, query: dict[str, list[str]]) -> Reply:
        if self.no_hits or not self.articles:
            return Reply(200, recorded("eutils/esearch_zero_hits.xml"), {"Content-Type": "text/xml"})
        ids = list(self.articles)
        start, size = int(query.get("retstart", ["0"])[0]), int(query.get("retmax", ["20"])[0])
        window = ids[start : start + size]
        xml = recorded("eutils/esearch_history.xml").decode()
        xml = re.sub(r"<Count>\d+</Count>", f"<Count>{len(ids)}</Count>", xml)
        xml = re.sub(r"<RetMax>\d+</RetMax>", f"<RetMax>{len(window)}</RetMax>", xml)
        xml = re.sub(r"<RetStart>\d+</RetStart>", f"<RetStart>{start}</RetStart>", xml)
        xml = re.sub(
            r"<IdList>.*</IdList>",
            "<IdList>\n" + "".join(f"<Id>{i.removeprefix('PMC')}</Id>\n" for i in window) + "</IdList>",
            xml,
            flags=re.DOTALL,
        )
        if query.get("usehistory") == ["y"]:
            webenv = f"MCID_{len(self.histories) + 1:024x}"
            self.histories[webenv] = ids
            xml = re.sub(r"<WebEnv>[^<]*</WebEnv>", f"<WebEnv>{webenv}</WebEnv>", xml)
        else:
            xml = re.sub(r"<QueryKey>[^<]*</QueryKey><WebEnv>[^<]*</WebEnv>", "", xml)
        return Reply(200, xml.encode(), {"Content-Type": "text/xml"})

    def efetch(self, query: dict[str, list[str]]) -> Reply:
        if self.answers:
            return Reply(200, self.answers.pop(0), {"Content-Type": "text/xml"})
        if "id" in query:
            wanted = [f"PMC{i}" for i in query["id"][0].split(",") if i]
        elif query.get("WebEnv", [""])[0] in self.histories:
            start, size = int(query["retstart"][0]), int(query["retmax"][0])
            wanted = self.histories[query["WebEnv"][0]][start : start + size]
        else:
            return Reply(200, recorded("eutils/efetch_error.xml"), {"Content-Type": "text/xml"})
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
                headers = {"Content-Type": response.headers["Content-Type"]}
                if response.headers.get("ETag"):
                    headers["ETag"] = response.headers["ETag"]
                return Reply(response.status, response.read(), headers)
        except urllib.error.HTTPError as exc:
            return Reply(
                exc.code, exc.read(), {"Content-Type": exc.headers.get("Content-Type", "text/plain")}
            )
