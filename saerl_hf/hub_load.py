"""Curated revisions: the contract shared by push and load (files, content hash, safe paths, errors) and
:func:`load_curated`, which reads a curated dir or a Hub revision back with its provenance and probes.

A pushed revision holds the rows (``data/``), the card (``README.md``) and ``saerl/``: ``provenance.json``,
``summary.json``, ``probes/`` and ``push.json``, the push record (content hash, splits, the dataset's own
description and, in a field of its own, the SAE feature provenance that travels in the dataset info).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from saerl_hf.errors import SaerlError

ARTEFACT_DIR = "saerl"
PUSH_RECORD = f"{ARTEFACT_DIR}/push.json"
HASH_MARKER = "saerl-dataset-sha256:"
PUSH_FORMAT = "saerl-hf/curated-push/1"


class HubPushError(SaerlError, RuntimeError):
    """A push did not complete; the message says which step, why, and that a rerun resumes it."""


class CuratedLoadError(SaerlError, ValueError):
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


def split_description(text: str | None) -> tuple[str, dict]:
    """(the dataset's own description, the saerl feature provenance) from a dataset's ``info.description``,
    where :func:`saerl_hf.sparse.write_provenance` keeps both as JSON."""
    try:
        payload = json.loads(text or "")
    except json.JSONDecodeError:
        return text or "", {}
    if not isinstance(payload, dict) or "saerl" not in payload:
        return text or "", {}
    return str(payload.get("description") or ""), payload["saerl"] if isinstance(payload["saerl"], dict) else {}


def join_description(description: str, provenance: dict) -> str:
    """The inverse of :func:`split_description` (the form ``write_provenance`` writes)."""
    if not provenance:
        return description
    payload = {"saerl": provenance, **({"description": description} if description else {})}
    return json.dumps(payload, sort_keys=True)


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

    from saerl_hf.distributed import verify_content_hash_once  # rows hashed once per machine, not per rank

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
        # Records before "feature_provenance" kept both in "dataset_description".
        split.info.description = join_description(record.get("dataset_description") or "",
                                                  record.get("feature_provenance") or {})
    if verify and not verify_content_hash_once(dataset, record["dataset_sha256"], dataset_content_hash):
        raise CuratedLoadError(f"{repo_id}@{revision} ({sha[:12]}): the rows do not match the content hash recorded "
                               f"in {PUSH_RECORD}. Fix: rerun the push, or load with verify=False to inspect.",
                               reason="mismatch")
    for name in ("provenance.json", "summary.json"):
        if not (path / ARTEFACT_DIR / name).is_file():
            raise CuratedLoadError(f"{repo_id}@{revision} has no {ARTEFACT_DIR}/{name}. Fix: rerun the push.")
    return CuratedData(dataset, _read_json(path / ARTEFACT_DIR / "provenance.json", CuratedLoadError),
                       _read_json(path / ARTEFACT_DIR / "summary.json", CuratedLoadError),
                       path / ARTEFACT_DIR / "probes", repo_id, revision, sha, record)
