"""A local Hugging Face Hub that speaks the upload protocol the way ``huggingface_hub`` uses it.

Routes (dataset repos; models and spaces are not needed by pmcurate):

- ``GET  /api/whoami-v2``: the token's user and role (``read`` or ``write``), 401 for an unknown token;
- ``POST /api/repos/create``: create a repo (409 when it exists, 403 for a read token);
- ``POST /api/datasets/{repo}/branch/{branch}``: create a branch from ``main``;
- ``GET  /api/datasets/{repo}/revision/{rev}``: repo info (``sha``, ``siblings``);
- ``GET  /api/datasets/{repo}/tree/{rev}[/{path}]``: files with git ``oid``, size and ``lfs`` info;
- ``POST /api/datasets/{repo}/preupload/{rev}``: ``uploadMode`` per file (``lfs`` for binary samples,
  Parquet and tar files, ``regular`` otherwise) and the ``oid`` of the file already at that path;
- ``POST /datasets/{repo}.git/info/lfs/objects/batch``: the LFS batch API (basic transfer): an
  ``upload`` action for objects the store lacks, no action for objects it has;
- ``PUT  /lfs/{oid}``: the upload (the sha256 of the body must match the oid) and ``POST /lfs/verify``;
- ``POST /api/datasets/{repo}/commit/{rev}``: the ndjson commit (``header``, ``file``, ``lfsFile``,
  ``deletedFile``); an ``lfsFile`` whose object was never uploaded is refused;
- ``POST /api/validate-yaml``: parses the card's YAML header.

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``) as the Hub does, which
``huggingface_hub`` turns into its typed exceptions. Failures are injected with ``fail``: the next
requests whose ``METHOD path`` contains a given string are answered with a given status. Every
request is logged (method, path, status) so tests can count what was sent. Xet storage is not
spoken: clients must use the LFS path (``HF_HUB_DISABLE_XET``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".parquet", ".tar", ".arrow", ".bin")


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    size: int
    oid: str
    sha256: str | None = None
    content: bytes | None = None

    def entry(self, path: str) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "file", "path": path, "size": self.size, "oid": self.oid}
        if self.sha256 is not None:
            item["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return item


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, StoredFile]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})
    commits: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    body_bytes: int


class HubState:
    """Users, repos, the LFS object store, injected failures and the request log."""

    def __init__(self, tokens: dict[str, tuple[str, str]]) -> None:
        self.tokens = tokens
        self.repos: dict[str, Repo] = {}
        self.objects: dict[str, bytes] = {}
        self.log: list[Request] = []
        self.failures: list[tuple[str, int, int]] = []
        self.lock = threading.Lock()

    def fail(self, match: str, status: int = 500, *, times: int = 1, after: int = 0) -> None:
        """Let ``after`` requests whose ``METHOD path`` contains ``match`` through, then answer the
        next ``times`` of them with ``status``."""
        with self.lock:
            self.failures.append((match, status, after))
            self.failures += [(match, status, 0)] * (times - 1)

    def take_failure(self, method: str, path: str) -> int | None:
        with self.lock:
            for index, (match, status, after) in enumerate(self.failures):
                if match in f"{method} {path}":
                    if after:
                        self.failures[index] = (match, status, after - 1)
                        return None
                    del self.failures[index]
                    return status
        return None

    def file_bytes(self, repo: str, path: str, rev: str = "main") -> bytes:
        """A committed file's content (from the LFS store for LFS files)."""
        stored = self.repos[repo].branches[rev][path]
        return self.objects[stored.sha256] if stored.sha256 else stored.content or b""

    def files(self, repo: str, rev: str = "main") -> list[str]:
        return sorted(self.repos[repo].branches[rev])

    def requests(self, method: str, contains: str = "") -> list[Request]:
        return [r for r in self.log if r.method == method and contains in r.path]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small replies go out at once (no delayed-ACK stalls)
    wbufsize = 1 << 16  # headers and body in one write; flushed after each request

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    @property
    def state(self) -> HubState:
        return self.server.state

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        injected = self.state.take_failure(method, path)
        if injected is not None:
            status, payload, headers = injected, {"error": "injected failure"}, {}
        else:
            status, payload, headers = self._route(method, path, parse_qs(url.query), body)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.state.log.append(Request(method, path, status, len(body)))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    # -- routing ---------------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any, dict]:
        routes = (
            ("GET", r"^/api/whoami-v2$", self._whoami),
            ("POST", r"^/api/repos/create$", self._create_repo),
            ("POST", r"^/api/validate-yaml$", self._validate_yaml),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>.+)$", self._create_branch),
            ("GET", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$", self._repo_info),
            (
                "GET",
                r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?$",
                self._tree,
            ),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>.+)$", self._preupload),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>.+)$", self._commit),
            ("POST", r"^/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$", self._lfs_batch),
            ("PUT", r"^/lfs/(?P<oid>[0-9a-f]{64})$", self._lfs_put),
            ("POST", r"^/lfs/verify$", self._lfs_verify),
        )
        for route_method, pattern, handler in routes:
            match = re.match(pattern, path)
            if route_method == method and match:
                return handler(body=body, query=query, **match.groupdict())
        return 404, {"error": f"no route {method} {path}"}, {}

    def _user(self) -> tuple[str, str] | None:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        return self.state.tokens.get(token)

    def _need_write(self, repo_id: str) -> tuple[int, Any, dict] | None:
        user = self._user()
        if user is None:
            return 401, {"error": "Invalid credentials in Authorization header"}, {}
        name, role = user
        if role != "write" or repo_id.split("/")[0] != name:
            return 403, {"error": f"You don't have the rights to write to {repo_id}"}, {}
        return None

    def _repo(self, repo_id: str, rev: str) -> tuple[Repo | None, tuple[int, Any, dict] | None]:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            return None, (404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        if rev not in repo.branches:
            return None, (404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
        return repo, None

    def _whoami(self, **_: Any) -> tuple[int, Any, dict]:
        user = self._user()
        if user is None:
            return 401, {"error": "Invalid credentials in Authorization header"}, {}
        name, role = user
        return (
            200,
            {"type": "user", "name": name, "auth": {"accessToken": {"displayName": "t", "role": role}}},
            {},
        )

    def _create_repo(self, body: bytes, **_: Any) -> tuple[int, Any, dict]:
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}"
        denied = self._need_write(repo_id)
        if denied:
            return denied
        if payload.get("type") != "dataset":
            return 400, {"error": "this test hub only hosts datasets"}, {}
        url = f"http://{self.headers['Host']}/datasets/{repo_id}"
        if repo_id in self.state.repos:
            return 409, {"error": "You already created this dataset repo", "url": url}, {}
        self.state.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        return 200, {"url": url, "name": repo_id}, {}

    def _validate_yaml(self, body: bytes, **_: Any) -> tuple[int, Any, dict]:
        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        if not match:
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]}, {}
        try:
            meta = yaml.safe_load(match[1])
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}, {}
        if not isinstance(meta, dict):
            return 400, {"errors": [{"message": "YAML metadata must be a mapping"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _create_branch(self, repo: str, rev: str, **_: Any) -> tuple[int, Any, dict]:
        denied = self._need_write(repo)
        if denied:
            return denied
        stored, error = self._repo(repo, "main")
        if error:
            return error
        if rev in stored.branches:
            return 409, {"error": "Reference already exists"}, {}
        stored.branches[rev] = dict(stored.branches["main"])
        stored.heads[rev] = stored.heads["main"]
        return 200, {}, {}

    def _repo_info(self, repo: str, rev: str, **_: Any) -> tuple[int, Any, dict]:
        stored, error = self._repo(repo, rev)
        if error:
            return error
        siblings = [{"rfilename": p} for p in sorted(stored.branches[rev])]
        return (
            200,
            {"id": repo, "sha": stored.heads[rev], "private": stored.private, "siblings": siblings},
            {},
        )

    def _tree(self, repo: str, rev: str, query: dict[str, list[str]], sub: str | None = None, **_: Any):
        stored, error = self._repo(repo, rev)
        if error:
            return error
        prefix = f"{sub.strip('/')}/" if sub else ""
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries: dict[str, dict[str, Any]] = {}
        for path, file in sorted(stored.branches[rev].items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "path": folder, "oid": "0" * 40})
            if recursive or len(parts) == 1:
                entries[path] = file.entry(path)
        return 200, list(entries.values()), {}

    def _preupload(self, repo: str, rev: str, body: bytes, **_: Any) -> tuple[int, Any, dict]:
        stored, error = self._repo(repo, rev)
        if error:
            return error
        files = []
        for item in json.loads(body)["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = item["path"].endswith(LFS_SUFFIXES) or b"\0" in sample or item["size"] > 10 * 2**20
            existing = stored.branches[rev].get(item["path"])
            oid = None
            if existing is not None:
                oid = existing.sha256 if lfs else existing.oid
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        return 200, {"files": files, "commitOid": stored.heads[rev]}, {}

    def _lfs_batch(self, repo: str, body: bytes, **_: Any) -> tuple[int, Any, dict]:
        denied = self._need_write(repo)
        if denied:
            return denied
        base = f"http://{self.headers['Host']}"
        objects = []
        for item in json.loads(body)["objects"]:
            entry: dict[str, Any] = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.state.objects:
                entry["actions"] = {
                    "upload": {"href": f"{base}/lfs/{item['oid']}", "header": {}},
                    "verify": {"href": f"{base}/lfs/verify", "header": {}},
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {}

    def _lfs_put(self, oid: str, body: bytes, **_: Any) -> tuple[int, Any, dict]:
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "sha256 mismatch"}, {}
        self.state.objects[oid] = body
        return 200, b"", {"ETag": '"' + hashlib.md5(body).hexdigest() + '"'}

    def _lfs_verify(self, body: bytes, **_: Any) -> tuple[int, Any, dict]:
        item = json.loads(body)
        if (
            len(self.state.objects.get(item["oid"], b"")) != item["size"]
            or item["oid"] not in self.state.objects
        ):
            return 404, {"error": "object not found"}, {}
        return 200, {}, {}

    def _commit(self, repo: str, rev: str, body: bytes, **_: Any) -> tuple[int, Any, dict]:
        denied = self._need_write(repo)
        if denied:
            return denied
        stored, error = self._repo(repo, rev)
        if error:
            return error
        files = dict(stored.branches[rev])
        summary = ""
        touched = []
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value["summary"]
                if value.get("parentCommit") and value["parentCommit"] != stored.heads[rev]:
                    return 412, {"error": "parent commit is not the head"}, {}
                continue
            touched.append(value["path"])
            if item["key"] == "file":
                data = base64.b64decode(value["content"])
                files[value["path"]] = StoredFile(len(data), git_blob_oid(data), None, data)
            elif item["key"] == "lfsFile":
                data = self.state.objects.get(value["oid"])
                if data is None:
                    return 422, {"error": f"LFS object {value['oid']} was not uploaded"}, {}
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\n"
                pointer += f"size {len(data)}\n"
                files[value["path"]] = StoredFile(len(data), git_blob_oid(pointer.encode()), value["oid"])
            elif item["key"] in ("deletedFile", "deletedFolder"):
                gone = [
                    p for p in files if p == value["path"] or p.startswith(value["path"].rstrip("/") + "/")
                ]
                if not gone:
                    return (
                        404,
                        {"error": "A file with this name doesn't exist"},
                        {"X-Error-Code": "EntryNotFound"},
                    )
                for path in gone:
                    del files[path]
        oid = hashlib.sha1(f"{stored.heads[rev]}{summary}{len(stored.commits)}".encode()).hexdigest()
        stored.branches[rev] = files
        stored.heads[rev] = oid
        stored.commits.append({"oid": oid, "branch": rev, "summary": summary, "paths": touched})
        url = f"http://{self.headers['Host']}/datasets/{repo}/commit/{oid}"
        return 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


@contextmanager
def running_hub(tokens: dict[str, tuple[str, str]]) -> Iterator[tuple[str, HubState]]:
    """Run a hub on a free localhost port: yields its endpoint URL and its state."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = HubState(tokens)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.state
    finally:
        server.shutdown()
        server.server_close()
