"""Language identification with ``py3langid``'s model, its DFA walked in C over batches of texts.

Nothing is downloaded at run time (the model is ``py3langid/data/model.npz.xz``, inside the
package), so the rule works offline and gives the same answer on every machine. The ``language``
rule reads only the first ``MAX_CHARS`` characters of a text, which is plenty to tell a language
and keeps long paragraphs cheap.

The answers are py3langid's own (``LanguageIdentifier.classify`` with ``norm_probs=True``, same
model file), at over 10 times its speed: py3langid walks its byte-level DFA in a Python loop, one
text at a time (~5,000 fixture paragraphs a second on one core); here the compiled
``_langid.feature_scores`` walks a packed copy of the DFA over a batch of texts, four at a time,
and sums the naive-Bayes scores in C (AVX2 and F16C where the CPU has them), then numpy normalizes
and picks each row's language: ~67,000 paragraphs a second on the same core (``bench/language.py``,
13× in one side-by-side run on a busy machine). py3langid sums in float32 in an order its BLAS
chooses, so a row whose two best languages are closer than the rounding error of either sum
(bounded per row, ``_decide``) is not decided here: it goes to py3langid's ``classify`` itself.
That is no fixture paragraph and under 1% of short, mixed-language texts, and it makes the answers
identical by construction rather than almost always. The packed DFA takes 78 MB per process,
besides py3langid's own model (~100 MB resident), which the fallback needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pmcurate import compiled

try:
    from pmcurate.filters import _langid
except ImportError as exc:  # the extension is built by installing the package; say how, loudly
    raise ImportError(
        "pmcurate.filters._langid (the compiled language identifier) is not built or does not load: "
        "reinstall pmcurate with a C compiler present (`make .venv/.installed`, or `pip install -e .`)"
    ) from exc

compiled.check_build(_langid, Path(__file__).with_name("_langid.pyx"))

MAX_CHARS = 1000
UNDETERMINED = "und"
"""The answer for a text without letters to judge (empty, numbers only)."""
BATCH_ROWS = 4096
"""Texts scored per call of the compiled walk (a batch's score matrix is ``BATCH_ROWS`` × 142 doubles)."""
FLOAT32_UNIT = 2.0**-24
"""Unit roundoff of float32, the precision py3langid scores in."""


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@dataclass(frozen=True)
class Model:
    """py3langid's model as the compiled walk reads it, plus what ``_decide`` needs."""

    identifier: Any
    transitions: np.ndarray
    """The DFA packed for the walk (``_langid.feature_scores``): what each byte leads to, one load a step."""
    start: int
    """The first state, packed like ``transitions``'s entries."""
    ptc: np.ndarray
    """log P(feature | language), features × languages: the model's float16 values, as their bits (uint16)."""
    feature_bound: np.ndarray
    """Largest ``|ptc|`` of each feature: a row's error bound sums it."""
    pc: np.ndarray
    """log P(language), float64."""
    classes: list[str]
    aliases: list[tuple[int, int]]
    """(first, duplicate) columns of a label that has two (``sr``, ``uz``: two scripts each)."""

    @classmethod
    def load(cls, identifier: Any) -> Model:
        """Pack py3langid's DFA (``nextmove[rowbase[state] + byte]`` is the next state, ``output[state]``
        its feature or -1) so that an entry holds the next state's row offset and feature."""
        nextmove = np.asarray(identifier.tk_nextmove)
        rowbase = np.asarray(identifier.tk_row).astype(np.uint64) << 8
        output = np.asarray(identifier.tk_output, dtype=np.int64)
        ptc = np.ascontiguousarray(identifier.nb_ptc, dtype=np.float16)
        check_layout(nextmove, rowbase, output, ptc)
        described = rowbase | ((output + 1).astype(np.uint64) << 32)
        return cls(
            identifier=identifier,
            transitions=described[nextmove],
            start=int(described[0]),
            ptc=ptc.view(np.uint16),
            feature_bound=np.abs(ptc).max(axis=1).astype(np.float64),
            pc=np.asarray(identifier.nb_pc, dtype=np.float64),
            classes=list(identifier.nb_classes),
            aliases=list(identifier._alias_pairs),
        )


def check_layout(nextmove: np.ndarray, rowbase: np.ndarray, output: np.ndarray, ptc: np.ndarray) -> None:
    """Refuse a model the compiled walk would read out of bounds (it trusts the packed DFA)."""
    states = len(rowbase)
    consistent = (
        len(output) == states
        and int(nextmove.max()) < states
        and int(rowbase.max()) + 256 <= len(nextmove) < 2**32
        and int(output.max()) < ptc.shape[0]
        and bool(np.all(np.abs(ptc) >= np.finfo(np.float16).smallest_normal))
        and bool(np.all(np.isfinite(ptc)))
    )
    if not consistent:
        raise ValueError("py3langid's model is not the layout pmcurate's compiled language walk reads")


@lru_cache(maxsize=1)
def _model() -> Model:
    return Model.load(_identifier())


def detect(text: str | None) -> str:
    """ISO 639-1 code of the text's language (``und`` when the text has no letters)."""
    return detect_many([text])[0]


def detect_arrow(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``detect`` over an Arrow string array: the vectorized form DuckDB calls as a SQL function."""
    return pa.array(detect_many(texts.to_pylist()), type=pa.string())


def detect_many(texts: Sequence[str | None]) -> list[str]:
    """``detect`` of each text, in batches: py3langid's answer on each text's first ``MAX_CHARS``
    characters, ``und`` for a text without letters in them."""
    answers = [UNDETERMINED] * len(texts)
    judged = [
        (row, text[:MAX_CHARS])
        for row, text in enumerate(texts)
        if text and _langid.has_letter(text, MAX_CHARS)
    ]
    for batch in _batches(judged, BATCH_ROWS):
        for (row, _), language in zip(batch, _classify([head for _, head in batch]), strict=True):
            answers[row] = language
    return answers


def _batches(items: list[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _classify(heads: list[str]) -> list[str]:
    """py3langid's ``classify(head)[0]`` of each head: decided from the compiled scores where they
    settle it, by ``classify`` itself where they do not."""
    model = _model()
    encoded = [model.identifier._encode(head) for head in heads]  # lowercase if all caps, NFC, UTF-8
    raw = np.zeros((len(encoded), len(model.classes)))
    bound = np.zeros(len(encoded))
    features = np.zeros(len(encoded), dtype=np.int64)
    _langid.feature_scores(
        encoded, model.transitions, model.start, model.ptc, model.feature_bound, raw, bound, features
    )
    lengths = np.fromiter((len(data) for data in encoded), dtype=np.float64, count=len(encoded))
    best, settled = _decide(raw, bound, features, lengths, model)
    return [
        model.classes[index] if sure else model.identifier.classify(head)[0]
        for head, index, sure in zip(heads, best.tolist(), settled.tolist(), strict=True)
    ]


def _decide(
    raw: np.ndarray, bound: np.ndarray, features: np.ndarray, lengths: np.ndarray, model: Model
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's language (column index) and whether py3langid's float32 computation surely agrees.

    py3langid (``_decide``) computes ``s = log1p(counts) @ ptc[features] + pc`` in float32 (in an
    order its BLAS picks), ``t = s / sqrt(bytes)``, ``p = softmax(t)``, adds an aliased label's
    second column into its first, and takes the argmax. A float32 sum of ``n`` terms, in any order
    and with or without FMA, is within ``n u`` times the sum of the terms' absolute values of the
    exact sum (``u`` = 2^-24); ``bound`` + ``max |pc|`` bounds that sum of absolute values (each
    feature's largest ``|ptc|``). py3langid's ``s`` and the compiled one (also float32, ``k``
    features) each err by at most about ``(k + 4) u`` times it, including the rounding of
    ``log1p``; ``sum_error`` allows twice both. The scaling, the subtraction of the maximum,
    ``exp`` and the normalization add a few roundings more (``t_error``, ``ratio_error``). A row is
    settled when its best probability exceeds the second best by more than the ratio those errors
    could make, so py3langid's float32 argmax is the same language. A row without features
    (py3langid then scores every language 0) is never settled here.
    """
    scale = 1.0 / np.sqrt(np.maximum(lengths, 1.0))
    t = (raw + model.pc) * scale[:, None]
    p = np.exp(t - t.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    for first, duplicate in model.aliases:
        p[:, first] += p[:, duplicate]
        p[:, duplicate] = 0.0
    best = p.argmax(axis=1)
    top_two = -np.partition(-p, 1, axis=1)[:, :2]
    sum_error = 4.0 * (features + 8) * FLOAT32_UNIT * (bound + np.abs(model.pc).max())
    t_error = scale * sum_error + 4.0 * FLOAT32_UNIT * np.abs(t).max(axis=1)
    ratio_error = np.exp(4.0 * t_error + 2.0 * (len(model.classes) + 16) * FLOAT32_UNIT)
    settled = (features > 0) & (top_two[:, 0] > top_two[:, 1] * ratio_error)
    return best, settled


def register(connection: Any) -> None:
    """Make ``detect_language(text)`` available to SQL run on ``connection``."""
    from duckdb.sqltypes import VARCHAR

    connection.create_function(
        "detect_language", detect_arrow, [VARCHAR], VARCHAR, type="arrow", side_effects=False
    )
