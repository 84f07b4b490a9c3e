"""Kill ``harvest eutils`` against the local E-utilities server (with 15% of requests failing:
5xx, 429, resets, truncated bodies) anywhere, resume, compare with an uninterrupted harvest.

The server runs in the test process, the harvest in child processes that are SIGKILLed in the
middle of shard writes (the K-th file, ``inject/sitecustomize.py``) and with an answer in flight
(when the N-th answer's body starts to be read). ``RELIABILITY_NETWORK_KILLS`` sets the number of
kill points (default 5).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.builds import KEYS, build_rows, cli_command, cli_env, duplicate_keys, table_rows
from tests.reliability.killer import ChainReport, KillPoint, kill_chain
from tests.servers.corpus import EutilsApp, corpus
from tests.servers.faulty import FaultyServer

KILLS = int(os.environ.get("RELIABILITY_NETWORK_KILLS", "5"))
ARTICLES = 24
READ_BODY = "pmcurate.harvest.fetch:Fetcher._read_body"
POINTS = (
    KillPoint(file=3),
    KillPoint(call=READ_BODY, nth=3),
    KillPoint(file=6),
    KillPoint(call=READ_BODY, nth=5),
    KillPoint(file=9),
)


def describe(build: Path) -> str:
    return f"{len(list((build / 'tables' / 'articles').glob('*.parquet')))} shards complete"


@pytest.fixture(scope="module")
def server() -> Iterator[FaultyServer]:
    app = EutilsApp(corpus(ARTICLES))
    with FaultyServer(
        app, fault_rate=0.15, faults=("500", "503", "429", "reset", "truncated_gzip")
    ) as server:
        yield server


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    box = tmp_path_factory.mktemp("kill-network")
    (box / "ids.txt").write_text("\n".join(corpus(ARTICLES)))
    return box


def harvest(box: Path, server: FaultyServer, build: str) -> list[str]:
    return cli_command(
        "harvest", "eutils", "--ids", str(box / "ids.txt"), "--out", str(box / build),
        "--base-url", f"{server.url}{EutilsApp.PREFIX}", "--email", "a@b.org",
        "--batch-size", "2", "--retries", "10", "--timeout", "2",
    )  # fmt: skip


def env() -> dict[str, str]:
    return cli_env(NCBI_API_KEY="fake-key-for-10-requests-per-second")


@pytest.fixture(scope="module")
def chains(box: Path, server: FaultyServer) -> ChainReport:
    kill_chain(harvest(box, server, "reference"), box, env(), [], box / "reference", describe)
    points = [*POINTS, *(KillPoint(file=2 + i % 5) for i in range(max(0, KILLS - len(POINTS))))][:KILLS]
    return kill_chain(harvest(box, server, "killed"), box, env(), points, box / "killed", describe)


def test_the_harvest_is_killed_several_times(chains: ChainReport) -> None:
    assert chains.kills >= min(KILLS, 3), chains.landed


def test_readers_never_see_a_temporary_file_or_a_corrupt_shard(chains: ChainReport) -> None:
    assert chains.problems == []


def test_resumed_harvest_has_every_article_once(chains: ChainReport, box: Path) -> None:
    assert len(table_rows(box / "killed", "articles")) == ARTICLES
    assert set(duplicate_keys(box / "killed").values()) == {0}


def test_resumed_harvest_has_the_rows_of_the_uninterrupted_one(chains: ChainReport, box: Path) -> None:
    killed, reference = build_rows(box / "killed"), build_rows(box / "reference")
    assert {t: killed[t] for t in KEYS} == {t: reference[t] for t in KEYS}


def test_temporary_files_of_killed_writes_are_swept_by_the_next_run(chains: ChainReport) -> None:
    assert chains.orphan_temporary_files == []
