"""The GRPO run's model card (``model_card.md`` template) and its upload to the Hub (safe files only)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logger = logging.getLogger("saerl_hf.grpo")

MODEL_CARD_TEMPLATE = "model_card.md"  # found by saerl_hf.cards.card_template (package data)
SUMMARY_FILE = "grpo_summary.json"  # a run's arguments, metrics and held-out curve, beside TRL's train_results.json
OLD_SUMMARY_FILE = "saerl_training.json"  # its old name, still read (the committed logs under docs/results keep it)
# Never uploaded: pickles (Trainer's training_args.bin, torch.save'd optimizer/scheduler/RNG states, any *.bin,
# *.pt, *.pkl) and run folders; model weights go up as safetensors only.
PUSH_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl",
                        "*.pickle", "*.joblib", "optimizer.*", "scheduler.*", "rng_state*", "training_args*"]


def summary_file(run_dir) -> Path | None:
    """The run summary in ``run_dir`` under its name or its old one; None when the run has not finished."""
    for name in (SUMMARY_FILE, OLD_SUMMARY_FILE):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def finished_runs(root) -> list[Path]:
    """The run dirs ``<root>/runs/<arm>/seed<n>`` that hold a summary (either name), sorted."""
    return sorted(p for p in Path(root).glob("runs/*/seed*") if summary_file(p) is not None)


def write_model_card(output_dir, script_args, training_args, model_args, metrics, curve, num_rows) -> Path:
    """README.md from the model_card.md template (a huggingface_hub ModelCard); no token anywhere."""
    import huggingface_hub
    import transformers
    import trl
    from huggingface_hub import ModelCard, ModelCardData

    from saerl_hf.cards import render_card_template
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
    card = render_card_template(ModelCard, MODEL_CARD_TEMPLATE, card_data, **kwargs)
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
