"""Filter steps: ``filter:NAME`` makes subset NAME of a build, on the Step model (``step.py``).

``FilterStep`` is the base class, in the spirit of datatrove's ``BaseFilter``: a filter says only
what it decides, as rules (``Rule``: a keep condition and the reason a dropped row records); the
base class does the rest. It runs the rules, and the deduplication and upsampling of its config,
through the bounded-memory engine (``engine.py``: partitions of ``partition_rows`` rows as tasks
on the build's executor, local processes or Ray), counts the rows in, kept and written and the rows
each rule dropped, times each phase, and records every dropped row with its rule and reason
(``BUILD/subsets/NAME/drops/``).

``SubsetStep`` is the filter a manifest's ``[subsets.NAME]`` table or ``pmcurate filter``
describes (``SubsetConfig``). The subset engine runs as one piece in the driver (``finish``):
its phases are themselves maps over partitions, which it hands to the step's executor.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmcurate.executor import Executor
from pmcurate.filters.rules import UNITS, Rule, RuleError, parse_rule, where_rule
from pmcurate.filters.spec import (
    DEDUP_KINDS,
    PARTITION_ROWS,
    SHARD_ROWS,
    SOURCES,
    SubsetError,
    parse_upsample_spec,
)
from pmcurate.step import Build, ConfigError, Step, StepConfig, StepReport, option

READS = ("articles", "paragraphs", "figures", "labels")
"""Every table a subset may read: a change to any of them makes the subset again."""


@dataclass(frozen=True)
class SubsetConfig(StepConfig):
    """One subset: a manifest's ``[subsets.NAME]`` table (keys as the fields, ``from`` for
    ``source``, ``upsample`` a table of RULE = FACTOR) or ``pmcurate filter``'s options."""

    name: str = option(help="subset name: BUILD/subsets/NAME", manifest=False, cli="")
    rules: tuple[str, ...] = option(
        (),
        "filter rules in order, NAME or NAME=ARG (repeatable; docs/filters.md)",
        cli="--rule",
        metavar="SPEC",
    )
    where: str | None = option(
        None, "one more condition, DuckDB SQL over the row view, applied last", metavar="SQL"
    )
    source: str = option("paragraphs", "rows to filter", choices=tuple(SOURCES), cli="--from")
    unit: str | None = option(None, "what rules keep or drop (default: the source's row)", choices=UNITS)
    dedup: tuple[str, ...] = option(
        (),
        "deduplication kinds, in order: exact, near (paragraphs); image, caption (figures); repeatable "
        "or comma-separated",
        metavar="KIND",
    )
    near_threshold: float = option(0.8, "near dedup: MinHash Jaccard threshold")
    num_perm: int = option(128, "near dedup: MinHash permutations")
    upsample: tuple[str, ...] = option(
        (),
        "write kept rows matching RULE FACTOR times (repeatable), e.g. mostly_clinical=10",
        metavar="RULE=FACTOR",
    )
    shard_rows: int = option(SHARD_ROWS, "rows per output shard", cli="", manifest=False)
    partition_rows: int = option(PARTITION_ROWS, "rows per partition (bounds memory)", cli="", manifest=False)

    def __post_init__(self) -> None:
        """Every rule and upsampling spec parses, every dedup kind applies to the source; dedup kinds
        may be given comma-separated (``exact,near``)."""
        object.__setattr__(
            self, "dedup", tuple(k.strip() for spec in self.dedup for k in spec.split(",") if k.strip())
        )
        unknown = [d for d in self.dedup if d not in DEDUP_KINDS[self.source]]
        if unknown:
            known = ", ".join(DEDUP_KINDS[self.source])
            raise ConfigError(f"dedup: {', '.join(unknown)} do not apply to {self.source} (known: {known})")
        for key, specs in (("rules", self.rules), ("upsample", self.upsample)):
            for index, spec in enumerate(specs):
                try:
                    parse_rule(parse_upsample_spec(spec)[0] if key == "upsample" else spec)
                except (RuleError, SubsetError) as exc:
                    raise ConfigError(f"{key}[{index}]: {exc}") from None

    @classmethod
    def from_manifest(cls, name: str, table: Mapping[str, Any], *, where: str = "") -> SubsetConfig:
        """The config of ``[subsets.NAME]``: ``from`` is ``source``, ``upsample`` a table."""
        values = {("source" if key == "from" else key): value for key, value in table.items()}
        upsample = values.get("upsample", {})
        if not isinstance(upsample, Mapping):
            raise ConfigError(f"{where or 'subset'} upsample: expected a table of RULE = FACTOR")
        for rule, factor in upsample.items():
            if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
                raise ConfigError(f"{where or 'subset'} upsample.{rule}: expected an integer factor ≥ 1")
        if upsample:
            values["upsample"] = [f"{rule}={factor}" for rule, factor in upsample.items()]
        return cls.from_table(values, where=where, name=name)


