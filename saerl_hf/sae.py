"""Train (sae-lens) and load sparse autoencoders on a reader LM's residual stream.

Training streams activations from the model with an early exit at the SAE's layer (no activation files),
shuffles them in an in-memory mixing buffer and feeds sae-lens' ``SAETrainer`` step by step. The result is
saved in sae-lens' own format (``save_inference_model`` -> ``SAE.load_from_disk``) with a card rendered from
the ``sae_card.md`` template (:mod:`saerl_hf.cards`) and a ``saerl_training.json`` with the metrics.

``load_sae`` takes a local dir, a Hub repo id (``snapshot_download``) or a sae-lens registry entry
(``release:sae_id``); the reader model need not be the policy model, only its hidden size must match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from saerl_hf.activations import ActivationError, hook_name, layer_from_hook, residual_stream, right_pad
from saerl_hf.models import ModelNotFoundError, cache_dir, file_sha256, model_identity, resolve_model_path

logger = logging.getLogger(__name__)

SAE_WEIGHTS = "sae_weights.safetensors"
SAE_CFG = "cfg.json"
TRAINING_FILE = "saerl_training.json"
ARCHITECTURES = ("topk", "standard", "jumprelu")
DEFAULT_SOURCES = "gsm8k:train,math:train,mawps,svamp,asdiv"


class SAELoadError(ValueError):
    """An SAE spec that cannot be resolved or does not fit the reader model; the message says the fix."""


# ----------------------------------------------------------------------------- config


@dataclass
class TrainSAEConfig:
    """Options of ``saerl-hf train-sae`` (YAML via ``--config``, overridable on the command line)."""

    model: str = field(default="smollm2-135m", metadata={"help": "Reader model: alias, local dir or Hub id."})
    layer: int | None = field(
        default=None, metadata={"help": "Block whose output (residual stream) is read; default: the middle one."}
    )
    architecture: str = field(default="topk", metadata={"help": "SAE type: topk (default), standard (ReLU+L1), jumprelu."})
    d_sae: int = field(default=4096, metadata={"help": "Number of latents (SAE width)."})
    k: int = field(default=32, metadata={"help": "Active latents per token for TopK."})
    l1_coefficient: float = field(default=5.0, metadata={"help": "L1 penalty (standard architecture)."})
    l0_coefficient: float = field(default=1.0, metadata={"help": "L0 penalty (jumprelu architecture)."})
    jumprelu_init_threshold: float = field(default=0.01, metadata={"help": "Initial JumpReLU threshold."})
    training_tokens: int = field(default=1_000_000, metadata={"help": "Token budget (activation vectors seen)."})
    sources: str = field(
        default=DEFAULT_SOURCES,
        metadata={"help": "Comma-separated `name[:split]` of math sets (or files/Hub ids) whose problems and "
                          "solutions are the training text."},
    )
    text_format: str = field(
        default="chat",
        metadata={"help": "`chat`: problem rendered as the policy sees it, followed by the solution; `plain`: raw "
                          "problem + solution text."},
    )
    context_size: int = field(default=256, metadata={"help": "Max tokens per text (longer texts are cut)."})
    model_batch_size: int = field(default=16, metadata={"help": "Texts per model forward."})
    train_batch_size: int = field(default=1024, metadata={"help": "Activation vectors per SAE step."})
    buffer_tokens: int = field(default=65536, metadata={"help": "Mixing buffer (tokens) that decorrelates batches."})
    lr: float = field(default=5e-4, metadata={"help": "Adam learning rate."})
    lr_warm_up_steps: int = field(default=50, metadata={"help": "Linear warm-up steps."})
    lr_decay_fraction: float = field(default=0.2, metadata={"help": "Final fraction of steps with linear decay."})
    dead_feature_window: int = field(default=200, metadata={"help": "Steps without firing before a latent is dead."})
    normalize_activations: str = field(
        default="expected_average_only_in",
        metadata={"help": "sae-lens input normalisation (folded into the weights at the end)."},
    )
    eval_tokens: int = field(default=16384, metadata={"help": "Held-out tokens for the final EV / L0 / dead report."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where to save; default: `<cache>/saes/<model>-L<layer>-<arch>-w<d_sae>[-k<k>]`."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing SAE at output_dir."})
    max_texts: int | None = field(default=None, metadata={"help": "Use at most this many texts (debugging)."})
    seed: int = field(default=0, metadata={"help": "Seed for text order, buffer shuffling and init."})
    device: str = field(default="cpu", metadata={"help": "Device for model and SAE (cpu, cuda, cuda:1)."})
    dtype: str = field(default="float32", metadata={"help": "Reader model dtype."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code (off by default)."})

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got '{self.architecture}'.")
        if self.text_format not in ("chat", "plain"):
            raise ValueError(f"text_format must be 'chat' or 'plain', got '{self.text_format}'.")
        if self.architecture == "topk" and not 0 < self.k <= self.d_sae:
            raise ValueError(f"k must be in 1..d_sae ({self.d_sae}), got {self.k}.")


def model_alias(name_or_path: str) -> str:
    """A filesystem-safe short name for a model (alias, last path part, or Hub id with '/' -> '--')."""
    path = Path(name_or_path)
    if path.exists():
        return path.name or "model"
    return name_or_path.replace("/", "--")


def default_sae_dir(model: str = "smollm2-135m", layer: int = 15, d_sae: int = 4096, k: int | None = 32,
                    architecture: str = "topk") -> Path:
    """Where ``train-sae`` saves (and the curate pipeline looks for) the SAE of a model/layer/width/k."""
    name = f"{model_alias(model)}-L{layer}-{architecture}-w{d_sae}"
    if architecture == "topk" and k is not None:
        name += f"-k{k}"
    return cache_dir() / "saes" / name


# ----------------------------------------------------------------------------- training data


def _parse_sources(sources: str) -> list[tuple[str, str | None]]:
    out = []
    for item in (s.strip() for s in sources.split(",")):
        if not item:
            continue
        name, _, split = item.partition(":")
        out.append((name, split or None))
    if not out:
        raise ValueError("`sources` is empty. Fix: give e.g. 'gsm8k:train,math:train'.")
    return out


def training_texts(config: TrainSAEConfig, tokenizer) -> list[str]:
    """Problems (+ solutions) of the configured math sets, as the SAE should see them; shuffled by seed."""
    from saerl_hf.data import load_math_dataset
    from saerl_hf.prompts import render_prompt

    texts: list[str] = []
    for name, split in _parse_sources(config.sources):
        ds = load_math_dataset(name, split=split)
        for row in ds:
            problem = (row.get("problem") or "").strip()
            if not problem:
                continue
            solution = (row.get("solution") or "").strip()
            if config.text_format == "chat":
                text = render_prompt(tokenizer, problem, row.get("source"))
            else:
                text = problem + "\n"
            texts.append(text + solution)
    random.Random(config.seed).shuffle(texts)
    if config.max_texts is not None:
        texts = texts[: config.max_texts]
    if not texts:
        raise ValueError(f"No training text found in sources '{config.sources}'.")
    return texts


def _encode_texts(tokenizer, texts: list[str], context_size: int, chat: bool) -> list[list[int]]:
    # Chat-formatted text already carries its special tokens; plain text gets the tokenizer's own (BOS).
    enc = tokenizer(texts, add_special_tokens=not chat, truncation=True, max_length=context_size)
    return [ids for ids in enc["input_ids"] if len(ids) > 1]


def stream_activations(model, tokenizer, texts: list[str], layer: int, context_size: int = 256,
                       model_batch_size: int = 16, chat: bool = True, device: str = "cpu",
                       cycle: bool = True) -> Iterator[torch.Tensor]:
    """Yield (n_tokens, d_model) activation blocks, one per model batch, forever if ``cycle``.

    Position 0 is left out: its residual norm is ~100x the others (attention sink) and would dominate the
    SAE's reconstruction loss. Texts are length-sorted in chunks so little compute goes to padding.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    while True:
        for start in range(0, len(texts), model_batch_size * 16):
            chunk = _encode_texts(tokenizer, texts[start : start + model_batch_size * 16], context_size, chat)
            chunk.sort(key=len)
            for b in range(0, len(chunk), model_batch_size):
                seqs = chunk[b : b + model_batch_size]
                ids, mask = right_pad(seqs, pad_id, device)
                acts = residual_stream(model, ids, mask, layer)
                keep = mask.bool().clone()
                keep[:, 0] = False
                block = acts[keep].float()
                if not torch.isfinite(block).all():
                    raise ActivationError(f"NaN/inf activations at layer {layer} in a training batch.")
                yield block
        if not cycle:
            return


