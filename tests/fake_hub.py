"""A small in-memory Hugging Face Hub that speaks the routes `huggingface_hub` and `transformers` use.

It runs a stdlib `ThreadingHTTPServer` on 127.0.0.1 (random port) in a thread; point `endpoint=` (or `HF_ENDPOINT`
in a child process) at `hub.url`. Routes, as `huggingface_hub` 2.x calls them:

- `POST /api/repos/create`: create a repo (409 if it exists), with a first commit holding `.gitattributes`.
- `POST /api/validate-yaml`: parse the model card's YAML header and its model-index (400 with `errors` if invalid).
- `POST /api/models/{repo}/preupload/{rev}`: upload mode per file (`lfs` for weights and large files, else
  `regular`) and the remote oid, so unchanged files are skipped.
- `POST /{repo}.git/info/lfs/objects/batch`: plain LFS "basic" transfer: one PUT action per missing object. Xet is
  never advertised; the client picks Xet only when `hf_xet` is installed and `HF_HUB_DISABLE_XET` is not set, so
  tests set that variable to exercise this path.
- `PUT /lfs-objects/{oid}`: store an LFS object after checking its sha256 and size.
- `POST /api/models/{repo}/commit/{rev}`: apply an ndjson commit atomically (`?create_pr=1` opens `refs/pr/N`).
- `POST /api/models/{repo}/branch/{branch}`: create a branch.
- `GET /api/models/{repo}[/revision/{rev}]`: model info (`sha`, `siblings`, `private`).
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: tree listing.
- `HEAD|GET /{repo}/resolve/{rev}/{file}`: file download with `X-Repo-Commit`, `ETag`, `X-Linked-Etag` and
  `X-Linked-Size`; 404s carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`).

`hub.fail(route, status)` makes the next request to a route fail (e.g. `"commit"`, `"lfs_upload"`), `hub.requests`
logs every `(method, path)`, `hub.authorizations` every `Authorization` header received and `hub.validated` every
README sent to `/api/validate-yaml`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class StoredFile:
    content: bytes
    lfs_sha256: str | None = None  # set for LFS files

    @property
    def oid(self) -> str:
        """The oid `huggingface_hub` compares against (`CommitOperationAdd._local_oid`)."""
        return self.lfs_sha256 or git_blob_sha1(self.content)


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "main", "refs/pr/1", ... -> commit oid
    n_prs: int = 0

    def resolve(self, revision: str) -> Commit | None:
        oid = self.refs.get(revision, revision)
        return self.commits.get(oid)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.extra = status, message, code, commit, extra


class FakeHub:
    """In-memory Hub served over HTTP on 127.0.0.1; use as a context manager or call `start()` / `stop()`."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str] = []
        self.validated: list[str] = []
        self._failures: dict[str, list[tuple[int, str]]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # lifecycle

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # test helpers

    def fail(self, route: str, status: int = 500, message: str | None = None) -> None:
        """Make the next request to `route` (the names in `_Handler.ROUTES`) fail with `status`."""
        self._failures.setdefault(route, []).append((status, message or f"error {status} injected by FakeHub"))

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at `revision` (path -> content)."""
        commit = self.repos[repo_id].resolve(revision)
        return {path: f.content for path, f in commit.files.items()}

    def write_requests(self) -> list[tuple[str, str]]:
        """Every request that is not a read (GET or HEAD)."""
        return [(m, p) for m, p in self.requests if m not in ("GET", "HEAD")]

    # state changes (called by the handler under the lock)

    def _take_failure(self, route: str) -> tuple[int, str] | None:
        pending = self._failures.get(route)
        return pending.pop(0) if pending else None

    def _new_commit(self, repo: Repo, parent: Commit | None, message: str, files: dict[str, StoredFile]) -> Commit:
        seed = json.dumps([parent.oid if parent else None, message, sorted((p, f.oid) for p, f in files.items())])
        oid = hashlib.sha1(f"{seed}{len(repo.commits)}".encode()).hexdigest()
        commit = Commit(oid=oid, message=message, files=files)
        repo.commits[oid] = commit
        return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake_hub: FakeHub
    _repo = r"(?P<repo>[^/]+/[^/]+)"
    ROUTES = [  # (name, method, pattern on the raw, still-quoted path)
        ("create_repo", "POST", r"/api/repos/create"),
        ("validate_yaml", "POST", r"/api/validate-yaml"),
        ("preupload", "POST", rf"/api/models/{_repo}/preupload/(?P<rev>[^/]+)"),
        ("commit", "POST", rf"/api/models/{_repo}/commit/(?P<rev>[^/]+)"),
        ("branch", "POST", rf"/api/models/{_repo}/branch/(?P<branch>[^/]+)"),
        ("tree", "GET", rf"/api/models/{_repo}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"),
        ("model_info", "GET", rf"/api/models/{_repo}(?:/revision/(?P<rev>[^/]+))?"),
        ("lfs_batch", "POST", rf"/{_repo}\.git/info/lfs/objects/batch"),
        ("lfs_upload", "PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})"),
        ("resolve", "GET", rf"/{_repo}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
        ("resolve", "HEAD", rf"/{_repo}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
    ]

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _dispatch(self, method: str) -> None:
        hub = self.fake_hub
        split = urlsplit(self.path)
        body = self._read_body()
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        with hub._lock:
            hub.requests.append((method, split.path))
            if self.headers.get("Authorization"):
                hub.authorizations.append(self.headers["Authorization"])
            for name, route_method, pattern in self.ROUTES:
                match = re.fullmatch(pattern, split.path)
                if route_method != method or match is None:
                    continue
                params = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
                failure = hub._take_failure(name)
                try:
                    if failure is not None:
                        raise HubError(*failure)
                    getattr(self, f"_{name}")(hub, body=body, query=query, **params)
                except HubError as err:
                    headers = {"X-Error-Message": err.message}
                    if err.code:
                        headers["X-Error-Code"] = err.code
                    if err.commit:
                        headers["X-Repo-Commit"] = err.commit
                    self._send_json(err.status, {"error": err.message, **err.extra}, headers)
                return
            self._send_json(404, {"error": f"FakeHub has no route {method} {split.path}"})

    def _repo_or_404(self, hub: FakeHub, repo_id: str) -> Repo:
        if repo_id not in hub.repos:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return hub.repos[repo_id]

    def _commit_or_404(self, repo: Repo, rev: str | None) -> Commit:
        commit = repo.resolve(rev or "main")
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    # routes

    def _create_repo(self, hub: FakeHub, body: bytes, query: dict) -> None:
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if "/" not in repo_id:
            raise HubError(400, "FakeHub needs an owner/name repo id")
        if repo_id in hub.repos:
            raise HubError(409, "You already created this model repo", url=f"{hub.url}/{repo_id}")
        repo = Repo(repo_id=repo_id, private=payload.get("visibility") == "private")
        first = hub._new_commit(repo, None, "initial commit", {".gitattributes": StoredFile(GITATTRIBUTES)})
        repo.refs["main"] = first.oid
        hub.repos[repo_id] = repo
        self._send_json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self, hub: FakeHub, body: bytes, query: dict) -> None:
        from huggingface_hub import ModelCardData

        content = json.loads(body)["content"]
        hub.validated.append(content)
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
        errors = []
        if match is None:
            errors.append("README.md has no YAML metadata block")
        else:
            try:
                metadata = yaml.safe_load(match.group(1))
                if not isinstance(metadata, dict):
                    raise ValueError("the YAML metadata is not a mapping")
                ModelCardData(**metadata)  # parses and checks model-index
            except Exception as err:
                errors.append(f"Invalid YAML metadata: {err}")
        self._send_json(400 if errors else 200, {"errors": [{"message": m} for m in errors], "warnings": []})

    def _preupload(self, hub: FakeHub, body: bytes, query: dict, repo: str, rev: str) -> None:
        commit = self._commit_or_404(self._repo_or_404(hub, repo), "main" if query.get("create_pr") else rev)
        files = []
        for item in json.loads(body)["files"]:
            lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE
            existing = commit.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": existing.oid if existing else None,
                }
            )
        self._send_json(200, {"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, hub: FakeHub, body: bytes, query: dict, repo: str) -> None:
        self._repo_or_404(hub, repo)
        payload = json.loads(body)
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in hub.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{hub.url}/lfs-objects/{obj['oid']}", "header": {}}}
            objects.append(entry)
        self._send_json(
            200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}
        )

    def _lfs_upload(self, hub: FakeHub, body: bytes, query: dict, oid: str) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "LFS object does not match its oid")
        hub.lfs_objects[oid] = body
        self._send(200, headers={"ETag": f'"{oid}"'})

    def _commit(self, hub: FakeHub, body: bytes, query: dict, repo: str, rev: str) -> None:
        repository = self._repo_or_404(hub, repo)
        create_pr = query.get("create_pr") == "1"
        parent = self._commit_or_404(repository, rev)
        files = dict(parent.files)
        header = {}
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                if value["oid"] not in hub.lfs_objects:
                    raise HubError(422, f"LFS pointer {value['path']} points to an object that was never uploaded")
                files[value["path"]] = StoredFile(hub.lfs_objects[value["oid"]], lfs_sha256=value["oid"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:
                raise HubError(400, f"FakeHub does not support commit operation {key!r}")
        commit = hub._new_commit(repository, parent, header.get("summary", ""), files)
        pr_url = None
        if create_pr:
            repository.n_prs += 1
            repository.refs[f"refs/pr/{repository.n_prs}"] = commit.oid
            pr_url = f"{hub.url}/{repo}/discussions/{repository.n_prs}"
        else:
            repository.refs[rev] = commit.oid
        self._send_json(
            200,
            {"commitUrl": f"{hub.url}/{repo}/commit/{commit.oid}", "commitOid": commit.oid, "pullRequestUrl": pr_url},
        )

    def _branch(self, hub: FakeHub, body: bytes, query: dict, repo: str, branch: str) -> None:
        repository = self._repo_or_404(hub, repo)
        if branch in repository.refs:
            raise HubError(409, f"Branch {branch} already exists")
        start = json.loads(body or b"{}").get("startingPoint", "main")
        repository.refs[branch] = self._commit_or_404(repository, start).oid
        self._send_json(200, {})

    def _model_info(self, hub: FakeHub, body: bytes, query: dict, repo: str, rev: str | None) -> None:
        repository = self._repo_or_404(hub, repo)
        commit = self._commit_or_404(repository, rev)
        self._send_json(
            200,
            {
                "id": repo,
                "sha": commit.oid,
                "private": repository.private,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            },
        )

    def _tree(self, hub: FakeHub, body: bytes, query: dict, repo: str, rev: str, path: str | None) -> None:
        commit = self._commit_or_404(self._repo_or_404(hub, repo), rev)
        prefix = f"{path.strip('/')}/" if path else ""
        recursive = query.get("recursive", "false").lower() == "true"
        entries, folders = [], set()
        for file_path, stored in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entry = {
                "type": "file",
                "path": file_path,
                "size": len(stored.content),
                "oid": git_blob_sha1(stored.content),
            }
            if stored.lfs_sha256:
                entry["lfs"] = {"oid": stored.lfs_sha256, "size": len(stored.content), "pointerSize": 134}
            entries.append(entry)
        if prefix and not entries and not folders:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound", commit.oid)
        entries += [{"type": "directory", "path": folder, "oid": "0" * 40} for folder in sorted(folders)]
        self._send_json(200, entries)

    def _resolve(self, hub: FakeHub, body: bytes, query: dict, repo: str, rev: str, path: str) -> None:
        commit = self._commit_or_404(self._repo_or_404(hub, repo), rev)
        stored = commit.files.get(path)
        if stored is None:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound", commit.oid)
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_sha1(stored.content)}"'}
        if stored.lfs_sha256:
            headers["X-Linked-Etag"] = f'"{stored.lfs_sha256}"'
            headers["X-Linked-Size"] = str(len(stored.content))
        self._send(200, stored.content, {"Content-Type": "application/octet-stream", **headers})
