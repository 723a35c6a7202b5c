"""Publish a curated dataset dir to a Hub dataset revision (branch) with its probes and card, and load it back.

A push is three idempotent steps, each retried with bounded exponential backoff on transient errors
(5xx, 408/429, timeouts, connection errors):

1. the dataset repo (created if missing) and the branch (created from ``main`` if missing);
2. the rows, with ``Dataset.push_to_hub``; the commit carries ``saerl-dataset-sha256: <content hash>``, so a
   rerun whose rows are already on the branch (same hash, ``data/`` unchanged since) skips this step;
3. ``saerl/`` (probes, provenance, summary, push record) and the card, in one commit; unchanged files are
   dropped by ``huggingface_hub`` itself, so a rerun after a complete push commits nothing.

The local curated dir is only read. The access token is never written to the card, the push record, logs
or error messages; artefacts that contain it are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from saerl_hf.models import file_sha256

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "model_cards" / "dataset_card.md"
ARTEFACT_DIR = "saerl"
PUSH_RECORD = f"{ARTEFACT_DIR}/push.json"
HASH_MARKER = "saerl-dataset-sha256:"
PUSH_FORMAT = "saerl-hf/curated-push/1"
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9_]{8,}")


class HubPushError(RuntimeError):
    """A push did not complete; the message says which step, why, and that a rerun resumes it."""


class CuratedLoadError(ValueError):
    """A curated dataset could not be loaded (missing revision, files, or a content mismatch).

    ``reason`` says which: ``"revision"``, ``"repo"``, ``"not_curated"`` (no push record: a plain dataset),
    ``"unsafe_path"``, ``"corrupt"`` or ``"mismatch"``.
    """

    def __init__(self, message: str, reason: str = "corrupt") -> None:
        super().__init__(message)
        self.reason = reason


def is_unsafe_repo_path(path: str) -> bool:
    """True for a repo file name that could land outside a download dir: absolute, ``..`` or ``.`` or empty
    segments, backslashes, or a drive letter."""
    path = str(path)
    return (not path or path.startswith("/") or "\\" in path or re.match(r"^[A-Za-z]:", path) is not None
            or any(part in ("", ".", "..") for part in path.split("/")))


def check_repo_paths(paths, where: str) -> None:
    """Refuse Hub file names that could land outside the download dir (see :func:`is_unsafe_repo_path`)."""
    for path in paths:
        if is_unsafe_repo_path(path):
            raise CuratedLoadError(
                f"{where} lists the file {str(path)!r}, a path that could be written outside the download folder "
                f"(absolute, '..', '.' or empty segments, or backslashes). Nothing was downloaded. Fix: remove that "
                f"file from the revision and republish it with `saerl-hf push`.", reason="unsafe_path")


@dataclass
class PushConfig:
    """Options of ``saerl-hf push`` (YAML via ``--config``, every field overridable on the command line)."""

    curated_dir: str | None = field(default=None, metadata={"help": "Curated dir written by `saerl-hf curate` "
                                                                    "(dataset/, probes/, summary.json, provenance.json)."})
    repo_id: str | None = field(default=None, metadata={"help": "Hub dataset repo, e.g. `me/gsm8k-saerl`."})
    revision: str = field(default="main", metadata={"help": "Branch to publish to (created from main if missing)."})
    create_pr: bool = field(default=False, metadata={"help": "Open a pull request against the branch instead of "
                                                             "committing to it."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit title (default: derived)."})
    private: bool = field(default=False, metadata={"help": "Create the repo private if it does not exist."})
    token: str | None = field(default=None, metadata={"help": "Access token (default: HF_TOKEN / saved login). "
                                                              "Never written anywhere."})
    max_retries: int = field(default=4, metadata={"help": "Retries per step on 5xx/timeouts/connection errors."})
    retry_base_wait: float = field(default=1.0, metadata={"help": "First backoff wait in seconds (doubles)."})
    retry_max_wait: float = field(default=30.0, metadata={"help": "Cap of one backoff wait in seconds."})
    request_timeout: float = field(default=120.0, metadata={
        "help": "Seconds one HTTP read/write may stall before it counts as a (retried) timeout; 0 waits forever."})


@dataclass
class PushResult:
    repo_id: str
    revision: str  # the branch, or refs/pr/N with create_pr
    commit_sha: str
    dataset_sha256: str
    dataset_pushed: bool  # False when the rows were already there
    artefacts_pushed: bool  # False when saerl/ and the card were already there
    pr_url: str | None = None


@dataclass
class CuratedData:
    """What :func:`load_curated` returns: re-apply ``probes_dir`` to new data to score it the same way."""

    dataset: object  # datasets.Dataset (or DatasetDict when several splits were pushed)
    provenance: dict
    summary: dict
    probes_dir: Path
    source: str  # repo id or local dir
    revision: str | None = None
    commit_sha: str | None = None
    push_record: dict = field(default_factory=dict)


# -- helpers --------------------------------------------------------------------------------------------

def _redact(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "REDACTED")
    return _TOKEN_RE.sub("hf_REDACTED", text)


def redacted_command(argv: list[str] | None = None) -> str:
    """The command line as run, with any ``--token`` value and anything token-shaped masked."""
    argv = list(sys.argv if argv is None else argv)
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("REDACTED")
            hide = False
        elif arg in ("--token", "--hub-token", "--hub_token"):
            out.append(arg)
            hide = True
        elif arg.startswith(("--token=", "--hub-token=", "--hub_token=")):
            out.append(arg.split("=", 1)[0] + "=REDACTED")
        else:
            out.append(_TOKEN_RE.sub("hf_REDACTED", arg))
    if out and out[0].endswith(("saerl-hf", "cli.py")):
        out[0] = "saerl-hf"
    return shlex.join(out)


def dataset_content_hash(dataset) -> str:
    """sha256 over the features and every row (canonical JSON): equal iff the rows are byte-identical."""
    from datasets import DatasetDict

    digest = hashlib.sha256()
    splits = sorted(dataset.items()) if isinstance(dataset, DatasetDict) else [("", dataset)]
    for name, split in splits:
        digest.update(f"split:{name}\n".encode())
        digest.update(json.dumps(split.features.to_dict(), sort_keys=True).encode() + b"\n")
        for batch in split.with_format("arrow").iter(batch_size=4096):
            for row in batch.to_pylist():
                digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=_json_default).encode())
                digest.update(b"\n")
    return digest.hexdigest()


def _json_default(value):
    if isinstance(value, bytes):
        return {"__bytes__": hashlib.sha256(value).hexdigest()}
    return repr(value)


def _is_transient(err: BaseException) -> bool:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return status in TRANSIENT_STATUS or status >= 500
    name = type(err).__name__
    return isinstance(err, (ConnectionError, TimeoutError)) or any(
        key in name for key in ("Timeout", "ConnectError", "NetworkError", "RemoteProtocolError", "ReadError"))


def _retry(step: str, fn, cfg: PushConfig, token: str | None, local_dir: Path):
    """Run ``fn`` with at most ``max_retries`` retries on transient errors, backoff doubling from base."""
    attempts = cfg.max_retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified below, re-raised with context
            detail = _redact(f"{type(err).__name__}: {err}", token)
            if not _is_transient(err) or attempt == attempts:
                why = "a permanent error" if not _is_transient(err) else f"{attempts} attempt(s)"
                raise HubPushError(
                    f"push step '{step}' failed after {why}: {detail}\n"
                    f"The local curated dir {local_dir} is unchanged. Fix the cause (endpoint, permissions, "
                    f"revision), then rerun the same command: finished steps are skipped."
                ) from None
            wait = min(cfg.retry_max_wait, cfg.retry_base_wait * 2 ** (attempt - 1))
            logger.warning("push step '%s': attempt %d/%d failed (%s); retrying in %.3gs",
                           step, attempt, attempts, detail.splitlines()[0][:300], wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _read_json(path: Path, error=None) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        message = f"{path}: invalid JSON ({err}); the file is corrupt or truncated. Fix: rewrite it with `saerl-hf curate`."
        raise (error or HubPushError)(message) from None


def check_curated_dir(local_dir: str | os.PathLike) -> Path:
    """Validate the curated-dir contract; raises naming what is missing."""
    root = Path(local_dir).expanduser()
    missing = [name for name, ok in (("dataset/", (root / "dataset").is_dir()), ("probes/", (root / "probes").is_dir()),
                                     ("summary.json", (root / "summary.json").is_file()),
                                     ("provenance.json", (root / "provenance.json").is_file())) if not ok]
    if missing:
        raise HubPushError(f"{root} is not a curated dir: missing {', '.join(missing)}. Fix: point to the output "
                           f"dir of `saerl-hf curate` (dataset/, probes/, summary.json, provenance.json).")
    for name in ("summary.json", "provenance.json"):
        if not isinstance(_read_json(root / name), dict):
            raise HubPushError(f"{root / name} is not a JSON object. Fix: rewrite it with `saerl-hf curate`.")
    return root


def _load_local_dataset(root: Path, error=HubPushError):
    from datasets import load_from_disk

    try:
        return load_from_disk(str(root / "dataset"))
    except Exception as err:  # noqa: BLE001 - missing/corrupt arrow or state files: one actionable message
        raise error(f"{root / 'dataset'} is not a readable `save_to_disk` dataset ({type(err).__name__}: "
                    f"{str(err)[:300]}). Nothing was pushed or changed. Fix: rerun `saerl-hf curate` into a fresh "
                    f"output dir.") from None


def _versions() -> dict:
    import datasets
    import huggingface_hub

    from saerl_hf import __version__

    return {"saerl-hf": __version__, "datasets": datasets.__version__, "huggingface_hub": huggingface_hub.__version__}


# -- push -----------------------------------------------------------------------------------------------

def push_curated(
    local_dir: str | os.PathLike,
    repo_id: str,
    revision: str = "main",
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    private: bool = False,
    max_retries: int = 4,
    retry_base_wait: float = 1.0,
    retry_max_wait: float = 30.0,
    command: str | None = None,
    request_timeout: float = 120.0,
) -> PushResult:
    """Publish ``local_dir`` to ``repo_id`` at branch ``revision`` (see the module docstring); resumable."""
    cfg = PushConfig(str(local_dir), repo_id, revision, create_pr, commit_message, private, None, max_retries,
                     retry_base_wait, retry_max_wait, request_timeout)
    with _request_timeout(request_timeout):
        return _push_curated(local_dir, cfg, command, token)


@contextmanager
def _request_timeout(seconds: float | None):
    """Bound every HTTP read/write of the push: huggingface_hub's shared client has no timeout, so a server that
    stops answering would hang the push forever instead of failing into the retry loop. The previous client
    factory is restored afterwards."""
    if not seconds:
        yield
        return
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)

    def factory():
        client = previous()
        client.timeout = seconds
        return client

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(previous)


def _push_curated(local_dir, cfg: PushConfig, command: str | None, token: str | None) -> PushResult:
    repo_id, revision, create_pr, private = cfg.repo_id, cfg.revision, cfg.create_pr, cfg.private
    commit_message = cfg.commit_message
    root = check_curated_dir(local_dir)
    from huggingface_hub import HfApi
    from huggingface_hub.utils import get_token

    token = token or get_token()
    api = HfApi(token=token)
    dataset = _load_local_dataset(root)
    content_hash = dataset_content_hash(dataset)
    command = redacted_command() if command is None else _redact(command, token)
    artefacts = _collect_artefacts(root, token)

    def run(step, fn):
        return _retry(step, fn, cfg, token, root)

    run("create repo", lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True))
    if revision != "main":
        run("create branch", lambda: _ensure_branch(api, repo_id, revision))

    target, pr_url = revision, None
    if create_pr:
        target = run("find pull request", lambda: _find_pr(api, repo_id, content_hash)) or revision
    already = run("check remote rows", lambda: _remote_rows_match(api, repo_id, target, content_hash))
    if not already:
        title = commit_message or f"saerl-hf: curated rows ({sum(_split_sizes(dataset).values())} rows)"

        def push_rows():
            # Re-checked on every attempt: a commit whose response was lost must not be pushed again.
            if _remote_rows_match(api, repo_id, target, content_hash):
                return None
            return dataset.push_to_hub(repo_id, revision=target, create_pr=create_pr and target == revision,
                                       commit_message=title, commit_description=f"{HASH_MARKER} {content_hash}",
                                       token=token)

        info = run("push rows", push_rows)
        if create_pr and target == revision and info is not None:
            target, pr_url = info.pr_revision or revision, info.pr_url
        logger.info("pushed rows to %s@%s", repo_id, target)
    else:
        logger.info("rows with sha256 %s already on %s@%s: skipped", content_hash[:12], repo_id, target)

    open_pr = create_pr and target == revision  # no PR yet (the rows were already on the branch)

    def push_artefacts():
        return _push_artefacts(api, repo_id, target, root, dataset, content_hash, artefacts, command,
                               commit_message, token, open_pr)

    pushed, sha, info = run("push card and saerl/", push_artefacts)
    if open_pr and info is not None and info.pr_revision:
        target, pr_url = info.pr_revision, info.pr_url
    return PushResult(repo_id, target, sha, content_hash, not already, pushed, pr_url)


def _ensure_branch(api, repo_id: str, branch: str) -> None:
    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    if branch not in {b.name for b in refs.branches}:
        api.create_branch(repo_id, branch=branch, repo_type="dataset", revision="main", exist_ok=True)


def _marker(text: str) -> str | None:
    match = re.search(re.escape(HASH_MARKER) + r"\s*([0-9a-f]{64})", text or "")
    return match.group(1) if match else None


def _data_files(api, repo_id: str, revision: str) -> dict[str, str]:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        entries = api.list_repo_tree(repo_id, path_in_repo="data", revision=revision, repo_type="dataset",
                                     recursive=True)
        return {e.path: (e.lfs.sha256 if getattr(e, "lfs", None) else e.blob_id)
                for e in entries if hasattr(e, "blob_id")}
    except EntryNotFoundError:
        return {}


def _remote_rows_match(api, repo_id: str, revision: str, content_hash: str) -> bool:
    """True iff the newest commit carrying a row-hash marker has ours and ``data/`` is unchanged since."""
    for commit in api.list_repo_commits(repo_id, repo_type="dataset", revision=revision):
        found = _marker(f"{commit.title}\n{commit.message}")
        if found is None:
            continue
        return found == content_hash and _data_files(api, repo_id, commit.commit_id) == _data_files(
            api, repo_id, revision)
    return False


def _find_pr(api, repo_id: str, content_hash: str) -> str | None:
    """An open PR ref whose rows already match (a rerun of an interrupted ``create_pr`` push)."""
    refs = api.list_repo_refs(repo_id, repo_type="dataset", include_pull_requests=True)
    for ref in reversed(refs.pull_requests or []):
        if _remote_rows_match(api, repo_id, ref.ref, content_hash):
            return ref.ref
    return None


def _collect_artefacts(root: Path, token: str | None) -> dict[str, Path]:
    """repo path -> local file for ``saerl/``; refuses files that contain the token."""
    files = {f"{ARTEFACT_DIR}/provenance.json": root / "provenance.json",
             f"{ARTEFACT_DIR}/summary.json": root / "summary.json"}
    probes = (root / "probes").resolve()
    for path in sorted((root / "probes").rglob("*")):
        if path.is_file():
            if not path.resolve().is_relative_to(probes):
                raise HubPushError(f"{path} links to {path.resolve()}, outside the probes dir; publishing it would upload "
                                   f"a file from elsewhere on this machine. Nothing was pushed. Fix: copy the file "
                                   f"into {root / 'probes'} instead of linking to it.")
            files[f"{ARTEFACT_DIR}/probes/{path.relative_to(root / 'probes').as_posix()}"] = path
    if token:
        needle = token.encode()
        for repo_path, path in files.items():
            if needle in path.read_bytes():
                raise HubPushError(f"{path} contains the access token; it would be published as {repo_path}. "
                                   f"Fix: remove the token from that file and rerun. Nothing was pushed.")
    return files


def _push_artefacts(api, repo_id, revision, root, dataset, content_hash, artefacts, command, commit_message,
                    token, create_pr=False):
    from huggingface_hub import CommitOperationAdd, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    head = api.dataset_info(repo_id, revision=revision).sha
    try:
        readme = Path(hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=head)).read_text("utf-8")
    except EntryNotFoundError:
        readme = ""
    provenance, summary = _read_json(root / "provenance.json"), _read_json(root / "summary.json")
    record = {
        "format": PUSH_FORMAT,
        "dataset_sha256": content_hash,
        "splits": _split_sizes(dataset),
        "dataset_description": _description(dataset),
        "artefacts": {path: file_sha256(local) for path, local in artefacts.items()},
        "push_command": command,
        "versions": _versions(),
    }
    card = render_card(readme, repo_id, revision, provenance, summary, record, _columns(dataset))
    ops = [CommitOperationAdd(path, str(local)) for path, local in artefacts.items()]
    ops.append(CommitOperationAdd(PUSH_RECORD, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()))
    ops.append(CommitOperationAdd("README.md", card.encode()))
    if token:
        for op in ops[-2:]:
            if token.encode() in op.path_or_fileobj:
                raise HubPushError("the generated card or push record contains the access token; refusing to push.")
    info = api.create_commit(repo_id, operations=ops, repo_type="dataset", revision=revision, parent_commit=head,
                             commit_message=commit_message or "saerl-hf: card, probes and provenance",
                             commit_description=f"{HASH_MARKER} {content_hash}", create_pr=create_pr)
    return info.oid != head, info.oid, info


def _split_sizes(dataset) -> dict[str, int]:
    from datasets import DatasetDict

    return {k: len(v) for k, v in dataset.items()} if isinstance(dataset, DatasetDict) else {"train": len(dataset)}


def _description(dataset) -> str:
    from datasets import DatasetDict

    first = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    return first.info.description or ""


def _columns(dataset) -> list[tuple[str, str]]:
    from datasets import DatasetDict

    first = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    return [(name, str(feature)) for name, feature in first.features.items()]


COLUMN_DOCS = {
    "id": "stable row id `<source>/<original id>`",
    "problem": "the problem statement",
    "answer": "gold final answer (string)",
    "solution": "reference solution when the source has one",
    "source": "source dataset name",
    "subject": "subject / subset when the source has one",
    "level": "source difficulty level when the source has one",
    "sae_idx": "indices of the top-k active SAE latents (pooled over the prompt)",
    "sae_val": "activations of those latents, aligned with `sae_idx`",
    "sae_l0": "number of active latents before top-k truncation",
    "difficulty": "predicted difficulty from the SAE difficulty probe (higher = harder)",
    "quality": "predicted quality score from the SAE quality probe",
    "cluster": "cluster id from SAE-feature clustering",
    "curriculum_rank": "position in the SAERL curriculum order (0 = first)",
}


def render_card(readme: str, repo_id: str, revision: str, provenance: dict, summary: dict, record: dict,
                columns: list[tuple[str, str]]) -> str:
    """Render ``model_cards/dataset_card.md``, keeping the YAML that ``push_to_hub`` wrote (configs, dataset_info)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    if not TEMPLATE_PATH.is_file():
        raise HubPushError(f"Card template {TEMPLATE_PATH} not found. Fix: run from a source checkout (pip install -e .) "
                           f"so model_cards/ sits beside the saerl_hf package.")
    existing = DatasetCard(readme).data.to_dict() if readme.strip() else {}
    sources = summary.get("sources") or []
    licenses = sorted({s.get("license") for s in sources if isinstance(s, dict) and s.get("license")})
    ours = {
        "license": "other" if len(licenses) != 1 else _license_id(licenses[0]),
        "tags": ["saerl", "sparse-autoencoder", "curriculum-learning", "math", "grpo"],
        "source_datasets": sorted({s.get("hub") or s.get("name") for s in sources
                                   if isinstance(s, dict) and (s.get("hub") or s.get("name"))}),
        "task_categories": ["text-generation"],
        "language": ["en"],
    }
    merged = {**existing, **ours}
    card = DatasetCard.from_template(
        DatasetCardData(**merged), template_path=str(TEMPLATE_PATH),
        repo_id=repo_id, revision=revision, provenance=provenance, summary=summary, record=record,
        sources=sources, licenses=licenses, columns=[(n, t, COLUMN_DOCS.get(n, "")) for n, t in columns],
        order=summary.get("order") or {}, counts=summary.get("counts") or {}, metrics=summary.get("metrics") or {},
        versions={**(provenance.get("versions") or provenance.get("library_versions") or {}), **record["versions"]},
    )
    return str(card)


