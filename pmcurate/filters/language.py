"""Language identification with ``py3langid``, whose model ships inside the package.

Nothing is downloaded at run time (the model is ``py3langid/data/model.npz.xz``), so the rule works
offline and gives the same answer on every machine. About 3,000 paragraphs a second on one core:
the ``language`` rule reads only the first ``MAX_CHARS`` characters of a text, which is plenty to
tell a language and keeps long paragraphs cheap.
"""

from __future__ import annotations

from functools import lru_cache

import pyarrow as pa

MAX_CHARS = 1000
UNDETERMINED = "und"
"""The answer for a text without letters to judge (empty, numbers only)."""


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(text: str | None) -> str:
    """ISO 639-1 code of the text's language (``und`` when the text has no letters)."""
    if not text or not any(c.isalpha() for c in text[:MAX_CHARS]):
        return UNDETERMINED
    language, _ = _identifier().classify(text[:MAX_CHARS])
    return language


def detect_arrow(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``detect`` over an Arrow string array: the vectorized form DuckDB calls as a SQL function."""
    return pa.array([detect(t) for t in texts.to_pylist()], type=pa.string())


def register(connection) -> None:
    """Make ``detect_language(text)`` available to SQL run on ``connection``."""
    from duckdb.sqltypes import VARCHAR

    connection.create_function(
        "detect_language", detect_arrow, [VARCHAR], VARCHAR, type="arrow", side_effects=False
    )
