"""Feature matrices for the signal models, for each feature set: ``sae`` (sparse SAE features, CSR), ``dense_mean``
(the dense mean-pooled residual; ``dense`` is accepted as its name) or ``sae+dense`` (the hybrid: both blocks side
by side, SAE block first).

All signal models share one preprocessing (``log1p`` of SAE activations, optional per-column scaling), kept
here so fit-time and apply-time inputs are built by the same code. In the hybrid the SAE block takes the
model's ``scaling``, the dense block is standardised, and each block is then divided by its root mean squared
row norm on the fitting rows, so both weigh the same whatever their widths (4,096 latents vs 576 dimensions).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse as sp

from saerl_hf.pooling import POOLINGS, TWO_PART, pooled_width
from saerl_hf.sparse import (
    InvalidFeaturesError,
    MissingFeaturesError,
    check_feature_arrays,
    feature_provenance,
    require_features,
    to_csr,
)

SAE = "sae"
DENSE = "dense_mean"
HYBRID = "sae+dense"
FEATURE_SETS = (SAE, DENSE, HYBRID)
FEATURE_ALIASES = {"dense": DENSE}
SCALINGS = ("log1p", "log1p_std", "log1p_idf", "std", "none")
# What identifies the dense feature space (no SAE involved).
DENSE_IDENTITY_KEYS = ("model", "layer", "hook", "d_in", "pooling")


def feature_set(name: str) -> str:
    """The canonical name of a feature set (``dense`` -> ``dense_mean``); anything else raises naming the options."""
    name = FEATURE_ALIASES.get(name, name)
    if name not in FEATURE_SETS:
        raise ValueError(f"features must be one of sae | dense | sae+dense, got {name!r}.")
    return name


def require_source(dataset, features: str) -> None:
    """Raise a clear error when ``dataset`` lacks the columns ``features`` needs."""
    features = feature_set(features)
    if features in (SAE, HYBRID):
        require_features(dataset)
    if features in (DENSE, HYBRID) and DENSE not in dataset.column_names:
        raise MissingFeaturesError(
            f"The dataset has no '{DENSE}' column, which the '{features}' features need. Fix: featurize it with "
            f"the dense block (featurize config `features: {features if features == HYBRID else 'dense'}` or "
            f"`dense: true`), or use features='sae'."
        )


def sae_index_width(dataset) -> int | None:
    """Width of the SAE index space: ``n_features`` (``2 * d_sae`` under mean+max pooling), else ``d_sae``
    (None without provenance: then the largest index decides)."""
    provenance = feature_provenance(dataset)
    if provenance.get("n_features"):
        return int(provenance["n_features"])
    if provenance.get("d_sae") is None:
        return None
    return pooled_width(provenance.get("pooling") or "mean", provenance["d_sae"])  # before n_features was recorded


#: The signal models' ``pooling_part`` option help (difficulty, quality and clusters share it).
POOLING_PART_HELP = ("With a two-part pooling (mean+last, mean+max): read only this part of the SAE features ('mean', "
                     "'last' or 'max'; the dense block is never cut). None, '' or the pooling itself: every column. "
                     "Why: the parts carry different signals (docs/signals.md: the last-token half helps the quality "
                     "probe but pulls clusters away from the topic).")


def pooling_part_name(part: str | None) -> str | None:
    """A ``pooling_part`` option as given (None, '', 'none', 'null' or 'all' -> None), checked to be a pooling name,
    so a typo fails at config time even where no part applies (dense features)."""
    if part is None or str(part).strip().lower() in ("", "none", "null", "all"):
        return None
    if part not in POOLINGS:
        raise ValueError(f"pooling_part must be one of {', '.join(POOLINGS)} or none, got {part!r}.")
    return part


def part_range(pooling: str | None, d_sae: int, part: str | None) -> tuple[int, int] | None:
    """``[start, stop)`` of the SAE index space that ``part`` of ``pooling`` covers; None when ``part`` keeps every
    column (None, '' or the pooling itself). A part the pooling does not have raises naming the parts it has."""
    pooling = pooling or "mean"
    if not part or part == pooling:
        return None
    parts = TWO_PART.get(pooling, (pooling,))
    if part not in parts:
        raise ValueError(f"pooling_part {part!r} is not a part of the features' pooling {pooling!r} (its parts: "
                         f"{', '.join(parts)}). Fix: pass one of those, or none to read every column.")
    at = parts.index(part)
    return at * int(d_sae), (at + 1) * int(d_sae)


#: The per-signal part options of curate and report-signals, and the signal each serves.
PART_OPTIONS = ("difficulty_pooling_part", "quality_pooling_part", "cluster_pooling_part")
#: ``auto`` (their default): the mean part of a two-part pooling for difficulty and clusters, every column otherwise.
AUTO_PARTS = {"difficulty_pooling_part": "mean", "quality_pooling_part": None, "cluster_pooling_part": "mean"}
_PART_OPTION_HELP = {
    "difficulty_pooling_part": ("difficulty proxy", "its mean part, which measured as well as both"),
    "quality_pooling_part": ("quality probe", "every column: the last-token part lifts held-out noise kinds"),
    "cluster_pooling_part": ("clusters", "the mean part: the last-token part pulls clusters off the topic")}


def part_option(option: str):
    """The dataclass field of one of :data:`PART_OPTIONS` (curate and report-signals share them)."""
    from dataclasses import field

    signal, auto = _PART_OPTION_HELP[option]
    return field(default="auto", metadata={"help": f"Part of a two-part pooling read by the {signal}: mean | last | "
                                                   f"max, none (every column) or auto (the default: {auto})."})


def check_pooling_parts(config, error=ValueError) -> None:
    """Resolve ``config``'s :data:`PART_OPTIONS` (``auto`` -> :data:`AUTO_PARTS` where the pooling has that part)
    and check each is a part of ``config.pooling``, before any reader runs; ``error`` is the caller's exception
    type, its message names the option and the fix."""
    if config.pooling not in POOLINGS:
        raise error(f"pooling must be one of {' | '.join(POOLINGS)}, got {config.pooling!r}. Fix: e.g. pooling: "
                    f"mean+last (the default).")
    for option in PART_OPTIONS:
        part = getattr(config, option)
        if str(part).strip().lower() == "auto":
            part = AUTO_PARTS[option] if AUTO_PARTS[option] in TWO_PART.get(config.pooling, ()) else None
        try:
            setattr(config, option, pooling_part_name(part))
            part_range(config.pooling, 1, getattr(config, option))
        except ValueError as err:
            raise error(f"{option}: {err} (the features are pooled `pooling: {config.pooling}`; set `{option}: "
                        f"auto` or `none`)") from None
    if getattr(config, "top_k", 0) and config.pooling in TWO_PART and signal_parts(config):
        import warnings

        warnings.warn(f"top_k {config.top_k} keeps the largest entries of both parts of {config.pooling} together: the "
                      f"second part's values (one token, undiluted) can crowd out the mean part that "
                      f"{', '.join(signal_parts(config))} read. Fix: top_k 0 (every active latent, the default).",
                      stacklevel=3)


def signal_parts(config) -> dict[str, str]:
    """``{signal: part}`` for the signals of ``config`` (curate or report-signals, after :func:`check_pooling_parts`)
    that read one part of its pooling: what the card and the page name (a dense-only run reads no SAE part)."""
    if feature_set(getattr(config, "features", SAE)) == DENSE:
        return {}
    parts = {option.split("_")[0]: getattr(config, option) for option in PART_OPTIONS}
    return {signal: part for signal, part in parts.items() if part_range(config.pooling, 1, part) is not None}


def part_columns(identity: dict) -> tuple[int, int, int] | None:
    """``(start, stop, width of the whole SAE index space)`` of the part a model fitted with ``identity`` reads
    (its ``pooling_part``), or None when it reads every SAE column."""
    if feature_set(identity.get("features", SAE)) == DENSE or not identity.get("pooling_part"):
        return None
    span = part_range(identity.get("pooling"), int(identity["d_sae"]), identity["pooling_part"])
    width = identity.get("n_features") or pooled_width(identity.get("pooling") or "mean", identity["d_sae"])
    return None if span is None else (*span, int(width))


def dataset_matrix(dataset, features: str = SAE, width: int | None = None, columns: tuple[int, int, int] | None = None):
    """(rows, width) matrix: CSR float32 for SAE features, dense float64 for ``dense_mean``, and for the
    hybrid a CSR matrix whose dense block is stored entry by entry (so its centring stays exact). ``columns``
    (:func:`part_columns`) keeps one part of the SAE index space (``width`` is then the part's)."""
    features = feature_set(features)
    require_source(dataset, features)
    if features == DENSE:
        return np.asarray(dataset.with_format("numpy")[DENSE], dtype=np.float64)
    dense = np.asarray(dataset.with_format("numpy")[DENSE], dtype=np.float64) if features == HYBRID else None
    if columns is not None:
        width = columns[2]
    elif width is None:
        width = sae_index_width(dataset)
    elif dense is not None:
        width -= dense.shape[1]
    matrix = to_csr(dataset, width=width)
    if matrix.nnz and int(matrix.indices.max()) >= matrix.shape[1]:
        raise MissingFeaturesError(
            f"Feature index {int(matrix.indices.max())} >= width {matrix.shape[1]}: the features come from a "
            f"wider SAE than the model expects. Fix: featurize with the SAE the model was fitted on."
        )
    matrix = _keep_part(matrix, columns)
    return matrix if dense is None else hstack_explicit(matrix, dense)


def part_matrix(dataset, features: str, pooling_part: str | None = None):
    """``(matrix, identity)``: what a model reading ``pooling_part`` fits on, and the identity it records."""
    identity = identity_for(dataset, features, pooling_part)
    return dataset_matrix(dataset, features, columns=part_columns(identity)), identity


def _keep_part(matrix, columns):
    """The CSR columns ``[start, stop)`` of ``columns`` (renumbered from 0); ``matrix`` itself when None."""
    return matrix if columns is None else matrix[:, columns[0]:columns[1]].tocsr()


def hstack_explicit(sae_block, dense: np.ndarray):
    """``[sae_block | dense]`` as CSR float64 with every dense entry stored (zeros too)."""
    sae_block = sae_block.tocsr()
    n, d = dense.shape
    split = sae_block.shape[1]
    sae_counts = np.diff(sae_block.indptr)
    indptr = np.concatenate([[0], np.cumsum(sae_counts + d)]).astype(np.int64)
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    data = np.empty(int(indptr[-1]), dtype=np.float64)
    rows = np.repeat(np.arange(n), sae_counts)
    at = indptr[:-1][rows] + (np.arange(sae_block.nnz) - sae_block.indptr[:-1][rows])
    indices[at], data[at] = sae_block.indices, sae_block.data
    dense_at = ((indptr[:-1] + sae_counts)[:, None] + np.arange(d)).ravel()
    indices[dense_at] = np.tile(np.arange(split, split + d, dtype=np.int32), n)
    data[dense_at] = dense.ravel()
    return sp.csr_matrix((data, indices, indptr), shape=(n, split + d))


def batch_matrix(batch: dict, features: str, width: int, indices=None, columns: tuple[int, int, int] | None = None):
    """The matrix of one ``datasets.map`` batch (lists of lists), same layout as ``dataset_matrix`` (``columns``
    too: ``width`` is then the model's, part plus dense block).

    Bad rows (misaligned ``sae_idx``/``sae_val``, out-of-range indices, NaN/inf) raise naming the row:
    its dataset index when ``indices`` (``map(with_indices=True)``) is given, else its place in the batch.
    """
    features = feature_set(features)
    if features == HYBRID:
        dense = _batch_dense(batch, len(batch[DENSE][0]) if batch[DENSE] else 0, indices)
        return hstack_explicit(batch_matrix(batch, SAE, width - dense.shape[1], indices, columns), dense)
    if features == DENSE:
        return _batch_dense(batch, width, indices)
    if columns is not None:
        width = columns[2]
    idx_rows, val_rows = batch["sae_idx"], batch["sae_val"]
    lengths = np.fromiter((len(r) for r in idx_rows), dtype=np.int64, count=len(idx_rows))
    val_lengths = np.fromiter((len(r) for r in val_rows), dtype=np.int64, count=len(val_rows))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    flat_idx = np.fromiter((i for r in idx_rows for i in r), dtype=np.int64, count=int(indptr[-1]))
    check_feature_arrays(lengths, val_lengths, flat_idx, np.zeros(0), width, row_ids=indices)
    values = np.fromiter((v for r in val_rows for v in r), dtype=np.float32, count=int(indptr[-1]))
    check_feature_arrays(lengths, val_lengths, flat_idx, values, width, row_ids=indices)
    return _keep_part(sp.csr_matrix((values, flat_idx.astype(np.int32), indptr), shape=(len(idx_rows), width)), columns)


def _batch_dense(batch: dict, width: int, indices) -> np.ndarray:
    dense = np.asarray(batch[DENSE], dtype=np.float64).reshape(len(batch[DENSE]), width)
    finite = np.isfinite(dense).all(axis=1)
    if not finite.all():
        r = int(np.flatnonzero(~finite)[0])
        raise InvalidFeaturesError(f"row {indices[r] if indices is not None else r}: '{DENSE}' holds NaN/inf. "
                                   f"Fix: re-featurize the dataset with the dense baseline (float32 model).")
    return dense


def log1p(matrix, split: int | None = None):
    """log1p of activations (SAE activations are heavy-tailed; raw magnitudes let a few features dominate);
    with ``split`` only the columns before it (the SAE block of the hybrid) are transformed."""
    if sp.issparse(matrix):
        out = matrix.astype(np.float64).tocsr(copy=True)
        mask = slice(None) if split is None else out.indices < split
        out.data[mask] = np.log1p(np.maximum(out.data[mask], 0.0))
        return out
    return np.log1p(np.maximum(np.asarray(matrix, dtype=np.float64), 0.0))


#: The probes' ``scaling`` option help (difficulty and quality share it).
SCALING_HELP = ("log1p | log1p_std | std | none; default (None): std for the dense features (the residual is signed: "
                "log1p would clip it), log1p otherwise.")


def default_scaling(features: str) -> str:
    """A probe's scaling when none is given: the dense residual is signed (log1p would clip it), so ``std``; SAE
    activations are heavy-tailed and non-negative, so ``log1p`` (the hybrid log-transforms only its SAE block)."""
    return "std" if feature_set(features) == DENSE else "log1p"


def transform(matrix, scaling: str, split: int | None = None):
    """Apply the fixed (non-fitted) part of the preprocessing: log1p for the log scalings, float64 always.
    ``split``: the hybrid's SAE block width (the dense block after it is never log-transformed)."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}.")
    if scaling.startswith("log1p"):
        return log1p(matrix, split)
    return matrix.astype(np.float64) if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float64)


def fit_scaler(matrix, scaling: str, split: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) per column, from ``sklearn.preprocessing.StandardScaler`` for the ``std`` scalings
    (constant columns get scale 1). Sparse input is never centred (it would densify it). With ``split`` (the
    hybrid) the blocks are scaled apart: see the module docstring."""
    if split is not None:
        return _hybrid_scaler(matrix, scaling, split)
    width = matrix.shape[1]
    if scaling == "log1p_idf":
        return np.zeros(width), 1.0 / idf_weights(matrix)
    if scaling not in ("log1p_std", "std"):
        return np.zeros(width), np.ones(width)
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler(with_mean=not sp.issparse(matrix)).fit(matrix)
    center = scaler.mean_ if scaler.with_mean else np.zeros(width)
    return np.asarray(center, np.float64), np.asarray(scaler.scale_, np.float64)


def idf_weights(matrix) -> np.ndarray:
    """Smoothed inverse document frequency per column, ``ln((1 + n) / (1 + df)) + 1`` (sklearn's
    ``TfidfTransformer``): a latent that fires on nearly every prompt (format, "this is math") carries no topic
    and would otherwise dominate cosine distances; rare, topical latents weigh more."""
    matrix = sp.csr_matrix(matrix, copy=True)
    matrix.sum_duplicates()  # a column stored twice in a row is one occurrence
    df = np.bincount(matrix.indices[matrix.data != 0], minlength=matrix.shape[1])
    return np.log((1.0 + matrix.shape[0]) / (1.0 + df)) + 1.0


def _hybrid_scaler(matrix, scaling: str, split: int) -> tuple[np.ndarray, np.ndarray]:
    matrix = sp.csr_matrix(matrix)
    sae_block, dense = matrix[:, :split], matrix[:, split:].toarray()
    sae_center, sae_scale = fit_scaler(sae_block, scaling)
    dense_center, dense_scale = fit_scaler(dense, "std")
    sae_norm = float(np.sqrt(sae_block.multiply(1.0 / sae_scale).power(2).sum() / max(matrix.shape[0], 1)))
    dense_norm = float(np.sqrt((((dense - dense_center) / dense_scale) ** 2).sum(axis=1).mean()))
    return (np.r_[sae_center, dense_center],
            np.r_[sae_scale * (sae_norm or 1.0), dense_scale * (dense_norm or 1.0)])


def apply_scaler(matrix, center: np.ndarray, scale: np.ndarray):
    """``(X - center) / scale``; on sparse X only the stored entries move (the hybrid stores its whole dense
    block, the only place a sparse matrix has a non-zero center)."""
    if sp.issparse(matrix):
        out = matrix.astype(np.float64).tocsr(copy=True)
        out.data = (out.data - center[out.indices]) / scale[out.indices]
        return out
    return (matrix - center) / scale


def linear_scores(matrix, coef: np.ndarray, intercept: float, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``((X - center) / scale) @ coef + intercept`` without densifying sparse X (float64, deterministic)."""
    folded = coef / scale
    return np.asarray(matrix @ folded).ravel() + (float(intercept) - float(center @ folded))


def sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def identity_for(dataset, features: str, pooling_part: str | None = None) -> dict:
    """The feature-space identity a model fitted on ``dataset`` must record (``features`` names the set; a
    ``pooling_part`` that keeps fewer than every SAE column is recorded and checked against the pooling here)."""
    from saerl_hf.signals.persistence import sae_identity

    features = feature_set(features)
    if features == DENSE:
        provenance = feature_provenance(dataset) if "sae_idx" in dataset.column_names else {}
        identity = {key: provenance.get(key) for key in DENSE_IDENTITY_KEYS}
    else:
        identity = sae_identity(dataset)
        identity["n_features"] = sae_index_width(dataset)
        if features == HYBRID:
            identity["d_in"] = identity.get("d_in") or len(dataset[0][DENSE])
        if part_range(identity.get("pooling"), identity["d_sae"], pooling_part) is not None:
            identity["pooling_part"] = pooling_part
    identity["features"] = features
    return identity


def block_split(features: str, identity: dict) -> int | None:
    """Width of the SAE block of a hybrid model (None for the single-block feature sets)."""
    if feature_set(features) != HYBRID:
        return None
    columns = part_columns({**identity, "features": features})
    return columns[1] - columns[0] if columns else int(identity.get("n_features") or identity["d_sae"])


def matrix_width(dataset, features: str) -> int:
    features = feature_set(features)
    if features == SAE:
        return sae_index_width(dataset)
    dense_width = len(dataset[0][DENSE])
    return dense_width + (sae_index_width(dataset) if features == HYBRID else 0)