def _license_id(text: str) -> str:
    known = {"mit": "mit", "apache-2.0": "apache-2.0", "cc by-nc 4.0": "cc-by-nc-4.0", "cc-by-4.0": "cc-by-4.0"}
    return known.get(text.strip().lower(), "other")


# -- load -----------------------------------------------------------------------------------------------

def load_curated(repo_id_or_local_dir: str | os.PathLike, revision: str | None = None, token: str | None = None,
                 verify: bool = True) -> CuratedData:
    """A curated dataset (local dir, or Hub repo at ``revision``: branch, tag, ``refs/pr/N`` or commit sha)
    with its provenance, summary and the local path of its fitted probes."""
    source = str(repo_id_or_local_dir)
    local = Path(source).expanduser()
    if local.is_dir():
        try:
            root = check_curated_dir(local)
        except HubPushError as err:
            raise CuratedLoadError(str(err)) from None
        return CuratedData(_load_local_dataset(root, CuratedLoadError),
                           _read_json(root / "provenance.json", CuratedLoadError),
                           _read_json(root / "summary.json", CuratedLoadError), root / "probes", str(root))
    return _load_from_hub(source, revision, token, verify)


def _load_from_hub(repo_id: str, revision: str | None, token: str | None, verify: bool) -> CuratedData:
    from datasets import load_dataset
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(token=token)
    revision = revision or "main"
    try:
        sha = api.dataset_info(repo_id, revision=revision).sha
    except RevisionNotFoundError:
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
        raise CuratedLoadError(
            f"Revision '{revision}' does not exist in dataset repo '{repo_id}'. Branches: "
            f"{', '.join(sorted(b.name for b in refs.branches)) or '-'}; tags: "
            f"{', '.join(sorted(t.name for t in refs.tags)) or '-'}. Fix: pass one of those or a commit sha.",
            reason="revision") from None
    except RepositoryNotFoundError:
        raise CuratedLoadError(f"Dataset repo '{repo_id}' not found (or not accessible with this token). Fix: check "
                               f"the id, or pass a local curated dir.", reason="repo") from None
    # File names come from the server: refuse any that could escape the download folder before fetching any.
    check_repo_paths(api.list_repo_files(repo_id, repo_type="dataset", revision=sha), f"{repo_id}@{revision}")
    path = Path(snapshot_download(repo_id, repo_type="dataset", revision=sha, allow_patterns=f"{ARTEFACT_DIR}/*",
                                  token=token))
    record_path = path / PUSH_RECORD
    if not record_path.is_file():
        raise CuratedLoadError(f"{repo_id}@{revision} has no {PUSH_RECORD}: it was not published by "
                               f"`saerl-hf push`, or the push did not finish. Fix: rerun the push.",
                               reason="not_curated")
    record = _read_json(record_path, CuratedLoadError)
    if not isinstance(record, dict) or not isinstance(record.get("dataset_sha256"), str):
        raise CuratedLoadError(f"{repo_id}@{revision}: {PUSH_RECORD} has no 'dataset_sha256'. Fix: rerun the push.")
    # Pin the sha: datasets falls back to another revision's cache when a revision has no data files.
    loaded = load_dataset(repo_id, revision=sha, token=token)
    dataset = loaded["train"] if list(loaded) == ["train"] and list(record.get("splits", {})) == ["train"] else loaded
    for split in (dataset.values() if hasattr(dataset, "values") else [dataset]):
        split.info.description = record.get("dataset_description", "")
    if verify and dataset_content_hash(dataset) != record["dataset_sha256"]:
        raise CuratedLoadError(f"{repo_id}@{revision} ({sha[:12]}): the rows do not match the content hash recorded "
                               f"in {PUSH_RECORD}. Fix: rerun the push, or load with verify=False to inspect.",
                               reason="mismatch")
    for name in ("provenance.json", "summary.json"):
        if not (path / ARTEFACT_DIR / name).is_file():
            raise CuratedLoadError(f"{repo_id}@{revision} has no {ARTEFACT_DIR}/{name}. Fix: rerun the push.")
    return CuratedData(dataset, _read_json(path / ARTEFACT_DIR / "provenance.json", CuratedLoadError),
                       _read_json(path / ARTEFACT_DIR / "summary.json", CuratedLoadError),
                       path / ARTEFACT_DIR / "probes", repo_id, revision, sha, record)


