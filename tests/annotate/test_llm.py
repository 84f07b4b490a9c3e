from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from pmcurate.annotate import llm
from pmcurate.http import parse_retry_after
from tests.servers.openai_server import ServerState, keyword_labels, openai_server

TEXTS = [
    "A 54-year-old woman presented with fever and a rash of three weeks.",
    "We measured the expression of twelve genes in cultured cells.",
    "Influenza viruses circulate in birds and mammals worldwide.",
    "Funding was provided by the national research council.",
]
ITEMS = [llm.Item(text=t, section="Section", paragraph_id=f"P/{i}") for i, t in enumerate(TEXTS)]


def run(url: str, cache_path: Path, items: list[llm.Item] = ITEMS, **config: object) -> llm.RunSummary:
    settings = {"timeout": 1.0, "backoff": 0.01, "concurrency": 2} | config
    cache = llm.AnswerCache(cache_path)
    try:
        return llm.Teacher(llm.LlmConfig(endpoint=url, model="test-model", **settings), cache).run(
            items, progress=False
        )
    finally:
        cache.close()


def expected(item: llm.Item) -> dict[str, object]:
    return keyword_labels(item.text)


def test_request_asks_for_json_schema_structured_output(tmp_path: Path) -> None:
    with openai_server() as (url, state):
        run(url, tmp_path / "c.sqlite", ITEMS[:1])
    body = state.requests[0]
    assert body["model"] == "test-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert ITEMS[0].text in body["messages"][1]["content"]
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["document_type"]["enum"] == ["clinical_case", "study", "review", "other"]


def test_answers_match_the_server_labels(tmp_path: Path) -> None:
    with openai_server() as (url, _):
        summary = run(url, tmp_path / "c.sqlite")
    assert summary.answered == len(ITEMS)
    assert [summary.labels[i.key] for i in ITEMS] == [expected(i) for i in ITEMS]


def test_rerun_is_served_from_cache_without_requests(tmp_path: Path) -> None:
    with openai_server() as (url, state):
        run(url, tmp_path / "c.sqlite")
        before = len(state.requests)
        again = run(url, tmp_path / "c.sqlite")
    assert len(state.requests) == before
    assert again.cached == len(ITEMS) and again.answered == 0
    assert len(again.labels) == len(ITEMS)


def test_cache_key_includes_the_model(tmp_path: Path) -> None:
    with openai_server() as (url, state):
        run(url, tmp_path / "c.sqlite", ITEMS[:1])
        cache = llm.AnswerCache(tmp_path / "c.sqlite")
        llm.Teacher(llm.LlmConfig(endpoint=url, model="other-model"), cache).run(ITEMS[:1], progress=False)
        cache.close()
    assert len(state.requests) == 2


def test_429_waits_for_retry_after_then_succeeds(tmp_path: Path) -> None:
    state = ServerState(failures=["429"], retry_after="0.4")
    with openai_server(state) as (url, _):
        start = time.perf_counter()
        summary = run(url, tmp_path / "c.sqlite", ITEMS[:1])
        elapsed = time.perf_counter() - start
    assert summary.answered == 1
    assert elapsed >= 0.4
    assert len(state.requests) == 2


@pytest.mark.parametrize("failure", ["500", "timeout", "reset", "truncated"])
def test_transient_failure_is_retried(tmp_path: Path, failure: str) -> None:
    state = ServerState(failures=[failure])
    with openai_server(state) as (url, _):
        summary = run(url, tmp_path / "c.sqlite", ITEMS[:1])
    assert summary.answered == 1 and summary.failed == 0 and len(state.requests) == 2
    assert summary.labels[ITEMS[0].key] == expected(ITEMS[0])


def test_exhausted_retries_record_a_failure_and_the_run_goes_on(tmp_path: Path) -> None:
    state = ServerState(failures=["500"] * 3)
    with openai_server(state) as (url, _):
        summary = run(url, tmp_path / "c.sqlite", ITEMS[:2], max_retries=2, concurrency=1)
    assert summary.failed == 1 and summary.answered == 1


def test_malformed_answer_is_asked_again(tmp_path: Path) -> None:
    state = ServerState(failures=["malformed"])
    with openai_server(state) as (url, _):
        summary = run(url, tmp_path / "c.sqlite", ITEMS[:1])
    assert summary.answered == 1
    assert len(state.requests) == 2


