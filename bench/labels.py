"""What the computed ``language`` label costs when the build is labelled, side by side in one run.

fastText students are trained on the shipped dev labels (``pmcurate/data/labels/``, no search, no
pretraining: seconds), then label the same paragraphs twice on one core: the taught labels alone
(``Students.label``), and the taught labels plus the computed ones (``labels.with_computed``, what
``annotate apply`` writes). The paragraphs are the dev file's texts, repeated to ``--rows``.

Printed: paragraphs per second of each, of the language label alone, and the ratio of the two
apply rates (the share of apply's time the computed label takes).

    .venv/bin/python bench/labels.py --rows 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa

from pmcurate import labels
from pmcurate.annotate import labels_file, student

DEV = Path(__file__).parents[1] / "pmcurate" / "data" / "labels" / "sample-paragraph-labels.jsonl"


def paragraphs(rows: int) -> pl.DataFrame:
    """``rows`` paragraphs with the students' input columns, the dev texts repeated."""
    teacher = labels_file.read_labels_jsonl(DEV).filter(pl.col("text").is_not_null())
    frame = teacher.select("text", "article_id").with_columns(
        pl.lit("research-article").alias("article_type"),
        pl.lit("results").alias("section_type"),
        pl.lit("Results").alias("section_title"),
    )
    repeated = pl.concat([frame] * (rows // frame.height + 1)).head(rows)
    return repeated.with_columns(pl.format("p{}", pl.int_range(pl.len())).alias("paragraph_id"))


def rate(seconds: float, rows: int) -> str:
    return f"{rows / seconds:>10,.0f} paragraphs/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        teacher = labels_file.read_labels_jsonl(DEV)
        student.train_student(build, teacher, teacher_name="dev", pretrain=False, grid=(student.Params(),))
        students = student.Students(build, student.load_manifest(build))
        frame = paragraphs(args.rows)
        table = frame.select("paragraph_id", "text").to_arrow()

        started = time.perf_counter()
        taught = students.label(frame)
        taught_s = time.perf_counter() - started

        started = time.perf_counter()
        complete = labels.with_computed(students.label(frame), table)
        both_s = time.perf_counter() - started

        started = time.perf_counter()
        labels.get("language").compute(table.select(["text"]))  # type: ignore[misc]
        language_s = time.perf_counter() - started
    assert complete.num_rows == taught.num_rows == args.rows
    assert isinstance(complete.column("language"), pa.ChunkedArray)
    print(f"{args.rows:,} paragraphs, one core")
    print(f"  taught labels (fastText students)      {rate(taught_s, args.rows)}")
    print(f"  taught + computed labels (apply)       {rate(both_s, args.rows)}")
    print(f"  the language label alone               {rate(language_s, args.rows)}")
    print(f"  apply with the computed label takes {both_s / taught_s:.1f}x the time without it")


if __name__ == "__main__":
    main()
