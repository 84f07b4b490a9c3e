"""The Ray executor on a build behind an S3 URL (moto's server): no task of any step touches the
driver's disk. Every step's tasks run against the workers' own working copies and read and write
the build through the URL (``executor.UrlBuildExecutor``); the export's tasks through their own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from pmcurate.executor import RayExecutor, download, locate_build
from pmcurate.manifest import load_manifest
from pmcurate.pipeline import run_build
from tests import builds
from tests.servers.s3 import start_moto

URL = "s3://builds/test"
SAMPLE_LABELS = builds.ROOT / "pmcurate" / "data" / "labels" / "sample-paragraph-labels.jsonl"


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


def demo_manifest(path: Path) -> Path:
    """The demo's pipeline over the bundled sample (harvest → train → apply → filter with exact and
    near dedup → export), with a quick student and harvest tasks of two files."""
    path.write_text(
        f"""name = "test"

[[sources]]
kind = "local"
paths = ["{builds.SAMPLE}"]
batch_size = 2

[teacher]
kind = "labels"
labels = "{SAMPLE_LABELS}"

[student]
dim = 20
pretrain = false
search = false

[subsets.edu]
rules = ["min_words=48", "not_retracted", "boilerplate", "edu_min=2"]
dedup = ["exact", "near"]

[exports.default]
preset = "biomed-enriched"
subset = "edu"
split_by = "license"
"""
    )
    return path


class HiddenDriverCopy:
    """Ray, with the driver's working copy moved away while tasks run: a task that reads or writes
    it fails, or leaves a folder at its path that the next map finds."""

    def __init__(self, inner: RayExecutor, copy: Path) -> None:
        self.inner, self.copy = inner, copy
        self.name, self.workers = inner.name, inner.workers
        self.maps = 0

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        desc: str,
        progress: bool = True,
        reads: Sequence[Path] | None = None,
    ) -> Iterator[Any]:
        aside = self.copy.with_name(self.copy.name + "-aside")
        os.rename(self.copy, aside)
        try:
            results = list(self.inner.map(fn, items, desc=desc, progress=progress, reads=reads))
        finally:
            intruded = self.copy.exists()
            if not intruded:
                os.rename(aside, self.copy)
        assert not intruded, f"a task of {desc} wrote into the driver's working copy"
        self.maps += 1
        yield from results

    def close(self) -> None:
        self.inner.close()


def files(folder: Path, pattern: str = "*.parquet") -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob(pattern))}


def test_ray_workers_through_s3_make_the_local_subsets_and_exports(
    s3: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray", reason="pip install 'pmcurate[ray]' to run the Ray tests")
    manifest = load_manifest(demo_manifest(tmp_path / "test.toml"))
    local = run_build(manifest, tmp_path / "local", workers=1, progress=False)

    monkeypatch.setenv("PMCURATE_CACHE", str(tmp_path / "driver"))
    workers = tmp_path / "workers"  # the workers' own disk: their working copies of the build
    ray = RayExecutor(2, runtime_env={"env_vars": {**s3, "PMCURATE_CACHE": str(workers)}})
    executor = HiddenDriverCopy(ray, locate_build(URL).local)
    executor.copy.mkdir(parents=True)
    try:
        remote = run_build(manifest, URL, executor=executor, progress=False)
    finally:
        ray.close()

    assert remote.executor == "ray" and remote.remote == URL
    assert {"harvest:local", "annotate:apply", "filter:edu", "export:default"} <= set(remote.ran)
    assert executor.maps > 10  # the harvest's, the labels', the subset engine's phases, the export's
    builds.assert_same_build(local.build, remote.build)
    assert files(local.build / "subsets" / "edu") == files(remote.build / "subsets" / "edu")
    stored = tmp_path / "stored"
    download(f"{URL}/subsets/edu", stored / "edu")
    download(f"{URL}/dataset", stored / "dataset")
    subset = local.build / "subsets" / "edu"
    assert files(stored / "edu") == files(subset) and files(stored / "edu", "*.json") == files(
        subset, "*.json"
    )
    assert files(stored / "edu" / "drops") == files(subset / "drops") != {}
    assert files(stored / "dataset" / "data") == files(local.build / "dataset" / "data") != {}
    copies = sorted((workers / "workers").glob("*/[0-9]*/tables/labels"))
    assert copies  # the labels were written on a worker's own copy, then sent through S3
