"""Throughput of ``pmcurate annotate apply`` end to end, beside raw fastText ``predict``.

Builds a corpus by repeating the real paragraphs of ``tests/data/jats`` (harvested with
``harvest local``) into shards, trains students on ``tests/data/labels``, then times:

- apply on one process and on all cores: read Parquet shards, normalize, three models, write the
  labels shards (``tables/labels``), paragraphs per second;
- raw fastText: the three models' ``predict(texts, k=-1)`` on the same texts already in memory.

The ratio (end to end / raw) is the cost of everything around the models. Target: 25,000
paragraphs/s per core end to end.

    .venv/bin/python bench/annotate.py [--paragraphs 400000] [--shards 8]
"""

from __future__ import annotations

import os

# Per-core numbers: Polars (text normalization, Parquet) on one thread, like each apply worker.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import fasttext
import polars as pl

from pmcurate import schema
from pmcurate.annotate import labels_file, student
from pmcurate.harvest.local import harvest_local

ROOT = Path(__file__).resolve().parent.parent
JATS = ROOT / "tests" / "data" / "jats"
LABELS = ROOT / "tests" / "data" / "labels" / "dev-paragraph-labels.jsonl"


def make_build(folder: Path, paragraphs: int, shards: int) -> Path:
    """A build whose paragraphs table holds ``paragraphs`` rows (the fixtures, repeated) in shards."""
    build = folder / "build"
    harvest_local([JATS], build, workers=1, progress=False)
    base = pl.read_parquet(schema.shard_paths(build, "paragraphs"))
    shutil.rmtree(schema.table_dir(build, "paragraphs"))
    per_shard = paragraphs // shards
    repeats = per_shard // base.height + 1
    for shard in range(shards):
        frame = pl.concat([base] * repeats).head(per_shard)
        frame = frame.with_columns(
            pl.col("paragraph_id") + f"#{shard}-" + pl.int_range(pl.len()).cast(pl.String)
        )
        schema.write_shard(
            frame.to_arrow().cast(schema.PARAGRAPHS),
            schema.table_dir(build, "paragraphs") / f"p{shard:03d}.parquet",
        )
    return build


def raw_predict_rate(build: Path, texts: list[str]) -> float:
    """fastText ``predict(texts, k=-1)`` of every model of the build's students, texts in memory."""
    manifest = student.load_manifest(build)
    models = [fasttext.load_model(str(build / "models" / e["file"])) for e in manifest["models"].values()]
    lines = [t.replace("\n", " ") for t in texts]
    start = time.perf_counter()
    for model in models:
        model.predict(lines, k=-1)
    return len(lines) / (time.perf_counter() - start)


def measure(build: Path, teacher: pl.DataFrame, *, joint: bool, cores: int) -> dict[str, float]:
    for old in schema.shard_paths(build, "labels"):
        old.unlink()
    student.train_student(
        build, teacher, teacher_name="dev", grid=(student.Params(),), max_pretrain_texts=10_000, joint=joint
    )
    sample = pl.read_parquet(schema.shard_paths(build, "paragraphs")[0], columns=["text"])["text"].to_list()
    rates = {"raw": raw_predict_rate(build, sample)}
    for jobs in sorted({1, cores}):
        result = student.apply_students(build, jobs=jobs, force=True, progress=False)
        rates[f"apply{jobs}"] = result.paragraphs / result.seconds
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=400_000)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        build = make_build(Path(tmp), args.paragraphs, args.shards)
        teacher = labels_file.read_labels_jsonl(LABELS)
        results = {
            "three models": measure(build, teacher, joint=False, cores=cores),
            "joint model": measure(build, teacher, joint=True, cores=cores),
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"corpus: {args.paragraphs:,} paragraphs in {args.shards} shards; {cores} cores; "
        f"parent max RSS {rss:,.0f} MiB"
    )
    for variant, rates in results.items():
        raw = rates["raw"]
        print(f"{variant}: raw fastText predict (all models, one core): {raw:>10,.0f} paragraphs/s")
        for jobs in sorted({1, cores}):
            rate = rates[f"apply{jobs}"]
            print(
                f"  annotate apply end to end, {jobs} process(es): {rate:>10,.0f} paragraphs/s "
                f"({rate / jobs:,.0f}/core; {rate / jobs / raw:.2f} x raw predict)"
            )
        per_core = rates["apply1"]
        verdict = "met" if per_core >= 25_000 else "NOT met"
        print(
            f"  target 25,000 paragraphs/s/core: {verdict}; 146M paragraphs on {cores} cores: "
            f"{146e6 / rates[f'apply{cores}'] / 3600:.2f} h"
        )


if __name__ == "__main__":
    main()
