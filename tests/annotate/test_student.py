from __future__ import annotations

import json
import random
from pathlib import Path

import fasttext
import polars as pl
import pyarrow.parquet as pq
import pytest

from pmcurate import schema
from pmcurate.annotate import apply_steps, student
from pmcurate.filters import language
from pmcurate.step import StepFailed
from tests.annotate.conftest import SMALL_GRID


def test_student_beats_majority_class_on_held_out_articles(trained_build: Path) -> None:
    report = json.loads((trained_build / "models" / "report.json").read_text())
    for label in ("document_type", "domain"):
        block = report["labels"][label]
        for predictor in ("student", "fasttext_alone"):  # with and without the rules prior
            result = block.get(predictor, block["student"])
            assert result["macro_f1"] > block["majority"]["macro_f1"] + 0.1, (label, predictor)
            assert result["kappa"] > 0.1, (label, predictor)
    edu = report["labels"]["educational_score"]
    for predictor in ("student", "fasttext_alone"):
        pearson = edu.get(predictor, edu["student"])["pearson"]
        assert pearson is not None and pearson > 0.2, predictor


def test_held_out_rows_come_from_articles_never_trained_on(dev_labels: pl.DataFrame) -> None:
    rest, held = student.split_by_article(dev_labels, 0.25, seed=0)
    assert set(rest["article_id"]).isdisjoint(held["article_id"])
    assert 0.15 * dev_labels.height < held.height < 0.4 * dev_labels.height


def test_cross_validation_holds_out_every_article_exactly_once(dev_labels: pl.DataFrame) -> None:
    teacher = student.prepared_teacher(dev_labels)
    folds = student.article_folds(teacher, 4, seed=0)
    held = [a for fold in folds for a in fold]
    assert sorted(held) == sorted(teacher["article_id"].unique().to_list())
    rows = [student.evaluation_splits(teacher, 0.25, 0.25, 0, fold=(i, 4)).test.height for i in range(4)]
    assert sum(rows) == teacher.height
    assert max(rows) < 2 * min(rows)  # about equal rows per fold


def test_a_cross_validation_fold_trains_on_other_articles_only(dev_labels: pl.DataFrame) -> None:
    teacher = student.prepared_teacher(dev_labels)
    splits = student.evaluation_splits(teacher, 0.25, 0.25, 0, fold=(1, 4))
    test = set(splits.test["article_id"])
    assert test == set(student.article_folds(teacher, 4, seed=0)[1])
    assert not test & (set(splits.train["article_id"]) | set(splits.validation["article_id"]))
    assert not set(splits.train["article_id"]) & set(splits.validation["article_id"])


def test_cross_validation_folds_change_with_the_seed(dev_labels: pl.DataFrame) -> None:
    teacher = student.prepared_teacher(dev_labels)
    assert student.article_folds(teacher, 4, seed=0) != student.article_folds(teacher, 4, seed=1)


def test_more_folds_than_articles_is_an_error(dev_labels: pl.DataFrame) -> None:
    teacher = student.prepared_teacher(dev_labels)
    with pytest.raises(student.StudentError, match="folds"):
        student.article_folds(teacher, teacher["article_id"].n_unique() + 1, seed=0)


def test_models_are_written_with_their_sha256(trained_build: Path) -> None:
    manifest = student.load_manifest(trained_build)
    for task, entry in manifest["models"].items():
        path = trained_build / "models" / entry["file"]
        assert student.sha256_file(path) == entry["sha256"], task
    assert manifest["vectors"]["sha256"] == student.sha256_file(trained_build / "models" / "vectors.vec")


def test_fasttext_predicts_a_single_string(trained_build: Path) -> None:
    model = fasttext.load_model(str(trained_build / "models" / "document_type.bin"))
    labels, probs = model.predict("a 54 year old woman presented with fever", k=-1)
    assert labels[0].startswith("__label__") and abs(float(probs.sum()) - 1.0) < 1e-3


