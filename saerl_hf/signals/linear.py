"""The linear signal models' shared machinery: the picklable map function, fit/predict/apply/save/load of a
linear probe on any feature set (see :mod:`saerl_hf.signals.matrix`), and label reading.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import numpy as np

from saerl_hf.signals.matrix import (
    DENSE,
    batch_matrix,
    block_split,
    dataset_matrix,
    default_scaling,
    feature_set,
    identity_for,
    linear_scores,
    part_columns,
    require_source,
    sigmoid,
    transform,
)
from saerl_hf.sparse import MissingFeaturesError

logger = logging.getLogger(__name__)


class LinearSignalMap:
    """Picklable ``datasets.map`` function (batched) adding one linear-model column.

    It holds only numpy arrays and strings, so ``datasets`` can hash it and multiprocessing can ship it.
    """

    def __init__(self, column: str, coef, intercept: float, center, scale, scaling: str, features: str,
                 link: str = "identity", split: int | None = None, columns: tuple[int, int, int] | None = None):
        self.column, self.coef, self.intercept = column, np.asarray(coef, np.float64), float(intercept)
        self.center, self.scale = np.asarray(center, np.float64), np.asarray(scale, np.float64)
        self.scaling, self.features, self.link, self.split = scaling, features, link, split
        self.columns = columns

    def scores(self, matrix) -> np.ndarray:
        raw = linear_scores(transform(matrix, self.scaling, self.split), self.coef, self.intercept, self.center,
                            self.scale)
        return sigmoid(raw) if self.link == "sigmoid" else raw

    def __call__(self, batch: dict, indices=None) -> dict:
        matrix = batch_matrix(batch, self.features, self.coef.shape[0], indices, self.columns)
        return {self.column: self.scores(matrix).tolist()}


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

    def _resolve_scaling(self):
        """The config with its scaling resolved (``None``: :func:`default_scaling` of its features), kept as the
        probe's own so the saved probe names the scaling it was fitted with."""
        self.config = replace(self.config, scaling=self.config.scaling or default_scaling(self.config.features))
        return self.config

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

    @property
    def features(self) -> str:
        """The feature set this model was fitted on (``sae``, ``dense_mean`` or ``sae+dense``)."""
        return feature_set(self.config.features)

    @property
    def split(self) -> int | None:
        """SAE block width of a hybrid model (None otherwise)."""
        return block_split(self.features, self.identity)

    @property
    def columns(self) -> tuple[int, int, int] | None:
        """The part of the SAE index space this model reads (``config.pooling_part``); None: every column."""
        return part_columns({**self.identity, "features": self.features})

    def _design(self, dataset, features: str | None = None):
        """Raw feature matrix of ``dataset`` after the feature-set, SAE-identity and width checks."""
        from saerl_hf.signals.persistence import check_feature_set, check_identity, check_width

        what = f"{self.KIND} model"
        if features is not None:
            check_feature_set(self.features, features, what)
        require_feature_columns(dataset, self.features, what)
        check_identity(self.identity, identity_for(dataset, self.features), what)
        matrix = dataset_matrix(dataset, self.features, width=None if self.features == DENSE else self.width,
                                columns=self.columns)
        check_width(self.width, matrix, what)
        return matrix

    # ------------------------------------------------------------------ use
    def map_function(self) -> LinearSignalMap:
        self._require_fitted()
        return LinearSignalMap(self.config.output_column, self.coef, self.intercept, self.center, self.scale,
                               self.config.scaling, self.features, self.LINK, self.split, self.columns)

    def predict(self, dataset, features: str | None = None) -> np.ndarray:
        """Scores of every row (float64). ``features``: the set the caller means to score with; another set than
        the one this model was fitted on raises ``FeatureSetMismatchError``."""
        self._require_fitted()
        return self.map_function().scores(self._design(dataset, features))

    def explain(self, row, k: int = 5) -> dict:
        """The columns that drove one featurized row's score (see :func:`saerl_hf.signals.explain.explain_row`)."""
        from saerl_hf.signals.explain import explain_row

        return explain_row(self, row, k)

    def fingerprint(self) -> str:
        from saerl_hf.signals.persistence import fingerprint_of

        self._require_fitted()
        return fingerprint_of(self.KIND, self.config.output_column, self.config.scaling, self.config.features,
                              self.coef, self.center, self.scale, repr(self.intercept),
                              *([repr(self.columns)] if self.columns else []))  # unchanged for whole-vector models

    def apply(self, dataset, batch_size: int = 1000, features: str | None = None, **map_kwargs):
        """``dataset`` with the output column added; the ``datasets`` fingerprint depends only on the
        input fingerprint and this fitted model, so re-applying hits the cache. ``features`` as in ``predict``."""
        from saerl_hf.signals.persistence import fingerprint_of
        from saerl_hf.sparse import write_provenance

        self._design(dataset.select(range(min(1, len(dataset)))), features)  # fail early, before any mapping
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
        check_saved_feature_set(directory, feature_set(config.features), payload["identity"], cls.KIND)
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


def require_feature_columns(dataset, features: str, what: str) -> None:
    """``require_source`` for a fitted model: the error says which feature set the model was fitted on."""
    try:
        require_source(dataset, features)
    except MissingFeaturesError as err:
        raise type(err)(f"The {what} was fitted on '{features}' features. {err}") from None


def check_saved_feature_set(directory, features: str, identity: dict, kind: str) -> None:
    """A saved model whose config and identity disagree on the feature set is refused on load."""
    from saerl_hf.signals.persistence import ProbeLoadError

    recorded = identity.get("features")
    if recorded is not None and feature_set(recorded) != features:
        raise ProbeLoadError(f"'{directory}': the config says features '{features}' but the model was fitted on "
                             f"'{recorded}'. Fix: refit and save the {kind} model again.")
