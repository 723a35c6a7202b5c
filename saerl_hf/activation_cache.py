"""A content-addressed disk cache of the reader's activation blocks, so SAEs trained on the same text reuse them.

An SAE sweep trains several SAEs (widths, k, losses) on the same texts in the same order: without a cache each
point runs the reader over every text again, and that forward is most of a small SAE's training time. A block is
keyed by the reader (resolved weights, dtype, hook, device; ``reader_key``) and the exact token ids of its sequences, and stored in the reader's own dtype
(lossless: a bfloat16 reader's activations are bfloat16 values), as safetensors, written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


#: Bumped whenever how a block is built changes (which positions are kept, which module output is read).
CACHE_VERSION = 1


def reader_key(model_path: str, dtype: str, hook: str, device: str) -> str:
    """The reader part of every key: the resolved model dir with its weight files' names, sizes and mtimes (a
    checkpoint retrained in place misses), dtype, hook, device type (CPU and GPU kernels round differently)."""
    root = Path(model_path).resolve()
    files = sorted(p for p in root.glob("*") if p.suffix in (".safetensors", ".bin", ".gguf", ".pt")) \
        if root.is_dir() else []
    weights = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return f"v{CACHE_VERSION}|{root}|{weights}|{dtype}|{hook}|{torch.device(device).type}"


class ActivationCache:
    """``get(seqs)`` / ``put(seqs, block)`` for one reader (``reader_key``); ``hits`` and ``misses`` count this
    run's lookups. A write that fails (disk full) is logged once and turns writing off: training goes on."""

    def __init__(self, root: str | Path, reader: str):
        self.root, self.reader = Path(root), reader
        self.hits = self.misses = 0
        self.writable = True

    def _path(self, seqs: list[list[int]]) -> Path:
        digest = hashlib.sha256(self.reader.encode())
        for ids in seqs:
            digest.update(len(ids).to_bytes(4, "little"))
            digest.update(np.asarray(ids, dtype=np.int64).tobytes())  # no tensor per lookup; same bytes
        key = digest.hexdigest()
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, seqs: list[list[int]]) -> torch.Tensor | None:
        """The stored block of these sequences (in float32, as the stream hands blocks out), or None."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self._path(seqs)
        try:
            block = load_file(str(path))["acts"] if path.is_file() else None
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:  # damaged: a miss, rewritten
            logger.warning("activation cache: unreadable %s (%s); recomputing it", path, err)
            block = None
        if block is None or len(block) != sum(len(ids) - 1 for ids in seqs):  # position 0 is never kept
            self.misses += 1
            return None
        self.hits += 1
        return block.float()

    def put(self, seqs: list[list[int]], block: torch.Tensor) -> None:
        """Store ``block`` (the reader's dtype) for these sequences; a kill mid-write leaves no partial file."""
        from safetensors.torch import save_file

        if not self.writable:
            return
        path = self._path(seqs)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({"acts": block.contiguous().cpu()}, str(tmp))
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self.writable = False
            logger.warning("activation cache: writing %s failed (%s); no more blocks are stored this run "
                           "(training goes on, reading the reader)", path, err)

    def summary(self) -> str:
        """One line for the log: how much of this run came from disk."""
        total = self.hits + self.misses
        return f"activation cache {self.root}: {self.hits:,} of {total:,} blocks read from disk"
