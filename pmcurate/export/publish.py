"""``pmcurate publish``: upload an export folder to a Hugging Face dataset repository.

The plan comes first: every file of the folder is compared with the file at the same path in the
repository (the sha256 of LFS files, the git blob id of small files, both from the repository's
tree listing), so unchanged files are never sent, and shards the repository holds but the folder
no longer has (a split that now has fewer shards) are deleted — otherwise ``data/train-*`` would
still match them. ``--dry-run`` prints that plan and stops.

The changed files are committed in batches (``batch_files`` files or ``batch_bytes`` bytes each,
data first, the dataset card last so the card never describes files that are not there yet) with
``HfApi.create_commit``: each batch's large files go to LFS storage (or Xet storage when
``hf_xet`` is installed and the Hub offers it) before the commit that references them. A run that
dies midway leaves whole commits behind; running it again re-plans against the repository, so the
committed files are skipped, and content uploaded but not yet committed is found in storage by
the Hub and not sent again.

The token comes from ``HF_TOKEN`` or the local login (``hf auth login``); it is passed to
``huggingface_hub`` and never printed or logged.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from pmcurate.errors import Fatal, PmcurateError, Retry, one_line
from pmcurate.export.exporter import PROVENANCE_DIR, SHARD_FILE

log = logging.getLogger(__name__)

DEFAULT_BATCH_FILES = 50
DEFAULT_BATCH_BYTES = 10 * 2**30
CARD = "README.md"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")

Action = Literal["add", "update", "unchanged", "delete"]


class PublishError(Fatal):
    """Publishing cannot proceed: the message says why (never the token)."""


class HubUnreachable(Retry):
    """The Hub could not be reached: files already committed stay, the same command resumes."""


@dataclass(frozen=True)
class PlannedFile:
    path: str
    action: Action
    size: int
    local: Path | None = None


@dataclass
class PublishResult:
    repo_id: str
    revision: str
    url: str
    plan: list[PlannedFile]
    dry_run: bool
    commits: list[str] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for item in self.plan if item.action == action)

    @property
    def bytes_to_send(self) -> int:
        return sum(item.size for item in self.plan if item.action in ("add", "update"))


def git_blob_id(path: Path) -> str:
    """The git object id of a file's content (what the Hub reports for files not in LFS)."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def local_files(folder: Path) -> list[tuple[str, Path]]:
    """``(path in repo, local path)`` of every file to publish, sorted; hidden and temporary files skipped."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files.append((relative.as_posix(), path))
    return files


def resolve_token(token: str | None = None) -> str | None:
    """The token to use: given, else ``HF_TOKEN``, else the local login; None when there is none."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def plan(folder: Path, remote: dict[str, object]) -> list[PlannedFile]:
    """Compare the folder with the repository's files (``path → RepoFile``) and decide each file."""
    items = []
    present = set()
    for repo_path, local in local_files(folder):
        present.add(repo_path)
        size = local.stat().st_size
        entry = remote.get(repo_path)
        if entry is None:
            items.append(PlannedFile(repo_path, "add", size, local))
        elif _same(entry, local, size):
            items.append(PlannedFile(repo_path, "unchanged", size, local))
        else:
            items.append(PlannedFile(repo_path, "update", size, local))
    folders = {p.split("/")[0] for p in present if "/" in p}
    for repo_path, entry in sorted(remote.items()):
        top, _, name = repo_path.rpartition("/")
        stale_shard = top in folders and SHARD_FILE.match(name)
        stale_provenance = top == PROVENANCE_DIR and name.endswith(".json")
        if repo_path not in present and (stale_shard or stale_provenance):
            items.append(PlannedFile(repo_path, "delete", getattr(entry, "size", 0) or 0))
    return items


def _same(entry: object, local: Path, size: int) -> bool:
    if getattr(entry, "size", None) != size:
        return False
    lfs = getattr(entry, "lfs", None)
    if lfs is not None:
        return lfs.sha256 == file_sha256(local)
    return getattr(entry, "blob_id", None) == git_blob_id(local)


