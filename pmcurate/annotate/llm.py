"""The LLM teacher over any OpenAI-compatible chat-completions endpoint.

vLLM, llama.cpp's server, Ollama and hosted APIs all speak ``POST {endpoint}/chat/completions``.
Each paragraph is one request asking for a JSON object that follows ``prompt.ANSWER_SCHEMA``
(``response_format: json_schema``); servers that reject ``response_format`` are asked again
without it, and every answer goes through a tolerant parser (code fences, prose around the
object, scores written as strings).

Requests run concurrently (bounded), are retried on 429/5xx/timeouts/connection errors honouring
``Retry-After``, and every answer — or final failure — is stored at once in a SQLite cache keyed by
(model, prompt hash, input hash): a rerun or a crashed run never pays twice for the same paragraph.
A token or cost budget stops the run cleanly: no new request starts once it is spent.
The API key comes from the environment only and is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import re
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
from tqdm import tqdm

from pmcurate import labels
from pmcurate.annotate import labels_file, prompt
from pmcurate.errors import Fatal, SkipItem
from pmcurate.http import parse_retry_after

log = logging.getLogger(__name__)

API_KEY_ENV = ("PMCURATE_LLM_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
CACHE_FILE = "cache.sqlite"


class LlmError(Fatal):
    """The endpoint refuses every request (bad key, unknown model, wrong URL): the run stops."""


class MalformedAnswer(SkipItem):
    """An answer that is not a JSON object following the rubric."""


class _Unavailable(Exception):
    """Retries exhausted for one request."""


class _FormatRejected(Exception):
    """The server does not accept ``response_format``."""


@dataclass
class LlmConfig:
    endpoint: str
    model: str
    api_key: str | None = None
    concurrency: int = 16
    timeout: float = 120.0
    max_retries: int = 6
    malformed_retries: int = 2
    max_wait: float = 120.0
    """Longest wait honoured from a Retry-After header or the back-off, in seconds."""
    backoff: float = 1.0
    max_tokens: int | None = None
    """Token budget (prompt + completion, as reported by the server) for this run."""
    max_cost: float | None = None
    price_in: float = 0.0
    """Price per million prompt tokens, for ``max_cost``."""
    price_out: float = 0.0
    temperature: float = 0.0
    answer_tokens: int = 100
    retry_failed: bool = False

    @property
    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


def api_key_from_env(name: str | None = None) -> str | None:
    """The API key from ``name`` or the usual variables; None for servers that need none."""
    for var in (name,) if name else API_KEY_ENV:
        value = os.environ.get(var)
        if value:
            return value
    return None


# ---------------------------------------------------------------- parsing answers

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_answer(content: str | None) -> dict[str, Any]:
    """The labels in a model's answer: the JSON object itself, fenced, or inside prose."""
    if not content or not content.strip():
        raise MalformedAnswer("empty answer")
    for candidate in _candidates(content):
        try:
            obj = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            obj = {str(k).strip().lower(): v for k, v in obj.items()}
            for spec in labels.taught():
                if spec.kind == "class" and isinstance(obj.get(spec.name), str):
                    obj[spec.name] = obj[spec.name].strip().lower().replace(" ", "_")
            try:
                return labels_file.validate_labels(obj)
            except labels_file.LabelsError as exc:
                raise MalformedAnswer(str(exc)) from None
    raise MalformedAnswer(f"no JSON object in the answer: {content[:80]!r}")


def _candidates(content: str) -> Iterable[str]:
    yield content.strip()
    yield from (m.strip() for m in _FENCE.findall(content))
    start, end = content.find("{"), content.rfind("}")
    if 0 <= start < end:
        yield content[start : end + 1]


# ---------------------------------------------------------------- cache


class AnswerCache:
    """Answers keyed by (model, prompt hash, input hash), committed one by one."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS answers (
                model TEXT NOT NULL, prompt_hash TEXT NOT NULL, input_sha256 TEXT NOT NULL,
                status TEXT NOT NULL, labels TEXT, raw TEXT, error TEXT,
                prompt_tokens INTEGER, completion_tokens INTEGER, at TEXT NOT NULL,
                PRIMARY KEY (model, prompt_hash, input_sha256))"""
        )
        self.db.commit()

    def get(self, model: str, prompt_hash: str, key: str) -> tuple[str, dict[str, Any] | None] | None:
        row = self.db.execute(
            "SELECT status, labels FROM answers WHERE model=? AND prompt_hash=? AND input_sha256=?",
            (model, prompt_hash, key),
        ).fetchone()
        if row is None:
            return None
        return row[0], (json.loads(row[1]) if row[1] else None)

    def put(
        self,
        model: str,
        prompt_hash: str,
        key: str,
        *,
        labels: dict[str, Any] | None,
        raw: str | None,
        error: str | None,
        usage: tuple[int, int],
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                model,
                prompt_hash,
                key,
                "ok" if labels else "failed",
                json.dumps(labels) if labels else None,
                raw,
                error,
                usage[0],
                usage[1],
                datetime.now(UTC).isoformat(),
            ),
        )
        self.db.commit()

    def close(self) -> None:
        self.db.close()


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Item:
    """One paragraph to label."""

    text: str
    section: str | None = None
    paragraph_id: str | None = None
    article_id: str | None = None

    @property
    def key(self) -> str:
        rendered = prompt.USER.format(section=self.section or "(none)", text=self.text)
        return hashlib.sha256(rendered.encode("utf-8")).hexdigest()


