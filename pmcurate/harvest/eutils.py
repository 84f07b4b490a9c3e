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

NCBI reports errors inside HTTP 200 answers: ``<eFetchResult><ERROR>…</ERROR></eFetchResult>``,
``<eSearchResult><ERROR>…``, or the JSON ``{"error": "API rate limit exceeded", …}``. Such a body
is a failure, never an answer: it is retried and never stored in ``raw/``. ``Unable to obtain
query`` means the history (``WebEnv``) expired: the query is searched again for a fresh one and
the batch fetched again; a batch that still fails is quarantined, id by id, with NCBI's error text.
A zero-hit search (which comes back without ``WebEnv``) harvests nothing.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from lxml import etree

from pmcurate.harvest.fetch import (
    FetchConfig,
    FetchError,
    HarvestInputError,
    HarvestSummary,
    ServiceError,
    Session,
    parse_document,
    quarantine_record,
    sha256_hex,
    shard_name,
)
from pmcurate.harvest.jats import ParsedArticle
from pmcurate.harvest.source import register

log = logging.getLogger(__name__)

SOURCE = "eutils"
DEFAULT_BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
RATE_WITHOUT_KEY = 3.0
RATE_WITH_KEY = 10.0
NO_FULL_TEXT = re.compile(r"does not allow downloading of the full text", re.IGNORECASE)
NUMERIC_ID = re.compile(r"^(?:PMC)?(\d+)$", re.IGNORECASE)
HISTORY_EXPIRED = re.compile(r"Unable to obtain query", re.IGNORECASE)
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


@dataclass(frozen=True)
class History:
    count: int
    webenv: str | None
    query_key: str | None


def check_answer(body: bytes, *, history: bool = False) -> None:
    """Raise :class:`ServiceError` when ``body`` is one of NCBI's error documents, not an answer.

    ``{"error": …}`` (the rate-limit body, also sent with HTTP 200) and a root ``eFetchResult`` or
    ``eSearchResult`` holding ``ERROR``. With ``history`` (a fetch through ``WebEnv``), ``Unable
    to obtain query`` means the history expired: asking again cannot help (``history_expired``).
    """
    head = body.lstrip()[:1]
    if head == b"{":
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and "error" in data:
            raise ServiceError(f"NCBI answered: {json.dumps(data)[:200]}")
        return
    root = _first_element(body)
    if root in ("eFetchResult", "eSearchResult"):
        error = etree.fromstring(body, parser=_XML).findtext("ERROR")
        if error:
            expired = history and bool(HISTORY_EXPIRED.search(error))
            reason = "history_expired" if expired else "service_error"
            raise ServiceError(
                f"NCBI answered {root}/ERROR: {error.strip()}", reason=reason, retry=not expired
            )
        if root == "eFetchResult":
            raise ServiceError("NCBI answered an eFetchResult without articles")


def _first_element(body: bytes) -> str | None:
    """The local name of the root element, read without parsing the whole (possibly large) answer."""
    try:
        for _, element in etree.iterparse(
            io.BytesIO(body), events=("start",), resolve_entities=False, no_network=True, load_dtd=False
        ):
            return str(etree.QName(element).localname)
    except etree.XMLSyntaxError:
        return None
    return None


def esearch_history(page: bytes) -> History:
    """An esearch answer → (Count, WebEnv, QueryKey); a zero-hit search has no WebEnv."""
    root = etree.fromstring(page, parser=_XML)
    count = root.findtext("Count")
    if count is None or not count.strip().isdigit():
        raise ServiceError(f"esearch answer without a Count: {page[:200]!r}")
    history = History(int(count), root.findtext("WebEnv"), root.findtext("QueryKey"))
    if history.count and not (history.webenv and history.query_key):
        raise ServiceError("esearch found articles but gave no WebEnv/QueryKey")
    return history


def esearch_ids(page: bytes) -> list[str]:
    return [(node.text or "").strip() for node in etree.fromstring(page, parser=_XML).iterfind("IdList/Id")]


def _check_esearch(page: bytes) -> None:
    check_answer(page)
    try:
        esearch_history(page)
    except etree.XMLSyntaxError as exc:
        raise ServiceError(f"esearch answer is not XML: {exc}") from exc


