"""Feature matrices for the signal models: sparse SAE features (CSR) or the dense mean-pooled baseline.

All signal models share one preprocessing (``log1p`` of SAE activations, optional per-column scaling), kept
here so fit-time and apply-time inputs are built by the same code.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import sparse as sp

from saerl_hf.sparse import (
    InvalidFeaturesError,
    MissingFeaturesError,
    check_feature_arrays,
    feature_provenance,
    require_features,
    to_csr,
)

logger = logging.getLogger(__name__)

SAE = "sae"
DENSE = "dense_mean"
SCALINGS = ("log1p", "log1p_std", "std", "none")
# What identifies the dense feature space (no SAE involved).
DENSE_IDENTITY_KEYS = ("model", "layer", "hook", "d_in", "pooling")


def require_source(dataset, features: str) -> None:
    """Raise a clear error when ``dataset`` lacks the columns ``features`` needs."""
    if features == SAE:
        require_features(dataset)
    elif features == DENSE:
        if DENSE not in dataset.column_names:
            raise MissingFeaturesError(
                f"The dataset has no '{DENSE}' column. Fix: featurize it with the dense baseline enabled "
                f"(featurize config `dense_mean=True`)."
            )
    else:
        raise ValueError(f"features must be '{SAE}' or '{DENSE}', got {features!r}.")


def dataset_matrix(dataset, features: str = SAE, width: int | None = None):
    """(rows, width) matrix: CSR float32 for SAE features, dense float64 for ``dense_mean``."""
    require_source(dataset, features)
    if features == SAE:
        matrix = to_csr(dataset, width=width)
        if matrix.nnz and int(matrix.indices.max()) >= matrix.shape[1]:
            raise MissingFeaturesError(
                f"Feature index {int(matrix.indices.max())} >= width {matrix.shape[1]}: the features come from a "
                f"wider SAE than the model expects. Fix: featurize with the SAE the model was fitted on."
            )
        return matrix
    return np.asarray(dataset.with_format("numpy")[DENSE], dtype=np.float64)


def batch_matrix(batch: dict, features: str, width: int, indices=None):
    """The matrix of one ``datasets.map`` batch (lists of lists), same layout as ``dataset_matrix``.

    Bad rows (misaligned ``sae_idx``/``sae_val``, out-of-range indices, NaN/inf) raise naming the row:
    its dataset index when ``indices`` (``map(with_indices=True)``) is given, else its place in the batch.
    """
    if features == DENSE:
        dense = np.asarray(batch[DENSE], dtype=np.float64).reshape(len(batch[DENSE]), width)
        finite = np.isfinite(dense).all(axis=1)
        if not finite.all():
            r = int(np.flatnonzero(~finite)[0])
            raise InvalidFeaturesError(f"row {indices[r] if indices is not None else r}: '{DENSE}' holds NaN/inf. "
                                       f"Fix: re-featurize the dataset with the dense baseline (float32 model).")
        return dense
    idx_rows, val_rows = batch["sae_idx"], batch["sae_val"]
    lengths = np.fromiter((len(r) for r in idx_rows), dtype=np.int64, count=len(idx_rows))
    val_lengths = np.fromiter((len(r) for r in val_rows), dtype=np.int64, count=len(val_rows))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    flat_idx = np.fromiter((i for r in idx_rows for i in r), dtype=np.int64, count=int(indptr[-1]))
    check_feature_arrays(lengths, val_lengths, flat_idx, np.zeros(0), width, row_ids=indices)
    values = np.fromiter((v for r in val_rows for v in r), dtype=np.float32, count=int(indptr[-1]))
    check_feature_arrays(lengths, val_lengths, flat_idx, values, width, row_ids=indices)
    return sp.csr_matrix((values, flat_idx.astype(np.int32), indptr), shape=(len(idx_rows), width))


def log1p(matrix):
    """log1p of activations (SAE activations are heavy-tailed; raw magnitudes let a few features dominate)."""
    if sp.issparse(matrix):
        out = matrix.astype(np.float64).tocsr(copy=True)
        out.data = np.log1p(np.maximum(out.data, 0.0))
        return out
    return np.log1p(np.maximum(np.asarray(matrix, dtype=np.float64), 0.0))


def transform(matrix, scaling: str):
    """Apply the fixed (non-fitted) part of the preprocessing: log1p for the log scalings, float64 always."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}.")
    if scaling.startswith("log1p"):
        return log1p(matrix)
    return matrix.astype(np.float64) if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float64)


