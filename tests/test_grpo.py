"""The training script: recipes parse, rewards survive garbage, and real `accelerate launch` runs finish.

The launch tests run the script exactly as users do (subprocess, CPU accelerate config, a YAML recipe)
and check what a run leaves behind: model, card, metrics and the TRL log history with held-out accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from saerl_hf.curriculum import add_curriculum_rank
from saerl_hf.grpo import GRPOScriptArguments, _sampler_setup, parse_args, prepare_prompts
from saerl_hf.prompts import plain_prompt
from saerl_hf.rewards import REWARD_FUNCS, correctness_reward, format_reward, get_reward_funcs

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
RECIPES = sorted((ROOT / "recipes").glob("*/grpo/config_*.yaml"))


# ----------------------------------------------------------------------------- rewards


def test_rewards_score_real_answers_and_survive_garbage():
    conv = [{"role": "assistant", "content": "7 + 7 = 14.\nAnswer: 14"}]
    garbage = [None, 12, {"content": None}, [{"role": "assistant", "content": ["x"]}], "\\boxed{" * 500, "9" * 50_000]
    completions = [conv, "Answer: fourteen", "\\boxed{\\frac{1}{2}}"] + garbage
    n = len(completions)
    answers = ["14", "14", "0.5"] + ["14"] * len(garbage)
    sources = ["mawps", "mawps", "math"] + ["gsm8k", "gsm8k", "math", "gsm8k", "math", "gsm8k"]
    assert correctness_reward(completions, answer=answers, source=sources) == [1.0, 0.0, 1.0] + [0.0] * len(garbage)
    fmt = format_reward(completions, source=sources)
    assert fmt[:3] == [1.0, 0.5, 1.0] and fmt[3:] == [0.0, 0.0, 0.0, 0.0, 0.5, 0.0]
    assert len(correctness_reward(completions, answer=None, source=None)) == n  # missing columns: zeros
    # a few-shot text prompt (base models) ends with "Answer:": the completion must open with the number, and
    # what the model invents after it (a next "Question: ... Answer: 5") does not count
    plain = plain_prompt("Tom has 3 apples and buys 5 more. How many now?", "elementary")
    opened = [" 8\n\nQuestion: Sam has 2 cats. Answer: 5", " eight\n", "\n\nQuestion: x? Answer: 5"]
    assert format_reward(opened, source=["mawps"] * 3, prompts=[plain] * 3) == [1.0, 0.5, 0.0]
    assert correctness_reward(opened, answer=["8"] * 3, source=["mawps"] * 3) == [1.0, 0.0, 0.0]
    assert get_reward_funcs("correctness,format") == [REWARD_FUNCS["correctness"], REWARD_FUNCS["format"]]
    with pytest.raises(ValueError, match="Known: correctness, format"):
        get_reward_funcs(["accuracy"])


# ----------------------------------------------------------------------------- recipes and arguments


@pytest.mark.parametrize("recipe", RECIPES, ids=[f"{p.parts[-3]}/{p.name}" for p in RECIPES])
def test_recipes_parse_with_trl_parser(recipe):
    raw = yaml.safe_load(recipe.read_text())
    gpu = ["--bf16", "false", "--use_cpu", "true", "--use_vllm", "false"] if raw.get("bf16") else []  # parse on CPU
    script_args, training_args, model_args = parse_args(["--config", str(recipe), "--max_steps", "3", *gpu])
    assert training_args.max_steps == 3  # command line overrides the YAML
    assert script_args.curriculum in ("rank", "vanilla")
    assert training_args.generation_batch_size % training_args.num_generations == 0
    for name in script_args.reward_funcs:
        assert name in REWARD_FUNCS
    if gpu:
        assert raw["use_vllm"] and raw["dtype"] == "bfloat16" and model_args.model_name_or_path == "Qwen/Qwen2.5-Math-1.5B"
    if "smollm2" in str(recipe):
        assert training_args.use_cpu and not training_args.bf16 and training_args.report_to in ([], "none", ["none"])
        assert training_args.generation_batch_size // training_args.num_generations == 2  # curate's prompts_per_batch
        assert training_args.max_completion_length >= 48  # room for "Answer: <n>" (cpu-facts calibration)
    if "gemma3" in str(recipe):  # the transfer policy: a base model, answers right after a few-shot "Answer:"
        assert model_args.model_name_or_path == "gemma3-270m" and training_args.use_cpu
        assert training_args.generation_batch_size // training_args.num_generations == 2
    if "_lora" in recipe.name:  # LoRA through TRL's peft_config on every linear layer
        assert model_args.use_peft and model_args.lora_target_modules in (["all-linear"], "all-linear")
    assert {"config_saerl.yaml", "config_vanilla.yaml", "config_saerl_lora.yaml"} <= {p.name for p in RECIPES}


def test_prompts_follow_the_tokenizer(tiny):
    """Chat models get TRL's conversational prompt; a base model without a chat template gets the same
    few-shot text the evaluation gives it (one prompt for training and scoring)."""
    from datasets import Dataset

    from saerl_hf.prompts import render_prompt

    _, tokenizer = tiny
    ds = Dataset.from_dict({"problem": ["Each box has 4 pens. How many pens in 3 boxes?"], "answer": ["12"],
                            "source": ["mawps"]})
    chat = prepare_prompts(ds, tokenizer)[0]["prompt"]
    assert isinstance(chat, list) and chat[0]["role"] == "user" and ds[0]["problem"] in chat[0]["content"]
    tokenizer.chat_template = None
    text = prepare_prompts(ds, tokenizer)[0]["prompt"]
    assert text == render_prompt(tokenizer, ds[0]["problem"], "mawps") == plain_prompt(ds[0]["problem"], "elementary")
    assert text.endswith("Answer:") and text.count("Question:") == 4


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for name in ("cpu", "ddp", "zero2", "fsdp"):
        cfg = load_config_from_file(str(ROOT / "recipes" / "accelerate_configs" / f"{name}.yaml"))
        kinds[name] = str(cfg.distributed_type)
    assert kinds["cpu"].endswith("NO") and kinds["ddp"].endswith("MULTI_GPU")
    assert kinds["zero2"].endswith("DEEPSPEED") and kinds["fsdp"].endswith("FSDP")


def test_rank_curriculum_rebuilds_an_order_made_for_another_geometry(caplog):
    from datasets import Dataset
    from trl import GRPOConfig

    ds = Dataset.from_dict({"cluster": [0, 1] * 12, "difficulty": np.linspace(0, 1, 24)})
    ds = add_curriculum_rank(ds, 3, curriculum="saerl")  # built for 3 prompts per batch
    args = GRPOConfig(output_dir="/tmp/unused", per_device_train_batch_size=4, num_generations=2, use_cpu=True,
                      bf16=False, report_to="none")
    with caplog.at_level("INFO", logger="saerl_hf.curriculum"):
        rank, sampler, _ = _sampler_setup(GRPOScriptArguments(curriculum="rank"), args, ds)  # no hard failure
    assert "built for 3 unique prompts per generation batch, this run has 2" in caplog.text
    here, _, _ = _sampler_setup(GRPOScriptArguments(curriculum="saerl"), args, ds)  # built here for B=2
    assert sampler == "curriculum" and here["curriculum_batch"][:4] == [0, 0, 1, 1]
    assert sorted(rank["curriculum_batch"]) == sorted(here["curriculum_batch"])
    assert rank["curriculum_rank"] == add_curriculum_rank(ds, 2, curriculum="saerl")["curriculum_rank"]


# ----------------------------------------------------------------------------- real launches


def _launch(tmp_path, model, extra: dict, timeout=600, env: dict | None = None):
    from saerl_hf.data import load_math_dataset

    ds = load_math_dataset("mawps", limit=40)
    rng = np.random.default_rng(0)
    ds = ds.add_column("cluster", rng.integers(0, 3, len(ds))).add_column("difficulty", rng.random(len(ds)))
    ds.save_to_disk(str(tmp_path / "data"))
    config = {
        "model_name_or_path": model,
        "dataset_name": str(tmp_path / "data"),
        "curriculum": "saerl",
        "reward_funcs": ["correctness", "format"],
        "reward_weights": [1.0, 0.1],
        "per_device_train_batch_size": 4,
        "num_generations": 2,
        "max_completion_length": 4,
        "max_steps": 3,
        "learning_rate": 1.0e-4,
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "no",
        "output_dir": str(tmp_path / "out"),
        **extra,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    cmd = [ACCELERATE, "launch", "--config_file", str(ROOT / "recipes/accelerate_configs/cpu.yaml"),
           "--num_cpu_threads_per_process", "2", "-m", "saerl_hf.grpo", "--config", str(tmp_path / "run.yaml")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"} if env is None else env
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tmp_path / "out", proc


def test_accelerate_launch_tiny_run(tiny_model_dir, data_dir, tmp_path):
    out, _ = _launch(tmp_path, tiny_model_dir, {"heldout_dataset_name": "svamp", "heldout_limit": 4,
                                                 "heldout_every_steps": 2, "heldout_max_new_tokens": 4})
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    heldout = [h for h in history if "heldout/svamp/accuracy" in h]
    assert [h["step"] for h in heldout] == [0, 2, 3]  # start, every 2 steps, end
    train_logs = [h for h in history if "loss" in h]
    assert [h["step"] for h in train_logs] == [1, 2, 3]
    assert all("rewards/correctness_reward/mean" in h and "curriculum/difficulty" in h for h in train_logs)

    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert "curriculum-saerl" in card.data.tags and card.data.base_model is None  # local dir: no Hub id
    assert "| `num_generations` | 2 |" in card.text and "heldout/svamp/accuracy" in card.text
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["sampler"] == "curriculum" and summary["metrics"]["seconds_per_step"] > 0


def test_lora_run_pushes_the_adapter_once_without_pickles_and_reloads(tiny_model_dir, data_dir, tmp_path, hub,
                                                                      hub_env):
    """LoRA through TRL's peft_config: the output dir holds the adapter, transformers reloads it onto its base,
    and push_to_hub uploads once at the end through push_output (Trainer's own pushes would carry
    training_args.bin, a pickle, and every checkpoint)."""
    import torch
    from transformers import AutoModelForCausalLM

    out, _ = _launch(tmp_path, tiny_model_dir, {
        "use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["all-linear"], "learning_rate": 5e-2,
        "max_steps": 2, "save_strategy": "steps", "save_steps": 1, "push_to_hub": True,
        "hub_model_id": "saerl/tiny-lora"}, env={**hub_env, "WANDB_MODE": "disabled"})
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not (out / "model.safetensors").exists()  # the adapter, not a merged copy
    repo = hub.state.repos[("model", "saerl/tiny-lora")]
    files = set(repo.commits[repo.branches["main"]].files)
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= files
    assert "training_args.bin" not in files and not any(f.startswith("checkpoint-") for f in files)
    from safetensors.torch import load_file

    # reloaded onto its base (adapter_config.json names it): the LoRA layers carry exactly the saved weights
    tuned = AutoModelForCausalLM.from_pretrained(out)
    saved = load_file(str(out / "adapter_model.safetensors"))
    loaded = {n: p for n, p in tuned.named_parameters() if "lora_" in n}
    assert saved and len(loaded) == len(saved)
    for name, tensor in saved.items():
        match = [p for n, p in loaded.items() if n.replace(".default", "").endswith(name.split("base_model.model.")[-1])]
        assert len(match) == 1 and torch.equal(match[0].detach(), tensor)


def test_accelerate_launch_base_model_without_chat_template(tmp_path):
    """A base-model policy (no chat template, like Gemma 3 270M) trains on few-shot text prompts."""
    from saerl_hf._testing import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "model")
    config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (Path(model_dir) / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in Path(model_dir).glob("chat_template.*"):
        extra.unlink()
    out, proc = _launch(tmp_path, model_dir, {"max_steps": 2, "log_completions": True})
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2]
    assert "prompts (few-shot text)" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_accelerate_launch_real_smollm2(smollm2_path, data_dir, tmp_path):
    """Two steps of the real 135M policy (1 prompt x 2 completions x 8 tokens: the recipe shape, scaled down)."""
    out, proc = _launch(tmp_path, "smollm2-135m", {"max_steps": 2, "max_completion_length": 8, "num_generations": 2,
                                                   "per_device_train_batch_size": 2, "temperature": 0.8,
                                                   "learning_rate": 1.0e-5})
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [h for h in history if "loss" in h]
    assert len(steps) == 2 and all(np.isfinite(h["loss"]) for h in steps)
    assert all(0 < h["completions/mean_length"] <= 8 for h in steps)
    from huggingface_hub import ModelCard

    assert ModelCard.load(out / "README.md").data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


GPU_RECIPES = sorted((ROOT / "recipes" / "qwen2.5-math-1.5b" / "grpo").glob("config_*.yaml"))


@pytest.mark.parametrize("accelerate_config", ["ddp.yaml", "zero2.yaml", "fsdp.yaml"])
@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=[p.name for p in GPU_RECIPES])
def test_gpu_recipes_fit_their_accelerate_configs(recipe, accelerate_config):
    """What a GPU launch checks before its first step, checked here without a GPU: the generation batch splits into
    whole groups on every process count the config names, the curated order's B matches (else it is rebuilt,
    logged), vLLM colocate leaves memory for training, and bf16 agrees between recipe and accelerate config."""
    from saerl_hf.curriculum import prompts_per_batch_of

    accel = yaml.safe_load((ROOT / "recipes" / "accelerate_configs" / accelerate_config).read_text())
    raw = yaml.safe_load(recipe.read_text())
    processes = accel["num_processes"]
    _, training_args, model_args = parse_args(["--config", str(recipe), "--bf16", "false", "--use_cpu", "true",
                                               "--use_vllm", "false"])
    steps = training_args.steps_per_generation or training_args.gradient_accumulation_steps
    global_batch = training_args.per_device_train_batch_size * processes * steps
    assert global_batch % training_args.num_generations == 0
    assert (training_args.per_device_train_batch_size * processes) % training_args.num_generations == 0
    curate = yaml.safe_load((ROOT / "recipes" / "qwen2.5-math-1.5b" / "curate" / "deepmath.yaml").read_text())
    assert curate["prompts_per_batch"] == global_batch // training_args.num_generations
    assert prompts_per_batch_of(training_args) * processes == global_batch // training_args.num_generations
    assert raw["bf16"] is True and accel["mixed_precision"] == "bf16" and raw["dtype"] == "bfloat16"
    assert raw["use_vllm"] and raw["vllm_mode"] == "colocate" and 0 < raw["vllm_gpu_memory_utilization"] <= 0.5
    assert processes % raw.get("vllm_tensor_parallel_size", 1) == 0
    if "_lora" in recipe.name:
        full = yaml.safe_load(recipe.with_name("config_saerl.yaml").read_text())["learning_rate"]
        assert model_args.use_peft and training_args.learning_rate == pytest.approx(10 * full)  # ~10x full FT


def test_a_resumed_run_keeps_its_heldout_curve(tiny_model_dir, data_dir, tmp_path):
    """Stopped after a checkpoint and resumed: the summary still has every held-out point with its solved ids."""
    common = {"heldout_dataset_name": "svamp", "heldout_limit": 4, "heldout_every_steps": 1,
              "heldout_max_new_tokens": 4, "heldout_on_start": False, "save_strategy": "steps", "save_steps": 2}
    out, _ = _launch(tmp_path, tiny_model_dir, {**common, "max_steps": 2})
    assert json.loads((out / "checkpoint-2" / "heldout_history.json").read_text())[-1]["step"] == 2
    _launch(tmp_path / "again", tiny_model_dir, {**common, "max_steps": 4, "resume_from_checkpoint": "last",
                                                          "output_dir": str(out)})
    curve = json.loads((out / "grpo_summary.json").read_text())["heldout_curve"]
    assert [e["step"] for e in curve] == [1, 2, 3, 4] and all("correct_ids" in e for e in curve)
