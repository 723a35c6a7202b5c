"""Difficulty proxy: ElasticNet on (log1p) SAE features, fitted on a small labelled subset.

Pass rates from rollouts are the expensive label; the proxy learns them (or human levels) once and then
scores any featurized prompt for the cost of a sparse dot product. Output column ``difficulty``: higher =
harder (labels where higher means easier, such as ``pass_rate``, are sign-flipped at fit time).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from saerl_hf.signals.linear import LinearProbe, fit_counting_convergence, numeric_labels
from saerl_hf.signals.matrix import (
    POOLING_PART_HELP,
    SAE,
    SCALING_HELP,
    apply_scaler,
    block_split,
    feature_set,
    fit_scaler,
    linear_scores,
    part_matrix,
    pooling_part_name,
    require_source,
    transform,
)
from saerl_hf.signals.persistence import SignalLabelError

logger = logging.getLogger(__name__)


@dataclass
class DifficultyConfig:
    """How the difficulty proxy is fitted (every field is also a ``report-signals``/recipe option)."""

    label_column: str = field(default="level", metadata={"help": "Numeric label column: MATH 'level', Omni-MATH "
                                                                 "difficulty (also 'level'), or 'pass_rate'."})
    higher_is_harder: bool | None = field(default=None, metadata={
        "help": "Whether larger labels mean harder problems. None: True, except False for 'pass_rate'."})
    features: str = field(default=SAE, metadata={"help": "Feature set: 'sae' (sparse SAE features), 'dense' (the "
                                                          "mean residual, alias of 'dense_mean') or 'sae+dense' "
                                                          "(both blocks, each scaled to equal weight)."})
    scaling: str | None = field(default=None, metadata={"help": SCALING_HELP})
    pooling_part: str | None = field(default=None, metadata={"help": POOLING_PART_HELP})
    l1_ratios: tuple[float, ...] = field(default=(0.1, 0.5, 0.9), metadata={"help": "ElasticNet l1_ratio grid."})
    n_alphas: int = field(default=12, metadata={"help": "Alphas per l1_ratio on the regularisation path."})
    cv: int = field(default=5, metadata={"help": "Cross-validation folds for alpha and l1_ratio."})
    min_labels: int = field(default=50, metadata={"help": "Fewer labelled rows than this is an error."})
    max_iter: int = field(default=2000, metadata={"help": "Coordinate-descent iterations per fit."})
    tol: float = field(default=1e-3, metadata={"help": "Coordinate-descent tolerance."})
    dense_fit_density: float = field(default=0.1, metadata={
        "help": "Fit on a dense numpy copy of the design when at least this share of its entries is non-zero, each "
                "cross-validation fold has more rows than columns (then ElasticNet precomputes the Gram matrix, "
                "which only a dense design allows) and the copy stays under 2 GiB (CV holds ~3 copies at its peak); "
                "the same problem. With fewer rows than columns CSR was faster on real rows (docs/benchmarks.md: "
                "2,000 rows, 0.4-1.0x the copy's seconds). 1: always CSR; 0: always the copy."})
    n_jobs: int = field(default=1, metadata={
        "help": "Cross-validation fits run in parallel (joblib; -1 = every core): the same probe for any value, "
                "faster on machines with many cores (each job holds its own copy of a fold's design)."})
    seed: int = field(default=0, metadata={"help": "Seed of the CV split."})
    output_column: str = field(default="difficulty", metadata={"help": "Column added by apply()."})

    def __post_init__(self):
        self.features = feature_set(self.features)
        self.pooling_part = pooling_part_name(self.pooling_part)

    def sign(self) -> float:
        harder = self.higher_is_harder
        if harder is None:
            harder = self.label_column != "pass_rate"
        return 1.0 if harder else -1.0


class DifficultyProbe(LinearProbe):
    """ElasticNetCV on sparse features; ``predict``/``apply`` give ``difficulty`` (higher = harder)."""

    KIND = "difficulty"
    LINK = "identity"
    CONFIG = DifficultyConfig

    def fit(self, dataset) -> DifficultyProbe:
        """Fit on the rows of ``dataset`` whose label is a number; None/NaN rows are skipped and counted."""
        from scipy.stats import spearmanr
        from sklearn.linear_model import ElasticNetCV
        from sklearn.model_selection import KFold

        config = self._resolve_scaling()
        require_source(dataset, config.features)  # features first: without them no label matters
        labels, keep, target = _regression_target(dataset, config)
        n_excluded = int(len(labels) - len(keep))
        raw, identity = part_matrix(dataset, config.features, config.pooling_part)
        split = block_split(config.features, identity)
        matrix = transform(raw, config.scaling, split)[keep]
        center, scale = fit_scaler(matrix, config.scaling, split)
        design = apply_scaler(matrix, center, scale)

        start = time.perf_counter()
        regressor = ElasticNetCV(
            l1_ratio=list(config.l1_ratios), alphas=config.n_alphas, cv=KFold(config.cv, shuffle=True,
                                                                             random_state=config.seed),
            max_iter=config.max_iter, tol=config.tol, n_jobs=config.n_jobs, random_state=config.seed, selection="cyclic",
        )
        design = _dense_when_dense(design, config.dense_fit_density, config.cv)
        n_convergence = fit_counting_convergence(
            lambda: regressor.fit(design, target), f"difficulty probe ElasticNetCV on '{config.label_column}'",
            f"Fix: raise max_iter (now {config.max_iter}) or tol (now {config.tol:g}); the probe is still used.")
        fit_seconds = time.perf_counter() - start

        self._set(regressor.coef_, regressor.intercept_, center, scale, identity)
        fitted = linear_scores(matrix, self.coef, self.intercept, center, scale)
        mse_path = np.asarray(regressor.mse_path_)  # (l1_ratios, alphas, folds)
        self.metrics = {
            "n_rows": int(len(labels)),
            "n_labelled": int(len(keep)),
            "n_excluded_missing_label": n_excluded,
            "label_column": config.label_column,
            "sign": config.sign(),
            "alpha": float(regressor.alpha_),
            "l1_ratio": float(regressor.l1_ratio_),
            "cv_mse": float(mse_path.mean(axis=-1).min()),
            "label_variance": float(np.var(target)),
            # NaN when the fit is constant (every coefficient zero: the features explain nothing).
            "train_spearman": float(spearmanr(fitted, target).statistic) if np.ptp(fitted) > 0 else float("nan"),
            "n_nonzero_coef": int(np.count_nonzero(regressor.coef_)),
            "fit_seconds": round(fit_seconds, 3),
            "fit_on": "dense" if isinstance(design, np.ndarray) else "sparse",
            "n_convergence_warnings": int(n_convergence),
        }
        return self


DENSE_FIT_MAX_BYTES = 2 * 2**30


def _dense_when_dense(design, min_density: float, cv: int = 5):
    """A numpy copy of a sparse ``design`` whose share of stored entries is at least ``min_density``, whose CV folds
    have more rows than columns (the Gram matrix ElasticNet then precomputes is what makes the copy pay) and whose
    float64 copy fits in ``DENSE_FIT_MAX_BYTES``; ``min_density`` 0 always copies (within the bytes), 1 never.
    Otherwise ``design`` unchanged. The fit is the same problem."""
    from scipy import sparse as sp

    if not sp.issparse(design) or min_density >= 1:
        return design
    rows, cols = design.shape
    if rows * cols * 8 > DENSE_FIT_MAX_BYTES:
        return design
    if min_density > 0 and (design.nnz < min_density * rows * cols or rows * (cv - 1) // cv <= cols):
        return design
    return design.toarray()


def _regression_target(dataset, config: DifficultyConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, kept rows, target)``: the rows with a finite label and their labels signed so that higher is
    harder; too few labelled rows, or labels that do not vary, raise :class:`SignalLabelError`."""
    labels = numeric_labels(dataset, config.label_column)
    keep = np.flatnonzero(np.isfinite(labels))
    n_excluded = int(len(labels) - len(keep))
    if len(keep) < config.min_labels:
        raise SignalLabelError(
            f"Only {len(keep)} rows have a numeric '{config.label_column}' label ({n_excluded} are None/NaN); "
            f"the difficulty proxy needs at least min_labels={config.min_labels}. Fix: label more rows "
            f"(e.g. with the pass-rate labeller) or lower min_labels."
        )
    if n_excluded:
        logger.info("difficulty: %d of %d rows have no finite '%s' label (None/NaN/inf) and are excluded",
                    n_excluded, len(labels), config.label_column)
    target = config.sign() * labels[keep]
    if np.ptp(target) == 0:
        raise SignalLabelError(f"All {len(keep)} '{config.label_column}' labels equal {labels[keep][0]}: "
                               f"nothing to regress. Fix: use a subset with varied labels.")
    return labels, keep, target
