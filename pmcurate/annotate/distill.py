"""Distillation: the encoder student labels a large sample of the build, a fastText student
learns those labels, and ``apply`` then runs at fastText speed.

The teacher's few hundred labels limit what fastText learns; the encoder, fine-tuned on them,
can label as many paragraphs as one wants. The distilled student is a joint fastText model
(``student.py``), chosen on the teacher's validation split and scored on its held-out articles,
so its report compares row for row with the encoder's and the plain fastText's.

Two labellings of the same sample: for the report, the encoder of the report (``encoder/heldout``,
which never saw the held-out articles) labels the sample less the held-out articles' paragraphs;
for ``apply``, the encoder retrained on every teacher row labels the whole sample.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from pmcurate import labels, schema
from pmcurate.annotate import encoder, student

FOLDER = "distilled"
"""``BUILD/models/distilled/``: joint.bin, vectors.vec, students.json, report.json."""
DEFAULT_SAMPLE = 200_000
CHUNK = 4_096
"""Paragraphs labelled per encoder call (a progress step)."""


def sample_paragraphs(build: str | os.PathLike[str], size: int, seed: int = 0) -> pl.DataFrame:
    """About ``size`` paragraphs of the build (all of a smaller one), chosen by a seeded hash of
    their ids while scanning, with the JATS context the students read."""
    paths = schema.shard_paths(build, "paragraphs")
    if not paths:
        raise student.StudentError(f"{schema.table_dir(build, 'paragraphs')}: no paragraphs to distil on")
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    keep = int(min(1.0, size / max(total, 1)) * 1_000_000)
    frame = (
        pl.scan_parquet(paths)
        .filter(pl.col("paragraph_id").hash(seed) % 1_000_000 < keep)
        .filter(pl.col("text").is_not_null())
        .select("paragraph_id", "article_id", "text", "section_type", "section_title")
        .collect(engine="streaming")
    )
    articles = schema.shard_paths(build, "articles")
    if articles:
        types = pl.scan_parquet(articles).select("article_id", "article_type").unique("article_id").collect()
        frame = frame.join(types, on="article_id", how="left", maintain_order="left")
    return frame


def label_sample(
    labeller: encoder.EncoderStudent, frame: pl.DataFrame, *, progress: bool = True
) -> pl.DataFrame:
    """``frame`` with the encoder's labels as teacher columns (a score rounded to a class)."""
    parts = [pl.DataFrame(schema.TAUGHT_LABELS.empty_table())]
    for start in tqdm(
        range(0, frame.height, CHUNK), desc="distill: encoder labels", unit="chunk", disable=not progress
    ):
        parts.append(pl.DataFrame(labeller.label(frame.slice(start, CHUNK))))
    given = pl.concat(parts)
    return frame.with_columns(_teacher_column(given, spec) for spec in labels.taught())


def _teacher_column(given: pl.DataFrame, spec: labels.LabelSpec) -> pl.Series:
    """The encoder's label as the teacher's: a class as it is, a score rounded to one of its classes."""
    if spec.kind != "score":
        return given[spec.name]
    low, high = spec.range or (1, 5)
    return given[spec.name].round().clip(low, high).cast(pl.Int64).cast(pl.String)


@dataclass
class DistillResult:
    report: dict[str, Any] | None
    """Agreement with the teacher's held-out articles; None without ``encoder/heldout``."""
    manifest: dict[str, Any]
    sample: int


def evaluate_distilled(
    labelled: pl.DataFrame,
    splits: student.Splits,
    *,
    teacher_name: str,
    workdir: Path,
    seed: int = 0,
    dim: int = 50,
    vectors: Path | None = None,
) -> dict[str, Any]:
    """A joint fastText student learns ``labelled`` (encoder labels, none from the held-out
    articles), settings chosen on the teacher's validation split, scored on its held-out rows."""
    held = splits.test["article_id"].unique().implode()
    learn = labelled.filter(~pl.col("article_id").is_in(held))
    learn = learn.with_columns(student.model_input(learn, context=True).alias("_norm"))
    report: dict[str, Any] = student.split_summary(teacher_name, splits.train, splits.validation, splits.test)
    report |= {"student": "distilled", "n_distilled": learn.height, "speed": {}}
    student.fit_and_evaluate(
        student.JOINT,
        learn,
        splits.validation,
        learn,
        splits.test,
        splits.rest,
        student.GRID,
        context=True,
        report=report,
        dim=dim,
        vectors=vectors,
        workdir=workdir,
        seed=seed,
    )
    return report


def distill(
    build: str | os.PathLike[str],
    teacher: pl.DataFrame,
    *,
    teacher_name: str,
    sample_size: int = DEFAULT_SAMPLE,
    seed: int = 0,
    dim: int = 50,
    device: str = "auto",
    progress: bool = True,
    test_fraction: float = 0.25,
    validation_fraction: float = 0.25,
) -> DistillResult:
    """Label a sample with the encoder student, train the distilled fastText student on it,
    write it to ``BUILD/models/distilled/`` and report its agreement with the teacher."""
    build = Path(build)
    manifest = encoder.load_manifest(build)
    folder = build / "models" / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    teacher = student.prepared_teacher(teacher)
    teacher = teacher.with_columns(student.model_input(teacher, context=True).alias("_norm"))
    splits = student.evaluation_splits(teacher, test_fraction, validation_fraction, seed)
    sample = sample_paragraphs(build, sample_size, seed)
    encoder_dir = build / "models" / encoder.FOLDER
    vectors = student.pretrain_vectors(sample["text"], folder / "vectors.vec", dim=dim)
    report = None
    with tempfile.TemporaryDirectory(dir=folder) as work:
        if (encoder_dir / encoder.HELDOUT).is_dir():
            heldout = encoder.EncoderStudent.load(encoder_dir / encoder.HELDOUT, manifest, device=device)
            labelled = label_sample(heldout, sample, progress=progress)
            report = evaluate_distilled(
                labelled,
                splits,
                teacher_name=teacher_name,
                workdir=Path(work),
                seed=seed,
                dim=dim,
                vectors=vectors,
            )
            report["encoder_annotator"] = manifest["annotator"]
            del heldout
        final = encoder.EncoderStudent.load(encoder_dir, manifest, device=device)
        labelled = label_sample(final, sample, progress=progress)
        labelled = labelled.with_columns(student.model_input(labelled, context=True).alias("_norm"))
        params, weights = _chosen(report)
        written = student.write_models(
            folder,
            labelled,
            {student.JOINT: (params, weights)},
            dim=dim,
            vectors=vectors,
            workdir=Path(work),
            seed=seed,
            prefix=f"{FOLDER}/",
        )
    written |= {
        "teacher": f"encoder:{manifest['annotator']}",
        "context": True,
        "joint": True,
        "n_distilled": labelled.height,
        "annotator": "distilled-" + written["annotator"].removeprefix("fasttext-"),
    }
    student.write_json(folder / student.MANIFEST, written)
    if report is not None:
        student.write_json(folder / "report.json", report)
    return DistillResult(report=report, manifest=written, sample=sample.height)


def _chosen(report: dict[str, Any] | None) -> tuple[student.Params, dict[str, float]]:
    """The settings chosen for the report's model, or the defaults without one."""
    if report is None:
        return student.Params(), dict.fromkeys(student.TASKS, 0.0)
    chosen = dict(report["chosen"][student.JOINT])
    weights = chosen.pop("rules_weights")
    return student.Params(**chosen), weights
