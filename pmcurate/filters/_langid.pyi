"""Types of the compiled language walk (``_langid.pyx``), for mypy and readers."""

import numpy as np

BUILT_FROM_SHA256: str
"""SHA-256 of the ``_langid.pyx`` this module was compiled from (``compiled.check_build``)."""
SIMD: bool
"""Whether this CPU sums with AVX2, F16C and FMA rather than the portable loops."""
WIDTH: int
"""Bytes of a quantized row: the model's languages, padded with 0."""
FAST: int
"""``heads``'s kind of a text whose head is its own UTF-8 bytes, as py3langid's ``_encode`` makes them."""
NO_LETTER: int
"""``heads``'s kind of a null or empty text, or an ASCII head without a letter."""
IN_PYTHON: int
"""``heads``'s kind of a text whose head Python prepares."""

def has_letter(text: str, limit: int) -> bool: ...
def heads(
    data: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
    first: int,
    limit: int,
    stable: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    kinds: np.ndarray,
) -> None: ...
def blank_characters(
    data: np.ndarray,
    offsets: np.ndarray,
    first: int,
    blank: np.ndarray,
    out: np.ndarray,
    out_offsets: np.ndarray,
) -> None: ...
def lowered_lines(
    data: np.ndarray,
    offsets: np.ndarray,
    first: int,
    rows: int,
    table: np.ndarray,
    prefix: np.ndarray,
    prefix_offsets: np.ndarray,
    prefix_first: int,
    end: bytes,
) -> tuple[list[bytes | None], list[int]]: ...

class Walker:
    classes: int
    simd: bool
    def __init__(
        self,
        transitions: np.ndarray,
        start: int,
        ptc: np.ndarray,
        quantized: np.ndarray,
        step: float,
        floor: np.ndarray,
        feature_bound: np.ndarray,
        feature_error: np.ndarray,
        pc: np.ndarray,
        aliases: np.ndarray,
        simd: bool = ...,
    ) -> None: ...
    def identify(
        self,
        data: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        quantized: bool,
        best: np.ndarray,
        settled: np.ndarray,
    ) -> None: ...
    def scores(
        self,
        data: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        quantized: bool,
        raw: np.ndarray,
        bound: np.ndarray,
        features: np.ndarray,
        spread: np.ndarray,
    ) -> None: ...
