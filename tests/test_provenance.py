"""``provenance``: what a build leaves behind, ``BUILD/provenance.json`` and the summary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pmcurate.manifest import load_manifest
from pmcurate.pipeline import BuildResult, run_build
from pmcurate.provenance import format_summary
from pmcurate.step import StepReport
from tests import builds


def test_provenance_lists_what_reproduces_the_build(built: tuple[Path, Path, BuildResult]) -> None:
    manifest, build, result = built
    provenance = json.loads(result.provenance.read_text())  # type: ignore[union-attr]
    assert provenance["manifest"]["sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert provenance["manifest"]["text"] == manifest.read_text()
    assert provenance["tool"]["version"] and "pyarrow" in provenance["tool"]["packages"]
    inputs = {Path(i["path"]).name: i["sha256"] for i in provenance["inputs"]}
    expected = {n: hashlib.sha256((builds.SAMPLE / n).read_bytes()).hexdigest() for n in builds.ARTICLES}
    assert inputs == expected
    assert provenance["teacher"]["labels"]["sha256"] == hashlib.sha256(builds.LABELS.read_bytes()).hexdigest()
    for entry in provenance["models"]["models"].values():
        assert entry["sha256"] == hashlib.sha256((build / "models" / entry["file"]).read_bytes()).hexdigest()
    for table in ("articles", "paragraphs", "labels"):
        assert provenance["tables"][table]["rows"] == builds.read_table(build, table).height
    exported = provenance["exports"]["default"]
    for entry in exported:
        data = (build / "dataset" / "data" / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_provenance_holds_no_secret(
    built: tuple[Path, Path, BuildResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, build, _ = built
    monkeypatch.setenv("HF_TOKEN", "hf_not-a-real-token-123456")
    monkeypatch.setenv("PMCURATE_LLM_API_KEY", "sk-not-a-real-key-abcdef")
    result = run_build(load_manifest(manifest), build, workers=1, progress=False)
    text = result.provenance.read_text()  # type: ignore[union-attr]
    assert "hf_not-a-real-token" not in text and "sk-not-a-real-key" not in text


def test_the_summary_lists_each_step_with_its_drops_by_reason(built: tuple[Path, Path, BuildResult]) -> None:
    _, build, result = built
    steps = [
        StepReport("harvest:local", "unchanged", 0.3, {"articles": 1234, "sha256": 7}),
        StepReport("filter:edu", "ran", 1.5, {"kept": 10}, {"min_words": 3, "edu_min": 40}),
    ]
    summary = BuildResult(result.manifest, build, "local", 2, steps, 2.0, build / "provenance.json")
    assert format_summary(summary).splitlines() == [
        f"build test → {build}  (local, 2 workers)",
        "  harvest:local  unchanged     0.3 s  articles 1,234",
        "  filter:edu     ran           1.5 s  kept 10",
        "                                      dropped: edu_min 40, min_words 3",
        f"1 of 2 steps ran, 2.0 s; provenance: {build / 'provenance.json'}",
    ]
