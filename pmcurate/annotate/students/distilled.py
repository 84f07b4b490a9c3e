"""``distilled``: the encoder student labels a sample, a fastText student learns it and labels the build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pmcurate.annotate.steps import DistillConfig, DistillStep
from pmcurate.annotate.students import Student, Train, encoder, fasttext, register

FOLDER = "distilled"  # distill.FOLDER, without importing torch


def show(build: Path, result: Any) -> str:
    """What ``annotate distill`` and ``annotate train --student distilled`` print of the distillation."""
    from pmcurate.annotate.report import format_report

    report = f"{format_report(result.report)}\n" if result.report is not None else ""
    return (
        f"{report}\ndistilled student: {build / 'models' / FOLDER} (annotator "
        f"{result.manifest['annotator']}, learnt from {result.sample:,} paragraphs labelled by the encoder)"
    )


STUDENT = register(
    Student(
        name="distilled",
        description="the encoder labels `distill_sample` paragraphs, a fastText student learns them and "
        "labels the build at fastText speed: CPUs only, millions of paragraphs, a GPU or an hour once",
        folder=FOLDER,
        trains=(encoder.TRAIN, Train(DistillConfig, DistillStep, show)),
        manifest=fasttext.checked_manifest(FOLDER),
        load=fasttext.loader(FOLDER),
    )
)
