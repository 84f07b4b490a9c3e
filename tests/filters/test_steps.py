"""``filter:NAME`` on the Step model: the same subset as ``make_subset``, counted, timed, recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmcurate.executor import LocalExecutor
from pmcurate.filters.rules import Rule
from pmcurate.filters.steps import FilterStep, SubsetConfig, SubsetStep
from pmcurate.step import Build, ConfigError, run_step
from tests.filters.conftest import read_drops, write_build
from tests.filters.test_same_outputs import CASES, digest

SMALL_LABELS = {"rules": ["min_words"], "dedup": ["exact", "near"], "upsample": {"mostly_clinical": 3}}


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build.open(write_build(tmp_path / "build"), progress=False)


def test_the_manifest_table_is_the_config() -> None:
    config = SubsetConfig.from_manifest("s", {"from": "paragraphs", **SMALL_LABELS, "near_threshold": 0.7})
    assert config.name == "s" and config.source == "paragraphs" and config.near_threshold == 0.7
    assert config.rules == ("min_words",) and config.upsample == ("mostly_clinical=3",)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"dedup": ["image"]}, "dedup: image do not apply to paragraphs"),
        ({"upsample": {"mostly_clinical": 0}}, "upsample.mostly_clinical: expected an integer factor"),
        ({"from": "tables"}, "one of 'paragraphs', 'figures'"),
        ({"rule": ["min_words"]}, "unknown key"),
        (
            {"rules": ["min_words", "edu_minimum"]},
            r"rules\[1\]: unknown rule 'edu_minimum'; known: min_words",
        ),
        ({"upsample": {"mostly_clinical=0.6": 3, "clinical": 2}}, r"upsample\[1\]: unknown rule 'clinical'"),
    ],
)
def test_a_bad_subset_table_names_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SubsetConfig.from_manifest("s", table, where="[subsets.s]")


def test_the_step_writes_the_subset_the_engine_recorded(build: Build) -> None:
    """The small-labels case of test_same_outputs, through ``run_step``: the same files, byte for byte."""
    recorded = json.loads(
        (Path(__file__).parents[1] / "data" / "filters" / "subset-digests.json").read_text()
    )
    assert CASES["small-labels"][1] == SMALL_LABELS
    pool = LocalExecutor(2)
    try:
        report = run_step(
            SubsetStep(SubsetConfig.from_manifest("small-labels", SMALL_LABELS), executor=pool), build
        )
    finally:
        pool.close()
    assert digest(build.path / "subsets" / "small-labels") == recorded["small-labels"]
    assert report.step == "filter:small-labels" and report.status == "ran"


def test_the_report_counts_what_the_subset_records(build: Build) -> None:
    report = run_step(SubsetStep(SubsetConfig.from_manifest("s", SMALL_LABELS)), build)
    summary = json.loads((build.path / "subsets" / "s" / "subset.json").read_text())
    counts = summary["counts"]
    assert report.counts == {"input": counts["input"], "kept": counts["kept"], "written": counts["output"]}
    assert report.drops == counts["dropped"] and sum(report.drops.values()) > 0
    assert [part.split()[0] for part in report.note.split(", ")] == [
        "partition",
        "rules",
        "dedup",
        "dedup",
        "write",
    ]


def test_an_unchanged_subset_is_not_made_again(build: Build) -> None:
    config = SubsetConfig.from_manifest("s", {"rules": ["min_words"]})
    assert run_step(SubsetStep(config), build).status == "ran"
    assert run_step(SubsetStep(config), build).status == "unchanged"
    other = SubsetConfig.from_manifest("s", {"rules": ["min_words=10"]})
    assert run_step(SubsetStep(other), build).status == "ran"


class ShortParagraphs(FilterStep):
    """A filter that only decides: the base class counts and records its drops."""

    def rules(self) -> list[Rule]:
        return [Rule("short", "n_words < 50", "'long paragraph: ' || n_words || ' words'")]


def test_a_filter_gives_only_its_decisions_and_the_base_records_the_drops(build: Build) -> None:
    report = run_step(ShortParagraphs(SubsetConfig(name="short")), build)
    drops = read_drops(build.path, "short")
    assert (
        report.drops == {"short": drops.height}
        and drops.height == report.counts["input"] - report.counts["kept"]
    )
    assert set(drops["rule"]) == {"short"} and all(r.startswith("long paragraph: ") for r in drops["reason"])
