"""``pooling_part``: signal models that read one part (mean, last token, max) of two-part pooled SAE features.

Synthetic ``mean+last`` features (index ``i`` < D: mean of latent ``i``; ``D + i``: its last-token value) with real
provenance; each part is compared with the same model fitted on a dataset that holds only that part, renumbered to
``[0, D)`` and recorded as pooled that way: the cut must be exactly "read that half"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from saerl_hf.signals import (
    ClusterConfig,
    ClusterModel,
    DifficultyConfig,
    DifficultyProbe,
    QualityConfig,
    QualityProbe,
)
from saerl_hf.signals.explain import explain_row, probe_explanations, top_latents
from saerl_hf.signals.matrix import HYBRID, dataset_matrix, part_columns, part_range
from saerl_hf.signals.persistence import SAEMismatchError, fingerprint_of
from saerl_hf.sparse import write_provenance

D, D_IN = 64, 8
PROVENANCE = {"model": "reader", "layer": 2, "hook": "model.layers.2", "sae": "s", "sae_hash": "h", "d_sae": D,
              "d_in": D_IN, "pooling": "mean+last", "n_features": 2 * D, "top_k": None}
W_MEAN, W_LAST = np.zeros(D), np.zeros(D)
W_MEAN[[1, 4, 9]] = [3.0, -2.5, 2.0]  # the mean half drives the level through latents 1, 4, 9 ...
W_LAST[[20, 33, 50]] = [2.0, 1.5, -1.5]  # ... the last-token half through latents 20, 33, 50
W_DENSE = np.random.default_rng(9).normal(size=D_IN)


def two_part_set(n, seed):
    """Rows of mean+last features (10 latents active in the mean, 6 at the last token) plus a dense block;
    ``level`` reads both SAE halves and the dense block, ``is_clean`` is ``level`` above its median."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n):
        mean_idx, last_idx = np.sort(rng.choice(D, 10, replace=False)), np.sort(rng.choice(D, 6, replace=False))
        mean_val = rng.exponential(2.0, 10).astype(np.float32)
        last_val = rng.exponential(2.0, 6).astype(np.float32)
        x_mean, x_last = np.zeros(D), np.zeros(D)
        x_mean[mean_idx], x_last[last_idx] = np.log1p(mean_val), np.log1p(last_val)
        dense = (rng.normal(size=D_IN) * 2 + 3).astype(np.float32)
        level = x_mean @ W_MEAN + x_last @ W_LAST + (dense - 3) @ W_DENSE / 4 + rng.normal(scale=0.1)
        rows.append({"problem": f"p{r}", "sae_idx": mean_idx.tolist() + (last_idx + D).tolist(),
                     "sae_val": mean_val.tolist() + last_val.tolist(),
                     "sae_l0": len(set(mean_idx) | set(last_idx)), "dense_mean": dense.tolist(), "level": float(level)})
    median = np.median([row["level"] for row in rows])
    for row in rows:
        row["is_clean"] = int(row["level"] > median)
    return write_provenance(Dataset.from_list(rows), dict(PROVENANCE))


def one_part(wide, part):
    """The ``part`` half of ``wide`` as features pooled ``part`` alone (indices renumbered to ``[0, D)``)."""
    start = 0 if part == "mean" else D
    rows = wide.to_list()
    for row in rows:
        kept = [(i - start, v) for i, v in zip(row["sae_idx"], row["sae_val"]) if start <= i < start + D]
        row["sae_idx"], row["sae_val"] = [i for i, _ in kept], [v for _, v in kept]
    return write_provenance(Dataset.from_list(rows), {**PROVENANCE, "pooling": part, "n_features": D})


@pytest.fixture(scope="module")
def data():
    """(wide train, wide test, {part: (train, test) holding only that part})."""
    train, test = two_part_set(240, 0), two_part_set(80, 1)
    return train, test, {part: (one_part(train, part), one_part(test, part)) for part in ("mean", "last")}


def difficulty(features="sae", **kwargs):
    return DifficultyProbe(DifficultyConfig(features=features, cv=3, n_alphas=6, **kwargs))


@pytest.fixture(scope="module")
def probes(data):
    """Difficulty probes fitted on the wide features reading one part, and on the one-part datasets."""
    train, _, parts = data
    return {part: (difficulty(pooling_part=part).fit(train), difficulty().fit(parts[part][0]))
            for part in ("mean", "last")}


