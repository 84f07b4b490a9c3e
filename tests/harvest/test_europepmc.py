"""``harvest europepmc`` against a local server speaking Europe PMC REST, with injected faults."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pmcurate.harvest import europepmc
from tests.harvest.netutil import FAST, rows
from tests.servers.corpus import EuropePmcApp, corpus, fixture_articles
from tests.servers.faulty import FAULTS, FaultyServer


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
    assert by_id[second]["source"] == "europepmc"


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
