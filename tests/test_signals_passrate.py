"""Pass-rate labeller on real GSM8K problems with a tiny random reader (mechanics, caching, determinism).

A random 4-layer model answers nothing correctly, so the pass rates here are 0; the point is the map
function's columns, k samples per prompt, determinism for a seed, and a stable ``datasets`` fingerprint.
The SmolLM2 cost/pass-rate measurement is in docs/signals.md.
"""

from __future__ import annotations

import pickle

import pytest

from saerl_hf.data import load_math_dataset
from saerl_hf.signals import PassRateConfig, PassRateLabeller, label_pass_rates


@pytest.fixture(scope="module")
def problems(data_dir):
    return load_math_dataset("gsm8k", split="test", limit=3)


def test_pass_rate_columns_deterministic_and_cached(problems, tiny_model_dir):
    config = PassRateConfig(model=tiny_model_dir, k=3, max_new_tokens=6, temperature=1.0, seed=1)
    first = label_pass_rates(problems, config, batch_size=2)
    assert first["n_samples"] == [3, 3, 3]
    assert all(0 <= n <= 3 for n in first["n_cut"])  # samples that used all 6 tokens
    assert all(rate in (0.0, 1 / 3, 2 / 3, 1.0) for rate in first["pass_rate"])
    again = label_pass_rates(problems, config, batch_size=2)
    assert again["pass_rate"] == first["pass_rate"] and again._fingerprint == first._fingerprint
    other = label_pass_rates(problems, PassRateConfig(model=tiny_model_dir, k=2, max_new_tokens=6), batch_size=2)
    assert other._fingerprint != first._fingerprint and other["n_samples"] == [2, 2, 2]


def test_labeller_is_picklable_and_checks_its_input(problems, tiny_model_dir):
    labeller = pickle.loads(pickle.dumps(PassRateLabeller(PassRateConfig(model=tiny_model_dir, k=1))))  # noqa: S301 - our own bytes: datasets.map ships the labeller to workers by pickle
    with pytest.raises(KeyError, match="needs a 'answer' column"):
        labeller({"problem": ["What is 1 + 1?"]})
    with pytest.raises(ValueError, match="k must be >= 1"):
        PassRateLabeller(PassRateConfig(k=0))
