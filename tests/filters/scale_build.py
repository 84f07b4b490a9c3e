"""A build laid out the way a large one is, small enough for a test: what the partitioned subset
engine must get right.

- paragraphs in several shards, one article split across two of them, shards not in article order;
- labels in shards that do not line up with the paragraph shards;
- an article whose id holds ``/`` and ``-`` (a DOI), paragraphs whose article is not in the
  articles table;
- planted exact copies and near copies across shards, texts without words, and a bucket of
  90 near-identical funding statements (more than ``dedup.BUCKET_ALL_PAIRS``, so the big-bucket
  pairing is exercised);
- figures in two shards with repeated images and captions.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from pmcurate import schema
from tests.filters.conftest import VOCABULARY, change_words, words

ARTICLE_IDS = [f"PMC{n}" for n in (10, 11, 12, 100, 101, 2, 20, 3, 30, 31, 4, 5)] + [
    "doi:10.1000/a-b",
    "doi:10.1000/a",
]


def _articles() -> list[dict]:
    licenses = [("CC BY", True), ("CC BY-NC", False), ("CC0", True), (None, None)]
    rows = []
    for k, article in enumerate(ARTICLE_IDS):
        license, commercial = licenses[k % len(licenses)]
        rows.append(
            {
                "article_id": article,
                "pmcid": article if article.startswith("PMC") else None,
                "title": f"Article {k}",
                "abstract": words(30, 500 + k),
                "license": license,
                "commercial_use": commercial,
                "retracted": k == 7,
                "pub_year": 2010 + k,
                "article_type": "case-report" if k % 3 == 0 else "research-article",
                "language": "en",
            }
        )
    return rows


def _texts() -> list[tuple[str, str]]:
    """(article, text) of every paragraph, in an order that is not the article order."""
    rng = random.Random(14)
    rows: list[tuple[str, str]] = []
    originals: list[str] = []
    for k in range(420):
        article = ARTICLE_IDS[rng.randrange(len(ARTICLE_IDS))] if k % 50 else "PMC-orphan"
        kind = rng.random()
        if originals and kind < 0.06:
            text = "  " + rng.choice(originals).upper().replace(" ", "   ")
        elif originals and kind < 0.12:
            base = rng.choice(originals)
            text = change_words(base, tuple(sorted(rng.sample(range(len(base.split())), 2))))
        elif kind < 0.14:
            text = rng.choice(["", "...", " 12 ", "—"])
        else:
            text = words(rng.randrange(20, 120), 1000 + k)
            originals.append(text)
        rows.append((article, text))
    for k in range(90):  # one big bucket: funding statements that differ in one number
        funding = " ".join(["this", "work", "was", "funded", "by", "the", "national", "grant", str(k)])
        rows.append((ARTICLE_IDS[k % 5], funding + " " + " ".join(VOCABULARY[:30])))
    rng.shuffle(rows)
    return rows


def write_scale_build(root: Path) -> Path:
    """Write the build under ``root`` and return it."""
    schema.write_shard(
        schema.to_table(_articles()[:7], schema.ARTICLES), schema.table_dir(root, "articles") / "b.parquet"
    )
    schema.write_shard(
        schema.to_table(_articles()[7:], schema.ARTICLES), schema.table_dir(root, "articles") / "a.parquet"
    )
    ordinals: dict[str, int] = {}
    paragraphs = []
    for article, text in _texts():
        ordinal = ordinals.get(article, 0)
        ordinals[article] = ordinal + 1
        section = "Funding" if text.startswith("this work was funded") else "Results"
        paragraphs.append(
            {
                "paragraph_id": f"{article}/body/p[{ordinal + 1}]",
                "article_id": article,
                "path": f"body/p[{ordinal + 1}]",
                "ordinal": ordinal,
                "section_title": section,
                "section_path": [section],
                "section_type": "results",
                "text": text,
                "n_words": len(text.split()),
            }
        )
    for k, start in enumerate(range(0, len(paragraphs), 130)):  # shards out of article order
        schema.write_shard(
            schema.to_table(paragraphs[start : start + 130], schema.PARAGRAPHS),
            schema.table_dir(root, "paragraphs") / f"part-{9 - k}.parquet",
        )
    labels = [
        {
            "paragraph_id": p["paragraph_id"],
            "document_type": schema.DOCUMENT_TYPES[k % 4],
            "domain": schema.DOMAINS[k % 3],
            "educational_score": float(1 + k % 5),
            "annotator": "synthetic",
        }
        for k, p in enumerate(sorted(paragraphs, key=lambda p: p["n_words"]))
    ]
    for k, start in enumerate(range(0, len(labels), 200)):  # not aligned with the paragraph shards
        schema.write_shard(
            schema.to_table(labels[start : start + 200], schema.LABELS),
            schema.table_dir(root, "labels") / f"part-{k}.parquet",
        )
    _write_figures(root)
    return root


def _write_figures(root: Path) -> None:
    figures = []
    for k in range(60):
        article = ARTICLE_IDS[k % len(ARTICLE_IDS)]
        image = f"image {k % 5}".encode()
        figures.append(
            {
                "figure_id": f"{article}/fig[{k}]",
                "article_id": article,
                "label": f"Figure {k}",
                "caption": words(12, 3000 + k % 23) if k % 11 else None,
                "image": {"bytes": image, "path": f"f{k}.png"} if k % 4 else None,
                "image_sha256": hashlib.sha256(image).hexdigest() if k % 4 else None,
            }
        )
    for k, start in enumerate(range(0, len(figures), 25)):
        schema.write_shard(
            schema.to_table(figures[start : start + 25], schema.FIGURES),
            schema.table_dir(root, "figures") / f"part-{k}.parquet",
        )
