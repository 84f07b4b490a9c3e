"""What the dataset card counts in a config's rows: value distributions, words, licenses per split.

An export gathers them from the Arrow batches as it writes them (``CardStats.observe``), so the card
of a config just exported needs no pass over its shards; the card counts any other config of the
folder in its shards with DuckDB (``card.shard_stats``). Both give full counts (every value, a
histogram of ``n_words``), and the card ranks and sums them the same way whichever made them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pmcurate import labels, schema

DISTRIBUTIONS: tuple[tuple[str, str, str, bool], ...] = (
    ("license", "License", '"license"', False),
    ("license_type", "License", '"license_type"', False),
    *(
        (flat, spec.title, spec.distribution_sql(flat), spec.kind == "score")
        for spec in labels.specs()
        for flat in [schema.LABEL_COLUMNS[spec.name]]
    ),
    ("section_type", "Section type", '"section_type"', False),
    ("format", "Image format", '"format"', False),
)
"""Column, title, the SQL of the value a row counts under, and whether that is the column rounded
(a score: ``LabelSpec.distribution_sql``) rather than the column itself."""

LICENSE_COLUMNS = ("license", "license_type")
"""The license column the card counts per split: the first of these a config has."""

UNKNOWN_LICENSE = "(unknown)"


@dataclass
class CardStats:
    """Rows per value of each distribution column, per ``n_words``, per (split, license)."""

    values: dict[str, Counter[str | None]] = field(default_factory=dict)
    words: Counter[int] = field(default_factory=Counter)
    licenses: Counter[tuple[str, str]] = field(default_factory=Counter)

    def observe(self, split: str, batch: pa.RecordBatch | pa.Table) -> None:
        """Count the rows of ``batch``, all of split ``split``."""
        names = set(batch.schema.names)
        counted: dict[str, dict[Any, int]] = {}
        for column, _, _, rounded in DISTRIBUTIONS:
            if column in names:
                counted[column] = _value_counts(batch.column(column), rounded=rounded)
                self.values.setdefault(column, Counter()).update(counted[column])
        if "n_words" in names:
            self.words.update(_value_counts(batch.column("n_words").drop_null()))
        license = next((c for c in LICENSE_COLUMNS if c in names), None)
        if license is not None:  # a distribution column too: counted above
            found = counted.get(license) or _value_counts(batch.column(license))
            for value, n in found.items():
                self.licenses[(split, UNKNOWN_LICENSE if value is None else value)] += n

    def update(self, other: CardStats) -> None:
        """Add the counts of ``other`` (another task's splits)."""
        for column, counts in other.values.items():
            self.values.setdefault(column, Counter()).update(counts)
        self.words.update(other.words)
        self.licenses.update(other.licenses)

    def to_json(self) -> dict[str, Any]:
        return {
            "values": {column: list(counts.items()) for column, counts in self.values.items()},
            "words": list(self.words.items()),
            "licenses": [[split, license, n] for (split, license), n in self.licenses.items()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CardStats:
        return cls(
            {column: Counter(dict((v, n) for v, n in pairs)) for column, pairs in data["values"].items()},
            Counter(dict((w, n) for w, n in data["words"])),
            Counter({(split, license): n for split, license, n in data["licenses"]}),
        )

    def top(self, column: str, limit: int = 12) -> list[tuple[str | None, int]]:
        """The ``limit`` most frequent values (then by value, nulls last) with their rows."""
        counts = self.values.get(column, Counter())
        return sorted(counts.items(), key=lambda vn: (-vn[1], vn[0] is None, vn[0] or ""))[:limit]

    def word_summary(self) -> tuple[int | None, float | None, float | None]:
        """``sum``, ``avg`` and ``median`` of ``n_words`` as DuckDB gives them (None without words):
        the median interpolates between the middle two (``quantile_cont``)."""
        rows = sum(self.words.values())
        if not rows:
            return None, None, None
        total = sum(w * n for w, n in self.words.items())
        low, high = _nth(self.words, (rows - 1) // 2), _nth(self.words, rows // 2)
        return total, total / rows, (low + high) / 2

    def license_rows(self) -> list[tuple[str, str, int]]:
        """(split, license, rows) by split, then rows (most first), then license."""
        items = sorted(self.licenses.items(), key=lambda item: (item[0][0], -item[1], item[0][1]))
        return [(split, license, n) for (split, license), n in items]


def _value_counts(values: pa.Array | pa.ChunkedArray, *, rounded: bool = False) -> dict[Any, int]:
    """The rows of each value (``None``: nulls); ``rounded``: of each value rounded as DuckDB's
    ``round(x)::INTEGER::VARCHAR`` (halves away from zero), counted as integers and named after."""
    if rounded:
        values = pc.round(values, round_mode="half_towards_infinity").cast(pa.int64())
    counts = pc.value_counts(values)
    found = counts.field("values").to_pylist()
    if rounded:
        found = [None if value is None else str(value) for value in found]
    return dict(zip(found, counts.field("counts").to_pylist(), strict=True))


def _nth(histogram: Counter[int], index: int) -> int:
    """The value at ``index`` (0-based) of the sorted values a histogram counts."""
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if index < seen:
            return value
    raise IndexError(index)
