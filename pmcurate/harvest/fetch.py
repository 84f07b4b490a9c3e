"""The fetch engine shared by the network sources (PMC Cloud Service, Europe PMC, E-utilities).

What it guarantees, whatever the source:

- **Politeness.** At most ``concurrency`` requests in flight, and a per-host rate limit (a token
  bucket of capacity one, so requests to a host are spaced at least ``1/rate`` seconds apart). A
  ``Retry-After`` on 429/503 pauses the whole host, not just the request that got it.
- **Retries.** Timeouts, connection resets, truncated bodies (including truncated gzip streams,
  which ``httpx`` would otherwise return silently shortened), 408/429/5xx and checksum mismatches
  are retried with exponential backoff and jitter; ``Retry-After`` wins over the backoff. So are
  answers a source's ``validate`` rejects (an error document sent with HTTP 200). Other 4xx
  answers and objects over the byte cap fail at once.
- **Two kinds of failure.** A *content* failure (404, a checksum that never matches, an error
  document that keeps coming back, an object over the cap) is a :class:`FetchError` carrying a
  short ``reason``, which the sources turn into quarantine rows: the harvest goes on. A
  *transport* failure (the service unreachable, timing out or answering 5xx/429 after every
  retry) is not a property of the article: it raises :class:`HarvestInterrupted`, the run stops
  with a non-zero exit, finished shards are kept and the next run retries what is missing.
- **Integrity.** A body is checked against the MD5 the source published (``md5``), against a
  ``Content-MD5`` header, and (``etag_is_md5``, S3) against the ``ETag`` of the object actually
  fetched. A listing's or inventory's ETag only says which raw copy is current (``stored_md5``):
  an object updated in place since the listing is taken as it is now, not called corrupt.
- **Raw files.** Every object fetched is kept under ``BUILD/raw/<source>/<key>``, written to a
  temporary name, fsynced and renamed only once its checksum (MD5 when the source publishes one)
  has been verified: a raw file that exists is complete. A later run (a resumed one, or one that
  re-extracts) reads it instead of fetching it again.
- **Resumable listings.** Listing pages (S3 ``ListObjectsV2``, Europe PMC search, ``esearch``)
  are cached under ``BUILD/state/<source>-<run>/`` where ``<run>`` hashes the selection
  arguments; a killed run lists nothing twice. The folder is removed when the run completes, so
  the next run with the same arguments sees the source as it is then.
- **Versions.** Shards are written by :mod:`pmcurate.harvest.store`; afterwards
  :func:`store.settle_versions` (the rule every source shares) keeps, for each ``article_id``,
  only the row with the highest version (then the latest ``harvested_at``) and rewrites the
  shards holding older rows atomically without them. It runs at the start of a harvest too, so a
  run killed between the two steps is settled by the next one.
- **Secrets.** ``api_key`` values are redacted (``api_key=***``) in every log message, error and
  quarantine row, including the request lines ``httpx`` logs itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
from tqdm import tqdm

from pmcurate import __version__, schema
from pmcurate.errors import Retry, SkipItem
from pmcurate.harvest import HarvestInputError, licenses, store
from pmcurate.harvest.jats import ParsedArticle, parse
from pmcurate.harvest.source import Rejection, redact
from pmcurate.http import parse_retry_after
from pmcurate.progress import enabled as progress_enabled
from pmcurate.schema import atomic_write

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
CONTENT_REASONS = frozenset({"checksum_mismatch", "service_error"})
"""Retried reasons that, when every attempt failed, belong to the object (quarantined), not to
the connection (which stops the run)."""
_MD5 = re.compile(r"[0-9a-f]{32}")


class _RedactFilter(logging.Filter):
    """Rewrites log records that mention an API key (``httpx`` logs full request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message.lower():
            record.msg, record.args = redact(message), None
        return True


_REDACT_FILTER = _RedactFilter()
for _name in ("httpx", "httpcore", __name__):
    logging.getLogger(_name).addFilter(_REDACT_FILTER)


class HarvestInterrupted(Retry):
    """The harvest stopped for a reason outside its input: the service was unreachable, kept
    failing, or answered a page the harvest cannot go on from. Finished shards and the run's cached
    listings are kept: the same command run again resumes."""


class FetchError(SkipItem):
    """An object that could not be fetched (a content failure), after retries where they made sense."""

    def __init__(self, url: str, reason: str, detail: str = "") -> None:
        self.url = redact(url)
        self.reason = reason
        self.detail = redact(detail)
        super().__init__(f"{self.url}: {reason}" + (f" ({self.detail})" if self.detail else ""))


class ServiceError(Retry):
    """Raised by a ``validate`` callback: the body is the service's error document, not an answer.

    ``retry`` False when asking again cannot help (an expired E-utilities history), so the
    caller hears of it at once (a :class:`FetchError` with ``reason``).
    """

    def __init__(self, message: str, *, reason: str = "service_error", retry: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


Validate = Callable[[bytes], None]
"""Checks a body and raises :class:`ServiceError` when it is an error document."""


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class FetchConfig:
    """How politely and how persistently to fetch."""

    concurrency: int = 8
    rate: float = 10.0
    """Requests per second per host."""
    retries: int = 5
    """Attempts after the first one."""
    backoff: float = 0.5
    """Base delay of the exponential backoff, seconds (doubled per attempt, then jittered ±50%)."""
    max_backoff: float = 60.0
    max_retry_after: float = 300.0
    timeout: float = 30.0
    """Connect/read/write timeout, seconds."""
    total_timeout: float = 600.0
    """Deadline for one whole attempt (a server trickling bytes never trips ``timeout``)."""
    max_bytes: int = 1 << 30
    """Byte cap per object, compressed and decoded."""
    http2: bool = True
    user_agent: str = f"pmcurate/{__version__} (+https://github.com/pmcurate)"

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.rate <= 0 or self.retries < 0 or self.max_bytes < 1:
            raise HarvestInputError("concurrency and max-bytes must be ≥ 1, rate > 0, retries ≥ 0")


class RateLimiter:
    """A token bucket of capacity one: successive requests start at least ``1/rate`` s apart.

    Three percent of headroom (30 ms per second) is kept so that network and scheduling jitter
    never make the server count more than ``rate`` requests in a one-second window.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.03 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)

    def pause(self, seconds: float) -> None:
        """No request to this host starts within the next ``seconds`` (a ``Retry-After``)."""
        self._next = max(self._next, time.monotonic() + seconds)


@dataclass
class FetchStats:
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    cached: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RawStore:
    """Verified source files of one source under ``BUILD/raw/<source>/``, keyed by relative path."""

    def __init__(self, build: str | os.PathLike[str], source: str) -> None:
        self.root = Path(build) / "raw" / source

    def path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or PurePosixPath(key).is_absolute() or any(p in ("..", ".", "") for p in parts):
            raise ValueError(f"unsafe raw key {key!r}")
        return self.root.joinpath(*parts)

    def read(self, key: str, md5: str | None = None, *, published: bool = True) -> bytes | None:
        """The stored bytes of ``key``, or None when absent or (with ``md5``) not matching it.

        ``published`` False: ``md5`` is a listing's ETag, so a mismatch means the object changed
        (or the listing lags), not that the file is damaged.
        """
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if md5 and md5_hex(data) != md5.lower():
            if published:
                log.warning("raw file %s fails its MD5 check; fetching it again", path)
            else:
                log.info(
                    "raw file %s differs from the listing's ETag; fetching the object as it is now", path
                )
            path.unlink(missing_ok=True)
            return None
        return data

    def remove_temporary(self) -> None:
        """Delete temporary files that killed writes left (raw files are only read once renamed)."""
        if self.root.is_dir():
            for path in self.root.rglob(f"{schema.TMP_PREFIX}*"):
                path.unlink(missing_ok=True)

    def write(self, key: str, data: bytes) -> Path:
        path = self.path(key)
        atomic_write(path, data)
        return path


class RunState:
    """Per-run cache of listing pages: ``BUILD/state/<source>-<hash of the selection>/``."""

    def __init__(self, build: str | os.PathLike[str], source: str, selection: Mapping[str, Any]) -> None:
        digest = hashlib.sha256(json.dumps(selection, sort_keys=True, default=str).encode()).hexdigest()
        self.folder = Path(build) / "state" / f"{source}-{digest[:16]}"

    def get(self, name: str) -> bytes | None:
        path = self.folder / name
        return path.read_bytes() if path.is_file() else None

    def put(self, name: str, data: bytes) -> None:
        atomic_write(self.folder / name, data)

    async def cached(self, name: str, fetch: Callable[[], Awaitable[bytes]]) -> bytes:
        """The page ``name`` from the cache, else fetched once and cached."""
        data = self.get(name)
        if data is None:
            data = await fetch()
            self.put(name, data)
        return data

    def finish(self) -> None:
        """The run is complete: forget its listings."""
        shutil.rmtree(self.folder, ignore_errors=True)


class Fetcher:
    """An ``httpx`` client with bounded concurrency, per-host rate limits, retries and a raw store.

    Use as ``async with Fetcher(config, raw) as fetcher: data = await fetcher.get(url, key=…)``.
    """

    def __init__(self, config: FetchConfig, raw: RawStore | None = None) -> None:
        self.config = config
        self.raw = raw
        self.stats = FetchStats()
        self._limiters: dict[str, RateLimiter] = {}
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._client: httpx.AsyncClient | None = None
        self.on_progress: Callable[[], None] = lambda: None

    async def __aenter__(self) -> Fetcher:
        self._client = httpx.AsyncClient(
            http2=self.config.http2,
            timeout=httpx.Timeout(self.config.timeout),
            limits=httpx.Limits(max_connections=self.config.concurrency),
            headers={"User-Agent": self.config.user_agent, "Accept-Encoding": "gzip"},
            follow_redirects=True,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    def limiter(self, url: str) -> RateLimiter:
        host = urlsplit(url).netloc
        if host not in self._limiters:
            self._limiters[host] = RateLimiter(self.config.rate)
        return self._limiters[host]

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        md5: str | None = None,
        key: str | None = None,
        stored_md5: str | None = None,
        etag_is_md5: bool = False,
        validate: Validate | None = None,
    ) -> bytes:
        """The body of ``url``; from the raw store when ``key`` is stored there and still current.

        ``md5``: the digest the source published for this object; a body that differs is retried
        like a transport error. ``stored_md5`` (default ``md5``): the digest a kept raw file must
        have to be reused, e.g. the ETag a listing gave, which only tells whether a kept copy is
        current. ``etag_is_md5``: the server's ``ETag`` of a single-part object is its MD5 (S3).
        ``validate`` rejects error documents sent as answers; they are retried and never stored.
        With ``key``, the verified body is stored before it is returned, by a thread: its fsyncs
        (the file's, its folder's), in the event loop, would hold up every request in flight (the
        four of an article's two objects took 1.2 ms of a local bucket harvest's loop, and a network
        disk's take milliseconds each).
        """
        if key is not None and self.raw is not None:
            data = self.raw.read(key, stored_md5 or md5, published=stored_md5 is None)
            if data is not None and _valid(data, validate):
                self.stats.cached += 1
                return data
        data = await self._get_with_retries(url, params, md5, etag_is_md5, validate)
        if key is not None and self.raw is not None:
            await asyncio.to_thread(self.raw.write, key, data)
        return data

    async def _get_with_retries(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        md5: str | None,
        etag_is_md5: bool,
        validate: Validate | None,
    ) -> bytes:
        last: _Retryable | None = None
        for attempt in range(self.config.retries + 1):
            if last is not None:
                self.stats.retries += 1
                self.on_progress()
                await asyncio.sleep(self._delay(attempt, last))
            try:
                async with self._semaphore:
                    await self.limiter(url).wait()
                    return await self._attempt(url, params, md5, etag_is_md5, validate)
            except _Retryable as exc:
                log.debug("retrying %s: %s %s", redact(url), exc.reason, redact(exc.detail))
                last = exc
            except FetchError as exc:
                self.stats.failures[exc.reason] += 1
                raise
        assert last is not None
        self.stats.failures[last.reason] += 1
        attempts = self.config.retries + 1
        if last.reason in CONTENT_REASONS:
            raise FetchError(url, last.reason, f"gave up after {attempts} attempts; {last.detail}")
        where = redact(_full_url(url, params))
        raise HarvestInterrupted(
            f"{where}: {last.reason} after {attempts} attempts ({redact(last.detail)}); "
            "finished shards are kept: run the same command again to resume"
        )

    def _delay(self, attempt: int, last: _Retryable) -> float:
        if last.retry_after is not None:
            return min(last.retry_after, self.config.max_retry_after)
        base = min(self.config.max_backoff, self.config.backoff * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.5)

    async def _attempt(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        md5: str | None,
        etag_is_md5: bool,
        validate: Validate | None,
    ) -> bytes:
        assert self._client is not None, "use Fetcher as an async context manager"
        self.stats.requests += 1
        try:
            async with asyncio.timeout(self.config.total_timeout):
                async with self._client.stream("GET", url, params=params) as response:
                    self._check_status(response)
                    body = await self._read_body(response)
                    headers = response.headers
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise _Retryable("timeout", type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise _Retryable("transport", f"{type(exc).__name__}: {exc}") from exc
        _check_digests(body, md5, headers, etag_is_md5)
        if validate is not None:
            try:
                validate(body)
            except ServiceError as exc:
                if not exc.retry:
                    raise FetchError(url, exc.reason, str(exc)) from exc
                raise _Retryable(exc.reason, str(exc)) from exc
        self.stats.bytes += len(body)
        self.on_progress()
        return body

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 300:
            return
        url = str(response.request.url)
        if status in RETRYABLE_STATUS:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None and status in (429, 503):
                self.limiter(url).pause(min(retry_after, self.config.max_retry_after))
            raise _Retryable(f"http_{status}", f"HTTP {status}", retry_after)
        raise FetchError(url, f"http_{status}", f"HTTP {status}")

    async def _read_body(self, response: httpx.Response) -> bytes:
        """The decoded body; truncated gzip streams and bodies over the cap are errors."""
        url = str(response.request.url)
        cap = self.config.max_bytes
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > cap:
            raise FetchError(url, "too_large", f"Content-Length {length} > cap {cap}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            raise FetchError(url, "unsupported_encoding", encoding)
        decoder = zlib.decompressobj(wbits=31) if encoding != "identity" else None
        chunks: list[bytes] = []
        size = 0
        try:
            async for raw in response.aiter_raw():
                chunk = decoder.decompress(raw) if decoder else raw
                size += len(chunk)
                if size > cap:
                    raise FetchError(url, "too_large", f"body exceeds cap {cap}")
                chunks.append(chunk)
        except zlib.error as exc:
            raise _Retryable("bad_gzip", str(exc)) from exc
        if decoder is not None:
            chunks.append(decoder.flush())
            if not decoder.eof:
                raise _Retryable("truncated_gzip", "gzip stream ended early")
        return b"".join(chunks)


def _check_digests(body: bytes, md5: str | None, headers: httpx.Headers, etag_is_md5: bool) -> None:
    """Retry a body that differs from the MD5 published for it or sent with it."""
    expected = [
        ("expected MD5", md5.lower() if md5 else None),
        ("Content-MD5", _content_md5(headers.get("content-md5"))),
        ("ETag", plain_md5_etag(headers.get("etag")) if etag_is_md5 else None),
    ]
    if not any(value for _, value in expected):
        return
    digest = md5_hex(body)
    for what, value in expected:
        if value and digest != value:
            raise _Retryable("checksum_mismatch", f"{what} {value}, got {digest}")


def plain_md5_etag(value: str | None) -> str | None:
    """An ETag that is the object's MD5 (not a multipart ETag, which carries a ``-``), lower case."""
    if not value:
        return None
    value = value.strip().removeprefix("W/").strip('"').lower()
    return value if _MD5.fullmatch(value) else None


def _content_md5(value: str | None) -> str | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def _valid(data: bytes, validate: Validate | None) -> bool:
    """Whether a kept raw file passes ``validate`` (an older run may have stored an error document)."""
    if validate is None:
        return True
    try:
        validate(data)
    except ServiceError:
        return False
    return True


def _full_url(url: str, params: Mapping[str, Any] | None) -> str:
    return str(httpx.URL(url, params=params)) if params else url


async def gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """``asyncio.gather`` that cancels the other awaitables as soon as one fails.

    A :class:`HarvestInterrupted` in one request must stop the batch, not leave its siblings
    running against a client that is about to close.
    """
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Progress:
    """One tqdm bar over articles, showing bytes, requests, retries and failures as they happen."""

    def __init__(self, source: str, fetcher: Fetcher, total: int | None = None) -> None:
        self.fetcher = fetcher
        self.bar = tqdm(
            total=total, desc=source, unit="art", dynamic_ncols=True, disable=not progress_enabled()
        )
        self._last = 0.0
        fetcher.on_progress = self.refresh

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)
        self.refresh()

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._last < 0.25:
            return
        self._last = now
        s = self.fetcher.stats
        self.bar.set_postfix(
            MB=f"{s.bytes / 1e6:.1f}", req=s.requests, retries=s.retries, failed=sum(s.failures.values())
        )

    def close(self) -> None:
        self.bar.close()


@dataclass
class HarvestSummary:
    source: str
    articles: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    quarantined: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """Articles deliberately not harvested, by reason (``retracted``, ``license``…)."""
    superseded: int = 0
    changed: int = 0
    """Objects that changed since the listing or inventory that selected them (taken as they are now)."""
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    cached: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def absorb(self, stats: FetchStats) -> None:
        self.requests, self.retries, self.bytes = stats.requests, stats.retries, stats.bytes
        self.cached, self.failures = stats.cached, Counter(stats.failures)
        self.seconds = time.monotonic() - stats.started

    def line(self) -> str:
        rate = self.articles / self.seconds if self.seconds else 0.0
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        failures = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        return (
            f"{self.source}: {self.articles} articles in {self.shards_written} new shards "
            f"({self.shards_skipped} already done), {self.quarantined} quarantined, skipped: {skipped}, "
            f"{self.superseded} older versions replaced, {self.changed} changed since listed; "
            f"{self.requests} requests, {self.retries} retries, "
            f"{self.bytes / 1e6:.1f} MB, {self.cached} from raw/; failures: {failures}; "
            f"{self.seconds:.1f} s, {rate:.1f} articles/s"
        )


def quarantine_record(
    source: str, member: str, reason: str, error: str, *, article_id: str | None = None, stage: str = "fetch"
) -> dict[str, Any]:
    """The quarantine row of an object a network source could not use (``source.Rejection``)."""
    return Rejection(source, member, stage, reason, error, article_id).record()


def apply_source_license(article: dict[str, Any], value: str | None) -> bool:
    """Set the license the source's own metadata gives (a bucket JSON, a search result) over the XML's.

    Returns False, leaving the XML's license (``license_source`` ``xml``), when the source gives none.
    """
    code = licenses.normalize_code(value)
    if code is None:
        return False
    article["license"] = code
    article["commercial_use"] = licenses.commercial_use(code)
    article["license_source"] = "metadata"
    return True


def parse_document(
    data: bytes, *, source: str, source_uri: str, article_id: str | None
) -> tuple[list[ParsedArticle], list[dict[str, Any]]]:
    """Parsed articles of one document, or a quarantine record saying why there are none."""
    try:
        parsed = parse(data, source_uri=source_uri)
    except Exception as exc:  # a harvest continues past any one bad document
        return [], [
            quarantine_record(
                source,
                source_uri,
                "parse_error",
                f"{type(exc).__name__}: {exc}",
                article_id=article_id,
                stage="parse",
            )
        ]
    if not parsed:
        return [], [
            quarantine_record(
                source,
                source_uri,
                "no_article",
                "no article in the document",
                article_id=article_id,
                stage="parse",
            )
        ]
    digest = sha256_hex(data)
    for article in parsed:
        if not article.article.get("content_sha256"):
            article.article["content_sha256"] = digest
    return parsed, []


def shard_name(source: str, keys: Iterable[str]) -> str:
    """A deterministic shard name for a batch: the source and a hash of the batch's object keys."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
    return f"{source}-{digest}"


class ShardWriter:
    """Writes finished batches (quarantine first, articles last) in a worker thread.

    The event loop keeps fetching the next batch while the previous one is parsed and written; at
    most one batch waits to be written.
    """

    def __init__(self, build: str | os.PathLike[str], source: str, summary: HarvestSummary) -> None:
        self.build = Path(build)
        self.source = source
        self.summary = summary
        self._pending: asyncio.Task[None] | None = None

    async def submit(
        self, shard: str, job: Callable[[], tuple[list[ParsedArticle], list[dict[str, Any]]]]
    ) -> None:
        """Run ``job`` (parse: articles and quarantine records) then write shard ``shard``."""
        await self.drain()
        self._pending = asyncio.create_task(asyncio.to_thread(self._write, shard, job))

    async def drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    def _write(self, shard: str, job: Callable[[], tuple[list[ParsedArticle], list[dict[str, Any]]]]) -> None:
        parsed, quarantine = job()
        rows = store.ShardRows(source=self.source)
        for article in parsed:
            rows.add(article)
        counts = store.write_harvest_shard(self.build, shard, rows, quarantine)
        self.summary.quarantined += counts["quarantined"]
        self.summary.articles += counts["articles"]
        self.summary.shards_written += 1


def read_id_file(path: str | os.PathLike[str]) -> list[str]:
    """Identifiers from a file, one per line (blank lines and ``#`` comments ignored), de-duplicated."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise HarvestInputError(f"cannot read id file {path}: {exc.strerror}") from exc
    seen: dict[str, None] = {}
    for line in text.splitlines():
        value = line.split("#", 1)[0].strip()
        if value:
            seen.setdefault(value, None)
    return list(seen)


def batched(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Session:
    """Everything one harvest run shares: fetcher, raw store, listing cache, shard writer, summary.

    Entering removes the files of shards a killed run left unfinished (and their temporary files)
    and settles versions left unsettled by it; leaving normally waits for the last
    shard, settles versions, forgets the run's listings and logs the summary.
    """

    def __init__(
        self, build: str | os.PathLike[str], source: str, config: FetchConfig, selection: Mapping[str, Any]
    ) -> None:
        self.build = Path(build)
        self.source = source
        self.summary = HarvestSummary(source)
        self.raw = RawStore(build, source)
        self.state = RunState(build, source, selection)
        self.fetcher = Fetcher(config, self.raw)
        self.writer = ShardWriter(build, source, self.summary)
        self.progress: Progress | None = None
        self.done: set[str] = set()

    async def __aenter__(self) -> Session:
        await asyncio.to_thread(store.remove_unfinished, self.build, prefix=f"{self.source}-")
        await asyncio.to_thread(self.raw.remove_temporary)
        await asyncio.to_thread(_settle, self.build)
        self.done = store.completed_shards(self.build)
        await self.fetcher.__aenter__()
        self.progress = Progress(self.source, self.fetcher)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            await self.writer.drain()
        finally:
            await self.fetcher.__aexit__()
            if self.progress is not None:
                self.progress.close()
        self.summary.absorb(self.fetcher.stats)
        if exc_type is None:
            self.summary.superseded = await asyncio.to_thread(_settle, self.build)
            self.state.finish()
            log.debug("%s", self.summary.line())  # the caller prints the summary: once

    def set_total(self, total: int) -> None:
        assert self.progress is not None
        self.progress.bar.total = total
        self.progress.bar.refresh()

    def advance(self, n: int = 1) -> None:
        assert self.progress is not None
        self.progress.advance(n)

    def is_done(self, shard: str) -> bool:
        return shard in self.done

    def skip_shard(self, n_articles: int) -> None:
        self.summary.shards_skipped += 1
        self.advance(n_articles)


def _settle(build: Path) -> int:
    """Settle versions across every article shard of the build; the number of rows replaced."""
    return store.settle_versions(build)["articles"]
