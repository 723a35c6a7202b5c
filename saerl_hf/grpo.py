"""GRPO training with the SAERL curriculum (open-r1 shape: one ``main``, parsed by ``TrlParser``).

    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml -m saerl_hf.grpo \\
        --config recipes/smollm2-135m/grpo/config_saerl.yaml
    python -m saerl_hf.grpo --config ...        saerl-hf train --config ...

Every YAML key is a field of :class:`GRPOScriptArguments`, TRL's ``GRPOConfig`` or ``ModelConfig`` and can
be overridden on the command line (``--max_steps 5``).

Split along its seams: :mod:`saerl_hf.grpo_data` (train set, prompts, held-out rows),
:mod:`saerl_hf.grpo_heldout` (the held-out callback), :mod:`saerl_hf.grpo_card` (model card and push); this
module keeps the arguments and ``main``, and every public name stays importable from here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trl import GRPOConfig, ModelConfig, TrlParser

from saerl_hf.grpo_card import (
    MODEL_CARD_TEMPLATE,
    PUSH_IGNORE_PATTERNS,
    SUMMARY_FILE,
    push_output,
    write_model_card,
)
from saerl_hf.grpo_data import DROP_COLUMNS_PREFIX, load_heldout, load_train_dataset, prepare_prompts
from saerl_hf.grpo_heldout import HeldOutEvalCallback

logger = logging.getLogger("saerl_hf.grpo")

# vanilla / rank / adaptive here, the orders built from the columns in saerl_hf.curriculum (what curate writes)
CURRICULA = ("vanilla", "rank", "saerl", "difficulty", "cluster", "random", "adaptive")


@dataclass
class GRPOScriptArguments:
    """Data, curriculum, rewards and held-out evaluation of a SAERL GRPO run."""

    dataset_name: str = field(
        default="mawps",
        metadata={"help": "Hub dataset id, local dir (save_to_disk or a curated dir), data file, or benchmark "
                  "name(s) known to saerl_hf.data (comma-separated for a mixture)."},
    )
    dataset_revision: str | None = field(default=None, metadata={
        "help": "Revision (branch, tag, sha) of the Hub dataset to read, e.g. the hub_revision curate pushed to; "
                "hub_revision (TRL) is where this run's model is pushed."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split used for training."})
    dataset_limit: int | None = field(default=None, metadata={"help": "Use only the first N rows (smoke runs)."})
    curriculum: str = field(
        default="saerl",
        metadata={"help": "vanilla (TRL's shuffled RepeatSampler) | rank (follow the dataset's curriculum_rank, as "
                  "curate wrote it with its own `curriculum:`) | saerl | difficulty | cluster | random (curate's "
                  "curricula, built here for this run's batch size) | adaptive (target difficulty moves with the "
                  "reward)."},
    )
    curriculum_mixing: float = field(default=0.25, metadata={
        "help": "Share of each batch tail-swapped with its neighbouring batches (saerl and cluster built here)."})
    curriculum_seed: int | None = field(default=None, metadata={"help": "Order seed (default: the training seed)."})
    epoch_order: str = field(default="repeat", metadata={"help": "Later epochs: repeat | band_shuffle."})
    num_bands: int = field(default=4, metadata={"help": "Bands for epoch_order=band_shuffle."})
    adaptive_target: float = field(default=0.0, metadata={"help": "Initial target difficulty quantile."})
    adaptive_eta: float = field(default=0.05, metadata={"help": "Max target step per round (quantile units)."})
    adaptive_alpha: float = field(default=2.0, metadata={"help": "Sensitivity of the step to the reward gap."})
    adaptive_beta: float = field(default=0.5, metadata={"help": "Reward the target aims for."})
    adaptive_reward_key: str = field(default="reward", metadata={"help": "TRL metric driving the target."})
    quality_threshold: float | None = field(default=None, metadata={"help": "Keep rows with quality >= this."})
    quality_keep_fraction: float | None = field(default=None, metadata={"help": "Keep the top fraction by quality."})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["correctness", "format"],
        metadata={"help": "Reward functions by registry name (saerl_hf.rewards.REWARD_FUNCS)."},
    )
    heldout_dataset_name: str | None = field(
        default=None, metadata={"help": "Held-out benchmark (name, dir or Hub id) scored while training; None = off."}
    )
    heldout_split: str = field(default="test", metadata={"help": "Split of the held-out set."})
    heldout_limit: int = field(default=64, metadata={"help": "Held-out items per evaluation."})
    heldout_every_steps: int = field(default=0, metadata={"help": "Held-out accuracy every N steps (0: start + end)."})
    heldout_max_new_tokens: int = field(default=64, metadata={"help": "Greedy tokens per held-out item."})
    heldout_batch_size: int = field(default=16, metadata={"help": "Generation batch size for the held-out set."})
    heldout_on_start: bool = field(default=True, metadata={"help": "Score the held-out set before step 1."})

    def __post_init__(self):
        if self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum must be one of {', '.join(CURRICULA)}; got '{self.curriculum}'. "
                             f"Fix: set `curriculum:` in the recipe (or --curriculum) to one of them.")
        if self.epoch_order not in ("repeat", "band_shuffle"):
            raise ValueError(f"epoch_order must be repeat or band_shuffle; got '{self.epoch_order}'. "
                             f"Fix: set `epoch_order: repeat` (or band_shuffle).")
        if self.quality_threshold is not None and self.quality_keep_fraction is not None:
            raise ValueError("quality_threshold and quality_keep_fraction are both set; they are two ways to filter "
                             "the same column. Fix: keep one of them and set the other to null.")
        if self.quality_keep_fraction is not None and not 0.0 < self.quality_keep_fraction <= 1.0:
            raise ValueError(f"quality_keep_fraction must be in (0, 1], got {self.quality_keep_fraction}. "
                             f"Fix: e.g. 0.8 keeps the best 80%.")
        if not 0.0 <= self.curriculum_mixing <= 1.0:
            raise ValueError(f"curriculum_mixing must be in [0, 1], got {self.curriculum_mixing}. Fix: e.g. 0.25.")
        if self.dataset_limit is not None and self.dataset_limit < 1:
            raise ValueError(f"dataset_limit must be >= 1 (or null for all rows), got {self.dataset_limit}. "
                             f"Fix: drop it or give a positive row count.")


# ----------------------------------------------------------------------------- main


def _check_args(script_args, training_args) -> None:
    import torch

    if script_args.curriculum not in CURRICULA:
        raise ValueError(f"curriculum must be one of {', '.join(CURRICULA)}; got '{script_args.curriculum}'.")
    if not torch.cuda.is_available() and (training_args.bf16 or training_args.fp16):
        raise ValueError("bf16/fp16 is on but there is no GPU. Fix: set `bf16: false` (and use_cpu: true) in the recipe.")


def _sampler_setup(script_args, training_args, ds):
    """(dataset, sampler name, sampler kwargs) for CurriculumGRPOTrainer."""
    from saerl_hf.curriculum import (
        RANK_COLUMN,
        add_curriculum_rank,
        fit_to_geometry,
        prompts_per_batch_of,
        sort_by_curriculum,
        validate_alignment,
    )

    curriculum = script_args.curriculum
    if curriculum == "vanilla":
        return ds, "default", {}
    if curriculum == "adaptive":
        return ds, "adaptive", {"target": script_args.adaptive_target, "eta": script_args.adaptive_eta,
                                "alpha": script_args.adaptive_alpha, "beta": script_args.adaptive_beta}
    b = prompts_per_batch_of(training_args)
    if curriculum != "rank":  # one of curate's curricula, built here for this run's B
        seed = training_args.seed if script_args.curriculum_seed is None else script_args.curriculum_seed
        ds = sort_by_curriculum(add_curriculum_rank(ds, b, curriculum=curriculum,
                                                    curriculum_mixing=script_args.curriculum_mixing, seed=seed))
    elif RANK_COLUMN not in ds.column_names:
        raise ValueError(f"curriculum=rank needs a '{RANK_COLUMN}' column. Fix: train on a curated dataset "
                         f"(saerl-hf curate) or pick curriculum: saerl to order it here.")
    else:  # an order curated for another GPU count / batch geometry is rebuilt for this run's B (logged)
        ds = fit_to_geometry(ds, b)
    report = validate_alignment(ds, b, zero_patch=False)
    if report.aligned and not report.dropped_tail:  # otherwise validate_alignment has already warned
        logger.info("curriculum %s: %s", curriculum, report.message())
    return ds, "curriculum", {"epoch_order": script_args.epoch_order, "num_bands": script_args.num_bands}


def _trust_remote_code(model_args) -> bool:
    """Off unless a ModelConfig that has the field turns it on (TRL 1.16's ModelConfig has none)."""
    return bool(getattr(model_args, "trust_remote_code", False))


def _load_model(model_args, training_args):
    import torch
    from transformers import AutoModelForCausalLM

    from saerl_hf.models import resolve_model_path

    path = resolve_model_path(model_args.model_name_or_path)
    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    kwargs = {"revision": model_args.model_revision, "trust_remote_code": _trust_remote_code(model_args),
              "dtype": dtype if dtype is not None else "auto"}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        from saerl_hf.models import ModelNotFoundError

        raise ModelNotFoundError(f"Could not load a model from model_name_or_path='{model_args.model_name_or_path}': "
                                 f"{err}. Fix: point model_name_or_path at a `save_pretrained` dir (config.json + "
                                 f"weights), an alias, or a Hub id.") from None
    return model, path


def main(script_args: GRPOScriptArguments, training_args: GRPOConfig, model_args: ModelConfig,
         callbacks: list | None = None) -> dict:
    """Load data + model, order the data, train with CurriculumGRPOTrainer, evaluate, save model + card.

    With ``use_peft`` (LoRA through TRL's ``peft_config``) the output dir holds the adapter; transformers loads
    it like a model (its ``adapter_config.json`` names the base)."""
    from transformers import set_seed
    from trl import get_peft_config

    from saerl_hf.answers import start_checkers
    from saerl_hf.grpo_trainer import CurriculumGRPOTrainer
    from saerl_hf.models import load_tokenizer
    from saerl_hf.rewards import get_reward_funcs

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    _check_args(script_args, training_args)
    set_seed(training_args.seed)
    started = time.perf_counter()

    ds, quality_counts = _load_train_rows(script_args)
    start_checkers()  # fork the reward's answer checkers before the model makes this process large
    model, model_path = _load_model(model_args, training_args)
    tokenizer = load_tokenizer(model_path, trust_remote_code=_trust_remote_code(model_args))
    ds = prepare_prompts(ds, tokenizer)
    ds, sampler, sampler_kwargs = _sampler_setup(script_args, training_args, ds)
    eval_cb = _heldout_callback(script_args, ds)
    callbacks = list(callbacks or []) + ([eval_cb] if eval_cb is not None else [])
    # Trainer would push the whole output dir itself (training_args.bin, a pickle, included) on every save;
    # push_output uploads once at the end with an allow-list of safe files instead.
    push_at_end, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = CurriculumGRPOTrainer(
        model=model, reward_funcs=get_reward_funcs(script_args.reward_funcs), args=training_args, train_dataset=ds,
        processing_class=tokenizer, peft_config=get_peft_config(model_args), callbacks=callbacks, sampler=sampler,
        sampler_kwargs=sampler_kwargs, adaptive_reward_key=script_args.adaptive_reward_key,
    )
    if eval_cb is not None:
        eval_cb.trainer = trainer

    resume = _resume_checkpoint(training_args)
    train_result = trainer.train(resume_from_checkpoint=resume or None)
    metrics = _run_metrics(train_result, trainer, resume, eval_cb, time.perf_counter() - started)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    trainer.save_model(training_args.output_dir)
    summary = {
        "script_args": asdict(script_args),
        "model": model_args.model_name_or_path,
        "sampler": sampler,
        "num_train_rows": len(ds),
        "quality_filter": quality_counts,
        "metrics": metrics,
        "heldout_curve": eval_cb.history if eval_cb else [],
    }
    if trainer.accelerator.is_main_process:
        _save_run(summary, tokenizer, script_args, training_args, model_args, push_at_end)
    trainer.accelerator.wait_for_everyone()
    return summary


def _load_train_rows(script_args):
    """(train dataset, quality-filter counts or None): the configured rows, filtered by quality when asked."""
    from saerl_hf.signals.quality import keep_by_quality

    ds = load_train_dataset(script_args.dataset_name, script_args.dataset_train_split, script_args.dataset_revision,
                            script_args.dataset_config, script_args.dataset_limit)
    quality_counts = None
    if script_args.quality_threshold is not None or script_args.quality_keep_fraction is not None:
        ds, quality_counts = keep_by_quality(ds, script_args.quality_threshold, script_args.quality_keep_fraction)
        logger.info("quality filter: %s", quality_counts)
    return ds, quality_counts


def _heldout_callback(script_args, train_ds) -> HeldOutEvalCallback | None:
    """The held-out callback, or None when no held-out set is configured (or none is left after dedup)."""
    heldout = load_heldout(script_args, train_ds)
    if not heldout:
        return None
    return HeldOutEvalCallback(heldout, Path(script_args.heldout_dataset_name).name, script_args.heldout_every_steps,
                               script_args.heldout_max_new_tokens, script_args.heldout_batch_size,
                               script_args.heldout_on_start)


def _resume_checkpoint(training_args):
    """``resume_from_checkpoint`` as given, with true / last resolved to the output dir's last checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = get_last_checkpoint(training_args.output_dir)
        if resume is None:
            logger.info("no checkpoint in %s: starting fresh", training_args.output_dir)
    return resume


def _run_metrics(train_result, trainer, resume, eval_cb: HeldOutEvalCallback | None, seconds: float) -> dict:
    """Trainer's metrics + seconds per step (held-out scoring left out) + the last held-out accuracy."""
    metrics = dict(train_result.metrics)
    steps = max(1, trainer.state.global_step - (int(Path(resume).name.split("-")[-1]) if resume else 0))
    eval_seconds = eval_cb.seconds_in_train if eval_cb else 0.0
    # held-out scoring before/between steps is inside train_runtime; leave it out of the per-step cost
    metrics["seconds_per_step"] = round((metrics.get("train_runtime", seconds) - eval_seconds) / steps, 3)
    if eval_cb is not None and eval_cb.history:
        metrics.update({k: v for k, v in eval_cb.history[-1].items() if k not in ("step", "correct_ids")})
    return metrics


def _save_run(summary: dict, tokenizer, script_args, training_args, model_args, push_at_end: bool) -> None:
    """Main process: tokenizer, grpo_summary.json, the model card, and the push when asked."""
    tokenizer.save_pretrained(training_args.output_dir)
    with open(os.path.join(training_args.output_dir, SUMMARY_FILE), "w") as fh:
        json.dump(summary, fh, indent=1, default=str)
    curve = [{k: v for k, v in e.items() if k != "correct_ids"} for e in summary["heldout_curve"]]
    write_model_card(training_args.output_dir, script_args, training_args, model_args, summary["metrics"], curve,
                     summary["num_train_rows"])
    if push_at_end:
        push_output(training_args)


def parse_args(argv: list[str] | None = None):
    from saerl_hf.configs import parse_config

    parser = TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig), prog="saerl-hf train")
    return parse_config(parser, argv)


def cli_main(argv: list[str] | None = None) -> int:
    """``saerl-hf train``: a bad option is a ConfigError, printed as one ``error:`` line by saerl_hf.cli."""
    main(*parse_args(argv))
    return 0


if __name__ == "__main__":  # `accelerate launch -m saerl_hf.grpo ...`: the same error handling as `saerl-hf train`
    from saerl_hf.cli import main as saerl_hf_main

    sys.exit(saerl_hf_main(["train", *sys.argv[1:]]))


__all__ = ["CURRICULA", "DROP_COLUMNS_PREFIX", "MODEL_CARD_TEMPLATE", "PUSH_IGNORE_PATTERNS", "GRPOScriptArguments",
           "HeldOutEvalCallback", "cli_main", "load_heldout", "load_train_dataset", "main", "parse_args",
           "prepare_prompts", "push_output", "write_model_card"]
