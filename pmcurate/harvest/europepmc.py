"""``harvest europepmc``: Europe PMC REST — ``search`` with cursor paging, then ``{PMCID}/fullTextXML``.

Search pages (``format=json``, ``resultType=lite``, ``pageSize`` up to 1000) are followed through
``nextCursorMark`` until it is absent, repeats, or a page comes back empty; each page is cached
for the run so a resumed harvest lists nothing twice. Results without a PMCID have no full text
here and are counted as skipped. A license in the search result (``cc by``, lower case) overrides
the XML's, as source metadata is more reliable than the XML.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmcurate.harvest import licenses
from pmcurate.harvest.fetch import (
    FetchConfig,
    FetchError,
    HarvestInputError,
    HarvestSummary,
    Session,
    batched,
    parse_document,
    quarantine_record,
    shard_name,
)
from pmcurate.harvest.jats import ParsedArticle

SOURCE = "europepmc"
DEFAULT_BASE_URL = "https://www.ebi.ac.uk/europepmc/webservices/rest"
MAX_PAGE_SIZE = 1000


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


def parse_search_page(page: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """A search answer (JSON) → (results, ``nextCursorMark`` or None)."""
    data = json.loads(page)
    results = (data.get("resultList") or {}).get("result") or []
    return results, data.get("nextCursorMark")


def hits_of(results: list[dict[str, Any]]) -> tuple[list[Hit], int]:
    """Results with a PMCID as hits, and the number without one."""
    hits = [Hit(r["pmcid"], licenses.normalize_code(r.get("license"))) for r in results if r.get("pmcid")]
    return hits, len(results) - len(hits)


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
                "resultType": "lite",
                "pageSize": str(self.options.page_size),
                "cursorMark": cursor,
            }
            page = await self.session.state.cached(
                f"search-{page_no}.json",
                lambda p=params: self.session.fetcher.get(f"{self.base_url}/search", params=p),
            )
            results, next_cursor = parse_search_page(page)
            page_hits, without_pmcid = hits_of(results)
            self.session.summary.skipped["no_pmcid"] += without_pmcid
            for hit in page_hits:
                hits.setdefault(hit.pmcid, hit)
            if self.options.limit is not None and len(hits) >= self.options.limit:
                break
            if not results or not next_cursor or next_cursor == cursor:
                break
            cursor = next_cursor
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
            bodies = await asyncio.gather(*(self.fetch_xml(h) for h in batch))
            await self.session.writer.submit(shard, lambda b=batch, x=bodies: self.extract(b, x))
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
                article.article["pmcid"] = article.article.get("pmcid") or hit.pmcid
                if hit.license is not None:
                    article.article["license"] = hit.license
                    article.article["commercial_use"] = licenses.commercial_use(hit.license)
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
