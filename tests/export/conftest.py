"""A real build for the export tests: the JATS fixtures harvested, figures given real images, labels.

The fixtures carry no media, so each figure gets a small generated image (PNG for most, JPEG for
every third, none for every tenth: mixed formats and missing images are what real harvests give),
and every paragraph gets deterministic labels in the ``labels`` schema, as the student would write.
"""

from __future__ import annotations

import hashlib
import io
import random
import string
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pmcurate import schema
from pmcurate.filters import language
from pmcurate.harvest.local import harvest_local

JATS_DIR = Path(__file__).parent.parent / "data" / "jats"


def make_image(index: int, fmt: str) -> bytes:
    """A small image that differs from figure to figure."""
    image = Image.new("RGB", (24 + index % 7, 16 + index % 5), ((index * 37) % 256, (index * 91) % 256, 80))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def add_images(build: Path) -> None:
    rows = []
    for path in schema.shard_paths(build, "figures"):
        rows += pq.read_table(path).to_pylist()
        path.unlink()
    for index, row in enumerate(sorted(rows, key=lambda r: r["figure_id"])):
        if index % 10 == 9:
            continue
        fmt = "JPEG" if index % 3 == 0 else "PNG"
        data = make_image(index, fmt)
        suffix = "jpg" if fmt == "JPEG" else "png"
        row["image"] = {"bytes": data, "path": f"{row['xml_id'] or index}.{suffix}"}
        row["image_sha256"] = hashlib.sha256(data).hexdigest()
        row["width"], row["height"] = Image.open(io.BytesIO(data)).size
        row["format"] = suffix
    schema.write_shard(
        schema.to_table(rows, schema.FIGURES), schema.table_dir(build, "figures") / "f.parquet"
    )


def add_labels(build: Path, *, computed: bool = False) -> None:
    """Synthetic taught labels on every paragraph; with ``computed``, the computed labels (the
    paragraph's language) as ``annotate apply`` gives them."""
    paragraphs = pq.read_table(schema.shard_paths(build, "paragraphs")[0], columns=["paragraph_id", "text"])
    texts = dict(zip(paragraphs["paragraph_id"].to_pylist(), paragraphs["text"].to_pylist(), strict=True))
    rows = []
    for index, paragraph_id in enumerate(sorted(texts)):
        kind = schema.DOCUMENT_TYPES[index % 4]
        domain = schema.DOMAINS[index % 3]
        rows.append(
            {
                "paragraph_id": paragraph_id,
                "document_type": kind,
                "document_type_scores": {k: 0.7 if k == kind else 0.1 for k in schema.DOCUMENT_TYPES},
                "domain": domain,
                "domain_scores": {k: 0.8 if k == domain else 0.1 for k in schema.DOMAINS},
                "educational_score": 1.0 + index % 5,
                "language": language.detect(texts[paragraph_id]) if computed else None,
                "annotator": "fasttext:test-student",
            }
        )
    schema.write_shard(schema.to_table(rows, schema.LABELS), schema.table_dir(build, "labels") / "l.parquet")


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of all JATS fixtures, with images on 90% of the figures and labels on every paragraph."""
    path = tmp_path_factory.mktemp("export") / "build"
    harvest_local([JATS_DIR], path, workers=1, progress=False)
    add_images(path)
    add_labels(path, computed=True)
    return path


def synthetic_rows(
    n_articles: int, paragraphs_per_article: int, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Articles and paragraphs with pseudo-random text (seeded): enough bytes to need many shards."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(5000)]
    licenses = [*schema.LICENSE_CODES, None]
    articles, paragraphs = [], []
    for a in range(n_articles):
        article_id = f"PMC{1000 + a}"
        license = licenses[a % len(licenses)]
        articles.append(
            {"article_id": article_id, "pmcid": article_id, "title": f"Article {a}", "license": license,
             "license_url": None, "pub_year": 2000 + a % 25, "language": "en"}
        )  # fmt: skip
        for p in range(paragraphs_per_article):
            words = rng.choices(vocabulary, k=rng.randint(40, 160))
            xml_path = f"body/sec[{p // 5 + 1}]/p[{p % 5 + 1}]"
            paragraphs.append(
                {"paragraph_id": f"{article_id}/{xml_path}", "article_id": article_id,
                 "path": xml_path, "ordinal": p, "section_title": "Results",
                 "section_path": ["Results"], "section_type": "results", "text": " ".join(words),
                 "n_words": len(words)}
            )  # fmt: skip
    return articles, paragraphs


@pytest.fixture(scope="session")
def synthetic_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 articles × 50 paragraphs of seeded random words (about 6 MB of text), no labels."""
    path = tmp_path_factory.mktemp("synthetic") / "build"
    articles, paragraphs = synthetic_rows(200, 50)
    schema.write_shard(
        schema.to_table(articles, schema.ARTICLES), schema.table_dir(path, "articles") / "a.parquet"
    )
    for index in range(0, len(paragraphs), 4000):
        table = schema.to_table(paragraphs[index : index + 4000], schema.PARAGRAPHS)
        schema.write_shard(table, schema.table_dir(path, "paragraphs") / f"p{index:06d}.parquet")
    return path


@pytest.fixture(scope="session")
def labelled_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 articles × 20 paragraphs of seeded random words with labels: made without the parser, so
    that its exports change only when the export does (``fixture-digests.json``)."""
    path = tmp_path_factory.mktemp("labelled") / "build"
    make_labelled_build(path)
    return path


def make_labelled_build(path: Path) -> Path:
    articles, paragraphs = synthetic_rows(60, 20, seed=1)
    schema.write_shard(
        schema.to_table(articles, schema.ARTICLES), schema.table_dir(path, "articles") / "a.parquet"
    )
    schema.write_shard(
        schema.to_table(paragraphs, schema.PARAGRAPHS), schema.table_dir(path, "paragraphs") / "p.parquet"
    )
    add_labels(path)
    return path
