"""Duplicate detection: exact (normalized-text hash) and near (MinHash LSH over word shingles).

The primitives here are shared by the subset engine (``engine.py``), which runs them partition by
partition on an executor, and by ``near_duplicates``, which runs them over texts held in memory:

- ``exact_keys``: a 128-bit hash of each normalized text (Polars, vectorized, about 100,000
  paragraphs a second); the first row of each key, in the subset's order, is kept.
- ``signatures``: each text's 3-word shingle hashes (Polars and NumPy), then its MinHash signature
  computed by ``rensa`` (Rust); ``band_keys``: one key per LSH band (``lsh_bands`` picks the bands
  for the threshold).
- ``candidate_pairs``: rows sharing a band key; ``verified``: the pairs whose signatures agree on
  at least the threshold; ``components``: verified pairs joined into clusters, each labelled by its
  first row. The representative of a cluster is its first row, so results depend only on the row
  order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa
import rensa

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
_EMPTY_SALT = np.uint64(0xA5A5A5A5A5A5A5A5)
BUCKET_ALL_PAIRS = 64
"""Rows sharing a band key are all compared pairwise up to this many; beyond it (a bucket this large
is itself a sign of boilerplate) each row is compared with its neighbours and with the first row."""


def normalized_text(texts: pa.Array | list[str | None] | pl.Series) -> pl.Series:
    """The text exact dedup compares: lower case, each run of characters other than letters and
    digits (Unicode-aware) as one space, trimmed. Null stays null.

    In two passes, each character other than a letter, a digit or a space to a space, then each
    run of spaces to one: the same text as one pass replacing runs, at well under the cost (the
    spaces between words, most of the runs, are never matched).
    """
    series = pl.Series("text", texts, dtype=pl.String)
    spaced = series.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N} ]", " ")
    return spaced.str.replace_all(r" {2,}", " ").str.strip_chars(" ")


def exact_keys(texts: pa.Array | list[str | None]) -> pa.Table:
    """Two 64-bit hashes (``k1``, ``k2``: 128 bits together) of each normalized text; null for a
    text with no letters or digits, so empty rows never count as duplicates of each other.

    Each distinct text is normalized once (a paragraph repeated word for word, boilerplate or a
    second copy of an article, costs a lookup)."""
    rows = pl.Series("text", texts, dtype=pl.String).to_frame().with_row_index("row")
    distinct = rows.group_by("text", maintain_order=True).agg("row")
    normalized = normalized_text(distinct["text"])
    empty = (normalized.is_null() | (normalized == "")).to_numpy()
    members = distinct["row"].list.len().to_numpy()
    order = distinct["row"].explode().to_numpy()
    row_empty = np.empty(rows.height, dtype=bool)
    row_empty[order] = np.repeat(empty, members)
    keys = {}
    for name, seed in (("k1", 0x5EED1), ("k2", 0x5EED2)):
        hashed = np.empty(rows.height, dtype=np.uint64)
        hashed[order] = np.repeat(normalized.hash(seed=seed).to_numpy(), members)
        keys[name] = pa.array(hashed, type=pa.uint64(), mask=row_empty)
    return pa.table(keys)


@dataclass(frozen=True)
class NearDupConfig:
    """Parameters of near-duplicate detection.

    ``threshold`` is the estimated Jaccard similarity of word-shingle sets above which two rows are
    duplicates; the LSH bands and rows are chosen for it (see ``lsh_bands``).
    """

    threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 3
    seed: int = 1
    batch_rows: int = 20_000

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {self.threshold}")
        if self.shingle < 1 or self.num_perm < 2:
            raise ValueError("shingle must be >= 1 and num_perm >= 2")


@lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands ``b`` and rows per band ``r`` (``b * r <= num_perm``) minimising the weighted area of
    false positives and false negatives around ``threshold``, as datasketch's ``MinHashLSH`` does.

    False negatives weigh 0.95 and false positives 0.05: every candidate pair is verified against
    its signatures afterwards, so a false positive costs a comparison while a false negative is a
    duplicate missed (at 0.8 this gives 16 bands × 8 rows: 95% of pairs at similarity 0.8 become
    candidates, 6% of pairs at 0.5).
    """

    def probability(s: np.ndarray, b: int, r: int) -> np.ndarray:
        return 1.0 - (1.0 - s**r) ** b

    below = np.linspace(0.0, threshold, 200)
    above = np.linspace(threshold, 1.0, 200)
    best: tuple[float, int, int] | None = None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            false_pos = np.trapezoid(probability(below, b, r), below)
            false_neg = np.trapezoid(1.0 - probability(above, b, r), above)
            error = float(0.05 * false_pos + 0.95 * false_neg)
            if best is None or error < best[0] - 1e-12:
                best = (error, b, r)
    assert best is not None
    return best[1], best[2]


