"""``pmcurate annotate`` end to end on a real build: sample → llm (local server) → train → apply."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pmcurate import cli, schema
from pmcurate.annotate import labels_file
from tests.annotate.conftest import DEV_LABELS
from tests.servers.openai_server import openai_server


def test_sample_llm_train_apply_label_every_paragraph(
    build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["annotate", "sample", str(build), "--n", "120", "--min-tokens", "32"]) == 0
    with openai_server() as (url, state):
        assert cli.main(["annotate", "llm", str(build), "--endpoint", url, "--model", "m"]) == 0
    assert len(state.requests) == 120
    teacher = labels_file.read_teacher_labels(build, "llm")
    assert teacher.height == 120 and teacher["prompt_hash"].n_unique() == 1
    assert cli.main(["annotate", "train", str(build), "--no-search", "--no-pretrain"]) == 0
    assert "majority" in capsys.readouterr().out
    assert cli.main(["annotate", "apply", str(build), "--jobs", "1"]) == 0
    labels = pl.read_parquet(schema.shard_paths(build, "labels"))
    paragraphs = pl.read_parquet(schema.shard_paths(build, "paragraphs"))
    assert labels.height == paragraphs.height


def test_train_from_a_labels_file_prints_the_report(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["annotate", "train", str(build), "--labels", str(DEV_LABELS), "--no-search", "--no-pretrain"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "macro_f1" in out and "kappa" in out and "pearson" in out


def test_rules_teacher_trains_students_offline(build: Path) -> None:
    assert cli.main(["annotate", "sample", str(build), "--n", "200", "--min-tokens", "16"]) == 0
    assert (
        cli.main(["annotate", "train", str(build), "--teacher", "rules", "--no-search", "--no-pretrain"]) == 0
    )
    assert labels_file.read_teacher_labels(build, "rules")["annotator"].unique().to_list() == ["rules-v1"]


def test_llm_without_a_sample_is_a_user_error(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["annotate", "llm", str(build), "--endpoint", "http://127.0.0.1:9/v1", "--model", "m"])
    assert code == 2 and "annotate sample" in capsys.readouterr().err


def test_apply_without_models_is_a_user_error(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["annotate", "apply", str(build)]) == 2
    assert "annotate train" in capsys.readouterr().err
