"""Feature sets of the signal models: sae, dense (dense_mean) and the sae+dense hybrid, on synthetic features whose
structure says what a correct fit must recover; persistence records the set and refuses another one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset
from scipy.stats import spearmanr

from saerl_hf.signals import (
    ClusterConfig,
    ClusterModel,
    DifficultyConfig,
    DifficultyProbe,
    QualityConfig,
    QualityProbe,
)
from saerl_hf.signals.matrix import HYBRID, dataset_matrix, fit_scaler, transform
from saerl_hf.signals.persistence import FeatureSetMismatchError, ProbeLoadError
from saerl_hf.sparse import MissingFeaturesError, write_provenance

D_SAE, D_IN = 128, 16
PROVENANCE = {"model": "reader", "layer": 2, "hook": "model.layers.2", "sae": "s", "sae_hash": "h", "d_sae": D_SAE,
              "d_in": D_IN, "pooling": "mean", "top_k": None}


def mixed_set(n, seed, provenance=None, dense=True):
    """``level`` = one part readable only from the SAE latents + one part only from the dense vector."""
    rng = np.random.default_rng(seed)
    w_sae, w_dense = np.random.default_rng(7).normal(size=40), np.random.default_rng(8).normal(size=D_IN)
    idx, val, vec, level = [], [], [], []
    for _ in range(n):
        ii = np.sort(rng.choice(D_SAE, size=12, replace=False))
        vv = rng.exponential(2.0, size=12)
        x = np.zeros(D_SAE)
        x[ii] = np.log1p(vv)
        d = rng.normal(size=D_IN) * 3 + 5  # off-centre, like a residual mean
        idx.append(ii.astype(np.int32).tolist())
        val.append(vv.astype(np.float32).tolist())
        vec.append(d.astype(np.float32).tolist())
        level.append(float(x[:40] @ w_sae + (d - 5) @ w_dense / 6 + rng.normal(scale=0.2)))
    columns = {"problem": [f"p{i}" for i in range(n)], "sae_idx": idx, "sae_val": val,
               "sae_l0": [len(r) for r in idx], "level": level}
    if dense:
        columns["dense_mean"] = vec
    return write_provenance(Dataset.from_dict(columns), dict(provenance or PROVENANCE))


@pytest.fixture(scope="module")
def data():
    return mixed_set(500, 0), mixed_set(300, 1)


def _spearman(features, train, test):
    probe = DifficultyProbe(DifficultyConfig(features=features, cv=3, n_alphas=6)).fit(train)
    return probe, float(spearmanr(probe.predict(test), test["level"]).statistic)


def test_hybrid_reads_both_blocks_and_beats_each_alone(data):
    train, test = data
    scores = {f: _spearman(f, train, test)[1] for f in ("sae", "dense", HYBRID)}
    assert scores[HYBRID] > max(scores["sae"], scores["dense"]) + 0.1, scores
    assert scores[HYBRID] > 0.9, scores


def test_hybrid_blocks_weigh_the_same_and_the_dense_block_is_centred(data):
    train, _ = data
    split = D_SAE
    matrix = transform(dataset_matrix(train, HYBRID), "log1p", split)
    assert matrix.shape == (500, D_SAE + D_IN) and matrix.nnz == 500 * (12 + D_IN)
    center, scale = fit_scaler(matrix, "log1p", split)
    scaled = (matrix.toarray() - center) / scale
    sae_norm = (scaled[:, :split] ** 2).sum(1).mean()
    dense_norm = (scaled[:, split:] ** 2).sum(1).mean()
    np.testing.assert_allclose([sae_norm, dense_norm], [1.0, 1.0], rtol=1e-9)
    np.testing.assert_allclose(scaled[:, split:].mean(0), 0.0, atol=1e-9)
    assert not center[:split].any()  # the sparse block is never centred


def test_hybrid_probe_round_trips_and_maps_like_predict(data, tmp_path):
    train, test = data
    probe = _spearman(HYBRID, train, test)[0]
    probe.save(tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    assert saved["identity"]["features"] == HYBRID and saved["config"]["features"] == HYBRID
    assert saved["feature_width"] == D_SAE + D_IN
    loaded = DifficultyProbe.load(tmp_path / "p")
    np.testing.assert_array_equal(loaded.predict(test), probe.predict(test))
    np.testing.assert_allclose(loaded.apply(test, batch_size=64)["difficulty"], probe.predict(test), atol=1e-12)


def test_a_probe_refuses_other_features_and_says_the_fix(data, tmp_path):
    train, test = data
    probe = _spearman(HYBRID, train, test)[0]
    with pytest.raises(MissingFeaturesError, match=r"fitted on 'sae\+dense'.*no 'dense_mean'.*Fix"):
        probe.predict(mixed_set(20, 3, dense=False))
    with pytest.raises(FeatureSetMismatchError, match=r"fitted on 'sae\+dense' features, not 'sae'.*Fix: refit"):
        probe.apply(test, features="sae")
    probe.save(tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    saved["config"]["features"] = "sae"
    (tmp_path / "p" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ProbeLoadError, match="fitted on 'sae\\+dense'"):
        DifficultyProbe.load(tmp_path / "p")
    with pytest.raises(ValueError, match="sae | dense | sae\\+dense"):
        DifficultyConfig(features="both")
    assert DifficultyConfig(features="dense").features == "dense_mean"  # the user-facing name is an alias


def test_mean_max_width_doubles_the_index_space(tmp_path):
    provenance = {**PROVENANCE, "pooling": "mean+max", "n_features": 2 * D_SAE}
    train = mixed_set(200, 0, provenance)
    rows = train.to_list()
    for row in rows:  # the max half: latent i at D_SAE + i
        row["sae_idx"] = row["sae_idx"] + [i + D_SAE for i in row["sae_idx"]]
        row["sae_val"] = row["sae_val"] + row["sae_val"]
    wide = write_provenance(Dataset.from_list(rows), provenance)
    probe = DifficultyProbe(DifficultyConfig(cv=3, n_alphas=4)).fit(wide)
    assert probe.width == 2 * D_SAE and probe.identity["n_features"] == 2 * D_SAE
    with pytest.raises(Exception, match="pooling"):  # mean-pooled features are another space
        probe.predict(mixed_set(20, 5))


def test_quality_and_clusters_fit_on_the_hybrid(data, tmp_path):
    train, test = data
    labelled = train.add_column("is_clean", [int(v > np.median(train["level"])) for v in train["level"]])
    quality = QualityProbe(QualityConfig(features=HYBRID, Cs=4, cv=3)).fit(labelled)
    assert quality.metrics["cv_auroc"] > 0.85
    clusters = ClusterModel(ClusterConfig(n_clusters=3, features=HYBRID, n_init=2)).fit(train)
    clusters.save(tmp_path / "c")
    np.testing.assert_array_equal(ClusterModel.load(tmp_path / "c").predict(test), clusters.predict(test))
    with pytest.raises(FeatureSetMismatchError):
        clusters.predict(test, features="dense")


def test_a_dense_enough_design_is_fitted_dense_and_gives_the_same_probe(data):
    """The hybrid design (every dense entry stored) is fitted on a numpy copy; it is the same ElasticNet problem, so
    the coefficients agree with the sparse fit's within the solver's tolerance."""
    train, test = data
    fits = {}
    for density in (0.1, 1.0):  # 0.1 (the default): dense copy, the folds having more rows than columns; 1: CSR
        config = DifficultyConfig(features=HYBRID, cv=3, n_alphas=6, dense_fit_density=density, tol=1e-6)
        fits[density] = DifficultyProbe(config).fit(train)
    assert len(train) * 2 // 3 > fits[0.1].width  # the Gram matrix applies: that is when the copy pays
    assert fits[0.1].metrics["fit_on"] == "dense" and fits[1.0].metrics["fit_on"] == "sparse"
    assert fits[0.1].metrics["alpha"] == pytest.approx(fits[1.0].metrics["alpha"])
    np.testing.assert_allclose(fits[0.1].predict(test), fits[1.0].predict(test), rtol=1e-3, atol=1e-3)
    few = train.select(range(90))  # folds of 60 rows < 144 columns: plain coordinate descent, no Gram matrix
    wide = {d: DifficultyProbe(DifficultyConfig(features=HYBRID, cv=3, n_alphas=6, dense_fit_density=d,
                                                tol=1e-6)).fit(few) for d in (0.0, 0.1, 1.0)}
    assert wide[0.1].metrics["fit_on"] == "sparse", "without a Gram matrix the copy does not pay: CSR"
    assert wide[0.0].metrics["fit_on"] == "dense" and wide[0.0].metrics["alpha"] == pytest.approx(
        wide[1.0].metrics["alpha"])  # 0 forces the copy (the benchmark's other side): the same problem
    np.testing.assert_allclose(wide[0.0].predict(test), wide[1.0].predict(test), rtol=1e-3, atol=1e-3)
    sparse_only = DifficultyProbe(DifficultyConfig(features="sae", cv=3, n_alphas=6)).fit(train)
    assert sparse_only.metrics["fit_on"] == "sparse"  # 12 of 128 latents stored: below the default 0.1


def test_parallel_cross_validation_gives_the_same_probe(data):
    """n_jobs only spreads the CV fits over processes: same alpha, l1_ratio and predictions as one process."""
    train, test = data
    fits = [DifficultyProbe(DifficultyConfig(features="sae", cv=3, n_alphas=6, n_jobs=n)).fit(train) for n in (1, 2)]
    assert fits[0].metrics["alpha"] == fits[1].metrics["alpha"]
    assert fits[0].metrics["l1_ratio"] == fits[1].metrics["l1_ratio"]
    np.testing.assert_array_equal(fits[0].predict(test), fits[1].predict(test))


def test_dense_probes_standardise_the_signed_residual_by_default(data):
    """log1p would clip the residual's negative half to 0: with no scaling given, dense probes use std (saved with
    the probe), SAE and hybrid probes log1p; a signal carried by the sign is found only the default way."""
    train, test = data
    rng = np.random.default_rng(3)
    signed = [(rng.normal(size=D_IN) * 3).astype(np.float32) for _ in range(len(train) + len(test))]
    level = [float(v[:4].sum()) for v in signed]  # half of it below zero

    def with_signed(part, rows):
        return part.remove_columns(["dense_mean", "level"]).add_column("dense_mean", [signed[i].tolist() for i in rows]) \
            .add_column("level", [level[i] for i in rows])

    train_s, test_s = with_signed(train, range(len(train))), with_signed(test, range(len(train), len(signed)))
    default = DifficultyProbe(DifficultyConfig(features="dense", cv=3, n_alphas=6)).fit(train_s)
    clipped = DifficultyProbe(DifficultyConfig(features="dense", scaling="log1p", cv=3, n_alphas=6)).fit(train_s)
    assert default.config.scaling == "std"
    rho = {name: spearmanr(p.predict(test_s), test_s["level"]).statistic for name, p in (("std", default),
                                                                                          ("log1p", clipped))}
    assert rho["std"] > 0.95 and rho["log1p"] < rho["std"] - 0.1, rho
    quality = QualityProbe(QualityConfig(features="dense", cv=3, Cs=3)).fit(
        train_s.add_column("is_clean", [int(v > 0) for v in train_s["level"]]))
    assert quality.config.scaling == "std"
    for features in ("sae", HYBRID):
        assert DifficultyProbe(DifficultyConfig(features=features, cv=3, n_alphas=6)).fit(train).config.scaling == \
            "log1p"
    assert DifficultyConfig(features="dense").scaling is None  # resolved at fit, so replace(features=...) works
