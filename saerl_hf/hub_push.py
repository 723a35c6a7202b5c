"""Publish a curated dir to a Hub dataset revision: the three resumable, retried steps (see :mod:`saerl_hf.hub`)."""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from saerl_hf.cards import render_card
from saerl_hf.hub_load import (
    ARTEFACT_DIR,
    HASH_MARKER,
    PUSH_FORMAT,
    PUSH_RECORD,
    HubPushError,
    _load_local_dataset,
    _read_json,
    check_curated_dir,
    dataset_content_hash,
    split_description,
)
from saerl_hf.models import file_sha256
from saerl_hf.redact import redact, redacted_command

logger = logging.getLogger("saerl_hf.hub")

TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


@dataclass
class PushConfig:
    """Options of ``saerl-hf push`` (YAML via ``--config``, every field overridable on the command line)."""

    curated_dir: str | None = field(default=None, metadata={"help": "Curated dir written by `saerl-hf curate` "
                                                                    "(dataset/, probes/, summary.json, provenance.json)."})
    repo_id: str | None = field(default=None, metadata={"help": "Hub dataset repo, e.g. `me/gsm8k-saerl`."})
    hub_revision: str = field(default="main", metadata={"help": "Branch to publish to (created from main if missing)."})
    create_pr: bool = field(default=False, metadata={"help": "Open a pull request against the branch instead of "
                                                             "committing to it."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit title (default: derived)."})
    private: bool = field(default=False, metadata={"help": "Create the repo private if it does not exist."})
    token: str | None = field(default=None, metadata={"help": "Access token; prefer HF_TOKEN or the saved login (the "
                                                              "default): a flag is seen in shell history and `ps`. "
                                                              "Never written anywhere."})
    max_retries: int = field(default=4, metadata={"help": "Retries per step on 5xx/408/429/timeouts/connection "
                                                          "errors (other 4xx fail at once)."})
    retry_base_wait: float = field(default=1.0, metadata={"help": "First backoff wait in seconds (doubles)."})
    retry_max_wait: float = field(default=30.0, metadata={"help": "Cap of one backoff wait in seconds."})
    request_timeout: float = field(default=120.0, metadata={
        "help": "Seconds one HTTP read/write may stall before it counts as a (retried) timeout; 0 waits forever. "
                "File downloads keep huggingface_hub's own HF_HUB_DOWNLOAD_TIMEOUT / HF_HUB_ETAG_TIMEOUT."})


@dataclass
class PushResult:
    repo_id: str
    revision: str  # the branch, or refs/pr/N with create_pr
    commit_sha: str
    dataset_sha256: str
    dataset_pushed: bool  # False when the rows were already there
    artefacts_pushed: bool  # False when saerl/ and the card were already there
    pr_url: str | None = None


def _is_transient(err: BaseException) -> bool:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return status in TRANSIENT_STATUS or status >= 500
    name = type(err).__name__
    return isinstance(err, (ConnectionError, TimeoutError)) or any(
        key in name for key in ("Timeout", "ConnectError", "NetworkError", "RemoteProtocolError", "ReadError"))


def _retry(step: str, fn, cfg: PushConfig, token: str | None, local_dir: Path, before_attempt=None):
    """Run ``fn`` under tenacity: at most ``max_retries`` retries on transient errors, the wait doubling from
    ``retry_base_wait`` up to ``retry_max_wait``; a permanent error (4xx) fails at once. ``before_attempt`` runs
    before each try (it re-applies the request timeout)."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    attempts = cfg.max_retries + 1

    def attempt():
        if before_attempt is not None:
            before_attempt()
        return fn()

    def log_retry(state) -> None:
        err = state.outcome.exception()
        logger.warning("push step '%s': attempt %d/%d failed (%s); retrying in %.3gs", step, state.attempt_number,
                       attempts, _detail(err, token).splitlines()[0][:300], state.next_action.sleep)

    retrying = Retrying(stop=stop_after_attempt(attempts), retry=retry_if_exception(_is_transient),
                        wait=wait_exponential(multiplier=cfg.retry_base_wait, max=cfg.retry_max_wait),
                        before_sleep=log_retry, reraise=True)
    try:
        return retrying(attempt)
    except Exception as err:  # noqa: BLE001 - classified, re-raised with context
        why = f"{attempts} attempt(s)" if _is_transient(err) else "a permanent error"
        raise HubPushError(
            f"push step '{step}' failed after {why}: {_detail(err, token)}\n"
            f"The local curated dir {local_dir} is unchanged. Fix the cause (endpoint, permissions, "
            f"revision), then rerun the same command: finished steps are skipped."
        ) from None


def _detail(err: BaseException, token: str | None) -> str:
    return redact(f"{type(err).__name__}: {err}", token)


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
    with _request_timeout(request_timeout) as apply_timeout:
        return _push_curated(local_dir, cfg, command, token, apply_timeout)


@contextmanager
def _request_timeout(seconds: float | None):
    """Bound every HTTP read/write of the push: huggingface_hub's shared client (public ``get_session``) has no
    timeout, so a server that stops answering would hang the push instead of failing into the retry loop.
    Yields a function that (re)applies the bound to the current shared client, to call before each attempt:
    huggingface_hub replaces that client after a connection error. Every client touched gets its timeout back."""
    if not seconds:
        yield lambda: None
        return
    from huggingface_hub import get_session

    previous = {}  # id -> (client, its timeout before the push)

    def apply() -> None:
        client = get_session()
        previous.setdefault(id(client), (client, client.timeout))
        client.timeout = seconds

    apply()
    try:
        yield apply
    finally:
        for client, timeout in previous.values():
            client.timeout = timeout


def _push_curated(local_dir, cfg: PushConfig, command: str | None, token: str | None,
                  apply_timeout) -> PushResult:
    repo_id, revision, create_pr, private = cfg.repo_id, cfg.hub_revision, cfg.create_pr, cfg.private
    commit_message = cfg.commit_message
    root = check_curated_dir(local_dir)
    from huggingface_hub import HfApi
    from huggingface_hub.utils import get_token

    token = token or get_token()
    api = HfApi(token=token)
    dataset = _load_local_dataset(root)
    content_hash = dataset_content_hash(dataset)
    command = redacted_command() if command is None else redact(command, token)
    artefacts = _collect_artefacts(root, token)

    def run(step, fn):
        return _retry(step, fn, cfg, token, root, before_attempt=apply_timeout)

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
    description, feature_provenance = _description(dataset)
    record = {
        "format": PUSH_FORMAT,
        "dataset_sha256": content_hash,
        "splits": _split_sizes(dataset),
        # The dataset's own description, and the SAE feature provenance in a field of its own (locally both
        # travel in info.description; a Hub reader sees them apart).
        "dataset_description": description,
        "feature_provenance": feature_provenance,
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


def _description(dataset) -> tuple[str, dict]:
    """(own description, feature provenance) of the (first split of the) dataset."""
    from datasets import DatasetDict

    first = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    return split_description(first.info.description)


def _columns(dataset) -> list[tuple[str, str]]:
    from datasets import DatasetDict

    first = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    return [(name, str(feature)) for name, feature in first.features.items()]