def mix64(values: np.ndarray, k: np.uint64 = _MIX[0]) -> np.ndarray:
    """A cheap 64-bit mixer (multiply, xor-shift), wrapping: spreads word hashes before combining."""
    with np.errstate(over="ignore"):
        x = (values ^ (values >> np.uint64(31))) * k
        return x ^ (x >> np.uint64(29))


def _combined_shingles(flat: np.ndarray, shingle: int) -> np.ndarray:
    """``combined[i]``: the hash of the shingle starting at flat word ``i`` (words past the end of
    the array counting 0): ``mix64`` of each of its words, combined. In place, and the mixer's first
    xor-shift shared by the shingle's positions: the values ``mix64`` gives, a third of the passes."""
    total = len(flat)
    shifted = np.concatenate([flat, np.zeros(shingle, dtype=np.uint64)])
    shifted ^= shifted >> np.uint64(31)
    combined = np.zeros(total, dtype=np.uint64)
    part = np.empty(total, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(shingle):
            np.multiply(shifted[j : j + total], _MIX[j % len(_MIX)], out=part)
            part ^= part >> np.uint64(29)
            combined *= np.uint64(31)
            combined += part
    return combined


def shingle_hashes(
    texts: pa.Array | list[str | None], shingle: int, row_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flat 64-bit hashes of the ``shingle``-word shingles of every text, and row offsets (n + 1).

    Words are lower-cased runs of letters and digits. A text shorter than ``shingle`` words is one
    shingle of all its words; a text without words gets one token unique to its row (from its
    number in ``row_ids``, one distinct integer a row), so empty rows never look alike.
    """
    series = pl.Series("text", texts, dtype=pl.String).fill_null("")
    words = series.str.to_lowercase().str.extract_all(r"[[:alnum:]]+")
    lengths = words.list.len().fill_null(0).to_numpy().astype(np.int64, copy=False)
    flat = words.explode().drop_nulls().hash(seed=0x5EED).to_numpy().astype(np.uint64, copy=False)
    total = len(flat)
    combined = _combined_shingles(flat, shingle)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    position = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    full = lengths >= shingle
    valid = position < np.repeat(np.where(full, lengths - shingle + 1, 0), lengths)
    counts = np.where(full, lengths - shingle + 1, 1)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.uint64)
    tokens = np.empty(int(offsets[-1]), dtype=np.uint64)
    tokens[np.repeat(full, counts)] = combined[valid]
    for row in np.flatnonzero(~full):  # short or empty texts: rare, one token each
        tokens[offsets[row]] = _short_token(
            flat[starts[row] : starts[row] + lengths[row]], shingle, int(row_ids[row])
        )
    return tokens, offsets


def _short_token(words: np.ndarray, shingle: int, row: int) -> np.uint64:
    """The one token of a text with fewer than ``shingle`` words (same formula as a full shingle,
    missing words counting 0), or a token unique to ``row`` for a text without words."""
    if len(words) == 0:
        return mix64(np.array([row], dtype=np.uint64) ^ _EMPTY_SALT, _MIX[0])[0]
    token = np.zeros(1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(shingle):
            part = mix64(words[j : j + 1], _MIX[j % len(_MIX)]) if j < len(words) else np.zeros(1, np.uint64)
            token = token * np.uint64(31) + part
    return token[0]


def signatures(
    texts: pa.Array | list[str | None], config: NearDupConfig, row_ids: np.ndarray | None = None
) -> np.ndarray:
    """MinHash signatures (``n × num_perm`` uint32) of a batch of texts; ``row_ids`` (default
    0..n-1) number the rows, distinctly, for the tokens of texts without words."""
    if row_ids is None:
        row_ids = np.arange(len(texts), dtype=np.int64)
    tokens, offsets = shingle_hashes(texts, config.shingle, row_ids)
    if len(offsets) == 1:
        return np.zeros((0, config.num_perm), dtype=np.uint32)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        tokens, offsets, config.num_perm, config.seed
    )
    rows = matrix.to_rows()  # rensa gives lists: flattened in one pass, half the cost of np.asarray
    flat = np.fromiter(itertools.chain.from_iterable(rows), np.uint32, count=len(rows) * config.num_perm)
    return flat.reshape(-1, config.num_perm)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (row, band): the band's ``rows`` signature values hashed together."""
    n = sigs.shape[0]
    blocks = sigs[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(rows):
            keys = mix64(keys * np.uint64(0x100000001B3) + blocks[:, :, j], _MIX[j % len(_MIX)])
    return keys


def _bucket_pairs(members: np.ndarray) -> np.ndarray:
    """Candidate pairs (first, second) within one bucket of row indexes sorted ascending."""
    if len(members) <= BUCKET_ALL_PAIRS:
        i, j = np.triu_indices(len(members), k=1)
        return np.stack([members[i], members[j]], axis=1)
    chain = np.stack([members[:-1], members[1:]], axis=1)
    star = np.stack([np.full(len(members) - 2, members[0]), members[2:]], axis=1)
    return np.concatenate([chain, star])


def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """Pairs of row indexes (``a < b``) that share a key in one band."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    boundaries = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(keys)]))
    big = np.flatnonzero(ends - starts > 1)
    if len(big) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    sizes = ends[big] - starts[big]
    pairs = [np.zeros((0, 2), dtype=np.int64)]
    two = big[sizes == 2]
    if len(two):  # the common case, vectorized
        pairs.append(np.stack([order[starts[two]], order[starts[two] + 1]], axis=1))
    for k in big[sizes > 2]:
        pairs.append(_bucket_pairs(np.sort(order[starts[k] : ends[k]])))
    return np.concatenate(pairs).astype(np.int64)


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Label of every node 0..n-1: the smallest node index of its connected component."""
    labels = np.arange(n, dtype=np.int64)
    if len(edges) == 0:
        return labels
    a, b = edges[:, 0], edges[:, 1]
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        labels = labels[labels]  # pointer jumping: follow labels to their own label
        if np.array_equal(labels, before):
            return labels


@dataclass(frozen=True)
class NearDuplicates:
    """Rows found to be near duplicates: ``rows[i]`` duplicates ``representatives[i]`` (row indexes
    in the order the texts were given; representatives are the first row of each cluster)."""

    rows: np.ndarray
    representatives: np.ndarray
    n_rows: int
    candidate_pairs: int
    verified_pairs: int


def verified(pairs: np.ndarray, sigs: np.ndarray, threshold: float, chunk: int = 200_000) -> np.ndarray:
    """Which pairs (rows of ``sigs``) have an estimated Jaccard similarity (share of equal signature
    values) reaching ``threshold``: a boolean mask over ``pairs``."""
    mask = np.zeros(len(pairs), dtype=bool)
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        similarity = (sigs[part[:, 0]] == sigs[part[:, 1]]).mean(axis=1)
        mask[start : start + chunk] = similarity >= threshold - 1e-9
    return mask


def near_duplicates(
    batches: Iterable[pa.Array | list[str | None]], config: NearDupConfig | None = None
) -> NearDuplicates:
    """Near-duplicate texts among all texts of ``batches`` (in order), in memory: the steps the subset
    engine runs partition by partition (``engine.py``), for texts that fit in memory."""
    config = config or NearDupConfig()
    bands, rows_per_band = lsh_bands(config.threshold, config.num_perm)
    parts, n = [], 0
    for batch in batches:
        parts.append(signatures(batch, config, row_ids=np.arange(n, n + len(batch), dtype=np.int64)))
        n += len(batch)
    sigs = np.concatenate(parts) if parts else np.zeros((0, config.num_perm), dtype=np.uint32)
    keys = band_keys(sigs, bands, rows_per_band)
    found = [candidate_pairs(np.ascontiguousarray(keys[:, b])) for b in range(bands)]
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), dtype=np.int64)
    edges = pairs[verified(pairs, sigs, config.threshold)]
    labels = components(n, edges)
    rows = np.flatnonzero(labels != np.arange(n))
    return NearDuplicates(rows, labels[rows], n, len(pairs), len(edges))


def expected_recall(similarity: float, config: NearDupConfig) -> float:
    """Probability that a pair with this Jaccard similarity becomes a candidate (before verification)."""
    b, r = lsh_bands(config.threshold, config.num_perm)
    return 1.0 - (1.0 - similarity**r) ** b


def describe(config: NearDupConfig) -> str:
    b, r = lsh_bands(config.threshold, config.num_perm)
    above = min(1.0, config.threshold + 0.1)
    return (
        f"MinHash LSH: {config.shingle}-word shingles, {config.num_perm} permutations, {b} bands × {r} rows, "
        f"threshold {config.threshold:g} (candidate recall at {config.threshold:g}: "
        f"{expected_recall(config.threshold, config):.2f}, "
        f"at {above:g}: {expected_recall(above, config):.3f})"
    )
