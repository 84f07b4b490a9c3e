"""Filter and dedup: peak memory at two corpus sizes, and dedup recall and precision, in one run.

The build is generated from the real JATS fixtures: they are harvested, their paragraphs cut into
sentences (5 to 60 words: no table dumps), and every synthetic paragraph is 4-8 sentences drawn at
random (seeded), so rows are realistic biomedical prose and nearly never alike by chance. Then
duplicates are planted: 2% of rows are exact copies of an earlier row (case and spacing changed)
and 2% near copies (three words replaced). Articles hold 100 paragraphs each, with licenses and
synthetic labels.

Each run is one ``make_subset`` over a whole build, in its own process, its tasks on the local
executor (``--workers``, default 2), on a local Ray instance with as many worker processes
(``--executors ray``), or on Ray through a ``file://`` URL, each worker process on its own working
copy of the build (``ray-url``: ``executor.UrlBuildExecutor``, the workers' ``PMCURATE_CACHE``
another folder): ``min_words``, ``boilerplate``,
``not_retracted``, ``edu_min=2`` (they keep ~78% of rows), then exact and near dedup. Its memory is
sampled from /proc every 0.1 s over the whole process tree (the subset's process and its workers):
the largest single process and the sum. The same runs at each size of ``--sizes`` (default 200,000
and 1,000,000 paragraphs: 5× apart), then the ratio of the peaks, which bounded memory keeps near 1.
With several ``--executors``, each run after the first says whether its subset (shards, drops,
``subset.json``) is byte-identical to the first executor's.

Printed per run: seconds, input rows per second, peak RSS, rows kept; the share of planted exact
copies found, the share of planted near copies found among those whose true Jaccard similarity
(3-word shingles, computed exactly) reaches the 0.8 threshold, and the precision of near-duplicate
drops: the share whose true similarity to the row kept in their place is at least 0.75.

    .venv/bin/python bench/filters.py                                 # 200k and 1M paragraphs
    .venv/bin/python bench/filters.py --sizes 20000 100000 --stages rules "rules + exact + near"
    .venv/bin/python bench/filters.py --sizes 20000 100000 --executors local ray ray-url
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from pmcurate import schema

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "jats"
SHARD_ROWS = 100_000
PER_ARTICLE = 100
LICENSES = [("CC BY", True), ("CC BY-NC", False), ("CC0", True), ("CC BY-NC-ND", False), (None, None)]
STAGES = {
    "rules": [],
    "rules + exact": ["exact"],
    "rules + exact + near": ["exact", "near"],
}
RULES = ["min_words", "boilerplate", "not_retracted", "edu_min=2"]
THRESHOLD = 0.8
ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
"""Upper-casing ASCII only: ``str.upper`` is not undone by lower-casing for every character
(``µ`` becomes Greek ``Μ``), which would make a planted "exact" copy a different text."""


def fixture_sentences(workdir: Path) -> list[str]:
    """Sentences of the fixtures' paragraphs (harvested with pmcurate), 5 words or more."""
    from pmcurate.harvest.local import harvest_local

    build = workdir / "fixtures"
    if not schema.shard_paths(build, "paragraphs"):
        harvest_local([FIXTURES], build, workers=1, progress=False)
    texts = pl.read_parquet(schema.shard_paths(build, "paragraphs"))["text"].to_list()
    sentences = [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t)]
    return sorted({s for s in sentences if 5 <= len(s.split()) <= 60})  # no table dumps


def change_words(text: str, rng: np.random.Generator) -> str:
    tokens = text.split()
    for i in rng.choice(len(tokens), size=min(3, len(tokens)), replace=False):
        tokens[i] = f"changed{i}"
    return " ".join(tokens)


