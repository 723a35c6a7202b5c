"""`saerl-hf demo`: the testbed v3 design (docs/RESULTS.md), small, on the embedded default (<= 15 min on 2 cores).

SAE (reuse or train a small one) -> SFT warm start (reuse the testbed's, else a small one) -> curate a pool of
the sources inside the warm policy's learnable window (MAWPS single-op, add-sub, single-eq; 10% injected noise;
difficulty = the warm policy's own pass rates on a small labelled subset, the SAE proxy ranks the rest) ->
LoRA GRPO with correctness reward only for vanilla and SAERL on the same pool -> held-out accuracy -> a short
report. A demo, not evidence: a handful of steps cannot separate the arms. Every stage is resumable.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTBED_WARMSTART = REPO_ROOT / "outputs/warmstart/smollm2-135m-gsm8k/model"  # recipes/smollm2-135m/warmstart/gsm8k.yaml


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults aim at <= 15 minutes on 2 idle CPU cores with SmolLM2-135M, including a
    small SAE and a small warm start when none is cached. A demo, not evidence: docs/RESULTS.md is the evidence."""

    output_dir: str = field(default="outputs/demo", metadata={"help": "Everything the demo writes."})
    model: str = field(default="smollm2-135m", metadata={"help": "Reader and base policy (alias, dir, Hub id)."})
    sae: str | None = field(default=None, metadata={
        "help": "SAE to reuse; default: the full SAE `saerl-hf train-sae` writes, else a small demo SAE trained "
                "now."})
    sae_tokens: int = field(default=150_000, metadata={"help": "Token budget of the demo SAE (if one is trained)."})
    d_sae: int = field(default=2048, metadata={"help": "Width (latents, sae-lens' d_sae) of the demo SAE."})
    sae_k: int = field(default=32, metadata={"help": "k of the demo TopK SAE."})
    sae_buffer_tokens: int = field(default=32768, metadata={
        "help": "Mixing buffer of the demo SAE (train-sae's default, 65,536, would be a third of its token budget, "
                "read by the reader and never trained on)."})
    sae_max_texts: int | None = field(default=None, metadata={"help": "Cap on SAE training texts (tests)."})
    warmstart: str | None = field(default=None, metadata={
        "help": "Warm-started policy dir to reuse; default: the testbed's (outputs/warmstart/smollm2-135m-gsm8k/"
                "model) when it exists and model is smollm2-135m, else a small one trained now."})
    warmstart_examples: int = field(default=64, metadata={
        "help": "GSM8K train solutions of the small warm start (8 per SFT step; the testbed's uses 800)."})
    sources: list[str] = field(default_factory=lambda: [
        "mawps_singleop@150", "mawps_addsub@130", "mawps_singleeq@130"], metadata={
        "help": "Pool (name[:split][@limit]): the testbed's sources inside the warm policy's learnable window."})
    holdout_per_source: int = field(default=20, metadata={"help": "Held-out rows per source (never trained on)."})
    inject_noise: float = field(default=0.1, metadata={"help": "Share of injected low-quality prompts."})
    pass_rate_prompts: int = field(default=52, metadata={
        "help": "Pool prompts labelled with the policy's pass rate (>= 50, the difficulty proxy's minimum)."})
    pass_rate_samples: int = field(default=4, metadata={"help": "k completions per labelled prompt."})
    pass_rate_labels: str | None = field(default=None, metadata={
        "help": "Reuse the pass-rate labels of another curate run of this pool (its stages/labels_pass_rate dir) "
                "instead of sampling them (curate's pass_rate_labels)."})
    steps: int = field(default=4, metadata={"help": "GRPO steps per arm (2 prompts x 8 completions each)."})
    arms: list[str] = field(default_factory=lambda: ["vanilla", "saerl"], metadata={"help": "Arms to train."})
    seed: int = field(default=0, metadata={"help": "Seed of everything."})
    max_completion_length: int = field(default=64, metadata={"help": "GRPO and pass-rate completion budget."})
    heldout_limit: int = field(default=32, metadata={"help": "Held-out items scored at start and end."})
    grpo_config: str = field(default=str(REPO_ROOT / "recipes/smollm2-135m/grpo/config_saerl_lora.yaml"),
                             metadata={"help": "GRPO recipe the arms share (testbed v3: LoRA, correctness only)."})
    featurize_batch_size: int = field(default=16, metadata={"help": "Prompts per reader forward."})
    quality_train_size: int = field(default=200, metadata={"help": "Clean prompts for the quality probe."})
    n_clusters: int = field(default=6, metadata={"help": "SAE-space clusters."})


