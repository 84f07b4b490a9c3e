from __future__ import annotations

from pathlib import Path

import pytest

from pmcurate.annotate import sample


def test_sample_is_deterministic_for_a_seed(fixture_build: Path) -> None:
    first = sample.stratified_sample(fixture_build, 50, seed=3)
    again = sample.stratified_sample(fixture_build, 50, seed=3)
    other = sample.stratified_sample(fixture_build, 50, seed=4)
    assert first["paragraph_id"].to_list() == again["paragraph_id"].to_list()
    assert set(first["paragraph_id"]) != set(other["paragraph_id"])


def test_sample_skips_paragraphs_under_the_minimum_length(fixture_build: Path) -> None:
    frame = sample.stratified_sample(fixture_build, 10_000, min_tokens=64)
    assert frame.height > 0 and frame["n_tokens"].min() >= 64


def test_sample_spreads_over_article_and_section_types(fixture_build: Path) -> None:
    everything = sample.paragraphs_with_context(fixture_build).collect()
    chosen = sample.stratified_sample(fixture_build, 40, min_tokens=1)
    share = lambda f: (f["article_type"] == "case-report").mean()  # noqa: E731
    assert share(chosen) > 2 * share(everything)
    assert chosen["section_type"].n_unique() >= 6


def test_sample_of_an_empty_build_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(sample.SampleError, match="no paragraph shards"):
        sample.stratified_sample(tmp_path, 10)
