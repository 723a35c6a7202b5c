"""Signals on real MATH / GSM8K text, featurized end to end by the real featurizer.

The reader is a tiny random Llama (4 layers, hidden 64, the real SmolLM2 tokenizer) with a random TopK SAE
(d_sae 256, k 8) saved in sae-lens format: real text, real featurizer, real provenance and hashes, but
features without learnt meaning. So these tests check plumbing and bad input on real data; the measured
quality of the signals with the trained SmolLM2 SAE is in docs/signals.md (`saerl-hf report-signals`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saerl_hf.data import load_math_dataset
from saerl_hf.signals import (
    ClusterConfig,
    ClusterModel,
    DifficultyConfig,
    DifficultyProbe,
    QualityProbe,
    SAEMismatchError,
    SignalLabelError,
    corruption_counts,
    deduplicate,
    make_quality_dataset,
)
from saerl_hf.sparse import MissingFeaturesError


def _random_sae(path, seed):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(seed)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(k=8, d_in=64, d_sae=256, device="cpu"))
    sae.cfg.metadata.hook_name = "model.layers.2"
    sae.save_inference_model(str(path))
    return str(path)


@pytest.fixture(scope="module")
def reader(tmp_path_factory, tiny_model_dir, data_dir):
    """(featurize function, second-SAE featurize function) over the tiny reader."""
    from saerl_hf.features import FeaturizeConfig, featurize

    root = tmp_path_factory.mktemp("signals_real")
    sae_a, sae_b = _random_sae(root / "sae_a", 0), _random_sae(root / "sae_b", 1)

    def run(dataset, sae=sae_a):
        config = FeaturizeConfig(model=tiny_model_dir, sae=sae, top_k=32, dense=True, max_length=192,
                                 cache_dir=str(root / "cache"))
        return featurize(dataset, config)

    return run, sae_b


@pytest.fixture(scope="module")
def math_train(reader):
    return reader[0](load_math_dataset("math", split="train", limit=240))


def test_difficulty_on_real_math_levels(reader, math_train, tmp_path):
    featurize, sae_b = reader
    probe = DifficultyProbe(DifficultyConfig(label_column="level", min_labels=100)).fit(math_train)
    assert probe.metrics["n_labelled"] == 240 and probe.identity["d_sae"] == 256
    assert probe.identity["sae_hash"] == json.loads(math_train.info.description)["saerl"]["featurize"]["sae_hash"]
    test = featurize(load_math_dataset("math500", limit=40))
    scored = probe.apply(test)
    assert len(scored["difficulty"]) == 40 and np.all(np.isfinite(scored["difficulty"]))
    probe.save(tmp_path / "difficulty")
    loaded = DifficultyProbe.load(tmp_path / "difficulty")
    np.testing.assert_array_equal(loaded.predict(test), probe.predict(test))
    assert loaded.apply(test)._fingerprint == scored._fingerprint

    with pytest.raises(SAEMismatchError, match="sae_hash"):
        loaded.apply(featurize(load_math_dataset("math500", limit=8), sae=sae_b))
    with pytest.raises(MissingFeaturesError, match="featurize it first"):
        loaded.predict(load_math_dataset("math500", limit=8))


def test_dense_baseline_uses_the_same_code_path(math_train):
    probe = DifficultyProbe(DifficultyConfig(features="dense_mean", scaling="std", min_labels=100)).fit(math_train)
    assert probe.width == 64 and probe.identity["features"] == "dense_mean"
    assert probe.predict(math_train).shape == (240,)


def test_missing_real_labels_are_counted(math_train):
    levels = [None if i % 4 == 0 else v for i, v in enumerate(math_train["level"])]
    partial = math_train.remove_columns("level").add_column("level", levels)
    probe = DifficultyProbe(DifficultyConfig(min_labels=100)).fit(partial)
    assert probe.metrics["n_excluded_missing_label"] == 60
    with pytest.raises(SignalLabelError, match="min_labels=200"):
        DifficultyProbe(DifficultyConfig(min_labels=200)).fit(partial)


def test_quality_probe_on_corrupted_gsm8k(reader, tmp_path):
    featurize, _ = reader
    clean = load_math_dataset("gsm8k", split="test", limit=100)
    data = featurize(make_quality_dataset(clean, seed=0))
    assert corruption_counts(data)["none"] == 100
    probe = QualityProbe().fit(data)
    assert probe.metrics["n_clean"] == 100 and probe.metrics["n_noisy"] == 100
    probe.save(tmp_path / "quality")
    kept, counts = QualityProbe.load(tmp_path / "quality").keep(data, top_fraction=0.5)
    assert counts["n_kept"] == 100 and "quality" in kept.column_names


def test_clusters_and_dedup_on_real_text(reader, math_train):
    featurize, _ = reader
    with_dupes = load_math_dataset("math", split="train", limit=60)
    with_dupes = featurize(with_dupes.select(list(range(60)) + [0, 1, 2]))  # three repeated problems
    model = ClusterModel(ClusterConfig(n_clusters=4)).fit(math_train)
    clustered = model.apply(with_dupes)
    assert set(clustered["cluster"]) <= {0, 1, 2, 3}
    _, counts = deduplicate(clustered)
    assert counts["exact_duplicates"] == 3 and counts["n_kept"] == 60 - counts["near_duplicates"]


def test_report_rows_out_of_range_name_the_field():
    """Asking the report for more MATH rows than exist is refused with the count there is (no IndexError)."""
    from saerl_hf.signals.report_sections import math_samples

    train, test = math_samples(5, 3, seed=0)
    assert len(train) == 5 and len(test) == 3 and all(level is not None for level in train["level"])
    with pytest.raises(ValueError, match=r"n_train=100000, but there are \d+ MATH train problems.*--n_train"):
        math_samples(100_000, 3, seed=0)
    with pytest.raises(ValueError, match=r"n_test=501, but there are 500 MATH-500"):
        math_samples(5, 501, seed=0)
