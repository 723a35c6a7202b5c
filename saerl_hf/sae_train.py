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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from saerl_hf.activation_cache import ActivationCache, reader_key
from saerl_hf.activations import hook_name
from saerl_hf.models import file_sha256, model_identity, resolve_model_path
from saerl_hf.sae_data import MixingBuffer, stream_activations, training_texts
from saerl_hf.sae_fit import TrainingCheckpoint, fit
from saerl_hf.sae_load import SAE_WEIGHTS, TRAINING_FILE, default_sae_dir

logger = logging.getLogger(__name__)

ARCHITECTURES = ("topk", "standard", "jumprelu")
DEFAULT_SOURCES = "gsm8k:train,math:train,mawps,svamp,asdiv"
#: Docstring prose for the general text: the standard library's prose-heavy packages and declared dependencies
#: (torch brings sympy and networkx, datasets brings pandas); none of them a held-out real-text package.
GENERAL_TEXT_PACKAGES = "email,logging,http,torch,transformers,sympy,networkx,pandas"
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
    general_text_fraction: float = field(
        default=0.0,
        metadata={"help": "Fraction of the training texts that is general English prose instead of math: first "
                          "docstring paragraphs of --general_text_packages (read offline, never imported), "
                          "rendered like the problems (chat: as the policy's prompt), without a solution."},
    )
    general_text_packages: str = field(
        default=GENERAL_TEXT_PACKAGES,
        metadata={"help": "Comma-separated installed packages whose docstrings are the general text; never the "
                          "quality probe's held-out ones (numpy, scipy, sklearn, datasets)."},
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
    dead_feature_window: int = field(
        default=200,
        metadata={"help": "Steps without firing after which a latent counts as dead: TopK's auxiliary loss then "
                          "trains it to reconstruct what the live latents miss."},
    )
    aux_loss_coefficient: float = field(
        default=1.0,
        metadata={"help": "TopK only: weight of sae-lens' auxiliary (aux-k) loss that revives dead latents by "
                          "training the top dead ones on the live latents' residual; 0 turns it off."},
    )
    normalize_activations: str = field(
        default="expected_average_only_in",
        metadata={"help": "sae-lens input normalisation (folded into the weights at the end)."},
    )
    eval_tokens: int = field(default=16384, metadata={"help": "Held-out tokens for the final EV / L0 / dead report."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where to save; default: `<cache>/saes/<model>-L<layer>-<arch>-w<d_sae>[-k<k>]`."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace an existing SAE at output_dir and start over instead of resuming a checkpoint."},
    )
    checkpoint_every: int = field(
        default=200,
        metadata={"help": "Steps between checkpoints in `<output_dir>.ckpt/` (latest kept, removed at the end); a "
                          "killed run started again with the same settings resumes from it. 0: no checkpoints."},
    )
    activation_cache: str | None = field(default=None, metadata={
        "help": "Directory of reader activations kept on disk and reused by any later run on the same texts with "
                "the same reader (an SAE sweep's points): bfloat16 reader, ~1.2 GB per million tokens. Default: "
                "off (activations are recomputed)."})
    max_texts: int | None = field(default=None, metadata={"help": "Use at most this many texts (debugging)."})
    seed: int = field(default=0, metadata={"help": "Seed for text order, buffer shuffling and init."})
    device: str = field(default="auto", metadata={"help": "Device for model and SAE: auto (cuda when a GPU is "
                                                            "visible, else cpu), cpu, cuda, cuda:1."})
    dtype: str = field(default="auto", metadata={
        "help": "Reader model dtype; auto = bfloat16 where it is native (AVX512-BF16/AMX CPUs, Ampere+ GPUs), else "
                "float32: the rule featurize uses, so the SAE is trained on the activations it will read."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code (off by default)."})

    def __post_init__(self):
        from saerl_hf.devices import default_device, resolve_dtype

        self.device = default_device() if self.device == "auto" else self.device  # what checkpoints record
        self.dtype = resolve_dtype(self.dtype, self.device)  # the resolved name is what checkpoints and cards record
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got '{self.architecture}'.")
        if self.text_format not in ("chat", "plain"):
            raise ValueError(f"text_format must be 'chat' or 'plain', got '{self.text_format}'.")
        if self.architecture == "topk" and not 0 < self.k <= self.d_sae:
            raise ValueError(f"k must be in 1..d_sae ({self.d_sae}), got {self.k}.")
        if not 0.0 <= self.general_text_fraction < 1.0:
            raise ValueError(f"general_text_fraction must be in [0, 1), got {self.general_text_fraction}.")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0 = off), got {self.checkpoint_every}.")
        if (self.architecture == "topk" and self.aux_loss_coefficient
                and self.normalize_activations in ("constant_norm_rescale", "layer_norm")):
            # sae-lens raises mid-training (at the first dead latent): say it before any compute.
            raise ValueError(f"TopK's auxiliary loss does not support normalize_activations="
                             f"'{self.normalize_activations}'. Fix: --aux_loss_coefficient 0 or "
                             f"--normalize_activations expected_average_only_in.")




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


def _device_name(device: str) -> str:
    """What trained the SAE, for its record: the GPU's name (train seconds differ ~100x between the two), else
    the device as given (cpu)."""
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device


@dataclass
class TrainResult:
    """What ``train_sae`` produced: the saved dir, held-out metrics, and the trained (training-class) SAE."""

    output_dir: Path
    metrics: dict
    sae: object = None


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

    checkpoint = TrainingCheckpoint(out_dir, config)
    resume = checkpoint.find(overwrite=config.overwrite)
    cache = ActivationCache(config.activation_cache, reader_key(resolve_model_path(config.model), config.dtype,
                                                                hook_name(model, layer), config.device)) \
        if config.activation_cache else None
    stream = stream_activations(model, tokenizer, train_texts, layer, config.context_size, config.model_batch_size,
                                chat=chat, device=config.device, start=resume.texts_consumed if resume else 0,
                                cache=cache)
    provider = MixingBuffer(stream, config.train_batch_size, config.buffer_tokens, seed=config.seed)
    trainer = fit(config, provider, stream, d_in, checkpoint, resume)

    eval_acts = torch.cat(list(stream_activations(model, tokenizer, eval_texts, layer, config.context_size,
                                                  config.model_batch_size, chat=chat, device=config.device,
                                                  cycle=False, cache=cache)))[: config.eval_tokens]
    if cache is not None:
        logger.info("train-sae: %s", cache.summary())
    metrics = evaluate_sae(trainer.sae, eval_acts)
    metrics.update(train_tokens=int(trainer.n_training_samples), train_steps=int(trainer.n_training_steps),
                   train_seconds=round(time.time() - started, 1),
                   resumed_from_step=resume.n_training_steps if resume else None,
                   device_name=_device_name(config.device))
    if cache is not None:  # blocks read from disk / blocks in all (the reader ran for the rest)
        metrics.update(activation_blocks_cached=cache.hits, activation_blocks=cache.hits + cache.misses)
    _save(trainer.sae, out_dir, config, model, layer, metrics, overwrite=config.overwrite)
    checkpoint.remove()
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
        general_text_fraction=cfg.get("general_text_fraction") or 0.0,
        general_text_packages=cfg.get("general_text_packages"),
        aux_loss_coefficient=cfg.get("aux_loss_coefficient") if cfg["architecture"] == "topk" else None,
        dead_feature_window=cfg.get("dead_feature_window"),
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
