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
    model = copy.deepcopy(model).to(dtype)  # the fixture's model stays float32
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


class _Recording(ActivationCache):
    """Records the sequences of every block it stores."""

    def __init__(self, root, reader):
        super().__init__(root, reader)
        self.stored = []

    def put(self, seqs, block):
        self.stored.append(seqs)
        super().put(seqs, block)


def test_the_cache_key_names_the_reader_and_the_tokens(tiny, tmp_path):
    model, tokenizer = tiny
    cache = _Recording(tmp_path, "reader A")
    _blocks(ActivationStream(model, tokenizer, TEXTS, 2, model_batch_size=4, chat=False, cycle=False,
                             cache=cache), 100)
    stored = cache.stored[0]
    same = ActivationCache(tmp_path, "reader A")
    assert same.get(stored) is not None and same.hits == 1
    other = ActivationCache(tmp_path, "reader B")
    assert other.get(stored) is None
    changed = [list(stored[0][:-1]) + [stored[0][-1] + 1], *stored[1:]]  # one token differs
    assert same.get(changed) is None and same.misses == 1
    assert not list(tmp_path.rglob("*.tmp"))  # every write was committed


def test_a_damaged_or_short_block_is_a_miss_and_a_failed_write_stops_writing(tiny, tmp_path):
    model, tokenizer = tiny
    cache = _Recording(tmp_path / "cache", "reader")
    first = _blocks(ActivationStream(model, tokenizer, TEXTS, 2, model_batch_size=4, chat=False, cycle=False,
                                     cache=cache), 2)
    path = cache._path(cache.stored[0])
    path.write_bytes(b"not safetensors")
    assert cache.get(cache.stored[0]) is None  # recomputed, not a crash
    from safetensors.torch import save_file

    save_file({"acts": first[1][:-1].contiguous()}, str(cache._path(cache.stored[1])))  # a row short
    assert cache.get(cache.stored[1]) is None
    blocked = ActivationCache(tmp_path / "file", "reader")
    (tmp_path / "file").write_text("a file where the cache dir should be")
    blocks = _blocks(ActivationStream(model, tokenizer, TEXTS, 2, model_batch_size=4, chat=False, cycle=False,
                                      cache=blocked), 100)
    assert len(blocks) == len(first) + 6 and blocked.writable is False  # trained on, nothing stored


def test_a_resumed_stream_reads_the_cache_from_its_position(tiny, tmp_path):
    model, tokenizer = tiny
    whole = ActivationStream(model, tokenizer, TEXTS, 2, model_batch_size=3, chat=False,
                             cache=ActivationCache(tmp_path, "reader"))
    expected = _blocks(whole, 25)  # > 2 epochs of 10 blocks: the second epoch is all hits
    for k in (4, 12):
        head = ActivationStream(model, tokenizer, TEXTS, 2, model_batch_size=3, chat=False)
        _blocks(head, k)
        reading = ActivationCache(tmp_path, "reader")
        tail = _blocks(ActivationStream(None, tokenizer, TEXTS, 2, model_batch_size=3, chat=False,
                                        start=head.position, cache=reading), 25 - k)
        assert reading.misses == 0 and all(torch.equal(a, b) for a, b in zip(tail, expected[k:], strict=True))


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
