"""Exact and near-duplicate detection: planted duplicates are found, and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pmcurate.filters import dedup
from pmcurate.filters.subset import make_subset
from tests.filters.conftest import change_words, read_drops, words


def texts(n: int, length: int = 120) -> list[str]:
    return [words(length, seed) for seed in range(1000, 1000 + n)]


def test_exact_dedup_drops_the_normalized_copy_only(build: Path) -> None:
    make_subset(build, "s", dedup=["exact"])
    drops = read_drops(build, "s")
    assert drops.select("id", "rule", "cluster").rows() == [("PMC2/p3", "dup_exact", "PMC2/p1")]
    assert drops["reason"][0] == "exact duplicate of PMC2/p1"


def test_near_dedup_after_exact_drops_the_changed_copy_only(build: Path) -> None:
    make_subset(build, "s", dedup=["exact", "near"])
    drops = read_drops(build, "s")
    assert drops.select("id", "rule", "cluster").rows() == [
        ("PMC2/p3", "dup_exact", "PMC2/p1"),
        ("PMC2/p4", "dup_near", "PMC2/p1"),
    ]


def test_near_dedup_alone_also_catches_exact_copies(build: Path) -> None:
    make_subset(build, "s", dedup=["near"])
    assert dict(read_drops(build, "s").select("id", "cluster").rows()) == {
        "PMC2/p3": "PMC2/p1",
        "PMC2/p4": "PMC2/p1",
    }


def test_dedup_runs_on_rows_the_rules_kept(build: Path) -> None:
    make_subset(build, "s", where="paragraph_id <> 'PMC2/p1'", dedup=["exact", "near"])
    drops = dict(read_drops(build, "s").select("id", "cluster").rows())
    assert drops == {"PMC2/p1": None, "PMC2/p4": "PMC2/p3"}  # p3 now represents the cluster


def test_planted_near_duplicates_found_and_nothing_else() -> None:
    corpus = texts(300)
    corpus[250] = change_words(corpus[10], (3, 50, 100))
    corpus[251] = change_words(corpus[20], (7, 60))
    found = dedup.near_duplicates([corpus[:128], corpus[128:]])
    assert dict(zip(found.rows.tolist(), found.representatives.tolist(), strict=True)) == {250: 10, 251: 20}


def test_dissimilar_pairs_below_threshold_are_not_duplicates() -> None:
    base = words(100, 1)
    half = " ".join(base.split()[:50] + words(50, 2).split())
    found = dedup.near_duplicates([[base, half]], dedup.NearDupConfig(threshold=0.8))
    assert len(found.rows) == 0


def test_a_lower_threshold_catches_more_distant_copies() -> None:
    base = words(100, 1)
    distant = change_words(base, tuple(range(0, 100, 10)))  # 10 of 100 words changed: Jaccard ~0.5
    strict = dedup.near_duplicates([[base, distant]], dedup.NearDupConfig(threshold=0.9))
    loose = dedup.near_duplicates([[base, distant]], dedup.NearDupConfig(threshold=0.4))
    assert len(strict.rows) == 0 and loose.rows.tolist() == [1]


def test_result_does_not_depend_on_batch_boundaries() -> None:
    corpus = texts(60)
    corpus[50] = change_words(corpus[5], (9,))
    one = dedup.near_duplicates([corpus])
    many = dedup.near_duplicates([corpus[i : i + 7] for i in range(0, 60, 7)])
    assert one.rows.tolist() == many.rows.tolist() == [50]


def test_empty_texts_are_not_duplicates_of_each_other() -> None:
    found = dedup.near_duplicates([["", None, "", "short text"]])
    assert len(found.rows) == 0


def test_bands_for_the_default_threshold_favour_recall() -> None:
    assert dedup.lsh_bands(0.8, 128) == (16, 8)
    assert dedup.expected_recall(0.8, dedup.NearDupConfig()) > 0.9


def test_components_join_chains_under_their_smallest_node() -> None:
    labels = dedup.components(6, np.array([[1, 2], [2, 4], [3, 5]]))
    assert labels.tolist() == [0, 1, 1, 3, 1, 3]


def test_large_buckets_are_chained_not_squared() -> None:
    members = np.arange(200)
    pairs = dedup.candidate_pairs(np.zeros(200, dtype=np.uint64))
    assert len(pairs) < 2 * len(members)
    assert dedup.components(200, pairs).tolist() == [0] * 200


def test_exact_key_ignores_case_spacing_and_punctuation() -> None:
    keys = dedup.exact_keys(["A  b, c.", "a b c", " A B C ", "a b d", "Ünïcode Straße", "ünïcode straße!"])
    pairs = list(zip(keys["k1"].to_pylist(), keys["k2"].to_pylist(), strict=True))
    assert pairs[0] == pairs[1] == pairs[2] and pairs[3] != pairs[0]
    assert pairs[4] == pairs[5]


def test_texts_without_letters_have_no_exact_key() -> None:
    assert dedup.exact_keys(["", None, " -- ", "ok"])["k1"].null_count == 3


def test_normalized_text_turns_each_run_of_other_characters_into_one_space() -> None:
    texts: list[str | None] = ["İstanbul ΣΑΣ", "x\u00a0\u00a0y", "a\t \tb", " lead, ", "1,000.5"]
    texts += ["a\u0307b", "__a__", "ǅ ǈ", None]
    one_pass = pl.Series(texts, dtype=pl.String).str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ")
    assert dedup.normalized_text(texts).to_list() == one_pass.str.strip_chars().to_list()


def test_a_repeated_text_gets_the_key_of_its_first_copy() -> None:
    keys = dedup.exact_keys(["a b", "c", "a b", None, "c", "a, b"])
    assert keys["k1"].to_pylist()[2] == keys["k1"].to_pylist()[0] == keys["k1"].to_pylist()[5]
    assert keys["k2"].to_pylist()[4] == keys["k2"].to_pylist()[1] and keys["k1"].to_pylist()[3] is None
