"""The exporter's provenance file: the build's provenance pasted in, as json would render it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pmcurate.export.exporter import _indented_json, provenance_json

BUILD = {
    "tool": {"name": "pmcurate", "note": '8–34 s, \U0001f600, \x7f, a \\u2013 that is text, \x01 "quoted"'},
    "inputs": [{"path": f"corpus/{i}.xml", "sha256": "ab" * 32, "size": i * 1.5e-05} for i in range(3)],
    "empty": [[], {}],
    "nothing": None,
}


def info(build: Any) -> dict[str, Any]:
    return {"config": "default", "source": {"build": "b", "build_provenance": build, "inputs": {}}, "x": []}


@pytest.mark.parametrize("build", [BUILD, {}, [], "text", None])
def test_provenance_json_is_json_dumps_of_a_build_written_provenance(build: Any) -> None:
    text = json.dumps(build, indent=2) + "\n"  # as pmcurate.provenance writes it
    assert provenance_json(info(build), text) == json.dumps(info(build), indent=2, ensure_ascii=False)


def test_provenance_json_pastes_a_build_written_provenance() -> None:
    assert _indented_json(json.dumps(BUILD, indent=2) + "\n", BUILD) is not None


@pytest.mark.parametrize("text", [json.dumps(BUILD, indent=4), json.dumps(BUILD), '{"other": 1}'])
def test_provenance_json_encodes_any_other_rendering(text: str) -> None:
    assert _indented_json(text, BUILD) is None
    assert provenance_json(info(BUILD), text) == json.dumps(info(BUILD), indent=2, ensure_ascii=False)
