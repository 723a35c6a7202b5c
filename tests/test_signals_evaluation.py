"""Leave-one-kind-out and per-kind AUROC, real-text negatives and the learning curve, on synthetic features whose
structure says what each measurement must show (fast; no model)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from saerl_hf.signals.corruptions import OFF_DOMAIN_PROMPTS, real_text_dataset, real_text_negatives
from saerl_hf.signals.evaluation import (
    auroc,
    learning_curve,
    leave_one_kind_out,
    per_kind_auroc,
    quality_generalisation,
)
from saerl_hf.signals.quality import QualityConfig, QualityProbe
from saerl_hf.sparse import write_provenance

D_SAE, D_IN = 64, 8
PROVENANCE = {"model": "r", "layer": 1, "hook": "model.layers.1", "sae": "s", "sae_hash": "h", "d_sae": D_SAE,
              "d_in": D_IN, "pooling": "mean", "top_k": None}
# Clean rows use latents 0-15. truncate and shuffle share one signature (16-23); off_domain looks clean plus a
# signature of its own (40-55) that no other kind has: seen in training it is easy, held out it is invisible.
SIGNATURE = {"truncate": range(16, 24), "shuffle": range(16, 24), "off_domain": range(40, 56)}


def quality_set(n_clean, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for kind in ["none"] * n_clean + list(SIGNATURE) * (n_clean // 3):
        idx = set(rng.choice(16, size=8, replace=False).tolist()) if kind != "truncate" else set(range(4))
        if kind != "none":
            idx |= set(rng.choice(list(SIGNATURE[kind]), size=4, replace=False).tolist())
        idx = sorted(idx)
        rows.append({"problem": kind, "sae_idx": idx, "sae_val": rng.uniform(0.5, 3, len(idx)).tolist(),
                     "sae_l0": len(idx), "dense_mean": rng.normal(size=D_IN).tolist(),
                     "is_clean": int(kind == "none"), "corruption": kind})
    return write_provenance(Dataset.from_list(rows), dict(PROVENANCE))


CONFIG = QualityConfig(Cs=4, cv=3, min_per_class=10)


def test_auroc_basics():
    assert auroc([1, 2, 3], [0, -1]) == 1.0 and auroc([0], [1]) == 0.0 and np.isnan(auroc([], [1]))


def test_leave_one_kind_out_exposes_a_kind_only_the_generator_taught():
    train, test = quality_set(90, 0), quality_set(60, 1)
    seen = per_kind_auroc(QualityProbe(CONFIG).fit(train), test)
    assert seen["off_domain"] > 0.95 and seen["truncate"] > 0.95 and seen["all"] > 0.95
    held_out = leave_one_kind_out(train, test, "sae", CONFIG)
    assert set(held_out["per_kind"]) == {"off_domain", "shuffle", "truncate"}
    assert held_out["per_kind"]["shuffle"] > 0.95  # truncate, still in training, has the same signature
    assert held_out["per_kind"]["off_domain"] < 0.7  # nothing in training looks like it
    assert held_out["mean"] == pytest.approx(np.mean(list(held_out["per_kind"].values())))


def test_leave_one_kind_out_intervals_bracket_each_kind_and_the_mean():
    from functools import partial

    from saerl_hf.signals.evaluation import _held_out_mean
    from saerl_hf.signals.report_sections import bootstrap_ci

    train, test = quality_set(90, 0), quality_set(60, 1)
    held_out = leave_one_kind_out(train, test, "sae", CONFIG, partial(bootstrap_ci, n=200, seed=0))
    kinds, test_kinds = sorted(held_out["per_kind"]), np.asarray(test["corruption"])
    scores = np.empty((len(test), len(kinds)))
    for j, kind in enumerate(kinds):  # by hand: the probe without the kind, its clean rows against its kind's rows
        probe = QualityProbe(CONFIG).fit(train.select(np.flatnonzero(np.asarray(train["corruption"]) != kind)))
        scores[:, j] = probe.predict(test)
        assert held_out["per_kind"][kind] == auroc(scores[test_kinds == "none", j], scores[test_kinds == kind, j])
        low, high = held_out["per_kind_ci95"][kind]
        assert np.isfinite([low, high]).all() and low <= held_out["per_kind"][kind] <= high, kind
    codes = np.array([-1 if k == "none" else kinds.index(k) for k in test_kinds])
    assert _held_out_mean(scores, np.arange(len(test)), codes) == pytest.approx(held_out["mean"])
    low, high = held_out["mean_ci95"]
    assert low < held_out["mean"] < high and high - low < 0.5  # off_domain is missed, so the mean is not 1
    assert "mean_ci95" not in leave_one_kind_out(train, test, "sae", CONFIG)  # no interval asked, none measured


def test_real_text_negatives_are_real_docstrings_and_deterministic():
    first, again, other = real_text_negatives(30, 0), real_text_negatives(30, 0), real_text_negatives(30, 1)
    assert first == again and first != other and len(set(first)) == 30
    assert all(8 <= len(t.split()) <= 60 and ">>>" not in t for t in first)
    assert not set(first) & set(OFF_DOMAIN_PROMPTS)
    rows = real_text_dataset(5, 0)
    assert rows["is_clean"] == [0] * 5 and set(rows["corruption"]) == {"real_text"}
    assert rows["problem"] == real_text_negatives(5, 0)
    with pytest.raises(ValueError, match="not installed"):
        real_text_negatives(3, packages=("no_such_package_here",))


def test_quality_generalisation_rows_cover_every_feature_set_on_the_same_rows():
    train, test = quality_set(60, 0), quality_set(45, 1)
    negatives = test.select(np.flatnonzero(np.asarray(test["corruption"]) == "off_domain"))
    rows = quality_generalisation(train, test, real_negatives=negatives, config=CONFIG)
    assert [r["features"] for r in rows] == ["sae", "dense_mean", "sae+dense"]
    by = {r["features"]: r for r in rows}
    assert by["sae"]["real_text"] > 0.95 and by["dense_mean"]["real_text"] < 0.75  # dense is noise here
    assert set(by["sae+dense"]["leave_one_kind_out"]["per_kind"]) == {"off_domain", "shuffle", "truncate"}
    spread = quality_generalisation(train, test, real_negatives=negatives, feature_sets=("sae",), config=CONFIG,
                                    interval=lambda metric, x, y: (metric(x, y) - 0.01, metric(x, y) + 0.01))[0]
    assert spread["in_distribution_ci95"] == pytest.approx((spread["in_distribution"]["all"] - 0.01,
                                                            spread["in_distribution"]["all"] + 0.01))
    assert spread["real_text_ci95"][0] == pytest.approx(spread["real_text"] - 0.01)


def regression_set(n, seed):
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(99).normal(size=D_SAE)
    rows = []
    for _ in range(n):
        idx = np.sort(rng.choice(D_SAE, size=10, replace=False))
        val = rng.exponential(2.0, size=10)
        dense = rng.normal(size=D_IN)
        rows.append({"problem": "p", "sae_idx": idx.tolist(), "sae_val": val.tolist(), "sae_l0": 10,
                     "dense_mean": dense.tolist(), "level": float(np.log1p(val) @ w[idx] + dense[0] +
                                                                rng.normal(scale=1.0))})
    return write_provenance(Dataset.from_list(rows), dict(PROVENANCE))


def test_learning_curve_nested_sizes_capped_and_rising():
    train, test = regression_set(400, 0), regression_set(200, 1)
    from saerl_hf.signals.difficulty import DifficultyConfig

    rows = learning_curve(train, test, sizes=(60, 400, 1000), config=DifficultyConfig(cv=3, n_alphas=6))
    assert [(r["features"], r["n_labels"]) for r in rows] == [(f, n) for n in (60, 400)
                                                              for f in ("sae", "dense_mean", "sae+dense")]
    assert [r["capped"] for r in rows] == [False] * 3 + [True] * 3  # 1000 asked, 400 available
    sae = {r["n_labels"]: r["spearman"] for r in rows if r["features"] == "sae"}
    assert sae[400] > sae[60] + 0.05 and sae[400] > 0.7
