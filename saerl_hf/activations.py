"""Activations at an SAE's hook point of any transformers causal LM, with an early exit.

SAERL only needs the activations the SAE reads, so the forward pass stops there: a forward hook captures them
and raises :class:`_StopForward`, so the layers above and the LM head (the 49k-vocab head dominates SmolLM2's
cost) never run. A plain layer ``L`` means the output of block ``L`` (``hidden_states[L + 1]`` of a full
forward); a :class:`HookPoint` (from :func:`layer_from_hook`) reads any sae-lens hook the registry uses:
``hook_resid_pre`` (block input, ``hidden_states[L]``), ``hook_resid_mid``, ``hook_resid_post``,
``hook_attn_out``, ``attn.hook_z``, ``hook_mlp_out``, or an HF module name (``model.layers.L.mlp``).

Prompts that share a prefix (the chat template's system turn, a few-shot block) need not recompute it: with
:func:`prefix_cache` the shared tokens run once, and :func:`residual_stream` continues every row of a batch
from that KV cache (``past``), giving the same activations as the whole prompt within float tolerance.
"""

from __future__ import annotations

import copy
import inspect
import re

import torch

# TransformerLens hook names (sae-lens registry) -> site inside block N.
_TL_HOOK = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out"
                      r"|attn\.hook_z|hook_z)$")
_TL_SITES = {"hook_resid_pre": "resid_pre", "hook_resid_mid": "resid_mid", "hook_resid_post": "resid_post",
             "hook_attn_out": "attn_out", "hook_mlp_out": "mlp_out", "attn.hook_z": "attn_z",
             "hook_z": "attn_z"}
# transformers module names: model.layers.15, model.layers.15.mlp, model.layers.3.self_attn.o_proj.input
_HF_HOOK = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?layers\.(\d+)((?:\.[A-Za-z_]\w*)*?)(?:\.(input|output))?$")
SUPPORTED_HOOKS = ("blocks.N.hook_resid_pre", "blocks.N.hook_resid_mid", "blocks.N.hook_resid_post",
                   "blocks.N.hook_attn_out", "blocks.N.attn.hook_z", "blocks.N.hook_mlp_out",
                   "model.layers.N[.<submodule>][.input|.output]")


class _StopForward(Exception):
    """Raised by the capture hook to abandon the forward pass once layer L has run."""


class ActivationError(ValueError):
    """Activations that cannot be used (NaN/inf, wrong layer); the message names the rows."""


class UnsupportedHookError(ActivationError):
    """An SAE hook name saerl-hf cannot read; the message names the hook and the fix."""


class HookPoint(int):
    """Where an SAE reads: a block index (an ``int``, so code that treats the layer as a number keeps working)
    plus the ``site`` in that block and the ``hook`` name it came from.

    Sites: ``resid_pre`` (block input), ``resid_mid`` (after attention, before the MLP), ``resid_post`` (block
    output), ``attn_out`` / ``mlp_out`` (what attention / the MLP add to the residual stream, after Gemma's
    post-norms as TransformerLens defines them), ``attn_z`` (the heads, concatenated: the input of ``o_proj``)
    and ``module`` (``module``'s ``io``: an HF module path inside the block). A point off the block output is
    not equal to the plain block index, so a ``--layer`` that names only the block is not mistaken for it.
    """

    site: str
    hook: str
    module: str
    io: str

    def __new__(cls, layer: int, site: str = "resid_post", hook: str | None = None, module: str = "",
                io: str = "output"):
        point = super().__new__(cls, layer)
        point.site, point.hook, point.module, point.io = site, hook or f"model.layers.{int(layer)}", module, io
        return point

    def __reduce__(self):
        return (HookPoint, (int(self), self.site, self.hook, self.module, self.io))

    def __eq__(self, other):
        if isinstance(other, HookPoint):
            return int(self) == int(other) and (self.site, self.module, self.io) == (other.site, other.module, other.io)
        if isinstance(other, int):
            return self.site == "resid_post" and int(self) == other
        return NotImplemented

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = int.__hash__


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


