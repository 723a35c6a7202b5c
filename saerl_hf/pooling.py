"""Pooling SAE codes over a problem's tokens into one sparse row, and the index space each pooling writes.

Poolings: ``mean``, ``max``, ``sum`` and ``last`` (the last problem token) give one value per latent, index
``i`` = latent ``i``. ``mean+max`` writes both in one concatenated index space: index ``i`` < ``d_sae`` is the
mean of latent ``i``, index ``d_sae + i`` its max over the same tokens, so the width is ``2 * d_sae``.
``top_k`` keeps the k largest pooled entries of a row; ``None`` (or 0) keeps every active one (the sparse
columns already hold rows of any length).
"""

from __future__ import annotations

import numpy as np
import torch

POOLINGS = ("mean", "max", "sum", "mean+max", "last")
FEATURE_SETS = ("sae", "dense", "sae+dense")


def pooled_width(pooling: str, d_sae: int) -> int:
    """Width of the index space ``pooling`` writes (``2 * d_sae`` for ``mean+max``)."""
    return 2 * int(d_sae) if pooling == "mean+max" else int(d_sae)


def index_layout(pooling: str, d_sae: int) -> str:
    """One line for provenance and cards: which index range holds what."""
    if pooling == "mean+max":
        return f"[0, {d_sae}): mean of latent i; [{d_sae}, {2 * d_sae}): max of latent i - {d_sae}"
    return f"[0, {d_sae}): {pooling} of latent i"


def pool_codes(codes: torch.Tensor, pooling: str) -> torch.Tensor:
    """(tokens, d_sae) SAE codes of one row -> its pooled vector (``pooled_width`` long)."""
    if pooling == "mean":
        return codes.mean(0)
    if pooling == "max":
        return codes.max(0).values
    if pooling == "sum":
        return codes.sum(0)
    if pooling == "last":
        return codes[-1]
    if pooling == "mean+max":
        return torch.cat([codes.mean(0), codes.max(0).values])
    raise ValueError(f"pooling must be one of {POOLINGS}, got '{pooling}'.")


def active_latents(pooled: torch.Tensor, pooling: str, d_sae: int) -> torch.Tensor:
    """Per row, how many distinct SAE latents are active in the pooled vector (``sae_l0``; a latent counted
    once under ``mean+max``)."""
    active = pooled != 0
    if pooling == "mean+max":
        active = active[:, :d_sae] | active[:, d_sae:]
    return active.sum(1)


def sparse_rows(pooled: torch.Tensor, top_k: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, width) pooled vectors -> per row ``(idx int32, val float32)`` sorted by index: the ``top_k``
    largest non-zero entries, or every non-zero entry when ``top_k`` is None/0."""
    if top_k:
        vals, idx = pooled.topk(min(int(top_k), pooled.shape[1]), dim=1)
    else:
        vals, idx = pooled, torch.arange(pooled.shape[1], device=pooled.device).expand_as(pooled)
    out = []
    for j in range(pooled.shape[0]):
        keep = vals[j] != 0
        row_idx, row_val = idx[j][keep], vals[j][keep]
        order = row_idx.argsort()
        out.append((row_idx[order].cpu().numpy().astype(np.int32), row_val[order].cpu().numpy().astype(np.float32)))
    return out
