"""Fixtures of the annotate tests: a real build harvested from ``tests/data/jats`` (once per
session), the LLM labels of ``tests/data/labels``, and students trained on them (once): fastText,
and a tiny fine-tuned encoder (short inputs, two epochs: seconds on two cores)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import torch

from pmcurate.annotate import encoder, labels_file, student
from pmcurate.harvest.local import harvest_local

# The tests' models are tiny: one torch thread, so two test processes or a busy machine never
# oversubscribe the cores (OpenMP threads spinning on a shared core run several times slower).
torch.set_num_threads(1)

DATA = Path(__file__).parent.parent / "data"
DEV_LABELS = DATA / "labels" / "dev-paragraph-labels.jsonl"
SMALL_GRID = (student.Params(epoch=30, lr=0.5, word_ngrams=1, balance=0.5),)
TINY = encoder.TrainConfig(epochs=2, max_tokens=32, head_lr=2e-3)


PLAIN_SENTENCES = {
    "clinical_case": "A {n}-year-old patient presented to our clinic with fever and a rash.",
    "study": "We measured gene expression in {n} mice after the treatment.",
    "review": "This review summarizes {n} published studies of the literature.",
    "other": "Funding: grant {n} from the national institute. The authors declare no conflicts.",
}
"""Each document type a sentence of its own: a student that learns anything gets them right."""


def plain_rows(articles: int, *, rotate: bool = False) -> list[dict[str, object]]:
    """Teacher rows of ``articles`` articles, one ``PLAIN_SENTENCES`` row per class each, scored
    1–4 by position; ``rotate``: each article lists its classes in another order, so rows paired
    with the wrong labels or embeddings disagree with them."""
    items = list(PLAIN_SENTENCES.items())
    rows = []
    for article in range(articles):
        shift = article % len(items) if rotate else 0
        for i, (label, sentence) in enumerate(items[shift:] + items[:shift]):
            rows.append(
                {
                    "text": sentence.format(n=article * 4 + i),
                    "article_id": f"PMC{article}",
                    "text_sha256": f"{article}-{i}",
                    "document_type": label,
                    "domain": "biomedical",
                    "educational_score": 1 + i,
                }
            )
    return rows


@pytest.fixture(scope="session")
def fixture_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of the JATS fixtures (tables/articles, tables/paragraphs…); do not modify it."""
    build = tmp_path_factory.mktemp("annotate") / "build"
    harvest_local([DATA / "jats"], build, workers=1, batch_size=4, progress=False)
    return build


@pytest.fixture
def build(fixture_build: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture build, free to modify."""
    copy = tmp_path / "build"
    shutil.copytree(fixture_build, copy)
    return copy


@pytest.fixture(scope="session")
def dev_labels() -> pl.DataFrame:
    return labels_file.read_labels_jsonl(DEV_LABELS)


@pytest.fixture(scope="session")
def trained_build(
    fixture_build: Path, dev_labels: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The fixture build with three separate students trained on the dev labels (small grid); read-only."""
    build = tmp_path_factory.mktemp("trained") / "build"
    shutil.copytree(fixture_build, build)
    student.train_student(build, dev_labels, teacher_name="dev", grid=SMALL_GRID, joint=False)
    return build


@pytest.fixture(scope="session")
def encoder_build(
    trained_build: Path, dev_labels: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, encoder.EncoderResult]:
    """The trained fixture build plus a tiny encoder student (its report beside fastText's); read-only."""
    build = tmp_path_factory.mktemp("encoder") / "build"
    shutil.copytree(trained_build, build)
    result = encoder.train_encoder_student(
        build, dev_labels, teacher_name="dev", config=TINY, device="cpu", speed_texts=8, progress=False
    )
    return build, result
