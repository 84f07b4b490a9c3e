"""The harvest steps through the one runner (``step.run_step``) and the source registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from pmcurate.harvest import source, steps
from pmcurate.harvest.local import LocalSource
from pmcurate.step import Build, ConfigError, StepFailed, run_step, sha256_file

JATS_DIR = Path(__file__).parents[1] / "data" / "jats"
FIXTURE_ARTICLES = 15


def read(build: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(build / "tables" / table / "*.parquet")


def harvest_step(paths: list[Path], build: Path, **config: int | str) -> tuple[Build, steps.LocalHarvest]:
    return Build.open(build, progress=False), steps.LocalHarvest(
        steps.LocalConfig(paths=tuple(paths), **config)  # type: ignore[arg-type]
    )


def test_local_step_with_every_task_done_is_unchanged(tmp_path: Path) -> None:
    run_step(*reversed(harvest_step([JATS_DIR], tmp_path / "build")))
    build, step = harvest_step([JATS_DIR], tmp_path / "build")
    report = run_step(step, build)
    assert (report.status, report.counts["tasks run"]) == ("unchanged", 0)


def test_local_step_gives_the_build_the_hash_of_each_file_it_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, step = harvest_step([JATS_DIR], tmp_path / "build")
    run_step(step, build)
    path = JATS_DIR / "mds526.nxml"
    expected = sha256_file(path)
    monkeypatch.setattr("pmcurate.step.sha256_file", lambda path: pytest.fail(f"{path} hashed again"))
    assert build.hashes.digest(path) == expected


def test_shards_of_a_removed_input_are_pruned_from_every_table(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(JATS_DIR, inputs)
    run_step(*reversed(harvest_step([inputs], tmp_path / "build", batch_size=4)))
    (inputs / "mds526.nxml").unlink()
    build, step = harvest_step([inputs], tmp_path / "build", batch_size=4)
    report = run_step(step, build)
    assert report.counts["stale shards removed"] > 0
    assert "PMC3574550" not in read(tmp_path / "build", "articles")["article_id"].to_list()
    assert read(tmp_path / "build", "articles").height == FIXTURE_ARTICLES - 1


def test_plan_says_what_would_run_and_writes_nothing(tmp_path: Path) -> None:
    build = Build.open(tmp_path / "build", progress=False, plan=True)
    step = steps.LocalHarvest(steps.LocalConfig(paths=(JATS_DIR,), batch_size=4))
    run_step(step, build)
    assert build.plan is not None
    [planned] = build.plan
    assert (planned.action, planned.reason.split(" (")[0]) == ("run", "3 of 3 tasks")  # 12 files, 4 a task
    assert not (tmp_path / "build").exists()


def test_no_input_files_stops_the_step_naming_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    build, step = harvest_step([tmp_path / "empty"], tmp_path / "build")
    with pytest.raises(StepFailed, match=r"^harvest:local: no input files"):
        run_step(step, build)


def test_every_kind_resolves_to_its_registered_source() -> None:
    assert source.get("local") is LocalSource
    assert [source.get(kind).kind for kind in source.kinds()] == ["local", "pmc", "europepmc", "eutils"]


def test_an_unknown_source_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="one of local, pmc, europepmc, eutils"):
        source.get("arxiv")


def test_a_rejection_becomes_a_quarantine_row_without_the_api_key() -> None:
    rejection = source.Rejection(
        "eutils", "https://x/efetch.fcgi?api_key=SECRET&id=1", "fetch", "http_404", "x?api_key=SECRET: 404"
    )
    row = rejection.record()
    assert "SECRET" not in str(row)
    assert (row["stage"], row["reason"], row["article_id"]) == ("fetch", "http_404", None)


def test_a_network_config_fetches_with_the_fetch_defaults() -> None:
    from pmcurate.harvest.fetch import FetchConfig

    assert steps.EuropePmcConfig(query="q").fetch_config() == FetchConfig()


def test_the_pmc_bucket_is_harvested_faster_than_the_services_politeness_defaults(tmp_path: Path) -> None:
    from pmcurate.harvest.fetch import FetchConfig

    fetch, polite = steps.PmcConfig(all=True).harvest_options(tmp_path).fetch, FetchConfig()
    assert (fetch.concurrency, fetch.rate) == (steps.BUCKET_CONCURRENCY, steps.BUCKET_RATE)
    assert fetch.concurrency > polite.concurrency and fetch.rate > polite.rate


def test_a_rate_and_concurrency_given_for_the_pmc_bucket_win(tmp_path: Path) -> None:
    fetch = steps.PmcConfig(all=True, concurrency=4, rate=20.0).harvest_options(tmp_path).fetch
    assert (fetch.concurrency, fetch.rate) == (4, 20.0)


def test_eutils_without_a_rate_fetches_at_the_ceiling_it_is_given() -> None:
    assert steps.EutilsConfig(query="q").fetch_config(3.0).rate == 3.0
    assert steps.EutilsConfig(query="q", rate=1.0).fetch_config(3.0).rate == 1.0


@pytest.mark.parametrize("selection", [{}, {"all": True, "ids": Path("ids.txt")}])
def test_a_pmc_source_needs_exactly_one_selection(selection: dict) -> None:
    with pytest.raises(ConfigError, match=r"^give exactly one of ids, since, all \(got"):
        steps.PmcConfig(**selection)


def test_an_empty_id_file_stops_the_network_step_naming_it(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("# none\n")
    step = steps.NetworkHarvest(steps.PmcConfig(ids=tmp_path / "ids.txt", base_url="http://127.0.0.1:9"), 1)
    with pytest.raises(StepFailed, match=r"^harvest:pmc#1: no PMCIDs in .*ids.txt$"):
        run_step(step, Build.open(tmp_path / "build", progress=False))


def test_local_sources_are_one_step_and_each_network_source_its_own() -> None:
    local = [steps.LocalConfig(paths=(Path("a"),)), steps.LocalConfig(paths=(Path("b"),))]
    found = steps.harvest_steps([local[0], steps.EuropePmcConfig(query="q"), local[1]])
    assert [step.name for step in found] == ["harvest:local", "harvest:europepmc#2"]
    assert found[0].config.paths == (Path("a"), Path("b"))
