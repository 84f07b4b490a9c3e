"""``language``: the paragraph's language, computed by the language filter's identifier (py3langid).

A computed label: no teacher, no student. It is written into the labels table when the build is
labelled (``annotate apply``), so subsets, exports, ``pmcurate stats`` and the dataset card show it,
and a filter rule reads it (``label=language:en``) instead of identifying the text again.
"""

import pyarrow as pa

from pmcurate.filters import language
from pmcurate.labels import LabelSpec, register


def paragraph_language(paragraphs: pa.Table) -> pa.Array:
    """ISO 639-1 code of each paragraph's text (``und`` for a text without letters)."""
    return language.detect_arrow(paragraphs.column("text"))


SPEC = register(
    LabelSpec(
        name="language",
        kind="code",
        title="Paragraph languages",
        description="ISO 639-1 code of the paragraph's own language (py3langid over its first "
        f"{language.MAX_CHARS} characters; `{language.UNDETERMINED}` without letters), which may "
        "differ from the article's declared language",
        compute=paragraph_language,
        reads=("text",),
    )
)
