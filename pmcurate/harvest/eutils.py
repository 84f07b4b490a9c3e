"""``harvest eutils``: NCBI E-utilities, ``efetch db=pmc`` in batches.

Ids come from a file (``PMC123`` or ``123``, one per line) or from an ``esearch`` query run
through the history server (``usehistory=y``; ``efetch`` then pages with ``WebEnv``,
``query_key``, ``retstart``, ``retmax``). Every request carries ``tool`` and ``email``; the API
key comes from ``NCBI_API_KEY`` and raises the allowed rate from 3 to 10 requests/s — the rate
limit is checked against that ceiling, and the key never appears in logs or errors.

An ``efetch`` answer is a ``<pmc-articleset>``. Articles whose publisher does not allow XML full
text come back as ``<front>`` only with a comment saying so: they are recorded in the quarantine
table (reason ``no_full_text``), not written as articles with empty bodies. Requested ids missing
from the answer are recorded too (``not_returned``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from pmcurate.harvest.fetch import (
    FetchConfig,
    FetchError,
    HarvestInputError,
    HarvestSummary,
    Session,
    parse_document,
    quarantine_record,
    sha256_hex,
    shard_name,
)
from pmcurate.harvest.jats import ParsedArticle

SOURCE = "eutils"
DEFAULT_BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
RATE_WITHOUT_KEY = 3.0
RATE_WITH_KEY = 10.0
NO_FULL_TEXT = re.compile(r"does not allow downloading of the full text", re.IGNORECASE)
NUMERIC_ID = re.compile(r"^(?:PMC)?(\d+)$", re.IGNORECASE)
_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


@dataclass(frozen=True)
class EutilsOptions:
    out: Path
    ids: tuple[str, ...] = ()
    query: str | None = None
    base_url: str = DEFAULT_BASE_URL
    limit: int | None = None
    batch_size: int = 100
    tool: str = "pmcurate"
    email: str | None = None
    api_key: str | None = None
    fetch: FetchConfig | None = None
    """None: the NCBI ceiling for the key situation (3 or 10 requests/s)."""

    def rate_ceiling(self) -> float:
        return RATE_WITH_KEY if self.api_key else RATE_WITHOUT_KEY

    def fetch_config(self) -> FetchConfig:
        config = self.fetch or FetchConfig(rate=self.rate_ceiling(), concurrency=4)
        if config.rate > self.rate_ceiling():
            raise HarvestInputError(
                f"NCBI allows at most {self.rate_ceiling():g} requests/s "
                f"{'with' if self.api_key else 'without'} an API key; --rate {config.rate:g} is above it"
            )
        return config


@dataclass
class FetchedArticle:
    pmcid: str | None
    xml: bytes
    full_text: bool


def numeric_id(value: str) -> str:
    match = NUMERIC_ID.match(value.strip())
    if not match:
        raise HarvestInputError(f"not a PMC id: {value!r}")
    return match.group(1)


def split_articleset(data: bytes) -> Iterator[FetchedArticle]:
    """The ``<article>`` elements of an efetch answer, each serialized on its own."""
    root = etree.fromstring(data, parser=_XML)
    articles = [root] if etree.QName(root).localname == "article" else list(root.iterfind("{*}article"))
    for article in articles:
        has_body = article.find("{*}body") is not None
        forbidden = any(NO_FULL_TEXT.search(c.text or "") for c in article.iter(etree.Comment))
        yield FetchedArticle(_pmcid(article), etree.tostring(article), has_body or not forbidden)


def _pmcid(article: etree._Element) -> str | None:
    for node in article.iterfind("{*}front/{*}article-meta/{*}article-id"):
        kind = node.get("pub-id-type")
        text = (node.text or "").strip()
        if kind in ("pmc", "pmcid") and text:
            return "PMC" + text.removeprefix("PMC").split(".")[0]
    return None


def esearch_history(page: bytes) -> tuple[int, str, str]:
    """An esearch answer → (Count, WebEnv, QueryKey); the ``ERROR`` it carries otherwise."""
    root = etree.fromstring(page, parser=_XML)
    error = root.findtext("ERROR")
    count, webenv, query_key = root.findtext("Count"), root.findtext("WebEnv"), root.findtext("QueryKey")
    if error or count is None or not webenv or not query_key:
        raise HarvestInputError(f"esearch failed: {error or 'no WebEnv/QueryKey in the answer'}")
    return int(count), webenv, query_key


class EutilsHarvest:
    def __init__(self, options: EutilsOptions, session: Session) -> None:
        self.options = options
        self.session = session
        self.base_url = options.base_url.rstrip("/")

    def params(self, **extra: str) -> dict[str, str]:
        params = {"db": "pmc", "tool": self.options.tool, **extra}
        if self.options.email:
            params["email"] = self.options.email
        if self.options.api_key:
            params["api_key"] = self.options.api_key
        return params

    async def efetch(self, params: dict[str, str], key: str) -> bytes | dict[str, Any]:
        url = f"{self.base_url}/efetch.fcgi"
        try:
            return await self.session.fetcher.get(url, params=self.params(retmode="xml", **params), key=key)
        except FetchError as exc:
            return quarantine_record(SOURCE, f"{url}?{key}", exc.reason, str(exc))

    async def run_ids(self, ids: list[str]) -> None:
        batches = [ids[i : i + self.options.batch_size] for i in range(0, len(ids), self.options.batch_size)]
        self.session.set_total(len(ids))
        for batch in batches:
            shard = shard_name(SOURCE, batch)
            if self.session.is_done(shard):
                self.session.skip_shard(len(batch))
                continue
            body = await self.efetch({"id": ",".join(batch)}, key=f"efetch/{shard}.xml")
            self.session.advance(len(batch))
            await self.session.writer.submit(shard, lambda b=batch, x=body: self.extract(b, x))

    async def run_query(self, query: str) -> None:
        page = await self.session.state.cached(
            "esearch.xml",
            lambda: self.session.fetcher.get(
                f"{self.base_url}/esearch.fcgi", params=self.params(term=query, usehistory="y", retmax="0")
            ),
        )
        count, webenv, query_key = esearch_history(page)
        total = min(count, self.options.limit) if self.options.limit is not None else count
        self.session.set_total(total)
        history = sha256_hex(f"{webenv}|{query_key}".encode())[:16]
        for start in range(0, total, self.options.batch_size):
            size = min(self.options.batch_size, total - start)
            params = {"WebEnv": webenv, "query_key": query_key, "retstart": str(start), "retmax": str(size)}
            body = await self.efetch(params, key=f"efetch/history-{history}-{start}.xml")
            self.session.advance(size)
            shard = shard_name(
                SOURCE, [f"{history}-{start}", sha256_hex(body) if isinstance(body, bytes) else "failed"]
            )
            if self.session.is_done(shard):
                self.session.summary.shards_skipped += 1
                continue
            await self.session.writer.submit(shard, lambda x=body: self.extract(None, x))

    def extract(
        self, requested: list[str] | None, body: bytes | dict[str, Any]
    ) -> tuple[list[ParsedArticle], list[dict[str, Any]]]:
        """Articles of one efetch answer, and quarantine records for the rest of the batch."""
        if isinstance(body, dict):
            ids = requested or [None]
            return [], [{**body, "article_id": f"PMC{i}" if i else None} for i in ids]
        articles: list[ParsedArticle] = []
        problems: list[dict[str, Any]] = []
        try:
            fetched = list(split_articleset(body))
        except etree.XMLSyntaxError as exc:
            return [], [quarantine_record(SOURCE, "efetch", "bad_response", str(exc), stage="parse")]
        for item in fetched:
            uri = f"{self.base_url}/efetch.fcgi?db=pmc&id={(item.pmcid or '').removeprefix('PMC')}"
            if not item.full_text:
                problems.append(
                    quarantine_record(
                        SOURCE,
                        uri,
                        "no_full_text",
                        "the publisher does not allow XML full text",
                        article_id=item.pmcid,
                    )
                )
                continue
            parsed, failed = parse_document(item.xml, source=SOURCE, source_uri=uri, article_id=item.pmcid)
            problems += failed
            articles += parsed[:1]
        returned = {item.pmcid for item in fetched}
        for missing in [i for i in requested or [] if f"PMC{i}" not in returned]:
            problems.append(
                quarantine_record(
                    SOURCE,
                    f"{self.base_url}/efetch.fcgi?db=pmc&id={missing}",
                    "not_returned",
                    "efetch returned no article for this id",
                    article_id=f"PMC{missing}",
                )
            )
        return articles, problems


async def harvest_async(options: EutilsOptions) -> HarvestSummary:
    if bool(options.ids) == bool(options.query):
        raise HarvestInputError("choose exactly one of --ids FILE or --query")
    if options.limit is not None and options.limit < 1:
        raise HarvestInputError("--limit must be ≥ 1")
    if not 1 <= options.batch_size <= 500:
        raise HarvestInputError("--batch-size must be between 1 and 500")
    config = options.fetch_config()
    ids = list(dict.fromkeys(numeric_id(i) for i in options.ids))[: options.limit]
    selection = {"base_url": options.base_url, "ids": ids, "query": options.query, "limit": options.limit}
    async with Session(options.out, SOURCE, config, selection) as session:
        harvest_run = EutilsHarvest(options, session)
        if ids:
            await harvest_run.run_ids(ids)
        else:
            assert options.query is not None
            await harvest_run.run_query(options.query)
        return session.summary


def harvest(options: EutilsOptions) -> HarvestSummary:
    """Harvest PMC articles through E-utilities into ``options.out``; see the module docstring."""
    return asyncio.run(harvest_async(options))
