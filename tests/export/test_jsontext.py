"""``jsontext``: the indented text of a value made from the text a build wrote of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pmcurate.export import jsontext
from pmcurate.pipeline import BuildResult

ODD_STRINGS = [
    "café → naïve — ≥ 3",
    "emoji 😀 and 𝔘 outside the BMP",
    'controls \x00 \x01 \x1f \x7f \x80 tab\t line\n quote" backslash\\',
    "a backslash before u: \\u00e9 is text, not an escape",
    "\\\\u00e9",
    "",
]


def with_odd_strings(provenance: dict[str, Any]) -> dict[str, Any]:
    """A build's provenance with strings of every kind ``ensure_ascii`` escapes, as keys and values."""
    extra = {text or "empty": [text, {text: 1.5e-07, "n": -0.0, "big": 10**20}] for text in ODD_STRINGS}
    return {**provenance, "odd": extra, "empty": {"list": [], "dict": {}}, "nested": [[1, [2, []], {}]]}


def as_the_build_writes_it(value: Any) -> str:
    """``provenance.write_provenance``'s text of ``value``."""
    return json.dumps(value, indent=2, default=str) + "\n"


def test_a_builds_provenance_gives_the_text_the_encoder_gives(
    built: tuple[Path, Path, BuildResult],
) -> None:
    _, build, _ = built
    written = (build / "provenance.json").read_text()
    value = json.loads(written)
    assert jsontext.written_as_indented(written.removesuffix("\n"), value)
    assert jsontext.dumps_indented(value, written) == json.dumps(value, indent=2, ensure_ascii=False)


def test_characters_that_are_not_ascii_are_written_as_they_are(built: tuple[Path, Path, BuildResult]) -> None:
    _, build, _ = built
    value = with_odd_strings(json.loads((build / "provenance.json").read_text()))
    written = as_the_build_writes_it(value)
    assert jsontext.written_as_indented(written.removesuffix("\n"), value)
    assert jsontext.dumps_indented(value, written) == json.dumps(value, indent=2, ensure_ascii=False)


@pytest.mark.parametrize(
    "write",
    [
        lambda value: json.dumps(value, indent=4),
        lambda value: json.dumps(value),
        lambda value: json.dumps(value, indent=2, ensure_ascii=False),
        lambda value: json.dumps(value, indent=2, sort_keys=True),
        lambda value: json.dumps(value, indent="\t"),
    ],
    ids=["indent-4", "one-line", "not-ascii", "sorted", "tabs"],
)
def test_a_text_written_otherwise_is_encoded_again(write: Any) -> None:
    value = with_odd_strings({"tool": {"name": "pmcurate"}, "inputs": [{"path": "a", "bytes": 1}]})
    assert not jsontext.written_as_indented(write(value), value)
    assert jsontext.dumps_indented(value, write(value)) == json.dumps(value, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("value", [None, 3, "é", [], {}, [1], {"a": []}])
def test_small_values_give_the_encoders_text(value: Any) -> None:
    written = as_the_build_writes_it(value)
    assert jsontext.dumps_indented(value, written) == json.dumps(value, indent=2, ensure_ascii=False)


def test_indented_text_is_that_of_a_value_levels_deep() -> None:
    value = {"a": [1, {"b": "é"}]}
    inner = json.dumps(value, indent=2, ensure_ascii=False)
    outer = json.dumps({"x": {"y": value}}, indent=2, ensure_ascii=False)
    assert f'"y": {jsontext.indented(inner, 2)}' in outer
