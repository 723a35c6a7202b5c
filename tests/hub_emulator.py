"""A small in-memory Hugging Face Hub emulator for tests (standard library only, loopback only).

It implements the HTTP surface that ``huggingface_hub`` 2.4 and ``datasets`` 5.2 call to create a
dataset/model repo, branch it, commit files (regular and git-LFS "basic" transfer), and read them back by
branch, tag, PR ref or commit sha:

- ``GET /api/whoami-v2``, ``POST /api/validate-yaml``, ``POST /api/repos/create``
- ``GET /api/{type}s/{ns}/{name}[/revision/{rev}]``, ``GET .../refs``, ``GET .../commits/{rev}``
- ``POST|DELETE .../branch/{b}``, ``POST .../tag/{rev}``
- ``GET .../tree/{rev}[/{path}]``, ``POST .../paths-info/{rev}``
- ``POST .../preupload/{rev}`` (binary or big files -> ``lfs``), ``POST .../commit/{rev}`` (ndjson; 412 on a
  stale ``parentCommit``; ``?create_pr=1`` opens ``refs/pr/N``)
- ``POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch`` and ``PUT /lfs-upload/{sha256}`` (checked)
- ``HEAD|GET /{prefix}{ns}/{name}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``,
  ``X-Linked-Size``, single ``Range`` requests, and ``X-Error-Code`` on 404s.

Fault injection (:class:`Faults`): fail the next N requests of a route with a status code (optionally after
letting the first K through), hold one request until released (to kill the client mid-push), or ``stop``
the server (503 for everything until ``resume``). Every request is recorded (method, path, route,
body bytes, headers) so tests can count attempts and grep what the server received.

NOT covered (do not rely on these): the Xet upload/download protocol (clients must set
``HF_HUB_DISABLE_XET=1``); authentication, permissions, private/gated repos (any token is accepted, the
``private`` flag is only stored); rate limits (429) and ``Retry-After`` semantics; pagination (``Link``
headers) of tree/commits; ``expand`` metadata (lastCommit, security scans); PR discussions, comments and
merging (``create_pr`` only creates a ``refs/pr/N`` ref); LFS multipart transfer and the verify step;
``refs/convert/parquet`` and the dataset viewer; ``.gitignore`` handling; spaces/buckets; real git object
semantics (commit ids are synthetic sha1s, trees have no oids of their own); persistence across processes.
Concurrency is handled with one global lock. It is only as faithful as its author's reading of the clients.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".safetensors", ".bin", ".pt", ".pth", ".npy", ".npz", ".gz", ".zip", ".pkl")
LFS_MIN_SIZE = 10 * 1024 * 1024
TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Entry:
    """A file in a commit: its bytes are in the server's blob store under ``key``."""

    size: int
    oid: str  # git blob sha1 (of the pointer file for LFS entries)
    key: str
    sha256: str | None = None  # set for LFS files

    def as_tree(self, path: str) -> dict:
        out = {"type": "file", "path": path, "size": self.size, "oid": self.oid}
        if self.sha256:
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return out


@dataclass
class Commit:
    sha: str
    parents: list[str]
    title: str
    message: str
    date: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        match = re.fullmatch(r"refs/pr/(\d+)", rev)
        if match and int(match.group(1)) in self.prs:
            return self.prs[int(match.group(1))]
        if rev in self.commits:
            return rev
        matches = [sha for sha in self.commits if len(rev) >= 7 and sha.startswith(rev)]
        return matches[0] if len(matches) == 1 else None


@dataclass
class Rule:
    route: str
    status: int
    times: int  # how many requests fail (-1: all)
    after: int  # let this many matching requests through first
    seen: int = 0
    hold: threading.Event | None = None  # set: block the request until released, then fail it


