"""What ``finish`` writes of the build into a config's provenance (``exporter.BuildFacts``)."""

from __future__ import annotations

import json

from pmcurate.export.exporter import BuildFacts


def facts(provenance: object) -> BuildFacts:
    text = json.dumps(provenance, indent=2, ensure_ascii=False).replace("\n", "\n    ")
    return BuildFacts(provenance, text, ["bench", "gpt"], {"agreement": 0.9})


def info(subset_parameters: object = None) -> dict:
    source = {"build": "b", "subset_parameters": subset_parameters, "build_provenance": BuildFacts.PLACE}
    return {"config": "default", "source": {**source, "annotators": None, "student": None}}


def whole(provenance: object, subset_parameters: object = None) -> str:
    expected = info(subset_parameters)
    expected["source"].update(
        build_provenance=provenance, annotators=["bench", "gpt"], student={"agreement": 0.9}
    )
    return json.dumps(expected, indent=2, ensure_ascii=False) + "\n"


def test_the_build_provenance_is_spliced_in_as_json_would_nest_it() -> None:
    provenance = {"tool": {"name": "pmcurate", "packages": ["a", "é"]}, "steps": [], "empty": {}, "n": 1.5}
    assert facts(provenance).provenance_text(info()) == whole(provenance)


def test_a_build_without_provenance_gives_null() -> None:
    assert facts(None).provenance_text(info()) == whole(None)


def test_data_holding_the_place_name_is_rendered_whole() -> None:
    provenance = {"steps": [1, 2]}
    assert facts(provenance).provenance_text(info([BuildFacts.PLACE])) == whole(
        provenance, [BuildFacts.PLACE]
    )
