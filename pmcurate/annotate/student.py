"""fastText students: learn the teacher's labels, report agreement, label every paragraph.

One supervised fastText model per label. The educational score is learnt as five classes and
reported as the expected value of the predicted distribution (a float in 1–5), which keeps the
ordering information a plain arg-max would lose.

Teacher labels are few and skewed (hundreds, mostly ``study``); a plain model trained on them does
no better than the majority class on other articles. Three things help and are on by default:
word vectors learnt without labels from the build's own paragraphs (``train_unsupervised``, then
``pretrainedVectors``), oversampling of rare classes, and hyper-parameters chosen on a validation
split. Evaluation holds out whole articles, never paragraphs of articles seen in training.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import fasttext
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pmcurate import labels, schema
from pmcurate.annotate import report as metrics
from pmcurate.annotate import rules
from pmcurate.errors import Fatal
from pmcurate.filters import _langid
from pmcurate.progress import Steps, interruptible, interruptible_map
from pmcurate.step import sha256_file

log = logging.getLogger(__name__)

TASKS: dict[str, tuple[str, ...]] = {spec.name: spec.student_classes for spec in labels.taught()}
"""Each taught label (``pmcurate/labels/``) and the classes a student predicts for it (a score's
integers as classes: the student's expected value over them is the score)."""
SCORES = tuple(spec.name for spec in labels.taught() if spec.kind == "score")
JOINT = "joint"
"""One model for the three labels (fastText one-vs-all loss): one prediction per paragraph
instead of three, about three times the throughput of ``apply``."""
JOINT_CLASSES = tuple(f"{task}={c}" for task, classes in TASKS.items() for c in classes)
MANIFEST = "students.json"
REPORT = "report.json"
MAX_CHARS = 4000
"""Students read a paragraph's first MAX_CHARS characters: a fixed cost per paragraph, whatever
a table flattened into one paragraph may hold."""
READ_BATCH = 65_536
R = TypeVar("R")


class StudentError(Fatal):
    """Training or applying students failed for a reason the user can fix."""


@dataclass(frozen=True)
class Params:
    """Hyper-parameters of one supervised fastText model."""

    epoch: int = 25
    lr: float = 0.5
    word_ngrams: int = 1
    balance: float = 1.0
    """Oversample each class up to ``balance`` × the largest class (0: no oversampling)."""


NGRAM_PENALTY = 0.01
"""Validation score a bigram setting must gain over a unigram one: bigrams halve predict speed."""
RULES_WEIGHTS = (0.0, 0.15, 0.3, 0.45)
"""Below 0.5: a confident model still overrules the rules (at 0.5 the rules always win)."""
GRID = tuple(
    Params(epoch=e, lr=lr, word_ngrams=n, balance=b)
    for e, lr in ((10, 0.3), (30, 0.5))
    for n in (1, 2)
    for b in (0.0, 0.5, 1.0)
)


PUNCTUATION = (*".,;:!?()[]{}\"'/\\-–—‐%=+<>*&#@~|^`$_’‘“”±×·…°", "\n", "\t", "\r", "\u00a0")
"""Characters turned into spaces: the common ones of PubMed text; a rarer symbol stays attached."""


def normalize(texts: pl.Series) -> pl.Series:
    """Lower-case, punctuation to spaces, first MAX_CHARS characters.

    The same function prepares training lines and apply inputs, vectorized (Polars, then one
    compiled pass for the punctuation: ``blank_punctuation``), so the per-paragraph Python cost of
    ``apply`` stays in fastText. fastText itself splits on runs of whitespace.
    """
    return blank_punctuation(_lowercase_head(texts))


def _lowercase_head(texts: pl.Series) -> pl.Series:
    return texts.fill_null("").str.slice(0, MAX_CHARS).str.to_lowercase()


@lru_cache(maxsize=1)
def _punctuation_bitmap() -> np.ndarray:
    points = np.zeros(0x10000, dtype=bool)
    points[[ord(c) for c in PUNCTUATION]] = True
    return np.packbits(points, bitorder="little")


def blank_punctuation(texts: pl.Series) -> pl.Series:
    """``texts`` (no nulls) with each of ``PUNCTUATION`` turned into a space: what
    ``str.replace_many(PUNCTUATION, " ")`` gives, in one compiled pass over the Arrow bytes
    (``_langid.blank_characters``; the characters are single ones of the BMP), at twice its speed."""
    data, offsets, first = _arrow_strings(texts)
    size = int(offsets[first + len(texts)] - offsets[first])
    blanked = np.empty(max(size, 1), dtype=np.uint8)
    blanked_offsets = np.empty(len(texts) + 1, dtype=np.int64)
    _langid.blank_characters(data, offsets, first, _punctuation_bitmap(), blanked, blanked_offsets)
    buffers = [None, pa.py_buffer(blanked_offsets), pa.py_buffer(blanked)]
    return pl.Series(texts.name, pa.Array.from_buffers(pa.large_string(), len(texts), buffers))


def _arrow_strings(texts: pl.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """The UTF-8 bytes, offsets and first row of ``texts`` (no nulls) as an Arrow large string array."""
    array = texts.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    _, offsets, data = array.buffers()
    data_array = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data_array, np.frombuffer(offsets, dtype=np.int64), array.offset


CONTEXT_COLUMNS = ("article_type", "section_type", "section_title")


def model_input(frame: pl.DataFrame, *, context: bool) -> pl.Series:
    """The line a student reads for each paragraph: normalized text, after context tokens.

    With ``context``, the paragraph's JATS context comes first: ``__art_<article type>``,
    ``__sec_<section type>`` and the words of its section title. Every paragraph of a build has
    them, and they carry what the text alone may not (a review article's paragraphs read like
    anyone's background section). Missing columns or values give ``__art_none``/``__sec_none``.
    """
    lines = _lines(frame, context=context)
    return lines.str.strip_chars() if context else lines


def model_lines(frame: pl.DataFrame, *, context: bool) -> list[bytes]:
    """``model_input`` as fastText reads it in ``apply``, in UTF-8: each line ends in a newline (fastText's
    end-of-sentence token), and whitespace at its ends is kept (fastText skips runs of whitespace:
    the tokens, hence the predictions, are those of ``model_input``). One compiled pass lowercases,
    blanks the punctuation and adds the prefix and the end (``_langid.lowered_lines``, reading
    ``lowercase_table``); the few texts with a character the table leaves out go through Polars."""
    data, offsets, first_text = _arrow_strings(frame["text"].fill_null("").str.slice(0, MAX_CHARS))
    prefix, prefix_offsets, first_prefix = (
        _arrow_strings(_context(frame)) if context else (np.zeros(0, np.uint8), np.zeros(0, np.int64), 0)
    )
    lines, missing = _langid.lowered_lines(
        data,
        offsets,
        first_text,
        frame.height,
        lowercase_table(),
        prefix,
        prefix_offsets,
        first_prefix,
        b"\n",
    )
    if missing:
        for row, line in zip(missing, _polars_lines(frame[missing], context=context), strict=True):
            lines[row] = line
    return lines  # type: ignore[return-value]  # every None replaced


def _polars_lines(frame: pl.DataFrame, *, context: bool) -> list[bytes]:
    """``model_lines`` the Polars way (``_lines``): for the few texts ``lowercase_table`` cannot lower."""
    return [(line + "\n").encode() for line in _lines(frame, context=context).to_list()]


@lru_cache(maxsize=1)
def lowercase_table() -> np.ndarray:
    """What ``normalize`` makes of each character of the BMP alone, as ``_langid.lower_text`` reads
    it: four bytes a character, the length of its UTF-8 then the bytes. Polars' own lowercase (its
    Unicode tables, which are not Python's), which maps each character on its own except Σ (σ or a
    final ς, by what follows): Σ is left out (length 0), like the surrogates, and a text that has
    one goes through Polars (``_polars_lines``)."""
    points = np.arange(0x10000)
    points = points[((points < 0xD800) | (points >= 0xE000)) & (points != 0x3A3)]
    data, offsets, first = _arrow_strings(normalize(_characters(points)))
    starts = offsets[first : first + len(points)]
    sizes = offsets[first + 1 : first + len(points) + 1] - starts
    sizes[sizes > 3] = 0  # longer than the table holds (none is, in today's Unicode): Polars
    table = np.zeros((0x10000, 4), dtype=np.uint8)
    table[points, 0] = sizes
    for byte in range(3):
        some = sizes > byte
        table[points[some], 1 + byte] = data[starts[some] + byte]
    return table.reshape(-1)


def _characters(points: np.ndarray) -> pl.Series:
    """One string for each code point of the BMP in ``points`` (no surrogate), from Arrow buffers."""
    data = "".join(map(chr, points.tolist())).encode()
    sizes = np.where(points < 0x80, 1, np.where(points < 0x800, 2, 3))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pl.Series(pa.Array.from_buffers(pa.large_string(), len(points), buffers))


def _context(frame: pl.DataFrame) -> pl.Series:
    """What comes before the normalized text in a line with context (``model_input``)."""
    columns = {
        c: frame[c] if c in frame.columns else pl.repeat(None, frame.height, dtype=pl.String, eager=True)
        for c in CONTEXT_COLUMNS
    }
    article = _per_distinct(columns["article_type"].fill_null("none"), _article_token)
    parts = [
        pl.lit("__art_"),
        article,
        pl.lit(" __sec_"),
        columns["section_type"].fill_null("none"),
        pl.lit(" "),
        _per_distinct(columns["section_title"].fill_null(""), normalize),
        pl.lit(" "),
    ]
    return pl.select(pl.concat_str(parts)).to_series()


def _article_token(types: pl.Series) -> pl.Series:
    return types.str.to_lowercase().str.replace_all(r"[^\w]+", "_")


def _per_distinct(texts: pl.Series, function: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """``function(texts)`` (no nulls; a string function that maps each value alone), computed once
    per distinct value: a build's paragraphs share a few article types and section titles."""
    if texts.is_empty():
        return function(texts)
    distinct = texts.unique(maintain_order=True)
    return texts.replace_strict(distinct, function(distinct), return_dtype=pl.String)


def _lines(frame: pl.DataFrame, *, context: bool) -> pl.Series:
    text = normalize(frame["text"])
    if not context:
        return text
    return pl.select(pl.concat_str([_context(frame), text])).to_series().rename(text.name)


# ---------------------------------------------------------------- pretraining


def pretrain_vectors(
    texts: pl.Series,
    path: Path,
    *,
    dim: int,
    epoch: int = 5,
    min_count: int = 2,
    threads: int = 1,
) -> Path:
    """Skip-gram word vectors (with sub-words) from unlabelled paragraphs, written as a ``.vec`` file.

    Word vectors stop improving long before PMC-OA is exhausted, and the students' size grows
    with the vocabulary: callers pass a sample (``train_student``: ``max_pretrain_texts``).
    One thread by default: fastText's threads update the vectors without locks, so two multi-threaded
    runs differ, and with them every student trained on the vectors (domain κ moved from -0.04 to
    0.33 between runs on the dev labels). Pass ``threads`` to trade that reproducibility for speed.
    """
    texts = normalize(texts)
    texts = texts.filter(texts.str.len_chars() > 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=path.parent, delete=False) as corpus:
        corpus.write("\n".join(texts.to_list()))
    try:
        model = interruptible(lambda: fasttext.train_unsupervised(
            corpus.name,
            model="skipgram",
            dim=dim,
            epoch=epoch,
            minCount=min_count,
            minn=3,
            maxn=6,
            bucket=200_000,
            thread=threads,
            verbose=0,
        ))  # fmt: skip
    finally:
        os.unlink(corpus.name)
    Steps.advance()
    words = model.get_words()
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(f"{len(words)} {dim}\n")
        for word in words:
            vector = model.get_word_vector(word)
            out.write(word + " " + " ".join(f"{x:.5f}" for x in vector) + "\n")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- training


def _oversample(rows: list[tuple[str, str]], balance: float, rng: random.Random) -> list[tuple[str, str]]:
    by_class: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_class.setdefault(row[0], []).append(row)
    target = int(balance * max(len(v) for v in by_class.values()))
    out: list[tuple[str, str]] = []
    for members in by_class.values():
        out.extend(members)
        missing = target - len(members)
        out.extend(rng.choice(members) for _ in range(max(0, missing)))
    rng.shuffle(out)
    return out


MAX_FIT_THREADS = 4
"""Fits side by side at most: each holds its model and its training text (a bigram model's
hashed buckets alone are 200,000 × ``dim`` floats)."""


class FitJob(NamedTuple):
    """What one supervised model learns: normalized ``texts`` and their ``labels``, with ``params``."""

    texts: Sequence[str]
    labels: Sequence[str]
    params: Params


def fit(
    texts: Sequence[str],
    labels: Sequence[str],
    params: Params,
    *,
    dim: int,
    vectors: Path | None,
    workdir: Path,
    seed: int = 0,
) -> fasttext.FastText._FastText:
    """One supervised model on normalized ``texts``; single-threaded, so a seed reproduces it.

    A label holding spaces is several labels (the joint model), trained one-vs-all.
    """
    jobs = [FitJob(texts, labels, params)]
    return fit_many(jobs, then=lambda model: model, dim=dim, vectors=vectors, workdir=workdir, seed=seed)[0]


def fit_many(
    jobs: Sequence[FitJob],
    *,
    then: Callable[[fasttext.FastText._FastText], R],
    dim: int,
    vectors: Path | None,
    workdir: Path,
    seed: int = 0,
    threads: int | None = None,
) -> list[R]:
    """``then(model)`` of each job's ``fit``, in the order of ``jobs``, ``threads`` jobs at once
    (default: the CPUs this process may use, at most ``MAX_FIT_THREADS``); a model is dropped once
    ``then`` returns, so at most ``threads`` models and training files are held.

    Each model is still trained on one thread from its own seeded file: the same model, byte for
    byte, as one fitted alone (fastText releases the GIL while it trains). The longest jobs start
    first (``fit_cost``): the grid's last settings are its longest (30 epochs, bigrams, balanced
    classes: 5× the first), and started last they left one thread training alone at the end.
    """
    threads = threads or min(MAX_FIT_THREADS, len(os.sched_getaffinity(0)))
    order = sorted(range(len(jobs)), key=lambda i: fit_cost(jobs[i]), reverse=True)
    calls = [
        functools.partial(_fit_one, jobs[i], then, dim=dim, vectors=vectors, workdir=workdir, seed=seed)
        for i in order
    ]
    results = dict(zip(order, interruptible_map(calls, threads=threads), strict=True))
    return [results[i] for i in range(len(jobs))]


def fit_cost(job: FitJob) -> int:
    """A fit's length, in relative units: the tokens it learns, as lines × epochs (lines once
    oversampled), twice with bigrams."""
    sizes = Counter(job.labels).values()
    target = int(job.params.balance * max(sizes, default=0))
    lines = sum(max(size, target) for size in sizes)
    return lines * job.params.epoch * (2 if job.params.word_ngrams > 1 else 1)


def _fit_one(
    job: FitJob,
    then: Callable[[fasttext.FastText._FastText], R],
    *,
    dim: int,
    vectors: Path | None,
    workdir: Path,
    seed: int,
) -> R:
    texts, labels, params = job
    rng = random.Random(seed)
    rows = _oversample(list(zip(labels, texts, strict=True)), params.balance, rng)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=workdir, delete=False) as train:
        train.write("".join(_label_tokens(label) + f" {text}\n" for label, text in rows))
    joint = any(" " in label for label in labels[:1])
    try:
        model = fasttext.train_supervised(
            train.name,
            loss="ova" if joint else "softmax",
            dim=dim,
            epoch=params.epoch,
            lr=params.lr,
            wordNgrams=params.word_ngrams,
            bucket=200_000 if params.word_ngrams > 1 else 0,
            minCount=1,
            pretrainedVectors=str(vectors) if vectors else "",
            thread=1,
            verbose=0,
        )
    finally:
        os.unlink(train.name)
    result = then(model)
    Steps.advance()
    return result


def _label_tokens(label: str) -> str:
    return " ".join(f"__label__{part}" for part in label.split(" "))


def predict_scores(
    model: Any, texts: Sequence[str] | Sequence[bytes], classes: Sequence[str], *, terminated: bool = False
) -> np.ndarray:
    """Per-class probabilities, shape (len(texts), len(classes)), columns in ``classes`` order
    (``terminated``: each text already ends in a newline, as ``model_lines`` makes them, in UTF-8).

    Classes the model never saw in training score 0. fastText returns each row's labels in its
    own order (most probable first): they are mapped to columns in one C-level pass, not row by row.
    """
    scores = np.zeros((len(texts), len(classes)), dtype=np.float32)
    if not texts:
        return scores
    column = {f"__label__{c}": i for i, c in enumerate(classes)}
    lines = texts if terminated else [_line(t) for t in texts]
    all_labels, all_probs = model.f.multilinePredict(lines, -1, 0.0, "strict")
    width = len(all_labels[0])
    if set(map(len, all_labels)) != {width}:  # k=-1 gives every label: never seen
        raise StudentError("fastText returned a different number of labels for some paragraphs")
    flat = itertools.chain.from_iterable(all_labels)
    columns = np.fromiter(map(column.__getitem__, flat), np.intp, count=len(texts) * width)
    rows = np.arange(len(texts))[:, None]
    scores[rows, columns.reshape(len(texts), width)] = np.concatenate(all_probs).reshape(len(texts), width)
    return scores


def _line(text: str | bytes) -> str | bytes:
    """``text`` as a fastText line: with its newline."""
    return text + b"\n" if isinstance(text, bytes) else text + "\n"


def decide(task: str, scores: np.ndarray) -> tuple[list[str], np.ndarray | None]:
    """Arg-max class per row; for a score (the educational score) also the expected value (1–5)."""
    classes = TASKS[task]
    return [classes[i] for i in scores.argmax(axis=1)], expected_value(task, scores)


def expected_value(task: str, scores: np.ndarray) -> np.ndarray | None:
    """For a score (the educational score), the expected value (1–5) of each row; else None."""
    if task not in SCORES:
        return None
    classes = TASKS[task]
    weights = np.array([float(c) for c in classes], dtype=np.float32)
    total = scores.sum(axis=1)
    middle = float(weights.mean())
    expected = np.where(total > 0, (scores * weights).sum(axis=1) / np.maximum(total, 1e-9), middle)
    return expected.astype(np.float32)


def task_labels(frame: pl.DataFrame, name: str) -> list[str]:
    """A label per row; for the joint model the three as ``task=class`` separated by spaces."""
    if name != JOINT:
        return [str(v) for v in frame[name].to_list()]
    columns = [[f"{task}={v}" for v in frame[task].to_list()] for task in TASKS]
    return [" ".join(parts) for parts in zip(*columns, strict=True)]


def model_scores(
    model: Any, name: str, texts: Sequence[str] | Sequence[bytes], *, terminated: bool = False
) -> dict[str, np.ndarray]:
    """Per-task class scores of one model (``name`` a task, or JOINT for all three at once)."""
    if name != JOINT:
        return {name: predict_scores(model, texts, TASKS[name], terminated=terminated)}
    scores = predict_scores(model, texts, JOINT_CLASSES, terminated=terminated)
    out, start = {}, 0
    for task, classes in TASKS.items():
        part = scores[:, start : start + len(classes)]
        out[task] = part / np.maximum(part.sum(axis=1, keepdims=True), 1e-9)
        start += len(classes)
    return out


def agreement(task: str, truth: list[str], scores: np.ndarray) -> dict[str, Any]:
    top, expected = decide(task, scores)
    if expected is None:
        return metrics.classification_metrics(truth, top, TASKS[task])
    return metrics.regression_metrics([float(t) for t in truth], expected.tolist())


def validation_metric(task: str, result: dict[str, Any]) -> float:
    if task in SCORES:
        return result["pearson"] if result["pearson"] is not None else -1.0
    return result["macro_f1"]


def split_by_article(frame: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rest, held-out): whole articles, chosen in a seeded order until ``fraction`` of the rows.

    Rows without an article id are their own group. Splitting by article keeps the held-out score
    honest: paragraphs of one article share vocabulary and labels.
    """
    groups = frame.with_columns(pl.coalesce("article_id", "text_sha256").alias("_group"))
    sizes = groups.group_by("_group").len().sort("_group")
    order = sizes.with_columns(
        pl.col("_group")
        .map_elements(lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest(), pl.String)
        .alias("_key")
    ).sort("_key")
    target = fraction * frame.height
    held: list[object] = []
    count = 0
    for group, size in order.select("_group", "len").iter_rows():
        if count >= target:
            break
        if count + size > 1.5 * target and held:
            continue
        held.append(group)
        count += size
    mask = pl.col("_group").is_in(held)
    return groups.filter(~mask).drop("_group"), groups.filter(mask).drop("_group")


def article_folds(frame: pl.DataFrame, k: int, seed: int) -> list[list[str]]:
    """Whole articles dealt into ``k`` folds of about equal rows: each article is held out in
    exactly one fold (article-grouped k-fold cross-validation). The articles come in a seeded
    order, each to the fold with the fewest rows so far, so a seed gives other folds."""
    groups = frame.select(pl.coalesce("article_id", "text_sha256").alias("_group"))
    sizes = groups.group_by("_group").len()
    if not 2 <= k <= sizes.height:
        raise StudentError(f"{k} folds: need between 2 and {sizes.height} (the number of labelled articles)")
    keyed = sorted((hashlib.sha256(f"{seed}:{g}".encode()).hexdigest(), g, n) for g, n in sizes.iter_rows())
    folds: list[list[str]] = [[] for _ in range(k)]
    rows = [0] * k
    for _, group, size in keyed:
        lightest = rows.index(min(rows))
        folds[lightest].append(group)
        rows[lightest] += size
    return folds


def prepared_teacher(teacher: pl.DataFrame) -> pl.DataFrame:
    """Teacher rows that have text, with their section type and the educational score as a class name."""
    teacher = _with_section_type(teacher.filter(pl.col("text").is_not_null()))
    teacher = teacher.with_columns(pl.col(name).cast(pl.String) for name in SCORES)
    if teacher.height < 20:
        raise StudentError(f"only {teacher.height} teacher labels with text: need at least 20 to train")
    return teacher


class Splits(NamedTuple):
    """Whole articles held out: ``rest`` is train + validation, in the teacher's row order."""

    rest: pl.DataFrame
    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame


def evaluation_splits(
    teacher: pl.DataFrame,
    test_fraction: float,
    validation_fraction: float,
    seed: int,
    *,
    train_fraction: float = 1.0,
    fold: tuple[int, int] | None = None,
) -> Splits:
    """The seeded split by article that every student (fastText, embedding, encoder) is judged on.

    ``train_fraction`` < 1 keeps that share of the train rows (a seeded sample of rows), the
    validation and test rows unchanged: the learning curve's points differ only in what the
    student learnt from. ``rest`` is then the kept train rows + validation.

    ``fold=(i, k)``: cross-validation; the test rows are the articles of fold ``i`` of
    ``article_folds(teacher, k, seed)`` (``test_fraction`` unused), validation is cut from the
    other articles as usual.
    """
    if not 0 < train_fraction <= 1:
        raise StudentError(f"train fraction {train_fraction}: must be in (0, 1]")
    if fold is None:
        rest, test = split_by_article(teacher, test_fraction, seed)
    else:
        index, k = fold
        held = article_folds(teacher, k, seed)[index]
        in_test = pl.coalesce("article_id", "text_sha256").is_in(held)
        rest, test = teacher.filter(~in_test), teacher.filter(in_test)
    train, validation = split_by_article(rest, validation_fraction, seed + 1)
    if train_fraction < 1:
        train = train.sample(fraction=train_fraction, seed=seed, shuffle=False)
        rest = pl.concat([train, validation])
    if min(train.height, validation.height, test.height) == 0:
        articles = teacher["article_id"].n_unique()
        raise StudentError(
            f"the {teacher.height} teacher labels come from {articles} article(s): too few to hold out whole "
            f"articles for validation and test (train {train.height}, validation {validation.height}, "
            f"test {test.height} rows); label paragraphs from more articles"
        )
    return Splits(rest, train, validation, test)


def split_summary(
    teacher_name: str, train: pl.DataFrame, validation: pl.DataFrame, test: pl.DataFrame
) -> dict[str, Any]:
    """The head of a student report: the teacher and the sizes of the split it was judged on."""
    return {
        "teacher": teacher_name,
        "n_train": train.height,
        "n_validation": validation.height,
        "n_test": test.height,
        "n_test_articles": test["article_id"].n_unique(),
        "labels": {},
        "chosen": {},
    }


@dataclass
class TrainResult:
    manifest: dict[str, Any]
    report: dict[str, Any]
    from_cache: str | None = None
    """The cache entry the models were copied from (``student_cache``); None: trained here."""


def train_student(
    build: str | os.PathLike[str],
    teacher: pl.DataFrame,
    *,
    teacher_name: str,
    dim: int = 50,
    pretrain: bool = True,
    grid: Sequence[Params] = GRID,
    test_fraction: float = 0.25,
    validation_fraction: float = 0.25,
    seed: int = 0,
    max_pretrain_texts: int = 1_000_000,
    context: bool = True,
    joint: bool = True,
    train_fraction: float = 1.0,
    fold: tuple[int, int] | None = None,
    models_dir: Path | None = None,
) -> TrainResult:
    """Choose hyper-parameters on a validation split, evaluate on held-out articles, write models.

    The models written to ``models_dir`` (default ``BUILD/models/``) are retrained on all teacher
    rows with the chosen hyper-parameters; the report describes the same recipe trained without
    the held-out articles (and on ``train_fraction`` of the train rows: the learning curve).
    """
    build = Path(build)
    models_dir = models_dir or build / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    models = 1 if joint else len(TASKS)
    Steps.start(int(pretrain) + models * (len(grid) + 2), "annotate train")  # every training run
    teacher = prepared_teacher(teacher)
    teacher = teacher.with_columns(model_input(teacher, context=context).alias("_norm"))
    rest, train, validation, test = evaluation_splits(
        teacher, test_fraction, validation_fraction, seed, train_fraction=train_fraction, fold=fold
    )
    vectors = None
    if pretrain:
        vectors = pretrain_vectors(
            _pretraining_texts(build, teacher, max_pretrain_texts, seed),
            models_dir / "vectors.vec",
            dim=dim,
        )
    report: dict[str, Any] = split_summary(teacher_name, train, validation, test) | {"speed": {}}
    chosen: dict[str, tuple[Params, dict[str, float]]] = {}
    fit_args: dict[str, Any] = {"dim": dim, "vectors": vectors, "seed": seed}
    names = (JOINT,) if joint else tuple(TASKS)
    with tempfile.TemporaryDirectory(dir=models_dir) as work:
        fit_args["workdir"] = Path(work)
        for name in names:
            chosen[name] = _choose(name, train, validation, grid, context=context, **fit_args)
        jobs = [
            FitJob(frame["_norm"].to_list(), task_labels(frame, name), chosen[name][0])
            for name in names
            for frame in (rest, teacher)
        ]
        learnt = iter(fit_many(jobs, then=lambda model: model, **fit_args))
        final = {}
        for name in names:
            evaluate(name, next(learnt), chosen[name], test, rest, report=report)
            final[name] = next(learnt)
        manifest = write_models(models_dir, teacher, chosen, fitted=final, **fit_args)
    manifest["teacher"] = teacher_name
    manifest["context"] = context
    manifest["joint"] = joint
    manifest["report"] = report
    write_json(models_dir / MANIFEST, manifest)
    write_json(models_dir / REPORT, report)
    Steps.close()
    return TrainResult(manifest=manifest, report=report)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written to a temporary file then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def fit_and_evaluate(
    name: str,
    choose_on: pl.DataFrame,
    validation: pl.DataFrame,
    fit_on: pl.DataFrame,
    test: pl.DataFrame,
    baseline: pl.DataFrame,
    grid: Sequence[Params],
    *,
    context: bool,
    report: dict[str, Any],
    **fit_args: Any,
) -> tuple[Params, dict[str, float]]:
    """Choose settings learning ``choose_on`` (scored on ``validation``), learn ``fit_on`` with
    them, score ``test`` into ``report`` (the majority class taken from ``baseline``); frames
    carry ``_norm``. Returns the settings and the rules-prior weights chosen."""
    params, weights = _choose(name, choose_on, validation, grid, context=context, **fit_args)
    model = fit(fit_on["_norm"].to_list(), task_labels(fit_on, name), params, **fit_args)
    evaluate(name, model, (params, weights), test, baseline, report=report)
    return params, weights


def evaluate(
    name: str,
    model: Any,
    chosen: tuple[Params, dict[str, float]],
    test: pl.DataFrame,
    baseline: pl.DataFrame,
    *,
    report: dict[str, Any],
) -> None:
    """Score ``test`` with ``model`` (learnt with the ``chosen`` settings) into ``report``."""
    params, weights = chosen
    for task, scores in model_scores(model, name, test["_norm"].to_list()).items():
        report["labels"][task] = evaluate_task(task, scores, weights[task], baseline, test)
    report["speed"][name] = _predict_rate(model, name, test["_norm"].to_list())
    report["chosen"][name] = asdict(params) | {"rules_weights": weights}


def _with_section_type(frame: pl.DataFrame) -> pl.DataFrame:
    """Labels made elsewhere know a section's title, not its type: derive it as the parser would."""
    if "section_type" in frame.columns or "section_title" not in frame.columns:
        return frame
    types = [rules.section_type_from_title(title) for title in frame["section_title"].to_list()]
    return frame.with_columns(pl.Series("section_type", types, dtype=pl.String))


def _pretraining_texts(build: Path, teacher: pl.DataFrame, max_texts: int, seed: int) -> pl.Series:
    """The teacher's texts and about ``max_texts`` of the build's paragraphs, chosen by a seeded
    hash of their ids while scanning, so the whole text column is never held in memory."""
    paths = schema.shard_paths(build, "paragraphs")
    texts = teacher["text"]
    if not paths:
        return texts
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    keep = min(1.0, max_texts / max(total, 1))
    chosen = (
        pl.scan_parquet(paths)
        .filter(pl.col("paragraph_id").hash(seed) % 1_000_000 < int(keep * 1_000_000))
        .select("text")
        .collect(engine="streaming")["text"]
    )
    return pl.concat([chosen, texts])


def _choose(
    name: str,
    train: pl.DataFrame,
    validation: pl.DataFrame,
    grid: Sequence[Params],
    *,
    context: bool,
    **fit_args: Any,
) -> tuple[Params, dict[str, float]]:
    """The grid's best settings on the validation split (mean over the model's tasks), then for
    each task the best weight of the rules prior (0 without JATS context)."""
    tasks = tuple(TASKS) if name == JOINT else (name,)
    no_prior = dict.fromkeys(tasks, 0.0)
    if validation.height == 0:
        return grid[0], no_prior
    truth = {task: task_labels(validation, task) for task in tasks}
    texts, labels_ = train["_norm"].to_list(), task_labels(train, name)
    validation_texts = validation["_norm"].to_list()
    all_scores = fit_many(
        [FitJob(texts, labels_, params) for params in grid],
        then=lambda model: model_scores(model, name, validation_texts),
        **fit_args,
    )
    best, best_score, best_scores = grid[0], -np.inf, {}
    for params, scores in zip(grid, all_scores, strict=True):
        score = float(np.mean([validation_metric(t, agreement(t, truth[t], scores[t])) for t in tasks]))
        score -= NGRAM_PENALTY * (params.word_ngrams - 1)
        log.debug("%s %s: validation %.3f", name, params, score)
        if score > best_score:
            best, best_score, best_scores = params, score, scores
    if not context:
        return best, no_prior
    return best, {task: rules_weight(task, validation, best_scores[task]) for task in tasks}


def rules_weight(task: str, validation: pl.DataFrame, scores: np.ndarray) -> float:
    """The weight of the rules prior (``RULES_WEIGHTS``) that agrees best with the teacher on the
    validation rows, given a student's ``scores`` of them; the smallest weight on a tie."""
    truth = task_labels(validation, task)
    prior = rules_scores(validation, task)
    by_weight = {
        w: validation_metric(task, agreement(task, truth, blend(scores, prior, w))) for w in RULES_WEIGHTS
    }
    return max(by_weight, key=lambda w: (by_weight[w], -w))


def rules_scores(frame: pl.DataFrame, task: str) -> np.ndarray:
    """The rules teacher's answer for ``task`` as one-hot rows (from the frame's JATS context);
    uniform rows for a label the rules teacher does not give."""
    return rules_priors(frame, (task,))[task]


def rules_priors(frame: pl.DataFrame, tasks: Iterable[str]) -> dict[str, np.ndarray]:
    """``rules_scores`` of several tasks; the rules run once per distinct JATS context, not per row.
    A label the rules teacher does not give gets uniform rows."""
    context = pl.DataFrame(
        [
            frame[c].cast(pl.String) if c in frame.columns else pl.Series(c, [None] * frame.height, pl.String)
            for c in CONTEXT_COLUMNS
        ]
    )
    distinct = context.unique(maintain_order=True).with_row_index("code")
    codes = context.join(
        distinct, on=list(CONTEXT_COLUMNS), how="left", nulls_equal=True, maintain_order="left"
    )["code"].to_numpy()
    answers = [rules.rules_label(*row) for row in distinct.drop("code").iter_rows()]
    priors = {}
    for task in tasks:
        classes = TASKS[task]
        if task not in rules.RULES_LABELS:
            priors[task] = np.full((frame.height, len(classes)), 1.0 / len(classes), dtype=np.float32)
            continue
        chosen = np.array([classes.index(str(answer[task])) for answer in answers], np.intp)
        one_hot = np.zeros((frame.height, len(classes)), dtype=np.float32)
        one_hot[np.arange(frame.height), chosen[codes]] = 1.0
        priors[task] = one_hot
    return priors


def blend(scores: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    return scores if weight == 0 else (1.0 - weight) * scores + weight * prior


def evaluate_task(
    task: str, scores: np.ndarray, weight: float, train: pl.DataFrame, test: pl.DataFrame
) -> dict[str, Any]:
    """Student, majority-class baseline and (when JATS metadata is known) the rules teacher."""
    truth = task_labels(test, task)
    classes = TASKS[task]
    result = {"student": agreement(task, truth, blend(scores, rules_scores(test, task), weight))}
    if weight:
        result["fasttext_alone"] = agreement(task, truth, scores)
    majority = Counter(task_labels(train, task)).most_common(1)[0][0]
    constant = np.zeros((test.height, len(classes)), dtype=np.float32)
    constant[:, classes.index(majority)] = 1.0
    result["majority"] = agreement(task, truth, constant)
    if "article_type" in test.columns and task in rules.RULES_LABELS:
        guessed = rules.rules_labels(
            test["article_type"].to_list(),
            _column_or_nulls(test, "section_type"),
            _column_or_nulls(test, "section_title"),
        )
        one_hot = np.zeros_like(constant)
        for row, labels in enumerate(guessed):
            one_hot[row, classes.index(str(labels[task]))] = 1.0
        result["rules"] = agreement(task, truth, one_hot)
    return result


def _column_or_nulls(frame: pl.DataFrame, name: str) -> list[Any]:
    return frame[name].to_list() if name in frame.columns else [None] * frame.height


def _predict_rate(model: Any, name: str, texts: list[str]) -> float:
    texts = (texts * (1 + 5_000 // max(1, len(texts))))[:5_000]
    start = time.perf_counter()
    model_scores(model, name, texts)
    return len(texts) / (time.perf_counter() - start)


def write_models(
    models_dir: Path,
    teacher: pl.DataFrame,
    chosen: dict[str, tuple[Params, dict[str, float]]],
    *,
    dim: int,
    vectors: Path | None,
    workdir: Path,
    seed: int,
    prefix: str = "",
    fitted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Learn every teacher row with the chosen settings (or take the ``fitted`` models, learnt so
    already); write the models and return their manifest entries (file names relative to
    ``BUILD/models/``: ``prefix`` is the subfolder)."""
    entries = {}
    for name, (params, weights) in chosen.items():
        if fitted and name in fitted:
            model = fitted[name]
        else:
            texts, labels_ = teacher["_norm"].to_list(), task_labels(teacher, name)
            model = fit(texts, labels_, params, dim=dim, vectors=vectors, workdir=workdir, seed=seed)
        path = models_dir / f"{name}.bin"
        tmp = workdir / path.name
        model.save_model(str(tmp))
        os.replace(tmp, path)
        entries[name] = {
            "file": prefix + path.name,
            "sha256": sha256_file(path),
            "classes": list(JOINT_CLASSES if name == JOINT else TASKS[name]),
            "params": asdict(params),
            "rules_weights": weights,
        }
    models_hash = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return {
        "annotator": f"fasttext-{models_hash[:12]}",
        "created_at": datetime.now(UTC).isoformat(),
        "dim": dim,
        "n_teacher_labels": teacher.height,
        "vectors": {"file": vectors.name, "sha256": sha256_file(vectors)} if vectors else None,
        "models": entries,
    }


# ---------------------------------------------------------------- applying


def load_manifest(build: str | os.PathLike[str], folder: str = "") -> dict[str, Any]:
    """The fastText students of ``BUILD/models/`` (``folder``: of ``BUILD/models/<folder>/``, the
    distilled student, whose model files are named relative to ``BUILD/models/``)."""
    path = Path(build) / "models" / folder / MANIFEST
    if not path.is_file():
        command = "annotate distill" if folder else "annotate train"
        raise StudentError(f"{path}: no trained students in this build (run `pmcurate {command}` first)")
    return json.loads(path.read_text())


def read_checked_manifest(
    folder: Path, files: Callable[[dict[str, Any]], dict[str, str]], *, what: str, command: str
) -> dict[str, Any]:
    """``folder``'s manifest, each file that ``files(manifest)`` names checked against its sha256
    (the encoder and embedding students keep their model files beside their manifest)."""
    path = folder / MANIFEST
    if not path.is_file():
        raise StudentError(f"{path}: no {what} in this build (run `pmcurate {command}`)")
    manifest = json.loads(path.read_text())
    for name, digest in files(manifest).items():
        file = folder / name
        if not file.is_file() or sha256_file(file) != digest:
            raise StudentError(f"{file}: missing or its sha256 differs from {path.name}; retrain")
    return manifest


def verify_models(build: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    """Each model file must still have the sha256 recorded when it was trained."""
    for task, entry in manifest["models"].items():
        path = Path(build) / "models" / entry["file"]
        if not path.is_file():
            raise StudentError(f"{path}: model for {task} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise StudentError(f"{path}: sha256 differs from {MANIFEST}; retrain or restore the model")


class Students:
    """The three loaded models; ``label`` turns paragraphs (with their context) into a LABELS table."""

    def __init__(self, build: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
        fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load-time warning
        self.annotator: str = manifest["annotator"]
        self.context: bool = manifest.get("context", False)
        self.rules_weights = {
            task: float(weight)
            for entry in manifest["models"].values()
            for task, weight in entry["rules_weights"].items()
        }
        self.models = {
            task: fasttext.load_model(str(Path(build) / "models" / entry["file"]))
            for task, entry in manifest["models"].items()
        }

    def label(self, paragraphs: pl.DataFrame) -> pa.Table:
        """Labels of ``paragraphs`` (paragraph_id, text, and the CONTEXT_COLUMNS when known)."""
        lines = model_lines(paragraphs, context=self.context)
        raw: dict[str, np.ndarray] = {}
        for name, model in self.models.items():
            raw |= model_scores(model, name, lines, terminated=True)
        return blended_labels(paragraphs, raw, self.rules_weights, self.annotator)


def blended_labels(
    paragraphs: pl.DataFrame, raw: dict[str, np.ndarray], weights: dict[str, float], annotator: str
) -> pa.Table:
    """A LABELS table from a student's raw class scores, each task mixed with the rules prior."""
    priors = rules_priors(paragraphs, [task for task in raw if weights[task]])
    scores = {task: blend(raw[task], priors.get(task, raw[task]), weights[task]) for task in raw}
    return labels_table(paragraphs["paragraph_id"], scores, annotator)


def labels_table(paragraph_ids: pl.Series, scores: dict[str, np.ndarray], annotator: str) -> pa.Table:
    """The taught labels' columns (``schema.TAUGHT_LABELS``) from each task's final class scores;
    ``apply_steps.label_rows`` adds the computed ones."""
    columns: dict[str, Any] = {"paragraph_id": paragraph_ids.to_arrow()}
    for task, task_scores in scores.items():
        expected = expected_value(task, task_scores)
        if expected is not None:
            columns[task] = pa.array(expected, pa.float32())
            continue
        columns[task] = pa.array(TASKS[task], pa.string()).take(task_scores.argmax(axis=1))  # decide's top
        columns[f"{task}_scores"] = pa.StructArray.from_arrays(
            [pa.array(task_scores[:, i]) for i in range(len(TASKS[task]))], names=list(TASKS[task])
        )
    columns["annotator"] = pa.array([annotator] * len(paragraph_ids), pa.string())
    return pa.table({name: columns[name] for name in schema.TAUGHT_LABELS.names}).cast(schema.TAUGHT_LABELS)


def article_types(paragraphs_shard: Path) -> pl.DataFrame:
    """article_id → article_type for the articles of one paragraphs shard.

    Harvest writes an article's rows to same-named shards of ``articles`` and ``paragraphs``:
    that one small file is read when it exists; otherwise every articles shard is scanned.
    """
    folder = paragraphs_shard.parent.parent / "articles"
    twin = folder / paragraphs_shard.name
    paths = [twin] if twin.is_file() else sorted(folder.glob("*.parquet"))
    if not paths:
        return pl.DataFrame(schema={"article_id": pl.String, "article_type": pl.String})
    ids = pl.read_parquet(paragraphs_shard, columns=["article_id"])["article_id"].unique()
    return (
        pl.scan_parquet(paths)
        .select("article_id", "article_type")
        .filter(pl.col("article_id").is_in(ids.implode()))
        .unique("article_id")
        .collect()
    )


def is_current(target: Path, annotator: str) -> bool:
    """A finished labels shard made by these same models (its annotator column says so), with
    every label of today's ``schema.LABELS`` (a label added since is computed again)."""
    if not target.is_file():
        return False
    try:
        meta = pq.ParquetFile(target).metadata
    except (OSError, pa.ArrowInvalid):
        return False
    if not meta.schema.to_arrow_schema().remove_metadata().equals(schema.LABELS):
        return False
    leaves = [meta.schema.column(i).path for i in range(meta.num_columns)]
    if "annotator" not in leaves or meta.num_row_groups == 0:
        return False
    column = leaves.index("annotator")
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max or stats.min != annotator or stats.max != annotator:
            return False
    return True
