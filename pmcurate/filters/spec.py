"""What a subset may ask for: its sources, dedup kinds and sizes, the upsample syntax, its error.

The words a ``SubsetConfig`` checks a manifest's ``[subsets.NAME]`` against, kept apart from the
engine (``subset.py``, ``engine.py``), which imports DuckDB and Polars: a build checks its whole
manifest before it starts, and one that stops after the harvest never needs them.
"""

from __future__ import annotations

from pmcurate.errors import Fatal

SOURCES = {"paragraphs": ("paragraph", "article"), "figures": ("figure",)}
"""The tables a subset filters, and the units its rules may keep or drop in each."""
DEDUP_KINDS = {"paragraphs": ("exact", "near"), "figures": ("image", "caption")}
SHARD_ROWS = 200_000
PARTITION_ROWS = 100_000
"""Rows of the build a range holds (about: ranges end at article boundaries). A task's memory
follows it: the texts of one range, or one bucket of keys, signatures or pairs."""


class SubsetError(Fatal):
    """A subset that cannot be made as asked: the message says why and what to do."""


def parse_upsample_spec(spec: str) -> tuple[str, int]:
    """``RULE=FACTOR`` (the rule may carry its own argument: ``mostly_clinical=0.6=10``)."""
    rule, sep, factor = spec.rpartition("=")
    if not sep or not rule:
        raise SubsetError(f"--upsample {spec!r}: expected RULE=FACTOR, e.g. mostly_clinical=10")
    try:
        return rule, int(factor)
    except ValueError:
        raise SubsetError(f"--upsample {spec!r}: factor {factor!r} is not an integer") from None