def batches(items: list[PlannedFile], max_files: int, max_bytes: int) -> Iterator[list[PlannedFile]]:
    """Changed files in commit batches: data first, then the card, provenance and deletions together."""
    changed = [i for i in items if i.action in ("add", "update")]
    last_names = (CARD,)
    data = [i for i in changed if i.path not in last_names and not i.path.startswith(f"{PROVENANCE_DIR}/")]
    final = [i for i in changed if i not in data] + [i for i in items if i.action == "delete"]
    batch: list[PlannedFile] = []
    size = 0
    for item in data:
        if batch and (len(batch) >= max_files or size + item.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch
    if final:
        yield final


def publish(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    dry_run: bool = False,
    batch_files: int = DEFAULT_BATCH_FILES,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    commit_message: str | None = None,
    progress: bool = True,
) -> PublishResult:
    """Upload the export ``folder`` to the dataset repository ``repo_id`` (see the module doc)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    _check_inputs(folder, repo_id)
    token = resolve_token(token)
    if token is None and not dry_run:
        raise PublishError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`")
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    from pmcurate.export.card import write_card

    write_card(folder, repo_id)  # the card's usage examples name the repository
    try:
        if token is not None:
            _check_write_access(api, repo_id)
        remote = _remote_files(api, repo_id, branch)
        items = plan(folder, remote)
        url = f"{api.endpoint}/datasets/{repo_id}"
        result = PublishResult(repo_id, branch, url, items, dry_run)
        if dry_run:
            return result
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        with _hub_progress_bars(progress):
            result.commits = _commit_batches(
                api, repo_id, revision, items, batch_files, batch_bytes, commit_message, progress
            )
        return result
    except (HfHubHTTPError, RuntimeError) as exc:
        raise _http_error(_http_cause(exc), repo_id) from None
    except _network_errors() as exc:
        raise HubUnreachable(
            f"cannot reach the Hub at {api.endpoint}: {one_line(exc)}; run the same command to resume"
        ) from None


@contextmanager
def _hub_progress_bars(enabled: bool) -> Iterator[None]:
    """``huggingface_hub``'s per-file bars, silenced when ``enabled`` is false, as they were after."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def _check_inputs(folder: Path, repo_id: str) -> None:
    if not REPO_ID.match(repo_id):
        raise PublishError(f"invalid repository id {repo_id!r}: expected ORG/NAME")
    if not any((folder / PROVENANCE_DIR).glob("*.json")):
        raise PublishError(
            f"{folder}: not an export folder (no {PROVENANCE_DIR}/): run `pmcurate export` first"
        )


def _check_write_access(api: object, repo_id: str) -> None:
    """Fail early, with a clear message, for an invalid token or one that cannot write."""
    info = api.whoami()  # type: ignore[attr-defined]
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PublishError(
            f"the Hugging Face token of {info.get('name')} is read-only: "
            f"{repo_id} needs a token with write access"
        )


def _remote_files(api: object, repo_id: str, branch: str) -> dict[str, object]:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    for rev in dict.fromkeys((branch, "main")):
        try:
            tree = api.list_repo_tree(repo_id, repo_type="dataset", revision=rev, recursive=True)  # type: ignore[attr-defined]
            return {entry.path: entry for entry in tree if hasattr(entry, "blob_id")}
        except RevisionNotFoundError:
            continue  # a new branch starts from main
        except RepositoryNotFoundError:
            return {}
    return {}


def _commit_batches(
    api: object,
    repo_id: str,
    revision: str | None,
    items: list[PlannedFile],
    batch_files: int,
    batch_bytes: int,
    message: str | None,
    progress: bool,
) -> list[str]:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    groups = list(batches(items, batch_files, batch_bytes))
    commits = []
    title = message or "Upload dataset with pmcurate"
    for index, group in enumerate(tqdm(groups, desc="publish", unit=" commits", disable=not progress)):
        operations = [
            CommitOperationDelete(path_in_repo=item.path)
            if item.action == "delete"
            else CommitOperationAdd(path_in_repo=item.path, path_or_fileobj=str(item.local))
            for item in group
        ]
        suffix = f" (part {index + 1} of {len(groups)})" if len(groups) > 1 else ""
        info = api.create_commit(  # type: ignore[attr-defined]
            repo_id, operations, commit_message=title + suffix, repo_type="dataset", revision=revision
        )
        log.info("committed %d file(s) to %s: %s", len(group), repo_id, info.oid)
        commits.append(info.oid)
    return commits


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection failures as raised by the HTTP client ``huggingface_hub`` uses (httpx2 or httpx)."""
    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _http_cause(exc: BaseException) -> BaseException:
    """The HTTP error behind ``exc`` (``huggingface_hub`` wraps failed uploads in RuntimeError)."""
    cause: BaseException | None = exc
    while cause is not None:
        if getattr(cause, "response", None) is not None:
            return cause
        cause = cause.__cause__ or cause.__context__
    return exc


def _http_error(exc: BaseException, repo_id: str) -> PmcurateError:
    """A refused token is fatal; a server error, throttling or no answer is the transport's (a rerun
    resumes); another refusal is fatal with the Hub's reason."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status == 401:
        return PublishError(
            "the Hugging Face token is invalid or expired: set a valid HF_TOKEN or run `hf auth login`"
        )
    if status == 403:
        return PublishError(
            f"the Hugging Face token has no write access to {repo_id} (use a write token; check the org)"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    failed = f"publishing to {repo_id} failed ({status or 'no response'}): {first}"
    if status is None or status == 429 or status >= 500:
        return HubUnreachable(f"{failed}; run the same command to resume")
    return PublishError(failed)
