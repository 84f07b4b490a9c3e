"""The subset vocabulary a manifest is checked against."""

from __future__ import annotations

import pytest

from pmcurate.filters.spec import SubsetError, parse_upsample_spec


def test_upsample_spec_parses_rule_arguments() -> None:
    assert parse_upsample_spec("mostly_clinical=0.6=10") == ("mostly_clinical=0.6", 10)
    with pytest.raises(SubsetError, match="RULE=FACTOR"):
        parse_upsample_spec("mostly_clinical")
