"""Every manifest shipped in ``manifests/`` builds to its end with ``pmcurate build``.

The network parts are the project's local servers speaking the real protocols: moto's S3 holding a
bucket laid out like ``pmc-oa-opendata`` (the fixture articles, some with figure images), the
OpenAI-compatible teacher, and the Hub's upload protocol. The manifests are the shipped files with
only their service addresses pointed at those servers (each edit must apply exactly once, so a
manifest that changes shape fails here instead of being silently tested half).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from pmcurate.cli import main
from pmcurate.harvest.archive import image_key
from tests.servers.corpus import fixture_articles
from tests.servers.hub_server import HubState, running_hub
from tests.servers.openai_server import openai_server
from tests.servers.s3 import ArticleVersion, PmcBucketLoader, png, start_moto

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
TOKEN = "hf_shipped_manifests_write_token"
BUILDS = "pmcurate-builds"
LICENSES = {"PMC3574550": "CC BY-NC", "PMC2994229": "CC BY-NC-ND", "PMC2599765": "CC0"}
_GRAPHIC = re.compile(rb'<graphic[^>]*xlink:href="([^"]+)"')


def bucket_articles() -> list[ArticleVersion]:
    """The fixture articles, one version each, with a small PNG for every graphic they reference."""
    versions = []
    for index, (pmcid, xml) in enumerate(sorted(fixture_articles().items())):
        media = {
            f"{image_key(href.decode())}.png": png(4 + n, 3, (index * 40 + n) % 256)
            for n, href in enumerate(_GRAPHIC.findall(xml))
        }
        versions.append(ArticleVersion(pmcid, 1, xml, LICENSES.get(pmcid, "CC BY"), False, media))
    return versions


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    server, endpoint = start_moto()
    loader = PmcBucketLoader(endpoint)
    articles = bucket_articles()
    for article in articles:
        loader.add(article)
    loader.add_inventory("2026-11-24T01-00Z", articles)
    loader.s3.create_bucket(Bucket=BUILDS)
    yield endpoint
    server.stop()


@pytest.fixture
def services(bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, object]]:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("PMCURATE_LLM_API_KEY", "sk-shipped-manifests-key")
    with running_hub({TOKEN: ("your-org", "write")}) as (hub_url, hub), openai_server() as (llm_url, _):
        monkeypatch.setenv("HF_ENDPOINT", hub_url)
        yield {"bucket": f"{bucket}/pmc-oa-opendata", "s3": bucket, "llm": llm_url, "hub": hub}


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} once in the manifest"
    return text.replace(old, new)


def local_copy(name: str, folder: Path, services: dict[str, object]) -> Path:
    """The shipped manifest ``name`` with its service addresses pointed at the local servers."""
    text = (MANIFESTS / name).read_text()
    if 'kind = "pmc"' in text:
        text = re.sub(r'(?m)^kind = "pmc".*$', lambda m: f'{m[0]}\nbase_url = "{services["bucket"]}"', text)
    if "[teacher]" in text and 'kind = "llm"' in text:
        text = replace_once(text, 'endpoint = "http://localhost:8000/v1"', f'endpoint = "{services["llm"]}"')
    path = folder / name
    path.write_text(text)
    return path


def build(name: str, tmp_path: Path, services: dict[str, object]) -> tuple[Path, dict]:
    manifest = local_copy(name, tmp_path, services)
    out = tmp_path / "build"
    assert main(["build", str(manifest), "--out", str(out), "--workers", "1"]) == 0
    provenance = json.loads((out / "provenance.json").read_text())
    return out, provenance


def published(hub: HubState, repo: str) -> list[str]:
    return sorted(hub.files(repo))


def test_every_shipped_manifest_has_a_test() -> None:
    assert sorted(p.name for p in MANIFESTS.glob("*.toml")) == sorted(SHIPPED)


@pytest.mark.parametrize(
    "name",
    ["biomed-enriched.toml", "clinical-cases.toml", "image-text.toml"],
)
def test_network_manifest_builds_publishes_and_writes_provenance(
    name: str, tmp_path: Path, services: dict[str, object]
) -> None:
    out, provenance = build(name, tmp_path, services)
    steps = provenance["steps"]
    assert all(step["status"] in ("ran", "unchanged") for step in steps.values()), steps
    assert steps["publish"]["status"] == "ran"
    network = next(i for i in provenance["inputs"] if i["source"] == "network articles")
    assert network["articles"] == provenance["tables"]["articles"]["rows"] > 0
    repo = SHIPPED[name]
    files = published(services["hub"], repo)  # type: ignore[arg-type]
    assert "README.md" in files and any(f.endswith((".parquet", ".tar")) for f in files), files
    assert (out / "dataset" / "README.md").is_file()


def test_a_build_to_an_s3_url_is_pushed_with_its_provenance(
    tmp_path: Path, services: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PMCURATE_CACHE", str(tmp_path / "cache"))
    endpoint = str(services["s3"])
    host = endpoint.split("//", 1)[1]
    manifest = local_copy("image-text.toml", tmp_path, services)
    out = f"s3://{BUILDS}/image-text?endpoint_override={host}&scheme=http"
    assert main(["build", str(manifest), "--out", out, "--workers", "1", "--until", "export"]) == 0
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUILDS, Prefix="image-text/")["Contents"]}
    assert "image-text/provenance.json" in keys and "image-text/dataset/README.md" in keys
    assert any(k.startswith("image-text/dataset/data/") and k.endswith(".parquet") for k in keys)


def test_demo_manifest_builds_to_its_end(tmp_path: Path, services: dict[str, object]) -> None:
    out, provenance = build("demo.toml", tmp_path, services)
    assert provenance["steps"]["export:default"]["status"] == "ran"
    assert any((out / "dataset" / "data").glob("*.parquet"))


SHIPPED = {
    "biomed-enriched.toml": "your-org/biomed-enriched-pmcurate",
    "clinical-cases.toml": "your-org/pmc-clinical-cases",
    "image-text.toml": "your-org/pmc-image-text",
    "demo.toml": None,
}
