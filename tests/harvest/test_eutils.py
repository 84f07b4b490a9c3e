"""``harvest eutils`` against a local server speaking E-utilities (esearch history, efetch, 429s)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pmcurate import cli
from pmcurate.harvest import eutils
from pmcurate.harvest.fetch import FetchConfig, HarvestInputError, HarvestInterrupted
from tests.harvest.netutil import dispatches_too_early, record_dispatches, rows
from tests.servers.corpus import EutilsApp, corpus, recorded
from tests.servers.faulty import FAULTS, FaultyServer
from tests.servers.s3 import free_port

KEYED = FetchConfig(rate=10.0, retries=8, backoff=0.01, max_backoff=0.05, timeout=0.3)


def options(server: FaultyServer, out: Path, **kwargs) -> eutils.EutilsOptions:
    kwargs.setdefault("fetch", FetchConfig(rate=3.0, retries=8, backoff=0.01, timeout=0.3))
    return eutils.EutilsOptions(
        out=out, base_url=f"{server.url}{EutilsApp.PREFIX}", email="a@b.org", **kwargs
    )


def test_ids_are_fetched_in_batches_with_tool_and_email(tmp_path: Path) -> None:
    articles = corpus(5)
    with FaultyServer(EutilsApp(articles)) as server:
        summary = eutils.harvest(options(server, tmp_path, ids=tuple(articles), batch_size=2))
        fetches = server.served("/efetch.fcgi")
    assert summary.articles == 5 and len(fetches) == 3
    assert all(f.query["tool"] == ["pmcurate"] and f.query["email"] == ["a@b.org"] for f in fetches)
    assert fetches[0].query["id"] == [",".join(i.removeprefix("PMC") for i in list(articles)[:2])]
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(articles)


def test_query_pages_through_the_history_server(tmp_path: Path) -> None:
    articles = corpus(5)
    with FaultyServer(EutilsApp(articles)) as server:
        eutils.harvest(options(server, tmp_path, query="malaria", batch_size=2))
        fetches = server.served("/efetch.fcgi")
        search = server.served("/esearch.fcgi")
    assert search[0].query["usehistory"] == ["y"]
    assert [f.query["retstart"][0] for f in fetches] == ["0", "2", "4"]
    assert {f.query["WebEnv"][0] for f in fetches} == {"MCID_" + "1".rjust(24, "0")}
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(articles)


def test_front_only_articles_are_recorded_not_written_as_empty_articles(tmp_path: Path) -> None:
    articles = corpus(3)
    forbidden = list(articles)[1]
    with FaultyServer(EutilsApp(articles, front_only_ids=frozenset({forbidden}))) as server:
        summary = eutils.harvest(options(server, tmp_path, ids=tuple(articles)))
    assert forbidden not in {r["article_id"] for r in rows(tmp_path, "articles")}
    assert [(q["article_id"], q["reason"]) for q in rows(tmp_path, "quarantine")] == [
        (forbidden, "no_full_text")
    ]
    assert summary.articles == 2


def test_ids_missing_from_the_answer_are_recorded(tmp_path: Path) -> None:
    articles = corpus(2)
    with FaultyServer(EutilsApp(articles)) as server:
        eutils.harvest(options(server, tmp_path, ids=(*articles, "PMC1")))
    assert [(q["article_id"], q["reason"]) for q in rows(tmp_path, "quarantine")] == [
        ("PMC1", "not_returned")
    ]


def test_rate_limit_keeps_below_ncbis_three_requests_per_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = EutilsApp(corpus(8))
    passes = record_dispatches(monkeypatch)
    with FaultyServer(app) as server:
        eutils.harvest(options(server, tmp_path, ids=tuple(app.articles), batch_size=1))
        served = server.served()
    assert len(passes) == len(served) == 8
    assert dispatches_too_early(passes, rate=3.0) == []


def test_a_rate_above_the_ncbi_ceiling_is_refused() -> None:
    with pytest.raises(HarvestInputError, match="at most 3 requests/s without an API key"):
        eutils.EutilsOptions(out=Path("x"), ids=("1",), fetch=FetchConfig(rate=5.0)).fetch_config()
    assert (
        eutils.EutilsOptions(out=Path("x"), api_key="k", fetch=FetchConfig(rate=10.0)).fetch_config().rate
        == 10.0
    )


def test_api_key_is_sent_but_never_logged_or_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    articles = corpus(2)
    app = EutilsApp(articles)
    app.answers = [recorded("eutils/efetch_error.xml")] * 20  # a content failure: quarantined
    with FaultyServer(app) as server, caplog.at_level(logging.DEBUG):
        eutils.harvest(options(server, tmp_path, ids=tuple(articles), api_key="SECRET123", fetch=KEYED))
        sent = server.served("/efetch.fcgi")[0].query["api_key"]
    assert sent == ["SECRET123"]
    quarantine = rows(tmp_path, "quarantine")
    assert quarantine and all("SECRET123" not in f"{q['member']} {q['error']}" for q in quarantine)
    assert caplog.records and all("SECRET123" not in r.getMessage() for r in caplog.records)


def test_api_key_is_not_in_the_message_of_a_run_stopped_by_server_errors(tmp_path: Path) -> None:
    articles = corpus(2)
    with FaultyServer(EutilsApp(articles)) as server:
        server.script["/efetch.fcgi"] = ["500"] * 20
        with pytest.raises(HarvestInterrupted) as stopped:
            eutils.harvest(options(server, tmp_path, ids=tuple(articles), api_key="SECRET123", fetch=KEYED))
    assert "http_500" in str(stopped.value) and "api_key=***" in str(stopped.value)
    assert "SECRET123" not in str(stopped.value)


# --- what the real service answers (tests/data/recorded/eutils) ------------------------------------


def test_an_error_document_sent_with_http_200_is_retried_and_never_stored_as_an_answer(
    tmp_path: Path,
) -> None:
    articles = corpus(3)
    app = EutilsApp(articles)
    app.answers = [recorded("eutils/efetch_error.xml")]
    with FaultyServer(app) as server:
        summary = eutils.harvest(options(server, tmp_path, ids=tuple(articles)))
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(articles)
    assert rows(tmp_path, "quarantine") == [] and summary.retries >= 1
    assert all(b"<ERROR>" not in p.read_bytes() for p in (tmp_path / "raw/eutils").rglob("*.xml"))


def test_ncbis_rate_limit_body_sent_with_http_200_is_retried(tmp_path: Path) -> None:
    articles = corpus(2)
    app = EutilsApp(articles)
    app.answers = [recorded("eutils/rate_limited_429.json")]
    with FaultyServer(app) as server:
        eutils.harvest(options(server, tmp_path, ids=tuple(articles)))
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(articles)
    assert rows(tmp_path, "quarantine") == []


def test_ncbis_rate_limit_answer_with_http_429_is_retried(tmp_path: Path) -> None:
    articles = corpus(2)
    app = EutilsApp(articles)
    app.refuse_next = 2
    with FaultyServer(app) as server:
        summary = eutils.harvest(options(server, tmp_path, ids=tuple(articles)))
        statuses = [s.status for s in server.served("/efetch.fcgi")]
    assert statuses == [429, 429, 200] and summary.retries == 2
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(articles)


def test_an_expired_history_is_searched_again_and_every_article_arrives(tmp_path: Path) -> None:
    articles = corpus(4)
    app = EutilsApp(articles)
    with FaultyServer(app) as server:
        original = app.efetch

        def expire_after_first(query: dict[str, list[str]]):  # NCBI forgets the WebEnv mid-run
            reply = original(query)
            app.expire_histories()
            return reply

        app.efetch = expire_after_first  # type: ignore[method-assign]
        summary = eutils.harvest(options(server, tmp_path, query="malaria", batch_size=2))
        searches = server.served("/esearch.fcgi")
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(articles)
    assert len(searches) >= 2 and rows(tmp_path, "quarantine") == []
    assert summary.articles == 4


def test_a_batch_that_keeps_answering_errors_is_quarantined_with_its_ids_and_the_error(
    tmp_path: Path,
) -> None:
    articles = corpus(3)
    app = EutilsApp(articles)
    app.answers = [recorded("eutils/efetch_error.xml")] * 50
    with FaultyServer(app) as server:
        summary = eutils.harvest(options(server, tmp_path, query="malaria", batch_size=3))
    quarantine = rows(tmp_path, "quarantine")
    assert sorted(q["article_id"] for q in quarantine) == sorted(articles)
    assert all("Unable to obtain query #1" in q["error"] for q in quarantine)
    assert summary.articles == 0 and summary.quarantined == 3


def test_a_zero_hit_search_without_webenv_harvests_nothing(tmp_path: Path) -> None:
    assert b"<WebEnv>" not in recorded("eutils/esearch_zero_hits.xml")
    with FaultyServer(EutilsApp(corpus(2), no_hits=True)) as server:
        summary = eutils.harvest(options(server, tmp_path, query="abcXYZ"))
        fetches = server.served("/efetch.fcgi")
    assert (summary.articles, fetches, rows(tmp_path, "articles")) == (0, [], [])


def test_the_recorded_efetch_answer_is_harvested_as_served(tmp_path: Path) -> None:
    app = EutilsApp({})
    app.answers = [recorded("eutils/efetch_pmc.xml")]
    with FaultyServer(app) as server:
        eutils.harvest(options(server, tmp_path, ids=("PMC8435807",)))
    [article] = rows(tmp_path, "articles")
    assert (article["article_id"], article["pmid"], article["license"]) == (
        "PMC8435807",
        "34527728",
        "CC BY-NC",
    )
    assert article["article_type"] == "correction" and article["n_paragraphs"] >= 1


def test_faults_on_efetch_are_retried_and_every_article_arrives_once(tmp_path: Path) -> None:
    articles = corpus(6)
    with FaultyServer(EutilsApp(articles), fault_rate=0.3, faults=FAULTS, seed=3) as server:
        eutils.harvest(options(server, tmp_path, ids=tuple(articles), batch_size=2, api_key="k", fetch=KEYED))
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(articles)


def test_cli_reads_the_api_key_from_the_environment_and_never_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    articles = corpus(2)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(articles))
    monkeypatch.setenv("NCBI_API_KEY", "ENVKEY42")
    app = EutilsApp(articles)
    with FaultyServer(app) as server:
        argv = ["harvest", "eutils", "--ids", str(ids), "--out", str(tmp_path / "b")]
        status = cli.main([*argv, "--base-url", f"{server.url}{EutilsApp.PREFIX}", "--email", "a@b.org"])
        sent = server.served("/efetch.fcgi")[0].query["api_key"]
    assert status == 0 and sent == ["ENVKEY42"]
    printed = capsys.readouterr()
    assert "ENVKEY42" not in printed.out + printed.err
    assert "eutils: 2 articles" in printed.out


def test_cli_refuses_a_rate_above_the_ceiling_as_a_user_error(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("PMC1\n")
    argv = ["harvest", "eutils", "--ids", str(ids), "--out", str(tmp_path / "b"), "--rate", "5"]
    assert cli.main(argv) == 2


def test_a_closed_port_fails_with_one_line_and_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}{EutilsApp.PREFIX}"
    argv = ["harvest", "eutils", "--query", "malaria", "--out", str(tmp_path), "--base-url", closed]
    assert cli.main([*argv, "--retries", "1", "--timeout", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pmcurate: error: ") and "transport" in err[0]
