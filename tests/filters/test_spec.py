"""The subset vocabulary a manifest is checked against, without the engine's DuckDB and Polars."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pmcurate.filters.spec import SubsetError, parse_upsample_spec


def test_upsample_spec_parses_rule_arguments() -> None:
    assert parse_upsample_spec("mostly_clinical=0.6=10") == ("mostly_clinical=0.6", 10)
    with pytest.raises(SubsetError, match="RULE=FACTOR"):
        parse_upsample_spec("mostly_clinical")


def test_a_subset_config_is_checked_without_duckdb_or_polars() -> None:
    code = (
        "import sys\n"
        "from pmcurate.filters.steps import SubsetConfig\n"
        "SubsetConfig.from_manifest('s', {'rules': ['min_words=48'], 'dedup': ['exact', 'near']})\n"
        "print(sorted({'duckdb', 'polars'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"
