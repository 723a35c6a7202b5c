"""Pooling SAE codes over a problem's tokens into one sparse row, and the index space each pooling writes.

Poolings: ``mean``, ``max``, ``sum`` and ``last`` (the last problem token) give one value per latent, index
``i`` = latent ``i``. The two-part poolings ``mean+max`` and ``mean+last`` write two in one concatenated index
space: index ``i`` < ``d_sae`` is the mean of latent ``i``, index ``d_sae + i`` its max over the same tokens (or its
value at the last problem token, which sees the whole problem in order: mean pooling is nearly blind to word
order), so the width is ``2 * d_sae``.
``top_k`` keeps the k largest pooled entries of a row; ``None`` (or 0) keeps every active one (the sparse
columns already hold rows of any length).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

POOLINGS = ("mean", "max", "sum", "mean+max", "last", "mean+last")
#: Two-part poolings -> (the part at [0, d_sae), the part at [d_sae, 2 * d_sae)).
TWO_PART = {"mean+max": ("mean", "max"), "mean+last": ("mean", "last")}
FEATURE_SETS = ("sae", "dense", "sae+dense")


def pooled_width(pooling: str, d_sae: int) -> int:
    """Width of the index space ``pooling`` writes (``2 * d_sae`` for the two-part poolings)."""
    return 2 * int(d_sae) if pooling in TWO_PART else int(d_sae)


def index_layout(pooling: str, d_sae: int) -> str:
    """One line for provenance and cards: which index range holds what."""
    if pooling in TWO_PART:
        first, second = TWO_PART[pooling]
        return f"[0, {d_sae}): {first} of latent i; [{d_sae}, {2 * d_sae}): {second} of latent i - {d_sae}"
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
    if pooling in TWO_PART:
        return torch.cat([pool_codes(codes, part) for part in TWO_PART[pooling]])
    raise ValueError(f"pooling must be one of {POOLINGS}, got '{pooling}'.")


def active_latents(pooled: torch.Tensor, pooling: str, d_sae: int) -> torch.Tensor:
    """Per row, how many distinct SAE latents are active in the pooled vector (``sae_l0``; a latent counted
    once under a two-part pooling)."""
    active = pooled != 0
    if pooling in TWO_PART:
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


NARROWABLE = ("mean", "max", "mean+max")


def narrow_pooling(dataset, pooling: str, top_k: int | None):
    """Features of ``pooling`` (mean, max or mean+max) and ``top_k``, derived from features featurized with
    ``mean+max`` and every active latent kept: one reader pass serves every such variant (the report's variant
    sweep), giving what a separate featurize pass with those settings writes (ties at the top-k edge aside)."""
    from saerl_hf.sparse import feature_provenance, write_provenance

    source = feature_provenance(dataset)
    if source.get("pooling") != "mean+max" or source.get("top_k"):
        raise ValueError(f"narrow_pooling needs features featurized with pooling mean+max and top_k 0 (every active "
                         f"latent); these have pooling {source.get('pooling')!r}, top_k {source.get('top_k')!r}. "
                         f"Fix: featurize with --pooling mean+max --top_k 0.")
    if pooling not in NARROWABLE:
        raise ValueError(f"narrow_pooling derives {NARROWABLE}, not {pooling!r}. Fix: featurize it directly.")
    d_sae, top_k = int(source["d_sae"]), (int(top_k) or None) if top_k else None
    # In memory: cheap to redo, and a cache file would outlive a change to _Narrow (its code is not hashed).
    out = dataset.map(_Narrow(pooling, top_k, d_sae), batched=True, input_columns=["sae_idx", "sae_val"],
                      keep_in_memory=True, desc=f"derive {pooling}:{top_k or 0}")
    if out is dataset:  # map returns an empty dataset itself: its provenance must not change
        out = copy.deepcopy(dataset)
    return write_provenance(out, {**source, "pooling": pooling, "top_k": top_k,
                                  "n_features": pooled_width(pooling, d_sae),
                                  "index_layout": index_layout(pooling, d_sae),
                                  "derived_from": "mean+max, every active latent"})


class _Narrow:
    """Picklable batched map: one pooling's half of mean+max rows, then the top_k largest, sorted by index."""

    def __init__(self, pooling: str, top_k: int | None, d_sae: int):
        self.pooling, self.top_k, self.d_sae = pooling, top_k, d_sae

    def __call__(self, idx_rows, val_rows) -> dict:
        out = {"sae_idx": [], "sae_val": [], "sae_l0": []}
        for idx, val in zip(idx_rows, val_rows):
            idx, val = np.asarray(idx, np.int64), np.asarray(val, np.float32)
            if self.pooling != "mean+max":
                half = idx < self.d_sae if self.pooling == "mean" else idx >= self.d_sae
                idx, val = idx[half] % self.d_sae, val[half]
            keep = val != 0
            idx, val = idx[keep], val[keep]
            out["sae_l0"].append(int(np.unique(idx % self.d_sae).size))
            if self.top_k:  # as sparse_rows' top-k over the whole vector: unstored zeros outrank negative entries
                order = np.argsort(-val, kind="stable")
                positive, negative = order[val[order] > 0][: self.top_k], order[val[order] < 0]
                n_negative = max(0, self.top_k - len(positive) - (pooled_width(self.pooling, self.d_sae) - len(val)))
                top = np.concatenate([positive, negative[:n_negative]])
                idx, val = idx[top], val[top]
            order = np.argsort(idx)
            out["sae_idx"].append(idx[order].astype(np.int32))
            out["sae_val"].append(val[order])
        return out
