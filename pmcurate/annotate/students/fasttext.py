"""``fasttext``: fastText students with the rules prior, one joint model (or one per label)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmcurate.annotate.steps import TrainConfig, TrainStep
from pmcurate.annotate.students import BASELINE, Student, Train, register

if TYPE_CHECKING:
    from pmcurate.annotate.apply_config import ApplyConfig


def checked_manifest(folder: str) -> Callable[[Path], dict[str, Any]]:
    """The manifest of the fastText students in ``BUILD/models/<folder>/``, their models checked."""

    def manifest(build: Path) -> dict[str, Any]:
        from pmcurate.annotate import student

        found = student.load_manifest(build, folder)
        student.verify_models(build, found)
        return found

    return manifest


def loader(folder: str) -> Callable[[Path, ApplyConfig], Any]:
    """The fastText students of ``BUILD/models/<folder>/``, loaded."""

    def load(build: Path, config: ApplyConfig) -> Any:
        from pmcurate.annotate import student

        return student.Students(build, student.load_manifest(build, folder))

    return load


def _show(build: Path, result: Any) -> str:
    from pmcurate.annotate.report import format_report

    return "\n".join(
        [
            format_report(result.report),
            f"\nmodels: {build / 'models'} (annotator {result.manifest['annotator']})",
            json.dumps(result.report["chosen"]),
        ]
    )


STUDENT = register(
    Student(
        name=BASELINE,
        description="CPUs only, any size: tens of thousands of paragraphs/s per core (the default; "
        "trained in every build, the others are compared with it)",
        folder="",
        trains=(Train(TrainConfig, TrainStep, _show),),
        manifest=checked_manifest(""),
        load=loader(""),
    )
)