class MixingBuffer:
    """Shuffles streamed activations across texts and yields fixed-size training batches."""

    def __init__(self, blocks: Iterator[torch.Tensor], batch_size: int, buffer_tokens: int, seed: int = 0):
        self.blocks, self.batch_size = blocks, batch_size
        self.buffer_tokens = max(buffer_tokens, 2 * batch_size)
        self.generator = torch.Generator().manual_seed(seed)
        self.store: torch.Tensor | None = None

    def _refill(self):
        parts = [] if self.store is None else [self.store]
        have = 0 if self.store is None else len(self.store)
        while have < self.buffer_tokens:
            block = next(self.blocks)
            parts.append(block)
            have += len(block)
        store = torch.cat(parts)
        self.store = store[torch.randperm(len(store), generator=self.generator)]

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        # Refill at half capacity so each batch mixes old and new texts.
        if self.store is None or len(self.store) < self.buffer_tokens // 2:
            self._refill()
        batch, self.store = self.store[: self.batch_size], self.store[self.batch_size :]
        return batch


# ----------------------------------------------------------------------------- training


def _training_sae(config: TrainSAEConfig, d_in: int, device: str):
    from sae_lens import (
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )

    common = dict(d_in=d_in, d_sae=config.d_sae, device=device, normalize_activations=config.normalize_activations)
    if config.architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=config.k, **common))
    if config.architecture == "standard":
        return StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=config.l1_coefficient, **common))
    return JumpReLUTrainingSAE(
        JumpReLUTrainingSAEConfig(
            l0_coefficient=config.l0_coefficient, jumprelu_init_threshold=config.jumprelu_init_threshold, **common
        )
    )


