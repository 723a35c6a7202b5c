"""Quality probe: logistic regression on SAE features, target-distribution prompts vs noisy/off-domain ones.

Negatives need no hand labelling: ``corruptions.make_quality_dataset`` derives them from clean prompts.
Output column ``quality`` is P(clean); ``keep`` filters by a threshold or keeps a top fraction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse as sp

from saerl_hf.signals.linear import LinearProbe, fit_counting_convergence, numeric_labels
from saerl_hf.signals.matrix import (
    DENSE,
    POOLING_PART_HELP,
    SAE,
    SCALING_HELP,
    apply_scaler,
    block_split,
    dataset_matrix,
    feature_set,
    fit_scaler,
    identity_for,
    linear_scores,
    part_columns,
    part_matrix,
    pooling_part_name,
    require_source,
    sigmoid,
    transform,
)
from saerl_hf.signals.persistence import SignalLabelError, check_identity

logger = logging.getLogger(__name__)


@dataclass
class QualityConfig:
    """How the quality probe is fitted."""

    label_column: str = field(default="is_clean", metadata={"help": "1 = target-distribution prompt, 0 = noisy."})
    features: str = field(default=SAE, metadata={"help": "Feature set: 'sae' (sparse SAE features), 'dense' (the "
                                                          "mean residual, alias of 'dense_mean') or 'sae+dense' "
                                                          "(both blocks, each scaled to equal weight)."})
    scaling: str | None = field(default=None, metadata={"help": SCALING_HELP})
    pooling_part: str | None = field(default=None, metadata={"help": POOLING_PART_HELP})
    Cs: int = field(default=8, metadata={"help": "Inverse regularisation strengths tried by CV (log grid)."})
    cv: int = field(default=5, metadata={"help": "Cross-validation folds for C."})
    min_per_class: int = field(default=20, metadata={"help": "Fewer labelled rows in a class is an error."})
    max_iter: int = field(default=2000, metadata={"help": "Solver iterations."})
    seed: int = field(default=0, metadata={"help": "Seed of the CV split."})
    output_column: str = field(default="quality", metadata={"help": "Column added by apply(): P(clean)."})

    def __post_init__(self):
        self.features = feature_set(self.features)
        self.pooling_part = pooling_part_name(self.pooling_part)


class QualityProbe(LinearProbe):
    """Logistic regression (C by CV on AUROC); ``predict``/``apply`` give P(target distribution)."""

    KIND = "quality"
    LINK = "sigmoid"
    CONFIG = QualityConfig

    def fit(self, dataset, negatives=None) -> QualityProbe:
        """Fit on ``dataset[label_column]`` (1 clean / 0 noisy; None rows skipped and counted), or, when
        ``negatives`` is given, on every row of ``dataset`` as positive and every row of ``negatives`` as
        negative (both featurized with the same SAE)."""
        config = self._resolve_scaling()
        require_source(dataset, config.features)
        matrix, identity = part_matrix(dataset, config.features, config.pooling_part)
        if negatives is None:
            labels = numeric_labels(dataset, config.label_column)
        else:
            check_identity(identity, identity_for(negatives, config.features), "negatives of the quality probe")
            neg = dataset_matrix(negatives, config.features, width=None if config.features == DENSE else matrix.shape[1],
                                 columns=part_columns(identity))
            matrix = sp.vstack([matrix, neg]).tocsr() if sp.issparse(matrix) else np.vstack([matrix, neg])
            labels = np.r_[np.ones(len(dataset)), np.zeros(len(negatives))]
        keep = np.flatnonzero(np.isfinite(labels))
        n_excluded = int(len(labels) - len(keep))
        y = labels[keep]
        bad = sorted(set(np.unique(y).tolist()) - {0.0, 1.0})
        if bad:
            raise SignalLabelError(f"Quality labels must be 0 or 1; '{config.label_column}' also holds {bad[:5]}. "
                                   f"Fix: 1 for target-distribution prompts, 0 for noisy ones.")
        counts = {int(c): int((y == c).sum()) for c in (0, 1)}
        if min(counts.values()) < config.min_per_class:
            raise SignalLabelError(
                f"The quality probe needs >= {config.min_per_class} rows per class; got {counts[1]} clean and "
                f"{counts[0]} noisy ({n_excluded} unlabelled). Fix: add negatives with "
                f"`corruptions.make_quality_dataset` or lower min_per_class."
            )
        split = block_split(config.features, identity)
        return self._fit_arrays(transform(matrix, config.scaling, split)[keep], y, identity, len(labels), n_excluded,
                                split)

    def _fit_arrays(self, matrix, y, identity, n_rows, n_excluded, split=None):
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold

        config = self.config
        center, scale = fit_scaler(matrix, config.scaling, split)
        start = time.perf_counter()
        classifier = LogisticRegressionCV(
            Cs=config.Cs, cv=StratifiedKFold(config.cv, shuffle=True, random_state=config.seed),
            l1_ratios=(0.0,), scoring="roc_auc", use_legacy_attributes=False, max_iter=config.max_iter,
            class_weight="balanced", n_jobs=1,
        )
        n_convergence = fit_counting_convergence(
            lambda: classifier.fit(apply_scaler(matrix, center, scale), y), "quality probe LogisticRegressionCV",
            f"Fix: raise max_iter (now {config.max_iter}); the probe is still used.")
        fit_seconds = time.perf_counter() - start
        self._set(classifier.coef_.ravel(), classifier.intercept_.ravel()[0], center, scale, identity)
        train_p = sigmoid(linear_scores(matrix, self.coef, self.intercept, center, scale))
        self.metrics = {
            "n_rows": int(n_rows),
            "n_labelled": int(len(y)),
            "n_excluded_missing_label": int(n_excluded),
            "n_clean": int((y == 1).sum()),
            "n_noisy": int((y == 0).sum()),
            "C": float(np.ravel(classifier.C_)[0]),
            "cv_auroc": float(np.asarray(classifier.scores_).mean(axis=0).max()),
            "train_auroc": float(roc_auc_score(y, train_p)),
            "fit_seconds": round(fit_seconds, 3),
            "n_convergence_warnings": int(n_convergence),
        }
        return self

    def keep(self, dataset, threshold: float | None = None, top_fraction: float | None = None):
        """Rows to keep: ``quality >= threshold``, or the ``top_fraction`` best (ties broken by row order).

        Returns ``(filtered_dataset, counts)``; the ``quality`` column is added first when absent.
        """
        return keep_by_quality(dataset if self.config.output_column in dataset.column_names else self.apply(dataset),
                               threshold, top_fraction, self.config.output_column)


def keep_by_quality(dataset, threshold: float | None = None, top_fraction: float | None = None,
                    column: str = "quality"):
    """Keep rows with ``quality >= threshold`` or the ``top_fraction`` best; returns ``(dataset, counts)``.

    The one quality filter of the project: curate filters before ordering, the GRPO script for datasets
    curated elsewhere, and users on their own data. Neither given: nothing is filtered. Ties at the
    ``top_fraction`` cut keep the earlier rows; rows without a finite score are dropped and counted apart.
    """
    n = len(dataset)
    if threshold is not None and top_fraction is not None:
        raise ValueError("Pass either threshold= (e.g. 0.5) or top_fraction= (e.g. 0.8), not both. Fix: set the "
                         "other to null.")
    if threshold is None and top_fraction is None:
        return dataset, {"n_in": n, "n_kept": n, "n_dropped": 0, "n_missing": 0, "threshold": None}
    if column not in dataset.column_names:
        raise ValueError(f"No '{column}' column to filter on (columns: {', '.join(dataset.column_names)}). Fix: "
                         f"apply the quality probe first (QualityProbe.apply, or `saerl-hf curate`).")
    scores = np.array([np.nan if v is None else float(v) for v in dataset[column]], dtype=np.float64)
    finite = np.isfinite(scores)
    if top_fraction is not None:
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}. Fix: e.g. 0.8 keeps the best 80%.")
        n_keep = int(round(top_fraction * finite.sum()))
        ranked = np.flatnonzero(finite)[np.argsort(-scores[finite], kind="stable")]
        rows = np.sort(ranked[:n_keep])
        threshold = float(scores[ranked[n_keep - 1]]) if n_keep else float("inf")
    else:
        rows = np.flatnonzero(finite & (scores >= threshold))
    counts = {"n_in": n, "n_kept": int(len(rows)), "n_dropped": int(finite.sum() - len(rows)),
              "n_missing": int((~finite).sum()), "threshold": float(threshold)}
    logger.info("quality filter kept %d of %d rows (%d without a score)", counts["n_kept"], n, counts["n_missing"])
    return (dataset if len(rows) == n else dataset.select(rows)), counts
