"""``harvest europepmc``: Europe PMC REST — ``search`` with cursor paging, then ``{PMCID}/fullTextXML``.

Search pages (``format=json``, ``resultType=core``, ``pageSize`` up to 1000) are followed through
``nextCursorMark``. A search ends only on a page that says so: its ``nextCursorMark`` equals the one
sent, or it has none (the zero-hit page, the last page). Any other shape (the live service answers
an unknown ``cursorMark`` with HTTP 200 and just ``{"version": "6.9"}``) is retried, then stops
the run (:class:`HarvestInterrupted`) with the pages listed so far kept for the next run. Each page
is cached for the run so a resumed harvest lists nothing twice.

``core``, not ``lite``: only ``core`` results carry ``license`` (``cc by``, lower case), which
overrides the XML's, as source metadata is more reliable than the XML; their ``pmid``/``doi``
fill the article's when its XML lacks them. Results without a PMCID have no full text here and
are counted as skipped.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from pmcurate.harvest.fetch import (
    FetchConfig,
    FetchError,
    HarvestInputError,
    HarvestInterrupted,
    HarvestSummary,
    ServiceError,
    Session,
    apply_source_license,
    batched,
    gather_all,
    parse_document,
    quarantine_record,
    shard_name,
)
from pmcurate.harvest.jats import ParsedArticle
from pmcurate.harvest.source import register

SOURCE = "europepmc"
DEFAULT_BASE_URL = "https://www.ebi.ac.uk/europepmc/webservices/rest"
MAX_PAGE_SIZE = 1000
RESULT_TYPE = "core"


@dataclass(frozen=True)
class EuropePmcOptions:
    out: Path
    query: str
    base_url: str = DEFAULT_BASE_URL
    limit: int | None = None
    page_size: int = MAX_PAGE_SIZE
    batch_size: int = 100
    fetch: FetchConfig = field(default_factory=lambda: FetchConfig(rate=10.0))


@dataclass(frozen=True)
class Hit:
    pmcid: str
    license: str | None
    pmid: str | None = None
    doi: str | None = None


@dataclass(frozen=True)
class SearchPage:
    results: list[dict[str, Any]]
    next_cursor: str | None


def parse_search_page(page: bytes) -> SearchPage:
    """A search answer (JSON) → its results and ``nextCursorMark``; :class:`ServiceError` for any
    other shape (no ``resultList``: e.g. the answer to an unknown ``cursorMark``)."""
    try:
        data = json.loads(page)
    except ValueError as exc:
        raise ServiceError(f"search answer is not JSON: {exc}") from exc
    result_list = data.get("resultList") if isinstance(data, dict) else None
    results = result_list.get("result") if isinstance(result_list, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ServiceError(f"search answer without a resultList: {page[:200]!r}")
    next_cursor = data.get("nextCursorMark")
    if next_cursor is not None and not isinstance(next_cursor, str):
        raise ServiceError(f"nextCursorMark is not a string: {next_cursor!r:.60}")
    return SearchPage(results, next_cursor)


def _validate_search_page(page: bytes) -> None:
    parse_search_page(page)


def hits_of(results: list[dict[str, Any]]) -> tuple[list[Hit], int]:
    """Results with a PMCID as hits, and the number without one."""
    hits = [
        Hit(r["pmcid"], r.get("license"), _text(r.get("pmid")), _text(r.get("doi")))
        for r in results
        if r.get("pmcid")
    ]
    return hits, len(results) - len(hits)


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


class EuropePmcHarvest:
    def __init__(self, options: EuropePmcOptions, session: Session) -> None:
        self.options = options
        self.session = session
        self.base_url = options.base_url.rstrip("/")

    async def search(self) -> list[Hit]:
        """Every hit of the query, in order, de-duplicated, cut at ``limit``."""
        hits: dict[str, Hit] = {}
        cursor = "*"
        for page_no in range(1_000_000):
            params = {
                "query": self.options.query,
                "format": "json",
                "resultType": RESULT_TYPE,
                "pageSize": str(self.options.page_size),
                "cursorMark": cursor,
            }
            try:
                data = await self.session.state.cached(
                    f"search-{page_no}.json",
                    partial(
                        self.session.fetcher.get,
                        f"{self.base_url}/search",
                        params=params,
                        validate=_validate_search_page,
                    ),
                )
                page = parse_search_page(data)
            except (FetchError, ServiceError) as exc:
                why = exc.detail if isinstance(exc, FetchError) else str(exc)
                raise HarvestInterrupted(
                    f"Europe PMC search page {page_no + 1} (cursorMark {cursor}) was not a result page: "
                    f"{why}; the {page_no} pages listed so far are kept under {self.session.state.folder}: "
                    "run the same command again to resume"
                ) from None
            page_hits, without_pmcid = hits_of(page.results)
            self.session.summary.skipped["no_pmcid"] += without_pmcid
            for hit in page_hits:
                hits.setdefault(hit.pmcid, hit)
            if self.options.limit is not None and len(hits) >= self.options.limit:
                break
            if page.next_cursor is None or page.next_cursor == cursor:
                break
            cursor = page.next_cursor
        found = list(hits.values())
        return found[: self.options.limit] if self.options.limit is not None else found

    async def fetch_xml(self, hit: Hit) -> bytes | dict[str, Any]:
        url = f"{self.base_url}/{hit.pmcid}/fullTextXML"
        try:
            data = await self.session.fetcher.get(url, key=f"{hit.pmcid}.xml")
        except FetchError as exc:
            return quarantine_record(SOURCE, url, exc.reason, str(exc), article_id=hit.pmcid)
        finally:
            self.session.advance()
        return data

    async def run(self) -> HarvestSummary:
        hits = await self.search()
        self.session.set_total(len(hits))
        for batch in batched(hits, self.options.batch_size):
            shard = shard_name(SOURCE, [h.pmcid for h in batch])
            if self.session.is_done(shard):
                self.session.skip_shard(len(batch))
                continue
            bodies = await gather_all(*(self.fetch_xml(h) for h in batch))
            await self.session.writer.submit(shard, partial(self.extract, batch, bodies))
        return self.session.summary

    def extract(
        self, batch: list[Hit], bodies: list[bytes | dict[str, Any]]
    ) -> tuple[list[ParsedArticle], list[dict[str, Any]]]:
        articles: list[ParsedArticle] = []
        problems: list[dict[str, Any]] = []
        for hit, body in zip(batch, bodies, strict=True):
            if isinstance(body, dict):
                problems.append(body)
                continue
            uri = f"{self.base_url}/{hit.pmcid}/fullTextXML"
            parsed, failed = parse_document(body, source=SOURCE, source_uri=uri, article_id=hit.pmcid)
            problems += failed
            for article in parsed[:1]:
                row = article.article
                row["pmcid"] = row.get("pmcid") or hit.pmcid
                row["pmid"] = row.get("pmid") or hit.pmid
                row["doi"] = row.get("doi") or hit.doi
                apply_source_license(row, hit.license)
                articles.append(article)
        return articles, problems


async def harvest_async(options: EuropePmcOptions) -> HarvestSummary:
    if not options.query.strip():
        raise HarvestInputError("--query is empty")
    if not 1 <= options.page_size <= MAX_PAGE_SIZE:
        raise HarvestInputError(f"--page-size must be between 1 and {MAX_PAGE_SIZE}")
    if options.limit is not None and options.limit < 1:
        raise HarvestInputError("--limit must be ≥ 1")
    selection = {"base_url": options.base_url, "query": options.query, "page_size": options.page_size}
    async with Session(options.out, SOURCE, options.fetch, selection) as session:
        return await EuropePmcHarvest(options, session).run()


def harvest(options: EuropePmcOptions) -> HarvestSummary:
    """Harvest the open-access full texts matching ``options.query`` into ``options.out``."""
    return asyncio.run(harvest_async(options))


@register
class EuropePmcSource:
    """The ``europepmc`` source in the registry: its ``harvest`` (the options come from ``harvest.steps``)."""

    kind: ClassVar[str] = SOURCE
    harvest = staticmethod(harvest)
