"""One meaning of the quarantine table's columns for every source (``schema.QUARANTINE``)."""

from __future__ import annotations

import re
from pathlib import Path

from pmcurate.harvest import eutils
from pmcurate.harvest.fetch import FetchConfig
from pmcurate.harvest.local import harvest_local
from tests.harvest.netutil import rows
from tests.servers.corpus import EutilsApp, corpus
from tests.servers.faulty import FaultyServer

STAGES = {"read", "select", "fetch", "media", "parse"}


def test_local_and_network_rows_say_the_same_things_in_the_same_columns(tmp_path: Path) -> None:
    broken = tmp_path / "in" / "broken.xml"
    broken.parent.mkdir()
    broken.write_bytes(b"<article><p>unclosed")
    harvest_local([broken.parent], tmp_path / "build", workers=1, progress=False)
    articles = corpus(1)
    with FaultyServer(EutilsApp(articles)) as server:
        options = eutils.EutilsOptions(
            out=tmp_path / "build",
            ids=(*articles, "PMC1"),
            base_url=f"{server.url}{EutilsApp.PREFIX}",
            fetch=FetchConfig(rate=3.0, retries=2, backoff=0.01, timeout=0.3),
        )
        eutils.harvest(options)
    by_source = {q["source"]: q for q in rows(tmp_path / "build", "quarantine")}
    local, network = by_source[str(broken)], by_source["eutils"]
    assert (local["stage"], local["reason"]) == ("parse", "parse_error")
    assert (network["stage"], network["reason"], network["article_id"]) == ("fetch", "not_returned", "PMC1")
    for row in (local, network):
        assert row["stage"] in STAGES and re.fullmatch(r"[a-z0-9_]+", row["reason"])
    assert "broken.xml" in local["error"] and "PMC1" in network["error"]
