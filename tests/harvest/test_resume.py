"""A harvest killed part-way (a real subprocess, SIGKILL) resumes: same tables, nothing fetched twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pmcurate.harvest import europepmc
from tests.harvest.netutil import FAST, rows
from tests.servers.corpus import EuropePmcApp, corpus
from tests.servers.faulty import FaultyServer

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 2


def command(server: FaultyServer, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "pmcurate.cli", "harvest", "europepmc",
        "--query", "OPEN_ACCESS:Y", "--base-url", f"{server.url}{EuropePmcApp.PREFIX}", "--out", str(out),
        "--batch-size", "8", "--concurrency", str(CONCURRENCY), "--rate", "1000", "--retries", "2",
    ]  # fmt: skip


def tables(build: Path) -> dict[str, list[dict]]:
    return {
        "articles": rows(build, "articles", "* EXCLUDE (harvested_at)", "article_id"),
        "paragraphs": rows(build, "paragraphs", "*", "paragraph_id"),
        "figures": rows(build, "figures", "*", "figure_id"),
        "tables": rows(build, "tables", "*", "table_id"),
    }


def test_killed_harvest_resumes_to_the_same_tables_without_refetching(tmp_path: Path) -> None:
    articles = corpus(48)
    reference, build = tmp_path / "reference", tmp_path / "build"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with FaultyServer(EuropePmcApp(articles)) as server:
        base_url = f"{server.url}{EuropePmcApp.PREFIX}"
        europepmc.harvest(
            europepmc.EuropePmcOptions(out=reference, query="OPEN_ACCESS:Y", base_url=base_url, fetch=FAST)
        )
        server.hold_after(1 + 20)  # the search page and 20 full texts
        process = subprocess.Popen(command(server, build), cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        server.wait_for_held(CONCURRENCY)  # the run is stopped: every earlier request was answered
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        first_run = len(server.served())
        server.release()
        kept = {p.stem for p in (build / "raw/europepmc").glob("PMC*.xml")}
        assert 0 < len(kept) < len(articles)
        assert (
            not (build / "tables/articles").is_dir() or len(list((build / "tables/articles").iterdir())) < 6
        )

        resumed = subprocess.run(command(server, build), cwd=ROOT, env=env, capture_output=True, timeout=60)
        assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
        second_run = server.served()[first_run:]

    refetched = {s.path.split("/")[-2] for s in second_run if s.path.endswith("/fullTextXML")}
    assert not refetched & kept
    assert not [s for s in second_run if s.path.endswith("/search")]
    assert refetched == set(articles) - kept
    assert tables(build) == tables(reference)
    assert not list((build / "state").iterdir())
