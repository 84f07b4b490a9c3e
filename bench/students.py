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

    .venv/bin/python bench/students.py [--seeds 0 1 2] [--fractions 1 0.5 0.25] [--max-tokens N] [--threads N]
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
) -> dict[str, dict[str, Any]]:
    """The reports of each student for one seed and training share (models in a scratch folder)."""
    out: dict[str, dict[str, Any]] = {}
    models = build / "models"
    shutil.rmtree(models, ignore_errors=True)
    started = time.perf_counter()
    ft = student.train_student(build, teacher, teacher_name="dev", seed=seed, train_fraction=fraction)
    out["fasttext"] = ft.report | {"seconds": time.perf_counter() - started}
    if "embedding" in students:
        started = time.perf_counter()
        result = embedding.train_embedding_student(
            build,
            teacher,
            teacher_name="dev",
            seed=seed,
            train_fraction=fraction,
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
            write=False,
            speed_texts=0,
            progress=False,
        )
        out["encoder"] = result.report | {"seconds": result.report["train_seconds"]}
        if "distilled" in students:
            started = time.perf_counter()
            prepared = student.prepared_teacher(teacher)
            prepared = prepared.with_columns(student.model_input(prepared, context=True).alias("_norm"))
            splits = student.evaluation_splits(prepared, 0.25, 0.25, seed, train_fraction=fraction)
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
    value = rep["labels"][task][predictor].get(name)
    return float("nan") if value is None else float(value)


def summary_table(points: list[dict[str, Any]], students: tuple[str, ...]) -> str:
    """Markdown: one row per label and metric, ``mean ± sd (min–max)`` over seeds per student."""
    columns = [*students, "rules", "majority"]
    lines = ["| held-out agreement | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for task, name in ROWS:
        cells = []
        for column in columns:
            if column in ("rules", "majority"):
                values = [metric(p["fasttext"], task, name, column) for p in points]
            else:
                values = [metric(p[column], task, name) for p in points]
            cells.append(_cell(values))
        lines.append(f"| {task} {name} | " + " | ".join(cells) + " |")
    seconds = [
        _cell([p[s]["seconds"] for p in points], digits=0) if s in points[0] else "—" for s in students
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--students", nargs="+", choices=STUDENTS, default=list(STUDENTS))
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench-students.json"))
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    students = tuple(s for s in STUDENTS if s in args.students or s == "fasttext")
    config = encoder.TrainConfig(epochs=args.epochs, max_tokens=args.max_tokens)
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
                started = time.perf_counter()
                point = run_point(
                    build,
                    teacher,
                    seed=seed,
                    fraction=fraction,
                    students=students,
                    config=config,
                    st_encoder=st_encoder,
                )
                results[key].append(point)
                print(
                    f"# fraction {key} seed {seed}: {time.perf_counter() - started:.0f} s "
                    f"(train rows {point['fasttext']['n_train']}, held-out {point['fasttext']['n_test']})",
                    flush=True,
                )
                args.out.write_text(json.dumps(results, indent=1))
            print(f"\n## {fraction:.0%} of the teacher's train rows, seeds {args.seeds}\n", flush=True)
            print(summary_table(results[key], students), flush=True)
            print(flush=True)


if __name__ == "__main__":
    main()
