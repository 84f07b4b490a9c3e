"""``harvest pmc`` against a bucket behaving as its README and recorded objects say the real one does.

Each test loads its own small bucket (moto's state is process-wide, so these tests live apart from
``test_pmc.py``'s shared bucket): author manuscripts outside the open-access subset, metadata with
``license_code: null``, objects updated in place after the daily inventory was made, transport
failures.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
import pytest

from pmcurate import cli
from pmcurate.harvest import pmc
from pmcurate.harvest.fetch import FetchConfig, HarvestInterrupted
from tests.harvest.netutil import FAST, rows
from tests.servers.corpus import ProxyApp, clone, fixture_articles, recorded_json
from tests.servers.faulty import FaultyServer
from tests.servers.s3 import INVENTORY, ArticleVersion, PmcBucketLoader, free_port, start_moto

XML = fixture_articles()
CC_BY = XML["PMC5828200"]  # CC BY 3.0 in its XML
CC_BY_NC = XML["PMC3574550"]  # CC BY-NC 3.0 in its XML
FAIL_FAST = FetchConfig(rate=1000.0, retries=2, backoff=0.01, max_backoff=0.05, timeout=0.3)


@pytest.fixture(scope="module")
def moto():
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def bucket(moto: str) -> tuple[str, PmcBucketLoader]:
    httpx.post(f"{moto}/moto-api/reset", timeout=10).raise_for_status()
    return f"{moto}/pmc-oa-opendata", PmcBucketLoader(moto)


def version(number: int, xml: bytes = CC_BY, **kwargs) -> ArticleVersion:
    return ArticleVersion(f"PMC{number}", 1, clone(xml, number), **kwargs)


def harvest(base_url: str, out: Path, **kwargs) -> pmc.HarvestSummary:
    kwargs.setdefault("fetch", FAST)
    return pmc.harvest(pmc.PmcOptions(out=out, base_url=base_url, **kwargs))


def test_the_test_bucket_writes_metadata_with_the_recorded_fields() -> None:
    shape = recorded_json("pmc-bucket/metadata_shape.json")
    assert list(version(1).metadata()) == shape["key_order"]
    manuscript = version(2, license_code="TDM").metadata()
    expected = shape["examples"]["author_manuscript"]
    assert {k: manuscript[k] for k in expected} == expected


def test_author_manuscripts_are_left_out_unless_asked_for(bucket, tmp_path: Path) -> None:
    base_url, loader = bucket
    loader.add(version(1))
    loader.add(version(2, license_code="TDM"))
    summary = harvest(base_url, tmp_path / "default", all=True)
    assert [r["article_id"] for r in rows(tmp_path / "default", "articles")] == ["PMC1"]
    assert summary.skipped["not_open_access"] == 1
    harvest(base_url, tmp_path / "opt-in", all=True, include_manuscripts=True)
    got = {
        r["article_id"]: (r["is_pmc_openaccess"], r["is_manuscript"], r["license"])
        for r in rows(tmp_path / "opt-in", "articles")
    }
    assert got == {"PMC1": (True, False, "CC BY"), "PMC2": (False, True, "TDM")}


def test_cli_include_manuscripts_takes_them(bucket, tmp_path: Path) -> None:
    base_url, loader = bucket
    loader.add(version(2, license_code="TDM"))
    argv = ["harvest", "pmc", "--all", "--out", str(tmp_path), "--base-url", base_url]
    assert cli.main(argv) == 0 and rows(tmp_path, "articles") == []
    assert cli.main([*argv, "--include-manuscripts"]) == 0
    assert [r["article_id"] for r in rows(tmp_path, "articles")] == ["PMC2"]


def test_an_inventory_the_bucket_refuses_stops_the_run(bucket, tmp_path: Path) -> None:
    base_url, loader = bucket
    listed = version(1)
    loader.add(listed)
    loader.add_inventory("2026-11-23T01-00Z", [listed])
    loader.s3.delete_object(Bucket="pmc-oa-opendata", Key=f"{INVENTORY}/2026-11-23T01-00Z/manifest.json")
    loader.put(f"{INVENTORY}/2026-11-23T01-00Z/other.json", b"{}")  # the folder is still listed
    with pytest.raises(HarvestInterrupted, match=r"cannot list what to harvest.*http_404"):
        harvest(base_url, tmp_path, since=date(2026, 11, 1))


def test_a_null_license_code_leaves_the_xml_license_for_the_row_and_the_filter(
    bucket, tmp_path: Path
) -> None:
    base_url, loader = bucket
    loader.add(version(1, CC_BY, license_code=None))
    loader.add(version(2, CC_BY_NC, license_code=None))
    loader.add(version(3, CC_BY_NC, license_code="CC BY-NC"))
    summary = harvest(base_url, tmp_path / "commercial", all=True, license="commercial")
    got = {
        r["article_id"]: (r["license"], r["license_source"])
        for r in rows(tmp_path / "commercial", "articles")
    }
    assert got == {"PMC1": ("CC BY", "xml")}
    assert summary.skipped["license"] == 2
    harvest(base_url, tmp_path / "all", all=True)
    got = {r["article_id"]: (r["license"], r["license_source"]) for r in rows(tmp_path / "all", "articles")}
    assert got == {"PMC1": ("CC BY", "xml"), "PMC2": ("CC BY-NC", "xml"), "PMC3": ("CC BY-NC", "metadata")}


def test_an_object_updated_since_the_inventory_is_harvested_as_it_is_now(bucket, tmp_path: Path) -> None:
    base_url, loader = bucket
    listed = version(1, modified="2026-11-22T10:00:00.000Z")
    loader.add(listed)
    loader.add_inventory("2026-11-23T01-00Z", [listed])
    loader.add(version(1, retracted=True))  # updated in place after the report: the inventory lags
    summary = harvest(base_url, tmp_path, since=date(2026, 11, 20))
    assert [(r["article_id"], r["retracted"]) for r in rows(tmp_path, "articles")] == [("PMC1", True)]
    assert rows(tmp_path, "quarantine") == []
    assert summary.changed == 1


def test_a_resumed_run_takes_an_object_changed_since_its_cached_listing(bucket, tmp_path: Path) -> None:
    base_url, loader = bucket
    loader.add(version(1))
    loader.add(version(2))
    upstream = base_url.rsplit("/", 1)[0]
    with FaultyServer(ProxyApp(upstream)) as proxy:
        proxied = f"{proxy.url}/pmc-oa-opendata"
        proxy.script["metadata/PMC2.1.json"] = ["500"] * 3
        with pytest.raises(HarvestInterrupted, match="http_500"):
            harvest(proxied, tmp_path, all=True, fetch=FAIL_FAST)
        assert rows(tmp_path, "quarantine") == []
        loader.add(version(2, license_code="CC BY-NC"))  # changed since the listing the next run reuses
        summary = harvest(proxied, tmp_path, all=True)
        listings = [s for s in proxy.served() if "list-type" in s.query]
    assert len(listings) == 1, "the second run reused the first run's listing"
    got = {r["article_id"]: r["license"] for r in rows(tmp_path, "articles")}
    assert got == {"PMC1": "CC BY", "PMC2": "CC BY-NC"}
    assert rows(tmp_path, "quarantine") == [] and summary.changed == 1


def test_limit_fetches_only_the_metadata_it_needs(bucket, tmp_path: Path) -> None:
    base_url, loader = bucket
    for number in range(1, 11):
        loader.add(version(number))
    upstream = base_url.rsplit("/", 1)[0]
    with FaultyServer(ProxyApp(upstream)) as proxy:
        summary = harvest(f"{proxy.url}/pmc-oa-opendata", tmp_path, all=True, limit=3, batch_size=100)
        metadata_requests = [s for s in proxy.served("/pmc-oa-opendata/metadata/")]
    assert summary.articles == 3
    assert len(metadata_requests) == 3


def test_a_closed_port_fails_with_one_line_and_the_next_run_retries(
    bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_url, loader = bucket
    loader.add(version(1))
    ids = tmp_path / "ids.txt"
    ids.write_text("PMC1\n")
    argv = [
        "harvest",
        "pmc",
        "--ids",
        str(ids),
        "--out",
        str(tmp_path / "b"),
        "--retries",
        "1",
        "--timeout",
        "1",
    ]
    closed = f"http://127.0.0.1:{free_port()}/pmc-oa-opendata"
    assert cli.main([*argv, "--base-url", closed]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pmcurate: error: ") and "transport" in err[0]
    assert rows(tmp_path / "b", "quarantine") == []
    assert cli.main([*argv, "--base-url", base_url]) == 0
    assert [r["article_id"] for r in rows(tmp_path / "b", "articles")] == ["PMC1"]
