"""The exports load with the readers users have: ``datasets`` (streaming and by card), ``webdataset``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

datasets = pytest.importorskip("datasets", reason="the datasets extra is part of the dev extra")
wds = pytest.importorskip("webdataset", reason="the webdataset extra is part of the dev extra")

from pmcurate.export.exporter import export  # noqa: E402
from pmcurate.export.steps import ExportConfig  # noqa: E402


@pytest.fixture(scope="module")
def exported(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder with the default paragraphs config and an image-text config."""
    out = tmp_path_factory.mktemp("loaders") / "dataset"
    export(build, ExportConfig(out=out), progress=False)
    export(build, ExportConfig(out=out, preset="image-text", name="figures", split_by="none"), progress=False)
    return out


@pytest.fixture(scope="module")
def tar_export(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wds") / "dataset"
    export(
        build,
        ExportConfig(out=out, preset="image-text", format="webdataset", shard_size=60_000),
        progress=False,
    )
    return out


def test_parquet_shards_stream_with_datasets(exported: Path) -> None:
    files = sorted(str(p) for p in (exported / "data").glob("commercial-*.parquet"))
    stream = datasets.load_dataset(
        "parquet", data_files={"commercial": files}, split="commercial", streaming=True
    )
    rows = list(stream)
    assert len(rows) == 355
    assert rows[0]["paragraph_id"].startswith("PMC")


def test_card_configs_load_every_split(exported: Path, tmp_path: Path) -> None:
    splits = datasets.load_dataset(str(exported), cache_dir=str(tmp_path))
    assert {name: ds.num_rows for name, ds in splits.items()} == {
        "commercial": 355,
        "noncommercial": 95,
        "other": 15,
    }


def test_image_column_decodes_to_pil(exported: Path) -> None:
    stream = datasets.load_dataset(str(exported), "figures", split="train", streaming=True)
    row = next(iter(stream))
    assert isinstance(stream.features["image"], datasets.Image)
    assert isinstance(row["image"], Image.Image)
    assert row["image"].size == (row["width"], row["height"])


def test_image_column_decodes_from_parquet_alone(exported: Path) -> None:
    files = sorted(str(p) for p in (exported / "figures").glob("*.parquet"))
    stream = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    assert isinstance(next(iter(stream))["image"], Image.Image)


def test_webdataset_keys_have_no_dots_and_samples_the_same_files(tar_export: Path) -> None:
    urls = sorted(str(p) for p in (tar_export / "webdataset").glob("*.tar"))
    assert len(urls) > 3
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 46
    assert all("." not in s["__key__"] and "/" not in s["__key__"] for s in samples)
    assert {frozenset(k for k in s if not k.startswith("__")) for s in samples} == {
        frozenset({"png", "txt", "json"})
    }
    assert len({s["__key__"] for s in samples}) == 46


def test_webdataset_decodes_images_captions_and_metadata(tar_export: Path) -> None:
    urls = sorted(str(p) for p in (tar_export / "webdataset").glob("*.tar"))
    sample = next(iter(wds.WebDataset(urls, shardshuffle=False).decode("pil")))
    assert isinstance(sample["png"], Image.Image)
    meta = sample["json"] if isinstance(sample["json"], dict) else json.loads(sample["json"])
    assert sample["txt"] == (meta["caption"] or "")
    assert meta["figure_id"].startswith("PMC")
    assert {"article_id", "license", "license_url", "mentions", "image_sha256"} <= set(meta)


def test_webdataset_transcodes_minority_format(tar_export: Path) -> None:
    urls = sorted(str(p) for p in (tar_export / "webdataset").glob("*.tar"))
    metas = [json.loads(s["json"]) for s in wds.WebDataset(urls, shardshuffle=False)]
    assert sum(m.get("transcoded_from") == "jpg" for m in metas) == 15
    assert all(s["png"].startswith(b"\x89PNG") for s in wds.WebDataset(urls, shardshuffle=False))


def test_webdataset_loads_with_datasets(tar_export: Path) -> None:
    stream = datasets.load_dataset(str(tar_export), split="commercial", streaming=True)
    row = next(iter(stream))
    assert isinstance(row["png"], Image.Image)
    assert row["json"]["figure_id"].startswith("PMC")


def test_webdataset_export_is_byte_identical(build: Path, tar_export: Path, tmp_path: Path) -> None:
    again = tmp_path / "dataset"
    export(
        build,
        ExportConfig(out=again, preset="image-text", format="webdataset", shard_size=60_000),
        progress=False,
    )
    first = {p.name: p.read_bytes() for p in (tar_export / "webdataset").iterdir()}
    second = {p.name: p.read_bytes() for p in (again / "webdataset").iterdir()}
    assert first == second


def test_features_metadata_matches_what_datasets_infers(exported: Path) -> None:
    from pmcurate.export.exporter import hf_features

    arrow_schema = pq.read_schema(next((exported / "data").iterdir())).remove_metadata()
    assert datasets.Features.from_dict(hf_features(arrow_schema)) == datasets.Features.from_arrow_schema(
        arrow_schema
    )
