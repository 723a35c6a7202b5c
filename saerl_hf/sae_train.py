"""Train an SAE with sae-lens on a reader LM's residual stream and save it with its card and metrics.

Activations stream from :mod:`saerl_hf.sae_data` into sae-lens' ``SAETrainer``, step by step. The result is
saved in sae-lens' own format (``save_inference_model`` -> ``SAE.load_from_disk``) with a card rendered from
the ``sae_card.md`` template (:mod:`saerl_hf.cards`) and a ``sae_training.json`` with the metrics.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from saerl_hf.activations import hook_name
from saerl_hf.models import file_sha256, model_identity
from saerl_hf.sae_data import MixingBuffer, stream_activations, training_texts
from saerl_hf.sae_load import SAE_WEIGHTS, TRAINING_FILE, default_sae_dir

logger = logging.getLogger(__name__)

ARCHITECTURES = ("topk", "standard", "jumprelu")
DEFAULT_SOURCES = "gsm8k:train,math:train,mawps,svamp,asdiv"
#: Held-out metrics outside these bounds get a warning at the end of train-sae (the SAE is saved all the same).
MIN_EXPLAINED_VARIANCE = 0.7
MAX_DEAD_FRACTION = 0.25


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


def _trainer_config(config: TrainSAEConfig):
    """sae-lens' ``SAETrainerConfig`` for this run: token budget, LR schedule, dead-latent window."""
    from sae_lens.config import SAETrainerConfig

    total_steps = max(1, config.training_tokens // config.train_batch_size)
    return SAETrainerConfig(
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


def _fit(config: TrainSAEConfig, provider: MixingBuffer, d_in: int):
    """Run sae-lens' ``SAETrainer`` over the buffer's batches; return the trainer with the final SAE."""
    from sae_lens import SAETrainer
    from tqdm.auto import tqdm

    trainer_cfg = _trainer_config(config)
    total_steps = trainer_cfg.total_training_samples // config.train_batch_size
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
    return trainer


def train_sae(config: TrainSAEConfig) -> TrainResult:
    """Train an SAE as configured and save it (sae-lens format + card + metrics)."""
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
    trainer = _fit(config, provider, d_in)

    eval_acts = torch.cat(list(stream_activations(model, tokenizer, eval_texts, layer, config.context_size,
                                                  config.model_batch_size, chat=chat, device=config.device,
                                                  cycle=False)))[: config.eval_tokens]
    metrics = evaluate_sae(trainer.sae, eval_acts)
    metrics.update(train_tokens=int(trainer.n_training_samples), train_steps=int(trainer.n_training_steps),
                   train_seconds=round(time.time() - started, 1))
    _save(trainer.sae, out_dir, config, model, layer, metrics, overwrite=config.overwrite)
    logger.info("train-sae: saved %s; EV %.4f, L0 %.1f, dead %.3f, %.0f s", out_dir, metrics["explained_variance"],
                metrics["l0"], metrics["dead_fraction"], metrics["train_seconds"])
    for message in metric_warnings(metrics):
        logger.warning("train-sae: %s", message)
    return TrainResult(out_dir, metrics, trainer.sae)


def metric_warnings(metrics: dict) -> list[str]:
    """What is out of range in an SAE's held-out metrics, each with its fix; empty when nothing is."""
    out = []
    ev, dead = metrics["explained_variance"], metrics["dead_fraction"]
    if not ev >= MIN_EXPLAINED_VARIANCE:  # NaN too
        out.append(f"explained variance {ev:.3f} on held-out tokens is below {MIN_EXPLAINED_VARIANCE}: the SAE "
                   f"reconstructs the activations poorly. Fix: train on more tokens (--training_tokens) or raise "
                   f"--k / --d_sae.")
    if dead > MAX_DEAD_FRACTION:
        out.append(f"{dead:.1%} of the latents never fired on held-out tokens (more than {MAX_DEAD_FRACTION:.0%}). "
                   f"Fix: train on more tokens (--training_tokens) or lower --d_sae.")
    return out


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
    """The SAE's model card from the ``sae_card.md`` template (a huggingface_hub ModelCard)."""
    from huggingface_hub import ModelCard, ModelCardData

    from saerl_hf.cards import render_card_template

    cfg, metrics = info["config"], info["metrics"]
    identity = info["model_identity"]
    base_model = identity.split(" ")[0] if "/" in identity and not Path(info["model"]).exists() else None
    card_data = ModelCardData(library_name="saelens", tags=["sae-lens", "sparse-autoencoder", "saerl"],
                              base_model=base_model, license="apache-2.0")
    return render_card_template(
        ModelCard,
        "sae_card.md",
        card_data,
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
