"""The fine-tuned encoder student (extra ``encoder``, installed by ``dev``): tiny settings (short
inputs, few steps) keep these tests to seconds on two cores; the full-quality numbers come from
``bench/students.py``. The CUDA path's logic (bf16 autocast, token-budget batches, overlapped
tokenization) runs here on the CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from pmcurate import cli, schema
from pmcurate.annotate import apply_steps, encoder, report, student
from pmcurate.annotate.apply_config import ApplyConfig
from pmcurate.step import StepFailed, StepReport
from tests.annotate.conftest import DEV_LABELS, TINY, plain_rows


@pytest.fixture(scope="module")
def applied_build(
    encoder_build: tuple[Path, encoder.EncoderResult], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, StepReport]:
    build = tmp_path_factory.mktemp("encoder-applied") / "build"
    shutil.copytree(encoder_build[0], build)
    return build, _apply(build)


def _apply(build: Path) -> StepReport:
    return apply_steps.apply(build, ApplyConfig(student="encoder", device="cpu"), progress=False)


def _model(build: Path) -> tuple[Any, encoder.MultiTask]:
    return encoder.load_model(build / "models" / encoder.FOLDER, torch.device("cpu"))


# ---------------------------------------------------------------- pieces


def test_score_distribution_has_the_score_as_expected_value() -> None:
    values = np.array([1.0, 2.4, 3.0, 4.75, 5.0, 0.2, 7.0])
    dist = encoder.score_distribution(values)
    _, expected = student.decide("educational_score", dist)
    assert expected is not None
    assert np.allclose(expected, np.clip(values, 1, 5), atol=1e-6)
    assert np.allclose(dist.sum(axis=1), 1.0) and (dist >= 0).all()


def test_token_batches_cover_every_row_once_within_the_budget() -> None:
    lengths = [5, 300, 17, 64, 64, 2, 130, 9, 33, 1]
    batches = encoder.token_batches(lengths, batch_tokens=256, max_rows=3)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for batch in batches:
        padded = -(-max(lengths[i] for i in batch) // 8) * 8
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * padded <= 256
    assert [lengths[i] for i in batches[0]] == [300]  # longer than the budget: alone, first


def test_pad_masks_only_the_real_tokens() -> None:
    ids, mask = encoder.pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.shape == (2, 8) and ids[0, :3].tolist() == [5, 6, 7] and ids[1, 1:].eq(0).all()
    assert mask.sum(dim=1).tolist() == [3, 1]


def test_encoder_reads_article_type_and_section_title_before_the_text() -> None:
    frame = pl.DataFrame(
        {
            "text": ["A woman, 54.", "Cells grew."],
            "article_type": ["case-report", None],
            "section_title": ["Case presentation", None],
        }
    )
    assert encoder.encoder_input(frame, context=True) == [
        "case report | Case presentation | A woman, 54.",
        "Cells grew.",
    ]
    assert encoder.encoder_input(frame, context=False) == ["A woman, 54.", "Cells grew."]


def test_class_weights_balance_present_classes_and_ignore_absent_ones() -> None:
    weights = encoder.class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[2] == 0
    assert weights[0] * 3 == pytest.approx(weights[1] * 1)  # each class weighs the same in all


def test_prefetch_yields_in_order_and_raises_the_producers_error() -> None:
    assert list(encoder.prefetch(iter(range(50)), depth=2)) == list(range(50))

    def failing() -> Any:
        yield 1
        raise OSError("disk gone")

    out = []
    with pytest.raises(OSError, match="disk gone"):
        for item in encoder.prefetch(failing(), depth=2):
            out.append(item)
    assert out == [1]


def test_prefetch_stops_its_thread_when_the_consumer_stops() -> None:
    produced = []

    def numbers() -> Any:
        for i in range(1000):
            produced.append(i)
            yield i

    for item in encoder.prefetch(numbers(), depth=2):
        if item == 3:
            break
    assert len(produced) < 10  # the thread stopped a few items ahead, not at 1000


def test_device_cuda_without_a_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # the error is for machines without one
    with pytest.raises(encoder.CudaUnavailable, match="no GPU"):
        encoder.resolve_device("cuda")
    assert encoder.resolve_device("auto").type == "cpu"


def test_a_folder_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(student.StudentError, match="not a Hugging Face model folder"):
        encoder.load_backbone(tmp_path)


# ---------------------------------------------------------------- predicting


def test_token_budget_batches_give_the_scores_of_one_paragraph_at_a_time(
    encoder_build: tuple[Path, encoder.EncoderResult], dev_labels: pl.DataFrame
) -> None:
    """Padding, the attention mask, mean pooling and the unsorting of rows: batching changes nothing."""
    tokenizer, model = _model(encoder_build[0])
    ids = encoder.tokenize(tokenizer, dev_labels["text"].to_list()[:40], 32)
    cpu = torch.device("cpu")
    batched = encoder.predict(model, ids, cpu, tokenizer.pad_token_id, encoder.ApplyConfig(batch_tokens=512))
    alone = encoder.predict(model, ids, cpu, tokenizer.pad_token_id, encoder.ApplyConfig(max_rows=1))
    for task in student.TASKS:
        assert np.allclose(batched[task], alone[task], atol=1e-4), task


def test_bf16_autocast_of_the_gpu_path_agrees_with_float32_on_cpu(
    encoder_build: tuple[Path, encoder.EncoderResult], dev_labels: pl.DataFrame
) -> None:
    tokenizer, model = _model(encoder_build[0])
    ids = encoder.tokenize(tokenizer, dev_labels["text"].to_list()[:64], 32)
    cpu = torch.device("cpu")
    full = encoder.predict(model, ids, cpu, tokenizer.pad_token_id, encoder.ApplyConfig(bf16=False))
    half = encoder.predict(model, ids, cpu, tokenizer.pad_token_id, encoder.ApplyConfig(bf16=True))
    for task in ("document_type", "domain"):
        same = (full[task].argmax(axis=1) == half[task].argmax(axis=1)).mean()
        assert same >= 0.9, task
        assert not np.array_equal(full[task], half[task])  # bf16 did run: the numbers moved
    _, e_full = student.decide("educational_score", full["educational_score"])
    _, e_half = student.decide("educational_score", half["educational_score"])
    assert e_full is not None and e_half is not None and np.abs(e_full - e_half).max() < 0.25


def test_encoder_loads_with_sdpa_attention(encoder_build: tuple[Path, encoder.EncoderResult]) -> None:
    _, model = _model(encoder_build[0])
    assert model.backbone.config._attn_implementation == "sdpa"


def test_bf16_is_on_by_default_on_cuda_only() -> None:
    assert encoder.bf16_enabled(torch.device("cuda"), None)
    assert not encoder.bf16_enabled(torch.device("cpu"), None)
    assert encoder.bf16_enabled(torch.device("cpu"), True)
    assert not encoder.bf16_enabled(torch.device("cuda"), False)


# ---------------------------------------------------------------- training


def test_report_compares_with_the_fasttext_students_on_the_same_held_out_rows(
    encoder_build: tuple[Path, encoder.EncoderResult],
) -> None:
    build, result = encoder_build
    fasttext = json.loads((build / "models" / "report.json").read_text())
    for key in ("teacher", "n_train", "n_validation", "n_test", "n_test_articles"):
        assert result.report[key] == fasttext[key], key
    for task in student.TASKS:
        assert {"student", "majority", "rules"} <= set(result.report["labels"][task]), task
    table = report.side_by_side(build)
    assert "fasttext" in table and "encoder" in table and "educational_score pearson" in table


def test_training_stops_early_and_records_each_epoch(
    encoder_build: tuple[Path, encoder.EncoderResult],
) -> None:
    result = encoder_build[1].report
    assert 1 <= len(result["history"]) <= TINY.epochs
    assert all("validation" in epoch and epoch["loss"] > 0 for epoch in result["history"])
    best = max(result["history"], key=lambda e: e["validation"])
    assert result["chosen"]["best_epoch"] == best["epoch"]


def test_model_and_manifest_are_written_with_each_files_sha256(
    encoder_build: tuple[Path, encoder.EncoderResult],
) -> None:
    build, result = encoder_build
    assert result.manifest is not None
    folder = build / "models" / encoder.FOLDER
    assert result.manifest["annotator"].startswith("encoder-")
    assert "heads.safetensors" in result.manifest["files"]
    assert any(name.endswith("model.safetensors") for name in result.manifest["files"])
    for name, digest in result.manifest["files"].items():
        assert student.sha256_file(folder / name) == digest
    assert (folder / encoder.HELDOUT / encoder.HEADS).is_file()
    assert encoder.load_manifest(build) == json.loads((folder / student.MANIFEST).read_text())


def test_fine_tuning_learns_labels_its_texts_state_plainly(tmp_path: Path) -> None:
    """Each class a sentence of its own: held-out agreement near perfect, unless rows, targets
    and heads were paired wrongly or the loss does not reach the encoder."""
    rows = plain_rows(24)
    result = encoder.train_encoder_student(
        tmp_path,
        pl.DataFrame(rows),
        teacher_name="plain",
        config=encoder.TrainConfig(epochs=4, max_tokens=32, head_lr=5e-3, batch_size=8),
        device="cpu",
        write=False,
        speed_texts=0,
        progress=False,
    )
    assert result.report["labels"]["document_type"]["student"]["accuracy"] > 0.9
    assert result.report["labels"]["educational_score"]["student"]["pearson"] > 0.8
    assert not (tmp_path / "models").exists()  # write=False writes nothing


def test_ctrl_c_during_training_leaves_no_model_behind(
    fixture_build: Path, dev_labels: pl.DataFrame, tmp_path: Path
) -> None:
    build = tmp_path / "build"
    shutil.copytree(fixture_build, build)

    def interrupt(step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encoder.train_encoder_student(
            build,
            dev_labels,
            teacher_name="dev",
            config=TINY,
            device="cpu",
            progress=False,
            on_step=interrupt,
        )
    assert not (build / "models").exists() or not any((build / "models").iterdir())


# ---------------------------------------------------------------- applying


def test_apply_labels_every_paragraph_with_the_labels_schema(
    applied_build: tuple[Path, StepReport],
) -> None:
    build, result = applied_build
    paragraphs = pl.read_parquet(schema.shard_paths(build, "paragraphs"), columns=["paragraph_id"])
    labels = pl.read_parquet(schema.shard_paths(build, "labels"))
    assert result.counts["paragraphs_labelled"] == paragraphs.height and result.counts["shards_labelled"] == 3
    assert sorted(labels["paragraph_id"]) == sorted(paragraphs["paragraph_id"])
    assert labels["annotator"].str.starts_with("encoder-").all()
    assert labels["educational_score"].is_between(1.0, 5.0).all()
    for path in schema.shard_paths(build, "labels"):
        assert pq.read_schema(path).equals(schema.LABELS)


def test_apply_gives_the_labels_of_the_student_itself(
    applied_build: tuple[Path, StepReport],
) -> None:
    """The pipelined apply (read, tokenize ahead, token batches, write per shard) labels each
    paragraph as ``EncoderStudent.label`` does on the same rows."""
    build, _ = applied_build
    source = schema.shard_paths(build, "paragraphs")[0]
    frame = pl.read_parquet(source).join(student.article_types(source), on="article_id", how="left")
    labeller = encoder.EncoderStudent.load(
        build / "models" / encoder.FOLDER, encoder.load_manifest(build), device="cpu"
    )
    direct = pl.from_arrow(labeller.label(frame))
    written = pl.read_parquet(build / "tables" / "labels" / source.name)
    assert isinstance(direct, pl.DataFrame)
    joined = direct.join(written, on="paragraph_id", suffix="_w")
    assert joined.height == frame.height
    assert (joined["document_type"] == joined["document_type_w"]).all()
    assert (joined["educational_score"] - joined["educational_score_w"]).abs().max() < 1e-4


def test_apply_mixes_the_rules_prior_by_the_weights_chosen_on_validation(
    encoder_build: tuple[Path, encoder.EncoderResult],
) -> None:
    build, _ = encoder_build
    manifest = encoder.load_manifest(build)
    assert set(manifest["rules_weights"]) == set(student.TASKS)
    assert set(manifest["rules_weights"].values()) <= set(student.RULES_WEIGHTS)
    source = schema.shard_paths(build, "paragraphs")[0]
    frame = pl.read_parquet(source).join(student.article_types(source), on="article_id", how="left")
    labeller = encoder.EncoderStudent.load(build / "models" / encoder.FOLDER, manifest, device="cpu")
    labeller.rules_weights = dict.fromkeys(student.TASKS, 0.0)
    alone = labeller.label(frame).column("document_type_scores").to_pylist()
    labeller.rules_weights["document_type"] = 0.45
    mixed = labeller.label(frame).column("document_type_scores").to_pylist()
    prior = student.rules_scores(frame, "document_type")
    classes = student.TASKS["document_type"]
    plain = np.array([[row[c] for c in classes] for row in alone])
    got = np.array([[row[c] for c in classes] for row in mixed])
    assert np.allclose(got, student.blend(plain, prior, 0.45), atol=1e-6)
    assert not np.allclose(got, plain)


def test_apply_again_skips_shards_labelled_by_the_same_student(
    applied_build: tuple[Path, StepReport],
) -> None:
    build, first = applied_build
    again = _apply(build)
    assert again.counts["shards_labelled"] == 0 and first.counts["shards_labelled"] == first.counts["shards"]


def test_killed_apply_resumes_at_the_first_shard_not_written(
    encoder_build: tuple[Path, encoder.EncoderResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the model labels its second batch (the second shard's)."""
    build = tmp_path / "build"
    shutil.copytree(encoder_build[0], build)
    calls = []
    label_tokens = encoder.EncoderStudent.label_tokens

    def interrupting(self: encoder.EncoderStudent, paragraphs: pl.DataFrame, ids: list[list[int]]) -> Any:
        calls.append(len(ids))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return label_tokens(self, paragraphs, ids)

    with monkeypatch.context() as patch:
        patch.setattr(encoder.EncoderStudent, "label_tokens", interrupting)
        with pytest.raises(KeyboardInterrupt):
            _apply(build)
    assert len(schema.shard_paths(build, "labels")) == 1
    assert not list((build / "tables" / "labels").glob(".tmp-*"))
    rest = _apply(build)
    assert rest.counts["shards_labelled"] == 2 and rest.counts["shards"] == 3
    assert len(schema.shard_paths(build, "labels")) == 3


def test_apply_refuses_a_model_file_whose_sha256_changed(
    encoder_build: tuple[Path, encoder.EncoderResult], tmp_path: Path
) -> None:
    build = tmp_path / "build"
    shutil.copytree(encoder_build[0], build)
    heads = build / "models" / encoder.FOLDER / encoder.HEADS
    heads.write_bytes(heads.read_bytes() + b"x")
    with pytest.raises(StepFailed, match=r"annotate:apply: .*sha256"):
        _apply(build)


# ---------------------------------------------------------------- command line


def test_cli_apply_on_cuda_without_a_gpu_is_a_one_line_error(
    encoder_build: tuple[Path, encoder.EncoderResult], capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = cli.main(["annotate", "apply", str(encoder_build[0]), "--student", "encoder", "--device", "cuda"])
    assert code == 2 and "no GPU" in capsys.readouterr().err


def test_cli_train_with_an_encoder_folder_that_is_not_a_model(
    build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "annotate",
            "train",
            str(build),
            "--labels",
            str(DEV_LABELS),
            "--student",
            "encoder",
            "--encoder",
            str(tmp_path),
        ]
    )
    assert code == 2 and "not a Hugging Face model folder" in capsys.readouterr().err
