"""`pmcurate filter` and `pmcurate stats` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmcurate import cli
from tests.filters.conftest import read_drops, read_subset


def test_filter_writes_the_subset_and_reports_counts(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["filter", str(build), "--subset", "c", "--rule", "min_words", "--dedup", "exact,near"]
    assert cli.main([*argv, "--upsample", "mostly_clinical=2", "--where", "pub_year >= 2020"]) == 0
    out = capsys.readouterr().out
    assert "10 rows in, 6 kept, 9 written" in out and "dropped by dup_exact: 1" in out
    assert read_subset(build, "c").height == 9
    assert set(read_drops(build, "c")["rule"]) == {"min_words", "where", "dup_exact", "dup_near"}


def test_filter_figures_needs_a_figures_table(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["filter", str(build), "--subset", "f", "--from", "figures"]) == 2
    assert "needs the figures table" in capsys.readouterr().err


def test_filter_label_rule_without_labels_exits_2(
    build_without_labels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["filter", str(build_without_labels), "--subset", "c", "--rule", "clinical_case"]) == 2
    assert "pmcurate annotate apply" in capsys.readouterr().err


def test_filter_requires_a_subset_name(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["filter", str(build)]) == 2
    assert "--subset NAME" in capsys.readouterr().err


def test_filter_manifest_makes_every_subset(build: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "subsets.toml"
    manifest.write_text(
        '[subsets.clinical]\nrules = ["clinical_case", "license=commercial"]\n\n'
        '[subsets.mixed]\nrules = ["min_words"]\ndedup = ["exact"]\nupsample = { mostly_clinical = 3 }\n'
    )
    assert cli.main(["filter", str(build), "--manifest", str(manifest)]) == 0
    assert set(read_subset(build, "clinical")["paragraph_id"]) == {"PMC1/p1", "PMC1/p2", "PMC1/p3"}
    assert read_subset(build, "mixed").height == 3 * 3 + 5


def test_filter_manifest_rejects_unknown_keys(
    build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "subsets.toml"
    manifest.write_text('[subsets.x]\nrule = ["min_words"]\n')
    assert cli.main(["filter", str(build), "--manifest", str(manifest)]) == 2
    assert "[subsets.x]: unknown key(s) 'rule'" in capsys.readouterr().err


def test_stats_prints_tables_and_writes_html(build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stats", str(build), "--html", str(build / "s.html")]) == 0
    out = capsys.readouterr().out
    assert "Document types (paragraphs)" in out and f"HTML report: {build / 's.html'}" in out
    assert "<svg" in (build / "s.html").read_text()


def test_filter_where_that_is_not_a_condition_is_one_line(
    build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["filter", str(build), "--subset", "w", "--where", "text"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmcurate: error: where: (text) is a VARCHAR value, not a condition")
    assert err.count("\n") == 1
    assert not (build / "subsets" / "w").exists()


def test_filter_on_a_folder_that_is_not_a_build_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["filter", str(tmp_path), "--subset", "c", "--rule", "min_words"]) == 2
    assert "not a pmcurate build" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a b", ".hidden", "a/b", "sub$"])
def test_filter_refuses_a_subset_name_outside_the_allowed_characters(
    build: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["filter", str(build), "--subset", name, "--rule", "min_words"]) == 2
    assert f"bad subset name {name!r}: letters, digits" in capsys.readouterr().err


def test_filter_on_two_worker_processes_writes_the_files_of_one(build: Path) -> None:
    argv = ["filter", str(build), "--subset", "w", "--rule", "min_words", "--dedup", "exact,near"]
    assert cli.main([*argv, "--workers", "1"]) == 0
    folder = build / "subsets" / "w"
    one = {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    assert cli.main([*argv, "--workers", "2", "--executor", "local"]) == 0
    assert {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} == one
