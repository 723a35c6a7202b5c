"""Data-parallel featurization under ``accelerate launch`` / ``torchrun`` (one process per GPU, or CPU/gloo).

The unit of work is a chunk of rows: chunk ``i`` is featurized by rank ``i % world_size`` and saved atomically
(:func:`saerl_hf.stages.chunked_map`) to a directory every rank sees (one machine, or a filesystem the nodes
share); after a barrier rank 0 concatenates the chunks in order. A chunk is the same rows in the same map batch
whichever rank runs it, so the result is the one a single process computes, and a killed launch resumes from
the chunks already written. Without a launcher (``WORLD_SIZE`` unset or 1) every helper is a no-op.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

logger = logging.getLogger(__name__)


def world_size() -> int:
    """Processes in this launch (torchrun / accelerate set ``WORLD_SIZE``); 1 without a launcher."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0) if world_size() > 1 else 0


def is_main() -> bool:
    """Rank 0 (or the only process): the one that builds shared stages and assembles results."""
    return rank() == 0


def owns(index: int) -> bool:
    """Whether this rank computes work item ``index`` (round robin over the ranks)."""
    return index % world_size() == rank()


_ALONE = [False]  # set on rank 0 once the other ranks have finished their share and left


def continue_alone() -> None:
    """Rank 0 goes on by itself (the other ranks have returned): barriers from here on are no-ops."""
    _ALONE[0] = True


def barrier() -> None:
    """Wait for every rank (gloo on CPU, NCCL on GPUs; the process group comes from accelerate); no-op alone."""
    if world_size() <= 1 or _ALONE[0]:
        return
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        # cpu=True on a machine without GPUs: plain PartialState() under torchrun would stay single-process
        PartialState(cpu=not torch.cuda.is_available())
    if not dist.is_initialized():
        raise RuntimeError(f"WORLD_SIZE={world_size()} but no process group could be set up. Fix: start the "
                           f"command with `accelerate launch` or `torchrun`, or unset WORLD_SIZE.")
    dist.barrier()


def rank_device() -> str | None:
    """``cuda:<local rank>`` for a multi-process launch on GPUs, else None (the featurizer's own default)."""
    import torch

    if world_size() > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0) % torch.cuda.device_count()}"
    return None


def featurize_across_processes(dataset, config):
    """``features.featurize`` split over the launch's ranks: the featurized dataset on rank 0, None elsewhere.

    Chunks are ``config.map_batch_size`` rows (one map batch, as in a single process) and go under
    ``<cache_dir>/shards-<fingerprint>``, keyed by the input and every setting, so a rerun reuses them.
    """
    from saerl_hf.features import Featurizer, featurize, featurize_fingerprint
    from saerl_hf.models import cache_dir
    from saerl_hf.stages import chunked_map

    if world_size() <= 1:
        return featurize(dataset, config)
    config = replace(config, device=config.device or rank_device())
    folder = Path(config.cache_dir) if config.cache_dir else cache_dir() / "featurize"
    shards = folder / f"shards-{featurize_fingerprint(dataset, Featurizer.from_config(config))}"
    logger.info("featurize: rank %d of %d, chunks of %d rows under %s", rank(), world_size(), config.map_batch_size,
                shards)
    return chunked_map(dataset, shards, lambda chunk: featurize(chunk, config), config.map_batch_size, "featurize",
                       desc=f"featurize (rank {rank()})")


# ----------------------------------------------------------------------------- content hash, verified once


VERIFIED_PREFIX = "saerl_verified_"


def _files_signature(dataset) -> list | None:
    """(path, size, mtime) of every Arrow file behind a Dataset / DatasetDict; None when it lives in memory."""
    splits = dataset.values() if hasattr(dataset, "values") else [dataset]
    files = sorted({entry["filename"] for split in splits for entry in split.cache_files})
    if not files:
        return None
    return [[name, os.stat(name).st_size, os.stat(name).st_mtime_ns] for name in files]


def verify_content_hash_once(dataset, expected: str, hash_fn) -> bool:
    """Whether ``hash_fn(dataset) == expected``, with the rows read once per machine, not on every rank.

    The local main process hashes (the other ranks wait at a barrier) and writes the verdict beside the dataset's
    Arrow files, keyed by their paths, sizes and modification times; the other ranks, and later loads of the
    same unchanged files, read it instead of touching every row. A dataset held in memory is simply hashed.
    """
    import hashlib
    import json

    signature = _files_signature(dataset)
    if signature is None:
        return hash_fn(dataset) == expected
    key = hashlib.sha256(json.dumps([expected, signature]).encode()).hexdigest()[:32]
    marker = Path(signature[0][0]).parent / f"{VERIFIED_PREFIX}{key}.json"
    if int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and not marker.is_file():
        verdict = {"ok": hash_fn(dataset) == expected, "expected": expected, "files": signature}
        try:
            tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(verdict))
            tmp.replace(marker)
        except OSError as err:  # a read-only cache: every rank hashes for itself
            logger.warning("content hash: cannot record the verdict at %s (%s)", marker, err)
            barrier()
            return verdict["ok"]
    barrier()
    if marker.is_file():
        return bool(json.loads(marker.read_text())["ok"])
    return hash_fn(dataset) == expected