@torch.no_grad()
def evaluate_sae(sae, activations: torch.Tensor, batch_size: int = 4096) -> dict:
    """Explained variance, mean L0 and dead fraction (latents that never fire) on held-out activations."""
    sae.eval()
    sq_err, total_var, l0_sum, fired = 0.0, 0.0, 0.0, torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    mean = activations.mean(0, keepdim=True)
    for start in range(0, len(activations), batch_size):
        x = activations[start : start + batch_size].to(sae.device)
        codes = sae.encode(x)
        recon = sae.decode(codes)
        sq_err += float(((x - recon) ** 2).sum())
        total_var += float(((x - mean.to(x.device)) ** 2).sum())
        active = codes != 0
        l0_sum += float(active.sum())
        fired |= active.any(0).cpu()
    return {
        "explained_variance": 1.0 - sq_err / max(total_var, 1e-12),
        "l0": l0_sum / max(len(activations), 1),
        "dead_fraction": float((~fired).float().mean()),
        "eval_tokens": int(len(activations)),
    }


@dataclass
class TrainResult:
    """What ``train_sae`` produced: the saved dir, held-out metrics, and the trained (training-class) SAE."""

    output_dir: Path
    metrics: dict
    sae: object = None


def train_sae(config: TrainSAEConfig) -> TrainResult:
    """Train an SAE as configured and save it (sae-lens format + card + metrics)."""
    from sae_lens import SAETrainer
    from sae_lens.config import SAETrainerConfig
    from tqdm.auto import tqdm

    from saerl_hf.models import default_layer, load_model, load_tokenizer

    started = time.time()
    torch.manual_seed(config.seed)
    model = load_model(config.model, dtype=config.dtype, device=config.device,
                       trust_remote_code=config.trust_remote_code)
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    layer = default_layer(model) if config.layer is None else config.layer
    out_dir = Path(config.output_dir) if config.output_dir else default_sae_dir(
        config.model, layer, config.d_sae, config.k, config.architecture)
    if (out_dir / SAE_WEIGHTS).is_file() and not config.overwrite:
        raise FileExistsError(f"An SAE already exists at {out_dir}. Fix: pass --overwrite true or another --output_dir.")
    d_in = int(model.config.hidden_size)
    chat = config.text_format == "chat"
    texts = training_texts(config, tokenizer)
    n_eval_texts = max(1, min(len(texts) // 10, max(1, config.eval_tokens // 64)))
    eval_texts, train_texts = texts[:n_eval_texts], texts[n_eval_texts:] or texts
    logger.info("train-sae: %d training texts, %d held out; layer %d (%s), d_in %d", len(train_texts),
                len(eval_texts), layer, hook_name(model, layer), d_in)

    blocks = stream_activations(model, tokenizer, train_texts, layer, config.context_size, config.model_batch_size,
                                chat=chat, device=config.device)
    provider = MixingBuffer(blocks, config.train_batch_size, config.buffer_tokens, seed=config.seed)
    total_steps = max(1, config.training_tokens // config.train_batch_size)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total_steps * config.train_batch_size,
        train_batch_size_samples=config.train_batch_size,
        lr=config.lr,
        lr_end=config.lr / 10,
        lr_warm_up_steps=min(config.lr_warm_up_steps, total_steps // 10),
        lr_decay_steps=int(total_steps * config.lr_decay_fraction),
        device=config.device,
        dead_feature_window=config.dead_feature_window,
        feature_sampling_window=max(config.dead_feature_window, 100),
        n_batches_for_norm_estimate=8,
    )
    sae = _training_sae(config, d_in, config.device)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=provider)

    # The loop of SAETrainer.fit(), through its public seams, so progress can show EV/L0 as it trains.
    if config.normalize_activations == "expected_average_only_in":
        trainer.activation_scaler.estimate_scaling_factor(
            d_in=d_in, data_provider=provider, n_batches_for_norm_estimate=trainer_cfg.n_batches_for_norm_estimate)
    pbar = tqdm(total=trainer_cfg.total_training_samples, desc="train-sae", unit="tok", file=sys.stderr,
                mininterval=5.0)
    ev_running = None
    while trainer.n_training_samples < trainer_cfg.total_training_samples:
        trainer.maybe_reset_sparsity()
        out = trainer.step(next(provider))
        trainer.n_training_steps += 1
        with torch.no_grad():
            err = ((out.sae_in - out.sae_out) ** 2).sum()
            var = ((out.sae_in - out.sae_in.mean(0)) ** 2).sum()
            ev = float(1 - err / var.clamp_min(1e-12))
            ev_running = ev if ev_running is None else 0.95 * ev_running + 0.05 * ev
            l0 = float((out.feature_acts != 0).float().sum(-1).mean())
        pbar.update(config.train_batch_size)
        pbar.set_postfix(ev=f"{ev_running:.3f}", l0=f"{l0:.1f}", loss=f"{float(out.loss.detach()):.4g}", refresh=False)
        if trainer.n_training_steps % 50 == 0:
            logger.info("step %d/%d tokens %d ev %.4f l0 %.1f dead(window) %d", trainer.n_training_steps, total_steps,
                        trainer.n_training_samples, ev_running, l0, int(trainer.dead_neurons.sum()))
    pbar.close()
    if trainer.activation_scaler.scaling_factor is not None:
        trainer.sae.fold_activation_norm_scaling_factor(trainer.activation_scaler.scaling_factor)
        trainer.activation_scaler.scaling_factor = None
    trainer.set_final_sae_metadata()

    eval_acts = torch.cat(list(stream_activations(model, tokenizer, eval_texts, layer, config.context_size,
                                                  config.model_batch_size, chat=chat, device=config.device,
                                                  cycle=False)))[: config.eval_tokens]
    metrics = evaluate_sae(trainer.sae, eval_acts)
    metrics.update(train_tokens=int(trainer.n_training_samples), train_steps=int(trainer.n_training_steps),
                   train_seconds=round(time.time() - started, 1))
    _save(trainer.sae, out_dir, config, model, layer, metrics, overwrite=config.overwrite)
    logger.info("train-sae: saved %s; EV %.4f, L0 %.1f, dead %.3f, %.0f s", out_dir, metrics["explained_variance"],
                metrics["l0"], metrics["dead_fraction"], metrics["train_seconds"])
    return TrainResult(out_dir, metrics, trainer.sae)


def _save(sae, out_dir: Path, config: TrainSAEConfig, model, layer: int, metrics: dict, overwrite: bool):
    """Write sae-lens files + card + metrics to a temp dir, then move it in place (no half-written SAE)."""
    meta = sae.cfg.metadata
    meta.model_name = model_identity(config.model)
    meta.hook_name = hook_name(model, layer)
    meta.context_size = config.context_size
    meta.prepend_bos = False
    meta.saerl_model = config.model
    meta.saerl_layer = layer
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    sae.save_inference_model(tmp)
    info = {
        "config": asdict(config),
        "metrics": metrics,
        "model": config.model,
        "model_identity": model_identity(config.model),
        "layer": layer,
        "hook": hook_name(model, layer),
        "d_in": int(sae.cfg.d_in),
        "d_sae": int(sae.cfg.d_sae),
        "sae_hash": file_sha256(tmp / SAE_WEIGHTS),
    }
    (tmp / TRAINING_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))
    render_sae_card(info).save(tmp / "README.md")
    if out_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists. Fix: pass --overwrite true or another --output_dir.")
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out_dir)


