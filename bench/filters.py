"""Filter and dedup throughput and peak memory over a synthetic build of a million paragraphs or more.

The build is generated from the real JATS fixtures: they are harvested, their paragraphs cut into
sentences (5 to 60 words: no table dumps), and every synthetic paragraph is 4-8 sentences drawn at
random (seeded), so rows are realistic biomedical prose and nearly never alike by chance. Then
duplicates are planted: 2% of rows are exact copies of an earlier row (case and spacing changed)
and 2% near copies (three words replaced). Articles hold 100 paragraphs each, with licenses and
synthetic labels.

Three runs of ``make_subset`` over the whole build, each in its own process so that its peak
resident memory (``ru_maxrss``) is its own:

- ``rules``: ``min_words``, ``boilerplate``, ``not_retracted``, ``edu_min=2`` (they keep ~78% of
  rows, so dedup works on most of the build);
- ``rules + exact``: the same, then exact dedup (normalized-text MD5, in DuckDB);
- ``rules + exact + near``: then MinHash LSH near dedup (rensa signatures, banded on disk).

Printed: seconds, input rows per second, peak RSS, rows kept; for dedup, the share of planted exact
copies found, the share of planted near copies found among those whose true Jaccard similarity
(3-word shingles, computed exactly) reaches the 0.8 threshold, and the precision of near-duplicate
drops: the share whose true similarity to the row kept in their place is at least 0.75.

    .venv/bin/python bench/filters.py                       # 1M paragraphs, ~3 minutes on 2 cores
    .venv/bin/python bench/filters.py --paragraphs 200000   # quick look
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

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
    labels = pa.table(
        {
            "paragraph_id": ids,
            "document_type": np.array(schema.DOCUMENT_TYPES)[rng.integers(0, 4, size=len(rows))],
            "document_type_scores": pa.nulls(len(rows), schema.LABELS.field("document_type_scores").type),
            "domain": ["biomedical"] * len(rows),
            "domain_scores": pa.nulls(len(rows), schema.LABELS.field("domain_scores").type),
            "educational_score": rng.integers(1, 6, size=len(rows)).astype(np.float32),
            "annotator": ["bench"] * len(rows),
        },
        schema=schema.LABELS,
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


def run_stage(build: Path, stage: str) -> dict[str, object]:
    """One make_subset run (called in a child process): timing, peak memory and counts."""
    from pmcurate.filters.subset import make_subset

    name = "bench-" + re.sub(r"\W+", "-", stage)
    started = time.perf_counter()
    result = make_subset(build, name, rules=RULES, dedup=STAGES[stage])
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "stage": stage,
        "seconds": seconds,
        "rows": result.input_rows,
        "kept": result.kept_rows,
        "dropped": result.dropped,
        "peak_mb": peak,
        "subset": name,
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paragraphs", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pmcurate-bench-filters"))
    parser.add_argument(
        "--stages", nargs="+", choices=list(STAGES), default=list(STAGES), help="runs to make (default: all)"
    )
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:  # child process
        print(json.dumps(run_stage(args.build, args.stage)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    build = generate(args.workdir, args.paragraphs)
    print(f"{'stage':<22} {'seconds':>8} {'rows/s':>10} {'peak RSS':>10} {'kept':>10}  duplicates")
    for stage in args.stages:
        child = subprocess.run(
            [sys.executable, __file__, "--stage", stage, "--build", str(build)],
            check=True,
            capture_output=True,
            text=True,
        )
        out = json.loads(child.stdout.strip().splitlines()[-1])
        dups = ""
        if STAGES[stage]:
            q = quality(build, str(out["subset"]))
            dups = f"exact copies found {q['exact_recall']:.3f}"
            if "near" in STAGES[stage]:
                dups += (
                    f"; near copies >= {THRESHOLD} found {q['near_recall']:.3f} (of {q['near_due']:,}), "
                    f"near-drop precision {q['near_precision']:.3f}"
                )
        rate = float(out["rows"]) / float(out["seconds"])
        line = (
            f"{stage:<22} {out['seconds']:>8.1f} {rate:>10,.0f} {out['peak_mb']:>8,.0f} MB {out['kept']:>10,}"
        )
        print(f"{line}  {dups}", flush=True)
        print(f"{'':<22} dropped: {out['dropped']}", flush=True)


if __name__ == "__main__":
    main()
