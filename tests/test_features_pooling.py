"""Pooling variants, keeping every active latent, and the dense / hybrid feature sets of the featurizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saerl_hf._testing import problem_codes
from saerl_hf.features import FeaturizeConfig, FeaturizeError, Featurizer, featurize
from saerl_hf.models import load_model, load_tokenizer
from saerl_hf.sae import load_sae
from saerl_hf.sparse import feature_provenance, to_csr


@pytest.fixture(scope="module")
def gsm(data_dir):
    from saerl_hf.data import load_math_dataset

    return load_math_dataset("gsm8k", "test", limit=6)


@pytest.fixture(scope="module")
def manual_codes(gsm, tiny_model_dir, tiny_sae_dir):
    """Per row: the SAE codes of the problem's tokens from a plain full forward (block 2 of the tiny Llama)."""
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    sae = load_sae(tiny_sae_dir).sae
    return [problem_codes(model, tokenizer, sae, row, hidden_index=3) for row in gsm]


def _dense_row(idx, val, width):
    row = np.zeros(width)
    row[np.asarray(idx, dtype=int)] = val
    return row


@pytest.mark.parametrize("pooling", ["mean", "max", "last", "mean+max", "mean+last"])
def test_each_pooling_keeps_every_active_latent_of_a_manual_forward(pooling, gsm, manual_codes, tiny_model_dir,
                                                                   tiny_sae_dir):
    out = Featurizer(sae=tiny_sae_dir, model=tiny_model_dir, pooling=pooling, top_k=None, batch_size=4)(gsm[:])
    for i, codes in enumerate(manual_codes):
        expected = {"mean": codes.mean(0), "max": codes.max(0).values, "last": codes[-1],
                    "mean+max": torch.cat([codes.mean(0), codes.max(0).values]),
                    "mean+last": torch.cat([codes.mean(0), codes[-1]])}[pooling].numpy()
        width = 256 if "+" in pooling else 128
        got = _dense_row(out["sae_idx"][i], out["sae_val"][i], width)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        assert len(out["sae_idx"][i]) == int((expected != 0).sum())  # nothing cut
        assert out["sae_l0"][i] == int((codes != 0).any(0).sum() if pooling != "last" else (codes[-1] != 0).sum())
    if "+" in pooling:  # the second part sits at d_sae + i
        idx = np.concatenate(out["sae_idx"])
        assert idx.max() >= 128 and idx.min() < 128


def test_top_k_zero_or_null_keeps_all_and_provenance_records_the_choice(gsm, tiny_model_dir, tiny_sae_dir, tmp_path):
    assert FeaturizeConfig(top_k=0).top_k is None and FeaturizeConfig(top_k=None).top_k is None
    with pytest.raises(FeaturizeError, match="top_k must be >= 0"):
        FeaturizeConfig(top_k=-1)
    with pytest.raises(FeaturizeError, match="features must be one of"):
        FeaturizeConfig(features="sparse")
    config = FeaturizeConfig(model=tiny_model_dir, sae=tiny_sae_dir, top_k=0, pooling="mean+max",
                             features="sae+dense", cache_dir=str(tmp_path))
    out = featurize(gsm, config)
    cut = featurize(gsm, config, top_k=4)
    assert all(len(a) > len(b) for a, b in zip(out["sae_idx"], cut["sae_idx"]))
    assert len(out[0]["dense_mean"]) == 64  # the dense block of the hybrid features is written
    prov = feature_provenance(out)
    assert prov["top_k"] is None and prov["pooling"] == "mean+max" and prov["feature_set"] == "sae+dense"
    assert prov["n_features"] == 256 and prov["d_sae"] == 128 and "max of latent" in prov["index_layout"]
    assert out._fingerprint != cut._fingerprint
    assert to_csr(out).shape == (len(gsm), 256)  # the default width is the index space, not d_sae


def test_dtype_errors_are_featurize_errors_and_the_default_device_is_cuda_free():
    from saerl_hf import devices, features

    with pytest.raises(FeaturizeError, match="not a torch dtype"):
        Featurizer(sae="unused", dtype="float33")
    assert features.resolve_dtype("float32") == "float32"
    assert devices.default_device() == ("cuda" if torch.cuda.device_count() else "cpu")
    assert not torch.cuda.is_initialized()


@pytest.mark.parametrize("variant", [("mean", None), ("max", 5), ("mean+max", 7), ("mean", 3)])
def test_variants_derived_from_one_mean_max_pass_equal_their_own_pass(variant, gsm, tiny_model_dir, tiny_sae_dir):
    """The report's variant sweep runs the reader once (mean+max, every latent) and derives the others from it."""
    from saerl_hf.pooling import narrow_pooling

    pooling, top_k = variant
    config = FeaturizeConfig(model=tiny_model_dir, sae=tiny_sae_dir, top_k=0, pooling="mean+max", batch_size=4)
    wide = featurize(gsm, config)
    derived = narrow_pooling(wide, pooling, top_k)
    own = featurize(gsm, FeaturizeConfig(model=tiny_model_dir, sae=tiny_sae_dir, top_k=top_k or 0, pooling=pooling,
                                         batch_size=4))
    assert derived["sae_l0"] == own["sae_l0"]
    for i in range(len(gsm)):
        assert derived["sae_idx"][i] == own["sae_idx"][i]
        np.testing.assert_allclose(derived["sae_val"][i], own["sae_val"][i], rtol=1e-6)
    prov, own_prov = feature_provenance(derived), feature_provenance(own)
    for key in ("pooling", "top_k", "n_features", "index_layout", "sae_hash"):
        assert prov[key] == own_prov[key], key
    assert feature_provenance(wide)["pooling"] == "mean+max"  # the source's provenance is untouched
    empty = wide.select([])
    assert len(narrow_pooling(empty, pooling, top_k)) == 0 and feature_provenance(empty)["pooling"] == "mean+max"
    with pytest.raises(ValueError, match="mean\\+max and top_k 0"):
        narrow_pooling(own, "mean", 2)


@pytest.mark.parametrize("top_k", [None, 2, 5, 30])
def test_narrowing_matches_sparse_rows_with_zeros_and_negative_values(top_k):
    """Against the featurizer's own cut (``sparse_rows``) on vectors with negative entries (an SAE without ReLU)."""
    from saerl_hf.pooling import _Narrow, sparse_rows

    gen = torch.Generator().manual_seed(0)
    d_sae = 16
    pooled = torch.randn(40, 2 * d_sae, generator=gen) * (torch.rand(40, 2 * d_sae, generator=gen) < 0.4)
    pooled[:5] = -pooled[:5].abs()  # rows with only negative entries
    wide = sparse_rows(pooled, None)
    for pooling, part in (("mean", pooled[:, :d_sae]), ("max", pooled[:, d_sae:]), ("mean+max", pooled)):
        got = _Narrow(pooling, top_k, d_sae)([r[0] for r in wide], [r[1] for r in wide])
        for j, (idx, val) in enumerate(sparse_rows(part, top_k)):
            np.testing.assert_array_equal(got["sae_idx"][j], idx)
            np.testing.assert_array_equal(got["sae_val"][j], val)
