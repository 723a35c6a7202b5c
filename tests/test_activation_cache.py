"""The activation cache of train-sae / sae-sweep on a tiny random Llama: a second run on the same texts reads
every block from disk, runs no reader forward, and trains the very same SAE as a run without a cache."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from safetensors.torch import load_file

from saerl_hf.activation_cache import ActivationCache
from saerl_hf.sae_data import ActivationStream
from saerl_hf.sae_load import SAE_WEIGHTS
from saerl_hf.sae_train import TrainSAEConfig, train_sae

TEXTS = [f"Problem {i}: what is {i} plus {2 * i}? " + "and then " * (i % 5) for i in range(30)]
SETTINGS = dict(d_sae=64, k=8, training_tokens=20 * 128, train_batch_size=128, buffer_tokens=1024, lr=3e-3,
                sources="gsm8k:test", max_texts=80, eval_tokens=512, context_size=64, model_batch_size=4,
                checkpoint_every=0)


def _blocks(stream, n):
    return [block for _, block in zip(range(n), stream)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_filled_cache_gives_the_same_blocks_without_the_model(tiny, tmp_path, dtype):
    model, tokenizer = tiny
    model = copy.deepcopy(model).to(dtype)  # the session fixture is shared
    filling = ActivationCache(tmp_path, "tiny|" + str(dtype))
    first = _blocks(ActivationStream(model, tokenizer, TEXTS, 2, model_batch_size=4, chat=False, cycle=False,
                                     cache=filling), 100)
    assert filling.misses == len(first) and filling.hits == 0
    # No model at all: any block not on disk would fail in the forward.
    reading = ActivationCache(tmp_path, "tiny|" + str(dtype))
    again = _blocks(ActivationStream(None, tokenizer, TEXTS, 2, model_batch_size=4, chat=False, cycle=False,
                                     cache=reading), 100)
    assert reading.hits == len(first) and reading.misses == 0
    assert all(a.dtype == torch.float32 and torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_the_cache_key_names_the_reader_and_the_tokens(tiny, tmp_path):
    model, tokenizer = tiny
    cache = ActivationCache(tmp_path, "reader A")
    _blocks(ActivationStream(model, tokenizer, TEXTS, 2, model_batch_size=4, chat=False, cycle=False,
                             cache=cache), 100)
    other_reader = ActivationCache(tmp_path, "reader B")
    assert other_reader.get([[1, 2, 3]]) is None
    seqs = tokenizer(TEXTS[:4])["input_ids"]
    assert other_reader.get(seqs) is None and other_reader.misses == 2
    assert not list(tmp_path.rglob("*.tmp"))  # every write was committed


def test_train_sae_reuses_the_cache_and_trains_the_same_sae(tiny_model_dir, data_dir, tmp_path, caplog):
    plain = train_sae(TrainSAEConfig(model=tiny_model_dir, output_dir=str(tmp_path / "plain"), **SETTINGS))
    cache = str(tmp_path / "activations")
    filled = train_sae(TrainSAEConfig(model=tiny_model_dir, output_dir=str(tmp_path / "filled"),
                                      activation_cache=cache, **SETTINGS))
    with caplog.at_level(logging.INFO, logger="saerl_hf.sae_train"):
        reused = train_sae(TrainSAEConfig(model=tiny_model_dir, output_dir=str(tmp_path / "reused"),
                                          activation_cache=cache, **SETTINGS))
    summary = next(r.getMessage() for r in caplog.records if "activation cache" in r.getMessage())
    read, total = (int(x.replace(",", "")) for x in summary.split(": ")[-1].split(" blocks")[0].split(" of "))
    assert read == total > 0, summary
    weights = [load_file(str(tmp_path / name / SAE_WEIGHTS)) for name in ("plain", "filled", "reused")]
    for other in weights[1:]:
        assert other.keys() == weights[0].keys()
        assert all(torch.equal(other[key], weights[0][key]) for key in weights[0])
    assert plain.metrics["explained_variance"] == filled.metrics["explained_variance"] \
        == reused.metrics["explained_variance"]
