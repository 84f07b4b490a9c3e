"""``manifest.load_manifest``: shipped manifests load; mistakes name the file, key and expectation."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from pmcurate.annotate.steps import DistillConfig, EmbeddingConfig, EncoderConfig, TrainConfig
from pmcurate.manifest import ManifestError, load_manifest

ROOT = Path(__file__).resolve().parent.parent

VALID = """name = "ok"

[[sources]]
kind = "local"
paths = ["package:data/sample"]

[teacher]
kind = "labels"
labels = "package:data/labels/sample-paragraph-labels.jsonl"

[student]
pretrain = false

[subsets.edu]
rules = ["min_words=48", "edu_min=3"]

[exports.default]
preset = "biomed-enriched"
subset = "edu"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") or message.startswith(f"{path.resolve()}: ")
    return message


@pytest.mark.parametrize("name", ["demo", "biomed-enriched", "clinical-cases", "image-text"])
def test_shipped_manifest_is_valid(name: str) -> None:
    manifest = load_manifest(ROOT / "manifests" / f"{name}.toml")
    assert manifest.name == name
    assert manifest.exports


def test_package_paths_resolve_inside_the_installed_package(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, VALID))
    assert (manifest.sources[0].paths[0] / "PROVENANCE.md").is_file()
    assert manifest.teacher is not None and manifest.teacher.labels is not None
    assert manifest.teacher.labels.is_file()


def test_relative_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "articles").mkdir()
    manifest = load_manifest(write(tmp_path, VALID.replace("package:data/sample", "articles")))
    assert manifest.sources[0].paths == (tmp_path / "articles",)


def test_hash_is_of_the_file_bytes(tmp_path: Path) -> None:
    one = load_manifest(write(tmp_path, VALID))
    two = load_manifest(write(tmp_path, VALID + "\n# comment\n"))
    assert one.sha256 != two.sha256


def test_missing_required_key(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace('name = "ok"', ""))
    assert "key 'name'" in message and "required" in message


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace("[student]", '[student]\ndim = "fifty"'))
    assert "[student] dim: expected an integer ≥ 1, got str 'fifty'" in message


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace("[student]", "[student]\npretrian = true"))
    assert "[student]" in message and "unknown key(s) 'pretrian'" in message


def test_invalid_choice_lists_the_choices(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace('preset = "biomed-enriched"', 'preset = "biomed"'))
    assert (
        "[exports.default] preset: expected one of 'paragraphs', 'biomed-enriched', 'image-text'" in message
    )


def test_a_local_source_may_drop_citations(tmp_path: Path) -> None:
    text = VALID.replace(
        'paths = ["package:data/sample"]', 'paths = ["package:data/sample"]\ncitations = "drop"'
    )
    assert load_manifest(write(tmp_path, text)).sources[0].citations == "drop"
    assert load_manifest(write(tmp_path, VALID)).sources[0].citations == "marker"


def test_an_unknown_citation_mode_lists_the_modes(tmp_path: Path) -> None:
    text = VALID.replace(
        'paths = ["package:data/sample"]', 'paths = ["package:data/sample"]\ncitations = "keep"'
    )
    assert "citations: expected one of 'marker', 'drop'" in error(tmp_path, text)


def test_not_toml(tmp_path: Path) -> None:
    assert "not valid TOML" in error(tmp_path, "name = \n")


def test_missing_input_path(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace("package:data/sample", "no/such/folder"))
    assert "[sources #1] paths" in message and "'no/such/folder' does not exist" in message


def test_unknown_filter_rule(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace('"edu_min=3"', '"edu_minimum=3"'))
    assert "[subsets.edu] rules[1]" in message and "unknown rule 'edu_minimum'" in message


def test_export_of_an_unknown_subset(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace('subset = "edu"', 'subset = "educational"'))
    assert "[exports.default] subset: no [subsets.educational]" in message


def test_labels_preset_without_student(tmp_path: Path) -> None:
    text = VALID.split("[teacher]")[0] + VALID[VALID.index("[subsets.edu]") :]
    assert "biomed-enriched needs paragraph labels" in error(tmp_path, text)


def test_pmc_source_needs_exactly_one_selection(tmp_path: Path) -> None:
    text = VALID.replace(
        'kind = "local"\npaths = ["package:data/sample"]', 'kind = "pmc"\nall = true\nsince = 2026-01-01'
    )
    assert "exactly one of ids, since, all (got since, all)" in error(tmp_path, text)