def fit_scaler(matrix, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) per column, from ``sklearn.preprocessing.StandardScaler`` for the ``std`` scalings
    (constant columns get scale 1). Sparse input is never centred (it would densify it)."""
    width = matrix.shape[1]
    if scaling not in ("log1p_std", "std"):
        return np.zeros(width), np.ones(width)
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler(with_mean=not sp.issparse(matrix)).fit(matrix)
    center = scaler.mean_ if scaler.with_mean else np.zeros(width)
    return np.asarray(center, np.float64), np.asarray(scaler.scale_, np.float64)


def apply_scaler(matrix, center: np.ndarray, scale: np.ndarray):
    if sp.issparse(matrix):
        return matrix.multiply(1.0 / scale).tocsr()
    return (matrix - center) / scale


def linear_scores(matrix, coef: np.ndarray, intercept: float, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``((X - center) / scale) @ coef + intercept`` without densifying sparse X (float64, deterministic)."""
    folded = coef / scale
    return np.asarray(matrix @ folded).ravel() + (float(intercept) - float(center @ folded))


def identity_for(dataset, features: str) -> dict:
    """The feature-space identity a model fitted on ``dataset`` must record."""
    from saerl_hf.signals.persistence import sae_identity

    if features == SAE:
        return sae_identity(dataset)
    provenance = feature_provenance(dataset) if "sae_idx" in dataset.column_names else {}
    identity = {key: provenance.get(key) for key in DENSE_IDENTITY_KEYS}
    identity["features"] = DENSE
    return identity


def matrix_width(dataset, features: str) -> int:
    if features == SAE:
        from saerl_hf.signals.persistence import sae_identity

        return sae_identity(dataset)["d_sae"]
    first = dataset[0][DENSE]
    return len(first)


class LinearSignalMap:
    """Picklable ``datasets.map`` function (batched) adding one linear-model column.

    It holds only numpy arrays and strings, so ``datasets`` can hash it and multiprocessing can ship it.
    """

    def __init__(self, column: str, coef, intercept: float, center, scale, scaling: str, features: str,
                 link: str = "identity"):
        self.column, self.coef, self.intercept = column, np.asarray(coef, np.float64), float(intercept)
        self.center, self.scale = np.asarray(center, np.float64), np.asarray(scale, np.float64)
        self.scaling, self.features, self.link = scaling, features, link

    def scores(self, matrix) -> np.ndarray:
        raw = linear_scores(transform(matrix, self.scaling), self.coef, self.intercept, self.center, self.scale)
        return sigmoid(raw) if self.link == "sigmoid" else raw

    def __call__(self, batch: dict, indices=None) -> dict:
        return {self.column: self.scores(batch_matrix(batch, self.features, self.coef.shape[0], indices)).tolist()}


def sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