@dataclass
class RunSummary:
    items: int = 0
    cached: int = 0
    answered: int = 0
    failed: int = 0
    skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    budget_exhausted: bool = False
    structured_output: bool = True
    seconds: float = 0.0
    labels: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """Labels of every item answered now or before, by item key."""


class CachedTeacher(ABC):
    """What every backend shares: cache look-ups, recording answers and failures, summary, progress.

    A backend asks only for the items ``pending`` returns and hands each answer to ``_record``
    (or ``_record_answer``), so the cache, the failure records and the teacher rows are the same
    whichever way the model is reached.
    """

    def __init__(self, model: str, cache: AnswerCache, *, retry_failed: bool = False) -> None:
        self.model = model
        self.cache = cache
        self.retry_failed = retry_failed
        self.summary = RunSummary()
        self._bar: tqdm | None = None

    @abstractmethod
    def run(self, items: Sequence[Item], *, progress: bool = True) -> RunSummary:
        """Label the items not answered yet; the summary holds the labels of all."""

    def pending(self, items: Sequence[Item], *, progress: bool) -> list[Item]:
        """The distinct items the cache cannot answer; opens the progress bar."""
        unique = list({item.key: item for item in items}.values())
        self.summary.items = len(unique)
        todo = [item for item in unique if not self._from_cache(item)]
        self._bar = tqdm(
            total=len(unique),
            initial=len(unique) - len(todo),
            unit="par",
            desc="annotate llm",
            disable=not progress,
        )
        return todo

    def _from_cache(self, item: Item) -> bool:
        hit = self.cache.get(self.model, prompt.PROMPT_HASH, item.key)
        if hit is None or (hit[0] == "failed" and self.retry_failed):
            return False
        self.summary.cached += 1
        if hit[1]:
            self.summary.labels[item.key] = hit[1]
        return True

    def _record_answer(self, item: Item, raw: str | None, usage: tuple[int, int]) -> None:
        """Parse one answer and record its labels, or a failure when it is malformed."""
        try:
            labels = parse_answer(raw)
        except MalformedAnswer as exc:
            self._record(item, labels=None, raw=raw, error=f"malformed answer: {exc}", usage=usage)
        else:
            self._record(item, labels=labels, raw=raw, error=None, usage=usage)

    def _record(
        self,
        item: Item,
        *,
        labels: dict[str, Any] | None,
        raw: str | None,
        error: str | None,
        usage: tuple[int, int],
    ) -> None:
        self.cache.put(
            self.model, prompt.PROMPT_HASH, item.key, labels=labels, raw=raw, error=error, usage=usage
        )
        if labels:
            self.summary.answered += 1
            self.summary.labels[item.key] = labels
        else:
            self.summary.failed += 1
            log.debug("failed: %s: %s", item.paragraph_id or item.key[:12], error)
        assert self._bar is not None
        self._bar.update(1)
        self._bar.set_postfix(
            failed=self.summary.failed,
            tokens=self.summary.prompt_tokens + self.summary.completion_tokens,
            refresh=False,
        )


