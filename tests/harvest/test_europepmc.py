"""``harvest europepmc`` against a local server speaking Europe PMC REST, with injected faults."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

from pmcurate import cli
from pmcurate.harvest import europepmc
from pmcurate.harvest.fetch import HarvestInterrupted
from tests.harvest.netutil import FAST, rows
from tests.servers.corpus import (
    EuropePmcApp,
    RecordedEuropePmcApp,
    clone,
    corpus,
    fixture_articles,
    recorded,
    recorded_json,
    without_ids,
)
from tests.servers.faulty import FAULTS, FaultyServer
from tests.servers.s3 import free_port

CC_BY_XML = fixture_articles()["PMC5828200"]  # its XML says CC BY 3.0


def options(server: FaultyServer, out: Path, **kwargs) -> europepmc.EuropePmcOptions:
    base = f"{server.url}{EuropePmcApp.PREFIX}"
    return europepmc.EuropePmcOptions(out=out, query="OPEN_ACCESS:Y", base_url=base, fetch=FAST, **kwargs)


def test_search_follows_cursor_marks_until_they_repeat(tmp_path: Path) -> None:
    articles = corpus(7)
    with FaultyServer(EuropePmcApp(articles)) as server:
        summary = europepmc.harvest(options(server, tmp_path, page_size=3))
        pages = [s.query["cursorMark"][0] for s in server.served("/search")]
    assert summary.articles == 7
    assert pages[0] == "*" and len(pages) == 4  # 3 + 3 + 1, then an empty page whose cursor repeats
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(articles)


def test_search_license_overrides_the_xml_license(tmp_path: Path) -> None:
    articles = dict(list(fixture_articles().items())[:2])
    first, second = articles
    with FaultyServer(EuropePmcApp(articles, licenses={first: "cc by-nc"})) as server:
        europepmc.harvest(options(server, tmp_path))
    by_id = {r["article_id"]: r for r in rows(tmp_path, "articles")}
    assert (by_id[first]["license"], by_id[first]["commercial_use"]) == ("CC BY-NC", False)
    assert by_id[first]["license_source"] == "metadata"
    assert by_id[second]["source"] == "europepmc"


# --- what the real service answers (tests/data/recorded/europepmc) ---------------------------------


def recorded_articles(*pmcids: str) -> dict[str, bytes]:
    """Full texts for recorded hits: a real article (CC BY in its XML) under each hit's PMCID."""
    return {pmcid: clone(CC_BY_XML, int(pmcid[3:])) for pmcid in pmcids}


RECORDED_PAGE_1 = {
    "lite": [recorded_json("europepmc/search_lite_page1.json")],
    "core": [recorded_json("europepmc/search_core_page1.json")],
}
PAGE_1_HITS = ("PMC12124214", "PMC12120539", "PMC12174270")


def test_recorded_lite_results_carry_no_license_and_core_results_do() -> None:
    lite, core = (page[0]["resultList"]["result"] for page in RECORDED_PAGE_1.values())
    assert not any("license" in r for r in lite)
    assert {r["pmcid"]: r.get("license") for r in core if "pmcid" in r} == {
        "PMC12124214": None,
        "PMC12120539": "cc by-nc-nd",
        "PMC12174270": "cc by",
    }


def test_license_comes_from_the_search_result_as_the_real_service_gives_it(tmp_path: Path) -> None:
    app = RecordedEuropePmcApp(RECORDED_PAGE_1, recorded_articles(*PAGE_1_HITS))
    with FaultyServer(app) as server:
        europepmc.harvest(options(server, tmp_path, limit=3))
    got = {
        r["article_id"]: (r["license"], r["commercial_use"], r["license_source"])
        for r in rows(tmp_path, "articles")
    }
    assert got == {
        "PMC12120539": ("CC BY-NC-ND", False, "metadata"),
        "PMC12174270": ("CC BY", True, "metadata"),
        "PMC12124214": ("CC BY", True, "xml"),  # no license in its result: the XML's stands
    }


