"""Paragraph labels: one ``LabelSpec`` per label, one file per spec in this package.

Everything that knows about labels derives from the registered specs: the ``labels`` table schema
(``schema.LABELS``) and the teacher-labels schema, the teacher's prompt and its JSON schema
(``annotate/prompt.py``), the validation of teacher answers and labels files, the students' tasks
(fastText, embedding, encoder, distilled), the agreement report, the subset and export columns,
``pmcurate stats`` and the dataset card. Adding a label is adding one module here that calls
``register(LabelSpec(...))`` (plus its tests); labels are ordered by name.

Two ways a label gets its values:

- **taught** (``compute`` is None): the teacher (LLM, labels file, or the rules teacher) labels a
  sample, the students learn it and label every paragraph. ``kind`` is ``class`` (one of
  ``classes``; the labels table also keeps each class's score, ``NAME_scores``) or ``score`` (an
  integer from ``range`` for the teacher; the students' expected value, a float, in the table).
- **computed** (``compute`` set): a function of the paragraph's own columns, with no teacher and
  no student. It runs when the students label the build (``annotate apply``, whichever student),
  on the same rows, and its column is written into the same labels shard. ``kind`` is ``class``
  with fixed ``classes``, or ``code`` for an open set of short strings (a language code).

Labels live in their own namespace wherever they meet article columns: the ``labels`` struct in
the filter views (``labels.language``), and, in flat rows (subsets, exports, stats), their ``column``:
the label's name, or ``labels_NAME`` when an article, paragraph or figure column has that name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from pmcurate.errors import Fatal
from pmcurate.registry import Registry

Kind = Literal["class", "score", "code"]
KINDS: tuple[str, ...] = ("class", "score", "code")
PREFIX = "labels_"
"""Flat rows name a label ``labels_NAME`` when a paragraph, article or figure column is named NAME
(the labels' annotator is ``labels_annotator`` for the same reason)."""


class LabelSpecError(Fatal):
    """A label spec that cannot work: bad kind, classes, range, or a name that collides."""


@dataclass(frozen=True)
class LabelSpec:
    """One label of a paragraph.

    ``title`` heads its distribution in ``pmcurate stats`` and the dataset card; ``description``
    says what it means (docs, card); ``rubric`` is its section of the teacher's prompt (taught
    labels); ``compute`` maps a table of the paragraph columns named in ``reads`` to one value per
    row (computed labels).
    """

    name: str
    kind: Kind
    title: str
    description: str
    classes: tuple[str, ...] = ()
    range: tuple[int, int] | None = None
    rubric: str = ""
    compute: Callable[[pa.Table], pa.Array] | None = None
    reads: tuple[str, ...] = ("text",)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LabelSpecError(f"label {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "class" and len(self.classes) < 2:
            raise LabelSpecError(f"label {self.name}: a class label needs at least two classes")
        if self.kind == "score" and (self.range is None or self.range[0] >= self.range[1]):
            raise LabelSpecError(f"label {self.name}: a score label needs a range (low, high), low < high")
        if self.kind == "score" and self.compute is not None:
            raise LabelSpecError(f"label {self.name}: a computed label is a class or a code, not a score")
        if self.kind == "code" and self.compute is None:
            raise LabelSpecError(f"label {self.name}: a code label must be computed (students learn classes)")
        if self.compute is None and not self.rubric:
            raise LabelSpecError(f"label {self.name}: a taught label needs its rubric (the prompt's words)")

    @property
    def taught(self) -> bool:
        """Learnt from a teacher by the students (the others are computed)."""
        return self.compute is None

    @property
    def student_classes(self) -> tuple[str, ...]:
        """The classes a student predicts: the classes, or each integer of a score's range."""
        if self.kind == "score":
            assert self.range is not None
            return tuple(str(v) for v in range(self.range[0], self.range[1] + 1))
        return self.classes

    @property
    def fields(self) -> list[pa.Field]:
        """The label's columns in the labels table."""
        if self.kind == "score":
            return [pa.field(self.name, pa.float32())]
        if self.kind == "class" and self.taught:
            scores = pa.struct([(c, pa.float32()) for c in self.classes])
            return [pa.field(self.name, pa.string()), pa.field(f"{self.name}_scores", scores)]
        return [pa.field(self.name, pa.string())]

    @property
    def teacher_field(self) -> pa.Field:
        """The label's column in the teacher-labels table (a score is the teacher's integer)."""
        return pa.field(self.name, pa.int8() if self.kind == "score" else pa.string())

    def answer_schema(self) -> dict[str, Any]:
        """The JSON schema of the teacher's answer for this label."""
        if self.kind == "score":
            assert self.range is not None
            return {"type": "integer", "minimum": self.range[0], "maximum": self.range[1]}
        return {"type": "string", "enum": list(self.classes)}

    def check(self, value: Any) -> str | int:
        """A teacher's value for this label, checked (a score as an int), or ``LabelSpecError``."""
        if self.kind == "score":
            assert self.range is not None
            low, high = self.range
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise LabelSpecError(f"{self.name} {value!r} is not an integer from {low} to {high}")
            return value
        if value not in self.classes:
            raise LabelSpecError(f"{self.name} {value!r} is not one of {', '.join(self.classes)}")
        return value

    def distribution_sql(self, column: str) -> str:
        """SQL of the value a row is counted under in a distribution (a score rounded)."""
        quoted = '"' + column + '"'
        return f"round({quoted})::INTEGER::VARCHAR" if self.kind == "score" else quoted


REGISTRY: Registry[LabelSpec] = Registry("label", package=__name__)


def register(spec: LabelSpec) -> LabelSpec:
    """Register ``spec`` under its name (called by each module of this package)."""
    return REGISTRY.register(spec.name, spec)


def get(name: str) -> LabelSpec:
    return REGISTRY.get(name)


def specs() -> tuple[LabelSpec, ...]:
    """Every label, in name order."""
    return tuple(sorted(REGISTRY.values(), key=lambda s: s.name))


def taught() -> tuple[LabelSpec, ...]:
    """The labels the teacher gives and the students learn."""
    return tuple(s for s in specs() if s.taught)


def computed() -> tuple[LabelSpec, ...]:
    return tuple(s for s in specs() if not s.taught)


def fields() -> list[pa.Field]:
    """Every label column of the labels table, label by label."""
    return [f for spec in specs() for f in spec.fields]


def flat_names(taken: Sequence[str]) -> dict[str, str]:
    """Labels-table column → its name in flat rows beside columns named ``taken``: its own name,
    or ``labels_NAME`` when taken. Raises ``LabelSpecError`` when even that name is taken."""
    names = {}
    for field in [*fields(), pa.field("annotator", pa.string())]:
        name = field.name if field.name not in taken and field.name != "annotator" else PREFIX + field.name
        if name in taken:
            raise LabelSpecError(f"label column {field.name!r}: both it and {name!r} name other columns")
        names[field.name] = name
    return names


def check_answer(obj: Mapping[str, Any]) -> dict[str, str | int]:
    """The taught labels of a teacher's answer or a labels-file row, checked, in label order."""
    return {spec.name: spec.check(obj.get(spec.name)) for spec in taught()}


def with_computed(taught_labels: pa.Table, paragraphs: pa.Table) -> pa.Table:
    """The labels rows of ``paragraphs`` (rows of a paragraphs shard with ``paragraph_id`` and the
    columns the computed labels read): ``taught_labels`` (the students' columns,
    ``schema.TAUGHT_LABELS``, one row per paragraph, in the same order) with the computed labels
    added, computed from the same rows."""
    from pmcurate import schema

    ids = taught_labels.column("paragraph_id").combine_chunks().cast(pa.string())
    if not ids.equals(paragraphs.column("paragraph_id").combine_chunks().cast(pa.string())):
        raise ValueError("labels are not in the order of the paragraphs")
    columns = {name: taught_labels.column(name) for name in taught_labels.column_names}
    for spec in computed():
        assert spec.compute is not None
        columns[spec.name] = spec.compute(paragraphs.select(list(spec.reads)))
    return pa.table([columns[f.name] for f in schema.LABELS], schema=schema.LABELS)


def computed_reads() -> tuple[str, ...]:
    """The paragraph columns the computed labels read."""
    return tuple(sorted({column for spec in computed() for column in spec.reads}))
