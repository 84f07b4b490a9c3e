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
from pmcurate.export.steps import ExportConfig
from pmcurate.filters.rules import where_rule
from pmcurate.filters.subset import make_subset


@pytest.fixture(scope="module")
def exported(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("card") / "pmc-demo"
    export(build, ExportConfig(out=out), progress=False)
    export(build, ExportConfig(out=out, preset="image-text", name="figures", split_by="none"), progress=False)
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
    assert "**Document types**" in text and "| clinical_case | 117 | 25.2% |" in text
    assert "**Paragraph languages**" in text and "| en | 465 | 100.0% |" in text
    assert re.search(r"Input `paragraphs`: 465 rows in 1 shards, sha256 `[0-9a-f]{64}`", text)
    assert "`fasttext:test-student`" in text
    assert "read_parquet('hf://datasets/ORG/NAME/data/*.parquet')" in text


def test_repo_id_is_written_into_the_examples(exported: Path) -> None:
    text = card.render(exported, card.CardSettings(repo_id="someone/pmc-demo"))
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
        export(build, ExportConfig(out=exported, preset="image-text", format="webdataset"), progress=False)


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
    export(copy, ExportConfig(out=out, subset="long"), progress=False)
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


def test_card_is_a_hub_dataset_card_with_the_template_sections(exported: Path) -> None:
    from huggingface_hub import DatasetCard

    loaded = DatasetCard.load(exported / "README.md")
    assert loaded.data.pretty_name == "pmc-demo"
    for section in (
        "## Dataset Structure",
        "## Licensing Information",
        "## Personal and Sensitive Information",
        "## Bias, Risks, and Limitations",
        "## Citation",
    ):
        assert section in loaded.text


def test_licensing_counts_the_licenses_of_each_split(exported: Path) -> None:
    text = (exported / "README.md").read_text()
    licensing = text.split("## Licensing Information", 1)[1].split("\n## ", 1)[0]
    assert "| config | split | license | rows |" in licensing
    assert re.search(r"\| default \| commercial \| CC BY \| [\d,]+ \|", licensing)
    assert re.search(r"\| default \| noncommercial \| CC BY-NC[-A-Z]* \| [\d,]+ \|", licensing)


def test_language_is_left_out_when_no_row_has_one(exported: Path) -> None:
    assert "language" not in header(exported)


def test_title_description_and_repo_are_kept_for_the_next_card(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    shutil.copytree(exported, out)
    card.write_card(out, "someone/pmc-demo", title="pmc-demo-2026", description="Paragraphs --> of PMC.")
    card.write_card(out)  # what `pmcurate publish` or the next export does
    text = (out / "README.md").read_text()
    assert header(out)["pretty_name"] == "pmc-demo-2026"
    assert "# pmc-demo-2026\n\nParagraphs --> of PMC." in text
    assert 'load_dataset("someone/pmc-demo", split=' in text
    assert "ORG/NAME" not in text


def test_a_readme_not_written_by_pmcurate_is_not_overwritten(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    shutil.copytree(exported, out)
    (out / "README.md").write_text("# My notes\n\nhand-written\n")
    with pytest.raises(card.CardError, match="was not written by pmcurate"):
        card.write_card(out)
    assert (out / "README.md").read_text() == "# My notes\n\nhand-written\n"


def test_counts_of_the_student_report_print_as_integers() -> None:
    lines = card._student_lines(
        {"teacher": "t", "labels": {"domain": {"student": {"n": 128000, "macro_f1": 0.9251}}}}
    )
    assert lines[1] == "  - domain: student: macro_f1 0.925, n 128,000"


@pytest.mark.parametrize("preset", ["paragraphs", "biomed-enriched"])
def test_card_from_the_rows_written_is_the_card_from_the_shards(
    build: Path, tmp_path: Path, preset: str
) -> None:
    export(build, ExportConfig(out=tmp_path, preset=preset, shard_size=40_000), progress=False)
    written = (tmp_path / "README.md").read_text()
    card.write_card(tmp_path)
    assert written == (tmp_path / "README.md").read_text()


@pytest.mark.parametrize(
    "settings", [card.CardSettings(), card.CardSettings("Tïtle: “x”", "A\\ndescription", "o/r")]
)
def test_the_card_is_the_text_a_hub_dataset_card_gives_of_itself(
    exported: Path, subset_export: Path, settings: card.CardSettings
) -> None:
    from huggingface_hub import DatasetCard

    for out in (exported, subset_export):
        text = card.render(out, settings)
        assert str(DatasetCard(text)) == text
