"""A shared SFT warm start: the policy every GRPO arm starts from (TRL ``SFTTrainer`` + LoRA, merged).

A 135M policy solves too few elementary problems for GRPO groups to carry any reward spread; a short LoRA
SFT on worked solutions from data that is never in the RL pool or the held-out set (GSM8K train) lifts the
pass rate into the learnable window at no cost in prompt length (../shared/notes/cpu-facts.md).

    saerl-hf warmstart --config recipes/smollm2-135m/warmstart/gsm8k.yaml

The output is a plain ``save_pretrained`` directory (``<output_dir>/model``) that any recipe's
``model_name_or_path`` can point at, plus ``warmstart.json`` (settings, data ids, metrics). A finished run
with the same settings is reused; a killed one resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: noise for a policy to imitate
RESULT_FILE = "warmstart.json"


@dataclass
class WarmStartConfig:
    """Settings of the SFT warm start (YAML via ``--config``; every field is also a flag)."""

    model_name_or_path: str = field(default="smollm2-135m", metadata={"help": "Policy to warm-start: alias, dir or "
                                                                              "Hub id (needs a chat template)."})
    dataset_name: str = field(default="gsm8k", metadata={"help": "Worked solutions (saerl_hf.data name); must stay "
                                                                 "out of the RL pool and the held-out set."})
    dataset_split: str = field(default="train", metadata={"help": "Split of dataset_name."})
    num_examples: int = field(default=800, metadata={"help": "Solutions used (a seeded sample of the split)."})
    max_solution_steps: int = field(default=3, metadata={"help": "Skip solutions with more lines than this "
                                                                 "(short worked answers fit short completions)."})
    seed: int = field(default=0, metadata={"help": "Sampling and training seed."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "SFT epochs."})
    learning_rate: float = field(default=2.0e-4, metadata={"help": "LoRA learning rate."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (all linear layers)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Examples per step."})
    max_length: int = field(default=320, metadata={"help": "Tokens per example (prompt + solution)."})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (CPU: only where bf16 is native)."})
    output_dir: str = field(default="outputs/warmstart/smollm2-135m-gsm8k", metadata={"help": "Where the merged "
                                                                                            "model and logs go."})


def solution_completion(solution: str, answer: str) -> str:
    """A GSM8K solution as the assistant turn: no calculator annotations, the project's ``Answer: N`` cue."""
    from saerl_hf.prompts import ANSWER_CUE

    body = _CALCULATOR.sub("", solution.split("####")[0]).strip()
    return f"{body}\n{ANSWER_CUE} {answer}"


def build_sft_dataset(config: WarmStartConfig):
    """Prompt-completion rows in TRL's conversational format, with the same user prompt GRPO will use."""
    from saerl_hf.data import load_math_dataset
    from saerl_hf.prompts import build_messages

    ds = load_math_dataset(config.dataset_name, split=config.dataset_split)
    for needed in ("problem", "answer", "solution"):
        if needed not in ds.column_names:
            raise ValueError(f"warm-start data '{config.dataset_name}' has no '{needed}' column. Fix: use a set with "
                             f"worked solutions (e.g. gsm8k train).")
    ds = ds.filter(lambda r: bool(r["solution"]) and r["solution"].count("\n") <= config.max_solution_steps,
                   desc="short worked solutions")
    ds = ds.shuffle(seed=config.seed).select(range(min(config.num_examples, len(ds))))
    return ds.map(
        lambda r: {"prompt": build_messages(r["problem"], r["source"]),
                   "completion": [{"role": "assistant", "content": solution_completion(r["solution"], r["answer"])}]},
        remove_columns=[c for c in ds.column_names if c != "id"], desc="SFT rows",
    )


def _finished(config: WarmStartConfig) -> dict | None:
    path = Path(config.output_dir) / RESULT_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("config") == asdict(config) else None


def run_warmstart(config: WarmStartConfig) -> dict:
    """Train (or reuse) the warm start; returns the ``warmstart.json`` record."""
    done = _finished(config)
    if done is not None:
        logger.info("warm start reused: %s", done["model_path"])
        return done
    from peft import LoraConfig
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from saerl_hf.models import load_model, load_tokenizer, model_identity

    tokenizer = load_tokenizer(config.model_name_or_path, padding_side="right")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"'{config.model_name_or_path}' has no chat template; the warm start trains the chat prompt "
                         f"GRPO uses. Fix: warm-start an instruct model (e.g. smollm2-135m).")
    ds = build_sft_dataset(config)
    out = Path(config.output_dir)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), num_train_epochs=config.num_train_epochs,
        learning_rate=config.learning_rate, per_device_train_batch_size=config.per_device_train_batch_size,
        max_length=config.max_length, seed=config.seed, use_cpu=True, bf16=config.bf16, report_to="none",
        logging_steps=5, save_strategy="steps", save_steps=20, save_total_limit=1, lr_scheduler_type="cosine", warmup_steps=5, activation_checkpointing=False,
        completion_only_loss=True, dataloader_num_workers=0,
    )
    peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear",
                             lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=load_model(config.model_name_or_path), args=args, train_dataset=ds,
                         processing_class=tokenizer, peft_config=peft_config)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=get_last_checkpoint(args.output_dir))
    seconds = time.perf_counter() - started
    merged = trainer.model.merge_and_unload()
    model_path = out / "model"
    merged.save_pretrained(model_path)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(model_path)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    record = {"config": asdict(config), "model_path": str(model_path), "base_model": model_identity(
        config.model_name_or_path), "n_examples": len(ds), "train_ids": list(ds["id"]),
        "seconds": round(seconds, 1), "steps": trainer.state.global_step, "loss_first": losses[:3],
        "loss_last": losses[-3:], "metrics": result.metrics}
    (out / RESULT_FILE).write_text(json.dumps(record, indent=1))
    return record


def cli_main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    from saerl_hf.configs import parse_config

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (config,) = parse_config(TrlParser((WarmStartConfig,), prog="saerl-hf warmstart"), argv)
    record = run_warmstart(config)
    print(f"warm start: {record['model_path']} ({record['n_examples']} examples, {record['seconds']} s)")
    return 0


if __name__ == "__main__":  # the same error handling as `saerl-hf warmstart`
    import sys

    from saerl_hf.cli import main as saerl_hf_main

    sys.exit(saerl_hf_main(["warmstart", *sys.argv[1:]]))