class FilterStep(Step[SubsetConfig, Any]):
    """Base of the filter steps: a subclass gives its decisions (``rules``); this class runs them,
    counts, times and records what they dropped. Its one piece of work is in ``finish``, on
    ``executor`` (this process when None)."""

    reads = READS

    def __init__(self, config: SubsetConfig, *, executor: Executor | None = None) -> None:
        super().__init__(config, name=f"filter:{config.name}")
        self.executor = executor
        self.writes = (f"subsets/{config.name}",)

    def rules(self) -> list[Rule]:
        """What the filter decides, in order: each rule keeps a row or drops it with its reason."""
        raise NotImplementedError

    def upsample(self) -> list[tuple[Rule, int]]:
        """Kept rows to write more than once (rule, factor); none by default."""
        return []

    def outputs(self, build: Build) -> list[Path]:
        return [build.path / "subsets" / self.config.name / "subset.json"]

    def finish(self, build: Build, counts: list[dict[str, int]]) -> StepReport:
        from pmcurate.filters import dedup
        from pmcurate.filters.subset import make_subset

        config = self.config
        result = make_subset(
            build.path,
            config.name,
            rules=self.rules(),
            source=config.source,
            unit=config.unit,
            dedup=config.dedup,
            near=dedup.NearDupConfig(threshold=config.near_threshold, num_perm=config.num_perm),
            upsample=self.upsample(),
            shard_rows=config.shard_rows,
            partition_rows=config.partition_rows,
            executor=self.executor,
            progress=build.progress,
        )
        self.result = result
        return StepReport(
            self.name,
            "ran",
            counts={"input": result.input_rows, "kept": result.kept_rows, "written": result.output_rows},
            drops=dict(result.dropped),
            note=", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in result.seconds.items()),
        )


class SubsetStep(FilterStep):
    """``filter:NAME``: the rules, ``where``, dedup and upsampling of a ``SubsetConfig``."""

    def rules(self) -> list[Rule]:
        rules = [parse_rule(spec) for spec in self.config.rules]
        return rules + ([where_rule(self.config.where)] if self.config.where else [])

    def upsample(self) -> list[tuple[Rule, int]]:
        pairs = [parse_upsample_spec(spec) for spec in self.config.upsample]
        return [(parse_rule(rule), factor) for rule, factor in pairs]


def manifest_subsets(
    manifest: str | os.PathLike[str], names: Sequence[str] | None = None
) -> list[SubsetConfig]:
    """The configs of a TOML file's ``[subsets.*]`` tables (all, or those in ``names``)."""
    try:
        with open(manifest, "rb") as handle:
            tables = tomllib.load(handle).get("subsets", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SubsetError(f"{manifest}: {exc}") from None
    missing = [n for n in names or () if n not in tables]
    if missing or not tables:
        raise SubsetError(
            f"{manifest}: no [subsets.{(missing or ['NAME'])[0]}] table (has: {', '.join(tables) or 'none'})"
        )
    return [
        SubsetConfig.from_manifest(name, tables[name], where=f"{manifest}: [subsets.{name}]")
        for name in (names or list(tables))
    ]