def test_pmid_and_doi_come_from_the_search_result_when_the_xml_lacks_them(tmp_path: Path) -> None:
    articles = {k: without_ids(v, "pmid", "doi") for k, v in recorded_articles(*PAGE_1_HITS).items()}
    with FaultyServer(RecordedEuropePmcApp(RECORDED_PAGE_1, articles)) as server:
        europepmc.harvest(options(server, tmp_path, limit=3))
    got = {r["article_id"]: (r["pmid"], r["doi"]) for r in rows(tmp_path, "articles")}
    assert got["PMC12120539"] == ("40437959", "10.1002/hpja.70059")


def test_an_answer_without_result_list_stops_the_run_and_keeps_the_pages_listed(tmp_path: Path) -> None:
    assert recorded("europepmc/unknown_cursor.json") == b'{"version": "6.9"}'
    app = RecordedEuropePmcApp(RECORDED_PAGE_1, recorded_articles(*PAGE_1_HITS))
    with (
        FaultyServer(app) as server,
        pytest.raises(HarvestInterrupted, match="cursorMark AoIIP4ZawSg1MzEyODI1MA=="),
    ):
        europepmc.harvest(options(server, tmp_path))  # page 2's cursor was never recorded
    [state] = (tmp_path / "state").iterdir()
    assert sorted(p.name for p in state.iterdir()) == ["search-0.json"]
    assert rows(tmp_path, "articles") == []


def test_the_recorded_cursor_chain_is_followed_page_by_page(tmp_path: Path) -> None:
    chain = recorded_json("europepmc/cursor_chain_10_pages.json")
    hits = [r["pmcid"] for page in chain for r in page["resultList"]["result"] if "pmcid" in r]
    with FaultyServer(RecordedEuropePmcApp({"*": chain}, recorded_articles(*hits))) as server:
        summary = europepmc.harvest(options(server, tmp_path, limit=len(hits)))
        sent = [s.query["cursorMark"][0] for s in server.served("/search")]
    assert sent == [unquote(page["request"]["cursorMark"]) for page in chain]
    assert sorted(r["article_id"] for r in rows(tmp_path, "articles")) == sorted(hits)
    assert summary.skipped["no_pmcid"] == sum(len(p["resultList"]["result"]) for p in chain) - len(hits)


def test_a_zero_hit_search_ends_with_nothing_harvested(tmp_path: Path) -> None:
    pages = {"*": [recorded_json("europepmc/search_zero_hits.json")]}
    with FaultyServer(RecordedEuropePmcApp(pages, {})) as server:
        summary = europepmc.harvest(options(server, tmp_path))
        searches = server.served("/search")
    assert (summary.articles, len(searches)) == (0, 1)


def test_missing_full_text_goes_to_quarantine_and_the_run_continues(tmp_path: Path) -> None:
    articles = corpus(3)
    gone = next(iter(articles))
    app = EuropePmcApp({k: v for k, v in articles.items() if k != gone}, listed=list(articles))
    with FaultyServer(app) as server:
        summary = europepmc.harvest(options(server, tmp_path))
    quarantine = rows(tmp_path, "quarantine")
    assert [(q["article_id"], q["reason"]) for q in quarantine] == [(gone, "http_404")]
    assert summary.articles == 2


def test_with_20_percent_of_requests_failing_every_article_is_present_exactly_once(tmp_path: Path) -> None:
    articles = corpus(40)
    with FaultyServer(EuropePmcApp(articles), fault_rate=0.2, faults=FAULTS, seed=7) as server:
        summary = europepmc.harvest(options(server, tmp_path, page_size=10, batch_size=15))
        faults = Counter(s.fault for s in server.served() if s.fault)
    ids = [r["article_id"] for r in rows(tmp_path, "articles")]
    assert sorted(ids) == sorted(articles)
    assert sum(faults.values()) >= 8 and len(faults) >= 4
    assert summary.retries >= sum(faults.values())  # every fault cost a retry (a slow machine may add more)
    [counts] = rows(tmp_path, "paragraphs", "count(*) AS n, count(DISTINCT paragraph_id) AS distinct_ids")
    assert counts["n"] == counts["distinct_ids"] > 0


def test_a_closed_port_fails_with_one_line_and_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}{EuropePmcApp.PREFIX}"
    argv = ["harvest", "europepmc", "--query", "OPEN_ACCESS:Y", "--out", str(tmp_path), "--base-url", closed]
    assert cli.main([*argv, "--retries", "1", "--timeout", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pmcurate: error: ") and "transport" in err[0]
