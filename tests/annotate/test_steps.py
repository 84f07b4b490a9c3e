"""``annotate.steps``: one config per step, shared by the manifest and the commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmcurate.annotate import steps
from pmcurate.cli import build_parser
from pmcurate.step import ConfigError

COMMANDS = [
    ("sample", steps.SampleConfig, []),
    ("llm", steps.LlmTeacherConfig, ["--endpoint", "http://x/v1", "--model", "m"]),
    ("train", steps.TrainConfig, []),
    ("distill", steps.DistillConfig, []),
]


@pytest.mark.parametrize(("command", "config", "argv"), COMMANDS)
def test_command_defaults_are_the_manifest_defaults(command: str, config: type, argv: list[str]) -> None:
    args = build_parser().parse_args(["annotate", command, "b", *argv])
    table = {"endpoint": "http://x/v1", "model": "m"} if command == "llm" else {}
    assert config.from_args(args) == config.from_table(table)


def test_train_command_reaches_the_encoder_settings() -> None:
    args = build_parser().parse_args(["annotate", "train", "b", "--epochs", "2", "--text-only"])
    config = steps.EncoderConfig.from_args(args)
    assert (config.epochs, config.text_only, config.device) == (2, True, "auto")


def test_vllm_backend_refuses_a_token_budget() -> None:
    with pytest.raises(ConfigError, match="max_tokens, max_cost: apply to backend http only"):
        steps.LlmTeacherConfig(model="m", backend="vllm", max_tokens=10)


def test_command_errors_name_the_flags() -> None:
    args = build_parser().parse_args(["annotate", "llm", "b", "--model", "m", "--max-cost", "1"])
    with pytest.raises(ConfigError, match=r"^--endpoint: required with --backend http$"):
        steps.LlmTeacherConfig.from_args(args)


def test_encoder_fingerprint_ignores_the_device(tmp_path: Path) -> None:
    from pmcurate.step import Build

    build = Build(tmp_path)
    cpu = steps.TrainEncoderStep(steps.EncoderConfig(device="cpu")).fingerprint(build)
    assert cpu == steps.TrainEncoderStep(steps.EncoderConfig(device="cuda")).fingerprint(build)
    assert cpu != steps.TrainEncoderStep(steps.EncoderConfig(epochs=3)).fingerprint(build)
