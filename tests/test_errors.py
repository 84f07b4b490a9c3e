"""``pmcurate.errors``: every error class carries a policy, and the CLI's exit status follows it."""

from __future__ import annotations

import errno
import importlib
import inspect
import pickle
import pkgutil
import socket
from pathlib import Path

import pytest

import pmcurate
from pmcurate import cli, errors
from pmcurate.annotate import encoder, labels_file, llm, sample, student, vllm_backend
from pmcurate.build import NotABuild
from pmcurate.errors import Fatal, PmcurateError, Policy, Retry, SkipItem, UserError
from pmcurate.export import card, exporter, presets, publish, query, targets
from pmcurate.filters import rules, stats, subset
from pmcurate.harvest import HarvestInputError, archive, fetch, jats
from pmcurate.step import ConfigError

POLICIES = {
    UserError: Policy.FATAL,
    ConfigError: Policy.FATAL,
    NotABuild: Policy.FATAL,
    HarvestInputError: Policy.FATAL,
    labels_file.LabelsError: Policy.FATAL,
    llm.LlmError: Policy.FATAL,
    sample.SampleError: Policy.FATAL,
    student.StudentError: Policy.FATAL,
    encoder.CudaUnavailable: Policy.FATAL,
    vllm_backend.VllmMissing: Policy.FATAL,
    card.CardError: Policy.FATAL,
    exporter.ExportError: Policy.FATAL,
    presets.PresetError: Policy.FATAL,
    publish.PublishError: Policy.FATAL,
    query.QueryError: Policy.FATAL,
    targets.TargetError: Policy.FATAL,
    rules.RuleError: Policy.FATAL,
    stats.StatsError: Policy.FATAL,
    subset.SubsetError: Policy.FATAL,
    subset.MissingTableError: Policy.FATAL,
    jats.JatsError: Policy.SKIP_ITEM,
    archive.TooLarge: Policy.SKIP_ITEM,
    archive.NotAnImage: Policy.SKIP_ITEM,
    archive.DecompressionBomb: Policy.SKIP_ITEM,
    fetch.FetchError: Policy.SKIP_ITEM,
    llm.MalformedAnswer: Policy.SKIP_ITEM,
    fetch.HarvestInterrupted: Policy.RETRY,
    fetch.ServiceError: Policy.RETRY,
    publish.HubUnreachable: Policy.RETRY,
}


@pytest.mark.parametrize("cls", POLICIES, ids=lambda cls: cls.__name__)
def test_each_error_class_has_its_policy(cls: type[PmcurateError]) -> None:
    assert cls.policy is POLICIES[cls]
    assert sum(issubclass(cls, policy) for policy in (Fatal, SkipItem, Retry)) == 1


def test_an_error_with_its_own_arguments_survives_pickling() -> None:
    """What a worker process raises reaches the runner with its class, message and attributes."""
    exc = pickle.loads(pickle.dumps(fetch.FetchError("https://h/a.xml", "http_404", "HTTP 404")))
    assert type(exc) is fetch.FetchError and exc.policy is Policy.SKIP_ITEM
    assert (str(exc), exc.url, exc.reason) == (
        "https://h/a.xml: http_404 (HTTP 404)",
        "https://h/a.xml",
        "http_404",
    )


def _public_error_classes() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(pmcurate.__path__, "pmcurate."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found.append(value)
    return found


def test_every_public_error_class_of_pmcurate_subclasses_a_policy() -> None:
    classes = _public_error_classes()
    assert len(classes) >= len(POLICIES)
    ruled = (Fatal, SkipItem, Retry)
    unruled = [c.__qualname__ for c in classes if c is not PmcurateError and not issubclass(c, ruled)]
    assert unruled == []


def _raising(exc: BaseException):
    def handler(args: object) -> int:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (UserError("bad --flag"), 2),
        (jats.JatsError("a.xml: not JATS"), 2),
        (fetch.HarvestInterrupted("service down"), 1),
        (OSError(errno.ENOSPC, "No space left on device"), 1),
    ],
    ids=["fatal", "skip-item", "retry", "disk-full"],
)
def test_the_cli_exit_status_follows_the_policy(
    exc: BaseException, status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_demo", _raising(exc))
    assert cli.main(["demo"]) == status
    err = capsys.readouterr().err
    assert err.startswith("pmcurate: error: ") and err.count("\n") == 1


def test_a_retry_error_tells_how_to_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_demo", _raising(fetch.HarvestInterrupted("the service\nwent away")))
    assert cli.main(["demo"]) == 1
    assert capsys.readouterr().err == (f"pmcurate: error: the service went away; {errors.RESUME}\n")


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_demo", _raising(KeyError("oops")))
    with pytest.raises(KeyError):
        cli.main(["demo"])


def test_a_fatal_error_is_exit_2_through_a_real_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["query", str(tmp_path), "SELECT 1"]) == 2
    assert (
        capsys.readouterr().err == f"pmcurate: error: {tmp_path}: not a pmcurate build (no tables/ folder)\n"
    )


def test_no_api_key_in_the_message_of_a_failed_harvest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/entrez/eutils"
    monkeypatch.setenv("NCBI_API_KEY", "ncbi-secret-key-0123")
    argv = ["harvest", "eutils", "--query", "malaria", "--out", str(tmp_path), "--base-url", closed]
    assert cli.main([*argv, "--retries", "0", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "ncbi-secret-key-0123" not in err and "api_key" in err


def test_no_api_key_in_a_fetch_error() -> None:
    exc = fetch.FetchError("https://h/efetch.fcgi?db=pmc&api_key=ncbi-secret-key-0123", "http_400", "bad")
    assert "ncbi-secret-key-0123" not in str(exc) and "api_key" in str(exc)
