"""Sparse SAE feature columns (``sae_idx``/``sae_val``) and the provenance that travels with them.

Provenance (reader model, layer, hook, SAE identity and hash, pooling, k, width) is stored as JSON in the
dataset's ``info.description`` under the ``"saerl"`` key, so it survives ``map``/``save_to_disk`` and every
later step (probes, cards) can check that it reads features of the SAE it was fitted on.
"""

from __future__ import annotations

import json

import numpy as np

from saerl_hf.errors import SaerlError

FEATURE_COLUMNS = ("sae_idx", "sae_val")


class MissingFeaturesError(SaerlError, ValueError):
    """A dataset without SAE feature columns reached a step that needs them."""


class InvalidFeaturesError(MissingFeaturesError):
    """SAE feature columns that cannot be used: misaligned ``sae_idx``/``sae_val``, out-of-range indices, NaN/inf."""


def check_feature_arrays(idx_lengths, val_lengths, indices, values, width: int | None, row_ids=None) -> None:
    """Raise :class:`InvalidFeaturesError` naming the first bad row (``row_ids[r]`` when given, else ``r``)."""
    idx_lengths, val_lengths = np.asarray(idx_lengths), np.asarray(val_lengths)

    def name(r: int) -> str:
        return f"row {row_ids[r] if row_ids is not None else r}"

    fix = "Fix: re-featurize the dataset (`saerl-hf featurize`); never edit sae_idx/sae_val by hand."
    if not np.array_equal(idx_lengths, val_lengths):
        r = int(np.flatnonzero(idx_lengths != val_lengths)[0])
        raise InvalidFeaturesError(f"{name(r)}: sae_idx has {int(idx_lengths[r])} entries but sae_val has "
                                   f"{int(val_lengths[r])}; the feature columns are misaligned. {fix}")
    if not len(indices):
        return
    indptr = np.concatenate([[0], np.cumsum(idx_lengths)])
    bad = (indices < 0) | (indices >= width) if width is not None else indices < 0
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        r = int(np.searchsorted(indptr, pos, side="right") - 1)
        raise InvalidFeaturesError(
            f"{name(r)}: feature index {int(indices[pos])} is outside [0, {width}): these features come from "
            f"another SAE width (a wider SAE than the model expects, or corrupted columns). Fix: featurize with the "
            f"SAE the model was fitted on."
        )
    finite = np.isfinite(values)
    if not finite.all():
        pos = int(np.flatnonzero(~finite)[0])
        r = int(np.searchsorted(indptr, pos, side="right") - 1)
        raise InvalidFeaturesError(f"{name(r)}: sae_val holds {float(values[pos])} (NaN/inf) for feature "
                                   f"{int(indices[pos])}. {fix}")


def read_provenance(dataset) -> dict:
    """The featurization provenance of a dataset ({} if none)."""
    text = dataset.info.description or ""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return payload.get("saerl", {}) if isinstance(payload, dict) else {}


def write_provenance(dataset, provenance: dict, key: str = "featurize"):
    """Merge ``provenance`` under ``saerl[key]`` in the dataset info, in place; returns the dataset."""
    try:
        payload = json.loads(dataset.info.description or "{}")
        if not isinstance(payload, dict):
            payload = {}
    except json.JSONDecodeError:
        payload = {"description": dataset.info.description}
    payload.setdefault("saerl", {})[key] = provenance
    dataset.info.description = json.dumps(payload, sort_keys=True)
    return dataset


def feature_provenance(dataset) -> dict:
    """The ``featurize`` block of the provenance; raises if the dataset was never featurized."""
    require_features(dataset)
    return read_provenance(dataset).get("featurize", {})


def require_features(dataset) -> None:
    missing = [c for c in FEATURE_COLUMNS if c not in dataset.column_names]
    if missing:
        raise MissingFeaturesError(
            f"The dataset has no {', '.join(missing)} column(s). Fix: featurize it first "
            f"(`saerl-hf featurize` or `dataset.map(Featurizer(...), batched=True)`)."
        )


def to_csr(dataset, width: int | None = None):
    """Stack ``sae_idx``/``sae_val`` into a ``scipy.sparse.csr_matrix`` of shape (rows, width).

    The default width is the provenance's ``n_features`` (the index space: ``2 * d_sae`` under mean+max
    pooling), else its ``d_sae`` (features written before ``n_features`` was recorded)."""
    from scipy.sparse import csr_matrix

    require_features(dataset)
    if width is None:
        provenance = feature_provenance(dataset)
        width = provenance.get("n_features") or provenance.get("d_sae")
    width = int(width) if width is not None else None
    table = dataset.with_format("arrow").select_columns(list(FEATURE_COLUMNS))[:]
    idx_col, val_col = table.column("sae_idx").combine_chunks(), table.column("sae_val").combine_chunks()
    indptr = np.asarray(idx_col.offsets, dtype=np.int64)
    val_indptr = np.asarray(val_col.offsets, dtype=np.int64)
    # Only the entries the offsets cover (a sliced list array's child can be longer).
    indices = np.asarray(idx_col.values, dtype=np.int64)[indptr[0] : indptr[-1]]
    values = np.asarray(val_col.values, dtype=np.float32)[val_indptr[0] : val_indptr[-1]]
    check_feature_arrays(np.diff(indptr), np.diff(val_indptr), indices, values, width)
    indices = indices.astype(np.int32)
    if width is None:
        width = int(indices.max()) + 1 if indices.size else 1
    indptr = indptr - indptr[0]
    return csr_matrix((values, indices, indptr), shape=(len(dataset), int(width)))