def test_persistently_malformed_answer_is_cached_as_failure(tmp_path: Path) -> None:
    state = ServerState(failures=["malformed"] * 3)
    with openai_server(state) as (url, _):
        summary = run(url, tmp_path / "c.sqlite", ITEMS[:1], malformed_retries=2)
        again = run(url, tmp_path / "c.sqlite", ITEMS[:1])
    assert summary.failed == 1 and not summary.labels
    assert again.cached == 1 and len(state.requests) == 3
    status, error = (
        sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT status, error FROM answers").fetchone()
    )
    assert status == "failed" and "malformed" in error


def test_retry_failed_asks_again_for_cached_failures(tmp_path: Path) -> None:
    state = ServerState(failures=["malformed"] * 3)
    with openai_server(state) as (url, _):
        run(url, tmp_path / "c.sqlite", ITEMS[:1], malformed_retries=2)
        again = run(url, tmp_path / "c.sqlite", ITEMS[:1], retry_failed=True)
    assert again.answered == 1


def test_token_budget_stops_before_the_end(tmp_path: Path) -> None:
    items = [llm.Item(text=f"We counted {i} colonies on plate {i}.") for i in range(30)]
    with openai_server() as (url, state):
        summary = run(url, tmp_path / "c.sqlite", items, concurrency=1, max_tokens=2000)
    assert summary.budget_exhausted
    assert 0 < summary.answered < len(items)
    assert summary.skipped == len(items) - summary.answered
    assert len(state.requests) == summary.answered


def test_cost_budget_stops_before_the_end(tmp_path: Path) -> None:
    items = [llm.Item(text=f"We counted {i} colonies.") for i in range(30)]
    with openai_server() as (url, _):
        summary = run(url, tmp_path / "c.sqlite", items, concurrency=1, max_cost=0.001, price_in=1.0)
    assert summary.budget_exhausted and summary.cost >= 0.001 and summary.skipped > 0


def test_server_without_structured_output_gets_plain_requests(tmp_path: Path) -> None:
    state = ServerState(reject_response_format=True, fence_answers=True)
    with openai_server(state) as (url, _):
        summary = run(url, tmp_path / "c.sqlite", ITEMS[:2], concurrency=1)
    assert summary.answered == 2 and not summary.structured_output
    assert "response_format" not in state.requests[-1]


def test_api_key_is_sent_as_bearer_and_never_stored(tmp_path: Path) -> None:
    with openai_server() as (url, state):
        run(url, tmp_path / "c.sqlite", ITEMS[:1], api_key="sk-secret-123")
    assert state.authorization == ["Bearer sk-secret-123"]
    assert b"sk-secret-123" not in (tmp_path / "c.sqlite").read_bytes()


def test_wrong_endpoint_stops_the_run_with_an_error(tmp_path: Path) -> None:
    with openai_server() as (url, _), pytest.raises(llm.LlmError, match="HTTP 404"):
        run(url.replace("/v1", "/nope"), tmp_path / "c.sqlite", ITEMS[:1])


def test_api_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "abc")
    assert llm.api_key_from_env("MY_KEY") == "abc"


@pytest.mark.parametrize(
    "content",
    [
        '{"document_type": "study", "domain": "biomedical", "educational_score": 3}',
        'Labels:\n```json\n{"document_type": "study", "domain": "biomedical", "educational_score": 3}\n```',
        'Sure. {"Document_Type": "Study", "domain": "Biomedical", "educational_score": "3"} Done.',
    ],
)
def test_parse_answer_accepts_common_shapes(content: str) -> None:
    assert llm.parse_answer(content) == {
        "document_type": "study",
        "domain": "biomedical",
        "educational_score": 3,
    }


@pytest.mark.parametrize(
    "content",
    [
        "",
        "study",
        '{"document_type": "essay", "domain": "clinical", "educational_score": 3}',
        '{"document_type": "study", "domain": "clinical", "educational_score": 7}',
    ],
)
def test_parse_answer_rejects_answers_outside_the_rubric(content: str) -> None:
    with pytest.raises(llm.MalformedAnswer):
        llm.parse_answer(content)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (parse_retry_after(later) or 0) <= 30
    assert parse_retry_after("soon") is None
