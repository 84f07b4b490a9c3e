"""``annotate:apply`` as a step: tasks by size, parts joined in row order, resumable, one labels
table whatever the split; and the vectorized scoring it runs, checked row by row."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import fasttext
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from pmcurate import schema
from pmcurate.annotate import apply_steps, rules, student


@pytest.fixture
def applied(trained_build: Path, tmp_path: Path) -> Path:
    """A copy of the trained build labelled with one task per shard (the reference)."""
    build = tmp_path / "reference"
    shutil.copytree(trained_build, build)
    apply_steps.apply(build, workers=1, progress=False)
    return build


def _labels(build: Path) -> dict[str, pl.DataFrame]:
    return {path.name: pl.read_parquet(path) for path in schema.shard_paths(build, "labels")}


def _copy(trained_build: Path, tmp_path: Path) -> Path:
    build = tmp_path / "build"
    shutil.copytree(trained_build, build)
    return build


def test_task_size_is_a_sixteenth_of_the_build_within_bounds() -> None:
    assert apply_steps.rows_per_task(100) == apply_steps.MIN_TASK_ROWS
    assert apply_steps.rows_per_task(16 * 10_000, workers=2) == 10_000
    assert apply_steps.rows_per_task(10**9) == apply_steps.MAX_TASK_ROWS


def test_one_worker_cuts_only_shards_larger_than_the_largest_task() -> None:
    assert apply_steps.rows_per_task(16 * 10_000, workers=1) == apply_steps.MAX_TASK_ROWS
    assert apply_steps.rows_per_task(30_000, workers=1) == 30_000


def test_shards_that_share_out_evenly_are_not_cut() -> None:
    assert apply_steps.task_size([37_625, 37_625], workers=2) == 37_625
    assert apply_steps.task_size([40_000] * 4 + [1_000], workers=2) == 40_000


def test_shards_are_cut_as_coarsely_as_lets_the_workers_finish_together() -> None:
    assert apply_steps.task_size([37_625], workers=2) == 18_813
    assert apply_steps.task_size([5_000] * 3, workers=2) == 2_500
    assert apply_steps.finishing_time([5_000] * 3, 2_500, workers=2) == 7_500


def test_shards_too_uneven_for_any_coarser_cut_get_the_finest() -> None:
    assert apply_steps.task_size([300] * 5, workers=2) == apply_steps.MIN_TASK_ROWS
    assert apply_steps.task_size([200_000, 10], workers=1) == apply_steps.MAX_TASK_ROWS


def test_a_large_shard_is_cut_into_contiguous_parts_of_equal_size(tmp_path: Path) -> None:
    source = tmp_path / "p.parquet"
    source.write_bytes(b"x")
    tasks = apply_steps.split_shard(source, tmp_path / "l.parquet", 1_000, 300, "fasttext-1")
    assert [(t.start, t.stop) for t in tasks] == [(0, 250), (250, 500), (500, 750), (750, 1_000)]
    assert len({Path(t.part or "").parent for t in tasks}) == 1
    whole = apply_steps.split_shard(source, tmp_path / "l.parquet", 299, 300, "fasttext-1")
    assert [(t.start, t.stop, t.part) for t in whole] == [(0, 299, None)]


def test_labels_are_the_same_whether_shards_are_cut_or_not(
    trained_build: Path, applied: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = _copy(trained_build, tmp_path)
    monkeypatch.setattr(apply_steps, "MAX_TASK_ROWS", 40)  # shards of 137–181 rows: 4–5 parts each
    report = apply_steps.apply(build, workers=1, progress=False)
    shards = schema.shard_paths(build, "paragraphs")
    assert report.counts["shards_labelled"] == len(shards)
    assert not (schema.table_dir(build, "labels") / apply_steps.PARTS).exists()
    cut, whole = _labels(build), _labels(applied)
    assert cut.keys() == whole.keys()
    for name, frame in cut.items():
        assert frame.equals(whole[name]), name
        assert (
            frame["paragraph_id"].to_list()
            == pl.read_parquet(schema.table_dir(build, "paragraphs") / name, columns=["paragraph_id"])[
                "paragraph_id"
            ].to_list()
        )


def test_two_workers_label_as_one_process(
    trained_build: Path, applied: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = _copy(trained_build, tmp_path)
    monkeypatch.setattr(apply_steps, "MIN_TASK_ROWS", 50)  # read by plan(), in this process
    apply_steps.apply(build, workers=2, progress=False)
    two, one = _labels(build), _labels(applied)
    assert two.keys() == one.keys() and all(two[n].equals(one[n]) for n in one)


def test_killed_apply_keeps_the_parts_written_and_resumes_after_them(
    trained_build: Path, applied: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = _copy(trained_build, tmp_path)
    monkeypatch.setattr(apply_steps, "MAX_TASK_ROWS", 40)
    label = student.Students.label
    calls: list[int] = []

    def interrupted(self: student.Students, paragraphs: pl.DataFrame) -> Any:
        calls.append(paragraphs.height)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return label(self, paragraphs)

    with monkeypatch.context() as patch:
        patch.setattr(student.Students, "label", interrupted)
        with pytest.raises(KeyboardInterrupt):
            apply_steps.apply(build, workers=1, progress=False)
    parts = list((schema.table_dir(build, "labels") / apply_steps.PARTS).rglob("*.parquet"))
    assert len(parts) == 2
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in schema.shard_paths(build, "paragraphs"))
    rest = apply_steps.apply(build, workers=1, progress=False)
    assert rest.counts["paragraphs_labelled"] == total - sum(calls[:2])
    resumed, reference = _labels(build), _labels(applied)
    assert resumed.keys() == reference.keys() and all(resumed[n].equals(reference[n]) for n in reference)


def test_parts_of_another_student_and_labels_of_removed_shards_are_removed(
    trained_build: Path, tmp_path: Path
) -> None:
    build = _copy(trained_build, tmp_path)
    labels = schema.table_dir(build, "labels")
    stale = labels / apply_steps.PARTS / "gone.0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "000000000000-000000000010.parquet").write_bytes(b"old")
    orphan = labels / "removed-shard.parquet"
    orphan.write_bytes(b"old")
    apply_steps.apply(build, workers=1, progress=False)
    assert not orphan.exists() and not (labels / apply_steps.PARTS).exists()
    names = {p.name for p in schema.shard_paths(build, "labels")}
    assert names == {p.name for p in schema.shard_paths(build, "paragraphs")}


def test_a_plan_before_training_says_apply_will_run(fixture_build: Path) -> None:
    from pmcurate.annotate.apply_config import ApplyConfig
    from pmcurate.step import Build, run_step

    build = Build.open(fixture_build, plan=True)
    report = run_step(apply_steps.ApplyStep(ApplyConfig()), build)
    assert report.status == "planned"
    assert build.plan is not None
    assert build.plan[-1].action == "run" and "once the students exist" in build.plan[-1].reason


def test_predict_scores_put_each_label_in_its_column(trained_build: Path) -> None:
    model = fasttext.load_model(str(trained_build / "models" / "document_type.bin"))
    texts = ["a 54 year old woman presented with fever", "we review the literature", "", "x y z"]
    scores = student.predict_scores(model, texts, student.TASKS["document_type"])
    for row, text in enumerate(texts):
        labels, probs = model.predict(text, k=-1)
        expected = np.zeros(len(student.TASKS["document_type"]), np.float32)
        for label, prob in zip(labels, probs, strict=True):
            expected[student.TASKS["document_type"].index(label.removeprefix("__label__"))] = prob
        assert np.array_equal(scores[row], expected), text


def test_rules_prior_is_the_rules_label_of_each_row() -> None:
    frame = pl.DataFrame(
        {
            "article_type": ["case-report", "case-report", None, "review-article", "editorial"],
            "section_type": ["case", "discussion", None, "other", "introduction"],
            "section_title": ["Case presentation", "Discussion", None, None, "Funding"],
        }
    )
    priors = student.rules_priors(frame, list(student.TASKS))
    for row, context in enumerate(frame.iter_rows()):
        answer = rules.rules_label(*context)
        for task, classes in student.TASKS.items():
            assert classes[int(priors[task][row].argmax())] == str(answer[task]), (row, task)
            assert priors[task][row].sum() == 1.0


def test_model_lines_give_fasttext_the_tokens_of_model_input() -> None:
    frame = pl.DataFrame(
        {
            "text": ["  A 54-Year-old Woman – presented.  ", "(Σ) ΣΑΣ İstanbul…", None, "plain"],
            "article_type": ["Case Report", None, "review-article", None],
            "section_type": ["case", None, "other", "methods"],
            "section_title": [" Case–Presentation ", None, "", "Methods"],
        }
    )
    whitespace = " \n\r\t\v\f\x00"  # what fastText splits words on
    for context in (True, False):
        lines = [line.decode() for line in student.model_lines(frame, context=context)]
        inputs = student.model_input(frame, context=context).to_list()
        assert all(line.endswith("\n") and "\n" not in line[:-1] for line in lines)
        for line, text in zip(lines, inputs, strict=True):
            split = lambda s: "".join(" " if c in whitespace else c for c in s).split(" ")  # noqa: E731
            assert [w for w in split(line) if w] == [w for w in split(text) if w], (context, text)