def render_sae_card(info: dict):
    """The SAE's model card from the ``sae_card.md`` template (huggingface_hub Jinja template)."""
    from huggingface_hub import ModelCard, ModelCardData

    from saerl_hf.cards import card_template

    cfg, metrics = info["config"], info["metrics"]
    identity = info["model_identity"]
    base_model = identity.split(" ")[0] if "/" in identity and not Path(info["model"]).exists() else None
    card_data = ModelCardData(library_name="saelens", tags=["sae-lens", "sparse-autoencoder", "saerl"],
                              base_model=base_model, license="apache-2.0")
    return ModelCard.from_template(
        card_data,
        template_path=str(card_template("sae_card.md")),
        model_identity=identity,
        layer=info["layer"],
        hook=info["hook"],
        d_in=info["d_in"],
        d_sae=info["d_sae"],
        architecture=cfg["architecture"],
        k=cfg["k"] if cfg["architecture"] == "topk" else None,
        sources=cfg["sources"],
        text_format=cfg["text_format"],
        train_tokens=metrics["train_tokens"],
        explained_variance=f"{metrics['explained_variance']:.4f}",
        l0=f"{metrics['l0']:.1f}",
        dead_fraction=f"{metrics['dead_fraction']:.4f}",
        eval_tokens=metrics["eval_tokens"],
        train_seconds=metrics["train_seconds"],
        sae_hash=info["sae_hash"],
    )


