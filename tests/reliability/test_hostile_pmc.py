"""``harvest pmc --all`` against a local S3 (moto) whose bucket holds hostile metadata: fields of the
wrong JSON type, S3 URLs whose keys climb out with ``../``, a media file that is a decompression
bomb, a listed key with ``../``; and PMCIDs with shell and path characters on the command line.
Each bad version becomes a quarantine row naming it, the good articles are harvested, nothing is
written outside the build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pmcurate.harvest import pmc
from pmcurate.harvest.fetch import HarvestInputError
from tests.harvest.netutil import FAST, rows
from tests.reliability import hostile
from tests.reliability.sandbox import snapshot
from tests.servers.s3 import BUCKET, ArticleVersion, PmcBucketLoader, md5, start_moto

GOOD = ArticleVersion("PMC900200", 1, hostile.article("900200").encode())
ESCAPING_KEY = "../../../../../tmp/pmcurate-hostile-s3.xml"
WRONG_TYPES: dict[str, tuple[str, Any]] = {
    "PMC900201": ("version", "one"),
    "PMC900202": ("pmcid", 900202),
    "PMC900203": ("license_code", ["CC BY"]),
    "PMC900204": ("xml_url", 42),
    "PMC900205": ("media_urls", "s3://pmc-oa-opendata/x.png"),
    "PMC900206": ("is_retracted", "no"),
    "PMC900207": ("pmcid", "PMC1/../../etc;$(id)"),
}
"""Versions whose metadata has one field of a wrong type or shape: (field, value)."""
ESCAPING_XML = "PMC900208"
ESCAPING_MEDIA = "PMC900209"
IMAGE_BOMB = "PMC900210"
NOT_JSON = "PMC900211"


def put_metadata(loader: PmcBucketLoader, article: ArticleVersion, **changes: Any) -> None:
    loader.add(article)
    metadata = {**article.metadata(), **changes}
    loader.put(f"metadata/{article.prefix}.json", json.dumps(metadata).encode(), "application/json")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, str]]:
    box = tmp_path_factory.mktemp("hostile-pmc")
    server, endpoint = start_moto()
    try:
        loader = PmcBucketLoader(endpoint)
        loader.add(GOOD)
        for pmcid, (name, value) in WRONG_TYPES.items():
            put_metadata(
                loader, ArticleVersion(pmcid, 1, hostile.article(pmcid[3:]).encode()), **{name: value}
            )
        escaping = hostile.article(ESCAPING_XML[3:]).encode()
        loader.put(ESCAPING_KEY.replace("../", ""), escaping)
        put_metadata(
            loader,
            ArticleVersion(ESCAPING_XML, 1, escaping),
            xml_url=f"s3://{BUCKET}/{ESCAPING_KEY}?md5={md5(escaping)}",
        )
        media = ArticleVersion(ESCAPING_MEDIA, 1, hostile.figure_article(ESCAPING_MEDIA[3:], ["f.g001"]))
        put_metadata(loader, media, media_urls=[f"s3://{BUCKET}/../../../../tmp/pmcurate-hostile-media.png"])
        bomb = hostile.png_header(100_000, 100_000)
        loader.add(
            ArticleVersion(
                IMAGE_BOMB, 1, hostile.figure_article(IMAGE_BOMB[3:], ["b.g001"]), media={"b.g001.png": bomb}
            )
        )
        loader.put(f"metadata/{NOT_JSON}.1.json", b"{not json", "application/json")
        loader.put(f"metadata/../{ESCAPING_XML}.2.json", b"{}", "application/json")
        before = snapshot(box)
        pmc.harvest(
            pmc.PmcOptions(
                out=box / "build", base_url=f"{endpoint}/{BUCKET}", all=True, media=True, fetch=FAST
            )
        )
    finally:
        server.stop()
    return box, before, snapshot(box)


def quarantined(build: Path) -> dict[str, dict[str, Any]]:
    return {r["article_id"]: r for r in rows(build, "quarantine")}


def test_good_articles_are_harvested_beside_the_hostile_ones(run) -> None:
    box, _, _ = run
    assert [r["article_id"] for r in rows(box / "build", "articles")] == [
        GOOD.pmcid,
        ESCAPING_MEDIA,
        IMAGE_BOMB,
    ]


@pytest.mark.parametrize("pmcid", WRONG_TYPES)
def test_metadata_with_a_field_of_the_wrong_type_is_quarantined_naming_the_field(run, pmcid: str) -> None:
    box, _, _ = run
    record = quarantined(box / "build")[pmcid]
    assert record["reason"] == "bad_metadata"
    assert repr(WRONG_TYPES[pmcid][0]) in record["error"]
    assert record["member"] == f"metadata/{pmcid}.1.json"


def test_metadata_that_is_not_json_is_quarantined(run) -> None:
    box, _, _ = run
    assert quarantined(box / "build")[NOT_JSON]["reason"] == "bad_metadata"


def test_xml_url_whose_key_climbs_out_is_quarantined_and_not_stored(run) -> None:
    box, _, _ = run
    record = quarantined(box / "build")[ESCAPING_XML]
    assert (record["reason"], record["stage"]) == ("bad_url", "fetch")
    assert "unsafe raw key" in record["error"]
    assert not Path("/tmp/pmcurate-hostile-s3.xml").exists()


def test_media_url_whose_key_climbs_out_is_quarantined_and_the_article_kept(run) -> None:
    box, _, _ = run
    record = quarantined(box / "build")[ESCAPING_MEDIA]
    assert (record["reason"], record["stage"]) == ("bad_url", "media")
    assert not Path("/tmp/pmcurate-hostile-media.png").exists()


def test_image_bomb_gets_no_decoded_size(run) -> None:
    box, _, _ = run
    figure = rows(box / "build", "figures", "article_id, width, height, format", "1")[-1]
    assert figure == {"article_id": IMAGE_BOMB, "width": None, "height": None, "format": None}


def test_listed_key_with_dot_dot_is_not_a_candidate() -> None:
    page = (
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Contents><Key>metadata/../PMC1.1.json</Key></Contents>"
        b"<Contents><Key>metadata/PMC2.1.json/../../../x</Key></Contents>"
        b"<Contents><Key>metadata/PMC3.1.json</Key></Contents>"
        b"<IsTruncated>false</IsTruncated></ListBucketResult>"
    )
    contents, _, _ = pmc.parse_list_page(page)
    assert [c.key for c in pmc._metadata_candidates(contents)] == ["metadata/PMC3.1.json"]


def test_nothing_is_written_outside_the_build(run) -> None:
    _, before, after = run
    changed = {name for name, state in after.items() if before.get(name) != state}
    assert changed and all(name == "build" or name.startswith("build/") for name in changed)


@pytest.mark.parametrize("pmcid", ["PMC1;rm -rf ~", "../PMC1", "PMC1/../../etc", "$(id)", "PMC1`id`"])
def test_pmcid_with_shell_or_path_characters_is_refused_before_any_request(
    tmp_path: Path, pmcid: str
) -> None:
    options = pmc.PmcOptions(out=tmp_path / "b", base_url="http://127.0.0.1:9", ids=(pmcid,), fetch=FAST)
    with pytest.raises(HarvestInputError, match="not a PMCID"):
        pmc.harvest(options)
    assert not (tmp_path / "b").exists()