def ensure_sae(config: DemoConfig) -> tuple[str, dict]:
    """Reuse an SAE (given, or the full default one), else train a small one for the demo."""
    from saerl_hf.sae import TrainSAEConfig, default_sae_dir, train_sae

    if config.sae:
        return config.sae, {"reused": config.sae}
    try:
        full = default_sae_dir(config.model)
    except Exception:  # noqa: BLE001 - a non-alias model has no default SAE
        full = None
    if full is not None and Path(full).is_dir():
        return str(full), {"reused": str(full)}
    out = Path(config.output_dir) / "sae"
    if (out / "cfg.json").is_file():
        return str(out), {"reused": str(out)}
    start = time.perf_counter()
    sae_config = TrainSAEConfig(model=config.model, d_sae=config.d_sae, k=config.sae_k,
                                training_tokens=config.sae_tokens, output_dir=str(out), max_texts=config.sae_max_texts,
                                buffer_tokens=config.sae_buffer_tokens, seed=config.seed)
    if config.sae_max_texts is not None:  # tiny runs (tests): smaller buffers so the budget is reachable
        sae_config.buffer_tokens, sae_config.train_batch_size, sae_config.eval_tokens = 2048, 128, 1024
        sae_config.context_size = 128
    result = train_sae(sae_config)
    return str(result.output_dir), {"trained": str(out), "seconds": round(time.perf_counter() - start, 1),
                                    "metrics": getattr(result, "metrics", None)}


def ensure_warmstart(config: DemoConfig) -> tuple[str, dict]:
    """The policy every arm starts from: a given or the testbed's warm start, else a small LoRA SFT now.

    Without a warm start the 135M policy solves too few problems for GRPO groups to carry reward spread
    (issue 14); the small one (a few SFT steps) mostly teaches the answer format, the testbed's is the real one."""
    from saerl_hf.warmstart import WarmStartConfig, run_warmstart

    if config.warmstart:
        return config.warmstart, {"reused": config.warmstart}
    if config.model == "smollm2-135m" and (TESTBED_WARMSTART / "config.json").is_file():
        return str(TESTBED_WARMSTART), {"reused": str(TESTBED_WARMSTART), "kind": "the testbed's warm start"}
    ws_config = WarmStartConfig(model_name_or_path=config.model, num_examples=config.warmstart_examples,
                                seed=config.seed, output_dir=str(Path(config.output_dir) / "warmstart"))
    record = run_warmstart(ws_config)
    return record["model_path"], {"trained": record["model_path"], "kind": "a small warm start (demo)",
                                  "n_examples": record["n_examples"], "steps": record["steps"],
                                  "seconds": record["seconds"], "loss_first": record["loss_first"],
                                  "loss_last": record["loss_last"]}


def curate_settings(config: DemoConfig, sae: str, policy: str) -> dict:
    """The testbed v3 curate recipe at demo size (pass-rate labels of the warm policy on a small subset), with the
    package's default featurization (every active latent, mean+last read by each signal in its part)."""
    out = Path(config.output_dir)
    return {
        "output_dir": str(out / "curated"), "sources": config.sources, "holdout_per_source": config.holdout_per_source,
        "inject_noise": config.inject_noise, "seed": config.seed, "model": config.model, "sae": sae,
        "featurize_batch_size": config.featurize_batch_size, "chunk_size": 500,
        "difficulty_label": "pass_rate", "pass_rate_model": policy, "pass_rate_samples": config.pass_rate_samples,
        "pass_rate_max_new_tokens": config.max_completion_length, "difficulty_max_labels": config.pass_rate_prompts,
        "pass_rate_labels": config.pass_rate_labels,
        "quality_train_size": config.quality_train_size, "quality_threshold": 0.5, "n_clusters": config.n_clusters,
        "dedup": True, "curriculum": "saerl", "curriculum_mixing": 0.25, "prompts_per_batch": 2,
    }


def write_curate_yaml(config: DemoConfig, sae: str, policy: str) -> Path:
    path = Path(config.output_dir) / "curate.yaml"
    path.write_text(yaml.safe_dump(curate_settings(config, sae, policy)))
    return path


