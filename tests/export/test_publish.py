"""Publishing to a local Hub that speaks the upload protocol (tests/servers/hub_server.py).

``huggingface_hub`` uploads through Xet storage when ``hf_xet`` is installed; the local Hub speaks
the LFS protocol, so these tests turn Xet off (``HF_HUB_DISABLE_XET``) — the commit, pre-upload
and tree endpoints are the same either way. Publishing to the real Hub is not exercised here.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from pmcurate.export.exporter import export
from pmcurate.export.publish import HubUnreachable, PublishError, publish
from pmcurate.export.steps import ExportConfig
from tests.servers.hub_server import HubState, running_hub

WRITE, READ = "hf_write_secret_token", "hf_read_secret_token"
REPO = "alice/pmc-paragraphs"


@pytest.fixture(autouse=True)
def lfs_only_and_no_ambient_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hub() -> Iterator[tuple[str, HubState]]:
    with running_hub({WRITE: ("alice", "write"), READ: ("alice", "read")}) as served:
        yield served


@pytest.fixture(scope="module")
def exported_once(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("publish") / "pmc-paragraphs"
    export(build, ExportConfig(out=out, preset="biomed-enriched", shard_size=40_000), progress=False)
    return out


@pytest.fixture
def exported(exported_once: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "pmc-paragraphs"
    shutil.copytree(exported_once, folder)
    return folder


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def uploads(state: HubState) -> Counter[str]:
    """How many times each LFS object was received whole."""
    return Counter(r.path for r in state.requests("PUT", "/lfs/") if r.status == 200)


def test_publish_uploads_every_file_byte_for_byte(hub: tuple[str, HubState], exported: Path) -> None:
    url, state = hub
    result = publish(exported, REPO, token=WRITE, endpoint=url, batch_files=4, progress=False)
    files = local_files(exported)
    assert len(files) > 10
    assert state.files(REPO) == sorted(files)
    assert all(state.file_bytes(REPO, path) == data for path, data in files.items())
    assert len(result.commits) == len(state.repos[REPO].commits) > 2
    assert (
        state.repos[REPO]
        .commits[-1]["summary"]
        .endswith(f"(part {len(result.commits)} of {len(result.commits)})")
    )


def test_card_is_committed_last_with_the_repo_id(hub: tuple[str, HubState], exported: Path) -> None:
    url, state = hub
    publish(exported, REPO, token=WRITE, endpoint=url, batch_files=4, progress=False)
    assert f"hf://datasets/{REPO}/data/*.parquet" in state.file_bytes(REPO, "README.md").decode()
    *earlier, last = state.repos[REPO].commits
    assert "README.md" in last["paths"] and "provenance/default.json" in last["paths"]
    assert not [c for c in earlier if "README.md" in c["paths"]]


def test_republishing_unchanged_files_sends_nothing(hub: tuple[str, HubState], exported: Path) -> None:
    url, state = hub
    publish(exported, REPO, token=WRITE, endpoint=url, progress=False)
    before = len(state.log), len(state.repos[REPO].commits)
    again = publish(exported, REPO, token=WRITE, endpoint=url, progress=False)
    new_requests = state.log[before[0] :]
    assert again.count("unchanged") == len(local_files(exported)) and again.commits == []
    assert len(state.repos[REPO].commits) == before[1]
    assert not [
        r for r in new_requests if r.method == "PUT" or "/commit/" in r.path or "/preupload/" in r.path
    ]


def test_failed_commit_resumes_without_resending_committed_files(
    hub: tuple[str, HubState], exported: Path
) -> None:
    url, state = hub
    state.fail("/commit/", 500, after=1)
    with pytest.raises(HubUnreachable, match="run the same command to resume"):
        publish(exported, REPO, token=WRITE, endpoint=url, batch_files=4, progress=False)
    committed = state.files(REPO)
    assert len(committed) == 4
    resumed = publish(exported, REPO, token=WRITE, endpoint=url, batch_files=4, progress=False)
    assert resumed.count("unchanged") == 4
    assert max(uploads(state).values()) == 1  # no object sent twice, committed or merely uploaded
    assert state.files(REPO) == sorted(local_files(exported))


def test_failed_lfs_upload_resumes_without_resending(hub: tuple[str, HubState], exported: Path) -> None:
    url, state = hub
    state.fail("PUT /lfs/", 403, after=6)
    with pytest.raises(PublishError):
        publish(exported, REPO, token=WRITE, endpoint=url, batch_files=4, progress=False)
    sent_before = sum(uploads(state).values())
    assert 0 < sent_before < len(local_files(exported))
    publish(exported, REPO, token=WRITE, endpoint=url, batch_files=4, progress=False)
    assert max(uploads(state).values()) == 1
    assert all(state.file_bytes(REPO, p) == data for p, data in local_files(exported).items())


def test_dry_run_lists_the_plan_and_changes_nothing(hub: tuple[str, HubState], exported: Path) -> None:
    url, state = hub
    result = publish(exported, REPO, token=WRITE, endpoint=url, dry_run=True, progress=False)
    assert result.dry_run and result.count("add") == len(local_files(exported))
    assert result.bytes_to_send == sum(len(d) for d in local_files(exported).values())
    assert state.repos == {}
    assert not state.requests("PUT") and not state.requests("POST", "/commit/")


def test_stale_shards_are_deleted_on_republish(
    hub: tuple[str, HubState], build: Path, exported: Path
) -> None:
    url, state = hub
    publish(exported, REPO, token=WRITE, endpoint=url, progress=False)
    export(build, ExportConfig(out=exported, preset="biomed-enriched", shard_size=10**9), progress=False)
    result = publish(exported, REPO, token=WRITE, endpoint=url, progress=False)
    assert result.count("delete") > 0
    assert state.files(REPO) == sorted(local_files(exported))


def test_missing_token_is_a_clear_error(hub: tuple[str, HubState], exported: Path) -> None:
    url, _ = hub
    with pytest.raises(PublishError, match="no Hugging Face token: set HF_TOKEN"):
        publish(exported, REPO, endpoint=url, progress=False)


def test_token_comes_from_hf_token(hub: tuple[str, HubState], exported: Path, monkeypatch) -> None:
    url, state = hub
    monkeypatch.setenv("HF_TOKEN", WRITE)
    publish(exported, REPO, endpoint=url, progress=False)
    assert REPO in state.repos


def test_read_only_token_is_refused_before_any_upload(hub: tuple[str, HubState], exported: Path) -> None:
    url, state = hub
    with pytest.raises(PublishError, match="read-only") as error:
        publish(exported, REPO, token=READ, endpoint=url, progress=False)
    assert READ not in str(error.value)
    assert state.repos == {} and not state.requests("POST", "/api/repos/create")


def test_no_write_access_to_the_namespace_is_explained(hub: tuple[str, HubState], exported: Path) -> None:
    url, _ = hub
    with pytest.raises(PublishError, match="no write access to bob/data") as error:
        publish(exported, "bob/data", token=WRITE, endpoint=url, progress=False)
    assert WRITE not in str(error.value)


def test_invalid_token_is_explained_without_echoing_it(hub: tuple[str, HubState], exported: Path) -> None:
    url, _ = hub
    with pytest.raises(PublishError, match="invalid or expired") as error:
        publish(exported, REPO, token="hf_not_a_real_token", endpoint=url, progress=False)
    assert "hf_not_a_real_token" not in str(error.value)


def test_revision_commits_to_a_new_branch(hub: tuple[str, HubState], exported: Path) -> None:
    url, state = hub
    publish(exported, REPO, token=WRITE, endpoint=url, revision="v2", private=True, progress=False)
    assert state.files(REPO, "v2") == sorted(local_files(exported))
    assert state.files(REPO, "main") == []
    assert state.repos[REPO].private


def test_not_an_export_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="not an export folder"):
        publish(tmp_path, REPO, token=WRITE, endpoint="http://127.0.0.1:9", progress=False)


def test_unreachable_hub_is_a_clear_error(exported: Path) -> None:
    with running_hub({}) as (url, _):
        pass  # the port is free again: nothing listens there
    with pytest.raises(HubUnreachable, match=f"cannot reach the Hub at {url}"):
        publish(exported, REPO, token=WRITE, endpoint=url, progress=False)
