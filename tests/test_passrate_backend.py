"""Pass-rate labeller backend: the evaluation's selection rule (vLLM with a GPU, HF generate otherwise)."""

from __future__ import annotations

import pytest

from saerl_hf.generation import select_backend, vllm_available
from saerl_hf.signals import PassRateConfig, PassRateLabeller


def test_auto_picks_hf_generate_here_as_the_evaluation_does(tiny_model_dir):
    import importlib.util

    import torch

    assert not (importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()), "this is a CPU test"
    labeller = PassRateLabeller(PassRateConfig(model=tiny_model_dir))
    assert labeller.backend() == select_backend("auto", model_is_path=True) == "transformers"
    forced = PassRateLabeller(PassRateConfig(model=tiny_model_dir, backend="transformers"))
    assert forced.fingerprint() == labeller.fingerprint()  # the resolved backend is what the cache key holds
    assert not vllm_available()
    with pytest.raises(RuntimeError, match="needs `pip install vllm` and a CUDA GPU"):
        PassRateLabeller(PassRateConfig(model=tiny_model_dir, backend="vllm")).backend()
