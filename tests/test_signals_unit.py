"""Signal models on synthetic sparse features with a known structure (fast; no model needed).

The features are synthetic (random sparse activations with provenance written by ``write_provenance``), so
the tests can state what a correct fit must recover; the real-text test is in test_signals_real.py.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from datasets import Dataset
from scipy.stats import spearmanr
from sklearn.metrics import normalized_mutual_info_score, roc_auc_score

from saerl_hf.signals import (
    ClusterConfig,
    ClusterModel,
    DifficultyConfig,
    DifficultyProbe,
    QualityConfig,
    QualityProbe,
    SAEMismatchError,
    SignalLabelError,
    deduplicate,
)
from saerl_hf.signals.linear import LinearSignalMap
from saerl_hf.sparse import MissingFeaturesError, write_provenance

D_SAE = 256
PROVENANCE = {"model": "reader", "layer": 2, "hook": "model.layers.2", "sae": "test-sae", "sae_hash": "h0",
              "d_sae": D_SAE, "d_in": 32, "pooling": "mean", "top_k": 16}
WEIGHTS = np.zeros(D_SAE)
WEIGHTS[:30] = np.random.default_rng(1234).normal(size=30)


def featurized(idx, val, extra=None, provenance=None):
    columns = {"problem": [f"problem {i}" for i in range(len(idx))], "sae_idx": idx, "sae_val": val,
               "sae_l0": [len(r) for r in idx], **(extra or {})}
    return write_provenance(Dataset.from_dict(columns), dict(provenance or PROVENANCE))


def regression_set(n, seed, provenance=None, noise=0.2):
    """Rows with 16 random active features; level = linear in log1p(features) + noise."""
    rng = np.random.default_rng(seed)
    idx, val, level = [], [], []
    for _ in range(n):
        ii = np.sort(rng.choice(D_SAE, size=16, replace=False))
        vv = rng.exponential(2.0, size=16)
        x = np.zeros(D_SAE)
        x[ii] = np.log1p(vv)
        idx.append(ii.astype(np.int32).tolist())
        val.append(vv.astype(np.float32).tolist())
        level.append(float(x @ WEIGHTS + rng.normal(scale=noise)))
    return featurized(idx, val, {"level": level}, provenance)


def cluster_set(n_per, k, seed, duplicate_rows=()):
    """k groups, each drawing its active features from its own block of 32 latents."""
    rng = np.random.default_rng(seed)
    idx, val, group = [], [], []
    for g in range(k):
        for _ in range(n_per):
            ii = np.sort(rng.choice(np.arange(g * 32, (g + 1) * 32), size=10, replace=False))
            idx.append(ii.astype(np.int32).tolist())
            val.append(rng.uniform(0.5, 3.0, size=10).astype(np.float32).tolist())
            group.append(g)
    return idx, val, group


@pytest.fixture(scope="module")
def train_set():
    return regression_set(400, seed=0)


@pytest.fixture(scope="module")
def fitted(train_set):
    return DifficultyProbe().fit(train_set)


# ----------------------------------------------------------------------------- difficulty


def test_difficulty_recovers_held_out_order(fitted):
    test = regression_set(300, seed=1)
    rho = spearmanr(fitted.predict(test), test["level"]).statistic
    assert rho > 0.8, rho
    m = fitted.metrics
    assert m["n_labelled"] == 400 and m["n_excluded_missing_label"] == 0
    assert 0 < m["alpha"] and m["l1_ratio"] in (0.1, 0.5, 0.9)
    assert m["fit_seconds"] >= 0 and m["n_nonzero_coef"] > 0


def test_difficulty_save_load_round_trip_exact(fitted, tmp_path):
    test = regression_set(50, seed=2)
    fitted.save(tmp_path / "probe")
    files = sorted(p.name for p in (tmp_path / "probe").iterdir())
    assert files == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "probe" / "config.json").read_text())
    assert config["kind"] == "difficulty" and config["feature_width"] == D_SAE
    assert config["identity"]["sae_hash"] == "h0" and config["identity"]["d_sae"] == D_SAE
    assert config["config"]["label_column"] == "level" and config["config"]["scaling"] == "log1p"
    assert {"scikit-learn", "numpy", "safetensors", "saerl_hf"} <= set(config["library_versions"])
    assert config["metrics"] == json.loads(json.dumps(fitted.metrics))
    loaded = DifficultyProbe.load(tmp_path / "probe")
    assert loaded.config == fitted.config
    np.testing.assert_array_equal(loaded.predict(test), fitted.predict(test))
    np.testing.assert_array_equal(loaded.coef, fitted.coef)
    assert loaded.fingerprint() == fitted.fingerprint()


def test_difficulty_apply_column_and_stable_fingerprint(fitted):
    test = regression_set(120, seed=3)
    out = fitted.apply(test, batch_size=32)
    np.testing.assert_allclose(out["difficulty"], fitted.predict(test), rtol=0, atol=1e-12)
    assert out._fingerprint == fitted.apply(test)._fingerprint
    other = DifficultyProbe(DifficultyConfig(l1_ratios=(1.0,))).fit(regression_set(200, seed=5))
    assert other.apply(test)._fingerprint != out._fingerprint
    # the map function is a plain picklable object that survives a pickle round trip
    function = pickle.loads(pickle.dumps(fitted.map_function()))  # noqa: S301 - our own bytes
    assert isinstance(function, LinearSignalMap)
    batch = test[:7]
    np.testing.assert_allclose(function(batch)["difficulty"], fitted.predict(test.select(range(7))), atol=1e-12)


def test_missing_labels_are_excluded_and_counted():
    data = regression_set(200, seed=4)
    levels = data["level"]
    levels = [None if i % 10 == 0 else (float("nan") if i % 10 == 1 else v) for i, v in enumerate(levels)]
    data = data.remove_columns("level").add_column("level", levels)
    probe = DifficultyProbe(DifficultyConfig(min_labels=50)).fit(data)
    assert probe.metrics["n_excluded_missing_label"] == 40
    assert probe.metrics["n_labelled"] == 160


def test_convergence_warnings_are_counted_and_logged_once(caplog):
    import warnings

    data = regression_set(120, seed=5)
    with warnings.catch_warnings(record=True) as shown, caplog.at_level("WARNING", logger="saerl_hf.signals.matrix"):
        warnings.simplefilter("always")
        probe = DifficultyProbe(DifficultyConfig(max_iter=1, tol=1e-12)).fit(data)
    n = probe.metrics["n_convergence_warnings"]
    assert n > 0
    logged = [r.getMessage() for r in caplog.records if "did not converge" in r.getMessage()]
    assert len(logged) == 1 and f"{n} fit(s) did not converge" in logged[0] and "Fix: raise max_iter (now 1)" in logged[0]
    assert not any("converge" in str(w.message).lower() for w in shown)  # counted and logged, not re-warned


def test_too_few_labels_is_an_error():
    data = regression_set(60, seed=6)
    levels = [v if i < 30 else None for i, v in enumerate(data["level"])]
    data = data.remove_columns("level").add_column("level", levels)
    with pytest.raises(SignalLabelError, match=r"Only 30 rows .*30 are None/NaN.*min_labels=50"):
        DifficultyProbe(DifficultyConfig(min_labels=50)).fit(data)


def test_bad_label_column_errors_name_the_row_or_column():
    data = regression_set(60, seed=7)
    with pytest.raises(SignalLabelError, match="no label column 'pass_rate'"):
        DifficultyProbe(DifficultyConfig(label_column="pass_rate")).fit(data)
    text = data.add_column("grade", ["hard" if i == 5 else "1" for i in range(60)])
    with pytest.raises(SignalLabelError, match="Row 5: label column 'grade' holds 'hard'"):
        DifficultyProbe(DifficultyConfig(label_column="grade")).fit(text)


def test_pass_rate_labels_are_sign_flipped():
    data = regression_set(300, seed=8)
    pass_rate = 1.0 / (1.0 + np.exp(np.asarray(data["level"])))  # harder (higher level) -> lower pass rate
    data = data.add_column("pass_rate", pass_rate.tolist())
    probe = DifficultyProbe(DifficultyConfig(label_column="pass_rate")).fit(data)
    assert probe.metrics["sign"] == -1.0
    test = regression_set(200, seed=9)
    assert spearmanr(probe.predict(test), test["level"]).statistic > 0.7  # still higher = harder


def test_other_sae_or_width_is_refused(fitted):
    other_hash = regression_set(20, seed=10, provenance={**PROVENANCE, "sae_hash": "h1"})
    with pytest.raises(SAEMismatchError, match="sae_hash: fitted on 'h0', dataset has 'h1'"):
        fitted.predict(other_hash)
    with pytest.raises(SAEMismatchError, match="sae_hash"):
        fitted.apply(other_hash)
    wider = regression_set(20, seed=11, provenance={**PROVENANCE, "d_sae": 512})
    with pytest.raises(SAEMismatchError, match="d_sae: fitted on 256, dataset has 512"):
        fitted.predict(wider)


def test_missing_feature_columns_say_featurize_first(fitted):
    plain = Dataset.from_dict({"problem": ["a", "b"], "level": [1.0, 2.0]})
    with pytest.raises(MissingFeaturesError, match="featurize it first"):
        fitted.predict(plain)
    with pytest.raises(MissingFeaturesError, match="featurize it first"):
        DifficultyProbe().fit(plain)


def test_loading_the_wrong_kind_or_an_empty_dir_fails(fitted, tmp_path):
    fitted.save(tmp_path / "d")
    with pytest.raises(ValueError, match="holds a 'difficulty' model, not a 'quality' model"):
        QualityProbe.load(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="config.json"):
        DifficultyProbe.load(tmp_path / "empty")


# ----------------------------------------------------------------------------- quality


def quality_set(n, seed):
    """Clean rows use latents 0-127, noisy rows mostly 128-255 (with overlap), label is_clean."""
    rng = np.random.default_rng(seed)
    idx, val, label = [], [], []
    for i in range(n):
        clean = i % 2 == 0
        pool = np.arange(0, 160) if clean else np.arange(96, 256)
        ii = np.sort(rng.choice(pool, size=12, replace=False))
        idx.append(ii.astype(np.int32).tolist())
        val.append(rng.exponential(1.5, size=12).astype(np.float32).tolist())
        label.append(int(clean))
    return featurized(idx, val, {"is_clean": label})


def test_quality_probe_separates_and_round_trips(tmp_path):
    probe = QualityProbe().fit(quality_set(300, seed=0))
    test = quality_set(200, seed=1)
    p = probe.predict(test)
    assert np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(test["is_clean"], p) > 0.95
    assert probe.metrics["n_clean"] == 150 and probe.metrics["n_noisy"] == 150
    probe.save(tmp_path / "q")
    np.testing.assert_array_equal(QualityProbe.load(tmp_path / "q").predict(test), p)

    kept, counts = probe.keep(test, top_fraction=0.25)
    assert {k: counts[k] for k in ("n_in", "n_kept", "n_dropped", "n_missing")} == {
        "n_in": 200, "n_kept": 50, "n_dropped": 150, "n_missing": 0}
    assert min(kept["quality"]) >= np.sort(p)[-50] - 1e-12
    kept, counts = probe.keep(test, threshold=0.5)
    assert counts["n_kept"] == int((p >= 0.5).sum())
    assert len(probe.keep(test)[0]) == 200  # no threshold, no fraction: nothing filtered
    with pytest.raises(ValueError, match="not both"):
        probe.keep(test, threshold=0.5, top_fraction=0.5)


def test_quality_fit_from_positive_and_negative_sets():
    data = quality_set(200, seed=2)
    clean = data.filter(lambda r: r["is_clean"] == 1)
    noisy = data.filter(lambda r: r["is_clean"] == 0)
    probe = QualityProbe().fit(clean, negatives=noisy)
    assert probe.metrics["n_clean"] == 100 and probe.metrics["n_noisy"] == 100
    with pytest.raises(SignalLabelError, match="needs >= 20 rows per class; got 100 clean and 5 noisy"):
        QualityProbe().fit(clean, negatives=noisy.select(range(5)))


def test_quality_convergence_warnings_are_counted_and_logged_once(caplog):
    import warnings

    with warnings.catch_warnings(record=True) as shown, caplog.at_level("WARNING", logger="saerl_hf.signals.linear"):
        warnings.simplefilter("always")
        probe = QualityProbe(QualityConfig(max_iter=1)).fit(quality_set(120, seed=3))
    n = probe.metrics["n_convergence_warnings"]
    assert n > 0
    logged = [r.getMessage() for r in caplog.records if "did not converge" in r.getMessage()]
    assert len(logged) == 1 and logged[0].startswith(f"quality probe LogisticRegressionCV: {n} fit(s) did not converge")
    assert "Fix: raise max_iter (now 1)" in logged[0]
    assert not any("converge" in str(w.message).lower() for w in shown)  # counted and logged, not re-warned


# ----------------------------------------------------------------------------- clusters + dedup


def test_clusters_recover_groups_and_round_trip(tmp_path):
    idx, val, group = cluster_set(40, 4, seed=0)
    data = featurized(idx, val, {"group": group})
    model = ClusterModel(ClusterConfig(n_clusters=4)).fit(data)
    assert normalized_mutual_info_score(group, model.predict(data)) > 0.99
    assert sorted(model.metrics["cluster_sizes"]) == [40, 40, 40, 40]
    out = model.apply(data)
    assert out["cluster"] == model.predict(data).tolist()
    assert out._fingerprint == model.apply(data)._fingerprint
    model.save(tmp_path / "c")
    loaded = ClusterModel.load(tmp_path / "c")
    np.testing.assert_array_equal(loaded.centroids, model.centroids)
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))
    with pytest.raises(SAEMismatchError, match="sae_hash"):
        loaded.predict(featurized(idx, val, provenance={**PROVENANCE, "sae_hash": "other"}))
    with pytest.raises(ValueError, match="n_clusters=4 needs at least 4 rows"):
        ClusterModel(ClusterConfig(n_clusters=4)).fit(data.select(range(3)))


def test_deduplicate_counts_exact_and_near_duplicates():
    idx, val, _ = cluster_set(30, 3, seed=1)
    texts = [f"problem {i}" for i in range(len(idx))]
    # 3 exact text duplicates (whitespace differs) and 4 near duplicates (values perturbed by 0.1%)
    for src in (0, 31, 62):
        idx.append(idx[src])
        val.append(val[src])
        texts.append("  problem  " + str(src) + " ")
    for src in (5, 6, 40, 70):
        idx.append(idx[src])
        val.append((np.asarray(val[src]) * 1.001).astype(np.float32).tolist())
        texts.append(f"reworded problem {src}")
    data = featurized(idx, val)
    data = data.remove_columns("problem").add_column("problem", texts)
    data = ClusterModel(ClusterConfig(n_clusters=3)).fit(data).apply(data)
    kept, counts = deduplicate(data, threshold=0.98)
    assert counts == {"n_in": 97, "exact_duplicates": 3, "near_duplicates": 4, "n_kept": 90}
    assert kept["problem"] == texts[:90]  # first occurrences are kept, in order
    _, strict = deduplicate(data, threshold=1.01)  # nothing is that similar
    assert strict["near_duplicates"] == 0 and strict["exact_duplicates"] == 3
    with pytest.raises(ValueError, match="No 'cluster' column"):
        deduplicate(data.remove_columns("cluster"))


def test_idf_scaling_is_sklearns_tfidf_and_weighs_rare_latents_more():
    """log1p_idf = log1p then sklearn's smoothed idf per column: a latent on every row gets the least weight, and
    the L2-normalised rows the clusters see equal TfidfTransformer's output on the same log1p values."""
    from scipy import sparse as sp
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.preprocessing import normalize

    from saerl_hf.signals.matrix import apply_scaler, fit_scaler, idf_weights, transform

    rng = np.random.default_rng(0)
    dense = rng.exponential(1.0, (40, 6)) * (rng.random((40, 6)) < [1.0, 0.9, 0.5, 0.2, 0.05, 0.0])
    matrix = sp.csr_matrix(dense)
    logged = transform(matrix, "log1p_idf")
    center, scale = fit_scaler(logged, "log1p_idf")
    ours = normalize(apply_scaler(logged, center, scale)).toarray()
    reference = TfidfTransformer(smooth_idf=True).fit(logged)
    np.testing.assert_allclose(1.0 / scale, reference.idf_)
    np.testing.assert_allclose(ours, reference.transform(logged).toarray(), atol=1e-12)
    weights = idf_weights(matrix)
    assert np.all(np.diff(weights[:5]) > 0)  # rarer columns weigh more
