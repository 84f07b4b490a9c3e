"""Builds for the filter tests: a small synthetic one with known answers (real table schemas), and
one harvested from the JATS fixtures with planted duplicates and synthetic labels."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from pmcurate import schema

VOCABULARY = [
    "patient",
    "presented",
    "with",
    "fever",
    "cough",
    "dyspnea",
    "chest",
    "pain",
    "history",
    "hypertension",
    "diabetes",
    "treated",
    "antibiotics",
    "admitted",
    "hospital",
    "day",
    "examination",
    "revealed",
    "elevated",
    "levels",
    "protein",
    "cells",
    "tissue",
    "samples",
    "analysis",
    "showed",
    "significant",
    "increase",
    "expression",
    "gene",
    "mice",
    "model",
    "study",
    "results",
    "suggest",
    "role",
    "pathway",
    "mechanism",
    "response",
    "infection",
    "bacteria",
    "virus",
    "strain",
    "growth",
    "culture",
    "medium",
    "assay",
]


def words(n: int, seed: int) -> str:
    """``n`` words of biomedical-sounding English, the same for the same seed."""
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCABULARY) for _ in range(n))


def change_words(text: str, positions: tuple[int, ...]) -> str:
    """``text`` with the words at ``positions`` replaced: a near duplicate."""
    tokens = text.split()
    for i in positions:
        tokens[i] = f"changed{i}"
    return " ".join(tokens)


ARTICLES = [
    {
        "article_id": "PMC1",
        "pmcid": "PMC1",
        "license": "CC BY",
        "commercial_use": True,
        "retracted": False,
        "pub_year": 2020,
        "article_type": "case-report",
        "journal": "J Cases",
        "title": "A case",
    },
    {
        "article_id": "PMC2",
        "pmcid": "PMC2",
        "license": "CC BY-NC",
        "commercial_use": False,
        "retracted": False,
        "pub_year": 2021,
        "article_type": "research-article",
        "journal": "J Research",
        "title": "A study",
    },
    {
        "article_id": "PMC3",
        "pmcid": "PMC3",
        "license": None,
        "commercial_use": None,
        "retracted": True,
        "pub_year": 2019,
        "article_type": "research-article",
        "journal": "J Research",
        "title": "Retracted",
    },
]

BASE = words(80, 100)
PARAGRAPHS = [
    # id suffix, article, section title, text, (document_type, domain, educational_score)
    ("PMC1", "p1", "Case presentation", words(80, 1), ("clinical_case", "clinical", 4.0)),
    ("PMC1", "p2", "Case presentation", words(20, 2), ("clinical_case", "clinical", 3.0)),
    ("PMC1", "p3", "Case presentation", words(70, 3), ("clinical_case", "clinical", 2.0)),
    ("PMC1", "p4", "Acknowledgements", words(60, 4), ("other", "other", 1.0)),
    ("PMC2", "p1", "Introduction", BASE, ("review", "biomedical", 4.5)),
    ("PMC2", "p2", "Results", words(90, 6), ("study", "biomedical", 3.5)),
    ("PMC2", "p3", "Discussion", BASE.upper().replace(" ", "  "), ("study", "biomedical", 3.0)),
    ("PMC2", "p4", "Discussion", change_words(BASE, (10, 40)), ("study", "biomedical", 3.0)),
    ("PMC2", "p5", "Methods", words(65, 9), ("clinical_case", "clinical", 3.0)),
    ("PMC3", "p1", "Results", words(75, 10), ("study", "biomedical", 3.0)),
]
"""PMC1 is mostly clinical (3/4), PMC2 has one clinical paragraph in five. PMC2/p3 is an exact
duplicate of PMC2/p1 once normalized (case, spacing); PMC2/p4 a near duplicate (two words changed)."""


def paragraph_rows() -> list[dict]:
    rows = []
    for ordinal, (article, suffix, title, text, _) in enumerate(PARAGRAPHS):
        path = "/article/back/ack/p[1]" if title == "Acknowledgements" else f"/article/body/sec/{suffix}"
        rows.append(
            {
                "paragraph_id": f"{article}/{suffix}",
                "article_id": article,
                "path": path,
                "ordinal": ordinal,
                "section_title": title,
                "section_path": [title],
                "section_type": "case" if title.startswith("Case") else "other",
                "text": text,
                "n_words": len(text.split()),
            }
        )
    return rows


def label_rows() -> list[dict]:
    return [
        {
            "paragraph_id": f"{article}/{suffix}",
            "document_type": doc_type,
            "domain": domain,
            "educational_score": score,
            "annotator": "synthetic",
        }
        for article, suffix, _, _, (doc_type, domain, score) in PARAGRAPHS
    ]


def write_build(root: Path, *, labels: bool = True) -> Path:
    schema.write_shard(
        schema.to_table(ARTICLES, schema.ARTICLES), schema.table_dir(root, "articles") / "part-0.parquet"
    )
    schema.write_shard(
        schema.to_table(paragraph_rows(), schema.PARAGRAPHS),
        schema.table_dir(root, "paragraphs") / "part-0.parquet",
    )
    if labels:
        schema.write_shard(
            schema.to_table(label_rows(), schema.LABELS), schema.table_dir(root, "labels") / "part-0.parquet"
        )
    return root


@pytest.fixture
def build(tmp_path: Path) -> Path:
    return write_build(tmp_path / "build")


@pytest.fixture
def build_without_labels(tmp_path: Path) -> Path:
    return write_build(tmp_path / "build", labels=False)


# --- a real build from the JATS fixtures, with planted duplicates and a synthetic labels table ---

JATS = Path(__file__).resolve().parents[1] / "data" / "jats"
PLANTED_ARTICLE = "PMC900001"
FRENCH = (
    "Le patient, un homme de 54 ans, a été admis aux urgences pour une fièvre persistante et une toux "
    "productive depuis dix jours. L'examen clinique a révélé des crépitants à la base pulmonaire droite "
    "et la radiographie du thorax a montré une opacité alvéolaire. Un traitement antibiotique a été "
    "instauré avec une amélioration rapide de son état général."
)


@dataclass(frozen=True)
class RealBuild:
    """The fixture build and what was planted in it."""

    path: Path
    exact_copy: str  # paragraph_id of the planted exact duplicate
    exact_of: str  # ... and of the real paragraph it copies
    near_copy: str
    near_of: str
    french: str
    caption_copy: str  # figure ids: a planted figure whose caption repeats a real one
    caption_of: str
    image_first: str  # two planted figures with the same image bytes
    image_copy: str


def _long_paragraphs(paragraphs: pl.DataFrame) -> pl.DataFrame:
    return paragraphs.filter(pl.col("n_words") >= 120).sort("paragraph_id")


def _plant(root: Path) -> RealBuild:
    paragraphs = pl.read_parquet(schema.shard_paths(root, "paragraphs"))
    figures = pl.read_parquet(schema.shard_paths(root, "figures"))
    long = _long_paragraphs(paragraphs)
    exact_of, near_of = long.row(0, named=True), long.row(1, named=True)
    tokens = near_of["text"].split()
    for i in (5, 40, 80):
        tokens[i] = "zzplanted"
    near_text = " ".join(tokens)
    planted = [
        ("p[1]", "  " + exact_of["text"].upper().replace(" ", "   ") + " "),
        ("p[2]", near_text),
        ("p[3]", FRENCH),
    ]
    rows = [
        {
            "paragraph_id": f"{PLANTED_ARTICLE}/body/sec[1]/{suffix}",
            "article_id": PLANTED_ARTICLE,
            "path": f"body/sec[1]/{suffix}",
            "ordinal": ordinal,
            "section_title": "Results",
            "section_path": ["Results"],
            "section_type": "results",
            "text": text,
            "n_words": len(text.split()),
        }
        for ordinal, (suffix, text) in enumerate(planted)
    ]
    article = {
        "article_id": PLANTED_ARTICLE,
        "pmcid": PLANTED_ARTICLE,
        "title": "Planted duplicates",
        "license": "CC BY",
        "commercial_use": True,
        "retracted": False,
        "pub_year": 2024,
        "article_type": "research-article",
    }
    caption_of = figures.sort("figure_id").row(0, named=True)
    image = b"\x89PNG planted image bytes"
    digest = hashlib.sha256(image).hexdigest()
    planted_figures = [
        {"figure_id": f"{PLANTED_ARTICLE}/fig[1]", "caption": caption_of["caption"]},
        {
            "figure_id": f"{PLANTED_ARTICLE}/fig[2]",
            "caption": "A first planted image.",
            "image_sha256": digest,
        },
        {
            "figure_id": f"{PLANTED_ARTICLE}/fig[3]",
            "caption": "The same image again.",
            "image_sha256": digest,
        },
    ]
    for figure in planted_figures:
        figure["article_id"] = PLANTED_ARTICLE
        if "image_sha256" in figure:
            figure["image"] = {"bytes": image, "path": "planted.png"}
    schema.write_shard(
        schema.to_table([article], schema.ARTICLES), schema.table_dir(root, "articles") / "planted.parquet"
    )
    schema.write_shard(
        schema.to_table(rows, schema.PARAGRAPHS), schema.table_dir(root, "paragraphs") / "planted.parquet"
    )
    schema.write_shard(
        schema.to_table(planted_figures, schema.FIGURES),
        schema.table_dir(root, "figures") / "planted.parquet",
    )
    return RealBuild(
        root,
        exact_copy=rows[0]["paragraph_id"],
        exact_of=exact_of["paragraph_id"],
        near_copy=rows[1]["paragraph_id"],
        near_of=near_of["paragraph_id"],
        french=rows[2]["paragraph_id"],
        caption_copy=planted_figures[0]["figure_id"],
        caption_of=caption_of["figure_id"],
        image_first=planted_figures[1]["figure_id"],
        image_copy=planted_figures[2]["figure_id"],
    )


def synthetic_labels(paragraphs: pl.DataFrame, articles: pl.DataFrame) -> pl.DataFrame:
    """Labels a test can predict: clinical_case for case sections and for the discussion of case
    reports, review for review articles, study otherwise; educational score 1 + ordinal mod 5."""
    joined = paragraphs.join(articles.select("article_id", "article_type"), on="article_id", how="left")
    clinical = (pl.col("section_type") == "case") | (
        (pl.col("article_type") == "case-report") & (pl.col("section_type") == "discussion")
    )
    document_type = (
        pl.when(clinical)
        .then(pl.lit("clinical_case"))
        .when(pl.col("article_type") == "review-article")
        .then(pl.lit("review"))
        .otherwise(pl.lit("study"))
    )
    return joined.select(
        "paragraph_id",
        document_type.alias("document_type"),
        pl.when(clinical).then(pl.lit("clinical")).otherwise(pl.lit("biomedical")).alias("domain"),
        (1 + pl.col("ordinal") % 5).cast(pl.Float32).alias("educational_score"),
        pl.lit("synthetic").alias("annotator"),
    )


def _write_labels(root: Path) -> None:
    paragraphs = pl.read_parquet(schema.shard_paths(root, "paragraphs"))
    articles = pl.read_parquet(schema.shard_paths(root, "articles"))
    labels = synthetic_labels(paragraphs, articles)
    schema.write_shard(
        schema.to_table(labels.to_dicts(), schema.LABELS), schema.table_dir(root, "labels") / "part-0.parquet"
    )


@pytest.fixture(scope="session")
def real_build(tmp_path_factory: pytest.TempPathFactory) -> RealBuild:
    """The fixtures harvested once per session, with planted rows and labels. Tests must not write
    into its tables; subsets they make get names of their own."""
    from pmcurate.harvest.local import harvest_local

    root = tmp_path_factory.mktemp("real") / "build"
    harvest_local([JATS], root, workers=1, progress=False)
    planted = _plant(root)
    _write_labels(root)
    return planted


@pytest.fixture(scope="session")
def real_build_without_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pmcurate.harvest.local import harvest_local

    root = tmp_path_factory.mktemp("real-nolabels") / "build"
    harvest_local([JATS], root, workers=1, progress=False)
    return root


def read_subset(build: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(sorted((build / "subsets" / name).glob("*.parquet")))


def read_drops(build: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(sorted((build / "subsets" / name / "drops").glob("*.parquet")))


def base_rows(build: Path) -> pl.DataFrame:
    """Paragraphs joined with articles and labels, read with Polars: the expected side of tests."""
    paragraphs = pl.read_parquet(schema.shard_paths(build, "paragraphs"))
    articles = pl.read_parquet(schema.shard_paths(build, "articles"))
    rows = paragraphs.join(articles, on="article_id", how="left")
    labels = schema.shard_paths(build, "labels")
    if labels:
        rows = rows.join(pl.read_parquet(labels), on="paragraph_id", how="left")
    return rows