def run_demo(config: DemoConfig) -> dict:
    from saerl_hf.experiment import ExperimentConfig, run_experiment

    started = time.perf_counter()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/5] SAE for {config.model} ...", flush=True)
    sae, sae_info = ensure_sae(config)
    print("[2/5] SFT warm start (the policy every arm starts from) ...", flush=True)
    policy, warm_info = ensure_warmstart(config)
    print(f"[3/5] curate: featurize -> {_labels_text(config)} -> difficulty proxy / quality / clusters -> order ...",
          flush=True)
    experiment = ExperimentConfig(
        output_dir=str(out / "experiment"), curate_config=str(write_curate_yaml(config, sae, policy)),
        grpo_config=config.grpo_config, heldout_per_source=config.holdout_per_source,
        grpo_overrides=[f"max_steps={config.steps}", f"model_name_or_path={policy}",
                        f"max_completion_length={config.max_completion_length}", "heldout_every_steps=0",
                        f"heldout_max_new_tokens={config.max_completion_length}",
                        f"heldout_limit={config.heldout_limit}", "save_strategy=no", "warmup_steps=1",
                        f"dataset_limit={config.steps * 2 + 40}"],
        runs=[f"{arm}:{config.seed}" for arm in config.arms],
        accelerate_config=str(REPO_ROOT / "recipes/accelerate_configs/cpu.yaml"),
        report_path=str(out / "REPORT.md"),
        title=f"saerl-hf demo (not evidence; docs/RESULTS.md is): {config.steps} LoRA GRPO steps per arm from "
              f"{warm_info.get('kind', 'a warm start')} of {config.model}",
        testbed=_testbed_lines(config, warm_info),
    )
    print(f"[4/5] GRPO (LoRA, correctness reward): {', '.join(config.arms)} x {config.steps} steps ...", flush=True)
    results = run_experiment(experiment)
    print("[5/5] report ...", flush=True)
    curated = json.loads((out / "curated" / "summary.json").read_text())
    summary = {"seconds": round(time.perf_counter() - started, 1), "sae": sae_info, "warmstart": warm_info,
               "policy": policy, "curated_rows": curated["rows"], "curate_counts": curated["counts"],
               "analysis": results["analysis"]}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    _print_summary(out, summary, results)
    return summary


def _labels_text(config: DemoConfig) -> str:
    """Where the difficulty labels come from: sampled now, or reused (their prompts and k are the other run's)."""
    if config.pass_rate_labels:
        return f"pass-rate labels reused from {config.pass_rate_labels} (not sampled by this demo)"
    return f"the warm policy's pass rates (k={config.pass_rate_samples}) on {config.pass_rate_prompts} pool prompts"


def _testbed_lines(config: DemoConfig, warm_info: dict) -> list[str]:
    """What this demo is, for the report's 'The testbed' section."""
    warm = warm_info.get("reused") or warm_info.get("trained")
    return [
        "A demo of the testbed v3 design at small scale, not evidence: a handful of GRPO steps per arm and one "
        "seed cannot separate the arms. docs/RESULTS.md holds the comparison.",
        f"Policy: {warm_info.get('kind', 'a given warm start')} ({warm}); every arm starts from it.",
        f"Pool: {', '.join(config.sources)} + {config.inject_noise:.0%} injected noise; held-out "
        f"{config.holdout_per_source} per source, never trained on. Difficulty labels: {_labels_text(config)}; the "
        f"SAE proxy ranks the rest.",
        f"GRPO: LoRA r=16 lr 2e-4, 2 prompts x 8 completions, <= {config.max_completion_length} tokens, "
        f"correctness reward only, dapo loss, beta 0; {config.steps} steps per arm.",
    ]


def _print_summary(out: Path, summary: dict, results: dict) -> None:
    arms = results["analysis"].get("arms", {})
    warm = summary["warmstart"]
    print("\n" + "=" * 72)
    print(f"saerl-hf demo finished in {summary['seconds'] / 60:.1f} min: the testbed v3 design at small scale.")
    print("A demo, not evidence (a few steps, one seed): docs/RESULTS.md is the evidence.")
    print(f"  policy: {warm.get('kind', 'a given warm start')} ({summary['policy']})")
    for arm, info in sorted(arms.items(), key=lambda item: item[0] != "vanilla"):
        delta = f"  (Δ vs vanilla {info['delta_points']} pts)" if "delta_points" in info else ""
        print(f"  {arm:12s} held-out accuracy {100 * (info['start_accuracy'] or 0):5.1f}% -> "
              f"{100 * (info['final_accuracy'] or 0):5.1f}%{delta}")
    print("Where everything is:")
    print(f"  report + plot        {out / 'REPORT.md'}")
    print(f"  warm-started policy  {summary['policy']}")
    print(f"  curated dataset      {out / 'curated' / 'dataset'}   (columns: sae_idx, sae_val, difficulty, "
          "quality, cluster, curriculum_rank)")
    print(f"  pass-rate labels     {out / 'curated' / 'stages' / 'labels_pass_rate'}")
    print(f"  fitted probes        {out / 'curated' / 'probes'}   (safetensors + JSON)")
    print(f"  curate summary       {out / 'curated' / 'summary.json'}")
    print(f"  GRPO runs + adapters {out / 'experiment' / 'runs'}")
    print("Next: `saerl-hf push <curated dir> --repo_id <you>/<name> --hub_revision v1` publishes the curated set;")
    print("      the full testbed: python -m saerl_hf.experiment --config recipes/smollm2-135m/experiment/"
          "testbed_v3.yaml")
    print("=" * 72)


def cli_main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    from saerl_hf.configs import parse_config

    (config,) = parse_config(TrlParser((DemoConfig,), prog="saerl-hf demo"), argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_demo(config)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
