"""The settings of ``annotate:apply`` (``apply_steps.ApplyStep``), apart from the step itself so
that the command line reads them without importing the students' models."""

from __future__ import annotations

from dataclasses import dataclass

from pmcurate.annotate import students
from pmcurate.step import StepConfig, option


@dataclass(frozen=True)
class ApplyConfig(StepConfig):
    student: str = option(
        students.BASELINE,
        f"which trained student labels the build ({students.help_text()})",
        choices=students.kinds(),
    )
    device: str = option("auto", "encoder student: where it runs", choices=("auto", "cpu", "cuda"))