class Teacher(CachedTeacher):
    """Labels items through one endpoint, with the cache, retries, budget and progress bar."""

    def __init__(self, config: LlmConfig, cache: AnswerCache) -> None:
        super().__init__(config.model, cache, retry_failed=config.retry_failed)
        self.config = config
        self.structured = True
        self._rng = random.Random(0)

    def run(self, items: Sequence[Item], *, progress: bool = True) -> RunSummary:
        return asyncio.run(self.arun(items, progress=progress))

    async def arun(self, items: Sequence[Item], *, progress: bool = True) -> RunSummary:
        start = time.perf_counter()
        todo: asyncio.Queue[Item] = asyncio.Queue()
        for item in self.pending(items, progress=progress):
            todo.put_nowait(item)
        assert self._bar is not None
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        limits = httpx.Limits(max_connections=self.config.concurrency)
        async with httpx.AsyncClient(timeout=self.config.timeout, headers=headers, limits=limits) as client:
            workers = [
                asyncio.create_task(self._worker(client, todo)) for _ in range(self.config.concurrency)
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
                self._bar.close()
        self.summary.skipped = todo.qsize()
        self.summary.structured_output = self.structured
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    def _budget_spent(self) -> bool:
        s, c = self.summary, self.config
        spent = c.max_tokens is not None and s.prompt_tokens + s.completion_tokens >= c.max_tokens
        spent = spent or (c.max_cost is not None and s.cost >= c.max_cost)
        if spent:
            s.budget_exhausted = True
        return spent

    async def _worker(self, client: httpx.AsyncClient, todo: asyncio.Queue[Item]) -> None:
        while not todo.empty() and not self._budget_spent():
            item = todo.get_nowait()
            await self._label(client, item)

    async def _label(self, client: httpx.AsyncClient, item: Item) -> None:
        raw: str | None = None
        error = "no answer"
        usage = (0, 0)
        for _ in range(1 + self.config.malformed_retries):
            try:
                raw, used = await self._ask(client, item)
            except _Unavailable as exc:
                error = str(exc)
                break
            usage = (usage[0] + used[0], usage[1] + used[1])
            try:
                labels = parse_answer(raw)
            except MalformedAnswer as exc:
                error = f"malformed answer: {exc}"
                continue
            self._record(item, labels=labels, raw=raw, error=None, usage=usage)
            return
        self._record(item, labels=None, raw=raw, error=error, usage=usage)

    async def _ask(self, client: httpx.AsyncClient, item: Item) -> tuple[str | None, tuple[int, int]]:
        """One answer's content and token usage, retrying transient failures."""
        try:
            body = await self._post(client, self._payload(item))
        except _FormatRejected:
            log.warning("%s rejects response_format; asking without it (the parser copes)", self.config.url)
            self.structured = False
            body = await self._post(client, self._payload(item))
        usage = body.get("usage") or {}
        used = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        self.summary.prompt_tokens += used[0]
        self.summary.completion_tokens += used[1]
        self.summary.cost += (used[0] * self.config.price_in + used[1] * self.config.price_out) / 1e6
        try:
            return body["choices"][0]["message"]["content"], used
        except (KeyError, IndexError, TypeError):
            return None, used

    def _payload(self, item: Item) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.config.model,
            "messages": prompt.messages(item.text, item.section),
            "temperature": self.config.temperature,
            "max_tokens": self.config.answer_tokens,
        }
        if self.structured:
            payload["response_format"] = prompt.RESPONSE_FORMAT
        return payload

    async def _post(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
        last = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            wait = self._backoff(attempt)
            try:
                response = await client.post(self.config.url, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}"
            else:
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError:
                        last = "truncated or non-JSON response body"
                    else:
                        if isinstance(body, dict):
                            return body
                        last = "response body is not a JSON object"
                elif response.status_code in RETRY_STATUS:
                    last = f"HTTP {response.status_code}"
                    wait = parse_retry_after(response.headers.get("retry-after")) or wait
                elif (
                    response.status_code == 400
                    and "response_format" in payload
                    and _mentions_format(response)
                ):
                    raise _FormatRejected
                else:
                    raise LlmError(f"{self.config.url}: HTTP {response.status_code}: {response.text[:200]}")
            if attempt < self.config.max_retries:
                await asyncio.sleep(min(wait, self.config.max_wait))
        raise _Unavailable(f"gave up after {self.config.max_retries + 1} attempts: {last}")

    def _backoff(self, attempt: int) -> float:
        return self.config.backoff * (2**attempt) * (0.5 + self._rng.random())


def _mentions_format(response: httpx.Response) -> bool:
    text = response.text.lower()
    return "response_format" in text or "json_schema" in text


# ---------------------------------------------------------------- build-level entry point


def items_from_sample(sample: pl.DataFrame) -> list[Item]:
    return [
        Item(
            text=row["text"],
            section=row.get("section_title"),
            paragraph_id=row.get("paragraph_id"),
            article_id=row.get("article_id"),
        )
        for row in sample.iter_rows(named=True)
    ]


def run_llm_teacher(
    build: str | os.PathLike[str], config: LlmConfig, *, sample: pl.DataFrame, progress: bool = True
) -> RunSummary:
    """Label the sample through the endpoint; write every answered paragraph to ``teacher/llm.parquet``."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    return run_teacher(build, lambda cache: Teacher(config, cache), sample=sample, progress=progress)


def run_teacher(
    build: str | os.PathLike[str],
    make_teacher: Callable[[AnswerCache], CachedTeacher],
    *,
    sample: pl.DataFrame,
    progress: bool = True,
) -> RunSummary:
    """Label the sample with any backend over the build's answer cache; write ``teacher/llm.parquet``."""
    items = items_from_sample(sample)
    cache = AnswerCache(labels_file.teacher_dir(build) / CACHE_FILE)
    try:
        teacher = make_teacher(cache)
        summary = teacher.run(items, progress=progress)
    finally:
        cache.close()
    annotator = f"llm:{teacher.model}:{prompt.PROMPT_HASH}"
    rows = [
        labels_file.teacher_row(
            text=item.text,
            labels=summary.labels[item.key],
            annotator=annotator,
            paragraph_id=item.paragraph_id,
            article_id=item.article_id,
            model=teacher.model,
            prompt_hash=prompt.PROMPT_HASH,
        )
        for item in items
        if item.key in summary.labels
    ]
    if rows:
        labels_file.write_teacher_labels(build, "llm", rows)
    return summary
