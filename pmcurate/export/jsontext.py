"""JSON text as ``json.dumps(value, indent=2, ensure_ascii=False)`` writes it, made from text written
already instead of encoding ``value`` again.

A config's provenance holds the build's whole ``provenance.json`` (megabytes: an entry per input
file), and the standard library's indenting encoder is pure Python (~35 ms for 2.3 MB, at the end of
an export), while the build wrote that text already (``provenance.write_provenance``:
``json.dumps(value, indent=2)``). JSON text has line breaks only between tokens, so that text
indented one level deeper is a replace of each line break, and with its ``\\uXXXX`` escapes of
characters that are not ASCII decoded it is what ``ensure_ascii=False`` writes
(``tests/export/test_jsontext.py`` checks both on real provenance files).
"""

from __future__ import annotations

import json
import re
from typing import Any

INDENT = "  "
_INDENTATION = re.compile(r"\n *")
_ESCAPES = re.compile(r"\\u(?!00[01])[0-9a-f]{4}(?:\\u(?!00[01])[0-9a-f]{4})*")  # a literal first: fast
"""A run of ``\\uXXXX`` escapes of characters from U+0020 on: those ``ensure_ascii=False`` writes as
they are (it keeps ``\\u0000``-``\\u001f`` escaped), a surrogate pair decoded with its run."""


def written_as_indented(text: str, value: Any) -> bool:
    """Whether ``text`` is ``json.dumps(value, indent=2)`` (``ensure_ascii``), as far as the C
    encoder tells it quickly: the same tokens, escapes, numbers and separators, broken into lines
    indented by two spaces a level from the first. (A text broken or indented otherwise deeper down
    passes: only a hand-made file would be.)"""
    if "\n" not in text:  # a value that is no container of items
        return not (isinstance(value, dict | list) and value) and text == json.dumps(value)
    return (
        text.startswith(("{\n" + INDENT, "[\n" + INDENT))
        and text[4:5] != " "
        and _INDENTATION.sub("", text) == json.dumps(value, separators=(",", ": "))
    )


def decode_non_ascii(text: str) -> str:
    """``text`` (JSON written with ``ensure_ascii``) with the ``\\uXXXX`` escapes decoded that
    ``ensure_ascii=False`` does not write."""
    if "\\u" not in text:
        return text

    def decoded(escapes: re.Match[str]) -> str:
        found, before = escapes[0], escapes.start()
        while before and text[before - 1] == "\\":
            before -= 1
        if (escapes.start() - before) % 2:  # its first backslash is escaped: text, not an escape
            return found[:6] + _decoded_run(found[6:])
        return _decoded_run(found)

    return _ESCAPES.sub(decoded, text)


def _decoded_run(escapes: str) -> str:
    return json.loads(f'"{escapes}"') if escapes else ""


def indented(text: str, levels: int) -> str:
    """JSON ``text`` as it is written ``levels`` levels deep in an indented document."""
    return text.replace("\n", "\n" + INDENT * levels)


def dumps_indented(value: Any, written: str | None) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)``: from ``written``, the text
    ``json.dumps(value, indent=2)`` gave (a final line break allowed), when it is that text."""
    if written is not None:
        text = written.removesuffix("\n")
        if written_as_indented(text, value):
            return decode_non_ascii(text)
    return json.dumps(value, indent=2, ensure_ascii=False)
