"""GRPO step cost: the v2 testbed recipe vs the v3 recipe (LoRA, G=8) side by side -> docs/benchmarks.md.

    python benchmarks/grpo_step.py --steps 6 --model outputs/warmstart/smollm2-135m-gsm8k/model

Each variant is a real ``saerl_hf.grpo.main`` run (TRL GRPOTrainer, CPU) on the same MAWPS single-op prompts, in
this process, one after the other. A callback times every optimizer step; the first step (warm-up, lazy init)
is left out. Completion tokens per second = completion tokens generated in the timed steps / their wall time,
so variants with more or longer completions are credited for the work they do.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from docs_section import machine, write_section

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "benchmarks" / "grpo_step.json"
# name -> GRPO recipe overrides; everything else is shared (see BASE)
VARIANTS = {
    "v2: full fine-tune fp32, 2x4, lr 2e-5": {"num_generations": 4, "per_device_train_batch_size": 8},
    "v3: LoRA r16 fp32, 2x8": {"use_peft": True, "num_generations": 8, "per_device_train_batch_size": 16},
    "v3: LoRA r16 bf16 weights, 2x8": {"use_peft": True, "num_generations": 8, "per_device_train_batch_size": 16,
                                       "dtype": "bfloat16"},
}
BASE = {"dataset_name": "mawps_singleop", "dataset_train_split": "test", "curriculum": "vanilla", "reward_funcs": ["correctness"],
        "max_completion_length": 64, "temperature": 0.7, "learning_rate": 2e-5, "beta": 0.0, "loss_type": "dapo",
        "use_cpu": True, "bf16": False, "activation_checkpointing": False, "report_to": "none", "logging_steps": 1,
        "save_strategy": "no", "lora_r": 16, "lora_alpha": 32, "lora_target_modules": ["all-linear"],
        "heldout_dataset_name": None, "dtype": "float32"}


def run_variant(name: str, overrides: dict, model: str, steps: int) -> dict:
    from transformers import TrainerCallback

    from saerl_hf import grpo
    from saerl_hf.grpo import parse_args

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.start)

    with tempfile.TemporaryDirectory() as out:
        values = {**BASE, **overrides, "model_name_or_path": model, "max_steps": steps, "output_dir": out}
        if "v3" in name:
            values["learning_rate"] = 2e-4
        cfg = f"{out}/config.yaml"
        import yaml

        with open(cfg, "w") as fh:
            yaml.safe_dump(values, fh)
        grpo.main(*parse_args(["--config", cfg]), callbacks=[StepTimer()])
        log = json.load(open(f"{out}/trainer_state.json"))["log_history"]
    lengths = [e["completions/mean_length"] for e in log if "completions/mean_length" in e]
    n = values["per_device_train_batch_size"]
    timed = times[1:]
    tokens = sum(lengths[1 : len(times)]) * n
    import torch

    return {"variant": name, "completions_per_step": n, "torch_threads": torch.get_num_threads(), "seconds_per_step": sum(timed) / len(timed),
            "mean_completion_tokens": sum(lengths[1:]) / max(1, len(lengths) - 1),
            "completion_tok_per_s": tokens / sum(timed), "steps_timed": len(timed)}


def section(results: list[dict], command: str) -> str:
    base = results[0]["completion_tok_per_s"]
    lines = ["## GRPO step cost (testbed v2 vs v3 recipes)", "", f"Command: `{command}`", "", f"Machine: {machine()}.",
             "", "| recipe | completions/step | s/step | completion tokens (mean) | completion tok/s | vs v2 |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['variant']} | {r['completions_per_step']} | {r['seconds_per_step']:.1f} | "
                     f"{r['mean_completion_tokens']:.1f} | {r['completion_tok_per_s']:.1f} | "
                     f"{r['completion_tok_per_s'] / base:.2f}x |")
    best = max(r["completion_tok_per_s"] for r in results) / base
    lines += ["", f"{results[0]['steps_timed']} timed steps per variant (the first step is warm-up and not "
              "counted); same prompts (MAWPS single-op), T=0.7, <= 64 completion tokens, correctness reward, "
              f"beta 0, dapo loss, one process, {results[0].get('torch_threads', '?')} torch thread(s).", "",
              f"Goal (issue 14): completion tokens/s >= 2x the v2 recipe: best {best:.2f}x, "
              + ("met." if best >= 2 else "**not met**.")]
    return "\n".join(lines)


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--only", nargs="*", default=None, help="variant names (substring match)")
    args = parser.parse_args()
    results = []
    for name, overrides in VARIANTS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        results.append(run_variant(name, overrides, args.model, args.steps))
        print(json.dumps(results[-1]))
    command = "python benchmarks/grpo_step.py " + " ".join(sys.argv[1:])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"command": command, "results": results}, indent=1))
    print(write_section("grpo-step", section(results, command)))


if __name__ == "__main__":
    main()
