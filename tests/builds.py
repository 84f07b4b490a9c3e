"""Helpers shared by the build tests: a small manifest over real articles, and table comparisons.

The manifest is the demo's pipeline made quick: five bundled sample articles cut into harvest
tasks of two files (so adding a file touches one task), the project's LLM labels as teacher, a
student without pretraining or hyper-parameter search (single-threaded fastText: deterministic),
one subset with deduplication and one export.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pmcurate" / "data" / "sample"
LABELS = ROOT / "tests" / "data" / "labels" / "dev-paragraph-labels.jsonl"
ARTICLES = (
    "1471-2180-11-174.nxml",
    "1472-6831-8-11.nxml",
    "PMC5828200.nxml",
    "ehp-116-1694.nxml",
    "pntd.0002065.nxml",
)
EXTRA = "pone.0046493.nxml"
"""Sorts after every file of ARTICLES once renamed ``zz-…``: adding it changes the last task only."""

SORT_KEYS = {
    "articles": "article_id",
    "paragraphs": "paragraph_id",
    "figures": "figure_id",
    "tables": "table_id",
    "labels": "paragraph_id",
}


def make_inputs(folder: Path, names: tuple[str, ...] = ARTICLES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(SAMPLE / name, folder / name)
    return folder


def add_extra_article(folder: Path) -> Path:
    target = folder / f"zz-{EXTRA}"
    shutil.copy2(SAMPLE / EXTRA, target)
    return target


def write_manifest(path: Path, inputs: Path, *, extra: str = "") -> Path:
    path.write_text(
        f"""name = "test"
description = "five sample articles, quick student"

[[sources]]
kind = "local"
paths = ["{inputs}"]
batch_size = 2

[teacher]
kind = "labels"
labels = "{LABELS}"

[student]
dim = 20
pretrain = false
search = false

[subsets.edu]
rules = ["min_words=48", "edu_min=2.5"]
dedup = ["exact"]

[exports.default]
preset = "biomed-enriched"
subset = "edu"
split_by = "license"
{extra}"""
    )
    return path


def read_table(build: Path, table: str) -> pl.DataFrame:
    frame = pl.read_parquet(sorted((build / "tables" / table).glob("*.parquet")))
    return frame.drop("harvested_at", strict=False).sort(SORT_KEYS[table])


def read_subset(build: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(sorted((build / "subsets" / name).glob("*.parquet"))).sort(
        "paragraph_id", "repeat"
    )


def dataset_files(build: Path) -> dict[str, bytes]:
    folder = build / "dataset" / "data"
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.parquet"))}


def assert_same_build(left: Path, right: Path) -> None:
    """Same rows in every table and subset, and byte-identical dataset shards."""
    for table in SORT_KEYS:
        assert read_table(left, table).equals(read_table(right, table)), f"table {table} differs"
    assert read_subset(left, "edu").equals(read_subset(right, "edu")), "subset edu differs"
    assert dataset_files(left) == dataset_files(right), "dataset shards differ"
