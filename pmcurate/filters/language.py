"""Language identification with ``py3langid``'s model, its DFA walked in C over batches of texts.

Nothing is downloaded at run time (the model is ``py3langid/data/model.npz.xz``, inside the
package), so the rule works offline and gives the same answer on every machine. The ``language``
rule reads only the first ``MAX_CHARS`` characters of a text, which is plenty to tell a language
and keeps long paragraphs cheap.

The answers are py3langid's own (``LanguageIdentifier.classify`` with ``norm_probs=True``, same
model file), many times faster: py3langid walks its byte-level DFA in a Python loop, one text at a
time (~5,000 fixture paragraphs a second on one core); here ``_langid.Walker`` walks a packed copy
of the DFA over an Arrow array's UTF-8 bytes, sixteen texts at a time, sums the naive-Bayes scores and
decides each text in C (``bench/language.py``). A head that py3langid's ``_encode`` (lowercase if
all capitals, NFC, UTF-8) would leave as it is (a lowercase ASCII letter, and only characters NFC
leaves as they are, ``nfc_stable``: nearly every paragraph) is walked where it lies in the Arrow
buffer; the others are prepared in Python. Texts are walked in order of length: the sixteen lanes
end together.

Each text is decided in up to three passes, each exact about when it may answer:

1. quantized sums (``quantize``: each ``ptc`` value as its column's smallest value plus a
   whole number of ``step``, one byte, with each row's rounding error ``feature_error``), summed
   as integers: each language's score comes with a bound ``spread`` on its distance to the exact sum;
2. for the texts the first pass leaves open, the model's float16 values summed in float32;
3. for the few still open, py3langid's ``classify`` itself.

A pass answers when the best language's score exceeds the second's by more than the errors
could make up (``Walker._decide_row``). py3langid computes ``s = log1p(counts) @ ptc[features] +
pc`` in float32 (in an order its BLAS picks), ``t = s / sqrt(bytes)``, ``p = softmax(t)``, adds an
aliased label's second column into its first, and takes the argmax. A float32 sum of ``n`` terms,
in any order and with or without FMA, is within ``n u`` times the sum of the terms' absolute values
of the exact sum (``u`` = 2^-24); ``bound`` + ``max |pc|`` bounds that sum of absolute values (each
feature's largest ``|ptc|``, ``feature_bound``). py3langid's ``s`` and the float32 one here
(``k`` features) each err by at most about ``(k + 4) u`` times it, including the rounding of
``log1p``; ``sum_error`` allows twice both. The scaling, the subtraction of the maximum, ``exp`` and
the normalization add a few roundings more (``t_error``, and ``classes + 16`` roundings of the
probabilities' ratio). A quantized score is off the exact one by at most ``spread``, which moves
each label's log-probability by at most ``spread / sqrt(bytes)`` and the log-ratio of two labels
by twice that. So when the log-ratio of the best label to the second exceeds ``4 t_error + 2 (classes
+ 16) u + 2 spread / sqrt(bytes)``, py3langid's float32 argmax is the same language. A text without
features (py3langid then scores every language 0) is never settled here. Under 1% of short,
mixed-language texts and no fixture paragraph reach ``classify``: the answers are identical by
construction rather than almost always.

Packing the model takes ~0.9 s (py3langid's LZMA, then the packing), so it is done once: the packed
arrays, and py3langid's own that ``classify`` needs, are kept in pmcurate's cache
(``$PMCURATE_CACHE/language``, ~160 MB, ``cached``) and memory-mapped by every process that needs
them, which then starts in milliseconds and shares their pages with the others. py3langid's
identifier is made from them only when a text first reaches ``classify``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import unicodedata
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pmcurate import compiled
from pmcurate.cache import cache_root, remove_stale_staging

try:
    from pmcurate.filters import _langid
except ImportError as exc:  # the extension is built by installing the package; say how, loudly
    raise ImportError(
        "pmcurate.filters._langid (the compiled language identifier) is not built or does not load: "
        "reinstall pmcurate with a C compiler present (`make .venv/.installed`, or `pip install -e .`)"
    ) from exc

compiled.check_build(_langid, Path(__file__).with_name("_langid.pyx"))

log = logging.getLogger(__name__)

MAX_CHARS = 1000
UNDETERMINED = "und"
"""The answer for a text without letters to judge (empty, numbers only)."""
LEVELS = 255
"""Steps of a quantized score: one byte a language."""


@lru_cache(maxsize=1)
def _identifier() -> Any:
    """py3langid's own identifier, loaded from its model file (~0.4 s: LZMA)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