# -- CLI ------------------------------------------------------------------------------------------------

def cli_main(argv: list[str]) -> int:
    """`saerl-hf push <curated_dir> --repo-id X --revision Y [--create-pr]`."""
    from trl import TrlParser

    argv = list(argv)
    command = redacted_command(["saerl-hf", "push", *argv])
    if argv and not argv[0].startswith("-"):
        argv = ["--curated_dir", argv[0], *argv[1:]]
    from saerl_hf.configs import parse_config

    (cfg,) = parse_config(TrlParser(PushConfig, prog="saerl-hf push"), argv)
    if not cfg.curated_dir or not cfg.repo_id:
        print("saerl-hf push: need <curated_dir> and --repo-id. Example: saerl-hf push out/curated "
              "--repo-id me/gsm8k-saerl --revision v1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        result = push_curated(cfg.curated_dir, cfg.repo_id, cfg.revision, cfg.create_pr, cfg.commit_message,
                              cfg.token, cfg.private, cfg.max_retries, cfg.retry_base_wait, cfg.retry_max_wait,
                              command=command, request_timeout=cfg.request_timeout)
    except HubPushError as err:
        print(f"saerl-hf push: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"repo_id": result.repo_id, "revision": result.revision, "commit": result.commit_sha,
                      "dataset_sha256": result.dataset_sha256, "dataset_pushed": result.dataset_pushed,
                      "artefacts_pushed": result.artefacts_pushed, "pr_url": result.pr_url}))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
