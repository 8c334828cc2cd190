"""A loopback stand-in for the Hugging Face Hub's HTTP API, so the real ``huggingface_hub`` and
``datasets`` client code runs in tests without the network.

It implements only what prefkit's publishing and ``datasets.load_dataset`` use (huggingface_hub 2.4,
datasets 5.2, with ``HF_HUB_DISABLE_XET`` set so uploads use the classic LFS protocol):

- ``POST /api/repos/create``                         create a repo (409 if it exists; keeps ``private``)
- ``GET  /api/{type}s/{ns}/{name}[/revision/{rev}]`` repo info (sha, private, siblings)
- ``PUT  /api/{type}s/{ns}/{name}/settings``          change ``private``
- ``POST /api/{type}s/{ns}/{name}/branch/{branch}``   create a branch at the head of ``main``
- ``POST /api/{type}s/{ns}/{name}/preupload/{rev}``   tell the client which files go through LFS
- ``POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch`` then ``PUT /lfs-upload/{oid}``
- ``POST /api/{type}s/{ns}/{name}/commit/{rev}``      NDJSON commit: header, file, lfsFile, deletedFile
- ``GET  /api/{type}s/{ns}/{name}/tree/{rev}[/path]`` listing (``recursive``)
- ``POST /api/{type}s/{ns}/{name}/paths-info/{rev}``  metadata of given paths
- ``HEAD|GET /{prefix}{ns}/{name}/resolve/{rev}/{path}`` file download (ETag, X-Repo-Commit)
- ``POST /api/validate-yaml``                         always valid (the real check needs the Hub)

Every commit gets its own id, and revisions resolve to the files as of that commit, because the client
caches tree listings by commit id. Private repos answer 404 to requests without the right token, like
the Hub. Every request is recorded (method, path, headers, body) so tests can assert what was sent.

Usage::

    with FakeHub(token="hf_test") as hub:
        HfApi(endpoint=hub.url, token="hf_test").create_repo("me/data", repo_type="dataset")
        assert hub.files("me/data") == {}
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Binary payloads that the real Hub routes through LFS; datasets also deletes its temporary parquet
# files right after preupload, so they must not be sent inline.
LFS_SUFFIXES = (".parquet", ".png", ".safetensors", ".bin", ".arrow")
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeRepo:
    """A repo's state: commits (id -> full file map), branch heads, visibility."""

    repo_type: str
    repo_id: str
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    commit_order: list[str] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    def head(self, revision: str = "main") -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None

    def files_at(self, revision: str = "main") -> dict[str, bytes] | None:
        oid = self.head(revision)
        if oid is None:
            return {} if revision == "main" and not self.branches else None
        return self.commits[oid]

    def commit(self, branch: str, files: dict[str, bytes], message: str) -> str:
        parent = self.branches.get(branch, "")
        digest = hashlib.sha1(f"{parent}\n{message}\n{len(self.commit_order)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha1(files[path]).digest())
        oid = digest.hexdigest()
        self.commits[oid] = dict(files)
        self.commit_order.append(oid)
        self.branches[branch] = oid
        return oid


class FakeHub:
    """The server plus its state; a context manager that starts and stops it on a free loopback port."""

    def __init__(self, *, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[RecordedRequest] = []
        self.fail_next: tuple[str, int] | None = None
        """(path fragment, status): the next request whose path holds the fragment fails with that status,
        and the error body echoes the request's Authorization header, as a careless server might."""
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the hub first (use it as a context manager)"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # test helpers ---------------------------------------------------------------------------------

    def seed_repo(self, repo_id: str, files: dict[str, bytes], *, repo_type: str = "dataset",
                  private: bool = False) -> FakeRepo:
        """Create a repo holding ``files`` in one commit on ``main``, without going through HTTP."""
        with self._lock:
            repo = self.repos.setdefault((repo_type, repo_id), FakeRepo(repo_type, repo_id, private))
            repo.commit("main", files, "seed")
            return repo

    def repo(self, repo_id: str, repo_type: str = "dataset") -> FakeRepo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        return dict(self.repo(repo_id, repo_type).files_at(revision) or {})

    def write_requests(self) -> list[RecordedRequest]:
        """Requests that could change state (anything but GET/HEAD)."""
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def authorized(self, headers: dict[str, str]) -> bool:
        if self.token is None:
            return True
        return headers.get("authorization", "") == f"Bearer {self.token}"


def _is_private(payload: dict[str, Any]) -> bool:
    # huggingface_hub 2.x sends "visibility"; older clients sent "private".
    if payload.get("visibility") is not None:
        return payload["visibility"] != "public"
    return bool(payload.get("private"))


def _yaml_front_matter(readme: bytes | None) -> dict[str, Any]:
    if not readme:
        return {}
    text = readme.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    parts = text.split("\n---", 1)
    try:
        data = yaml.safe_load(parts[0][3:]) if len(parts) == 2 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    # responses ------------------------------------------------------------------------------------

    def _send(self, code: int, body: Any = b"", ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: int, message: str, error_code: str) -> None:
        self._send(code, {"error": message}, headers={"X-Error-Code": error_code, "X-Error-Message": message})

    def _not_found(self) -> None:
        self._error(404, "Entry not found", "EntryNotFound")

    def _repo_not_found(self) -> None:
        self._error(404, "Repository not found", "RepoNotFound")

    # dispatch -------------------------------------------------------------------------------------

    def _handle(self) -> None:
        hub = self.hub
        url = urlparse(self.path)
        path = unquote(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        with hub._lock:
            hub.requests.append(RecordedRequest(self.command, self.path, headers, body))
            failure = hub.fail_next
            if failure and failure[0] in path:
                hub.fail_next = None
                echoed = headers.get("authorization", "")
                return self._send(failure[1], {"error": f"internal failure for request with {echoed}"})
            self._route(path, parse_qs(url.query), body, headers)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

    def _repo_for(self, type_plural: str, ns: str, name: str, headers: dict[str, str]) -> FakeRepo | None:
        repo = self.hub.repos.get((REPO_TYPES.get(type_plural, ""), f"{ns}/{name}"))
        if repo is None or (repo.private and not self.hub.authorized(headers)):
            return None
        return repo

    def _route(self, path: str, query: dict[str, list[str]], body: bytes, headers: dict[str, str]) -> None:
        hub = self.hub
        parts = path.strip("/").split("/")
        writes = self.command in ("POST", "PUT", "DELETE") and path != "/api/validate-yaml"
        if writes and not path.startswith("/lfs-upload/") and not hub.authorized(headers):
            return self._error(401, "Invalid credentials in Authorization header", "Unauthorized")

        if path == "/api/validate-yaml":
            return self._send(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if path.endswith(".git/info/lfs/objects/batch"):
            return self._lfs_batch(json.loads(body))
        if path.startswith("/lfs-upload/"):
            hub.lfs[parts[-1]] = body
            return self._send(200, b"")
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in REPO_TYPES:
            repo = self._repo_for(parts[1], parts[2], parts[3], headers)
            if repo is None:
                return self._repo_not_found()
            action, rest = (parts[4], parts[5:]) if len(parts) > 4 else ("info", [])
            return self._repo_api(repo, action, rest, query, body)
        if "resolve" in parts:
            return self._resolve(parts, headers)
        return self._error(404, f"not implemented in the fake hub: {self.command} {path}", "NotImplemented")

    # endpoints ------------------------------------------------------------------------------------

    def _create_repo(self, data: dict[str, Any]) -> None:
        repo_type = data.get("type") or "model"
        repo_id = (data["organization"] + "/" if data.get("organization") else "") + data["name"]
        key = (repo_type, repo_id)
        url = f"{self.hub.url}/{URL_PREFIX[repo_type]}{repo_id}"
        if key in self.hub.repos:
            return self._send(409, {"error": "You already created this repo", "url": url},
                              headers={"X-Error-Message": "You already created this repo"})
        repo = self.hub.repos[key] = FakeRepo(repo_type, repo_id, private=_is_private(data))
        # Like the Hub, a new repo starts with one commit holding .gitattributes.
        repo.commit("main", {".gitattributes": GITATTRIBUTES}, "initial commit")
        return self._send(200, {"url": url, "name": repo_id})

    def _lfs_batch(self, data: dict[str, Any]) -> None:
        objects = []
        for obj in data["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs:
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, "application/vnd.git-lfs+json")

    def _repo_api(self, repo: FakeRepo, action: str, rest: list[str], query: dict[str, list[str]],
                  body: bytes) -> None:
        if action in ("info", "revision") and self.command == "GET":
            revision = rest[0] if rest else "main"
            files = repo.files_at(revision)
            if files is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            card = _yaml_front_matter(files.get("README.md"))
            return self._send(200, {
                "id": repo.repo_id, "sha": repo.head(revision) or "0" * 40, "private": repo.private,
                "siblings": [{"rfilename": f} for f in sorted(files)], "tags": [], "cardData": card,
                "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
            })
        if action == "settings" and self.command == "PUT":
            data = json.loads(body or b"{}")
            if data.get("private") is not None or data.get("visibility") is not None:
                repo.private = _is_private(data)
            return self._send(200, {})
        if action == "branch" and self.command == "POST":
            branch = "/".join(rest)
            if branch in repo.branches:
                return self._error(409, "Reference already exists", "BranchExists")
            base = repo.branches.get("main")
            if base is None:
                repo.commit("main", {}, "initial commit")
                base = repo.branches["main"]
            repo.branches[branch] = base
            return self._send(200, {})
        if action == "preupload":
            files = json.loads(body)["files"]
            return self._send(200, {"files": [
                {"path": f["path"], "shouldIgnore": False,
                 "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular"} for f in files]})
        if action == "commit":
            return self._commit(repo, "/".join(rest) or "main", body)
        if action == "tree" and self.command == "GET":
            return self._tree(repo, rest[0] if rest else "main", "/".join(rest[1:]), query)
        if action == "paths-info" and self.command == "POST":
            return self._paths_info(repo, "/".join(rest) or "main", body)
        return self._error(404, f"not implemented in the fake hub: {action}", "NotImplemented")

    def _commit(self, repo: FakeRepo, revision: str, body: bytes) -> None:
        if revision not in repo.branches and not (revision == "main" and not repo.branches):
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        files = dict(repo.files_at(revision) or {})
        summary = ""
        for line in filter(str.strip, body.decode().splitlines()):
            op = json.loads(line)
            value = op["value"]
            if op["key"] == "header":
                summary = value.get("summary", "")
            elif op["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif op["key"] == "lfsFile":
                files[value["path"]] = self.hub.lfs[value["oid"]]
            elif op["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif op["key"] == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: b for p, b in files.items() if not p.startswith(prefix)}
        oid = repo.commit(revision, files, summary)
        prefix = URL_PREFIX[repo.repo_type]
        return self._send(200, {"commitUrl": f"{self.hub.url}/{prefix}{repo.repo_id}/commit/{oid}",
                                "commitOid": oid, "success": True, "pullRequestUrl": None})

    @staticmethod
    def _entry(path: str, data: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data),
                                 "oid": hashlib.sha1(data).hexdigest()}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
        return entry

    def _tree(self, repo: FakeRepo, revision: str, prefix: str, query: dict[str, list[str]]) -> None:
        files = repo.files_at(revision)
        if files is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        items: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for path, data in sorted(files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:] if prefix else path
            segments = rest.split("/")
            for depth in range(1, len(segments)):
                if recursive or depth == 1:
                    dirs.add("/".join(([prefix] if prefix else []) + segments[:depth]))
            if "/" in rest and not recursive:
                continue
            items.append(self._entry(path, data))
        items += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
        if prefix and not items:
            return self._not_found()
        return self._send(200, items)

    def _paths_info(self, repo: FakeRepo, revision: str, body: bytes) -> None:
        files = repo.files_at(revision)
        if files is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        content = body.decode()
        if content.startswith("{"):
            wanted = json.loads(content).get("paths", [])
        else:
            wanted = parse_qs(content).get("paths", [])
        out: list[dict[str, Any]] = []
        for path in wanted:
            if path in files:
                out.append(self._entry(path, files[path]))
            elif any(f.startswith(path.rstrip("/") + "/") for f in files):
                out.append({"type": "directory", "path": path, "oid": "0" * 40, "size": 0})
        return self._send(200, out)

    def _resolve(self, parts: list[str], headers: dict[str, str]) -> None:
        i = parts.index("resolve")
        head = parts[:i]
        repo_type = REPO_TYPES.get(head[0], "model") if head[0] in ("datasets", "spaces") else "model"
        if repo_type != "model":
            head = head[1:]
        repo = self.hub.repos.get((repo_type, "/".join(head)))
        if repo is None or (repo.private and not self.hub.authorized(headers)):
            return self._repo_not_found()
        revision = parts[i + 1]
        files = repo.files_at(revision)
        if files is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        data = files.get("/".join(parts[i + 2:]))
        if data is None:
            return self._not_found()
        etag = hashlib.sha1(data).hexdigest()
        return self._send(200, data, "application/octet-stream",
                          {"ETag": f'"{etag}"', "X-Repo-Commit": repo.head(revision) or "0" * 40})


def point_clients_at(hub: FakeHub, monkeypatch: Any, cache_dir: Any) -> None:
    """Send huggingface_hub's and datasets' requests to ``hub``, online, with caches under ``cache_dir``.

    Both libraries read ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_XET`` when they are imported
    (the test suite imports them offline), so the module constants are patched too; ``monkeypatch`` undoes it
    all after the test. Only loopback is reachable: the endpoint is the fake hub's.
    """
    import datasets.config as datasets_config
    from huggingface_hub import HfFileSystem, constants

    for name, value in {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
                        "HF_HUB_DISABLE_XET": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir / "hub"))
    monkeypatch.setattr(datasets_config, "HF_ENDPOINT", hub.url)
    monkeypatch.setattr(datasets_config, "HUB_DATASETS_URL", hub.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets_config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(datasets_config, "HF_DATASETS_CACHE", cache_dir / "datasets")
    # fsspec keeps one HfFileSystem per arguments; a cached one would still point at the old endpoint.
    HfFileSystem.clear_instance_cache()
