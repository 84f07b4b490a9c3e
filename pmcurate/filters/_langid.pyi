"""Types of the compiled language walk (``_langid.pyx``), for mypy and readers."""

import numpy as np

BUILT_FROM_SHA256: str
"""SHA-256 of the ``_langid.pyx`` this module was compiled from (``compiled.check_build``)."""
SIMD: bool
"""Whether this CPU sums with AVX2, F16C and FMA rather than the portable loop."""

def has_letter(text: str, limit: int) -> bool: ...
def feature_scores(
    texts: list[bytes],
    transitions: np.ndarray,
    start: int,
    ptc: np.ndarray,
    feature_bound: np.ndarray,
    scores: np.ndarray,
    bound: np.ndarray,
    features: np.ndarray,
    simd: bool = ...,
) -> None: ...
