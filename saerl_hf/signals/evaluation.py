"""Measurements of the signals where a probe has no home advantage, for each feature set (sae, dense, sae+dense).

- :func:`per_kind_auroc`: AUROC of clean rows against each corruption kind alone.
- :func:`leave_one_kind_out`: the quality probe fitted on every corruption kind but one and scored on the one it
  never saw (does it detect noise, or only the generator's kinds?).
- :func:`real_text_auroc`: clean held-out problems against off-domain text nobody here wrote
  (:func:`saerl_hf.signals.corruptions.real_text_negatives`).
- :func:`learning_curve`: difficulty Spearman against the number of labels the proxy was fitted on.

Inputs are featurized datasets (the report featurizes them once); outputs are plain dicts for ``results.json``.
``interval``, when given, is ``interval(metric, x, y) -> (low, high)`` with ``metric`` a function of ``(x, y)``
(the report passes its paired bootstrap); rows then carry ``*_ci95``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial

import numpy as np

from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe
from saerl_hf.signals.matrix import DENSE, HYBRID, SAE, feature_set
from saerl_hf.signals.quality import QualityConfig, QualityProbe

logger = logging.getLogger(__name__)

FEATURE_SETS = (SAE, DENSE, HYBRID)
LEARNING_CURVE_SIZES = (250, 500, 1000, 2000, 7500)


def auroc(clean_scores, noisy_scores) -> float:
    """AUROC of clean (positive) against noisy scores; NaN when either side is empty."""
    from sklearn.metrics import roc_auc_score

    clean_scores, noisy_scores = np.asarray(clean_scores, float), np.asarray(noisy_scores, float)
    if not len(clean_scores) or not len(noisy_scores):
        return float("nan")
    y = np.r_[np.ones(len(clean_scores)), np.zeros(len(noisy_scores))]
    return float(roc_auc_score(y, np.r_[clean_scores, noisy_scores]))


def _kinds(dataset) -> list[str]:
    return sorted({k for k in dataset["corruption"] if k != "none"})


def _rows(dataset, mask) -> object:
    return dataset.select(np.flatnonzero(mask))


def per_kind_auroc(probe: QualityProbe, test) -> dict[str, float]:
    """``{kind: AUROC(clean, that kind)}`` plus ``all`` (clean vs every noisy row) on a featurized quality set
    (``is_clean`` and ``corruption`` columns, as ``make_quality_dataset`` writes)."""
    scores = probe.predict(test)
    clean = np.asarray(test["is_clean"]) == 1
    kinds = np.asarray(test["corruption"])
    out = {kind: auroc(scores[clean], scores[kinds == kind]) for kind in _kinds(test)}
    out["all"] = auroc(scores[clean], scores[~clean])
    return out


def leave_one_kind_out(train, test, features: str = SAE, config: QualityConfig | None = None,
                       interval=None) -> dict:
    """For each corruption kind K of ``train``: a quality probe fitted on ``train`` without K, scored on the clean
    rows of ``test`` against its K rows. Returns ``{"per_kind": {K: AUROC}, "mean": mean over kinds}``; with
    ``interval``, also ``per_kind_ci95`` and ``mean_ci95`` (the mean's resamples draw the whole test set's rows)."""
    config = replace(config or QualityConfig(), features=feature_set(features))
    train_kinds, test_kinds = np.asarray(train["corruption"]), np.asarray(test["corruption"])
    kinds = _kinds(train)
    scores = np.empty((len(test), len(kinds)))  # every held-out probe scores every test row
    per_kind, per_kind_ci = {}, {}
    for j, kind in enumerate(kinds):
        probe = QualityProbe(config).fit(_rows(train, train_kinds != kind))
        scores[:, j] = probe.predict(test)
        held_out = (test_kinds == "none") | (test_kinds == kind)
        labels = (test_kinds[held_out] == "none").astype(int)
        per_kind[kind] = _label_auroc(scores[held_out, j], labels)
        if interval is not None:
            per_kind_ci[kind] = interval(_label_auroc, scores[held_out, j], labels)
        logger.info("leave-one-kind-out (%s): %s held out, AUROC %.3f", config.features, kind, per_kind[kind])
    values = [v for v in per_kind.values() if np.isfinite(v)]
    out = {"per_kind": per_kind, "mean": float(np.mean(values)) if values else float("nan")}
    if interval is not None:
        scored = [k for k in kinds if np.isfinite(per_kind[k])]  # the kinds the mean averages, as above
        codes = np.array([-1 if k == "none" else scored.index(k) if k in scored else -2 for k in test_kinds])
        mean_of = partial(_held_out_mean, scores[:, [kinds.index(k) for k in scored]])  # row indices -> the mean
        out.update(per_kind_ci95=per_kind_ci, mean_ci95=interval(mean_of, np.arange(len(codes)), codes)
                   if scored else (float("nan"), float("nan")))
    return out


def _held_out_mean(scores, rows, codes) -> float:
    """Mean over kinds j of AUROC(clean rows, rows of kind j) under probe j's scores (column j of ``scores[rows]``);
    ``codes``: each row's kind column, -1 when clean, -2 for a kind not averaged. NaN when a resample lacks a kind."""
    scores, clean = scores[np.asarray(rows, int)], codes == -1
    values = [auroc(scores[clean, j], scores[codes == j, j]) for j in range(scores.shape[1])]
    return float(np.mean(values))