class Recipe:
    """Which sentences make each row, and which rows are planted copies of which: a few bytes a
    row, so that the texts can be built shard by shard and a 10M-row build never sits in memory."""

    def __init__(self, n: int, pool_size: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        sizes = rng.integers(4, 9, size=n)
        self.bounds = np.concatenate(([0], np.cumsum(sizes)))
        self.picks = rng.integers(0, pool_size, size=int(self.bounds[-1])).astype(np.int32)
        kinds = rng.random(n)
        kinds[:1000] = 1.0  # the first rows are never copies
        self.kind = np.where(kinds < 0.02, 1, np.where(kinds < 0.04, 2, 0)).astype(np.int8)  # 1 exact, 2 near
        originals = np.flatnonzero(self.kind == 0)
        planted = np.flatnonzero(self.kind > 0)
        # the source of a copy is an original row at least 500 rows (5 articles) earlier
        limit = np.searchsorted(originals, planted - 500)
        self.source = np.full(n, -1, dtype=np.int64)
        self.source[planted] = originals[(rng.random(len(planted)) * limit).astype(np.int64)]

    def text(self, i: int, pool: np.ndarray) -> str:
        if self.kind[i] == 0:
            return " ".join(pool[self.picks[self.bounds[i] : self.bounds[i + 1]]])
        original = self.text(int(self.source[i]), pool)
        if self.kind[i] == 1:
            return "  " + original.translate(ASCII_UPPER).replace(" ", "  ")
        return change_words(original, np.random.default_rng([self.seed, i]))


def paragraph_id(i: int) -> str:
    return f"PMCB{i // PER_ARTICLE:07d}/body/p[{i % PER_ARTICLE + 1:03d}]"


def write_articles(build: Path, n: int) -> None:
    articles = []
    for a in range((n + PER_ARTICLE - 1) // PER_ARTICLE):
        license, commercial = LICENSES[a % len(LICENSES)]
        articles.append(
            {
                "article_id": f"PMCB{a:07d}",
                "pmcid": f"PMCB{a:07d}",
                "license": license,
                "commercial_use": commercial,
                "retracted": a % 97 == 0,
                "pub_year": 2000 + a % 25,
                "article_type": "case-report" if a % 10 == 0 else "research-article",
                "journal": f"Journal {a % 50}",
            }
        )
    schema.write_shard(
        schema.to_table(articles, schema.ARTICLES), schema.table_dir(build, "articles") / "part-00000.parquet"
    )


def write_shard(build: Path, shard: int, rows: range, recipe: Recipe, pool: np.ndarray, seed: int) -> None:
    """One shard of paragraphs and its labels (the last paragraph of every article is boilerplate)."""
    rng = np.random.default_rng([seed, shard, 1])
    ids = [paragraph_id(i) for i in rows]
    texts = [recipe.text(i, pool) for i in rows]
    section = ["Acknowledgements" if i % PER_ARTICLE == PER_ARTICLE - 1 else "Results" for i in rows]
    paragraphs = pa.table(
        {
            "paragraph_id": ids,
            "article_id": [i[: i.index("/")] for i in ids],
            "path": [i[i.index("/") + 1 :] for i in ids],
            "ordinal": pa.array([i % PER_ARTICLE for i in rows], pa.int32()),
            "section_title": section,
            "section_path": [[s] for s in section],
            "section_type": ["results"] * len(rows),
            "text": texts,
            "n_words": pa.array([len(t.split()) for t in texts], pa.int32()),
        },
        schema=schema.PARAGRAPHS,
    )
    schema.write_shard(paragraphs, schema.table_dir(build, "paragraphs") / f"part-{shard:05d}.parquet")
    given = {
        "paragraph_id": ids,
        "document_type": np.array(schema.DOCUMENT_TYPES)[rng.integers(0, 4, size=len(rows))],
        "domain": ["biomedical"] * len(rows),
        "educational_score": rng.integers(1, 6, size=len(rows)).astype(np.float32),
        "annotator": ["bench"] * len(rows),
    }
    labels = pa.table(  # the other labels (scores, computed ones) null
        {f.name: given.get(f.name, pa.nulls(len(rows), f.type)) for f in schema.LABELS}, schema=schema.LABELS
    )
    schema.write_shard(labels, schema.table_dir(build, "labels") / f"part-{shard:05d}.parquet")


def generate(workdir: Path, n: int, seed: int = 7) -> Path:
    """Write the synthetic build (articles, paragraphs, labels) and the list of planted copies."""
    build = workdir / f"synthetic-{n}"
    if (build / "planted.parquet").exists():
        return build
    shutil.rmtree(build, ignore_errors=True)
    started = time.perf_counter()
    sentences = fixture_sentences(workdir)
    pool = np.array(sentences, dtype=object)
    recipe = Recipe(n, len(pool), seed)
    write_articles(build, n)
    for shard, start in enumerate(range(0, n, SHARD_ROWS)):
        write_shard(build, shard, range(start, min(n, start + SHARD_ROWS)), recipe, pool, seed)
    planted = np.flatnonzero(recipe.kind > 0)
    pl.DataFrame(
        {
            "id": [paragraph_id(i) for i in planted],
            "of": [paragraph_id(int(recipe.source[i])) for i in planted],
            "kind": ["exact" if recipe.kind[i] == 1 else "near" for i in planted],
        }
    ).write_parquet(build / "planted.parquet")
    print(
        f"generated {n:,} paragraphs ({len(planted):,} planted copies) from {len(sentences):,} fixture "
        f"sentences in {time.perf_counter() - started:.1f} s: {build}",
        flush=True,
    )
    return build


EXECUTORS = ("local", "ray", "ray-url")


def subset_name(stage: str) -> str:
    """One name for every executor's run: the name is in the subset's files (subset.json, drops)."""
    return "bench-" + re.sub(r"\W+", "-", stage)


def make_runner(build: Path, executor: str, workers: int) -> Any:
    """The executor named ``executor``; ``ray-url``: Ray on the build pushed to a ``file://`` URL,
    every worker process on its own working copy (under ``WORKDIR/ray-workers``)."""
    from pmcurate.executor import BuildLocation, RayExecutor, UrlBuildExecutor, make_executor, push

    if executor != "ray-url":
        return make_executor(executor, workers)
    cache = build.parent / "ray-workers"
    ray = RayExecutor(workers, runtime_env={"env_vars": {"PMCURATE_CACHE": str(cache)}})
    location = BuildLocation(build, (build.parent / "url" / build.name).as_uri())
    push(location)
    return UrlBuildExecutor(ray, location)


def run_stage(build: Path, stage: str, workers: int, executor: str, partition_rows: int) -> dict[str, object]:
    """One make_subset run (called in a child process): timing and counts."""
    from pmcurate.filters.subset import make_subset

    name = subset_name(stage)
    runner = make_runner(build, executor, workers)
    started = time.perf_counter()
    try:
        result = make_subset(
            build, name, rules=RULES, dedup=STAGES[stage], executor=runner, partition_rows=partition_rows
        )
    finally:
        runner.close()
    return {
        "stage": stage,
        "seconds": time.perf_counter() - started,
        "rows": result.input_rows,
        "kept": result.kept_rows,
        "dropped": result.dropped,
        "subset": name,
    }


def measured(build: Path, stage: str, workers: int, executor: str, partition_rows: int) -> dict[str, object]:
    """Run one stage in a child process, sampling the memory of its process tree."""
    from build import run_measuring_memory  # bench/build.py: resident memory of a process tree, from /proc

    command = [sys.executable, __file__, "--stage", stage, "--build", str(build), "--workers", str(workers),
               "--executor", executor, "--partition-rows", str(partition_rows)]  # fmt: skip
    process, output, errors, peak, largest = run_measuring_memory(command, stderr=subprocess.PIPE)
    if process.returncode:
        raise SystemExit(f"{stage} failed ({process.returncode}):\n{errors[-4000:]}")
    out = json.loads(output.strip().splitlines()[-1])
    return {**out, "tree_mb": peak / 2**20, "process_mb": largest / 2**20}


def shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[^\W_]+", text.lower())
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / max(1, len(x | y))


def quality(build: Path, subset: str) -> dict[str, float]:
    """Recall on planted copies (among those the rules kept) and precision of near-duplicate drops."""
    planted = pl.read_parquet(build / "planted.parquet")
    drops = pl.read_parquet(build / "subsets" / subset / "drops" / "*.parquet")
    ruled_out = drops.filter(~pl.col("rule").str.starts_with("dup_"))["id"]
    dups = drops.filter(pl.col("rule").str.starts_with("dup_"))
    out = ruled_out.implode()
    eligible = planted.filter(~pl.col("id").is_in(out) & ~pl.col("of").is_in(out))
    near_drops = dups.filter(pl.col("rule") == "dup_near")
    wanted = set(eligible["id"]) | set(eligible["of"]) | set(near_drops["id"]) | set(near_drops["cluster"])
    text = dict(
        pl.scan_parquet(schema.shard_paths(build, "paragraphs"))
        .filter(pl.col("paragraph_id").is_in(pl.Series(sorted(wanted)).implode()))
        .select("paragraph_id", "text")
        .collect()
        .iter_rows()
    )
    found = set(dups["id"])
    exact = eligible.filter(pl.col("kind") == "exact")
    near = [r for r in eligible.filter(pl.col("kind") == "near").iter_rows(named=True)]
    near_due = [r for r in near if jaccard(text[r["id"]], text[r["of"]]) >= THRESHOLD]
    similar = [
        jaccard(text[r["id"]], text[r["cluster"]]) >= THRESHOLD - 0.05
        for r in near_drops.iter_rows(named=True)
    ]
    return {
        "exact_recall": sum(i in found for i in exact["id"]) / max(1, exact.height),
        "near_due": len(near_due),
        "near_recall": sum(r["id"] in found for r in near_due) / max(1, len(near_due)),
        "near_precision": sum(similar) / max(1, len(similar)),
    }


def describe_quality(build: Path, stage: str, subset: str) -> str:
    if not STAGES[stage]:
        return ""
    q = quality(build, subset)
    text = f"exact copies found {q['exact_recall']:.3f}"
    if "near" in STAGES[stage]:
        text += (
            f"; near copies >= {THRESHOLD} found {q['near_recall']:.3f} (of {q['near_due']:,}), "
            f"near-drop precision {q['near_precision']:.3f}"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000], help="paragraphs")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pmcurate-bench-filters"))
    parser.add_argument(
        "--stages", nargs="+", choices=list(STAGES), default=["rules + exact + near"], help="runs to make"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--partition-rows", type=int, default=100_000, help="rows a range holds (memory follows it)"
    )
    parser.add_argument(
        "--executors", nargs="+", choices=EXECUTORS, default=["local"], help="each run once on each"
    )
    parser.add_argument("--executor", choices=EXECUTORS, help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:  # child process
        print(json.dumps(run_stage(args.build, args.stage, args.workers, args.executor, args.partition_rows)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    builds = {size: generate(args.workdir, size) for size in args.sizes}
    print(
        f"executors {', '.join(args.executors)}, {args.workers} workers, "
        f"ranges of {args.partition_rows:,} rows"
    )
    print(
        f"{'paragraphs':>10} {'stage':<22} {'executor':<8} {'seconds':>8} {'rows/s':>8} {'largest':>9} "
        f"{'tree':>9} {'kept':>10}  duplicates"
    )
    peaks: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for stage in args.stages:
        for size, build in builds.items():
            for executor in args.executors:
                out = measured(build, stage, args.workers, executor, args.partition_rows)
                rate = float(out["rows"]) / float(out["seconds"])
                dups = describe_quality(build, stage, str(out["subset"]))
                first = args.executors[0]
                made = keep_subset(build, str(out["subset"]), args.workdir / "subsets" / f"{size}" / executor)
                if executor != first:
                    same = subset_files(made) == subset_files(made.parent.parent / first / made.name)
                    dups += f"; subset byte-identical to {first}'s: {'yes' if same else 'NO'}"
                print(
                    f"{size:>10,} {stage:<22} {executor:<8} {out['seconds']:>8.1f} {rate:>8,.0f} "
                    f"{out['process_mb']:>6,.0f} MB {out['tree_mb']:>6,.0f} MB {out['kept']:>10,}  {dups}",
                    flush=True,
                )
                peaks.setdefault((stage, executor), []).append(
                    (size, float(out["process_mb"]), float(out["tree_mb"]))
                )
    for (stage, executor), runs in peaks.items():
        (small, p0, t0), (large, p1, t1) = min(runs), max(runs)
        if large > small:
            print(
                f"{stage} ({executor}): {large / small:g}x the paragraphs, peak of the largest process "
                f"x{p1 / p0:.2f}, of the process tree x{t1 / t0:.2f}"
            )


def keep_subset(build: Path, name: str, folder: Path) -> Path:
    """A copy of subset ``name`` under ``folder`` (the next executor's run replaces it in the build)."""
    target = folder / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(build / "subsets" / name, target)
    return target


def subset_files(folder: Path) -> dict[str, bytes]:
    """Every file of a subset (shards, drops, subset.json) by its name in the subset."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


if __name__ == "__main__":
    main()