class Faults:
    """Fault injection: ``fail(route, status, times, after)``; routes are names like ``commit``,
    ``preupload``, ``branch``, ``lfs-batch``, ``lfs-upload``, ``resolve``, ``tree``, ``info``, or ``*``."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        self.held = threading.Event()  # set when a held request has arrived

    def fail(self, route: str, status: int = 500, times: int = 1, after: int = 0) -> None:
        with self.lock:
            self.rules.append(Rule(route, status, times, after))

    def hold(self, route: str, after: int = 0) -> threading.Event:
        """Block the next matching request (after ``after`` pass) until the returned event is set or 120 s
        pass, then answer 503: lets a test kill the client while the server holds its request."""
        released = threading.Event()
        with self.lock:
            self.rules.append(Rule(route, 503, 1, after, hold=released))
        self.held.clear()
        return released

    def clear(self) -> None:
        with self.lock:
            for rule in self.rules:
                if rule.hold is not None:
                    rule.hold.set()
            self.rules.clear()

    def check(self, route: str) -> int | None:
        hold = None
        with self.lock:
            for rule in self.rules:
                if rule.route not in (route, "*"):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after:
                    continue
                if rule.times == -1 or rule.seen - rule.after <= rule.times:
                    hold = rule.hold
                    status = rule.status
                    break
            else:
                return None
        if hold is not None:
            self.held.set()
            hold.wait(timeout=120)
        return status


@dataclass
class Request:
    method: str
    path: str
    route: str
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubState:
    """All repos and blobs, in memory."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.lock = threading.RLock()
        self.counter = itertools.count(1)

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository Not Found for {repo_type}s/{repo_id}", "RepoNotFound")
        return repo

    def commit_of(self, repo: Repo, rev: str) -> Commit:
        sha = repo.resolve(rev)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return repo.commits[sha]

    def new_commit(self, repo: Repo, parents: list[str], title: str, message: str, files: dict) -> Commit:
        seed = f"{repo.repo_id}|{parents}|{title}|{next(self.counter)}|{sorted((p, e.oid) for p, e in files.items())}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parents, title, message,
                        time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), files)
        repo.commits[commit.sha] = commit
        return commit

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_type, repo_id, private)
        attributes = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
        self.blobs[git_blob_sha1(attributes)] = attributes
        entry = Entry(len(attributes), git_blob_sha1(attributes), git_blob_sha1(attributes))
        first = self.new_commit(repo, [], "initial commit", "", {".gitattributes": entry})
        repo.branches["main"] = first.sha
        self.repos[(repo_type, repo_id)] = repo
        return repo


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE or b"\0" in sample


