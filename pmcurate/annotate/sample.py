"""Choose the paragraphs the teacher labels: stratified, deterministic, long enough.

A uniform sample of PMC-OA is mostly results and methods of research articles; the rare kinds the
labels exist to find (case reports, reviews, back matter) would get a handful of examples. The
sample is instead spread evenly over strata of (article type, section type) and, inside each,
over journals and years: the k-th paragraph of every fine stratum comes before the (k+1)-th of
any. Paragraphs shorter than ``min_tokens`` (words and punctuation marks, as Biomed-Enriched's 64)
are skipped. The order is a seeded hash of the paragraph id: the same seed gives the same sample.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from pmcurate import schema
from pmcurate.errors import Fatal

TOKEN = r"\w+|[^\w\s]"
SAMPLE_FILE = Path("labels") / "sample.parquet"
COARSE = ("article_type", "section_type")
FINE = (*COARSE, "journal", "pub_year")


class SampleError(Fatal):
    """The build has nothing to sample from."""


def paragraphs_with_context(build: str | os.PathLike[str]) -> pl.LazyFrame:
    """Paragraphs joined with their article's type, journal and year (lazy: nothing read yet)."""
    paragraphs = schema.shard_paths(build, "paragraphs")
    if not paragraphs:
        raise SampleError(f"{schema.table_dir(build, 'paragraphs')}: no paragraph shards in this build")
    articles = schema.shard_paths(build, "articles")
    frame = pl.scan_parquet(paragraphs)
    if articles:
        context = pl.scan_parquet(articles).select("article_id", "article_type", "journal", "pub_year")
        return frame.join(context, on="article_id", how="left")
    return frame.with_columns(
        pl.lit(None, pl.String).alias("article_type"),
        pl.lit(None, pl.String).alias("journal"),
        pl.lit(None, pl.Int32).alias("pub_year"),
    )


def stratified_sample(
    build: str | os.PathLike[str], n: int, *, seed: int = 0, min_tokens: int = 64
) -> pl.DataFrame:
    """Up to ``n`` paragraphs of the build, spread over strata (see the module docstring)."""
    if n <= 0:
        raise SampleError(f"sample size must be positive, got {n}")
    key = pl.col("paragraph_id").hash(seed)
    chosen = (
        paragraphs_with_context(build)
        .with_columns(pl.col("text").str.count_matches(TOKEN).alias("n_tokens"))
        .filter(pl.col("n_tokens") >= min_tokens)
        .with_columns(key.alias("_key"))
        .with_columns(pl.col("_key").rank("ordinal").over(FINE).alias("_fine"))
        .with_columns(pl.struct("_fine", "_key").rank("ordinal").over(COARSE).alias("_coarse"))
        .sort("_coarse", "_key")
        .head(n)
        .select(
            "paragraph_id",
            "article_id",
            "article_type",
            "journal",
            "pub_year",
            "section_title",
            "section_type",
            "n_tokens",
            "text",
        )
    )
    return chosen.collect()


def write_sample(build: str | os.PathLike[str], frame: pl.DataFrame) -> Path:
    return schema.write_shard(frame.to_arrow(), Path(build) / SAMPLE_FILE)


def read_sample(build: str | os.PathLike[str]) -> pl.DataFrame:
    path = Path(build) / SAMPLE_FILE
    if not path.is_file():
        raise SampleError(f"{path}: no sample in this build (run `pmcurate annotate sample` first)")
    return pl.read_parquet(path)
