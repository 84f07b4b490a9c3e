"""What ``finish`` writes of the build into a config's provenance (``exporter.BuildFacts``)."""

from __future__ import annotations

from pmcurate.export.exporter import BuildFacts


def test_the_builds_facts_take_their_places_in_the_config_provenance() -> None:
    info = {
        "config": "default",
        "source": {"build": "b", "build_provenance": None, "annotators": None, "student": None, "inputs": {}},
    }
    provenance = {"tool": {"name": "pmcurate"}, "steps": []}
    filled = BuildFacts(provenance, ["bench", "gpt"], {"agreement": 0.9}).into(info)
    assert filled["source"] == {
        "build": "b",
        "build_provenance": provenance,
        "annotators": ["bench", "gpt"],
        "student": {"agreement": 0.9},
        "inputs": {},
    }
    assert list(filled["source"]) == list(info["source"])  # the keys keep their order in the file


def test_a_build_without_provenance_gives_null() -> None:
    filled = BuildFacts(None, [], None).into({"source": {"build_provenance": None}})
    assert filled["source"]["build_provenance"] is None