ARRAYS = (
    *("transitions", "ptc", "quantized", "floor", "feature_bound", "feature_error", "pc", "aliases"),
    *("nextmove", "rows", "output", "nfc_stable"),
)
"""``Packed.arrays``: what the walk reads, then py3langid's DFA for ``classify``, then ``nfc_stable``."""


@dataclass(frozen=True)
class Packed:
    """What ``Model`` is made of: the packed DFA and scores the walk reads, and py3langid's model
    arrays (as its ``load_model`` returns them) that ``classify`` needs. ``arrays`` are numpy arrays
    (read from the cache, memory-mapped), ``scalars`` what is not one (``SCALARS``)."""

    arrays: dict[str, np.ndarray]
    scalars: dict[str, Any]

    @classmethod
    def of(cls, identifier: Any) -> Packed:
        """Pack py3langid's DFA (``nextmove[rowbase[state] + byte]`` is the next state,
        ``output[state]`` its feature or -1) so that an entry holds the next state's row offset and
        feature, and quantize its scores (``quantize``)."""
        nextmove = np.asarray(identifier.tk_nextmove)
        rowbase = np.asarray(identifier.tk_row).astype(np.uint64) << 8
        output = np.asarray(identifier.tk_output, dtype=np.int64)
        ptc = np.ascontiguousarray(identifier.nb_ptc, dtype=np.float16)
        check_layout(nextmove, rowbase, output, ptc)
        described = rowbase | ((output + 1).astype(np.uint64) << 32)
        quantized, step, floor, feature_error = quantize(ptc)
        arrays = {
            "transitions": described[nextmove],
            "ptc": ptc,
            "quantized": quantized,
            "floor": floor,
            "feature_bound": np.abs(ptc).max(axis=1).astype(np.float64),
            "feature_error": feature_error,
            "pc": np.asarray(identifier.nb_pc),
            "aliases": np.array(identifier._alias_pairs, dtype=np.int32).reshape(-1, 2),
            "nextmove": nextmove,
            "rows": np.asarray(identifier.tk_row),
            "output": output.astype(np.int32),
            "nfc_stable": nfc_stable(),
        }
        scalars = {"start": int(described[0]), "step": step, "classes": list(identifier.nb_classes)}
        return cls(arrays, scalars)

    def walker(self, *, simd: bool = _langid.SIMD) -> _langid.Walker:
        a = self.arrays
        return _langid.Walker(
            a["transitions"],
            self.scalars["start"],
            a["ptc"].view(np.uint16),
            a["quantized"],
            self.scalars["step"],
            a["floor"],
            a["feature_bound"],
            a["feature_error"],
            a["pc"].astype(np.float64),
            a["aliases"],
            simd=simd,
        )

    def identifier(self) -> Any:
        """py3langid's ``LanguageIdentifier`` as ``from_model_file`` makes it, from these arrays
        (the cache holds them uncompressed: no LZMA to undo)."""
        from py3langid.langid import LanguageIdentifier

        a = self.arrays
        return LanguageIdentifier(
            np.asarray(a["ptc"]),
            np.asarray(a["pc"]),
            list(self.scalars["classes"]),
            _stdlib_array(a["nextmove"]),
            a["output"].tolist(),
            norm_probs=True,
            tk_row=_stdlib_array(a["rows"]),
        )


def _stdlib_array(values: np.ndarray) -> array:
    """``values`` as the ``array.array`` py3langid's ``load_model`` makes of them (same type code)."""
    out = array(np.dtype(values.dtype).char)
    out.frombytes(np.ascontiguousarray(values).tobytes())
    return out


def _remove_other_entries(entry: Path) -> None:
    """Remove the entries of other versions beside ``entry`` (a process still reading one keeps its
    mapped pages); folders being written (named with a dot first) are left alone."""
    for other in entry.parent.iterdir():
        if other != entry and not other.name.startswith(".") and (other / "meta.json").exists():
            shutil.rmtree(other, ignore_errors=True)


