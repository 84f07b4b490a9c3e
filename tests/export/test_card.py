"""The dataset card: the Hub YAML header (configs, features, license, sizes) and the body."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from pmcurate.export import card
from pmcurate.export.exporter import ExportError, export
from pmcurate.filters.rules import where_rule
from pmcurate.filters.subset import make_subset


@pytest.fixture(scope="module")
def exported(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("card") / "pmc-demo"
    export(build, out, progress=False)
    export(build, out, preset="image-text", config="figures", split_by="none", progress=False)
    return out


def header(out: Path) -> dict:
    text = (out / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "card has no YAML header"
    return yaml.safe_load(match[1])


def test_configs_list_data_files_per_split(exported: Path) -> None:
    configs = {c["config_name"]: c for c in header(exported)["configs"]}
    assert configs["default"]["default"] is True
    assert configs["default"]["data_files"] == [
        {"split": "commercial", "path": "data/commercial-*.parquet"},
        {"split": "noncommercial", "path": "data/noncommercial-*.parquet"},
        {"split": "other", "path": "data/other-*.parquet"},
    ]
    assert configs["figures"]["data_files"] == [{"split": "train", "path": "figures/train-*.parquet"}]


def test_image_feature_is_declared(exported: Path) -> None:
    info = {i["config_name"]: i for i in header(exported)["dataset_info"]}
    features = {f["name"]: f for f in info["figures"]["features"]}
    assert features["image"] == {"name": "image", "dtype": "image"}
    assert features["mentions"] == {"name": "mentions", "list": "string"}
    first = info["default"]["splits"][0]
    assert (first["name"], first["num_examples"]) == ("commercial", 355) and first["num_bytes"] > 0


def test_license_task_and_size_metadata(exported: Path) -> None:
    meta = header(exported)
    assert {"cc-by-4.0", "cc-by-nc-nd-4.0", "other"} <= set(meta["license"])
    assert meta["license_link"].startswith("https://")
    assert {"text-generation", "image-to-text"} <= set(meta["task_categories"])
    assert meta["size_categories"] == ["n<1K"]


def test_body_has_counts_distributions_provenance_and_duckdb(exported: Path) -> None:
    text = (exported / "README.md").read_text()
    assert "| default | paragraphs | parquet | commercial | 355 | 1 |" in text
    assert "**Document type**" in text and "| clinical_case | 117 | 25.2% |" in text
    assert re.search(r"Input `paragraphs`: 465 rows in 1 shards, sha256 `[0-9a-f]{64}`", text)
    assert "`fasttext:test-student`" in text
    assert "read_parquet('hf://datasets/ORG/NAME/data/*.parquet')" in text


def test_repo_id_is_written_into_the_examples(exported: Path) -> None:
    text = card.render(exported, "someone/pmc-demo")
    assert "hf://datasets/someone/pmc-demo/data/*.parquet" in text
    assert 'load_dataset("someone/pmc-demo", "figures", split="train", streaming=True)' in text


def test_size_categories_follow_the_hub_buckets() -> None:
    assert [card.size_category(n) for n in (999, 1000, 99_999, 2_000_000)] == [
        "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"
    ]  # fmt: skip


def test_license_urls_map_to_hub_ids() -> None:
    urls = [
        "http://creativecommons.org/licenses/by-nc-sa/3.0/",
        "https://creativecommons.org/publicdomain/zero/1.0/",
    ]
    assert card.hub_license_ids([*urls, None]) == ["cc-by-nc-sa-3.0", "cc0-1.0", "other"]


def test_one_format_per_folder(build: Path, exported: Path) -> None:
    with pytest.raises(ExportError, match="one loader"):
        export(build, exported, preset="image-text", format="webdataset", progress=False)


@pytest.fixture(scope="module")
def subset_export(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A subset export of a build whose student left its evaluation report."""
    root = tmp_path_factory.mktemp("card-subset")
    copy = root / "build"
    shutil.copytree(build, copy)
    make_subset(
        copy, "long", rules=["min_words=100"], upsample=[(where_rule("domain = 'clinical'", "clin"), 2)]
    )
    report = {"teacher": "llm:model-x:prompt-1234", "labels": {"domain": {
        "student": {"macro_f1": 0.91, "accuracy": 0.93, "per_class": {"clinical": 0.9}},
        "majority": {"macro_f1": 0.2, "accuracy": 0.5}}}}  # fmt: skip
    (copy / "models").mkdir()
    (copy / "models" / "report.json").write_text(json.dumps(report))
    out = root / "dataset"
    export(copy, out, subset="long", progress=False)
    return out


def test_subset_rules_and_counts_are_in_the_provenance(subset_export: Path) -> None:
    text = (subset_export / "README.md").read_text()
    assert "- Build: `build`, subset `long`" in text
    assert "  - rule `min_words`: `n_words >= 100`" in text
    assert "  - upsampled ×2: `clin` (`(domain = 'clinical')`)" in text
    assert "<details><summary>All subset parameters</summary>" in text


def test_student_agreement_is_in_the_provenance(subset_export: Path) -> None:
    text = (subset_export / "README.md").read_text()
    assert "trained on teacher `llm:model-x:prompt-1234`" in text
    assert (
        "  - domain: student: accuracy 0.930, macro_f1 0.910; majority: accuracy 0.500, macro_f1 0.200"
        in text
    )
