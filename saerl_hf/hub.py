"""Publish a curated dataset dir to a Hub dataset revision (branch) with its probes and card, and load it back.

A push is three idempotent steps, each retried with bounded exponential backoff on transient errors
(5xx, 408/429, timeouts, connection errors); any other 4xx (auth, not found) fails at once:

1. the dataset repo (created if missing) and the branch (created from ``main`` if missing);
2. the rows, with ``Dataset.push_to_hub``; the commit carries ``saerl-dataset-sha256: <content hash>``, so a
   rerun whose rows are already on the branch (same hash, ``data/`` unchanged since) skips this step;
3. ``saerl/`` (probes, provenance, summary, push record) and the card, in one commit; unchanged files are
   dropped by ``huggingface_hub`` itself, so a rerun after a complete push commits nothing.

Retries and timeouts go through public APIs only (``tenacity`` for the backoff, huggingface_hub's public
``get_session`` client for the timeout), set by :class:`PushConfig` fields (``--max_retries``,
``--retry_base_wait``, ``--retry_max_wait``, ``--request_timeout``); file downloads keep huggingface_hub's own
``HF_HUB_DOWNLOAD_TIMEOUT`` / ``HF_HUB_ETAG_TIMEOUT`` environment settings.

The local curated dir is only read. The access token is never written to the card, the push record, logs
or error messages; artefacts that contain it are refused.

Split along its seams: :mod:`saerl_hf.hub_push` (the push), :mod:`saerl_hf.hub_load` (the contract and the load),
:mod:`saerl_hf.cards` (the card); every public name stays importable from here.
"""

from __future__ import annotations

import json
import logging
import sys

from saerl_hf.cards import COLUMN_DOCS, render_card
from saerl_hf.hub_load import (
    ARTEFACT_DIR,
    HASH_MARKER,
    PUSH_FORMAT,
    PUSH_RECORD,
    CuratedData,
    CuratedLoadError,
    HubPushError,
    check_curated_dir,
    check_repo_paths,
    dataset_content_hash,
    is_unsafe_repo_path,
    load_curated,
)
from saerl_hf.hub_push import (
    PushConfig,
    PushResult,
    _collect_artefacts,
    _retry,
    push_curated,
)
from saerl_hf.redact import redacted_command

__all__ = ["ARTEFACT_DIR", "COLUMN_DOCS", "HASH_MARKER", "PUSH_FORMAT", "PUSH_RECORD", "CuratedData",
           "CuratedLoadError", "HubPushError", "PushConfig", "PushResult", "check_curated_dir", "check_repo_paths",
           "cli_main", "dataset_content_hash", "is_unsafe_repo_path", "load_curated", "push_curated",
           "redacted_command", "render_card", "_collect_artefacts", "_retry"]


def cli_main(argv: list[str]) -> int:
    """`saerl-hf push <curated_dir> --repo-id X --hub-revision Y [--create-pr]`."""
    from trl import TrlParser

    argv = list(argv)
    command = redacted_command(["saerl-hf", "push", *argv])
    if argv and not argv[0].startswith("-"):
        argv = ["--curated_dir", argv[0], *argv[1:]]
    from saerl_hf.configs import parse_config

    (cfg,) = parse_config(TrlParser(PushConfig, prog="saerl-hf push"), argv)
    if not cfg.curated_dir or not cfg.repo_id:
        print("saerl-hf push: need <curated_dir> and --repo-id. Example: saerl-hf push out/curated "
              "--repo-id me/gsm8k-saerl --hub-revision v1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if cfg.token:
        logging.getLogger("saerl_hf.hub").warning(
            "--token puts the token in shell history and the process list; prefer HF_TOKEN or `hf auth login`.")
    try:
        result = push_curated(cfg.curated_dir, cfg.repo_id, cfg.hub_revision, cfg.create_pr, cfg.commit_message,
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
