"""Fixtures for tests and benchmarks, not part of the public API: a tiny random Llama with the real SmolLM2
tokenizer, in memory or saved as a model directory."""

from __future__ import annotations

import os

from saerl_hf.models import load_tokenizer

__all__ = ["problem_codes", "save_tiny_model", "tiny_gemma3", "tiny_model"]


def tiny_model(
    tokenizer_name: str = "smollm2-135m",
    num_hidden_layers: int = 4,
    hidden_size: int = 64,
    seed: int = 0,
):
    """A randomly initialised Llama with the real SmolLM2 tokenizer's vocabulary, for fast unit tests.

    Returns ``(model, tokenizer)``. Deterministic for a seed.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(tokenizer_name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model, tokenizer


def save_tiny_model(path: str | os.PathLike, **kwargs) -> str:
    """Write a tiny model + tokenizer to ``path`` (so scripts that take a model path can use it)."""
    model, tokenizer = tiny_model(**kwargs)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tiny_gemma3():
    """A tiny random Gemma 3 (sliding-window and global layers, window 6): another family's cache layout."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=6,
                              layer_types=["sliding_attention", "full_attention"] * 2, max_position_embeddings=128)
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


def problem_codes(model, tokenizer, sae, row: dict, hidden_index: int):
    """Reference features for featurizer tests: SAE codes of a problem's own tokens (first position left out),
    read from a plain full forward's ``hidden_states[hidden_index]``, with none of the featurizer's shortcuts."""
    import torch

    from saerl_hf.prompts import problem_span, render_prompt

    text = render_prompt(tokenizer, row["problem"], row["source"])
    start, end = problem_span(text, row["problem"])
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    positions = [t for t, (a, b) in enumerate(offsets) if t > 0 and a < end and b > start]
    with torch.no_grad():
        return sae.encode(model(**enc, output_hidden_states=True).hidden_states[hidden_index][0, positions])