def real_text_auroc(probe: QualityProbe, clean, real_negatives) -> float:
    """AUROC of featurized clean problems against featurized real off-domain text (never seen in training)."""
    return auroc(probe.predict(clean), probe.predict(real_negatives))


def _label_auroc(scores, labels) -> float:
    labels = np.asarray(labels)
    return auroc(np.asarray(scores)[labels == 1], np.asarray(scores)[labels == 0])


def quality_generalisation(train, test, real_negatives=None, feature_sets=FEATURE_SETS,
                           config: QualityConfig | None = None, interval=None) -> list[dict]:
    """One row per feature set: in-distribution AUROC (all and per kind), leave-one-kind-out AUROC per kind and
    mean, and AUROC against ``real_negatives`` (clean test rows vs real text) when given; all on the same rows."""
    rows = []
    test_clean = _rows(test, np.asarray(test["is_clean"]) == 1)
    for features in feature_sets:
        features = feature_set(features)
        start = time.perf_counter()
        probe = QualityProbe(replace(config or QualityConfig(), features=features)).fit(train)
        row = {"features": features, "in_distribution": per_kind_auroc(probe, test),
               "leave_one_kind_out": leave_one_kind_out(train, test, features, config, interval)}
        if interval is not None:
            row["in_distribution_ci95"] = interval(_label_auroc, probe.predict(test), np.asarray(test["is_clean"]))
        if real_negatives is not None:
            row["real_text"] = real_text_auroc(probe, test_clean, real_negatives)
            if interval is not None:
                scores = np.r_[probe.predict(test_clean), probe.predict(real_negatives)]
                labels = np.r_[np.ones(len(test_clean)), np.zeros(len(real_negatives))]
                row["real_text_ci95"] = interval(_label_auroc, scores, labels)
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
    return rows


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) if np.ptp(x) > 0 else float("nan")


def learning_curve(train, test, sizes=LEARNING_CURVE_SIZES, feature_sets=FEATURE_SETS, label_column: str = "level",
                   seed: int = 0, config: DifficultyConfig | None = None, interval=None) -> list[dict]:
    """Spearman on ``test`` of the difficulty proxy fitted on the first n rows of one seeded permutation of
    ``train`` (nested subsets), for each n in ``sizes`` and each feature set. Sizes above ``len(train)`` are
    replaced by ``len(train)`` once (``capped: True``)."""
    order = np.random.default_rng(seed).permutation(len(train))
    counts = sorted({min(int(n), len(train)) for n in sizes})
    target = np.asarray(test[label_column], dtype=float)
    rows = []
    for n in counts:
        subset = train.select(np.sort(order[:n]))
        for features in feature_sets:
            base = config or DifficultyConfig(label_column=label_column, seed=seed)
            start = time.perf_counter()
            probe = DifficultyProbe(replace(base, features=feature_set(features))).fit(subset)
            predicted = probe.predict(test)
            rho = _spearman(predicted, target)
            rows.append({"features": feature_set(features), "n_labels": n, "spearman": rho,
                         "capped": n == len(train) and max(sizes) > len(train),
                         "fit_seconds": round(time.perf_counter() - start, 2)})
            if interval is not None:
                rows[-1]["ci95"] = interval(_spearman, predicted, target)
    return rows
