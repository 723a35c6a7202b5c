"""Diversity: k-means in SAE space (L2-normalised features) and near-duplicate removal.

Clusters group prompts that light up the same features (topic, notation, problem type); the curriculum
interleaves them so consecutive batches differ. Cosine >= 0.98 inside a cluster is treated as the same
prompt worded slightly differently.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import sparse as sp

from saerl_hf.signals.linear import _config_from_dict, check_saved_feature_set, require_feature_columns
from saerl_hf.signals.matrix import (
    DENSE,
    POOLING_PART_HELP,
    SAE,
    apply_scaler,
    batch_matrix,
    block_split,
    dataset_matrix,
    feature_set,
    fit_scaler,
    identity_for,
    part_columns,
    part_matrix,
    pooling_part_name,
    require_source,
    transform,
)

logger = logging.getLogger(__name__)


@dataclass
class ClusterConfig:
    """How the SAE-space clusters are fitted."""

    n_clusters: int = field(default=16, metadata={"help": "Number of k-means clusters (sklearn's n_clusters)."})
    features: str = field(default=SAE, metadata={"help": "Feature set: 'sae' (sparse SAE features), 'dense' (the "
                                                          "mean residual, alias of 'dense_mean') or 'sae+dense' "
                                                          "(both blocks, each scaled to equal weight)."})
    scaling: str | None = field(default=None, metadata={
        "help": "Before L2 normalisation: log1p_idf (log1p, then each latent weighted by its inverse document "
                "frequency; measured best, docs/signals.md) | log1p | log1p_std | std | none ('std' centres dense "
                "features). Default: log1p_idf for 'sae' and 'sae+dense', std for 'dense'."})
    pooling_part: str | None = field(default=None, metadata={"help": POOLING_PART_HELP})
    n_init: int = field(default=4, metadata={"help": "k-means restarts (best inertia kept)."})
    max_iter: int = field(default=300, metadata={"help": "k-means iterations per restart."})
    seed: int = field(default=0, metadata={"help": "k-means seed."})
    output_column: str = field(default="cluster", metadata={"help": "Column added by apply()."})

    def __post_init__(self):
        self.features = feature_set(self.features)
        self.pooling_part = pooling_part_name(self.pooling_part)
        if self.scaling is None:  # the residual is signed and dense: log1p would clip it, idf is 1 everywhere
            self.scaling = "std" if self.features == DENSE else "log1p_idf"


def l2_normalise(matrix):
    """Rows scaled to unit norm (all-zero rows stay zero); sparse stays sparse."""
    from sklearn.preprocessing import normalize

    return normalize(matrix, norm="l2")


class ClusterMap:
    """Picklable batched ``datasets.map`` function adding the cluster id (nearest centroid)."""

    def __init__(self, column, centroids, center, scale, scaling, features, split=None, columns=None):
        self.column, self.centroids = column, np.asarray(centroids, np.float64)
        self.center, self.scale = np.asarray(center, np.float64), np.asarray(scale, np.float64)
        self.scaling, self.features, self.split, self.columns = scaling, features, split, columns

    def unit_rows(self, matrix):
        return l2_normalise(apply_scaler(transform(matrix, self.scaling, self.split), self.center, self.scale))

    def assign(self, matrix) -> np.ndarray:
        """Nearest centroid (Euclidean, as ``KMeans.predict``) of each unit row."""
        from sklearn.metrics import pairwise_distances_argmin

        return pairwise_distances_argmin(self.unit_rows(matrix), self.centroids).astype(np.int64)

    def __call__(self, batch: dict, indices=None) -> dict:
        return {self.column: self.assign(batch_matrix(batch, self.features, self.centroids.shape[1], indices,
                                                      self.columns)).tolist()}


class ClusterModel:
    """k-means on L2-normalised (log1p, idf-weighted) features; ``predict``/``apply`` give ``cluster`` ids."""

    KIND = "clusters"

    def __init__(self, config: ClusterConfig | None = None):
        self.config = config if config is not None else ClusterConfig()
        self.centroids: np.ndarray | None = None
        self.center = self.scale = None
        self.identity: dict = {}
        self.metrics: dict = {}

    def _require_fitted(self):
        if self.centroids is None:
            raise RuntimeError("The cluster model is not fitted. Fix: call .fit(dataset) or .load(dir) first.")

    @property
    def width(self) -> int:
        self._require_fitted()
        return int(self.centroids.shape[1])

    @property
    def columns(self) -> tuple[int, int, int] | None:
        """The part of the SAE index space this model reads (``config.pooling_part``); None: every column."""
        return part_columns({**self.identity, "features": self.config.features})

    def fit(self, dataset) -> ClusterModel:
        from sklearn.cluster import KMeans

        config = self.config
        require_source(dataset, config.features)
        if len(dataset) < config.n_clusters:
            raise ValueError(f"n_clusters={config.n_clusters} needs at least {config.n_clusters} rows; the dataset "
                             f"has {len(dataset)}. Fix: lower n_clusters.")
        raw, identity = part_matrix(dataset, config.features, config.pooling_part)
        split = block_split(config.features, identity)
        matrix = transform(raw, config.scaling, split)
        self.center, self.scale = fit_scaler(matrix, config.scaling, split)
        unit = l2_normalise(apply_scaler(matrix, self.center, self.scale))
        start = time.perf_counter()
        kmeans = KMeans(config.n_clusters, n_init=config.n_init, max_iter=config.max_iter, random_state=config.seed)
        kmeans.fit(unit)
        self.centroids = np.asarray(kmeans.cluster_centers_, np.float64)
        self.identity = identity
        labels = self.map_function().assign(dataset_matrix(dataset, config.features, width=None
                                                           if config.features == DENSE else self.width,
                                                           columns=self.columns))
        self.metrics = {
            "n_rows": len(dataset),
            "n_clusters": config.n_clusters,
            "inertia": float(kmeans.inertia_),
            "cluster_sizes": np.bincount(labels, minlength=config.n_clusters).tolist(),
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        return self

    def map_function(self) -> ClusterMap:
        self._require_fitted()
        return ClusterMap(self.config.output_column, self.centroids, self.center, self.scale, self.config.scaling,
                          self.config.features, block_split(self.config.features, self.identity), self.columns)

    def _design(self, dataset, features: str | None = None):
        from saerl_hf.signals.persistence import check_feature_set, check_identity, check_width

        if features is not None:
            check_feature_set(self.config.features, features, "cluster model")
        require_feature_columns(dataset, self.config.features, "cluster model")
        check_identity(self.identity, identity_for(dataset, self.config.features), "cluster model")
        matrix = dataset_matrix(dataset, self.config.features, width=None if self.config.features == DENSE
                                else self.width, columns=self.columns)
        check_width(self.width, matrix, "cluster model")
        return matrix

    def predict(self, dataset, features: str | None = None) -> np.ndarray:
        self._require_fitted()
        return self.map_function().assign(self._design(dataset, features))

    def fingerprint(self) -> str:
        from saerl_hf.signals.persistence import fingerprint_of

        self._require_fitted()
        return fingerprint_of(self.KIND, self.config.output_column, self.config.scaling, self.config.features,
                              self.centroids, self.center, self.scale,
                              *([repr(self.columns)] if self.columns else []))

    def apply(self, dataset, batch_size: int = 1000, features: str | None = None, **map_kwargs):
        """``dataset`` with the ``cluster`` column; fingerprint = f(input fingerprint, fitted centroids)."""
        from saerl_hf.signals.persistence import fingerprint_of
        from saerl_hf.sparse import write_provenance

        self._design(dataset.select(range(min(1, len(dataset)))), features)
        out = dataset.map(self.map_function(), batched=True, batch_size=batch_size, with_indices=True,
                          new_fingerprint=fingerprint_of(dataset._fingerprint, self.fingerprint()),
                          desc=f"clusters -> {self.config.output_column}", **map_kwargs)
        return write_provenance(out, {"model_fingerprint": self.fingerprint(), "column": self.config.output_column,
                                      "metrics": self.metrics}, key=self.KIND)

    def save(self, directory):
        from saerl_hf.signals.persistence import save_model

        self._require_fitted()
        return save_model(directory, self.KIND,
                          {"centroids": self.centroids, "center": self.center, "scale": self.scale},
                          {"config": asdict(self.config), "identity": self.identity, "feature_width": self.width,
                           "metrics": self.metrics})

    @classmethod
    def load(cls, directory) -> ClusterModel:
        from saerl_hf.signals.persistence import load_model

        arrays, payload = load_model(directory, cls.KIND, config_keys=("config", "identity"),
                                     array_keys=("centroids", "center", "scale"))
        saved = dict(payload["config"])
        if "k" in saved:  # saved before the sklearn name
            saved["n_clusters"] = saved.pop("k")
        model = cls(_config_from_dict(ClusterConfig, saved))
        check_saved_feature_set(directory, model.config.features, payload["identity"], cls.KIND)
        model.centroids, model.center, model.scale = arrays["centroids"], arrays["center"], arrays["scale"]
        model.identity, model.metrics = payload["identity"], payload.get("metrics", {})
        return model


def _normalised_text(text) -> str:
    return re.sub(r"\s+", " ", str(text or "")).strip()


def deduplicate(dataset, threshold: float = 0.98, text_column: str = "problem", cluster_column: str | None = "cluster",
                features: str = SAE, scaling: str = "log1p", pooling_part: str | None = None):
    """Drop exact duplicates of ``text_column`` (whitespace-normalised), then rows whose feature cosine to an
    earlier kept row of the same cluster is >= ``threshold``. The first occurrence is kept. ``pooling_part``: the
    part of a two-part pooling compared (curate passes the clusters' own).

    Returns ``(deduplicated_dataset, counts)`` with counts ``n_in``, ``exact_duplicates``,
    ``near_duplicates``, ``n_kept``. ``cluster_column=None`` compares all rows with each other.
    """
    from tqdm.auto import tqdm

    if text_column not in dataset.column_names:
        raise ValueError(f"No '{text_column}' column to compare texts (columns: {dataset.column_names}).")
    if cluster_column is not None and cluster_column not in dataset.column_names:
        raise ValueError(f"No '{cluster_column}' column. Fix: add it with ClusterModel.apply(dataset) first, or "
                         f"pass cluster_column=None to compare all rows.")
    exact_drop = _exact_duplicates(dataset[text_column])
    near_drop = np.zeros(len(dataset), dtype=bool)
    groups = np.asarray(dataset[cluster_column]) if cluster_column is not None else np.zeros(len(dataset), int)
    raw, identity = part_matrix(dataset, features, pooling_part_name(pooling_part))
    split = block_split(features, identity)
    matrix = transform(raw, scaling, split)
    unit = l2_normalise(apply_scaler(matrix, *fit_scaler(matrix, scaling, split))).astype(np.float32)
    unit = unit.tocsr() if sp.issparse(unit) else unit
    for group in tqdm(np.unique(groups), desc="near-duplicates", leave=False):
        rows = np.flatnonzero((groups == group) & ~exact_drop)
        near_drop[rows[near_duplicates(unit[rows], threshold)]] = True
    keep = np.flatnonzero(~(exact_drop | near_drop))
    counts = {"n_in": len(dataset), "exact_duplicates": int(exact_drop.sum()),
              "near_duplicates": int(near_drop.sum()), "n_kept": int(len(keep))}
    logger.info("deduplicate: %s", counts)
    return dataset.select(keep), counts


def _exact_duplicates(texts) -> np.ndarray:
    """True for every text whose whitespace-normalised form appeared earlier."""
    seen: set[str] = set()
    drop = np.zeros(len(texts), dtype=bool)
    for row, text in enumerate(texts):
        key = _normalised_text(text)
        drop[row] = key in seen
        seen.add(key)
    return drop


def near_duplicates(unit, threshold: float) -> np.ndarray:
    """Greedy in row order: True for each row whose cosine to an earlier kept row is >= ``threshold``.

    ``unit`` holds unit (or all-zero) rows, so cosine >= t is Euclidean distance <= sqrt(2 - 2t):
    ``sklearn.neighbors.NearestNeighbors`` finds those pairs with its compiled radius search (chunked,
    sparse-aware; its cosine metric goes through a slower generic path). All-zero rows (no active feature)
    have no cosine to anything and are left out. Only rows with a later neighbour are walked in Python.
    """
    from sklearn.neighbors import NearestNeighbors

    dropped = np.zeros(unit.shape[0], dtype=bool)
    nonzero = np.flatnonzero(np.asarray(abs(unit).sum(axis=1)).ravel() > 0)
    if len(nonzero) < 2 or threshold > 1.0:  # no cosine exceeds 1
        return dropped
    radius = float(np.sqrt(max(2.0 - 2.0 * threshold, 0.0)))
    rows = unit[nonzero]
    index = NearestNeighbors(radius=radius, metric="euclidean", algorithm="brute").fit(rows)
    pairs = sp.triu(index.radius_neighbors_graph(rows, mode="connectivity"), k=1).tocsr()  # (i, j), j > i
    for row in np.flatnonzero(np.diff(pairs.indptr)):
        if not dropped[nonzero[row]]:
            dropped[nonzero[pairs.indices[pairs.indptr[row]:pairs.indptr[row + 1]]]] = True
    return dropped