# ----------------------------------------------------------------------------- loading


@dataclass
class SAEHandle:
    """A loaded SAE plus what provenance needs: where it came from, its content hash, its hook/layer."""

    sae: object
    source: str
    sha256: str
    hook: str | None
    layer: int | None
    path: str | None = None

    @property
    def d_in(self) -> int:
        return int(self.sae.cfg.d_in)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)


def _model_hidden_size(model_name: str, trust_remote_code: bool = False) -> int:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model_name), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if isinstance(err, ModelNotFoundError):
            raise
        raise ModelNotFoundError(f"Could not read the config of model '{model_name}': {err} Fix: pass a directory "
                                 f"written by `save_pretrained` (valid config.json), an alias, or a Hub id.") from None
    config = getattr(config, "text_config", None) or config
    return int(config.hidden_size)


def _check_width(d_in: int, model_name: str | None, where: str):
    if model_name is None:
        return
    hidden = _model_hidden_size(model_name)
    if hidden != d_in:
        raise SAELoadError(
            f"SAE {where} reads vectors of width d_in={d_in}, but model '{model_name}' has hidden size {hidden}. "
            f"Fix: use an SAE trained on this model (`saerl-hf train-sae --model {model_name}`) or pass the "
            f"reader model it was trained on."
        )


def _state_dict_sha256(sae) -> str:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in sorted(sae.state_dict().items())}
    return hashlib.sha256(save(state)).hexdigest()


