"""Residual-stream activations at one layer of any transformers causal LM, with an early exit.

SAERL only needs the residual stream at the SAE's layer, so the forward pass stops there: a forward hook on
``layers[L]`` captures its output and raises :class:`_StopForward`, so the layers above ``L`` and the LM head
(the 49k-vocab head dominates SmolLM2's cost) never run. The captured tensor equals ``hidden_states[L + 1]``
of a full forward.

Prompts that share a prefix (the chat template's system turn, a few-shot block) need not recompute it: with
:func:`prefix_cache` the shared tokens run once, and :func:`residual_stream` continues every row of a batch
from that KV cache (``past``), giving the same activations as the whole prompt within float tolerance.
"""

from __future__ import annotations

import copy
import inspect
import re

import torch

_HOOK_PATTERNS = (
    re.compile(r"(?:^|\.)layers\.(\d+)$"),  # transformers module names: model.layers.15
    re.compile(r"^blocks\.(\d+)\.hook_resid_post$"),  # TransformerLens names used by registry SAEs
)


class _StopForward(Exception):
    """Raised by the capture hook to abandon the forward pass once layer L has run."""


class ActivationError(ValueError):
    """Activations that cannot be used (NaN/inf, wrong layer); the message names the rows."""


def base_model(model):
    """The decoder stack (``model.model`` for ``*ForCausalLM``), which is what runs embeddings + layers."""
    inner = getattr(model, "base_model", model)
    return inner if hasattr(inner, "layers") else model


def decoder_layers(model):
    """The ``ModuleList`` of transformer blocks."""
    inner = base_model(model)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ActivationError(
            f"{type(model).__name__} has no `.layers` module list; SAERL reads decoder-only LMs whose blocks "
            f"live at `model.model.layers` (Llama, Gemma, Qwen, Mistral, ...)."
        )
    return layers


def num_layers(model) -> int:
    return len(decoder_layers(model))


def hook_name(model, layer: int) -> str:
    """The module name of block ``layer`` (``model.layers.15``), as sae-lens' HF-model path names hooks."""
    prefix = getattr(model, "base_model_prefix", "model") or "model"
    return f"{prefix}.layers.{layer}"


def layer_from_hook(name: str | None) -> int | None:
    """Block index encoded in an SAE's hook name (``model.layers.15`` or ``blocks.15.hook_resid_post``)."""
    if not name:
        return None
    for pattern in _HOOK_PATTERNS:
        match = pattern.search(name)
        if match:
            return int(match.group(1))
    return None


def check_layer(model, layer: int) -> int:
    n = num_layers(model)
    if not 0 <= layer < n:
        raise ActivationError(f"layer {layer} is out of range: the model has {n} blocks (0..{n - 1}).")
    return layer


def cache_keyword(module) -> str:
    """The forward argument that takes a KV cache: transformers 5.x renames ``past_key_values`` to ``cache``."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _run_to_layer(model, layer: int, **inputs) -> torch.Tensor:
    """Run the decoder stack on ``inputs`` up to block ``layer`` (inclusive); return that block's output."""
    captured: list[torch.Tensor] = []

    def capture(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    handle = decoder_layers(model)[layer].register_forward_hook(capture)
    try:
        base_model(model)(**inputs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ActivationError(f"block {layer} did not run; is `{type(model).__name__}` a decoder-only LM?")
    return captured[0]


@torch.no_grad()
def prefix_cache(model, prefix_ids: list[int], layer: int, device=None):
    """KV cache of a prompt prefix shared by many rows, for blocks 0..``layer`` (all the early exit runs).

    Pass it as ``past`` to :func:`residual_stream`; it is copied per batch, never modified.
    """
    from transformers import DynamicCache

    check_layer(model, layer)
    if not prefix_ids:
        raise ActivationError("prefix_cache needs at least one prefix token.")
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=device)
    _run_to_layer(model, layer, input_ids=ids, use_cache=True, **{cache_keyword(base_model(model)): cache})
    return cache


@torch.no_grad()
def residual_stream(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, layer: int,
                    past=None) -> torch.Tensor:
    """Output of block ``layer`` for a batch, running nothing above it. Shape (batch, seq, d_model).

    Batches should be right-padded: with causal attention, real tokens then never see padding and the
    default position ids are the true positions, so a prompt gives the same activations alone or batched.
    With ``past`` (a :func:`prefix_cache`), ``input_ids`` are the tokens that follow the shared prefix and
    the result covers those tokens only.
    """
    check_layer(model, layer)
    if past is None:
        return _run_to_layer(model, layer, input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    batch = input_ids.shape[0]
    cache = copy.deepcopy(past)
    cache.batch_repeat_interleave(batch)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    prefix = torch.ones((batch, past.get_seq_length()), dtype=attention_mask.dtype, device=attention_mask.device)
    return _run_to_layer(model, layer, input_ids=input_ids, attention_mask=torch.cat([prefix, attention_mask], 1),
                         use_cache=True, **{cache_keyword(base_model(model)): cache})


def right_pad(sequences: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) for token lists, padded on the right."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask
