"""`saerl-hf demo`: the whole SAERL pipeline, small, on the embedded default (about 15 minutes on 2 cores).

train (or reuse) an SAE -> curate a pool (features, difficulty, quality, clusters, order) -> short GRPO runs
for vanilla and SAERL on the same pool -> held-out accuracy -> a short report with a plot. Every step is
resumable: rerunning the command reuses what is finished.
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


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults aim at ~10-15 minutes on 2 idle CPU cores with SmolLM2-135M (plus ~5 min
    once to train a small SAE when none is cached). A demo, not evidence: docs/RESULTS.md holds the comparison."""

    output_dir: str = field(default="outputs/demo", metadata={"help": "Everything the demo writes."})
    model: str = field(default="smollm2-135m", metadata={"help": "Reader and policy model (alias, dir, Hub id)."})
    sae: str | None = field(default=None, metadata={
        "help": "SAE to reuse; default: the full SAE `saerl-hf train-sae` writes, else a small demo SAE trained "
                "now."})
    sae_tokens: int = field(default=200_000, metadata={"help": "Token budget of the demo SAE (if one is trained)."})
    d_sae: int = field(default=2048, metadata={"help": "Width (latents, sae-lens' d_sae) of the demo SAE."})
    sae_k: int = field(default=32, metadata={"help": "k of the demo TopK SAE."})
    sae_max_texts: int | None = field(default=None, metadata={"help": "Cap on SAE training texts (tests)."})
    sources: list[str] = field(default_factory=lambda: [
        "mawps_singleop@150", "mawps_addsub@120", "mawps_multiarith@120", "asdiv@150", "svamp@120",
        "gsm8k:train@100"], metadata={"help": "Pool (name[:split][@limit])."})
    holdout_per_source: int = field(default=10, metadata={"help": "Held-out rows per source."})
    inject_noise: float = field(default=0.1, metadata={"help": "Share of injected low-quality prompts."})
    steps: int = field(default=8, metadata={"help": "GRPO steps per arm."})
    arms: list[str] = field(default_factory=lambda: ["vanilla", "saerl"], metadata={"help": "Arms to train."})
    seed: int = field(default=0, metadata={"help": "Seed of everything."})
    max_completion_length: int = field(default=64, metadata={"help": "GRPO completion budget."})
    heldout_limit: int = field(default=60, metadata={"help": "Held-out items scored at start and end."})
    grpo_config: str = field(default=str(REPO_ROOT / "recipes/smollm2-135m/grpo/config_saerl.yaml"),
                             metadata={"help": "GRPO recipe the arms share."})
    featurize_batch_size: int = field(default=16, metadata={"help": "Prompts per reader forward."})
    quality_train_size: int = field(default=300, metadata={"help": "Clean prompts for the quality probe."})
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
                                seed=config.seed)
    if config.sae_max_texts is not None:  # tiny runs (tests): smaller buffers so the budget is reachable
        sae_config.buffer_tokens, sae_config.train_batch_size, sae_config.eval_tokens = 2048, 128, 1024
        sae_config.context_size = 128
    result = train_sae(sae_config)
    return str(result.output_dir), {"trained": str(out), "seconds": round(time.perf_counter() - start, 1),
                                    "metrics": getattr(result, "metrics", None)}


def run_demo(config: DemoConfig) -> dict:
    from saerl_hf.experiment import ExperimentConfig, run_experiment

    started = time.perf_counter()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] SAE for {config.model} ...", flush=True)
    sae, sae_info = ensure_sae(config)
    curate_yaml = out / "curate.yaml"
    curate_yaml.write_text(yaml.safe_dump({
        "output_dir": str(out / "curated"), "sources": config.sources, "holdout_per_source": config.holdout_per_source,
        "inject_noise": config.inject_noise, "seed": config.seed, "model": config.model, "sae": sae,
        "featurize_batch_size": config.featurize_batch_size, "chunk_size": 500,
        "difficulty_label": "level", "difficulty_max_labels": 400,
        "source_levels": ["mawps_singleop=1", "mawps_addsub=1", "mawps_singleeq=2", "mawps_multiarith=2",
                          "asdiv=2", "svamp=3", "gsm8k=4"],
        "quality_train_size": config.quality_train_size, "n_clusters": config.n_clusters,
        "curriculum": "saerl", "prompts_per_batch": 2,
    }))
    print("[2/4] curate: featurize -> difficulty / quality / clusters -> order ...", flush=True)
    experiment = ExperimentConfig(
        output_dir=str(out / "experiment"), curate_config=str(curate_yaml), grpo_config=config.grpo_config,
        grpo_overrides=[f"max_steps={config.steps}", f"model_name_or_path={config.model}",
                        f"max_completion_length={config.max_completion_length}", "heldout_every_steps=0",
                        f"heldout_limit={config.heldout_limit}", "save_strategy=no",
                        f"dataset_limit={config.steps * 2 + 40}"],
        runs=[f"{arm}:{config.seed}" for arm in config.arms],
        accelerate_config=str(REPO_ROOT / "recipes/accelerate_configs/cpu.yaml"),
        report_path=str(out / "REPORT.md"),
        title=f"saerl-hf demo: {config.steps} GRPO steps on {config.model}",
    )
    print(f"[3/4] GRPO: {', '.join(config.arms)} x {config.steps} steps (accelerate launch) ...", flush=True)
    results = run_experiment(experiment)
    print("[4/4] report ...", flush=True)
    curated = json.loads((out / "curated" / "summary.json").read_text())
    summary = {"seconds": round(time.perf_counter() - started, 1), "sae": sae_info, "curated_rows": curated["rows"],
               "curate_counts": curated["counts"], "analysis": results["analysis"]}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    _print_summary(out, summary, results)
    return summary


def _print_summary(out: Path, summary: dict, results: dict) -> None:
    arms = results["analysis"].get("arms", {})
    print("\n" + "=" * 72)
    print(f"saerl-hf demo finished in {summary['seconds'] / 60:.1f} min")
    for arm, info in arms.items():
        print(f"  {arm:12s} held-out accuracy {100 * (info['start_accuracy'] or 0):5.1f}% -> "
              f"{100 * (info['final_accuracy'] or 0):5.1f}%  (Δ vs vanilla {info['delta_points']} pts)")
    print("Where everything is:")
    print(f"  report + plot        {out / 'REPORT.md'}")
    print(f"  curated dataset      {out / 'curated' / 'dataset'}   (columns: sae_idx, sae_val, difficulty, "
          "quality, cluster, curriculum_rank)")
    print(f"  fitted probes        {out / 'curated' / 'probes'}   (safetensors + JSON)")
    print(f"  curate summary       {out / 'curated' / 'summary.json'}")
    print(f"  GRPO runs + models   {out / 'experiment' / 'runs'}")
    print("Next: `saerl-hf push <curated dir> --repo_id <you>/<name> --hub_revision v1` publishes the curated set;")
    print("      docs/RESULTS.md holds the testbed comparison (python -m saerl_hf.experiment).")
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