def _check_esearch_ids(page: bytes) -> None:
    check_answer(page)
    try:
        esearch_ids(page)
    except etree.XMLSyntaxError as exc:
        raise ServiceError(f"esearch answer is not XML: {exc}") from exc


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
        """An efetch answer, or a quarantine record (without ``article_id``) saying why there is none."""
        url = f"{self.base_url}/efetch.fcgi"
        validate = partial(check_answer, history="WebEnv" in params)
        try:
            return await self.session.fetcher.get(
                url, params=self.params(retmode="xml", **params), key=key, validate=validate
            )
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
            await self.session.writer.submit(shard, partial(self.extract, batch, body))

    async def esearch(self, query: str, *, fresh: bool = False) -> History:
        """The query on the history server; ``fresh`` replaces the run's cached answer (expired history)."""

        async def search() -> bytes:
            return await self.session.fetcher.get(
                f"{self.base_url}/esearch.fcgi",
                params=self.params(term=query, usehistory="y", retmax="0"),
                validate=_check_esearch,
            )

        if fresh:
            self.session.state.put("esearch.xml", await search())
        try:
            page = await self.session.state.cached("esearch.xml", search)
        except FetchError as exc:
            raise HarvestInputError(f"esearch failed: {exc.detail}") from None
        return esearch_history(page)

    async def window_ids(self, query: str, start: int, size: int) -> list[str]:
        """The ids of results ``start``…``start + size`` of the query (to name a failed batch's articles)."""
        try:
            page = await self.session.fetcher.get(
                f"{self.base_url}/esearch.fcgi",
                params=self.params(term=query, retstart=str(start), retmax=str(size)),
                validate=_check_esearch_ids,
            )
        except FetchError:
            return []
        return esearch_ids(page)

    async def run_query(self, query: str) -> None:
        history = await self.esearch(query)
        if history.count == 0:
            log.info("eutils: the query found nothing")
        total = min(history.count, self.options.limit) if self.options.limit is not None else history.count
        self.session.set_total(total)
        for start in range(0, total, self.options.batch_size):
            size = min(self.options.batch_size, total - start)
            body, history = await self.fetch_window(query, history, start, size)
            self.session.advance(size)
            tag = sha256_hex(f"{history.webenv}|{history.query_key}".encode())[:16]
            shard = shard_name(
                SOURCE, [f"{tag}-{start}", sha256_hex(body) if isinstance(body, bytes) else "failed"]
            )
            if self.session.is_done(shard):
                self.session.summary.shards_skipped += 1
                continue
            ids = await self.window_ids(query, start, size) if isinstance(body, dict) else None
            await self.session.writer.submit(shard, partial(self.extract, ids, body))

    async def fetch_window(
        self, query: str, history: History, start: int, size: int
    ) -> tuple[bytes | dict[str, Any], History]:
        """Results ``start``…``start + size`` through the history; an expired history is renewed once."""
        for renewed in (False, True):
            assert history.webenv is not None and history.query_key is not None
            tag = sha256_hex(f"{history.webenv}|{history.query_key}".encode())[:16]
            params = {"WebEnv": history.webenv, "query_key": history.query_key}
            params |= {"retstart": str(start), "retmax": str(size)}
            body = await self.efetch(params, key=f"efetch/history-{tag}-{start}.xml")
            if isinstance(body, bytes) or body["reason"] != "history_expired" or renewed:
                return body, history
            log.info("eutils: the history expired at result %d; searching again for a fresh WebEnv", start)
            history = await self.esearch(query, fresh=True)
        raise AssertionError("unreachable")

    def extract(
        self, requested: list[str] | None, body: bytes | dict[str, Any]
    ) -> tuple[list[ParsedArticle], list[dict[str, Any]]]:
        """Articles of one efetch answer, and quarantine records for the rest of the batch."""
        if isinstance(body, dict):
            ids: list[str | None] = [*requested] if requested else [None]
            return [], [{**body, "article_id": f"PMC{i}" if i else None} for i in ids]
        articles: list[ParsedArticle] = []
        problems: list[dict[str, Any]] = []
        try:
            fetched = list(split_articleset(body))
        except etree.XMLSyntaxError as exc:
            return [], [
                quarantine_record(SOURCE, "efetch", "bad_response", f"efetch answer: {exc}", stage="parse")
            ]
        for item in fetched:
            uri = f"{self.base_url}/efetch.fcgi?db=pmc&id={(item.pmcid or '').removeprefix('PMC')}"
            if not item.full_text:
                problems.append(
                    quarantine_record(
                        SOURCE,
                        uri,
                        "no_full_text",
                        f"{item.pmcid}: the publisher does not allow XML full text",
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
                    f"efetch returned no article for PMC{missing}",
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


@register
class EutilsSource:
    """The ``eutils`` source in the registry: its ``harvest`` (the options come from ``harvest.steps``).

    The API key comes from ``NCBI_API_KEY`` only, and sets the rate to NCBI's ceiling for it."""

    kind: ClassVar[str] = SOURCE
    harvest = staticmethod(harvest)
