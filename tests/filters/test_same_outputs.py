"""The partitioned subset engine writes what the single-process one wrote, file for file.

``tests/data/filters/subset-digests.json`` holds, for every case below, a digest of every file the
subset folder held when made by pmcurate at commit 21945a8 (one DuckDB process, dedup over the whole
build in memory): the rows of each Parquet shard (their values, in order) and ``subset.json``.
It was recorded once from that code; do not regenerate it unless a subset's output is meant to change.
Changed once since, meant: the ``language`` label added the column ``labels_language`` to paragraph
subsets (null in these builds, whose labels tables are written without it); the shards with that
column dropped still gave the digests of 21945a8, checked before they were recorded again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pmcurate.filters.dedup import NearDupConfig
from pmcurate.filters.subset import make_subset
from tests.filters.conftest import write_build
from tests.filters.scale_build import write_scale_build

DIGESTS = Path(__file__).parents[1] / "data" / "filters" / "subset-digests.json"

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "scale-exact-near": ("scale", {"rules": ["min_words=10"], "dedup": ["exact", "near"], "shard_rows": 100}),
    "scale-near-then-exact": ("scale", {"dedup": ["near", "exact"], "shard_rows": 150}),
    "scale-near-0.7": ("scale", {"dedup": ["near"], "near": NearDupConfig(threshold=0.7, num_perm=64)}),
    "scale-rules-where-upsample": (
        "scale",
        {
            "rules": ["boilerplate", "edu_min=2", "not_retracted"],
            "where": "pub_year >= 2012 OR article_paragraphs > 40",
            "dedup": ["exact"],
            "upsample": {"mostly_clinical=0.2": 3, "domain=biomedical": 2},
            "shard_rows": 70,
        },
    ),
    "scale-articles": ("scale", {"unit": "article", "rules": ["has_clinical_case=8", "license=commercial"]}),
    "scale-figures": (
        "scale",
        {"source": "figures", "rules": ["license=CC BY,CC0"], "dedup": ["image", "caption"], "shard_rows": 9},
    ),
    "scale-language": ("scale", {"rules": ["language=en"]}),
    "small-labels": (
        "small",
        {"rules": ["min_words"], "dedup": ["exact", "near"], "upsample": {"mostly_clinical": 3}},
    ),
    "small-no-labels": ("small-no-labels", {"rules": ["min_words"], "dedup": ["exact", "near"]}),
}


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def digest(folder: Path) -> dict[str, str]:
    """File name → sha256 of its rows (Parquet) or of its bytes (``subset.json``)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            data = json.dumps(
                {"schema": str(table.schema.remove_metadata()), "rows": _canonical(table.to_pylist())},
                sort_keys=True,
                default=str,
            ).encode()
        else:
            data = path.read_bytes()
        found[str(path.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return found


def make_case(root: Path, case: str, **options: Any) -> dict[str, str]:
    """Make the case's subset in a fresh build under ``root``; the digest of its folder."""
    kind, kwargs = CASES[case]
    build = root / kind
    if not build.exists():
        if kind == "scale":
            write_scale_build(build)
        else:
            write_build(build, labels=kind == "small")
    result = make_subset(build, case, **kwargs, **options)
    return digest(result.path)


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, str]]:
    return json.loads(DIGESTS.read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_subset_has_the_rows_of_the_single_process_engine(
    case: str, recorded: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.getbasetemp() / "same-outputs"
    assert make_case(root, case) == recorded[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_many_small_partitions_write_the_same_rows(
    case: str, recorded: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # ranges of ~60 rows: articles, label buckets, key buckets and pairs spread over many tasks
    root = tmp_path_factory.getbasetemp() / "same-outputs-partitioned"
    assert make_case(root, case, partition_rows=60) == recorded[case]
