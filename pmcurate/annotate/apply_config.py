"""The settings of ``annotate:apply`` (``apply_steps.ApplyStep``), apart from the step itself so
that the command line reads them without importing the students."""

from __future__ import annotations

from dataclasses import dataclass

from pmcurate.step import StepConfig, option

STUDENTS = ("fasttext", "distilled", "embedding", "encoder")


@dataclass(frozen=True)
class ApplyConfig(StepConfig):
    student: str = option(
        "fasttext",
        "which trained student labels the build (embedding: about 20 paragraphs/s per core; encoder: "
        "a GPU for large builds; distilled: the fastText student of `annotate distill`)",
        choices=STUDENTS,
    )
    device: str = option("auto", "encoder student: where it runs", choices=("auto", "cpu", "cuda"))