@dataclass(frozen=True)
class Model:
    """py3langid's model as the compiled walk reads it (``walker``), and what answers the rest
    (``identifier``, built when first needed)."""

    walker: _langid.Walker
    classes: list[str]
    labels: pa.Array
    """``classes`` then ``UNDETERMINED``, as Arrow strings: an answer's code indexes them."""
    stable: np.ndarray
    """``nfc_stable()``."""
    make_identifier: Callable[[], Any]

    @property
    def identifier(self) -> Any:
        return self.make_identifier()

    @classmethod
    def load(cls, identifier: Any, *, simd: bool = _langid.SIMD) -> Model:
        """The model of py3langid's ``identifier``, packed here."""
        return cls.of(Packed.of(identifier), simd=simd, identifier=lambda: identifier)

    @classmethod
    def of(
        cls, packed: Packed, *, simd: bool = _langid.SIMD, identifier: Callable[[], Any] | None = None
    ) -> Model:
        classes = list(packed.scalars["classes"])
        return cls(
            packed.walker(simd=simd),
            classes,
            pa.array([*classes, UNDETERMINED], pa.string()),
            packed.arrays["nfc_stable"],
            identifier or lru_cache(maxsize=1)(packed.identifier),
        )


def quantize(ptc: np.ndarray, rows: int = 4096) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """``ptc`` (features × languages) as ``floor[c] + quantized[f, c] * step``: ``floor`` each
    column's smallest value (most of a column: a feature never seen with that language), the byte
    ``quantized`` (``_langid.WIDTH`` wide, padded with 0) the excess in ``LEVELS`` steps, and
    ``feature_error[f]`` the most a value of row ``f`` is off (half a step at most; a little more
    for the float64 rounding of this very computation). ``rows`` at a time: the temporaries stay small."""
    floor = ptc.min(axis=0).astype(np.float64)
    step = float((ptc.max(axis=0).astype(np.float64) - floor).max()) / LEVELS
    quantized = np.zeros((ptc.shape[0], _langid.WIDTH), dtype=np.uint8)
    feature_error = np.empty(ptc.shape[0])
    for start in range(0, ptc.shape[0], rows):
        excess = ptc[start : start + rows].astype(np.float64) - floor
        levels = np.clip(np.rint(excess / step), 0, LEVELS)
        quantized[start : start + rows, : ptc.shape[1]] = levels
        feature_error[start : start + rows] = np.abs(excess - levels * step).max(axis=1)
    return quantized, step, floor, feature_error + 2048 * np.finfo(np.float64).eps


def check_layout(nextmove: np.ndarray, rowbase: np.ndarray, output: np.ndarray, ptc: np.ndarray) -> None:
    """Refuse a model the compiled walk would read out of bounds (it trusts the packed DFA)."""
    states = len(rowbase)
    consistent = (
        len(output) == states
        and int(nextmove.max()) < states
        and int(rowbase.max()) + 256 <= len(nextmove) < 2**32
        and int(output.max()) < ptc.shape[0]
        and ptc.shape[1] <= _langid.WIDTH
        and bool(np.all(np.abs(ptc) >= np.finfo(np.float16).smallest_normal))
        and bool(np.all(np.isfinite(ptc)))
    )
    if not consistent:
        raise ValueError("py3langid's model is not the layout pmcurate's compiled language walk reads")


@lru_cache(maxsize=1)
def _model() -> Model:
    """The model, from the cache (``cached``) when it holds this version's."""
    return cached(cache_root() / "language")


def cached(folder: Path) -> Model:
    """The model from ``folder``'s entry for this version (``cache_key``), its arrays memory-mapped
    (read in no time, their pages shared by the processes that read them); packed from py3langid's
    model file (~0.9 s) and written there first when absent, stale or unreadable. A folder that
    cannot be written costs the packing each time, nothing else."""
    key = cache_key()
    entry = folder / key[:32]
    packed = read_packed(entry, key)
    if packed is not None:
        return Model.of(packed)
    packed = Packed.of(_identifier())
    write_packed(packed, entry, key)
    return Model.of(packed, identifier=_identifier)


