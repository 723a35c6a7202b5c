"""Shared fixtures: the real data dir, the real SmolLM2 checkpoint, tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]

# Hub emulator fixtures live in their own plugin module (tests/hub_plugin.py) when present.
pytest_plugins = [p for p in ("tests.hub_plugin",) if (REPO_ROOT / (p.replace(".", "/") + ".py")).is_file()]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data (SAERL_DATA_DIR, else ../shared/data beside the repo)."""
    from saerl_hf.data import default_data_dir

    path = Path(os.environ["SAERL_DATA_DIR"]) if os.environ.get("SAERL_DATA_DIR") else default_data_dir()
    if path is None or not path.is_dir():
        path = REPO_ROOT.parent / "shared" / "data"
    assert path.is_dir(), f"real data not found at {path}; set SAERL_DATA_DIR"
    os.environ["SAERL_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """A plain safetensors checkpoint of the real SmolLM2-135M-Instruct (made once from the GGUF)."""
    from saerl_hf.models import materialize

    return str(materialize("smollm2-135m"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random Llama (4 layers, hidden 64) with the real SmolLM2 tokenizer, saved to disk."""
    from saerl_hf._testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture()
def tiny():
    """(model, tokenizer) of a tiny random Llama, in memory."""
    from saerl_hf._testing import tiny_model

    return tiny_model()


TINY_SAE_SETTINGS = dict(d_sae=128, k=8, training_tokens=6_000, train_batch_size=128, buffer_tokens=2048, lr=3e-3,
                         sources="gsm8k:test", max_texts=150, eval_tokens=1024, context_size=128)


@pytest.fixture(scope="session")
def tiny_sae_dir(tiny_model_dir, data_dir, tmp_path_factory) -> str:
    """A small TopK SAE (128 latents) trained with sae-lens on the tiny model's middle layer (seconds)."""
    from saerl_hf.sae import TrainSAEConfig, train_sae

    out = tmp_path_factory.mktemp("tiny_sae") / "sae"
    return str(train_sae(TrainSAEConfig(model=tiny_model_dir, output_dir=str(out), **TINY_SAE_SETTINGS)).output_dir)


@pytest.fixture()
def tiny_featurize_config(tiny_model_dir, tiny_sae_dir, tmp_path):
    """The featurizer settings the feature tests share: the tiny model and SAE, a small top-k, dense kept."""
    from saerl_hf.features import FeaturizeConfig

    return FeaturizeConfig(model=tiny_model_dir, sae=tiny_sae_dir, top_k=16, dense=True, batch_size=4,
                           cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def gsm(data_dir):
    """Ten real GSM8K test problems (a test module may define its own ``gsm``, which wins)."""
    from saerl_hf.data import load_math_dataset

    return load_math_dataset("gsm8k", "test", limit=10)
