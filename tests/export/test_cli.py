"""``pmcurate export`` and ``pmcurate publish`` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import constants

from pmcurate.cli import main
from tests.servers.hub_server import running_hub


def test_export_command_writes_shards_and_card(build: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    code = main(["export", str(build), "--out", str(out), "--preset", "image-text", "--split-by", "none",
                 "--shard-size", "30KB", "--no-progress"])  # fmt: skip
    assert code == 0
    assert len(list((out / "data").glob("train-*-of-*.parquet"))) > 1
    assert (out / "README.md").is_file()
    printed = capsys.readouterr().out
    assert "46 rows" in printed and "left out: 5 rows without an image" in printed


def test_export_command_reports_user_errors(build: Path, tmp_path: Path, capsys) -> None:
    code = main(["export", str(build), "--out", str(tmp_path), "--subset", "nope", "--no-progress"])
    assert code == 2
    assert "no subset 'nope'" in capsys.readouterr().err


def test_publish_dry_run_prints_the_plan(build: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    out = tmp_path / "ds"
    main(["export", str(build), "--out", str(out), "--no-progress"])
    capsys.readouterr()
    with running_hub({"hf_w": ("alice", "write")}) as (url, state):
        monkeypatch.setenv("HF_TOKEN", "hf_w")
        code = main(["publish", str(out), "--repo", "alice/ds", "--endpoint", url, "--dry-run"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "add       data/commercial-00000-of-00001.parquet" in printed
    assert "0 update" in printed and "would send" in printed
    assert "hf_w" not in printed and state.repos == {}


def test_export_into_a_folder_with_someone_elses_readme_stops_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], build: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    assert main(["export", str(build), "--out", str(out)]) == 2
    assert "was not written by pmcurate" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]
