"""The reader, resolved once: model path and identity, layer and hook, SAE location and hash, dtype.

:func:`resolve_reader` turns a :class:`~saerl_hf.featurize_config.FeaturizeConfig` into a small frozen, picklable
:class:`Reader` in the parent process: the model path is resolved once, its config read once (revision, default
layer, hidden size), the SAE spec resolved once (the default ``train-sae`` dir when ``sae`` is unset) and the SAE
loaded once on the CPU (its width checked against the model). No model weights are loaded and CUDA is not
initialised (``datasets`` forks map workers afterwards; see :mod:`saerl_hf.devices`). The featurizer, its cache
fingerprint and its provenance read the Reader's fields instead of resolving again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from saerl_hf import devices
from saerl_hf.featurize_config import FeaturizeConfig, FeaturizeError
from saerl_hf.models import (
    EMBEDDED_MODELS,
    ModelNotFoundError,
    default_layer,
    model_identity,
    resolve_model_path,
)
from saerl_hf.sae_load import SAEHandle, SAELoadError, load_sae

_SAE_HANDLES: dict[tuple, SAEHandle] = {}  # per process: loaded SAEs by (spec, sae_id)


def sae_handle(spec: str, sae_id: str | None) -> SAEHandle:
    """The SAE at ``spec`` loaded on the CPU, once per process."""
    key = (spec, sae_id)
    if key not in _SAE_HANDLES:
        _SAE_HANDLES[key] = load_sae(spec, sae_id=sae_id, device="cpu")
    return _SAE_HANDLES[key]


@dataclass(frozen=True)
class Reader:
    """The resolved reader: plain data (the SAE's weights stay in the per-process cache, see :meth:`sae_handle`)."""

    model: str  # as given (provenance ``model_path``)
    path: str  # resolve_model_path(model)
    identity: str  # model_identity(model)
    revision: str | None  # the config's commit hash (Hub snapshots), else None
    layer: int
    hook: str
    sae: str  # the resolved SAE spec: dir, Hub repo or release:sae_id
    sae_id: str | None
    sae_source: str
    sae_hash: str
    d_sae: int
    d_in: int
    dtype: str  # resolved (never ``auto``)
    trust_remote_code: bool = False
    model_files: tuple = ()  # (name, size, mtime_ns) of a local model's weight files

    def sae_handle(self) -> SAEHandle:
        return sae_handle(self.sae, self.sae_id)


def _model_files(path: str) -> tuple:
    folder = Path(path)
    if not folder.is_dir():
        return ()
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.safetensors")))


def _layer(requested: int | None, handle: SAEHandle, model_config) -> int:
    """The requested layer, else the SAE's own hook layer, else the model's middle layer."""
    if requested is not None:
        if handle.layer is not None and handle.layer != requested:
            raise FeaturizeError(
                f"layer {requested} was requested but SAE {handle.source} was trained on block {handle.layer} "
                f"(hook {handle.hook}). Fix: drop --layer or pass --layer {handle.layer}."
            )
        return requested
    return handle.layer if handle.layer is not None else default_layer(model_config)


def _check_width(handle: SAEHandle, model: str, model_config):
    hidden = int((getattr(model_config, "text_config", None) or model_config).hidden_size)
    if hidden != handle.d_in:
        raise SAELoadError(
            f"SAE {handle.source} reads vectors of width d_in={handle.d_in}, but model '{model}' has hidden size "
            f"{hidden}. Fix: use an SAE trained on this model (`saerl-hf train-sae --model {model}`) or pass the "
            f"reader model it was trained on."
        )


def resolve_reader(config: FeaturizeConfig) -> Reader:
    """Resolve the reader of ``config`` once (no model weights, no CUDA): see the module docstring."""
    from transformers import AutoConfig

    try:
        dtype = devices.resolve_dtype(config.dtype, config.device)
    except ValueError as err:
        raise FeaturizeError(str(err)) from None
    path = resolve_model_path(config.model)
    try:
        model_config = AutoConfig.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as err:  # a missing or malformed config.json
        raise ModelNotFoundError(
            f"Could not read the model config of '{config.model}': {str(err)[:300]}. Fix: pass a local model dir "
            f"with a valid config.json, an alias ({', '.join(EMBEDDED_MODELS)}), or a Hub id while online.") from err
    spec = config.sae_spec(model_config)
    handle = sae_handle(spec, config.sae_id)
    _check_width(handle, config.model, model_config)
    layer = _layer(config.layer, handle, model_config)
    hook = handle.hook if handle.layer == layer and handle.hook else f"model.layers.{layer}"
    return Reader(model=config.model, path=path, identity=model_identity(config.model),
                  revision=getattr(model_config, "_commit_hash", None), layer=layer, hook=hook, sae=spec,
                  sae_id=config.sae_id, sae_source=handle.source, sae_hash=handle.sha256, d_sae=handle.d_sae,
                  d_in=handle.d_in, dtype=dtype, trust_remote_code=config.trust_remote_code,
                  model_files=_model_files(path))


__all__ = ["Reader", "resolve_reader", "sae_handle"]