def _load_dir(path: Path, model_name: str | None, device: str) -> SAEHandle:
    from sae_lens import SAE

    if not (path / SAE_CFG).is_file() or not (path / SAE_WEIGHTS).is_file():
        raise SAELoadError(
            f"{path} is not a sae-lens SAE directory (needs {SAE_CFG} and {SAE_WEIGHTS}). "
            f"Fix: pass a dir written by `saerl-hf train-sae` / `save_inference_model`."
        )
    fix = (f"Fix: re-download or re-train the SAE (`saerl-hf train-sae --output_dir {path} --overwrite true`); "
           f"a copy that was cut off or edited by hand cannot be used.")
    try:
        cfg = json.loads((path / SAE_CFG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SAELoadError(f"{path / SAE_CFG} is not valid JSON ({err}). {fix}") from None
    try:
        d_in = int(cfg["d_in"])
    except (KeyError, TypeError, ValueError):
        raise SAELoadError(f"{path / SAE_CFG} has no integer 'd_in' (the width of the vectors the SAE reads). "
                           f"{fix}") from None
    _check_width(d_in, model_name, str(path))  # before the weights are read
    try:
        sae = SAE.load_from_disk(path, device=device)
    except Exception as err:  # noqa: BLE001 - a truncated/corrupt safetensors file or a cfg/weights mismatch
        raise SAELoadError(f"Could not read the SAE in {path} ({SAE_WEIGHTS} or {SAE_CFG} is corrupt or truncated: "
                           f"{type(err).__name__}: {str(err)[:300]}). {fix}") from None
    hook = (cfg.get("metadata") or {}).get("hook_name")
    return SAEHandle(sae=sae, source=str(path), sha256=file_sha256(path / SAE_WEIGHTS), hook=hook,
                     layer=layer_from_hook(hook), path=str(path))


def load_sae(spec: str | Path, model_name: str | None = None, sae_id: str | None = None,
             device: str = "cpu") -> SAEHandle:
    """Load an SAE from a local dir, a Hub repo id, or the sae-lens registry.

    ``spec``: a directory; ``org/repo`` (downloaded with ``snapshot_download``; ``org/repo:subdir`` for an SAE
    in a subfolder); or a registry ``release`` with ``sae_id`` (or ``"release:sae_id"``). With
    ``model_name``, an SAE whose width differs from the model's hidden size fails before any model work.
    """
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_dir(path, model_name, device)
    if path.is_file():
        raise SAELoadError(f"SAE '{spec}' is a file; an SAE is a directory with {SAE_CFG} and {SAE_WEIGHTS}. "
                           f"Fix: pass the directory that holds it ({path.parent}).")
    if spec.startswith((".", "/", "~")):
        raise SAELoadError(f"SAE directory '{spec}' does not exist. Fix: check the path, or train one with "
                           f"`saerl-hf train-sae`.")
    release, _, inline_id = spec.partition(":")
    sae_id = sae_id or inline_id or None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release in directory:
        if sae_id is None:
            raise SAELoadError(f"sae-lens release '{release}' needs an sae_id. Fix: pass 'release:sae_id'; "
                               f"known ids: {', '.join(list(directory[release].saes_map)[:10])} ...")
        return _load_registry(release, sae_id, model_name, device)
    if "/" in release:
        return _load_hub(release, sae_id, model_name, device)
    raise SAELoadError(
        f"Cannot resolve SAE '{spec}': not a local directory, not a Hub repo id ('org/name'), and not a sae-lens "
        f"registry release. Fix: pass a dir from `saerl-hf train-sae`, a Hub repo, or 'release:sae_id'."
    )


def _load_hub(repo_id: str, subfolder: str | None, model_name: str | None, device: str) -> SAEHandle:
    from huggingface_hub import HfApi, snapshot_download

    from saerl_hf.hub import is_unsafe_repo_path

    if subfolder and is_unsafe_repo_path(subfolder.strip("/")):
        raise SAELoadError(f"SAE subfolder '{subfolder}' of '{repo_id}' is not a plain relative path inside the repo "
                           f"(absolute, '..' or backslashes). Fix: pass 'org/repo:<folder in the repo>'.")
    patterns = [f"{subfolder}/*"] if subfolder else None
    fix = "Fix: check the id, HF_ENDPOINT / HF_TOKEN, or pass a local directory."
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:  # offline, snapshot_download reads the (already checked) cache only
        try:
            bad = [name for name in HfApi().list_repo_files(repo_id) if is_unsafe_repo_path(name)]
        except Exception as err:  # network, auth, missing repo: all end here with the fix
            raise SAELoadError(f"Could not list SAE repo '{repo_id}' on the Hub: {err}. {fix}") from err
        if bad:
            raise SAELoadError(f"SAE repo '{repo_id}' lists the file {bad[0]!r}, a path that could be written outside "
                               f"the download folder; nothing was downloaded. Fix: use another repo, or remove that "
                               f"file from it.")
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as err:  # network, auth, missing repo: all end here with the fix
        raise SAELoadError(f"Could not download SAE repo '{repo_id}' from the Hub: {err}. {fix}") from err
    handle = _load_dir(local / subfolder if subfolder else local, model_name, device)
    handle.source = f"{repo_id}:{subfolder}" if subfolder else repo_id
    return handle


def _load_registry(release: str, sae_id: str, model_name: str | None, device: str) -> SAEHandle:
    from sae_lens import SAE

    try:
        sae = SAE.from_pretrained(release, sae_id, device=device)
    except Exception as err:
        raise SAELoadError(f"Could not load sae-lens registry SAE '{release}:{sae_id}': {err}") from err
    _check_width(int(sae.cfg.d_in), model_name, f"'{release}:{sae_id}'")
    hook = sae.cfg.metadata.hook_name
    return SAEHandle(sae=sae, source=f"{release}:{sae_id}", sha256=_state_dict_sha256(sae), hook=hook,
                     layer=layer_from_hook(hook))


# ----------------------------------------------------------------------------- CLI


def cli_main(argv: list[str]) -> int:
    """``saerl-hf train-sae``: parse TrainSAEConfig (YAML + flags), train, print the metrics as JSON."""
    from trl import TrlParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from saerl_hf.configs import parse_config

    (config,) = parse_config(TrlParser((TrainSAEConfig,), prog="saerl-hf train-sae"), argv)
    result = train_sae(config)
    print(json.dumps({"output_dir": str(result.output_dir), **result.metrics}, indent=2))
    ok = math.isfinite(result.metrics["explained_variance"])
    return 0 if ok else 1
