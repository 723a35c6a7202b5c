"""The datasets.map featurizer: early exit, pooling over the problem's tokens, caching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saerl_hf import features as F
from saerl_hf._testing import problem_codes, tiny_gemma3
from saerl_hf.activations import ActivationError, prefix_cache, residual_stream, right_pad
from saerl_hf.features import FeaturizeConfig, FeaturizeError, Featurizer, featurize
from saerl_hf.models import load_model, load_tokenizer
from saerl_hf.prompts import problem_span, render_prompt
from saerl_hf.sae import SAELoadError, TrainSAEConfig, load_sae, train_sae
from saerl_hf.sparse import feature_provenance, to_csr

TINY_SAE = dict(d_sae=128, k=8, training_tokens=6_000, train_batch_size=128, buffer_tokens=2048, lr=3e-3,
                sources="gsm8k:test", max_texts=150, eval_tokens=1024, context_size=128)


@pytest.fixture(scope="module")
def tiny_sae(tiny_sae_dir):
    """The session's TopK SAE trained (sae-lens) on the tiny model in conftest."""
    return tiny_sae_dir


@pytest.fixture()
def config(tiny_featurize_config):
    return tiny_featurize_config


def test_early_exit_equals_full_forward_and_skips_upper_layers(tiny):
    model, tokenizer = tiny
    enc = tokenizer(["Natalia sold clips to 48 friends.", "Hi"], return_tensors="pt", padding=True,
                    padding_side="right")
    calls = []
    hooks = [model.model.layers[3].register_forward_hook(lambda *a: calls.append("layer3")),
             model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head"))]
    early = residual_stream(model, enc.input_ids, enc.attention_mask, 2)
    assert calls == []  # nothing above block 2 ran, no logits
    for h in hooks:
        h.remove()
    with torch.no_grad():
        full = model(**enc, output_hidden_states=True).hidden_states[3]
    torch.testing.assert_close(early, full, rtol=0, atol=1e-6)



@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_prefix_cache_continuation_equals_the_whole_prompt(tiny, family):
    """Rows continued from a shared prefix's KV cache (right-padded) see what the whole prompt gives."""
    model = tiny[0] if family == "llama" else tiny_gemma3()
    gen = torch.Generator().manual_seed(0)
    prefix = torch.randint(3, 500, (9,), generator=gen).tolist()
    tails = [torch.randint(3, 500, (n,), generator=gen).tolist() for n in (5, 11, 1)]
    layer = 2
    past = prefix_cache(model, prefix, layer)
    input_ids, mask = right_pad(tails, 0)
    got = residual_stream(model, input_ids, mask, layer, past=past)
    assert past.get_seq_length() == len(prefix)  # the shared cache is copied, never extended
    for row, tail in enumerate(tails):
        with torch.no_grad():
            whole = model(input_ids=torch.tensor([prefix + tail]), output_hidden_states=True).hidden_states[layer + 1]
        torch.testing.assert_close(got[row, : len(tail)], whole[0, len(prefix):], rtol=0, atol=1e-5)


def test_reusing_the_prompt_prefix_changes_nothing_but_cost(gsm, tiny_model_dir, tiny_sae):
    batch = gsm.select(range(8))[:]
    fast = Featurizer(sae=tiny_sae, model=tiny_model_dir, top_k=32, dense=True, batch_size=3)(batch)
    whole = Featurizer(sae=tiny_sae, model=tiny_model_dir, top_k=32, dense=True, batch_size=3,
                       reuse_prefix=False)(batch)
    for i in range(8):
        np.testing.assert_array_equal(fast["sae_idx"][i], whole["sae_idx"][i])
        np.testing.assert_allclose(fast["sae_val"][i], whole["sae_val"][i], atol=1e-4, rtol=0)
        np.testing.assert_allclose(fast["dense_mean"][i], whole["dense_mean"][i], atol=1e-4, rtol=0)


def test_features_equal_a_manual_full_forward_over_problem_tokens(gsm, config, tiny_model_dir, tiny_sae):
    out = featurize(gsm.select(range(3)), config)
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    sae = load_sae(tiny_sae).sae
    row = gsm[1]
    text = render_prompt(tokenizer, row["problem"], row["source"])
    start, end = problem_span(text, row["problem"])
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    positions = [t for t, (a, b) in enumerate(offsets) if t > 0 and a < end and b > start]
    assert 0 < len(positions) < len(offsets) - 5  # the chat wrapper and instruction are left out
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states[3][0, positions]
        pooled = sae.encode(hidden).mean(0)
    vals, idx = pooled.topk(16)
    order = idx.argsort()
    got = out[1]
    assert got["sae_idx"] == idx[order].tolist()
    np.testing.assert_allclose(got["sae_val"], vals[order].numpy(), rtol=1e-4, atol=1e-5)
    assert got["sae_l0"] == int((pooled != 0).sum())
    np.testing.assert_allclose(got["dense_mean"], hidden.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert out.features["sae_idx"].feature.dtype == "int32" and out.features["sae_val"].feature.dtype == "float32"


def test_padding_invariance(gsm, tiny_model_dir, tiny_sae):
    featurizer = Featurizer(sae=tiny_sae, model=tiny_model_dir, top_k=32, dense=True, batch_size=8)
    batch = gsm.select(range(6))[:]
    together = featurizer(batch)
    lengths = [len(p) for p in batch["problem"]]
    assert len(set(lengths)) > 1  # the batch really pads
    for i in range(6):
        alone = featurizer({k: v[i : i + 1] for k, v in batch.items()})
        np.testing.assert_array_equal(alone["sae_idx"][0], together["sae_idx"][i])
        np.testing.assert_allclose(alone["sae_val"][0], together["sae_val"][i], atol=1e-4, rtol=0)
        np.testing.assert_allclose(alone["dense_mean"][0], together["dense_mean"][i], atol=1e-4, rtol=0)


def test_fingerprint_hit_and_miss(gsm, config, tiny_model_dir, data_dir, tmp_path):
    first = featurize(gsm, config)
    rows = F.STATS["rows"]
    again = featurize(gsm, config)
    assert F.STATS["rows"] == rows  # cache hit: nothing recomputed
    assert again.cache_files == first.cache_files and again._fingerprint == first._fingerprint
    assert again["sae_val"] == first["sae_val"]

    seen = {first._fingerprint}
    other_sae = train_sae(TrainSAEConfig(model=tiny_model_dir, output_dir=str(tmp_path / "sae2"),
                                         **dict(TINY_SAE, seed=1)))
    for change in ({"pooling": "max"}, {"top_k": 4}, {"sae": str(other_sae.output_dir)}, {"prompt_format": "plain"}):
        before = F.STATS["rows"]
        changed = featurize(gsm, config, **change)
        assert F.STATS["rows"] == before + len(gsm), change  # recomputed
        assert changed._fingerprint not in seen, change
        seen.add(changed._fingerprint)
        assert changed["sae_val"] != first["sae_val"], change
    assert max(len(v) for v in featurize(gsm, config, top_k=4)["sae_idx"]) == 4
    prov = feature_provenance(featurize(gsm, config, pooling="max"))
    assert prov["pooling"] == "max" and prov["layer"] == 2 and prov["d_sae"] == 128 and prov["d_in"] == 64
    for key in ("model", "model_revision", "hook", "sae", "sae_hash", "top_k", "prompt_format", "dense"):
        assert key in prov


def test_with_rank_and_num_proc_give_the_same_columns(gsm, config):
    base = featurize(gsm, config)
    ranked = featurize(gsm, config, with_rank=True)
    assert ranked["sae_idx"] == base["sae_idx"]
    np.testing.assert_allclose(np.concatenate(ranked["sae_val"]), np.concatenate(base["sae_val"]), atol=1e-6)
    multi = featurize(gsm, config, num_proc=2, map_batch_size=4, cache_dir=config.cache_dir + "-np")
    assert multi["sae_idx"] == base["sae_idx"]
    np.testing.assert_allclose(np.concatenate(multi["sae_val"]), np.concatenate(base["sae_val"]), atol=1e-5)


def test_csr_helper(gsm, config):
    out = featurize(gsm, config)
    matrix = F.to_csr(out)
    assert F.to_csr is to_csr
    assert matrix.shape == (len(gsm), 128)
    for i in range(len(gsm)):
        row = matrix.getrow(i)
        assert row.indices.tolist() == out[i]["sae_idx"]
        np.testing.assert_allclose(row.data, out[i]["sae_val"])


def test_empty_or_missing_prompt_names_the_row(gsm, config):
    from datasets import Dataset

    rows = gsm.select(range(4)).to_list()
    rows[2]["problem"], rows[2]["id"] = "   ", "bad-row"
    with pytest.raises(FeaturizeError, match=r"row 2 id='bad-row'.*empty or missing"):
        featurize(Dataset.from_list(rows), config)
    rows[2]["problem"] = None
    with pytest.raises(FeaturizeError, match="row 2"):
        featurize(Dataset.from_list(rows), config)
    with pytest.raises(FeaturizeError, match="no 'question' column"):
        featurize(gsm, config, problem_column="question")


def test_long_prompts_are_truncated_counted_and_warned_once(gsm, config):
    before = F.STATS["truncated"]
    with pytest.warns(UserWarning, match="max_length=48") as record:
        out = featurize(gsm, config, max_length=48, map_batch_size=3)
    assert len([w for w in record if "max_length" in str(w.message)]) == 1
    assert F.STATS["truncated"] - before == len(gsm)
    assert all(len(v) > 0 for v in out["sae_idx"])


def test_nan_activations_raise(gsm, tiny_sae, tmp_path):
    from saerl_hf._testing import tiny_model

    model, tokenizer = tiny_model()
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "nan_model")
    tokenizer.save_pretrained(tmp_path / "nan_model")
    featurizer = Featurizer(sae=tiny_sae, model=str(tmp_path / "nan_model"))
    with pytest.raises(ActivationError, match="NaN/inf"):
        featurizer(gsm.select(range(2))[:])


def test_wrong_sae_width_fails_before_any_work(gsm, tiny_sae, smollm2_path, tmp_path):
    before = F.STATS["rows"]
    with pytest.raises(SAELoadError, match="hidden size 576"):
        featurize(gsm, FeaturizeConfig(model=smollm2_path, sae=tiny_sae, cache_dir=str(tmp_path)))
    assert F.STATS["rows"] == before


def test_cli_featurize_saves_columns(gsm, tiny_model_dir, tiny_sae, tmp_path, capsys):
    from datasets import load_from_disk

    gsm.save_to_disk(tmp_path / "in")
    F.cli_main(["--dataset", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"), "--model", tiny_model_dir,
                "--sae", tiny_sae, "--top_k", "8", "--pooling", "sum", "--cache_dir", str(tmp_path / "c")])
    out = load_from_disk(str(tmp_path / "out"))
    assert {"sae_idx", "sae_val", "sae_l0"} <= set(out.column_names) and len(out) == len(gsm)
    prov = feature_provenance(out)
    assert prov["pooling"] == "sum" and prov["top_k"] == 8 and len(prov["sae_hash"]) == 64


@pytest.mark.slow
def test_real_smollm2_on_gsm8k(smollm2_path, data_dir, tmp_path):
    """~16 real GSM8K prompts through the real SmolLM2 block 15 and an SAE trained here on it."""
    from saerl_hf.data import load_math_dataset

    sae_dir = train_sae(TrainSAEConfig(model=smollm2_path, d_sae=256, k=16, training_tokens=2048,
                                       train_batch_size=256, buffer_tokens=1024, sources="gsm8k:train",
                                       max_texts=48, eval_tokens=512, context_size=64, lr=2e-3,
                                       normalize_activations="none", output_dir=str(tmp_path / "sae"))).output_dir
    gsm16 = load_math_dataset("gsm8k", "train", limit=16)
    out = featurize(gsm16, FeaturizeConfig(model=smollm2_path, sae=str(sae_dir), top_k=32, batch_size=16,
                                           cache_dir=str(tmp_path / "cache")))
    prov = feature_provenance(out)
    assert prov["layer"] == 15 and prov["hook"] == "model.layers.15" and prov["d_in"] == 576
    assert all(0 < len(v) <= 32 for v in out["sae_idx"])
    assert all(np.all(np.asarray(v) > 0) for v in out["sae_val"])
    # Same features from a full forward's hidden_states[16] for one prompt.
    model, tokenizer = load_model(smollm2_path), load_tokenizer(smollm2_path)
    sae = load_sae(sae_dir).sae
    pooled = problem_codes(model, tokenizer, sae, gsm16[5], hidden_index=16).mean(0)
    vals, idx = pooled.topk(32)
    keep = vals > 0
    assert sorted(idx[keep].tolist()) == out[5]["sae_idx"]
    np.testing.assert_allclose(sorted(out[5]["sae_val"]), sorted(vals[keep].tolist()), rtol=1e-3, atol=1e-4)


def test_dtype_auto_resolves_by_hardware_and_bf16_features_stay_close(gsm, tiny_model_dir, tiny_sae, monkeypatch):
    """`auto` means bfloat16 only where it is native; bf16 features are close to float32's but fingerprinted apart."""
    from saerl_hf import devices

    assert F.native_bf16 is devices.native_bf16  # one implementation, CUDA-free in the parent (saerl_hf.devices)
    assert F.resolve_dtype("auto", "cpu") == ("bfloat16" if F.native_bf16("cpu") else "float32")
    monkeypatch.setattr(devices, "native_bf16", lambda device=None: False)
    assert F.resolve_dtype("auto", "cpu") == "float32" and F.resolve_dtype("bfloat16") == "bfloat16"
    with pytest.raises(FeaturizeError, match="not a torch dtype.*Fix"):
        F.resolve_dtype("float33")
    batch = gsm.select(range(6))[:]
    fp32 = Featurizer(sae=tiny_sae, model=tiny_model_dir, top_k=32, dtype="float32")
    bf16 = Featurizer(sae=tiny_sae, model=tiny_model_dir, top_k=32, dtype="bfloat16")
    assert fp32.settings()["dtype"] == "float32" and bf16.settings()["dtype"] == "bfloat16"
    exact, close = fp32(batch), bf16(batch)
    for a_idx, a_val, b_idx, b_val in zip(exact["sae_idx"], exact["sae_val"], close["sae_idx"], close["sae_val"]):
        x, y = np.zeros(128), np.zeros(128)
        x[a_idx], y[b_idx] = a_val, b_val
        assert x @ y / np.linalg.norm(x) / np.linalg.norm(y) > 0.98