class LinearProbe:
    """Shared machinery of the linear signal models (difficulty regressor, quality classifier).

    Subclasses set ``KIND``, ``LINK``, ``CONFIG`` and implement ``fit``; this base holds the fitted arrays,
    checks the feature space, predicts, maps and saves/loads exactly (float64 arrays in safetensors).
    """

    KIND = "linear"
    LINK = "identity"
    CONFIG: type = object

    def __init__(self, config=None):
        self.config = config if config is not None else self.CONFIG()
        self.coef: np.ndarray | None = None
        self.intercept: float = 0.0
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.identity: dict = {}
        self.metrics: dict = {}

    # ------------------------------------------------------------------ fitted state
    @property
    def is_fitted(self) -> bool:
        return self.coef is not None

    def _require_fitted(self):
        if not self.is_fitted:
            raise RuntimeError(f"The {self.KIND} model is not fitted. Fix: call .fit(dataset) or .load(dir) first.")

    @property
    def width(self) -> int:
        self._require_fitted()
        return int(self.coef.shape[0])

    def _set(self, coef, intercept, center, scale, identity):
        self.coef = np.asarray(coef, np.float64)
        self.intercept = float(intercept)
        self.center, self.scale = np.asarray(center, np.float64), np.asarray(scale, np.float64)
        self.identity = dict(identity)

    def _design(self, dataset):
        """Raw feature matrix of ``dataset`` after the SAE-identity and width checks."""
        from saerl_hf.signals.persistence import check_identity, check_width

        features = self.config.features
        require_source(dataset, features)
        check_identity(self.identity, identity_for(dataset, features), f"{self.KIND} model")
        matrix = dataset_matrix(dataset, features, width=self.width if features == SAE else None)
        check_width(self.width, matrix, f"{self.KIND} model")
        return matrix

    # ------------------------------------------------------------------ use
    def map_function(self) -> LinearSignalMap:
        self._require_fitted()
        return LinearSignalMap(self.config.output_column, self.coef, self.intercept, self.center, self.scale,
                               self.config.scaling, self.config.features, self.LINK)

    def predict(self, dataset) -> np.ndarray:
        """Scores of every row (float64)."""
        self._require_fitted()
        return self.map_function().scores(self._design(dataset))

    def fingerprint(self) -> str:
        from saerl_hf.signals.persistence import fingerprint_of

        self._require_fitted()
        return fingerprint_of(self.KIND, self.config.output_column, self.config.scaling, self.config.features,
                              self.coef, self.center, self.scale, repr(self.intercept))

    def apply(self, dataset, batch_size: int = 1000, **map_kwargs):
        """``dataset`` with the output column added; the ``datasets`` fingerprint depends only on the
        input fingerprint and this fitted model, so re-applying hits the cache."""
        from saerl_hf.signals.persistence import fingerprint_of
        from saerl_hf.sparse import write_provenance

        self._design(dataset.select(range(min(1, len(dataset)))))  # fail early, before any mapping
        function = self.map_function()
        out = dataset.map(
            function, batched=True, batch_size=batch_size, with_indices=True,
            new_fingerprint=fingerprint_of(dataset._fingerprint, self.fingerprint()),
            desc=f"{self.KIND} -> {self.config.output_column}", **map_kwargs,
        )
        return write_provenance(out, {"model_fingerprint": self.fingerprint(), "column": self.config.output_column,
                                      "metrics": self.metrics}, key=self.KIND)

    # ------------------------------------------------------------------ persistence
    def save(self, directory):
        from dataclasses import asdict

        from saerl_hf.signals.persistence import save_model

        self._require_fitted()
        return save_model(
            directory, self.KIND,
            {"coef": self.coef, "intercept": np.array([self.intercept]), "center": self.center, "scale": self.scale},
            {"config": asdict(self.config), "identity": self.identity, "feature_width": self.width,
             "metrics": self.metrics, "link": self.LINK},
        )

    @classmethod
    def load(cls, directory):
        from saerl_hf.signals.persistence import load_model

        arrays, payload = load_model(directory, cls.KIND, config_keys=("config", "identity"),
                                     array_keys=("coef", "intercept", "center", "scale"))
        shapes = {key: arrays[key].shape for key in ("coef", "center", "scale")}
        if len({shape for shape in shapes.values()}) != 1 or len(shapes["coef"]) != 1 or arrays["intercept"].size != 1:
            from saerl_hf.signals.persistence import ProbeLoadError

            raise ProbeLoadError(f"'{directory}': the saved arrays do not fit together ({shapes}, intercept "
                                 f"{arrays['intercept'].shape}). Fix: refit and save the {cls.KIND} model again.")
        config = _config_from_dict(cls.CONFIG, payload["config"])
        probe = cls(config)
        probe._set(arrays["coef"], arrays["intercept"][0], arrays["center"], arrays["scale"], payload["identity"])
        probe.metrics = payload.get("metrics", {})
        return probe


def fit_counting_convergence(fit, what: str, fix: str) -> int:
    """Run ``fit()``; sklearn's ``ConvergenceWarning``s (one per CV fit) are counted and logged as one
    warning naming ``what`` and the ``fix``; any other warning is passed on. Returns the count."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit()
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    for other in (w for w in caught if not issubclass(w.category, ConvergenceWarning)):
        warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    if convergence:
        logger.warning("%s: %d fit(s) did not converge (first: %s). %s", what, len(convergence),
                       " ".join(str(convergence[0].message).split()), fix)
    return len(convergence)


def _config_from_dict(config_cls, values: dict):
    """Rebuild a config dataclass from JSON (lists back to tuples where the field default is a tuple)."""
    from dataclasses import MISSING, fields

    kwargs = {}
    for field in fields(config_cls):
        if field.name not in values:
            continue
        value = values[field.name]
        default = field.default if field.default is not MISSING else None
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return config_cls(**kwargs)


def numeric_labels(dataset, column: str) -> np.ndarray:
    """``column`` as float64 with NaN for None/NaN; non-numeric values raise naming the row."""
    from saerl_hf.signals.persistence import SignalLabelError

    if column not in dataset.column_names:
        raise SignalLabelError(
            f"The dataset has no label column '{column}' (columns: {', '.join(dataset.column_names)}). "
            f"Fix: pass label_column= one of them, e.g. 'level' for MATH or 'pass_rate' from the pass-rate labeller."
        )
    out = np.empty(len(dataset), dtype=np.float64)
    for row, value in enumerate(dataset[column]):
        if value is None:
            out[row] = np.nan
            continue
        if isinstance(value, bool):
            value = float(value)
        try:
            out[row] = float(value)
        except (TypeError, ValueError):
            raise SignalLabelError(
                f"Row {row}: label column '{column}' holds {value!r}, which is not a number. Fix: convert the "
                f"column to numbers (None/NaN rows are skipped and counted)."
            ) from None
    return out