def cache_key() -> str:
    """What the packed arrays are a function of: py3langid's model file (its bytes) and the code that
    reads and packs it (py3langid's version, this module's source, the compiled walk's source,
    numpy's version, Python's Unicode data for ``nfc_stable``)."""
    import py3langid.langid

    model = Path(py3langid.langid.__file__).parent / py3langid.langid.MODEL_FILE
    parts = [
        hashlib.sha256(model.read_bytes()).hexdigest(),
        getattr(py3langid, "__version__", "?"),
        hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        _langid.BUILT_FROM_SHA256,
        np.__version__,
        unicodedata.unidata_version,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read_packed(entry: Path, key: str) -> Packed | None:
    """The arrays written in ``entry`` (``write_packed``) for ``key``, memory-mapped; None when the
    entry is missing, for another key, or its files are not the sizes its ``meta.json`` records."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta["key"] != key or set(meta["arrays"]) != set(ARRAYS):
            return None
        arrays = {}
        for name, (dtype, shape) in meta["arrays"].items():
            mapped = np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            if mapped.dtype.str != dtype or list(mapped.shape) != shape:
                return None
            arrays[name] = mapped
        return Packed(arrays, meta["scalars"])
    except (OSError, ValueError, KeyError, TypeError):  # missing, truncated, or not ours
        return None


def write_packed(packed: Packed, entry: Path, key: str) -> None:
    """``packed`` into ``entry`` atomically: written in a folder beside it, renamed into place
    (replacing a broken entry). A process that loses the race to another leaves the other's."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(entry)  # ~160 MB each, left by a process killed while writing
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    except OSError as exc:
        log.warning("cannot cache the packed language model in %s (%s): packing it each time", entry, exc)
        return
    try:
        for name, values in packed.arrays.items():
            with open(staging / f"{name}.npy", "wb") as out:
                np.save(out, values, allow_pickle=False)
                out.flush()
                os.fsync(out.fileno())  # on disk before the rename makes it visible
        shapes = {name: [values.dtype.str, list(values.shape)] for name, values in packed.arrays.items()}
        meta = {"key": key, "scalars": packed.scalars, "arrays": shapes}
        (staging / "meta.json").write_text(json.dumps(meta))
        if entry.exists() and read_packed(entry, key) is None:  # broken: replaced
            shutil.rmtree(entry, ignore_errors=True)
        os.rename(staging, entry)
        _remove_other_entries(entry)
    except OSError as exc:
        if read_packed(entry, key) is None:  # not another process's entry, written meanwhile
            log.warning("cannot cache the packed language model in %s (%s): packing it each time", entry, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@lru_cache(maxsize=1)
def nfc_stable() -> np.ndarray:
    """A bitmap of the BMP (``np.packbits``, little bit order): the characters NFC leaves as they
    are wherever they stand. A character is such when it is NFC alone, has combining class 0 (no
    reordering around it) and is the second of no canonical pair (nothing composes with what comes
    before it: no combining mark, Hangul vowel or final jamo, Indic length mark). A text made of
    them is its own NFC (``test_language`` checks samples); surrogates are left out."""
    seconds = set()
    for point in range(0x110000):
        parts = unicodedata.decomposition(chr(point)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(int(parts[1], 16))
    hangul = {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)}  # composed by rule, not by the table
    stable = [
        not 0xD800 <= point < 0xE000
        and point not in seconds
        and point not in hangul
        and unicodedata.combining(chr(point)) == 0
        and unicodedata.is_normalized("NFC", chr(point))
        for point in range(0x10000)
    ]
    return np.packbits(np.array(stable, dtype=bool), bitorder="little")


def detect(text: str | None) -> str:
    """ISO 639-1 code of the text's language (``und`` when the text has no letters)."""
    return detect_many([text])[0]


def detect_many(texts: Sequence[str | None]) -> list[str]:
    """``detect`` of each text: py3langid's answer on each text's first ``MAX_CHARS`` characters,
    ``und`` for a text without letters in them."""
    try:
        array = pa.array(texts, pa.large_string())
    except (pa.ArrowException, UnicodeError):  # a lone surrogate has no UTF-8: py3langid alone
        utf8 = [text is None or _has_utf8(text) for text in texts]
        array = pa.array([t if ok else None for t, ok in zip(texts, utf8, strict=True)], pa.large_string())
        answers = detect_arrow(array).to_pylist()
        return [a if ok else _classify(t) for a, t, ok in zip(answers, texts, utf8, strict=True)]
    return detect_arrow(array).to_pylist()


def detect_arrow(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``detect`` over an Arrow string array: the vectorized form DuckDB calls as a SQL function,
    and the computed ``language`` label."""
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    model = _model()
    answers = [model.labels.take(_codes(chunk, model)) for chunk in chunks]
    return pa.concat_arrays(answers) if answers else pa.array([], pa.string())


def _codes(array: pa.Array, model: Model) -> np.ndarray:
    """Each text's answer as an index of ``model.labels``."""
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    rows = len(array)
    codes = np.full(rows, len(model.classes), dtype=np.int16)  # UNDETERMINED
    if rows == 0:
        return codes
    valid, offsets, data = array.buffers()
    offsets_array = np.frombuffer(offsets, dtype=np.int64)
    data_array = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    valid_array = np.frombuffer(valid, dtype=np.uint8) if valid is not None else np.zeros(0, np.uint8)
    starts, lengths = np.empty(rows, np.int64), np.empty(rows, np.int64)
    kinds = np.empty(rows, np.int8)
    _langid.heads(
        data_array, offsets_array, valid_array, array.offset, MAX_CHARS, model.stable, starts, lengths, kinds
    )
    fast = np.flatnonzero(kinds == _langid.FAST)
    if fast.size:
        codes[fast] = _decided(model, data_array, starts[fast], lengths[fast], bytes.decode)
    slow = np.flatnonzero(kinds == _langid.IN_PYTHON)
    if slow.size:
        heads = [text[:MAX_CHARS] for text in array.take(slow).to_pylist()]
        lettered = [i for i, head in enumerate(heads) if _langid.has_letter(head, MAX_CHARS)]
        if lettered:
            # lowercase if all capitals, NFC, UTF-8
            encode = _encoder()
            encoded = [encode(heads[i]) for i in lettered]
            size = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            by_bytes = {data: heads[i] for data, i in zip(encoded, lettered, strict=True)}
            codes[slow[lettered]] = _decided(model, blob, np.cumsum(size) - size, size, by_bytes.__getitem__)
    return codes


def _decided(
    model: Model, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, head: Callable[[bytes], str]
) -> np.ndarray:
    """The answer (an index of ``model.labels``) for each text ``data[starts[r]:starts[r] + lengths[r]]``
    (``_encode``'s bytes of a head, which ``head`` gives back): from the quantized sums, the exact
    sums for the texts those leave open, and ``classify`` of the head for the rest."""
    best, settled = _identify(model, data, starts, lengths, quantized=True)
    open_rows = np.flatnonzero(~settled)
    if open_rows.size:
        exact, sure = _identify(model, data, starts[open_rows], lengths[open_rows], quantized=False)
        best[open_rows] = exact
        for row in open_rows[~sure].tolist():
            text = head(data[starts[row] : starts[row] + lengths[row]].tobytes())
            best[row] = model.classes.index(model.identifier.classify(text)[0])
    return best


def _identify(
    model: Model, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, quantized: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``Walker.identify``: each text's best language and whether py3langid surely answers it."""
    order = np.argsort(lengths, kind="stable")  # texts of a length side by side: the lanes end together
    best = np.empty(len(starts), dtype=np.int16)
    settled = np.empty(len(starts), dtype=np.uint8)
    model.walker.identify(data, starts[order], lengths[order], quantized, best, settled)
    unsorted_best, unsorted_settled = np.empty_like(best), np.empty_like(settled)
    unsorted_best[order], unsorted_settled[order] = best, settled
    return unsorted_best, unsorted_settled.view(np.bool_)


@lru_cache(maxsize=1)
def _encoder() -> Callable[[str], bytes]:
    """py3langid's ``_encode``, a static method: it needs no model loaded."""
    from py3langid.langid import LanguageIdentifier

    return LanguageIdentifier._encode


def _has_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _classify(text: str | None) -> str:
    """py3langid's answer for one text, without the compiled walk (a text Arrow cannot hold)."""
    head = (text or "")[:MAX_CHARS]
    if not _langid.has_letter(head, MAX_CHARS):
        return UNDETERMINED
    return str(_identifier().classify(head)[0])


def register(connection: Any) -> None:
    """Make ``detect_language(text)`` available to SQL run on ``connection``."""
    from duckdb.sqltypes import VARCHAR

    connection.create_function(
        "detect_language", detect_arrow, [VARCHAR], VARCHAR, type="arrow", side_effects=False
    )