def test_oversampling_raises_rare_classes_to_the_balance_target() -> None:
    import random

    rows = [("study", f"s{i}") for i in range(20)] + [("other", "o1"), ("other", "o2")]
    counts: dict[str, int] = {}
    for label, _ in student._oversample(rows, 0.5, random.Random(0)):
        counts[label] = counts.get(label, 0) + 1
    assert counts == {"study": 20, "other": 10}


def test_educational_score_is_the_expected_value_of_the_classes() -> None:
    import numpy as np

    top, expected = student.decide(
        "educational_score", np.array([[0.0, 0.5, 0.5, 0.0, 0.0]], dtype=np.float32)
    )
    assert expected is not None and abs(float(expected[0]) - 2.5) < 1e-6 and top == ["2"]


def test_apply_labels_every_paragraph_with_the_labels_schema(trained_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "b"
    import shutil

    shutil.copytree(trained_build, build)
    result = apply_steps.apply(build, workers=1, progress=False)
    paragraphs = pl.scan_parquet(schema.shard_paths(build, "paragraphs")).select("paragraph_id").collect()
    labels = pl.read_parquet(schema.shard_paths(build, "labels"))
    assert result.counts["paragraphs_labelled"] == paragraphs.height
    assert sorted(labels["paragraph_id"]) == sorted(paragraphs["paragraph_id"])
    for path in schema.shard_paths(build, "labels"):
        assert pq.read_schema(path).equals(schema.LABELS)
    texts = pl.read_parquet(schema.shard_paths(build, "paragraphs"), columns=["paragraph_id", "text"])
    computed = labels.join(texts, on="paragraph_id")
    assert computed["language"].to_list() == [language.detect(t) for t in computed["text"]]
    assert labels["educational_score"].is_between(1, 5).all()
    scores = labels.select(pl.sum_horizontal(pl.col("document_type_scores").struct.unnest()).alias("s"))["s"]
    assert ((scores - 1).abs() < 1e-3).all()
    assert labels["annotator"].unique().to_list() == [student.load_manifest(build)["annotator"]]


def test_apply_on_two_processes_matches_one(trained_build: Path, tmp_path: Path) -> None:
    import shutil

    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(trained_build, one)
    shutil.copytree(trained_build, two)
    apply_steps.apply(one, workers=1, progress=False)
    apply_steps.apply(two, workers=2, progress=False)
    read = lambda b: pl.read_parquet(schema.shard_paths(b, "labels")).sort("paragraph_id")  # noqa: E731
    assert read(one).equals(read(two))


def test_apply_rerun_skips_shards_labelled_by_the_same_models(trained_build: Path, tmp_path: Path) -> None:
    import shutil

    build = tmp_path / "b"
    shutil.copytree(trained_build, build)
    first = apply_steps.apply(build, workers=1, progress=False)
    again = apply_steps.apply(build, workers=1, progress=False)
    assert first.counts["shards_labelled"] == first.counts["shards"] > 0
    assert again.status == "unchanged" and again.counts["shards_labelled"] == 0


def test_apply_refuses_a_model_whose_hash_changed(trained_build: Path, tmp_path: Path) -> None:
    import shutil

    build = tmp_path / "b"
    shutil.copytree(trained_build, build)
    with (build / "models" / "domain.bin").open("ab") as model:
        model.write(b"x")
    with pytest.raises(StepFailed, match=r"annotate:apply: .*sha256"):
        apply_steps.apply(build, workers=1, progress=False)


def test_training_needs_enough_labels(build: Path, dev_labels: pl.DataFrame) -> None:
    with pytest.raises(student.StudentError, match="at least 20"):
        student.train_student(build, dev_labels.head(5), teacher_name="dev", grid=SMALL_GRID, pretrain=False)


def test_model_input_puts_jats_context_before_the_text() -> None:
    frame = pl.DataFrame(
        {
            "text": ["A 54-year-old Woman, presented."],
            "article_type": ["case-report"],
            "section_type": ["case"],
            "section_title": ["Case Presentation"],
        }
    )
    line = student.model_input(frame, context=True).item()
    assert line.split() == [
        "__art_case_report",
        "__sec_case",
        "case",
        "presentation",
        "a",
        "54",
        "year",
        "old",
        "woman",
        "presented",
    ]
    assert student.model_input(frame, context=False).item().split() == [
        "a",
        "54",
        "year",
        "old",
        "woman",
        "presented",
    ]


def replace_many_normalize(texts: pl.Series) -> pl.Series:
    """``student.normalize`` as it was written in Polars alone."""
    punctuation = list(student.PUNCTUATION)
    lowered = texts.fill_null("").str.slice(0, student.MAX_CHARS).str.to_lowercase()
    return lowered.str.replace_many(punctuation, [" "] * len(punctuation))


NORMALIZE_TEXTS = [
    "Hello, World! – “quoted” (p < 0.05) x\u00a0y\tz\r\n",
    None,
    "",
    "ÀB(c) 🙂;ok ΣΑΣ İ ½",
    "x" * (student.MAX_CHARS + 5) + "!",
    "".join(student.PUNCTUATION),
]


def test_normalize_blanks_what_replace_many_blanked() -> None:
    texts = pl.Series("text", NORMALIZE_TEXTS)
    assert student.normalize(texts).equals(replace_many_normalize(texts))
    assert student.normalize(texts.slice(3)).equals(replace_many_normalize(texts.slice(3)))
    assert student.normalize(texts.clear()).to_list() == []


@pytest.mark.parametrize("context", [True, False])
def test_model_lines_are_the_unstripped_model_input_with_a_newline(context: bool) -> None:
    rows = len(NORMALIZE_TEXTS)
    frame = pl.DataFrame(
        {
            "paragraph_id": [f"p{i}" for i in range(rows)],
            "text": NORMALIZE_TEXTS,
            "article_type": ["Research-Article", None] * (rows // 2),
            "section_type": ["methods", None] * (rows // 2),
            "section_title": ["Results: (Part 1)", None] * (rows // 2),
        }
    )
    for part in (frame, frame.slice(1), frame.clear()):
        expected = [(line + "\n").encode() for line in student._lines(part, context=context).to_list()]
        assert student.model_lines(part, context=context) == expected


def test_model_lines_lowercase_as_polars_does_on_texts_of_all_scripts() -> None:
    rng = random.Random(15)
    pool = [*"aZ09 .,;(–)“”\u00a0\n", *"ÀÉÎÕÜßÿ", *"ΑΒΓΣσςΩ", *"ДЖЯжя", *"ȺⱥİıǅẞK", *"中文", "🙂", "𐐀"]
    anywhere = [chr(point) for point in range(0x20, 0x10000) if not 0xD800 <= point < 0xE000]
    texts = [
        "".join(rng.choice(pool if rng.random() < 0.9 else anywhere) for _ in range(rng.randint(0, 40)))
        for _ in range(3000)
    ]
    texts += ["É" * (student.MAX_CHARS + 3) + "Σ", "a" * (student.MAX_CHARS - 1) + "ΣΑ"]
    frame = pl.DataFrame({"paragraph_id": [f"p{i}" for i in range(len(texts))], "text": texts})
    expected = [(line + "\n").encode() for line in student._lines(frame, context=False).to_list()]
    assert student.model_lines(frame, context=False) == expected


def test_model_lines_lower_ascii_runs_of_every_length_as_polars_does() -> None:
    ascii_ = "".join(map(chr, range(0x80)))
    texts = [
        ascii_[start : start + size] + "É" + ascii_[::-1][:size] for start in (0, 60) for size in range(20)
    ]
    texts += [ascii_ * 3, "É" + ascii_ + "ΑΒ"]
    frame = pl.DataFrame({"paragraph_id": [f"p{i}" for i in range(len(texts))], "text": texts})
    expected = [(line + "\n").encode() for line in student._lines(frame, context=False).to_list()]
    assert student.model_lines(frame, context=False) == expected


def test_the_lowercase_table_holds_what_normalize_makes_of_each_character_alone() -> None:
    table = student.lowercase_table().reshape(-1, 4)
    for char in ["A", "a", "(", "\n", "É", "Ⱥ", "İ", "Ω", "中", "\u00a0"]:
        expected = student.normalize(pl.Series([char])).item().encode()
        size = table[ord(char), 0]
        assert bytes(table[ord(char), 1 : 1 + size]) == expected
    assert table[0x3A3, 0] == 0 and table[0xD800, 0] == 0  # Σ: by what follows; a surrogate: none


def test_rules_prior_is_mixed_by_its_weight() -> None:
    import numpy as np

    frame = pl.DataFrame(
        {"article_type": ["review-article"], "section_type": ["other"], "section_title": [None]}
    )
    prior = student.rules_scores(frame, "document_type")
    assert prior.tolist() == [[0.0, 0.0, 1.0, 0.0]]
    scores = np.array([[0.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    assert student.blend(scores, prior, 0.25).tolist() == [[0.0, 0.75, 0.25, 0.0]]


def test_default_student_is_one_joint_model_for_the_three_labels(
    build: Path, dev_labels: pl.DataFrame
) -> None:
    result = student.train_student(build, dev_labels, teacher_name="dev", grid=SMALL_GRID, pretrain=False)
    assert list(result.manifest["models"]) == ["joint"]
    assert result.report["labels"]["document_type"]["student"]["kappa"] > 0.1
    apply_steps.apply(build, workers=1, progress=False)
    labels = pl.read_parquet(schema.shard_paths(build, "labels"))
    for column in ("document_type_scores", "domain_scores"):
        total = labels.select(pl.sum_horizontal(pl.col(column).struct.unnest()).alias("s"))["s"]
        assert ((total - 1).abs() < 1e-3).all(), column
    assert labels["educational_score"].is_between(1, 5).all()


def _joint_lines(dev_labels: pl.DataFrame) -> tuple[list[str], list[str]]:
    """The dev labels' model inputs and joint labels, as the students learn them."""
    teacher = student.prepared_teacher(dev_labels)
    return student.model_input(teacher, context=True).to_list(), student.task_labels(teacher, student.JOINT)


def test_models_fitted_side_by_side_are_the_models_fitted_one_by_one(
    dev_labels: pl.DataFrame, tmp_path: Path
) -> None:
    texts, labels = _joint_lines(dev_labels)
    grid = (student.Params(epoch=5, word_ngrams=2), student.Params(epoch=5, balance=0.0), SMALL_GRID[0])
    fit_args = {"dim": 10, "vectors": None, "workdir": tmp_path, "seed": 3}

    def saved(model: fasttext.FastText._FastText, name: str) -> bytes:
        model.save_model(str(tmp_path / name))
        return (tmp_path / name).read_bytes()

    jobs = [student.FitJob(texts, labels, params) for params in grid]
    together = student.fit_many(jobs, then=lambda m: saved(m, f"{id(m)}.bin"), threads=2, **fit_args)
    alone = [saved(student.fit(texts, labels, params, **fit_args), "alone.bin") for params in grid]
    assert together == alone


def test_fit_many_starts_the_longest_fits_first_and_answers_in_the_order_of_the_jobs(
    dev_labels: pl.DataFrame, tmp_path: Path
) -> None:
    texts, labels = _joint_lines(dev_labels)
    grid = (
        student.Params(epoch=1, balance=0.0),
        student.Params(epoch=3, word_ngrams=2, balance=1.0),
        student.Params(epoch=2, balance=1.0),
    )
    jobs = [student.FitJob(texts, labels, params) for params in grid]
    started: list[int] = []

    def epochs(model: fasttext.FastText._FastText) -> int:
        started.append(model.f.getArgs().epoch)
        return started[-1]

    found = student.fit_many(jobs, then=epochs, threads=1, dim=10, vectors=None, workdir=tmp_path)
    assert started == [3, 2, 1]
    assert found == [1, 3, 2]


def test_the_cost_of_a_fit_counts_oversampled_lines_epochs_and_bigrams() -> None:
    labels = ["a"] * 6 + ["b"] * 2
    plain = student.FitJob([""] * 8, labels, student.Params(epoch=10, word_ngrams=1, balance=0.0))
    balanced = plain._replace(params=student.Params(epoch=10, word_ngrams=2, balance=1.0))
    assert student.fit_cost(plain) == 8 * 10
    assert student.fit_cost(balanced) == 12 * 10 * 2