def _same_linear(cut, own, test, narrow_test):
    np.testing.assert_allclose(cut.coef, own.coef, rtol=1e-10, atol=1e-12)
    assert cut.intercept == pytest.approx(own.intercept, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(cut.center, own.center)
    np.testing.assert_allclose(cut.scale, own.scale, rtol=1e-12)
    np.testing.assert_allclose(cut.predict(test), own.predict(narrow_test), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------- 1 + 2: the cut


@pytest.mark.parametrize("part", ["mean", "last"])
def test_a_difficulty_probe_reading_one_part_is_the_probe_of_that_part_alone(part, data, probes):
    _, test, parts = data
    cut, own = probes[part]
    assert cut.width == D and cut.identity["pooling_part"] == part and cut.identity["pooling"] == "mean+last"
    assert cut.columns == ((0, D, 2 * D) if part == "mean" else (D, 2 * D, 2 * D))
    _same_linear(cut, own, test, parts[part][1])
    # The level is driven by different latents in each half: each cut finds its own half's latents.
    support = np.flatnonzero(W_MEAN if part == "mean" else W_LAST)
    assert set(np.argsort(-np.abs(cut.coef))[:3]) == set(support)


def test_the_two_parts_are_different_models(probes):
    """Not vacuous: the mean and last-token cuts of the same dataset read different columns."""
    mean, last = probes["mean"][0], probes["last"][0]
    assert not np.allclose(mean.coef, last.coef)
    assert abs(mean.coef[20]) < abs(last.coef[20]) and abs(last.coef[1]) < abs(mean.coef[1])


@pytest.mark.parametrize("part", ["mean", "last"])
def test_a_quality_probe_reading_one_part_is_the_probe_of_that_part_alone(part, data):
    train, test, parts = data
    cut = QualityProbe(QualityConfig(pooling_part=part, Cs=4, cv=3)).fit(train)
    own = QualityProbe(QualityConfig(Cs=4, cv=3)).fit(parts[part][0])
    assert cut.columns[:2] == part_range("mean+last", D, part) and cut.width == D
    _same_linear(cut, own, test, parts[part][1])
    assert np.all((cut.predict(test) > 0) & (cut.predict(test) < 1))
    # with explicit negatives the negatives are cut the same way
    positives, negatives = train.select(range(120)), train.select(range(120, 240))
    own_positives, own_negatives = parts[part][0].select(range(120)), parts[part][0].select(range(120, 240))
    cut = QualityProbe(QualityConfig(pooling_part=part, Cs=3, cv=3)).fit(positives, negatives=negatives)
    own = QualityProbe(QualityConfig(Cs=3, cv=3)).fit(own_positives, negatives=own_negatives)
    np.testing.assert_allclose(cut.coef, own.coef, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("part", ["mean", "last"])
def test_a_cluster_model_reading_one_part_is_the_model_of_that_part_alone(part, data, tmp_path):
    train, test, parts = data
    cut = ClusterModel(ClusterConfig(n_clusters=4, pooling_part=part, n_init=2)).fit(train)
    own = ClusterModel(ClusterConfig(n_clusters=4, n_init=2)).fit(parts[part][0])
    assert cut.width == D and cut.identity["pooling_part"] == part and cut.columns[:2] == part_range(
        "mean+last", D, part)
    np.testing.assert_allclose(cut.centroids, own.centroids, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cut.scale, own.scale, rtol=1e-12)  # the idf weights of that half's latents
    labels = cut.predict(test)
    np.testing.assert_array_equal(labels, own.predict(parts[part][1]))
    assert len(set(labels.tolist())) > 1
    np.testing.assert_array_equal(cut.apply(test, batch_size=16)["cluster"], labels)
    cut.save(tmp_path / "c")
    loaded = ClusterModel.load(tmp_path / "c")
    assert loaded.config.pooling_part == part and loaded.columns == cut.columns
    np.testing.assert_array_equal(loaded.predict(test), labels)
    assert loaded.fingerprint() == cut.fingerprint() != own.fingerprint()  # same centroids, other columns


# ---------------------------------------------------------------------------------------------- 3: use and persistence


@pytest.mark.parametrize("part", ["mean", "last"])
def test_round_trip_apply_and_fingerprint(part, data, probes, tmp_path):
    _, test, parts = data
    cut, own = probes[part]
    predicted = cut.predict(test)
    cut.save(tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    assert saved["config"]["pooling_part"] == part and saved["identity"]["pooling_part"] == part
    assert saved["feature_width"] == D
    loaded = DifficultyProbe.load(tmp_path / "p")
    assert loaded.config.pooling_part == part and loaded.columns == cut.columns
    np.testing.assert_array_equal(loaded.predict(test), predicted)
    for probe in (cut, loaded):
        np.testing.assert_allclose(probe.apply(test, batch_size=16)["difficulty"], predicted, rtol=1e-12,
                                   atol=1e-12)
    np.testing.assert_allclose(cut.map_function()(test[:5])["difficulty"], predicted[:5], rtol=1e-12, atol=1e-12)
    # Same arrays as the one-part probe (within float noise) but another reading of the features: another model.
    assert loaded.fingerprint() == cut.fingerprint() != own.fingerprint()
    twin = DifficultyProbe(cut.config)
    twin._set(cut.coef, cut.intercept, cut.center, cut.scale, {**cut.identity, "pooling_part": "mean"
                                                              if part == "last" else "last"})
    assert twin.fingerprint() != cut.fingerprint()  # only the part differs
    # A one-part dataset is another feature space than the two-part one the probe reads.
    with pytest.raises(SAEMismatchError, match="pooling"):
        cut.predict(parts[part][1])


def test_whole_vector_fingerprints_are_unchanged(data):
    """Models reading every column keep the fingerprint they had before pooling_part existed (cached maps)."""
    train, _, _ = data
    probe = difficulty().fit(train)
    assert probe.fingerprint() == fingerprint_of(probe.KIND, "difficulty", "log1p", "sae", probe.coef, probe.center,
                                                 probe.scale, repr(probe.intercept))


# ---------------------------------------------------------------------------------------------- 4: the hybrid


def test_hybrid_reads_the_mean_part_and_the_whole_dense_block(data, tmp_path):
    train, test, parts = data
    cut = difficulty(HYBRID, pooling_part="mean").fit(train)
    own = difficulty(HYBRID).fit(parts["mean"][0])
    assert cut.width == D + D_IN and cut.split == D and cut.columns == (0, D, 2 * D)
    _same_linear(cut, own, test, parts["mean"][1])
    assert np.count_nonzero(cut.coef[D:]) > 0  # the dense block carries part of the level
    matrix = dataset_matrix(test, HYBRID, columns=cut.columns).toarray()
    np.testing.assert_array_equal(matrix[:, D:], np.asarray(test["dense_mean"], np.float64))
    np.testing.assert_array_equal(matrix[:, :D], dataset_matrix(parts["mean"][1], "sae").toarray())
    predicted = cut.predict(test)
    np.testing.assert_allclose(cut.apply(test, batch_size=16)["difficulty"], predicted, rtol=1e-12, atol=1e-12)
    cut.save(tmp_path / "h")
    np.testing.assert_array_equal(DifficultyProbe.load(tmp_path / "h").predict(test), predicted)
    explained = explain_row(cut, test[0], k=D + D_IN)
    assert explained["raw"] == pytest.approx(predicted[0], abs=1e-9)
    for entry in explained["top"]:
        if entry["column"] >= D:
            assert entry["latent"] is None and entry["name"] == f"dense[{entry['column'] - D}]"
        else:
            assert entry["part"] == "mean" and entry["latent"] == entry["column"]
    assert any(entry["column"] >= D for entry in explained["top"])
    last = difficulty(HYBRID, pooling_part="last").fit(train)  # the dense block also follows a last-token cut
    assert last.width == D + D_IN and last.split == D and last.columns == (D, 2 * D, 2 * D)
    np.testing.assert_allclose(last.apply(test, batch_size=16)["difficulty"], last.predict(test), rtol=1e-12,
                               atol=1e-12)
    assert all(t["part"] == "last" for t in top_latents(last, 5))


# ---------------------------------------------------------------------------------------------- 5: explanations


def test_a_last_token_probe_names_last_token_latents(data, probes):
    train, test, _ = data
    cut = probes["last"][0]
    top = top_latents(cut, 3)
    assert {t["latent"] for t in top} == set(np.flatnonzero(W_LAST))
    for t in top:
        assert t["part"] == "last" and 0 <= t["latent"] < D and t["column"] == t["latent"]
        assert t["name"] == f"latent {t['latent']} (last)"
    mean_top = top_latents(probes["mean"][0], 3)
    assert {t["latent"] for t in mean_top} == set(np.flatnonzero(W_MEAN))
    assert all(t["part"] == "mean" and t["name"] == f"latent {t['latent']}" for t in mean_top)

    predicted = cut.predict(test)
    for i in (0, 7):
        row = test[i]
        explained = cut.explain(row, k=4)
        assert explained["raw"] == pytest.approx(predicted[i], abs=1e-9)
        total = explained["intercept"] + sum(t["contribution"] for t in explained["top"]) + explained["rest"]
        assert total == pytest.approx(explained["raw"], abs=1e-9)
        active_last = {j - D for j in row["sae_idx"] if j >= D}
        assert explained["top"] and {t["latent"] for t in explained["top"]} <= active_last  # log1p: active only
        assert all(t["part"] == "last" for t in explained["top"])

    # The card's examples are the rows where the latent's last-token value (column D + latent) is largest.
    wide = dataset_matrix(train, "sae").toarray()
    for latent in probe_explanations(train, difficulty=cut, k=2, n_examples=3)[0]["latents"]:
        column = wide[:, D + latent["latent"]]
        np.testing.assert_allclose(latent["activation"], np.sort(column)[::-1][:3], rtol=1e-6)
        assert latent["n_active"] == int(np.count_nonzero(column))


# ---------------------------------------------------------------------------------------------- 6: errors, no cut


def test_a_part_the_pooling_does_not_have_is_refused_naming_the_parts(data):
    train, _, parts = data
    with pytest.raises(ValueError, match=r"pooling_part 'last'.*pooling 'mean'.*its parts: mean\)"):
        difficulty(pooling_part="last").fit(parts["mean"][0])
    with pytest.raises(ValueError, match=r"pooling_part 'max'.*'mean\+last'.*its parts: mean, last\)"):
        QualityProbe(QualityConfig(pooling_part="max", Cs=3, cv=3)).fit(train)
    with pytest.raises(ValueError, match=r"its parts: mean, last"):
        ClusterModel(ClusterConfig(n_clusters=3, pooling_part="max", n_init=1)).fit(train)
    with pytest.raises(ValueError, match=r"its parts: mean, last"):
        difficulty(HYBRID, pooling_part="max").fit(train)
    assert part_range("mean+max", D, "max") == (D, 2 * D) and part_range("mean+max", D, "mean") == (0, D)
    assert part_range("mean+last", D, "last") == (D, 2 * D)
    for keep_all in (None, "", "mean+last"):
        assert part_range("mean+last", D, keep_all) is None
    assert part_range("mean", D, "mean") is None and part_range(None, D, "mean") is None
    assert part_columns({"features": "dense_mean", "pooling": "mean+last", "d_sae": D, "pooling_part": "last"}) is None
    assert part_columns({"features": "sae", "pooling": "mean+last", "d_sae": D, "n_features": 2 * D,
                         "pooling_part": "last"}) == (D, 2 * D, 2 * D)
    # without n_features (hand-made provenance) the whole width is the pooling's, not d_sae
    assert part_columns({"features": "sae", "pooling": "mean+last", "d_sae": D, "pooling_part": "mean"}) == (0, D, 2 * D)


def test_a_mistyped_part_fails_at_config_time_even_for_dense_features():
    with pytest.raises(ValueError, match=r"pooling_part must be one of .*mean\+last or none, got 'bogus'"):
        DifficultyConfig(features="dense", pooling_part="bogus")
    for spelled in ("none", "null", "all", "", None):
        assert QualityConfig(pooling_part=spelled).pooling_part is None
        assert ClusterConfig(pooling_part=spelled).pooling_part is None


def test_no_part_or_the_pooling_itself_keeps_every_column(data):
    train, test, parts = data
    whole = difficulty().fit(train)
    assert whole.columns is None and whole.width == 2 * D and "pooling_part" not in whole.identity
    for keep_all in ("mean+last", ""):
        same = difficulty(pooling_part=keep_all).fit(train)
        assert same.columns is None and same.width == 2 * D and "pooling_part" not in same.identity
        np.testing.assert_array_equal(same.coef, whole.coef)
        np.testing.assert_array_equal(same.predict(test), whole.predict(test))
        assert same.fingerprint() == whole.fingerprint()
    # The whole vector reads both halves: it finds the latents of both.
    assert set(np.flatnonzero(W_LAST) + D) <= set(np.argsort(-np.abs(whole.coef))[:6])
    clusters = ClusterModel(ClusterConfig(n_clusters=3, pooling_part="mean+last", n_init=1)).fit(train)
    assert clusters.columns is None and clusters.width == 2 * D
    # On features pooled with one part, that part is every column.
    mean_only = difficulty(pooling_part="mean").fit(parts["mean"][0])
    assert mean_only.columns is None and mean_only.width == D
    np.testing.assert_array_equal(mean_only.coef, difficulty().fit(parts["mean"][0]).coef)


# ---------------------------------------------------------------------------------------------- the real featurizer


@pytest.fixture(scope="module")
def featurized(data_dir, tiny_model_dir, tiny_sae_dir, tmp_path_factory):
    """Real GSM8K problems through the tiny reader and SAE: {pooling: features (sae+dense, every active latent)}."""
    from saerl_hf.data import load_math_dataset
    from saerl_hf.features import FeaturizeConfig, featurize

    problems = load_math_dataset("gsm8k", "test", limit=40)
    problems = problems.add_column("length", [float(np.log(len(p))) for p in problems["problem"]])
    config = FeaturizeConfig(model=tiny_model_dir, sae=tiny_sae_dir, top_k=0, features=HYBRID, batch_size=8,
                             cache_dir=str(tmp_path_factory.mktemp("pooling_part_cache")))
    return {pooling: featurize(problems, config, pooling=pooling) for pooling in ("mean+last", "mean", "last")}


@pytest.mark.parametrize("part", ["mean", "last"])
def test_on_real_features_a_part_of_mean_last_is_that_pooling(part, featurized):
    """The featurizer's mean+last provenance and index layout: the cut reads exactly the features pooled ``part``."""
    wide, own_features = featurized["mean+last"], featurized[part]
    d_sae = 128  # the tiny SAE (conftest)
    cut = ClusterModel(ClusterConfig(n_clusters=3, pooling_part=part, n_init=2)).fit(wide)
    own = ClusterModel(ClusterConfig(n_clusters=3, n_init=2)).fit(own_features)
    assert cut.identity["pooling"] == "mean+last" and cut.identity["d_sae"] == d_sae
    assert cut.width == d_sae and cut.columns == (*part_range("mean+last", d_sae, part), 2 * d_sae)
    np.testing.assert_allclose(cut.centroids, own.centroids, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(cut.predict(wide), own.predict(own_features))
    config = dict(features=HYBRID, label_column="length", min_labels=10, cv=3, n_alphas=6)
    cut = DifficultyProbe(DifficultyConfig(pooling_part=part, **config)).fit(wide)
    own = DifficultyProbe(DifficultyConfig(**config)).fit(own_features)
    assert cut.width == d_sae + len(wide[0]["dense_mean"]) and np.count_nonzero(cut.coef) > 0
    np.testing.assert_allclose(cut.coef, own.coef, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(cut.apply(wide, batch_size=16)["difficulty"], own.predict(own_features), rtol=1e-6,
                               atol=1e-9)


def test_near_duplicates_are_judged_on_the_part_the_clusters_read(data):
    """Two rows with the same mean part and different last-token codes: a near-duplicate for clusters that read the
    mean part (curate passes its cluster part), not for the whole vector."""
    from saerl_hf.signals import deduplicate

    train = data[0].select(range(6)).to_list()
    twin = dict(train[0], problem="another wording of p0")
    twin["sae_idx"] = [i for i in train[0]["sae_idx"] if i < D] + [D + 0, D + 1, D + 2]
    twin["sae_val"] = [v for i, v in zip(train[0]["sae_idx"], train[0]["sae_val"]) if i < D] + [5.0, 5.0, 5.0]
    rows = write_provenance(Dataset.from_list([*train, twin]), dict(PROVENANCE)).add_column("cluster", [0] * 7)
    _, whole = deduplicate(rows, threshold=0.98)
    kept, by_mean = deduplicate(rows, threshold=0.98, pooling_part="mean")
    assert whole["near_duplicates"] == 0 and by_mean["near_duplicates"] == 1
    assert "another wording of p0" not in kept["problem"]