class Handler(BaseHTTPRequestHandler):
    server: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep stderr quiet; requests are recorded instead
        pass

    # -- plumbing ---------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._status = status

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _handle(self):
        self._status = 0
        body = self._body()
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = "unknown"
        try:
            route, action = self._route(parts)
            forced = self.server.faults.check(route)
            if self.server.stopped or forced is not None:
                status = 503 if self.server.stopped else forced
                self._json(status, {"error": f"emulated failure ({route})"}, {"X-Error-Message": "emulated failure"})
            else:
                with self.server.state.lock:
                    action(parts, query, body)
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json(err.status, {"error": err.message}, headers)
        finally:
            with self.server.log_lock:
                self.server.requests.append(Request(self.command, self.path, route, self._status,
                                                    {k.lower(): v for k, v in self.headers.items()}, body))

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle  # noqa: N815

    # -- routing ----------------------------------------------------------------------------------------
    def _route(self, p: list[str]):
        if p[:2] == ["api", "whoami-v2"]:
            return "whoami", self.whoami
        if p[:2] == ["api", "validate-yaml"]:
            return "validate-yaml", lambda *_: self._json(200, {"errors": [], "warnings": []})
        if p[:3] == ["api", "repos", "create"]:
            return "create", self.create
        if p[:1] == ["lfs-upload"] and len(p) == 2:
            return "lfs-upload", self.lfs_put
        if len(p) >= 4 and p[0] == "api" and p[1] in ("models", "datasets", "spaces"):
            kind, rest = p[1][:-1], p[4:]
            self._repo_key = (kind, f"{p[2]}/{p[3]}")
            if not rest:
                return "info", self.info
            op = rest[0]
            table = {"revision": self.info, "refs": self.refs, "commits": self.commits, "branch": self.branch,
                     "tag": self.tag, "tree": self.tree, "paths-info": self.paths_info,
                     "preupload": self.preupload, "commit": self.commit}
            if op in table:
                return op, table[op]
            return "unknown", self.not_found
        kind, p2 = ("dataset", p[1:]) if p[:1] == ["datasets"] else ("space", p[1:]) if p[:1] == ["spaces"] else (
            "model", p)
        if len(p2) >= 2 and p2[1].endswith(".git") and p2[2:5] == ["info", "lfs", "objects"]:
            self._repo_key = (kind, f"{p2[0]}/{p2[1][:-4]}")
            return "lfs-batch", self.lfs_batch
        if len(p2) >= 5 and p2[2] == "resolve":
            self._repo_key = (kind, f"{p2[0]}/{p2[1]}")
            return "resolve", self.resolve
        return "unknown", self.not_found

    def not_found(self, *_):
        raise HubError(404, f"Not found: {self.command} {self.path}")

    def _repo(self) -> Repo:
        return self.server.state.repo(*self._repo_key)

    def _rev_and_rest(self, p: list[str]) -> tuple[str, list[str]]:
        """The revision segment after the operation (PR refs arrive unquoted as refs/pr/N)."""
        rest = p[5:]
        if rest[:2] == ["refs", "pr"] and len(rest) >= 3:
            return "/".join(rest[:3]), rest[3:]
        if rest and rest[0].startswith("refs/pr/"):
            return rest[0], rest[1:]
        return (rest[0] if rest else "main"), rest[1:]

    # -- endpoints --------------------------------------------------------------------------------------
    def whoami(self, *_):
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")
        self._json(200, {"type": "user", "name": "emulator-user", "fullname": "Emulator User", "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "emulated", "role": "write"}}})

    def create(self, _p, _q, body):
        payload = json.loads(body or b"{}")
        kind = payload.get("type") or "model"
        name, org = payload["name"], payload.get("organization")
        repo_id = name if "/" in name else f"{org or 'emulator-user'}/{name}"
        url = f"{self.server.url}/{TYPE_PREFIX[kind]}{repo_id}"
        if (kind, repo_id) in self.server.state.repos:
            self._json(409, {"error": "You already created this repo", "url": url},
                       {"X-Error-Message": "You already created this repo"})
            return
        self.server.state.create_repo(kind, repo_id, bool(payload.get("private")))
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def info(self, p, _q, _b):
        repo = self._repo()
        rev = self._rev_and_rest(p)[0] if len(p) > 4 else "main"
        commit = self.server.state.commit_of(repo, rev)
        self._json(200, {"id": repo.repo_id, "_id": repo.repo_id, "author": repo.repo_id.split("/")[0],
                         "sha": commit.sha, "private": repo.private, "disabled": False, "gated": False,
                         "lastModified": commit.date, "tags": [], "downloads": 0, "likes": 0,
                         "siblings": [{"rfilename": path} for path in sorted(commit.files)]})

    def refs(self, _p, query, _b):
        repo = self._repo()

        def ref(kind, name, sha):
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}

        out = {"branches": [ref("heads", n, s) for n, s in repo.branches.items()], "converts": [],
               "tags": [ref("tags", n, s) for n, s in repo.tags.items()]}
        if query.get("include_prs"):
            out["pullRequests"] = [{"name": str(n), "ref": f"refs/pr/{n}", "targetCommit": s}
                                   for n, s in repo.prs.items()]
        self._json(200, out)

    def commits(self, p, _q, _b):
        repo = self._repo()
        commit = self.server.state.commit_of(repo, self._rev_and_rest(p)[0])
        out = []
        while commit is not None:
            out.append({"id": commit.sha, "title": commit.title, "message": commit.message, "date": commit.date,
                        "authors": [{"user": "emulator-user", "avatar": ""}]})
            commit = repo.commits[commit.parents[0]] if commit.parents else None
        self._json(200, out)

    def branch(self, p, _q, body):
        repo = self._repo()
        name = "/".join(p[5:])
        if self.command == "DELETE":
            if repo.branches.pop(name, None) is None:
                raise HubError(404, f"Branch {name} not found", "RevisionNotFound")
            self._json(200, {})
            return
        if name in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{name}")
        payload = json.loads(body or b"{}")
        start = payload.get("startingPoint") or "main"
        sha = repo.resolve(start)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {start}", "RevisionNotFound")
        if payload.get("emptyBranch"):
            sha = self.server.state.new_commit(repo, [], "empty branch", "", {}).sha
        repo.branches[name] = sha
        self._json(200, {})

    def tag(self, p, _q, body):
        repo = self._repo()
        rev = self._rev_and_rest(p)[0]
        sha = self.server.state.commit_of(repo, rev).sha
        name = json.loads(body or b"{}")["tag"]
        if name in repo.tags:
            raise HubError(409, f"Tag {name} already exists")
        repo.tags[name] = sha
        self._json(200, {})

    def _listing(self, commit: Commit, base: str, recursive: bool) -> list[dict]:
        base = base.strip("/")
        prefix = f"{base}/" if base else ""
        files, dirs = [], set()
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                segments = rest.split("/")
                for depth in range(1, len(segments) if recursive else 2):
                    dirs.add(prefix + "/".join(segments[:depth]))
                if not recursive:
                    continue
            files.append(entry.as_tree(path))
        folders = [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
                   for d in sorted(dirs)]
        return folders + files

    def tree(self, p, query, _b):
        repo = self._repo()
        rev, rest = self._rev_and_rest(p)
        commit = self.server.state.commit_of(repo, rev)
        base = "/".join(rest)
        if base and not any(path.startswith(base.rstrip("/") + "/") for path in commit.files):
            raise HubError(404, f"Entry not found: {base}", "EntryNotFound")
        self._json(200, self._listing(commit, base, query.get("recursive") in ("1", "true", "True")))

    def paths_info(self, p, _q, body):
        repo = self._repo()
        commit = self.server.state.commit_of(repo, self._rev_and_rest(p)[0])
        content_type = self.headers.get("Content-Type") or ""
        if "json" in content_type:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                out.append(commit.files[path].as_tree(path))
            elif any(f.startswith(path + "/") for f in commit.files):
                out.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(),
                            "size": 0})
        self._json(200, out)

    def preupload(self, p, _q, body):
        repo = self._repo()
        rev = self._rev_and_rest(p)[0]
        commit = self.server.state.commit_of(repo, rev) if repo.resolve(rev) else None
        out = []
        for item in json.loads(body)["files"]:
            sample = base64.b64decode(item.get("sample", ""))
            lfs = _is_lfs(item["path"], int(item["size"]), sample)
            remote = commit.files.get(item["path"]) if commit else None
            oid = (remote.sha256 or remote.oid) if remote else None
            out.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        self._json(200, {"files": out, "commitOid": commit.sha if commit else None})

    def lfs_batch(self, _p, _q, body):
        self._repo()
        payload = json.loads(body)
        objects = []
        for obj in payload.get("objects", []):
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server.state.blobs:
                item["actions"] = {"upload": {"href": f"{self.server.url}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(item)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                   ctype="application/vnd.git-lfs+json")

    def lfs_put(self, p, _q, body):
        oid = p[1]
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, f"LFS upload content does not match its sha256 {oid}")
        self.server.state.blobs[oid] = body
        self._json(200, {})

    def commit(self, p, query, body):
        state, repo = self.server.state, self._repo()
        rev = self._rev_and_rest(p)[0]
        base = state.commit_of(repo, rev)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        parent = header.get("parentCommit")
        if parent and parent != base.sha:
            raise HubError(412, f"A commit has happened since. Please refresh and try again. ({parent} != {base.sha})")
        files = dict(base.files)
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else \
                    value["content"].encode()
                oid = git_blob_sha1(data)
                state.blobs[oid] = data
                files[value["path"]] = Entry(len(data), oid, oid)
            elif key == "lfsFile":
                if value["oid"] not in state.blobs:
                    raise HubError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\nsize {value['size']}\n"
                files[value["path"]] = Entry(int(value["size"]), git_blob_sha1(pointer.encode()), value["oid"],
                                             sha256=value["oid"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [f for f in files if f.startswith(prefix)]:
                    del files[path]
        commit = state.new_commit(repo, [base.sha], header.get("summary") or "", header.get("description") or "",
                                  files)
        url_base = f"{self.server.url}/{TYPE_PREFIX[repo.repo_type]}{repo.repo_id}"
        out = {"commitUrl": f"{url_base}/commit/{commit.sha}", "commitOid": commit.sha, "success": True,
               "pullRequestUrl": None}
        if query.get("create_pr") in ("1", "true"):
            number = max(repo.prs, default=0) + 1
            repo.prs[number] = commit.sha
            out["pullRequestUrl"] = f"{url_base}/discussions/{number}"
        elif rev in repo.branches:
            repo.branches[rev] = commit.sha
        elif rev.startswith("refs/pr/"):
            repo.prs[int(rev.rsplit("/", 1)[1])] = commit.sha
        else:
            raise HubError(400, f"Cannot commit to {rev}: not a branch or a PR ref")
        self._json(200, out)

    def resolve(self, p2_unused, _q, _b):
        parts = [unquote(x) for x in urlsplit(self.path).path.split("/")[1:]]
        if parts[0] in ("datasets", "spaces"):
            parts = parts[1:]
        rest = parts[3:]
        if rest[:2] == ["refs", "pr"]:
            rev, path = "/".join(rest[:3]), "/".join(rest[3:])
        else:
            rev, path = rest[0], "/".join(rest[1:])
        repo = self._repo()
        commit = self.server.state.commit_of(repo, rev)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = self.server.state.blobs[entry.key]
        etag = f'"{entry.sha256 or entry.oid}"'
        headers = {"X-Repo-Commit": commit.sha, "ETag": etag, "Accept-Ranges": "bytes"}
        if entry.sha256:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(entry.size)})
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        if match and self.command == "GET":
            start = int(match.group(1) or 0)
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start:end + 1], headers, ctype="application/octet-stream")
            return
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self._status = 200
            return
        self._send(200, data, headers, ctype="application/octet-stream")


class HubServer(ThreadingHTTPServer):
    """The emulator: ``HubServer.start()`` binds 127.0.0.1 on a free port and serves in a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = HubState()
        self.faults = Faults()
        self.requests: list[Request] = []
        self.log_lock = threading.Lock()
        self.stopped = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @classmethod
    def start(cls, port: int = 0) -> HubServer:
        server = cls(port)
        server._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        server._thread.start()
        return server

    def stop(self) -> None:
        """Answer every request with 503 until :meth:`resume` (an outage as clients see it)."""
        self.stopped = True

    def resume(self) -> None:
        self.stopped = False

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def received(self, route: str | None = None, method: str | None = None) -> list[Request]:
        with self.log_lock:
            return [r for r in self.requests if (route is None or r.route == route)
                    and (method is None or r.method == method)]

    def reset_log(self) -> None:
        with self.log_lock:
            self.requests.clear()


if __name__ == "__main__":
    import sys

    srv = HubServer.start(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"hub emulator listening on {srv.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.close()
