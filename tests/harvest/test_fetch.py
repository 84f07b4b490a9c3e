"""The fetch engine against a local fault-injecting HTTP server: retries, limits, checksums, secrets."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from pathlib import Path

import pytest

from pmcurate.harvest.fetch import (
    FetchConfig,
    Fetcher,
    FetchError,
    HarvestInterrupted,
    RawStore,
    ServiceError,
    redact,
)
from pmcurate.http import parse_retry_after
from tests.harvest.netutil import dispatches_too_early, record_dispatches
from tests.servers.faulty import FaultyServer, Reply

BODY = b"<article>" + b"x" * 5000 + b"</article>"
FAST = FetchConfig(concurrency=4, rate=1000.0, retries=3, backoff=0.01, timeout=0.3)
ERROR_DOCUMENT = b"<eFetchResult><ERROR>Unable to obtain query #1</ERROR></eFetchResult>"


def app(path: str, query: dict[str, list[str]]) -> Reply:
    if path.startswith("/missing"):
        return Reply(404, b"no such object")
    if path.startswith("/s3/"):  # S3 sends the MD5 of a single-part object as its ETag
        return Reply(
            200, BODY, {"Content-Type": "application/xml", "ETag": f'"{hashlib.md5(BODY).hexdigest()}"'}
        )
    return Reply(200, BODY, {"Content-Type": "application/xml"})


@pytest.fixture
def server():
    with FaultyServer(app) as running:
        yield running


def fetch(url: str, config: FetchConfig = FAST, raw: RawStore | None = None, **kwargs) -> bytes:
    async def go() -> bytes:
        async with Fetcher(config, raw) as fetcher:
            return await fetcher.get(url, **kwargs)

    return asyncio.run(go())


@pytest.mark.parametrize("fault", ["500", "reset", "truncated_gzip", "slow"])
def test_transient_fault_is_retried_until_the_body_arrives_whole(server: FaultyServer, fault: str) -> None:
    server.script["/a"] = [fault]
    assert fetch(f"{server.url}/a") == BODY
    assert [s.fault for s in server.served("/a")] == [fault, None]


def test_retry_after_on_429_is_honoured(server: FaultyServer) -> None:
    server.script["/a"] = ["429"]
    started = time.monotonic()
    assert fetch(f"{server.url}/a") == BODY
    assert time.monotonic() - started >= 0.95  # Retry-After: 1, far above the 0.01 s backoff


def test_retry_after_on_503_pauses_the_whole_host(server: FaultyServer) -> None:
    server.script["/a"] = ["503"]

    async def go() -> list[float]:
        async with Fetcher(FAST) as fetcher:
            await fetcher.get(f"{server.url}/a")
            return [s.at for s in server.served()]

    asyncio.run(go())
    first, second = server.served("/a")
    assert second.at - first.at >= 0.95


def test_wrong_md5_is_retried_then_accepted_when_it_matches(server: FaultyServer) -> None:
    server.script["/a"] = ["corrupt"]
    assert fetch(f"{server.url}/a", md5=hashlib.md5(BODY).hexdigest()) == BODY
    assert [s.fault for s in server.served("/a")] == ["corrupt", None]


def test_a_server_failing_after_the_last_retry_stops_the_run_it_is_not_the_objects_fault(
    server: FaultyServer,
) -> None:
    server.script["/a"] = ["500"] * 10
    with pytest.raises(HarvestInterrupted, match=r"http_500 after 4 attempts.*run the same command again"):
        fetch(f"{server.url}/a")
    assert len(server.served("/a")) == FAST.retries + 1


def test_a_closed_port_stops_the_run(tmp_path: Path) -> None:
    with FaultyServer(app) as closed:
        url = f"{closed.url}/a"
    with pytest.raises(HarvestInterrupted, match="transport"):
        fetch(url)


def test_a_body_that_differs_from_its_etag_is_retried(server: FaultyServer) -> None:
    server.script["/s3/a"] = ["corrupt"]
    assert fetch(f"{server.url}/s3/a", etag_is_md5=True) == BODY
    assert [s.fault for s in server.served("/s3/a")] == ["corrupt", None]


def test_a_persistent_checksum_mismatch_is_a_content_failure(server: FaultyServer) -> None:
    with pytest.raises(FetchError) as caught:
        fetch(f"{server.url}/a", md5="0" * 32)
    assert caught.value.reason == "checksum_mismatch"


def test_a_listings_etag_only_says_whether_a_kept_copy_is_current(
    server: FaultyServer, tmp_path: Path
) -> None:
    raw = RawStore(tmp_path, "test")
    raw.write("k.json", b"as listed")
    listed = hashlib.md5(b"as listed").hexdigest()
    assert (
        fetch(f"{server.url}/s3/k", raw=raw, key="k.json", stored_md5=listed, etag_is_md5=True)
        == b"as listed"
    )
    stale = hashlib.md5(b"older").hexdigest()  # the object changed since: taken as it is now
    assert fetch(f"{server.url}/s3/k", raw=raw, key="k.json", stored_md5=stale, etag_is_md5=True) == BODY
    assert raw.read("k.json") == BODY


def _reject_error_documents(body: bytes) -> None:
    if b"<ERROR>" in body:
        raise ServiceError("error document")


def test_an_error_document_is_retried_and_never_stored(tmp_path: Path) -> None:
    answers = [ERROR_DOCUMENT]

    def erring(path: str, query: dict[str, list[str]]) -> Reply:
        return Reply(200, answers.pop() if answers else BODY)

    raw = RawStore(tmp_path, "test")
    with FaultyServer(erring) as server:
        assert fetch(f"{server.url}/a", raw=raw, key="a.xml", validate=_reject_error_documents) == BODY
        assert len(server.served("/a")) == 2
    assert raw.read("a.xml") == BODY


def test_a_kept_error_document_is_fetched_again(server: FaultyServer, tmp_path: Path) -> None:
    raw = RawStore(tmp_path, "test")
    raw.write("a.xml", ERROR_DOCUMENT)  # kept by an older version of the harvester
    assert fetch(f"{server.url}/a", raw=raw, key="a.xml", validate=_reject_error_documents) == BODY


def test_not_found_fails_at_once_without_retries(server: FaultyServer) -> None:
    with pytest.raises(FetchError) as caught:
        fetch(f"{server.url}/missing")
    assert caught.value.reason == "http_404"
    assert len(server.served("/missing")) == 1


def test_object_over_the_byte_cap_is_refused(server: FaultyServer) -> None:
    config = FetchConfig(rate=1000.0, retries=3, backoff=0.01, max_bytes=1000)
    with pytest.raises(FetchError) as caught:
        fetch(f"{server.url}/a", config)
    assert caught.value.reason == "too_large"


def test_rate_limit_spaces_requests_to_one_host(
    server: FaultyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = FetchConfig(concurrency=8, rate=20.0, retries=0)
    passes = record_dispatches(monkeypatch)

    async def go() -> None:
        async with Fetcher(config) as fetcher:
            await asyncio.gather(*(fetcher.get(f"{server.url}/a{i}") for i in range(10)))

    asyncio.run(go())
    assert len(passes) == 10 == len(server.served())
    assert dispatches_too_early(passes, rate=20.0) == []


def test_raw_store_serves_a_stored_object_without_a_request(server: FaultyServer, tmp_path: Path) -> None:
    raw = RawStore(tmp_path, "test")
    md5 = hashlib.md5(BODY).hexdigest()
    fetch(f"{server.url}/a", raw=raw, key="PMC1.1/PMC1.1.xml", md5=md5)
    assert fetch(f"{server.url}/a", raw=raw, key="PMC1.1/PMC1.1.xml", md5=md5) == BODY
    assert len(server.served("/a")) == 1
    assert (tmp_path / "raw/test/PMC1.1/PMC1.1.xml").read_bytes() == BODY


def test_raw_file_failing_its_md5_is_fetched_again(server: FaultyServer, tmp_path: Path) -> None:
    raw = RawStore(tmp_path, "test")
    raw.write("a.xml", b"damaged")
    assert fetch(f"{server.url}/a", raw=raw, key="a.xml", md5=hashlib.md5(BODY).hexdigest()) == BODY
    assert raw.read("a.xml") == BODY


def test_a_raw_copy_being_written_holds_up_no_other_request(server: FaultyServer, tmp_path: Path) -> None:
    """The raw store writes (and fsyncs) beside the event loop: while one object's copy is being
    written, the fetcher answers the others."""
    writing, release = threading.Event(), threading.Event()

    class SlowRaw(RawStore):
        def write(self, key: str, data: bytes) -> Path:
            if key == "slow.xml":
                writing.set()
                assert release.wait(30), "the other request was held up"
            return super().write(key, data)

    async def go() -> tuple[bytes, bytes]:
        async with Fetcher(FAST, SlowRaw(tmp_path, "test")) as fetcher:
            slow = asyncio.create_task(fetcher.get(f"{server.url}/a", key="slow.xml"))
            assert await asyncio.to_thread(writing.wait, 30)
            other = await fetcher.get(f"{server.url}/b", key="other.xml")
            release.set()
            return other, await slow

    assert asyncio.run(go()) == (BODY, BODY)
    assert (tmp_path / "raw/test/slow.xml").read_bytes() == BODY


def test_raw_keys_cannot_escape_the_raw_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        RawStore(tmp_path, "test").path("../outside.xml")


def test_api_key_is_redacted_in_errors_and_httpx_logs(
    server: FaultyServer, caplog: pytest.LogCaptureFixture
) -> None:
    # the CLI quiets the httpx logger process-wide (cli.py): ask for its INFO records explicitly
    with (
        caplog.at_level(logging.INFO),
        caplog.at_level(logging.INFO, logger="httpx"),
        pytest.raises(FetchError) as caught,
    ):
        fetch(f"{server.url}/missing", params={"db": "pmc", "api_key": "s3cr3t-key"})
    assert "s3cr3t-key" not in str(caught.value)
    assert "api_key=***" in str(caught.value)
    assert caplog.records and all("s3cr3t-key" not in r.getMessage() for r in caplog.records)


def test_redact_replaces_every_api_key_value() -> None:
    assert redact("a?api_key=abc&x=1 and API_KEY=def") == "a?api_key=***&x=1 and API_KEY=***"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
