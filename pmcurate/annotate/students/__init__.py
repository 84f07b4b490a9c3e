"""The students that label a build: one ``Student`` per kind, one module per student in this package.

A student learns the teacher's labels (its ``trains``: the steps that train it, each with its
config) and labels every paragraph (``load``: its labeller, loaded by ``annotate apply`` in each
worker). Everything that offers a choice of student derives from the registered ones: the
manifest's ``[student] kind`` and the keys it accepts, ``pmcurate annotate train --student`` and
``annotate apply --student`` with their options and help, the build's training steps and its
``annotate:apply`` step, and the students compared side by side. Adding a student is adding one
module here that calls ``register(Student(...))`` (plus its tests).

The fastText student (``BASELINE``) is trained in every build whatever the kind: the report
compares every student with it.

Only the configs and steps are imported with this package (``annotate/steps.py``: no Polars,
fastText or torch); a student's ``load`` and ``manifest`` import its models where they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmcurate.annotate.steps import TeacherChoice
from pmcurate.registry import Registry
from pmcurate.step import Step

if TYPE_CHECKING:
    from pmcurate.annotate.apply_config import ApplyConfig

BASELINE = "fasttext"
"""The student every build trains (the others are compared with it) and the default kind."""


@dataclass(frozen=True)
class Train:
    """One step that trains a student: its config (keys of the manifest's ``[student]``, options of
    ``annotate train``; a ``TeacherChoice``: the teacher labels it learns are the build's), the step
    made from that config, and what ``annotate train`` prints of the step's result
    (``show(build folder, result)``)."""

    config: type[TeacherChoice]
    step: Callable[[Any], Step[Any, Any]]
    show: Callable[[Path, Any], str]


@dataclass(frozen=True)
class Student:
    """One kind of student.

    ``description`` says when to pick it (the help of ``--student``). ``folder``: where it lies
    under ``BUILD/models/`` (``""``: the folder itself), with its ``students.json`` and
    ``report.json``. ``manifest(build)``: its ``students.json``, its model files checked.
    ``load(build, config)``: the labeller ``annotate apply`` runs (``label(frame)`` → taught
    labels, and ``context``). ``in_process``: torch students use every core (or the GPU) from one
    process, so ``annotate apply`` runs their tasks in the driver, not on a pool.
    """

    name: str
    description: str
    folder: str
    trains: tuple[Train, ...]
    manifest: Callable[[Path], dict[str, Any]]
    load: Callable[[Path, ApplyConfig], Any]
    in_process: bool = False

    def trained(self, build: Path) -> bool:
        """Whether ``build`` holds this student's models."""
        from pmcurate.annotate.student import MANIFEST

        return (build / "models" / self.folder / MANIFEST).is_file()

    @property
    def report(self) -> str:
        """Its report, relative to ``BUILD/models/``."""
        return f"{self.folder}/report.json" if self.folder else "report.json"


STUDENTS: Registry[Student] = Registry("student", package=__name__)


def register(student: Student) -> Student:
    """Register ``student`` under its name (called by each module of this package)."""
    return STUDENTS.register(student.name, student)


def get(name: str) -> Student:
    return STUDENTS.get(name)


def kinds() -> tuple[str, ...]:
    """Every student's name: ``BASELINE`` first (the default), then the others by name."""
    return (BASELINE, *sorted(name for name in STUDENTS.names() if name != BASELINE))


def trains(kind: str) -> tuple[Train, ...]:
    """The training steps of a build whose student is ``kind``: the baseline's, then its own."""
    return tuple(train for name in dict.fromkeys((BASELINE, kind)) for train in get(name).trains)


def help_text() -> str:
    """Each student with when to pick it, for ``--student``."""
    return "; ".join(f"{name}: {get(name).description}" for name in kinds())
