"""Teacher labels: validation, the JSONL interchange format, and the teacher-labels table.

Labels made elsewhere (another LLM run, a human pass, ``shared/labels/``) arrive as JSONL, one
object per paragraph with ``text`` (or ``paragraph_id``) and the three labels. Labels made here
(``annotate llm``, the rules teacher) are written as ``schema.TEACHER_LABELS`` shards under
``BUILD/labels/teacher/``. Both are read into one Polars frame with the columns of that schema, so
training does not care where labels came from.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from pmcurate import labels, schema
from pmcurate.errors import Fatal

TEACHER_DIR = Path("labels") / "teacher"


class LabelsError(Fatal):
    """A labels file or answer that does not follow the rubric; the message says where and why."""


def teacher_dir(build: str | os.PathLike[str]) -> Path:
    """``BUILD/labels/teacher``: teacher answers (cache) and teacher-labels shards."""
    return Path(build) / TEACHER_DIR


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def validate_labels(obj: Mapping[str, Any]) -> dict[str, str | int]:
    """The taught labels of ``obj`` (``pmcurate/labels/``), checked, by name; or LabelsError."""
    try:
        return labels.check_answer(obj)
    except labels.LabelSpecError as exc:
        raise LabelsError(str(exc)) from None


def teacher_row(
    *,
    text: str | None,
    labels: Mapping[str, Any],
    annotator: str,
    paragraph_id: str | None = None,
    article_id: str | None = None,
    model: str | None = None,
    prompt_hash: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One validated row of ``schema.TEACHER_LABELS``."""
    checked = validate_labels(labels)
    return {
        "paragraph_id": paragraph_id,
        "text_sha256": text_sha256(text) if text is not None else text_sha256(paragraph_id or ""),
        "text": text,
        "article_id": article_id,
        **checked,
        "model": model,
        "prompt_hash": prompt_hash,
        "annotator": annotator,
        "at": at or datetime.now(UTC),
    }


def read_labels_jsonl(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A JSONL labels file as a teacher-labels frame (columns of ``schema.TEACHER_LABELS``).

    Each line needs ``text`` or ``paragraph_id`` and the three labels; ``article`` or
    ``article_id`` is kept when present (evaluation holds out whole articles). A line that is not
    JSON or breaks the rubric raises LabelsError naming the file and line: a labels file is small
    and hand-made, so it is fixed rather than silently thinned.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: no such labels file")
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            rows.append(_jsonl_row(path, number, line))
    if not rows:
        raise LabelsError(f"{path}: no labels in the file")
    frame = teacher_frame(row for row, _ in rows)
    context = pl.DataFrame([extra for _, extra in rows], schema=dict.fromkeys(CONTEXT, pl.String))
    return pl.concat([frame, context], how="horizontal")


CONTEXT = ("article_type", "section_title")
"""Optional JATS context of a labelled paragraph, kept so the rules teacher can be compared."""


def _jsonl_row(path: Path, number: int, line: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LabelsError(f"{path}:{number}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise LabelsError(f"{path}:{number}: expected a JSON object")
    text, paragraph_id = obj.get("text"), obj.get("paragraph_id")
    if not (isinstance(text, str) and text.strip()) and not paragraph_id:
        raise LabelsError(f"{path}:{number}: needs a non-empty `text` or a `paragraph_id`")
    try:
        row = teacher_row(
            text=text if isinstance(text, str) else None,
            labels=obj,
            annotator=f"file:{path.name}",
            paragraph_id=paragraph_id,
            article_id=obj.get("article_id") or obj.get("article"),
            model=obj.get("model"),
        )
    except LabelsError as exc:
        raise LabelsError(f"{path}:{number}: {exc}") from None
    return row, {
        "article_type": obj.get("article_type"),
        "section_title": obj.get("section_title", obj.get("section")),
    }


def teacher_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(schema.to_table(rows, schema.TEACHER_LABELS))


def write_teacher_labels(build: str | os.PathLike[str], name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write teacher rows to ``BUILD/labels/teacher/<name>.parquet`` (atomic, replaces the old one)."""
    table = schema.to_table(rows, schema.TEACHER_LABELS)
    return schema.write_shard(table, teacher_dir(build) / f"{name}.parquet")


def read_teacher_labels(build: str | os.PathLike[str], name: str) -> pl.DataFrame:
    """The teacher-labels shard ``name`` of a build (``llm``, ``rules``…)."""
    path = teacher_dir(build) / f"{name}.parquet"
    if not path.is_file():
        raise LabelsError(
            f"{path}: no teacher labels named {name!r} in this build (run `annotate {name}` first)"
        )
    return pl.DataFrame(pq.read_table(path, schema=schema.TEACHER_LABELS))


def load_teacher(
    build: str | os.PathLike[str], *, name: str | None = None, path: str | None = None
) -> pl.DataFrame:
    """Teacher labels for training: a JSONL file (``path``) or a teacher shard of the build (``name``).

    Rows of a build's teacher get their paragraph's JATS context (article type, section type and
    title), which the report's rules baseline reads.
    """
    from pmcurate.annotate.sample import paragraphs_with_context

    if path:
        return read_labels_jsonl(path)
    frame = read_teacher_labels(build, name or "llm")
    context = (
        paragraphs_with_context(build)
        .select(
            "paragraph_id", "article_type", "section_type", "section_title", pl.col("text").alias("_text")
        )
        .collect()
    )
    joined = frame.join(context, on="paragraph_id", how="left")
    return joined.with_columns(pl.coalesce("text", "_text").alias("text")).drop("_text")
