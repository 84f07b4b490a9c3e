"""``harvest pmc`` against moto's S3 server holding a bucket laid out like ``pmc-oa-opendata``."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from pathlib import Path

import pytest

from pmcurate import cli
from pmcurate.harvest import pmc
from pmcurate.harvest.archive import image_key
from tests.harvest.netutil import FAST, rows
from tests.servers.corpus import ProxyApp, fixture_articles
from tests.servers.faulty import FaultyServer
from tests.servers.s3 import ArticleVersion, PmcBucketLoader, png, start_moto

LICENSES = {"PMC3574550": "CC BY-NC", "PMC2994229": "CC BY-NC-ND", "PMC2599765": "CC0", "PMC1790863": "TDM"}
RETRACTED = "PMC2329613"
UPDATED = "PMC3166277"  # versions 1 and 2
CHANGED = "PMC5828200"  # changed recently, in version 1
FIGURES = "PMC6398430"
_GRAPHIC = re.compile(rb'<graphic[^>]*xlink:href="([^"]+)"')


def versions() -> list[ArticleVersion]:
    found = []
    for pmcid, xml in fixture_articles().items():
        media = {
            f"{image_key(h.decode())}.png": png(4, 3, (i * 40) % 256)
            for i, h in enumerate(_GRAPHIC.findall(xml))
        }
        modified = "2026-11-22T10:00:00.000Z" if pmcid == CHANGED else "2026-11-01T09:00:00.000Z"
        found.append(
            ArticleVersion(pmcid, 1, xml, LICENSES.get(pmcid, "CC BY"), pmcid == RETRACTED, media, modified)
        )
        if pmcid == UPDATED:
            v2 = xml.replace(b"<article-title>", b"<article-title>Corrected: ", 1)
            found.append(ArticleVersion(pmcid, 2, v2, "CC BY", False, media, "2026-11-20T09:00:00.000Z"))
    return found


@pytest.fixture(scope="module")
def bucket():
    server, endpoint = start_moto()
    loader = PmcBucketLoader(endpoint)
    articles = versions()
    for article in articles:
        loader.add(article)
    loader.add_inventory("2026-11-23T01-00Z", [a for a in articles if a.version == 1])
    loader.add_inventory("2026-11-24T01-00Z", articles)
    yield f"{endpoint}/pmc-oa-opendata", {(a.pmcid, a.version): a for a in articles}
    server.stop()


def harvest(base_url: str, out: Path, **kwargs) -> pmc.HarvestSummary:
    return pmc.harvest(pmc.PmcOptions(out=out, base_url=base_url, fetch=FAST, **kwargs))


def test_cli_selects_by_ids_with_and_without_version(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{UPDATED}.1\n{CHANGED}\n# a comment\nPMC999\n")
    status = cli.main(
        ["harvest", "pmc", "--ids", str(ids), "--out", str(tmp_path / "b"), "--base-url", base_url]
    )
    assert status == 0
    got = [(r["article_id"], r["version"]) for r in rows(tmp_path / "b", "articles")]
    assert got == [(UPDATED, 1), (CHANGED, 1)]
    assert [(q["article_id"], q["reason"]) for q in rows(tmp_path / "b", "quarantine")] == [
        ("PMC999", "not_found")
    ]


def test_cli_runs_its_step_through_the_runner_and_records_it(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{CHANGED}\nPMC999\n")
    cli.main(["harvest", "pmc", "--ids", str(ids), "--out", str(tmp_path / "b"), "--base-url", base_url])
    recorded = json.loads((tmp_path / "b" / ".pmcurate" / "state.json").read_text())["steps"]["harvest:pmc"]
    assert (recorded["counts"]["articles"], recorded["drops"]["quarantined"]) == (1, 1)


def test_since_takes_the_latest_inventory_and_latest_versions(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    harvest(base_url, tmp_path, since=date(2026, 11, 15))
    assert [(r["article_id"], r["version"]) for r in rows(tmp_path, "articles")] == [
        (UPDATED, 2),
        (CHANGED, 1),
    ]


def test_all_with_commercial_license_keeps_only_commercial_articles(bucket, tmp_path: Path) -> None:
    base_url, everything = bucket
    summary = harvest(base_url, tmp_path, all=True, license="commercial")
    got = {r["article_id"]: r for r in rows(tmp_path, "articles")}
    expected = {pmcid for pmcid, _ in everything} - {"PMC3574550", "PMC2994229", "PMC1790863"}
    assert set(got) == expected
    assert all(r["commercial_use"] for r in got.values())
    assert (summary.skipped["license"], summary.skipped["not_open_access"]) == (2, 1)  # PMC1790863: TDM


def test_metadata_license_overrides_the_xml(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    harvest(base_url, tmp_path, ids=("PMC2994229", "PMC1790863"), include_manuscripts=True)
    got = {r["article_id"]: (r["license"], r["commercial_use"]) for r in rows(tmp_path, "articles")}
    assert got == {"PMC2994229": ("CC BY-NC-ND", False), "PMC1790863": ("TDM", None)}


def test_limit_caps_the_number_of_articles(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    assert harvest(base_url, tmp_path, all=True, limit=3, batch_size=2).articles == 3
    assert len(rows(tmp_path, "articles")) == 3


def test_media_are_downloaded_md5_verified_and_attached_to_figures(bucket, tmp_path: Path) -> None:
    base_url, everything = bucket
    upstream = base_url.rsplit("/", 1)[0]
    with FaultyServer(ProxyApp(upstream)) as proxy:
        proxy.script[f"{FIGURES}.1/"] = ["corrupt"]  # the XML or first media file arrives damaged once
        harvest(f"{proxy.url}/pmc-oa-opendata", tmp_path, ids=(FIGURES,), media=True)
        damaged = [s for s in proxy.served(f"{FIGURES}.1/") if s.fault == "corrupt"]
    media = everything[(FIGURES, 1)].media
    figures = rows(tmp_path, "figures", "graphics, image, image_sha256", "graphics")
    assert len(damaged) == 1
    assert figures and all(f["image"] is not None for f in figures)
    for figure in figures:
        name = figure["image"]["path"]
        assert figure["image"]["bytes"] == media[name]
        assert figure["image_sha256"] == hashlib.sha256(media[name]).hexdigest()
    assert sorted(p.name for p in (tmp_path / "raw/pmc" / f"{FIGURES}.1").iterdir()) == sorted(
        [f"{FIGURES}.1.xml", *media]
    )


def test_newer_version_replaces_the_older_versions_rows(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    harvest(base_url, tmp_path, ids=(f"{UPDATED}.1",))
    summary = harvest(base_url, tmp_path, ids=(UPDATED,))
    articles = rows(tmp_path, "articles")
    assert [(a["version"], a["title"].startswith("Corrected")) for a in articles] == [(2, True)]
    [counts] = rows(tmp_path, "paragraphs", "count(*) AS n, count(DISTINCT paragraph_id) AS distinct_ids")
    assert counts["n"] == counts["distinct_ids"] == articles[0]["n_paragraphs"]
    assert summary.superseded == 1


def test_retracted_article_is_flagged(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    harvest(base_url, tmp_path, ids=(RETRACTED,))
    assert [r["retracted"] for r in rows(tmp_path, "articles")] == [True]


def test_skip_retracted_leaves_retracted_articles_out(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    summary = harvest(base_url, tmp_path, ids=(RETRACTED, CHANGED), skip_retracted=True)
    assert [r["article_id"] for r in rows(tmp_path, "articles")] == [CHANGED]
    assert summary.skipped["retracted"] == 1


def test_rerun_fetches_nothing_again(bucket, tmp_path: Path) -> None:
    base_url, _ = bucket
    harvest(base_url, tmp_path, ids=(CHANGED, RETRACTED))
    summary = harvest(base_url, tmp_path, ids=(CHANGED, RETRACTED))
    assert summary.shards_skipped == 1 and summary.shards_written == 0
    assert summary.requests == 2  # the two version listings; metadata comes from raw/


def test_s3_urls_become_bucket_keys_with_their_md5() -> None:
    key, md5 = pmc.PmcBucket.parse_s3_url("s3://pmc-oa-opendata/PMC1.1/PMC1.1.xml?md5=abc")
    assert (key, md5) == ("PMC1.1/PMC1.1.xml", "abc")
    assert (
        pmc.PmcBucket("http://h:1/pmc-oa-opendata/").object_url(key)
        == "http://h:1/pmc-oa-opendata/PMC1.1/PMC1.1.xml"
    )
    with pytest.raises(ValueError):
        pmc.PmcBucket.parse_s3_url("https://example.org/PMC1.1.xml")


def test_selection_modes_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(pmc.HarvestInputError, match="exactly one"):
        pmc.harvest(pmc.PmcOptions(out=tmp_path, all=True, ids=("PMC1",)))


def test_with_20_percent_of_requests_failing_every_article_is_present_exactly_once(
    bucket, tmp_path: Path
) -> None:
    base_url, everything = bucket
    upstream = base_url.rsplit("/", 1)[0]
    faults = ("500", "reset", "truncated_gzip", "slow", "corrupt")  # Retry-After: see test_europepmc
    with FaultyServer(ProxyApp(upstream), fault_rate=0.2, faults=faults, seed=11) as proxy:
        harvest(f"{proxy.url}/pmc-oa-opendata", tmp_path, all=True, media=True)
        injected = [s.fault for s in proxy.served() if s.fault]
    ids = [r["article_id"] for r in rows(tmp_path, "articles")]
    assert sorted(ids) == sorted({pmcid for pmcid, _ in everything} - {"PMC1790863"})  # a manuscript
    assert len(injected) >= 10 and "corrupt" in injected
    assert rows(tmp_path, "quarantine") == []
    [counts] = rows(tmp_path, "paragraphs", "count(*) AS n, count(DISTINCT paragraph_id) AS distinct_ids")
    assert counts["n"] == counts["distinct_ids"] > 0
