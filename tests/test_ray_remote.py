"""The Ray executor on a build behind an S3 URL (moto's server): export tasks share no disk with
the driver, they read the build and write their shards through the URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pmcurate.executor import RayExecutor, download, locate_build
from pmcurate.manifest import load_manifest
from pmcurate.pipeline import run_build
from tests import builds
from tests.servers.s3 import start_moto

URL = "s3://builds/test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A local S3 with an empty bucket ``builds``; the variables pyarrow's S3 client reads."""
    server, endpoint = start_moto()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="builds")
    yield env
    server.stop()


def files(folder: Path, pattern: str = "*.parquet") -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob(pattern))}


def test_ray_workers_through_s3_make_the_local_subsets_and_exports(
    s3: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray", reason="pip install 'pmcurate[ray]' to run the Ray tests")
    manifest = load_manifest(
        builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "in"))
    )
    local = run_build(manifest, tmp_path / "local", workers=1, progress=False)

    monkeypatch.setenv("PMCURATE_CACHE", str(tmp_path / "driver"))
    workers = tmp_path / "workers"  # the workers' own disk: their working copies of the build
    executor = RayExecutor(2, runtime_env={"env_vars": {**s3, "PMCURATE_CACHE": str(workers)}})
    try:
        remote = run_build(manifest, URL, executor=executor, progress=False)
    finally:
        executor.close()

    assert remote.executor == "ray" and remote.remote == URL
    builds.assert_same_build(local.build, remote.build)
    assert files(local.build / "subsets" / "edu") == files(remote.build / "subsets" / "edu")
    stored = tmp_path / "stored"
    download(f"{URL}/dataset", stored)
    assert files(stored / "data") == files(local.build / "dataset" / "data")
    monkeypatch.setenv("PMCURATE_CACHE", str(workers))
    pulled = locate_build(URL).local  # what the export tasks read, pulled from S3 by the workers
    assert files(pulled / "tables" / "paragraphs") == files(remote.build / "tables" / "paragraphs")
    assert not (pulled / "dataset").exists()  # their shards went to S3, not to a disk
