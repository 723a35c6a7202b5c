"""A content-addressed disk cache of the reader's activation blocks, so SAEs trained on the same text reuse them.

An SAE sweep trains several SAEs (widths, k, losses) on the same texts in the same order: without a cache each
point runs the reader over every text again, and that forward is most of a small SAE's training time. A block is
keyed by the reader (id, dtype, hook) and the exact token ids of its sequences, and stored in the reader's own dtype
(lossless: a bfloat16 reader's activations are bfloat16 values), as safetensors, written atomically.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


class ActivationCache:
    """``get(seqs)`` / ``put(seqs, block)`` for one reader; ``hits`` and ``misses`` count this run's lookups.

    Change a model's weights in place and the cache cannot tell: delete ``root`` (or use another) then.
    """

    def __init__(self, root: str | Path, reader: str):
        self.root, self.reader = Path(root), reader
        self.hits = self.misses = 0

    def _path(self, seqs: list[list[int]]) -> Path:
        digest = hashlib.sha256(self.reader.encode())
        for ids in seqs:
            digest.update(len(ids).to_bytes(4, "little"))
            digest.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
        key = digest.hexdigest()
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, seqs: list[list[int]]) -> torch.Tensor | None:
        """The stored block of these sequences (in float32, as the stream hands blocks out), or None."""
        from safetensors.torch import load_file

        path = self._path(seqs)
        if not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return load_file(str(path))["acts"].float()

    def put(self, seqs: list[list[int]], block: torch.Tensor) -> None:
        """Store ``block`` (the reader's dtype) for these sequences; a kill mid-write leaves no partial file."""
        from safetensors.torch import save_file

        path = self._path(seqs)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file({"acts": block.contiguous().cpu()}, str(tmp))
        os.replace(tmp, path)

    def summary(self) -> str:
        total = self.hits + self.misses
        return f"activation cache {self.root}: {self.hits:,} of {total:,} blocks read from disk"
