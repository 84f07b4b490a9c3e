"""The students registry: the manifest, the commands and the build offer exactly the registered
students, and a new student is one file."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pmcurate import cli
from pmcurate.annotate import students
from pmcurate.annotate.apply_config import ApplyConfig
from pmcurate.annotate.steps import DistillStep, TrainEncoderStep
from pmcurate.manifest import ManifestError, load_manifest
from pmcurate.registry import UnknownNameError
from tests.test_manifest import VALID


def cli_choices(command: str, flag: str = "--student") -> tuple[str, ...]:
    """The choices of ``flag`` of ``pmcurate annotate COMMAND``."""
    parser = cli.build_parser()
    for name in ("annotate", command):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    action = next(a for a in parser._actions if flag in a.option_strings)
    assert action.choices is not None
    return tuple(action.choices)


def test_the_students_are_found_in_the_package_with_the_baseline_first() -> None:
    assert students.kinds() == ("fasttext", "distilled", "embedding", "encoder")
    assert set(students.kinds()) == set(students.STUDENTS.names())


def test_the_manifest_kinds_are_the_registered_students(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(VALID.replace("[student]", '[student]\nkind = "bert"'))
    with pytest.raises(ManifestError) as error:
        load_manifest(path)
    assert f"expected one of {', '.join(map(repr, students.kinds()))}, got str 'bert'" in str(error.value)


def test_the_cli_choices_are_the_registered_students() -> None:
    assert cli_choices("train") == students.kinds()
    assert cli_choices("apply") == students.kinds()
    assert ApplyConfig().student == students.BASELINE


def test_every_student_trains_the_baseline_then_its_own_steps() -> None:
    baseline = students.get("fasttext").trains
    assert students.trains("fasttext") == baseline
    assert students.trains("distilled") == baseline + students.get("distilled").trains
    assert [t.step for t in students.get("distilled").trains] == [TrainEncoderStep, DistillStep]


def test_an_unknown_student_names_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown student 'bert'; known: "):
        students.get("bert")


def test_torch_students_label_the_build_in_process() -> None:
    assert {name for name in students.kinds() if students.get(name).in_process} == {"embedding", "encoder"}


TINY = '''
"""``tiny``: a test's student in one file: it labels nothing but says it labelled every paragraph."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmcurate import schema
from pmcurate.annotate.steps import TeacherChoice
from pmcurate.annotate.students import Student, Train, register
from pmcurate.step import Build, Step, StepReport, option


@dataclass(frozen=True)
class TinyConfig(TeacherChoice):
    tiny_size: int = option(3, "how tiny the student is")


class TinyStep(Step[TinyConfig, Any]):
    name = "annotate:train-tiny"

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        folder = build.path / "models" / "tiny"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "students.json").write_text(json.dumps({"annotator": f"tiny-{self.config.tiny_size}"}))
        self.result = self.config.tiny_size
        return StepReport(self.name, "ran")


class Labeller:
    context = False

    def __init__(self, annotator: str) -> None:
        self.annotator = annotator

    def label(self, frame: Any) -> Any:
        rows = [{"paragraph_id": p, "annotator": self.annotator} for p in frame["paragraph_id"]]
        return schema.to_table(rows, schema.TAUGHT_LABELS)


def manifest(build: Path) -> dict[str, Any]:
    return json.loads((build / "models" / "tiny" / "students.json").read_text())


STUDENT = register(
    Student(
        name="tiny",
        description="a test's student",
        folder="tiny",
        trains=(Train(TinyConfig, TinyStep, lambda build, size: f"tiny student of size {size}"),),
        manifest=manifest,
        load=lambda build, config: Labeller(manifest(build)["annotator"]),
        in_process=True,
    )
)
'''

PROBE = """
import json, sys
import pmcurate.annotate.students
pmcurate.annotate.students.__path__.append(sys.argv[1])
import polars as pl
from pmcurate import cli, schema
from pmcurate.annotate import students
from pmcurate.manifest import load_manifest
from pmcurate.pipeline import annotate_steps
from tests.annotate.students.test_registry import cli_choices

manifest = load_manifest(sys.argv[2])
build = sys.argv[3]
trained = cli.main(["annotate", "train", build, "--student", "tiny", "--tiny-size", "4"])
applied = cli.main(["annotate", "apply", build, "--student", "tiny"])
print(json.dumps({
    "kinds": students.kinds(),
    "train": cli_choices("train"),
    "apply": cli_choices("apply"),
    "steps": [step.name for step in annotate_steps(manifest)],
    "size": manifest.student.configs[-1].tiny_size,
    "codes": [trained, applied],
    "annotators": pl.read_parquet(schema.table_dir(build, "labels"))["annotator"].unique().to_list(),
}))
"""


def test_a_new_student_is_one_file(tmp_path: Path, build: Path) -> None:
    """A student module in the students package (here a folder added to its path, in a fresh
    process) is a manifest kind with its keys, a choice of ``annotate train`` and ``annotate apply``
    with its options, trained by the build's steps, and labels the build."""
    (tmp_path / "tiny.py").write_text(textwrap.dedent(TINY))
    manifest = tmp_path / "m.toml"
    manifest.write_text(VALID.replace("[student]", '[student]\nkind = "tiny"\ntiny_size = 5'))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), str(manifest), str(build)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["kinds"] == ["fasttext", "distilled", "embedding", "encoder", "tiny"]
    assert found["train"] == found["apply"] == found["kinds"]
    assert found["steps"] == ["annotate:train", "annotate:train-tiny"] and found["size"] == 5
    assert found["codes"] == [0, 0] and found["annotators"] == ["tiny-4"]
    assert "tiny student of size 4" in done.stdout
