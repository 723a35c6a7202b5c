"""GRPO training with the SAERL curriculum (open-r1 shape: one ``main``, parsed by ``TrlParser``).

    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml -m saerl_hf.grpo \\
        --config recipes/smollm2-135m/grpo/config_saerl.yaml
    python -m saerl_hf.grpo --config ...        saerl-hf train --config ...

Every YAML key is a field of :class:`GRPOScriptArguments`, TRL's ``GRPOConfig`` or ``ModelConfig`` and can
be overridden on the command line (``--max_steps 5``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import TrainerCallback
from trl import GRPOConfig, ModelConfig, TrlParser

logger = logging.getLogger("saerl_hf.grpo")

CURRICULA = ("vanilla", "rank", "saerl", "difficulty", "cluster", "random", "adaptive")
DROP_COLUMNS_PREFIX = ("sae_",)  # sparse feature columns: large and not needed by rewards
MODEL_CARD_TEMPLATE = "model_card.md"  # found by saerl_hf.cards.card_template (package data)
# Never uploaded: pickles (Trainer's training_args.bin, torch.save'd optimizer/scheduler/RNG states, any *.bin,
# *.pt, *.pkl) and run folders; model weights go up as safetensors only.
PUSH_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl",
                        "*.pickle", "*.joblib", "optimizer.*", "scheduler.*", "rng_state*", "training_args*"]


@dataclass
class GRPOScriptArguments:
    """Data, curriculum, rewards and held-out evaluation of a SAERL GRPO run."""

    dataset_name: str = field(
        default="mawps",
        metadata={"help": "Hub dataset id, local dir (save_to_disk or a curated dir), data file, or benchmark "
                  "name(s) known to saerl_hf.data (comma-separated for a mixture)."},
    )
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag, sha)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split used for training."})
    dataset_limit: int | None = field(default=None, metadata={"help": "Use only the first N rows (smoke runs)."})
    curriculum: str = field(
        default="saerl",
        metadata={"help": "vanilla (TRL's shuffled RepeatSampler) | rank (follow the dataset's curriculum_rank as "
                  "curated) | saerl | difficulty | cluster | random (order built here for this run's batch size) | "
                  "adaptive (target difficulty moves with the reward)."},
    )
    curriculum_mixing: float = field(default=0.25, metadata={"help": "Share of each batch tail-swapped with neighbours."})
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


# ----------------------------------------------------------------------------- data


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def load_train_dataset(name: str, split: str = "train", revision: str | None = None, config: str | None = None,
                       limit: int | None = None):
    """Local dir / curated dir / data file / benchmark name(s) / Hub id -> a ``datasets.Dataset``."""
    import datasets

    from saerl_hf import data as sdata

    path = Path(name).expanduser()
    ds = None
    if path.is_dir():
        if (path / "dataset").is_dir() and (path / "provenance.json").is_file():
            from saerl_hf.hub import load_curated

            ds = load_curated(path).dataset
        elif _is_saved_dataset(path):
            ds = datasets.load_from_disk(str(path))
        else:
            raise FileNotFoundError(
                f"'{name}' is a directory but neither a save_to_disk dataset nor a curated dir "
                f"(dataset/ + provenance.json). Fix: point dataset_name at one of those."
            )
    elif path.is_file():
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
        if kind is None:
            raise ValueError(f"unsupported data file '{name}'. Fix: use .jsonl, .json, .parquet or .csv.")
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    else:
        names = [n.strip() for n in name.split(",") if n.strip()]
        if names and all(n in sdata.list_benchmarks() for n in names):
            if len(names) == 1:
                ds = sdata.load_math_dataset(names[0], split=split, limit=limit)
            else:
                ds = sdata.load_mixture(names, split=split, limit_per_source=limit)
        else:
            from saerl_hf.hub import CuratedLoadError, load_curated

            try:
                ds = load_curated(name, revision=revision).dataset
            except CuratedLoadError as err:
                # A missing revision/repo, an unsafe file list or a content mismatch is the answer, not a cue to
                # retry as a plain dataset (whose error would hide it); only "no push record" falls through.
                if err.reason != "not_curated":
                    raise
                ds = datasets.load_dataset(name, config, split=split, revision=revision)
            except Exception:  # noqa: BLE001 - offline or not a dataset repo we can inspect: plain Hub dataset
                ds = datasets.load_dataset(name, config, split=split, revision=revision)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"split '{split}' not in {name} (splits: {', '.join(ds)}). Fix: set dataset_train_split.")
        ds = ds[split]
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    return ds


def prepare_prompts(ds, tokenizer=None):
    """Add TRL's ``prompt`` from ``problem`` (+ ``source``) with the shared prompt builder.

    Conversational (a list of messages) when the tokenizer has a chat template; a base model without one
    (Gemma 3 270M base) gets the same few-shot text prompt the evaluation gives it (``prompts.plain_prompt``),
    so training and held-out scoring see one prompt.
    """
    from saerl_hf.prompts import build_messages, family_of, plain_prompt

    cols = ds.column_names
    drop = [c for c in cols if c.startswith(DROP_COLUMNS_PREFIX)]
    if drop:
        ds = ds.remove_columns(drop)
    if "prompt" in cols:
        return ds
    for needed in ("problem", "answer"):
        if needed not in cols:
            raise ValueError(f"the train dataset has no '{needed}' column (columns: {', '.join(cols)}). "
                             f"Fix: use the canonical schema of saerl_hf.data (problem, answer, source, ...).")
    has_source = "source" in cols
    if tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        return ds.map(
            lambda row: {"prompt": plain_prompt(row["problem"], family_of(row["source"] if has_source else None))},
            desc="prompts (few-shot text)",
        )
    return ds.map(
        lambda row: {"prompt": build_messages(row["problem"], row["source"] if has_source else None)},
        desc="prompts",
    )


# ----------------------------------------------------------------------------- held-out evaluation


class HeldOutEvalCallback(TrainerCallback):
    """Greedy accuracy on a held-out slice every N steps, logged through ``trainer.log`` (console,
    ``report_to`` backends and ``state.log_history``). Each process scores its shard; counts are summed."""

    def __init__(self, rows: list[dict], name: str, every: int, max_new_tokens: int, batch_size: int,
                 on_start: bool = True):
        self.rows, self.name, self.every = rows, name, int(every)
        self.max_new_tokens, self.batch_size, self.on_start = max_new_tokens, batch_size, on_start
        self.trainer = None
        self.history: list[dict] = []
        self.seconds_in_train = 0.0  # scoring time counted in train_runtime (everything before on_train_end)
        self._last_step = -1

    def evaluate(self, step: int) -> dict:
        import torch

        from saerl_hf.evaluation import evaluate_model

        trainer = self.trainer
        acc = trainer.accelerator
        shard = self.rows[acc.process_index :: acc.num_processes]
        model = acc.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()
        start = time.perf_counter()
        correct, correct_ids, lengths = 0.0, [], []
        if shard:
            with torch.no_grad():
                res = evaluate_model(
                    model, trainer.processing_class, [self.name], datasets={self.name: shard},
                    max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, progress=False, make_plots=False,
                )
            bench = res["benchmarks"][self.name]
            correct = bench["accuracy"] * bench["n_items"]
            items = res["items"][self.name]
            correct_ids = [item["id"] for item in items if item.get("verdicts") and item["verdicts"][0]]
            lengths = [n for item in items for n in item.get("new_tokens", [])]
        totals = acc.reduce(torch.tensor([correct, float(len(shard))], device=acc.device), reduction="sum")
        accuracy = float(totals[0] / max(totals[1], 1.0))
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            correct_ids, lengths = gather_object(correct_ids), gather_object(lengths)
        record = {f"heldout/{self.name}/accuracy": accuracy, f"heldout/{self.name}/n": int(totals[1]),
                  "heldout/seconds": round(time.perf_counter() - start, 2),
                  "heldout/mean_new_tokens": round(sum(lengths) / max(1, len(lengths)), 2)}
        # which items were solved: the paired (same items) standard error of a change needs them
        self.history.append({"step": step, **record, "correct_ids": sorted(correct_ids)})
        self._last_step = step
        # Logged while the model is still in eval mode: GRPOTrainer.log then merges its (empty) eval metrics
        # instead of taking the pending train metrics, which stay with the trainer's own step log.
        # CallbackHandler.on_log clears control.should_log; restore it so the step's own train log still happens.
        should_log = trainer.control.should_log
        trainer.log(dict(record))
        trainer.control.should_log = should_log
        if was_training:
            model.train()
        return record

    def on_train_begin(self, args, state, control, **kwargs):
        if self.on_start and state.global_step == 0 and self.rows:
            self.seconds_in_train += self.evaluate(0)["heldout/seconds"]
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self.seconds_in_train += self.evaluate(state.global_step)["heldout/seconds"]
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.rows and self._last_step != state.global_step:
            self.evaluate(state.global_step)
        return control


def load_heldout(script_args, train_ds, seed: int = 0) -> list[dict]:
    """The held-out rows (a seeded subset of ``heldout_limit``), minus any problem also in the train set."""
    if not script_args.heldout_dataset_name:
        return []
    ds = load_train_dataset(script_args.heldout_dataset_name, split=script_args.heldout_split)
    train_problems = set(train_ds["problem"]) if "problem" in train_ds.column_names else set()
    rows = [dict(r) for r in ds if r.get("problem") not in train_problems]
    overlap = len(ds) - len(rows)
    if overlap:
        logger.info("held-out set: dropped %d problems that also appear in the train set", overlap)
    if len(rows) > script_args.heldout_limit:
        # a seeded random subset: held-out sets are often stored source by source, so the first N are biased
        import numpy as np

        keep = np.random.default_rng(seed).choice(len(rows), script_args.heldout_limit, replace=False)
        rows = [rows[i] for i in sorted(keep.tolist())]
    for i, r in enumerate(rows):
        r.setdefault("id", f"{script_args.heldout_dataset_name}/{i}")
        r.setdefault("source", script_args.heldout_dataset_name)
    return rows


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
        MODES,
        RANK_COLUMN,
        add_curriculum_rank,
        fit_to_geometry,
        sort_by_curriculum,
        unique_prompts_per_batch,
        validate_alignment,
    )

    mode = script_args.curriculum
    if mode == "vanilla":
        return ds, "default", {}
    if mode == "adaptive":
        return ds, "adaptive", {"target": script_args.adaptive_target, "eta": script_args.adaptive_eta,
                                "alpha": script_args.adaptive_alpha, "beta": script_args.adaptive_beta}
    b = unique_prompts_per_batch(training_args)
    if mode in MODES:
        seed = training_args.seed if script_args.curriculum_seed is None else script_args.curriculum_seed
        ds = sort_by_curriculum(add_curriculum_rank(ds, b, mode=mode, mixing=script_args.curriculum_mixing, seed=seed))
    elif RANK_COLUMN not in ds.column_names:
        raise ValueError(f"curriculum=rank needs a '{RANK_COLUMN}' column. Fix: train on a curated dataset "
                         f"(saerl-hf curate) or pick curriculum: saerl to order it here.")
    else:  # an order curated for another GPU count / batch geometry is rebuilt for this run's B (logged)
        ds = fit_to_geometry(ds, b)
    report = validate_alignment(ds, b, zero_patch=False)
    if report.aligned and not report.dropped_tail:  # otherwise validate_alignment has already warned
        logger.info("curriculum %s: %s", mode, report.message())
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
    from transformers.trainer_utils import get_last_checkpoint
    from trl import get_peft_config

    from saerl_hf.models import load_tokenizer
    from saerl_hf.rewards import get_reward_funcs
    from saerl_hf.samplers import CurriculumGRPOTrainer
    from saerl_hf.signals.quality import keep_by_quality

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    _check_args(script_args, training_args)
    set_seed(training_args.seed)
    started = time.perf_counter()

    ds = load_train_dataset(script_args.dataset_name, script_args.dataset_train_split, script_args.dataset_revision,
                            script_args.dataset_config, script_args.dataset_limit)
    quality_counts = None
    if script_args.quality_threshold is not None or script_args.quality_keep_fraction is not None:
        ds, quality_counts = keep_by_quality(ds, script_args.quality_threshold, script_args.quality_keep_fraction)
        logger.info("quality filter: %s", quality_counts)
    model, model_path = _load_model(model_args, training_args)
    tokenizer = load_tokenizer(model_path, trust_remote_code=_trust_remote_code(model_args))
    ds = prepare_prompts(ds, tokenizer)
    ds, sampler, sampler_kwargs = _sampler_setup(script_args, training_args, ds)
    heldout = load_heldout(script_args, ds, seed=training_args.seed)
    callbacks = list(callbacks or [])
    eval_cb = None
    if heldout:
        eval_cb = HeldOutEvalCallback(heldout, Path(script_args.heldout_dataset_name).name, script_args.heldout_every_steps,
                                      script_args.heldout_max_new_tokens, script_args.heldout_batch_size,
                                      script_args.heldout_on_start)
        callbacks.append(eval_cb)
    # Trainer would push the whole output dir itself (training_args.bin, a pickle, included) on every save;
    # push_output uploads once at the end with an allow-list of safe files instead.
    push_at_end, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = CurriculumGRPOTrainer(
        model=model,
        reward_funcs=get_reward_funcs(script_args.reward_funcs),
        args=training_args,
        train_dataset=ds,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
        sampler=sampler,
        sampler_kwargs=sampler_kwargs,
        adaptive_reward_key=script_args.adaptive_reward_key,
    )
    if eval_cb is not None:
        eval_cb.trainer = trainer

    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = get_last_checkpoint(training_args.output_dir)
        if resume is None:
            logger.info("no checkpoint in %s: starting fresh", training_args.output_dir)
    train_result = trainer.train(resume_from_checkpoint=resume or None)
    seconds = time.perf_counter() - started

    metrics = dict(train_result.metrics)
    steps = max(1, trainer.state.global_step - (int(Path(resume).name.split("-")[-1]) if resume else 0))
    eval_seconds = eval_cb.seconds_in_train if eval_cb else 0.0
    # held-out scoring before/between steps is inside train_runtime; leave it out of the per-step cost
    metrics["seconds_per_step"] = round((metrics.get("train_runtime", seconds) - eval_seconds) / steps, 3)
    if eval_cb is not None and eval_cb.history:
        metrics.update({k: v for k, v in eval_cb.history[-1].items() if k not in ("step", "correct_ids")})
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
        tokenizer.save_pretrained(training_args.output_dir)
        with open(os.path.join(training_args.output_dir, "saerl_training.json"), "w") as fh:
            json.dump(summary, fh, indent=1, default=str)
        write_model_card(training_args.output_dir, script_args, training_args, model_args, metrics,
                         [{k: v for k, v in e.items() if k != "correct_ids"} for e in (eval_cb.history if eval_cb
                                                                                      else [])], len(ds))
        if push_at_end:
            push_output(training_args)
    trainer.accelerator.wait_for_everyone()
    return summary


# ----------------------------------------------------------------------------- card + push


def write_model_card(output_dir, script_args, training_args, model_args, metrics, curve, num_rows) -> Path:
    """README.md from the model_card.md template (huggingface_hub ModelCard template); no token anywhere."""
    import huggingface_hub
    import transformers
    import trl
    from huggingface_hub import ModelCard, ModelCardData

    from saerl_hf.cards import card_template
    from saerl_hf.models import model_identity
    from saerl_hf.redact import redact_argv

    base = model_args.model_name_or_path
    card_data = ModelCardData(
        base_model=_hub_base_model(base),
        library_name="transformers",
        tags=["saerl", "grpo", "trl", f"curriculum-{script_args.curriculum}"],
        datasets=[script_args.dataset_name] if "/" in script_args.dataset_name and not Path(script_args.dataset_name).exists() else None,
    )
    grpo = {k: getattr(training_args, k) for k in (
        "learning_rate", "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
        "generation_batch_size", "max_completion_length", "temperature", "beta", "loss_type", "num_iterations",
        "max_steps", "seed")}
    kwargs = dict(
        model_id=Path(output_dir).name,
        base_model_id=model_identity(base),
        dataset_name=script_args.dataset_name,
        dataset_revision=script_args.dataset_revision or "(local / default)",
        num_rows=num_rows,
        curriculum=script_args.curriculum,
        curriculum_mixing=script_args.curriculum_mixing,
        epoch_order=script_args.epoch_order,
        reward_funcs=", ".join(script_args.reward_funcs),
        grpo=grpo,
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        curve=curve,
        versions={"trl": trl.__version__, "transformers": transformers.__version__,
                  "huggingface_hub": huggingface_hub.__version__},
        command=" ".join(redact_argv(sys.argv)),
    )
    card = ModelCard.from_template(card_data, template_path=str(card_template(MODEL_CARD_TEMPLATE)), **kwargs)
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def _hub_base_model(name: str) -> str | None:
    """The Hub id of the base model for card metadata (aliases map to their upstream id; local dirs have none)."""
    from saerl_hf.models import EMBEDDED_MODELS

    if name in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[name].hub_id
    if Path(name).expanduser().exists() or name.count("/") != 1:
        return None
    return name


def push_output(training_args) -> str:
    """Upload the output dir (safetensors weights, tokenizer, card, metrics; no checkpoints, never a pickle: see
    PUSH_IGNORE_PATTERNS) with the token from HF_TOKEN or the saved login, never one given as an argument."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    if getattr(training_args, "hub_token", None):
        logger.warning("hub_token is ignored: a token on the command line or in a recipe ends up in shell history "
                       "and logs. Set HF_TOKEN or run `hf auth login` instead.")
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).name
    api = HfApi()  # token: HF_TOKEN, else the saved login
    api.create_repo(repo_id, private=bool(training_args.hub_private_repo), exist_ok=True)
    revision = getattr(training_args, "hub_revision", None)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    root = Path(training_args.output_dir)
    left_out = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and any(
        fnmatch(p.relative_to(root).as_posix(), pattern) for pattern in PUSH_IGNORE_PATTERNS))
    if left_out:
        logger.info("not uploaded (pickles, checkpoints, logs): %s", ", ".join(left_out[:20]))
    info = api.upload_folder(repo_id=repo_id, folder_path=str(root), revision=revision,
                             ignore_patterns=PUSH_IGNORE_PATTERNS, commit_message="SAERL GRPO run")
    logger.info("pushed %s to %s", training_args.output_dir, repo_id)
    return str(getattr(info, "commit_url", repo_id))


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
