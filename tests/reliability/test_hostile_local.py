"""``harvest local`` over the hostile corpus (``tests/data/hostile/cases.toml``) plus cases built at
test time, in a child process inside a sandbox: each case gets its expected outcome, and the run
as a whole writes nothing outside its build, reads no file or URL the input names, stays within
bounded memory and time, and harvests the good article beside the hostile ones exactly as alone.
"""

from __future__ import annotations

import shutil
import threading
import tomllib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from pmcurate.harvest import jats
from tests.reliability import hostile
from tests.reliability.sandbox import ChildRun, run_child, snapshot

CASES: list[dict[str, Any]] = tomllib.loads((hostile.HOSTILE_DIR / "cases.toml").read_text())["case"]
CONTROL = Path(__file__).parents[1] / "data" / "jats" / "PMC5828200.nxml"
CAP = 64 * 2**20
"""The member cap of the run: the 2 GB gzip is cut here."""
MAX_RSS_MB = 450
MAX_CPU_SECONDS = 30
"""CPU time of the whole run (the 2 GB gzip is cut at ``CAP``, so the work is bounded)."""
SECRET = "PMCURATE-SECRET-7f3c1e"
DTD_TOKEN = "PMCURATE-DTD-TOKEN-91ab"


@dataclass
class HostileRun:
    box: Path
    before: dict[str, str]
    after: dict[str, str]
    child: ChildRun
    requests: list[str]
    generated: list[dict[str, Any]]

    @property
    def build(self) -> Path:
        return self.box / "build"

    def table(self, name: str) -> pl.DataFrame:
        return pl.read_parquet(self.build / "tables" / name / "*.parquet")


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = b'<!ENTITY leak "NETWORK-LEAK">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def generated_cases(inputs: Path, box: Path, port: int) -> list[dict[str, Any]]:
    """Write the test-time cases into ``inputs``; return their expected outcomes."""
    (box / "secret.txt").write_text(SECRET)
    (box / "evil.dtd").write_text(
        f'<!ENTITY leak SYSTEM "{(box / "secret.txt").as_uri()}"><!ENTITY token "{DTD_TOKEN}">'
    )
    hostile.gzip_bomb(inputs / "gzip-bomb.xml.gz")
    (inputs / "xxe-marker.xml").write_bytes(hostile.xxe((box / "secret.txt").as_uri()))
    (inputs / "xxe-live.xml").write_bytes(hostile.xxe(f"http://127.0.0.1:{port}/xxe"))
    dtd_marker = hostile.external_dtd((box / "evil.dtd").as_uri(), "900109")
    (inputs / "dtd-marker.xml").write_bytes(dtd_marker.replace(b"control paragraph.", b"&token; &leak;"))
    (inputs / "dtd-live.xml").write_bytes(hostile.external_dtd(f"http://127.0.0.1:{port}/evil.dtd", "900110"))
    return [
        {"file": "gzip-bomb.xml.gz", "outcome": "quarantined", "reason": "too_large", "error": "cap"},
        {
            "file": "xxe-marker.xml",
            "outcome": "quarantined",
            "reason": "parse_error",
            "error": "declares entities",
        },
        {
            "file": "xxe-live.xml",
            "outcome": "quarantined",
            "reason": "parse_error",
            "error": "declares entities",
        },
        {"file": "dtd-marker.xml", "outcome": "quarantined", "reason": "parse_error", "error": "not defined"},
        {"file": "dtd-live.xml", "outcome": "harvested", "article_id": "PMC900110"},
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    box = tmp_path_factory.mktemp("hostile-box")
    inputs = box / "in"
    shutil.copytree(hostile.HOSTILE_DIR, inputs, ignore=shutil.ignore_patterns("*.toml"))
    (inputs / "control").mkdir()
    shutil.copy(CONTROL, inputs / "control" / CONTROL.name)
    _Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        generated = generated_cases(inputs, box, server.server_address[1])
        (box / "cwd").mkdir()
        before = snapshot(box)
        child = run_child(
            "from pathlib import Path\n"
            "from pmcurate.harvest.local import harvest_local\n"
            f"print(harvest_local([Path({str(inputs)!r})], Path({str(box / 'build')!r}), workers=1,"
            f" progress=False, max_member_bytes={CAP}))\n",
            box / "cwd",
        )
    finally:
        server.shutdown()
        server.server_close()
    return HostileRun(box, before, snapshot(box), child, list(_Recorder.requests), generated)


def case_id(case: dict[str, Any]) -> str:
    return f"{case['file']}:{case['member']}" if "member" in case else case["file"]


def check_case(run: HostileRun, case: dict[str, Any]) -> None:
    source = str(run.box / "in" / case["file"])
    if case["outcome"] == "harvested":
        articles = run.table("articles").filter(pl.col("article_id") == case["article_id"])
        assert articles.height == 1, f"{case['article_id']} not harvested"
        assert articles["source_uri"][0].endswith(
            case["file"] + (f"#{case['member']}" if "member" in case else "")
        )
        return
    quarantine = run.table("quarantine").filter(
        (pl.col("source") == source) & (pl.col("member").eq_missing(case.get("member")))
    )
    assert quarantine.height == 1, f"expected one quarantine row for {case_id(case)}, got {quarantine.height}"
    record = quarantine.row(0, named=True)
    assert record["reason"] == case["reason"]
    assert case["error"] in record["error"]
    assert case["file"] in record["error"], "the error names the file"


def test_child_run_succeeds(run: HostileRun) -> None:
    assert run.child.rc == 0, run.child.stderr[-3000:]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_committed_case_has_its_expected_outcome(run: HostileRun, case: dict[str, Any]) -> None:
    check_case(run, case)


def test_cases_built_at_test_time_have_their_expected_outcomes(run: HostileRun) -> None:
    for case in run.generated:
        check_case(run, case)


def test_every_committed_file_has_a_case() -> None:
    files = {p.name for p in hostile.HOSTILE_DIR.iterdir() if p.name != "cases.toml"}
    assert files == {case["file"] for case in CASES}


def test_every_input_problem_is_expected(run: HostileRun) -> None:
    expected = {(c["file"], c.get("member")) for c in CASES + run.generated if c["outcome"] == "quarantined"}
    found = {(Path(s).name, m) for s, m in run.table("quarantine").select("source", "member").iter_rows()}
    assert found == expected


def test_nothing_is_written_outside_the_build(run: HostileRun) -> None:
    changed = {name for name, state in run.after.items() if run.before.get(name) != state}
    removed = set(run.before) - set(run.after)
    assert not removed
    assert changed and all(name == "build" or name.startswith("build/") for name in changed)
    assert not Path("/tmp/pmcurate-hostile-absolute.nxml").exists()


def test_no_file_or_url_named_by_the_input_is_read(run: HostileRun) -> None:
    assert run.requests == []
    everything = (
        " ".join(str(pq.read_table(path).to_pylist()) for path in run.build.rglob("*.parquet"))
        + run.child.stdout
        + run.child.stderr
    )
    for marker in (SECRET, DTD_TOKEN, "NETWORK-LEAK", "root:x:0:0"):
        assert marker not in everything


def test_memory_and_time_stay_bounded(run: HostileRun) -> None:
    assert run.child.maxrss_mb < MAX_RSS_MB
    assert run.child.cpu_seconds < MAX_CPU_SECONDS


def test_control_article_is_harvested_exactly_as_alone(run: HostileRun) -> None:
    alone = jats.parse(CONTROL.read_bytes())[0]
    article_id = alone.article["article_id"]
    rows = run.table("paragraphs").filter(pl.col("article_id") == article_id).sort("ordinal")
    assert rows.select("paragraph_id", "text").rows() == [
        (p["paragraph_id"], p["text"]) for p in alone.paragraphs
    ]


def test_sane_image_beside_the_bombs_is_attached(run: HostileRun) -> None:
    figures = run.table("figures").filter(pl.col("article_id") == "PMC900104").sort("figure_id")
    assert figures.select("width", "height").rows() == [(None, None), (None, None), (4, 3)]
