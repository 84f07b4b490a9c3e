"""``pipeline.run_build``: a manifest built end to end offline, incrementally (its provenance:
``test_provenance.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pmcurate import pipeline
from pmcurate.annotate.prompt import PROMPT_HASH
from pmcurate.cli import main
from pmcurate.executor import BUILD_PRELOAD, WORKER_PRELOAD, LocalExecutor
from pmcurate.manifest import load_manifest
from pmcurate.pipeline import BuildError, BuildResult, plan_build, run_build
from tests import builds
from tests.servers.openai_server import openai_server


def _mtimes(build: Path) -> dict[str, int]:
    folders = ("tables", "models", "subsets", "dataset")
    return {
        str(p.relative_to(build)): p.stat().st_mtime_ns
        for folder in folders
        for p in (build / folder).rglob("*")
        if p.is_file()
    }


def test_manifest_builds_every_stage_offline(built: tuple[Path, Path, BuildResult]) -> None:
    _, build, result = built
    assert [s.step for s in result.steps] == [
        "harvest:local", "annotate:train", "annotate:apply", "filter:edu", "export:default",
    ]  # fmt: skip
    assert all(s.status == "ran" for s in result.steps)
    paragraphs = builds.read_table(build, "paragraphs")
    labels = builds.read_table(build, "labels")
    assert builds.read_table(build, "articles").height == len(builds.ARTICLES)
    assert labels["paragraph_id"].to_list() == paragraphs["paragraph_id"].to_list()
    shards = sorted((build / "dataset" / "data").glob("*.parquet"))
    assert (
        shards
        and sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
        == result.step("filter:edu").counts["written"]
    )
    assert (build / "dataset" / "README.md").is_file()


def test_summary_counts_drops_by_rule(built: tuple[Path, Path, BuildResult]) -> None:
    _, build, result = built
    step = result.step("filter:edu")
    summary = json.loads((build / "subsets" / "edu" / "subset.json").read_text())
    assert step.drops == {k: v for k, v in summary["counts"]["dropped"].items()}
    assert step.counts["input"] == step.counts["kept"] + sum(step.drops.values())


def test_second_run_with_no_change_does_nothing(built: tuple[Path, Path, BuildResult]) -> None:
    manifest, build, _ = built
    before = _mtimes(build)
    again = run_build(load_manifest(manifest), build, workers=1, progress=False)
    assert again.ran == []
    assert _mtimes(build) == before


def test_adding_an_article_reruns_only_what_depends_on_it(tmp_path: Path) -> None:
    inputs = builds.make_inputs(tmp_path / "inputs")
    manifest = builds.write_manifest(tmp_path / "test.toml", inputs)
    incremental = tmp_path / "incremental"
    run_build(load_manifest(manifest), incremental, workers=1, progress=False)
    before = _mtimes(incremental)
    builds.add_extra_article(inputs)

    result = run_build(load_manifest(manifest), incremental, workers=1, progress=False)

    harvest, apply = result.step("harvest:local"), result.step("annotate:apply")
    assert (harvest.counts["tasks run"], harvest.counts["of"], harvest.counts["stale shards removed"]) == (
        1,
        3,
        1,
    )
    assert result.step("annotate:train").status == "unchanged"
    assert apply.counts["shards_labelled"] == 1
    after = _mtimes(incremental)
    untouched = [name for name in before if name.startswith(("tables/", "models/")) and name in after]
    assert len(untouched) >= 2 * 5  # two earlier tasks' shards in five tables, and the models
    assert all(before[name] == after[name] for name in untouched)
    clean = run_build(load_manifest(manifest), tmp_path / "clean", workers=1, progress=False)
    builds.assert_same_build(incremental, clean.build)


def test_a_build_of_other_articles_reuses_the_students_trained_by_another(tmp_path: Path) -> None:
    manifest = builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "inputs"))
    run_build(load_manifest(manifest), tmp_path / "first", workers=1, progress=False)
    builds.add_extra_article(tmp_path / "inputs")

    second = run_build(load_manifest(manifest), tmp_path / "second", workers=1, progress=False)

    assert "from the cache" in (second.step("annotate:train").note or "")
    models = [path.name for path in (tmp_path / "first" / "models").iterdir()]
    assert all(
        (tmp_path / "first" / "models" / name).read_bytes()
        == (tmp_path / "second" / "models" / name).read_bytes()
        for name in models
    )


def test_removed_input_file_leaves_the_build(tmp_path: Path) -> None:
    inputs = builds.make_inputs(tmp_path / "inputs")
    manifest = builds.write_manifest(tmp_path / "test.toml", inputs)
    run_build(load_manifest(manifest), tmp_path / "build", workers=1, progress=False)
    (inputs / builds.ARTICLES[-1]).unlink()

    run_build(load_manifest(manifest), tmp_path / "build", workers=1, progress=False)

    articles = builds.read_table(tmp_path / "build", "articles")
    assert articles.height == len(builds.ARTICLES) - 1
    assert (
        builds.read_table(tmp_path / "build", "labels").height
        == builds.read_table(tmp_path / "build", "paragraphs").height
    )


def test_until_stops_after_the_stage(tmp_path: Path) -> None:
    manifest = builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "inputs"))
    result = run_build(
        load_manifest(manifest), tmp_path / "build", workers=1, until="harvest", progress=False
    )
    assert [s.step for s in result.steps] == ["harvest:local"]
    assert not (tmp_path / "build" / "models").exists()


@pytest.mark.parametrize(("until", "preload"), [("harvest", WORKER_PRELOAD), ("annotate", BUILD_PRELOAD)])
def test_the_pool_sets_pyarrow_up_to_read_only_for_the_stages_after_the_harvest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, until: str, preload: tuple[str, ...]
) -> None:
    made: list[LocalExecutor] = []

    def make(kind: str, workers: int | None = None, **options: Any) -> LocalExecutor:
        made.append(LocalExecutor(workers, **options))
        return made[-1]

    monkeypatch.setattr(pipeline, "make_executor", make)
    manifest = builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "inputs"))
    run_build(load_manifest(manifest), tmp_path / "build", workers=1, until=until, progress=False)
    assert [executor.preload for executor in made] == [preload]


def test_refuses_a_folder_that_is_not_a_build(tmp_path: Path) -> None:
    manifest = builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "inputs"))
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("precious")
    with pytest.raises(BuildError, match="not a pmcurate build"):
        run_build(load_manifest(manifest), tmp_path / "thesis", progress=False)


def test_cli_build_prints_summary_dataset_and_query(
    built: tuple[Path, Path, BuildResult], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, build, _ = built
    assert main(["build", str(manifest), "--out", str(build), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 of 5 steps ran" in out
    assert f"Dataset: {build / 'dataset'}" in out
    assert f'$ pmcurate query {build / "dataset"} "SELECT document_type' in out and "FROM data " in out
    assert "duckdb -c" not in out
    assert "document_type" in out and "study" in out


def test_cli_build_reports_an_invalid_manifest_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "bad.toml"
    manifest.write_text('name = "bad"\n[[sources]]\nkind = "ftp"\n')
    assert main(["build", str(manifest), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    expected = "expected one of 'local', 'pmc', 'europepmc', 'eutils', got str 'ftp'"
    assert err == f"pmcurate: error: {manifest}: [sources #1] kind: {expected}"
    assert not (tmp_path / "b").exists()


def test_llm_teacher_labels_a_sample_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-key-0123456789")
    inputs = builds.make_inputs(tmp_path / "inputs", builds.ARTICLES[:4])
    with openai_server() as (endpoint, server):
        teacher = (
            f'[teacher]\nkind = "llm"\nendpoint = "{endpoint}"\nmodel = "test-model"\n'
            'api_key_env = "TEST_LLM_KEY"\nsample_size = 40\nmin_tokens = 20\nconcurrency = 4\n'
        )
        text = builds.write_manifest(tmp_path / "test.toml", inputs).read_text()
        start, end = text.index("[teacher]"), text.index("[student]")
        (tmp_path / "test.toml").write_text(text[:start] + teacher + "\n" + text[end:])
        manifest = load_manifest(tmp_path / "test.toml")
        first = run_build(manifest, tmp_path / "build", workers=1, progress=False)
        asked = len(server.requests)
        second = run_build(manifest, tmp_path / "build", workers=1, progress=False)

    assert first.step("annotate:sample").counts["paragraphs"] == 40
    assert first.step("annotate:teacher-llm").counts["answered"] == 40 == asked
    assert set(server.authorization) == {"Bearer sk-test-key-0123456789"}
    assert second.ran == [] and len(server.requests) == asked
    provenance = json.loads((tmp_path / "build" / "provenance.json").read_text())
    assert (
        provenance["teacher"]["model"] == "test-model" and provenance["teacher"]["prompt_hash"] == PROMPT_HASH
    )
    assert "sk-test-key" not in (tmp_path / "build" / "provenance.json").read_text()


def test_a_build_copied_with_new_mtimes_reruns_nothing(
    built: tuple[Path, Path, BuildResult], tmp_path: Path
) -> None:
    manifest, build, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(build, copy, copy_function=shutil.copy)  # like `cp -r`: same bytes, new mtimes
    assert (copy / "models" / "students.json").stat().st_mtime_ns != (
        build / "models" / "students.json"
    ).stat().st_mtime_ns
    again = run_build(load_manifest(manifest), copy, workers=1, progress=False)
    assert again.ran == []


def test_a_shard_rewritten_with_other_bytes_reruns_what_reads_it(tmp_path: Path) -> None:
    manifest = builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "inputs"))
    build = tmp_path / "build"
    run_build(load_manifest(manifest), build, workers=1, progress=False)
    shard = sorted((build / "tables" / "labels").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, table.num_rows - 1), shard)  # same name, a row fewer
    again = run_build(load_manifest(manifest), build, workers=1, progress=False)
    assert "filter:edu" in again.ran


def test_card_takes_the_manifests_name_and_description(built: tuple[Path, Path, BuildResult]) -> None:
    _, build, _ = built
    text = (build / "dataset" / "README.md").read_text()
    assert "\npretty_name: test\n" in text
    assert "# test\n\nfive sample articles, quick student\n" in text


def test_card_names_the_publish_repository(tmp_path: Path) -> None:
    extra = '\n[publish]\nrepo = "someone/pmc-test"\n'
    manifest = builds.write_manifest(tmp_path / "t.toml", builds.make_inputs(tmp_path / "in"), extra=extra)
    run_build(load_manifest(manifest), tmp_path / "b", workers=1, until="export", progress=False)
    text = (tmp_path / "b" / "dataset" / "README.md").read_text()
    assert "hf://datasets/someone/pmc-test/data/*.parquet" in text and "ORG/NAME" not in text


def test_missing_hub_token_fails_before_any_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    extra = '\n[publish]\nrepo = "someone/pmc-test"\n'
    manifest = builds.write_manifest(tmp_path / "t.toml", builds.make_inputs(tmp_path / "in"), extra=extra)
    with pytest.raises(BuildError, match=r"publish: no Hugging Face token: set \$HF_TOKEN"):
        run_build(load_manifest(manifest), tmp_path / "b", workers=1, progress=False)
    assert not (tmp_path / "b").exists()
    run_build(load_manifest(manifest), tmp_path / "b", workers=1, until="export", progress=False)


def test_missing_llm_key_fails_before_any_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    text = builds.write_manifest(tmp_path / "t.toml", builds.make_inputs(tmp_path / "in")).read_text()
    start, end = text.index("[teacher]"), text.index("[student]")
    teacher = (
        '[teacher]\nkind = "llm"\nendpoint = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        'api_key_env = "TEST_LLM_KEY"\n'
    )
    (tmp_path / "t.toml").write_text(text[:start] + teacher + "\n" + text[end:])
    with pytest.raises(BuildError, match=r"\$TEST_LLM_KEY is not set"):
        run_build(load_manifest(tmp_path / "t.toml"), tmp_path / "b", workers=1, progress=False)
    assert not (tmp_path / "b").exists()


def test_a_readme_in_the_dataset_folder_not_written_by_pmcurate_stops_the_build_first(tmp_path: Path) -> None:
    manifest = builds.write_manifest(tmp_path / "t.toml", builds.make_inputs(tmp_path / "in"))
    (tmp_path / "b" / "dataset").mkdir(parents=True)
    (tmp_path / "b" / "dataset" / "README.md").write_text("mine")
    with pytest.raises(BuildError, match=r"README\.md exists and was not written by pmcurate"):
        run_build(load_manifest(manifest), tmp_path / "b", workers=1, progress=False)
    assert not (tmp_path / "b" / "tables").exists()


def test_plan_of_a_new_build_runs_every_step_and_writes_nothing(tmp_path: Path) -> None:
    manifest = builds.write_manifest(tmp_path / "t.toml", builds.make_inputs(tmp_path / "in"))
    plan = plan_build(load_manifest(manifest), tmp_path / "b")
    assert [(s.step, s.action) for s in plan.steps] == [
        ("harvest:local", "run"), ("annotate:train", "run"), ("annotate:apply", "run"),
        ("filter:edu", "run"), ("export:default", "run"),
    ]  # fmt: skip
    assert plan.steps[0].reason == "3 of 3 tasks (5 input files) to parse"
    assert not (tmp_path / "b").exists()


def test_plan_after_a_build_says_unchanged_and_after_a_new_file_what_may_run(
    built: tuple[Path, Path, BuildResult], tmp_path: Path
) -> None:
    manifest, build, _ = built
    before = _mtimes(build)
    plan = plan_build(load_manifest(manifest), build)
    assert {s.action for s in plan.steps} == {"unchanged"}
    inputs = tmp_path / "inputs"
    shutil.copytree(builds.make_inputs(tmp_path / "src"), inputs)
    builds.add_extra_article(inputs)
    changed = builds.write_manifest(tmp_path / "changed.toml", inputs)
    actions = {s.step: s.action for s in plan_build(load_manifest(changed), build).steps}
    assert actions["harvest:local"] == "run" and actions["filter:edu"] in ("run", "may run")
    assert _mtimes(build) == before


def test_cli_plan_prints_the_steps_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = builds.write_manifest(tmp_path / "t.toml", builds.make_inputs(tmp_path / "in"))
    assert main(["build", str(manifest), "--out", str(tmp_path / "b"), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "plan for build test" in out and "5 of 5 steps would run" in out
    assert "annotate:train  run" in out
    assert not (tmp_path / "b").exists()


def test_cli_build_into_a_log_draws_no_progress_bars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = builds.write_manifest(tmp_path / "t.toml", builds.make_inputs(tmp_path / "in"))
    assert main(["build", str(manifest), "--out", str(tmp_path / "b"), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "5 of 5 steps ran" in captured.out
    assert "%|" not in captured.err and "it/s" not in captured.err  # stderr is not a terminal here
    assert captured.out.count("build test →") == 1  # the summary once


def test_student_kind_distilled_labels_the_build_with_the_distilled_student(tmp_path: Path) -> None:
    """[student] kind = "distilled": fastText, the encoder (tiny settings), distillation, then the
    distilled student labels every paragraph; a second run redoes none of it."""
    manifest = builds.write_manifest(tmp_path / "test.toml", builds.make_inputs(tmp_path / "inputs"))
    text = manifest.read_text().replace(
        "[student]\n", '[student]\nkind = "distilled"\ndevice = "cpu"\nepochs = 1\nmax_tokens = 32\n'
    )
    manifest.write_text(text)
    build = tmp_path / "build"
    result = run_build(load_manifest(manifest), build, workers=1, progress=False)
    steps = {s.step: s.status for s in result.steps}
    assert steps["annotate:train-encoder"] == steps["annotate:distill"] == "ran"
    labels = builds.read_table(build, "labels")
    assert labels.height == builds.read_table(build, "paragraphs").height
    assert labels["annotator"].str.starts_with("distilled-").all()
    provenance = json.loads(result.provenance.read_text())  # type: ignore[union-attr]
    assert provenance["models"]["distilled"]["annotator"] == labels["annotator"][0]
    assert provenance["models"]["encoder"]["annotator"].startswith("encoder-")
    again = run_build(load_manifest(manifest), build, workers=1, progress=False)
    assert {s.step: s.status for s in again.steps}["annotate:distill"] == "unchanged"