def test_pmc_source_may_include_author_manuscripts(tmp_path: Path) -> None:
    text = VALID.replace(
        'kind = "local"\npaths = ["package:data/sample"]',
        'kind = "pmc"\nall = true\ninclude_manuscripts = true',
    )
    [source] = load_manifest(write(tmp_path, text)).sources
    assert (source.kind, source.include_manuscripts) == ("pmc", True)


def test_secret_value_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = VALID.replace(
        '[teacher]\nkind = "labels"\nlabels = "package:data/labels/sample-paragraph-labels.jsonl"',
        '[teacher]\nkind = "llm"\nendpoint = "http://localhost:8000/v1"\nmodel = "m"\n'
        'api_key = "sk-live-123456"',
    )
    message = error(tmp_path, text)
    assert "[teacher] api_key: secrets never go in a manifest" in message
    assert "sk-live-123456" not in message


def test_exports_of_two_formats_in_the_dataset_folder_are_refused_at_load(tmp_path: Path) -> None:
    text = VALID.replace('"biomed-enriched"', '"image-text"').replace('subset = "edu"\n', "")
    text += '\n[exports.wds]\npreset = "image-text"\nformat = "webdataset"\n'
    message = error(tmp_path, text)
    assert "[exports.wds] format: webdataset cannot share the build's dataset folder" in message
    assert "--format webdataset" in message


def test_an_export_named_like_the_default_configs_folder_is_refused(tmp_path: Path) -> None:
    text = VALID + '\n[exports.data]\npreset = "biomed-enriched"\nsubset = "edu"\n'
    assert "its shards would go to dataset/data/, the folder of [exports.default]" in error(tmp_path, text)


def test_split_by_a_column_the_preset_lacks_is_refused_at_load(tmp_path: Path) -> None:
    message = error(tmp_path, VALID + 'split_by = "journl"\n')
    assert "[exports.default] split_by: 'journl' is not a column of preset biomed-enriched" in message
    assert "journal" in message


def test_split_by_a_column_of_the_preset_loads(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, VALID + 'split_by = "pub_year"\n'))
    assert manifest.exports[0].split_by == "pub_year"


def test_student_kind_chooses_the_labelling_student(tmp_path: Path) -> None:
    text = VALID.replace(
        "[student]", '[student]\nkind = "distilled"\ndevice = "cpu"\nepochs = 3\ndistill_sample = 5000'
    )
    spec = load_manifest(write(tmp_path, text)).student
    assert spec is not None
    encoder, distill = spec.config(EncoderConfig), spec.config(DistillConfig)
    assert encoder is not None and distill is not None
    assert (spec.kind, encoder.device, encoder.epochs) == ("distilled", "cpu", 3)
    assert (distill.device, distill.distill_sample, spec.device) == ("cpu", 5000, "cpu")
    default = load_manifest(write(tmp_path, VALID)).student
    assert default is not None and default.kind == "fasttext"


def test_student_kind_outside_the_choices_lists_them(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace("[student]", '[student]\nkind = "bert"'))
    assert "[student] kind: expected one of 'fasttext', 'distilled', 'embedding', 'encoder'" in message


def test_encoder_settings_need_an_encoder_kind(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace("[student]", "[student]\nepochs = 3"))
    assert "unknown key(s) 'epochs'" in message


LLM_TEACHER = '[teacher]\nkind = "llm"\nmodel = "m"\n'


def test_every_teacher_option_is_a_manifest_key(tmp_path: Path) -> None:
    text = VALID.replace(
        VALID[VALID.index("[teacher]") : VALID.index("[student]")],
        LLM_TEACHER + 'backend = "vllm"\ntensor_parallel = 2\nretry_failed = true\n\n',
    )
    teacher = load_manifest(write(tmp_path, text)).teacher
    assert teacher is not None and teacher.llm is not None
    assert (teacher.llm.backend, teacher.llm.tensor_parallel, teacher.llm.retry_failed) == ("vllm", 2, True)


def test_http_teacher_without_endpoint_names_the_key(tmp_path: Path) -> None:
    text = VALID.replace(VALID[VALID.index("[teacher]") : VALID.index("[student]")], LLM_TEACHER + "\n")
    assert "[teacher] endpoint: required with backend http" in error(tmp_path, text)