def layer_from_hook(name: str | None) -> HookPoint | None:
    """The :class:`HookPoint` of an SAE's hook name (``None`` when the SAE records none); a hook saerl-hf cannot
    read raises :class:`UnsupportedHookError` instead of falling back to another layer."""
    if not name:
        return None
    match = _TL_HOOK.match(name)
    if match:
        return HookPoint(int(match.group(1)), _TL_SITES[match.group(2)], name)
    match = _HF_HOOK.match(name)
    if match:
        module, io = match.group(2).lstrip("."), match.group(3) or "output"
        if not module:
            return HookPoint(int(match.group(1)), "resid_post" if io == "output" else "resid_pre", name)
        return HookPoint(int(match.group(1)), "module", name, module, io)
    what = ("the token embeddings" if "embed" in name else "an MLP input (a transcoder's hook)"
            if re.search(r"mlp_in|mlp\.hook_in|ln2\.hook_normalized", name) else "a hook saerl-hf does not map")
    raise UnsupportedHookError(
        f"SAE hook '{name}' reads {what}; saerl-hf reads SAEs on {', '.join(SUPPORTED_HOOKS)}. Fix: pick an SAE "
        f"trained on one of those hooks (e.g. a residual-stream SAE of the same release), or train one with "
        f"`saerl-hf train-sae`.")


def hook_target(block, point: int) -> tuple[str, str]:
    """(module path inside ``block``, "input" | "output") that holds ``point``'s activations. Gemma 2/3 blocks
    norm what attention and the MLP add (post-norms), and TransformerLens' attn_out / mlp_out are after them."""
    site = getattr(point, "site", "resid_post")
    sandwich = hasattr(block, "pre_feedforward_layernorm") and hasattr(block, "post_feedforward_layernorm")
    targets = {
        "resid_post": ("", "output"),
        "resid_pre": ("", "input"),
        "resid_mid": ("pre_feedforward_layernorm" if sandwich else "post_attention_layernorm", "input"),
        "attn_out": ("post_attention_layernorm" if sandwich else "self_attn", "output"),
        "mlp_out": ("post_feedforward_layernorm" if sandwich else "mlp", "output"),
        "attn_z": ("self_attn.o_proj", "input"),
    }
    if site == "module":
        return point.module, point.io
    return targets[site]


def check_layer(model, layer: int) -> int:
    n = num_layers(model)
    if not 0 <= layer < n:
        raise ActivationError(f"layer {layer} is out of range: the model has {n} blocks (0..{n - 1}).")
    return layer


def cache_keyword(module) -> str:
    """The forward argument that takes a KV cache: transformers 5.x renames ``past_key_values`` to ``cache``."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _hooked_module(model, point: int):
    """(module, io) to hook for ``point``; a module the block does not have is a clear error."""
    block = decoder_layers(model)[int(point)]
    path, io = hook_target(block, point)
    try:
        return (block.get_submodule(path) if path else block), io
    except AttributeError:
        raise UnsupportedHookError(
            f"SAE hook '{point.hook}' needs `{path}` in block {int(point)}, and {type(block).__name__} has no such "
            f"submodule. Fix: use an SAE on the residual stream (hook_resid_pre/post), or one whose hook names this "
            f"model's modules (model.layers.N.<submodule>).") from None


def _run_to_layer(model, layer: int, **inputs) -> torch.Tensor:
    """Run the decoder stack on ``inputs`` up to the hook point ``layer`` (a block index: its output; or a
    :class:`HookPoint`) and return the activations there; nothing after it runs."""
    captured: list[torch.Tensor] = []

    def capture_output(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    def capture_input(_module, args, kwargs):
        tensors = [*args, kwargs.get("hidden_states"), *kwargs.values()]
        captured.append(next(t for t in tensors if isinstance(t, torch.Tensor)))
        raise _StopForward

    module, io = _hooked_module(model, layer)
    handle = (module.register_forward_hook(capture_output) if io == "output"
              else module.register_forward_pre_hook(capture_input, with_kwargs=True))
    try:
        base_model(model)(**inputs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ActivationError(f"hook point {getattr(layer, 'hook', layer)} (block {int(layer)}) did not run; is "
                              f"`{type(model).__name__}` a decoder-only LM?")
    if getattr(layer, "site", None) == "attn_z":  # TransformerLens' hook_z shape, which sae-lens reshapes itself
        head_dim = int(decoder_layers(model)[int(layer)].self_attn.head_dim)
        return captured[0].unflatten(-1, (-1, head_dim))
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
    # The whole block runs (whatever its hook point) so the continuation finds every key/value it attends to.
    _run_to_layer(model, int(layer), input_ids=ids, use_cache=True, **{cache_keyword(base_model(model)): cache})
    return cache


@torch.no_grad()
def residual_stream(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, layer: int,
                    past=None) -> torch.Tensor:
    """Activations at ``layer`` for a batch (block ``layer``'s output, or a :class:`HookPoint`), running nothing
    after it. Shape (batch, seq, width).

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
