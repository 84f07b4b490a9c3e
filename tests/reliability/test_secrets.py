"""Secrets never leave the environment: harvest (``NCBI_API_KEY``), annotate (the LLM key) and
publish (``HF_TOKEN``) run through the CLI against the local servers, with fake tokens set and
failures injected (5xx, 429, malformed answers, an invalid token) so that retries, warnings and
errors are logged too. Then no token may appear in anything the runs left: stdout, stderr, log
records at DEBUG level, exception messages, and every file under the build, the export and the
caches (Parquet shards decoded, other files as raw bytes).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants

from pmcurate import cli
from tests.servers.corpus import EutilsApp, corpus
from tests.servers.faulty import FaultyServer
from tests.servers.hub_server import running_hub
from tests.servers.openai_server import ServerState, openai_server

NCBI_KEY = "ncbi-FAKE-7d1c0a9e55"
LLM_KEY = "sk-FAKE-llm-3b9e21c4"
HF_TOKEN = "hf_FAKEwrite8c2d7e14"
BAD_HF_TOKEN = "hf_FAKEinvalid51a0b7"
TOKENS = (NCBI_KEY, LLM_KEY, HF_TOKEN, BAD_HF_TOKEN)


@dataclass
class Runs:
    root: Path
    statuses: dict[str, int] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    served_keys: dict[str, list[str]] = field(default_factory=dict)


class _Records(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record) + repr(record.args))


@contextlib.contextmanager
def captured(runs: Runs) -> Iterator[None]:
    handler = _Records(runs.output)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        runs.output += [out.getvalue(), err.getvalue()]


def run_cli(runs: Runs, name: str, *argv: str) -> None:
    with captured(runs):
        try:
            runs.statuses[name] = cli.main(["--verbose", *argv])
        except BaseException as exc:
            runs.errors.append(f"{type(exc).__name__}: {exc!r} {exc.__cause__!r} {exc.__context__!r}")
            runs.statuses[name] = -1


def stage_harvest(runs: Runs, build: Path) -> None:
    articles = corpus(4)
    ids = runs.root / "ids.txt"
    ids.write_text("\n".join(articles))
    with FaultyServer(EutilsApp(articles)) as server:
        server.script["/efetch.fcgi"] = ["500", "429"]
        base = f"{server.url}{EutilsApp.PREFIX}"
        args = ("harvest", "eutils", "--ids", str(ids), "--out", str(build), "--base-url", base)
        run_cli(runs, "harvest", *args, "--email", "a@b.org", "--batch-size", "2")
        runs.served_keys["ncbi"] = [
            k for s in server.served("/efetch.fcgi") for k in s.query.get("api_key", [])
        ]


def stage_annotate(runs: Runs, build: Path) -> None:
    run_cli(runs, "sample", "annotate", "sample", str(build), "--n", "6", "--min-tokens", "1")
    with openai_server(ServerState(failures=["500", "malformed", "429"])) as (url, state):
        args = ("annotate", "llm", str(build), "--endpoint", url, "--model", "m", "--max-retries", "3")
        run_cli(runs, "llm", *args, "--timeout", "2")
        runs.served_keys["llm"] = list(state.authorization)


def stage_publish(runs: Runs, build: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = runs.root / "out"
    run_cli(runs, "export", "export", str(build), "--out", str(out), "--no-progress")
    with running_hub({HF_TOKEN: ("alice", "write")}) as (endpoint, _):
        run_cli(runs, "publish", "publish", str(out), "--repo", "alice/secrets", "--endpoint", endpoint)
        monkeypatch.setenv("HF_TOKEN", BAD_HF_TOKEN)
        run_cli(
            runs, "publish-bad-token", "publish", str(out), "--repo", "alice/secrets", "--endpoint", endpoint
        )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    runs = Runs(tmp_path_factory.mktemp("secrets"))
    build = runs.root / "build"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("NCBI_API_KEY", NCBI_KEY)
        monkeypatch.setenv("PMCURATE_LLM_API_KEY", LLM_KEY)
        monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
        monkeypatch.setenv("HF_HOME", str(runs.root / "hf-home"))
        monkeypatch.setenv("PMCURATE_CACHE", str(runs.root / "cache"))
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(runs.root / "no-token"))
        stage_harvest(runs, build)
        stage_annotate(runs, build)
        stage_publish(runs, build, monkeypatch)
    return runs


def file_texts(root: Path) -> Iterator[tuple[Path, str]]:
    """Every file under ``root`` as text: Parquet decoded, anything else as raw bytes."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield path, data.decode("latin-1")
        if path.suffix == ".parquet":
            yield path, str(pq.read_table(path).to_pylist())


def test_every_stage_ran(runs: Runs) -> None:
    assert runs.statuses == {
        "harvest": 0,
        "sample": 0,
        "llm": 0,
        "export": 0,
        "publish": 0,
        "publish-bad-token": 2,
    }, runs.errors


def test_tokens_reached_the_servers(runs: Runs) -> None:
    assert set(runs.served_keys["ncbi"]) == {NCBI_KEY}
    assert set(runs.served_keys["llm"]) == {f"Bearer {LLM_KEY}"}


@pytest.mark.parametrize("token", TOKENS)
def test_token_is_in_no_output_log_or_exception(runs: Runs, token: str) -> None:
    assert [text for text in runs.output + runs.errors if token in text] == []


@pytest.mark.parametrize("token", TOKENS)
def test_token_is_in_no_file_of_the_build_export_or_caches(runs: Runs, token: str) -> None:
    assert [str(path) for path, text in file_texts(runs.root) if token in text] == []


def test_the_sweep_would_see_a_leaked_token(runs: Runs, tmp_path: Path) -> None:
    """The file check is not vacuous: a token inside a zstd Parquet shard is found."""
    from pmcurate import schema

    schema.write_shard(schema.to_table([{"source": HF_TOKEN}], schema.QUARANTINE), tmp_path / "t.parquet")
    assert [p for p, text in file_texts(tmp_path) if HF_TOKEN in text]
