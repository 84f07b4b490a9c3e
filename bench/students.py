"""Every student's agreement with the teacher on held-out articles: mean and spread over seeds,
and the learning curve (25 / 50 / 100 % of the teacher's train rows).

Students, each judged on the same article-disjoint split of the teacher labels (a seed changes
the split, the sample of train rows and the training itself):

- ``fasttext``: the joint fastText student (``annotate train``), word vectors pretrained on the build;
- ``embedding``: all-MiniLM-L6-v2 frozen + logistic regression (``--student embedding``);
- ``encoder``: all-MiniLM-L6-v2 fine-tuned end to end with three heads (``--student encoder``);
- ``distilled``: fastText learning the encoder's labels of the build's paragraphs, none from the
  held-out articles (``annotate distill``);

beside the rules teacher and the majority class. Prints a Markdown table per training share and
writes every report to ``--out``.

Two evaluations:

- the split (default): per seed, 25 % of the rows held out as whole articles (4 of the dev
  labels' 15 articles), 25 % of the rest for validation: the split ``annotate train`` reports on;
- ``--cv K``: article-grouped K-fold cross-validation. The articles are dealt into K folds of
  about equal rows (``student.article_folds``); each fold is held out once while the students
  learn from the other folds (validation cut from them by article, as usual), so every labelled
  article is scored once per seed. Cells are mean ± sd (min–max) over folds × seeds.

    .venv/bin/python bench/students.py [--seeds 0 1 2] [--fractions 1 0.5 0.25] [--cv K]
        [--max-tokens N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from pmcurate.annotate import distill, embedding, encoder, labels_file, report, student
from pmcurate.harvest.local import harvest_local

ROOT = Path(__file__).resolve().parent.parent
JATS = ROOT / "tests" / "data" / "jats"
LABELS = ROOT / "tests" / "data" / "labels" / "dev-paragraph-labels.jsonl"
STUDENTS = ("fasttext", "embedding", "encoder", "distilled")
ROWS = [(task, metric) for task, metrics in report.COMPARED.items() for metric in metrics]


def run_point(
    build: Path,
    teacher: pl.DataFrame,
    *,
    seed: int,
    fraction: float,
    students: tuple[str, ...],
    config: encoder.TrainConfig,
    st_encoder: Any,
    fold: tuple[int, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """The reports of each student for one seed, training share and fold (models in a scratch folder)."""
    out: dict[str, dict[str, Any]] = {}
    models = build / "models"
    shutil.rmtree(models, ignore_errors=True)
    started = time.perf_counter()
    ft = student.train_student(
        build, teacher, teacher_name="dev", seed=seed, train_fraction=fraction, fold=fold
    )
    out["fasttext"] = ft.report | {"seconds": time.perf_counter() - started}
    if "embedding" in students:
        started = time.perf_counter()
        result = embedding.train_embedding_student(
            build,
            teacher,
            teacher_name="dev",
            seed=seed,
            train_fraction=fraction,
            fold=fold,
            encoder=st_encoder,
            speed_texts=16,
            progress=False,
        )
        out["embedding"] = result.report | {"seconds": time.perf_counter() - started}
    if "encoder" in students or "distilled" in students:
        result = encoder.train_encoder_student(
            build,
            teacher,
            teacher_name="dev",
            config=config,
            seed=seed,
            train_fraction=fraction,
            fold=fold,
            write=False,
            speed_texts=0,
            progress=False,
        )
        out["encoder"] = result.report | {"seconds": result.report["train_seconds"]}
        if "distilled" in students:
            started = time.perf_counter()
            prepared = student.prepared_teacher(teacher)
            prepared = prepared.with_columns(student.model_input(prepared, context=True).alias("_norm"))
            splits = student.evaluation_splits(prepared, 0.25, 0.25, seed, train_fraction=fraction, fold=fold)
            labelled = distill.label_sample(
                result.heldout, distill.sample_paragraphs(build, distill.DEFAULT_SAMPLE, seed), progress=False
            )
            with tempfile.TemporaryDirectory() as work:
                out["distilled"] = distill.evaluate_distilled(
                    labelled,
                    splits,
                    teacher_name="dev",
                    workdir=Path(work),
                    seed=seed,
                    vectors=models / "vectors.vec",
                )
            out["distilled"]["seconds"] = time.perf_counter() - started
    return out


def metric(rep: dict[str, Any], task: str, name: str, predictor: str = "student") -> float:
    """One figure of a report; a student "alone" whose rules weight was 0 is the student itself
    (``evaluate_task`` then scores it once)."""
    scored = rep["labels"][task]
    value = scored.get(predictor, scored["student"] if predictor.endswith("_alone") else {}).get(name)
    return float("nan") if value is None else float(value)


ALONE = {
    "fasttext": "fasttext_alone",
    "embedding": "embedding_alone",
    "encoder": "encoder_alone",
    "distilled": "fasttext_alone",
}
"""Students whose report also scores them without the rules prior."""


def summary_table(points: list[dict[str, Any]], students: tuple[str, ...]) -> str:
    """Markdown: one row per label and metric, ``mean ± sd (min–max)`` over the points (seeds,
    folds) per student, each student without its rules prior ("alone") beside it, then the
    rules teacher and the majority class."""
    columns: list[tuple[str, str, str]] = []  # (header, report, predictor)
    for s in students:
        columns.append((s, s, "student"))
        if s in ALONE:
            columns.append((f"{s} alone", s, ALONE[s]))
    columns += [("rules", "fasttext", "rules"), ("majority", "fasttext", "majority")]
    header = [c[0] for c in columns]
    lines = ["| held-out agreement | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for task, name in ROWS:
        cells = [_cell([metric(p[rep], task, name, pred) for p in points]) for _, rep, pred in columns]
        lines.append(f"| {task} {name} | " + " | ".join(cells) + " |")
    seconds = [
        _cell([p[rep]["seconds"] for p in points], digits=0) if pred == "student" else ""
        for _, rep, pred in columns[:-2]
    ]
    lines.append("| training seconds | " + " | ".join(seconds) + " | — | — |")
    return "\n".join(lines)


def _cell(values: list[float], digits: int = 3) -> str:
    v = np.array([x for x in values if not np.isnan(x)])
    if len(v) == 0:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f} ({v.min():.{digits}f}–{v.max():.{digits}f})"


def folds(k: int) -> list[tuple[int, int] | None]:
    """The evaluations of one seed: each fold of a K-fold cross-validation, or the one split."""
    return [(i, k) for i in range(k)] if k else [None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--students", nargs="+", choices=STUDENTS, default=list(STUDENTS))
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=encoder.TrainConfig.epochs)
    parser.add_argument(
        "--head-lr", type=float, default=encoder.TrainConfig.head_lr, help="encoder heads' lr"
    )
    parser.add_argument("--patience", type=int, default=encoder.TrainConfig.patience)
    parser.add_argument("--out", type=Path, default=Path("bench-students.json"))
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="article-grouped K-fold cross-validation (default: the split)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    students = tuple(s for s in STUDENTS if s in args.students or s == "fasttext")
    config = encoder.TrainConfig(
        epochs=args.epochs, max_tokens=args.max_tokens, head_lr=args.head_lr, patience=args.patience
    )
    teacher = labels_file.read_labels_jsonl(args.labels)
    st_encoder = embedding.load_encoder() if "embedding" in students else None
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "build"
        harvest_local([JATS], build, workers=1, progress=False)
        for fraction in args.fractions:
            key = f"{fraction:g}"
            results[key] = []
            for seed in args.seeds:
                for fold in folds(args.cv):
                    started = time.perf_counter()
                    point = run_point(
                        build,
                        teacher,
                        seed=seed,
                        fraction=fraction,
                        students=students,
                        config=config,
                        st_encoder=st_encoder,
                        fold=fold,
                    )
                    point["seed"], point["fold"] = seed, fold
                    results[key].append(point)
                    print(
                        f"# fraction {key} seed {seed} fold {fold}: {time.perf_counter() - started:.0f} s "
                        f"(train rows {point['fasttext']['n_train']}, held-out {point['fasttext']['n_test']} "
                        f"of {point['fasttext']['n_test_articles']} articles)",
                        flush=True,
                    )
                    args.out.write_text(json.dumps(results, indent=1))
            how = f"{args.cv}-fold cross-validation by article" if args.cv else "the split"
            print(f"\n## {fraction:.0%} of the teacher's train rows, {how}, seeds {args.seeds}\n", flush=True)
            print(summary_table(results[key], students), flush=True)
            print(flush=True)


if __name__ == "__main__":
    main()