def test_every_student_option_is_a_manifest_key(tmp_path: Path) -> None:
    text = VALID.replace("[student]", "[student]\ntext_only = true\nseparate = true")
    student = load_manifest(write(tmp_path, text)).student
    train = student.config(TrainConfig) if student is not None else None
    assert train is not None and (train.text_only, train.separate) == (True, True)


def test_students_learn_the_labels_file_of_the_teacher(tmp_path: Path) -> None:
    student = load_manifest(write(tmp_path, VALID)).student
    train = student.config(TrainConfig) if student is not None else None
    assert train is not None and train.labels is not None
    assert train.labels.name == "sample-paragraph-labels.jsonl"


def test_the_teacher_is_not_a_student_key(tmp_path: Path) -> None:
    message = error(tmp_path, VALID.replace("[student]", '[student]\nteacher = "rules"'))
    assert "[student]: unknown key(s) 'teacher'" in message


def test_student_kind_embedding_trains_the_embedding_student(tmp_path: Path) -> None:
    from pmcurate.pipeline import annotate_steps

    manifest = load_manifest(write(tmp_path, VALID.replace("[student]", '[student]\nkind = "embedding"')))
    assert manifest.student is not None and manifest.student.config(EmbeddingConfig) is not None
    names = [step.name for step in annotate_steps(manifest)]
    assert names == ["annotate:train", "annotate:train-embedding"]


def pmc_source(keys: str) -> str:
    return VALID.replace(
        'kind = "local"\npaths = ["package:data/sample"]', f'kind = "pmc"\nall = true\n{keys}'
    )


def test_a_network_source_takes_every_option_of_its_command(tmp_path: Path) -> None:
    text = pmc_source('concurrency = 2\nrate = 4\nmax_bytes = "1MiB"\nbatch_size = 10')
    [source] = load_manifest(write(tmp_path, text)).sources
    fetch = source.fetch_config()  # type: ignore[union-attr]
    assert (fetch.concurrency, fetch.rate, fetch.max_bytes, source.batch_size) == (2, 4.0, 2**20, 10)


def test_a_key_of_another_source_kind_is_unknown(tmp_path: Path) -> None:
    text = VALID.replace(
        'kind = "local"\npaths = ["package:data/sample"]', 'kind = "europepmc"\nquery = "q"\nmedia = true'
    )
    message = error(tmp_path, text)
    assert "[sources #1]: unknown key(s) 'media'" in message and "query" in message


def test_local_sources_that_disagree_on_citations_are_refused(tmp_path: Path) -> None:
    second = '\n[[sources]]\nkind = "local"\npaths = ["package:data/sample"]\ncitations = "drop"\n'
    text = VALID.replace("\n[teacher]", second + "\n[teacher]")
    assert "[[sources]]: local sources disagree on citations (drop, marker)" in error(tmp_path, text)


@pytest.mark.parametrize(
    ("keys", "size"), [("shard_mb = 64", 64 * 2**20), ('shard_size = "64MB"', 64 * 10**6)]
)
def test_an_export_shard_size_in_mib_or_with_a_unit(tmp_path: Path, keys: str, size: int) -> None:
    assert load_manifest(write(tmp_path, VALID + keys + "\n")).exports[0].shard_size == size


def test_an_export_with_shard_mb_and_shard_size_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, VALID + 'shard_mb = 64\nshard_size = "1GB"\n')
    assert "[exports.default] shard_mb: give shard_size or shard_mb, not both" in message


def test_a_publish_repo_must_be_org_slash_name(tmp_path: Path) -> None:
    message = error(tmp_path, VALID + '\n[publish]\nrepo = "just-a-name"\n')
    assert "[publish] repo: expected ORG/NAME, got 'just-a-name'" in message


def test_checking_a_manifest_imports_neither_duckdb_nor_polars() -> None:
    """A build checks its whole manifest first, and one that stops after the harvest needs neither."""
    demo = resources.files("pmcurate") / "data" / "demo.toml"
    code = (
        "import sys\n"
        "from pmcurate.manifest import load_manifest\n"
        f"manifest = load_manifest({str(demo)!r})\n"
        "assert manifest.subsets and manifest.exports\n"
        "print(sorted({'duckdb', 'polars'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"
