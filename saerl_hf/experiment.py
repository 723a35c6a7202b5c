"""SAERL vs vanilla GRPO, arm by arm and seed by seed, then one report regenerated from the saved run logs.

Every arm trains on the *same* scored pool (curate's unfiltered ``07_signals`` stage) with the same GRPO
settings; only the data order and the quality filter differ, so differences are the data engineering's.
Each run is a real ``accelerate launch`` of ``saerl_hf/grpo.py``; a finished run (its
``saerl_training.json`` exists) is skipped on rerun, so a killed experiment resumes run by run.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

# What differs between arms: the curriculum (order) and the quality filter. Nothing else.
ARMS: dict[str, dict] = {
    "vanilla": {"curriculum": "vanilla", "quality_threshold": None},
    "saerl": {"curriculum": "saerl", "quality_threshold": 0.5},
    "saerl_nofilter": {"curriculum": "saerl", "quality_threshold": None},
    "difficulty": {"curriculum": "difficulty", "quality_threshold": None},
    "filter_only": {"curriculum": "vanilla", "quality_threshold": 0.5},
    "adaptive": {"curriculum": "adaptive", "quality_threshold": 0.5},
}
ARM_LABELS = {
    "vanilla": "vanilla GRPO (shuffled, unfiltered)",
    "saerl": "SAERL (quality filter + clusters + mixing + easy-to-hard)",
    "saerl_nofilter": "SAERL order without the quality filter",
    "difficulty": "difficulty only (global easy-to-hard, unfiltered)",
    "filter_only": "quality filter only (shuffled)",
    "adaptive": "adaptive target difficulty (beyond the paper)",
}


class ExperimentError(ValueError):
    """A bad experiment setting; the message names the field and the fix."""


@dataclass
class ExperimentConfig:
    """Options of the comparison (YAML via ``--config``; fields overridable by flags)."""

    output_dir: str = field(default="outputs/experiment", metadata={"help": "Runs, logs and the report data."})
    curate_config: str = field(default="recipes/smollm2-135m/curate/testbed.yaml", metadata={
        "help": "Curate recipe that builds the scored pool and the held-out split."})
    curate_overrides: list[str] = field(default_factory=list, metadata={
        "help": "Extra curate flags, e.g. '--output_dir=x' (one string per flag)."})
    grpo_config: str = field(default="recipes/smollm2-135m/grpo/config_saerl.yaml", metadata={
        "help": "GRPO recipe whose settings every arm shares."})
    grpo_overrides: list[str] = field(default_factory=list, metadata={
        "help": "key=value overrides applied to every arm (e.g. 'max_steps=60' 'learning_rate=2e-5')."})
    runs: list[str] = field(default_factory=lambda: ["vanilla:0", "saerl:0", "vanilla:1", "saerl:1", "vanilla:2",
                                                     "saerl:2", "difficulty:0"], metadata={
        "help": f"arm:seed,seed,... in launch order (interleave arms so a cut-short run stays balanced); arms: "
                f"{', '.join(ARMS)}."})
    accelerate_config: str = field(default="recipes/accelerate_configs/cpu.yaml", metadata={
        "help": "accelerate config every run is launched with."})
    parallel: int = field(default=1, metadata={
        "help": "Runs trained side by side; each gets cores // parallel torch threads (2 cores: parallel 2 "
                "with one thread each beats one run with two threads)."})
    heldout_per_source: int = field(default=30, metadata={
        "help": "Held-out rows per source (from curate's holdout, interleaved so every source is scored)."})
    shared_step0: bool = field(default=True, metadata={
        "help": "Score the untrained policy on the held-out set once and use it as step 0 of every run "
                "(greedy decoding makes it identical across runs)."})
    probe_benchmark: str | None = field(default=None, metadata={
        "help": "A harder benchmark every run's final model (and the untrained policy) is scored on once, e.g. "
                "gsm8k: its test split, never trained on."})
    probe_limit: int = field(default=100, metadata={"help": "Items of the probe benchmark (the first N)."})
    probe_max_new_tokens: int = field(default=64, metadata={"help": "Greedy tokens per probe item."})
    report_path: str = field(default="docs/RESULTS.md", metadata={"help": "Markdown report (PNGs beside it)."})
    title: str = field(default="SAERL vs vanilla GRPO on the CPU testbed", metadata={"help": "Report title."})
    companions: list[str] = field(default_factory=list, metadata={
        "help": "Other experiments (their YAML), summarised in a section of this report from their saved "
                "results.json, e.g. the transfer experiment beside the main one."})
    history: list[str] = field(default_factory=list, metadata={
        "help": "Earlier designs of this comparison and what they gave, one entry each (the report lists them "
                "under 'What was tried', so a regenerated page keeps them)."})

    def run_list(self) -> list[tuple[str, int]]:
        out = []
        for item in self.runs:
            arm, sep, seeds = item.partition(":")
            if arm not in ARMS or not sep:
                raise ExperimentError(f"runs entry '{item}': expected 'arm:seed,seed' with arm in {', '.join(ARMS)}.")
            out += [(arm, int(s)) for s in seeds.split(",") if s.strip()]
        return out


def _parse_value(text: str):
    """YAML scalar, except that YAML 1.1 words like ``no``/``off`` stay strings (``save_strategy=no``)."""
    value = yaml.safe_load(text)
    if isinstance(value, bool) and text.strip().lower() not in ("true", "false"):
        return text.strip()
    return value


def curate_output(config: ExperimentConfig) -> Path:
    values = yaml.safe_load(Path(config.curate_config).read_text())
    for flag in config.curate_overrides:
        key, _, value = flag.lstrip("-").partition("=")
        if key == "output_dir":
            values["output_dir"] = value
    return Path(values["output_dir"])


def run_curate_stage(config: ExperimentConfig) -> Path:
    """Curate (or resume curating) the pool; every arm then reads its unfiltered scored stage."""
    from trl import TrlParser

    from saerl_hf.curate import CurateConfig, run_curate

    args = ["--config", config.curate_config, *config.curate_overrides]
    (curate_config,) = TrlParser((CurateConfig,)).parse_args_and_config(args)
    run_curate(curate_config, command="saerl-hf curate " + " ".join(shlex.quote(a) for a in args))
    return Path(curate_config.output_dir)


def build_heldout(config: ExperimentConfig, curated: Path) -> Path:
    """A stratified held-out set: ``heldout_per_source`` rows of each source, interleaved round-robin."""
    from datasets import load_from_disk

    out = Path(config.output_dir) / "heldout"
    if (out / "dataset_info.json").is_file():
        return out
    holdout = load_from_disk(str(curated / "holdout"))
    by_source: dict[str, list[int]] = {}
    for i, source in enumerate(holdout["source"]):
        by_source.setdefault(source, []).append(i)
    picked = [rows[: config.heldout_per_source] for rows in by_source.values()]
    order = [rows[j] for j in range(max(map(len, picked))) for rows in picked if j < len(rows)]
    holdout.select(order).flatten_indices().save_to_disk(str(out))
    return out


def step0_accuracy(config: ExperimentConfig, heldout: Path, grpo_values: dict) -> dict:
    """Held-out accuracy of the untrained policy, computed once with the runs' own evaluation settings."""
    from datasets import load_from_disk

    from saerl_hf.evaluation import evaluate_model
    from saerl_hf.models import load_model, load_tokenizer

    path = Path(config.output_dir) / "step0.json"
    if path.is_file():
        return json.loads(path.read_text())
    model_name = grpo_values["model_name_or_path"]
    rows = [dict(r) for r in load_from_disk(str(heldout))]
    rows = rows[: int(grpo_values.get("heldout_limit", len(rows)))]
    start = time.perf_counter()
    result = evaluate_model(load_model(model_name), load_tokenizer(model_name), ["heldout"],
                            datasets={"heldout": rows}, max_new_tokens=int(grpo_values.get("heldout_max_new_tokens", 64)),
                            batch_size=int(grpo_values.get("heldout_batch_size", 16)), progress=True, make_plots=False)
    bench = result["benchmarks"]["heldout"]
    record = {"step": 0, "accuracy": bench["accuracy"], "n": bench["n_items"],
              "seconds": round(time.perf_counter() - start, 1)}
    path.write_text(json.dumps(record))
    return record


def base_grpo_values(config: ExperimentConfig) -> dict:
    values = yaml.safe_load(Path(config.grpo_config).read_text())
    for item in config.grpo_overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ExperimentError(f"grpo_overrides entry '{item}' is not key=value.")
        values[key.strip()] = _parse_value(value)
    return values


def run_yaml(config: ExperimentConfig, arm: str, seed: int, curated: Path) -> dict:
    """The GRPO settings of one run: the shared recipe + overrides + the arm's order/filter + the seed."""
    values = base_grpo_values(config)
    values.update(ARMS[arm])
    values.update({
        "dataset_name": str(curated / "stages" / "07_signals"),
        "heldout_dataset_name": str(Path(config.output_dir) / "heldout"),
        "heldout_on_start": not config.shared_step0,
        "seed": seed,
        "curriculum_seed": seed,
        "output_dir": str(Path(config.output_dir) / "runs" / arm / f"seed{seed}"),
    })
    return values


def launch_run(config: ExperimentConfig, arm: str, seed: int, curated: Path) -> Path:
    """One ``accelerate launch`` GRPO run; skipped when its results already exist."""
    values = run_yaml(config, arm, seed, curated)
    out = Path(values["output_dir"])
    if (out / "saerl_training.json").is_file():
        logger.info("run %s seed %d: done before, skipping", arm, seed)
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.yaml").write_text(yaml.safe_dump(values, sort_keys=True))
    if any(out.glob("checkpoint-*")):
        values["resume_from_checkpoint"] = "last"
        (out / "run_config.yaml").write_text(yaml.safe_dump(values, sort_keys=True))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config.accelerate_config,
           str(REPO_ROOT / "saerl_hf" / "grpo.py"), "--config", str(out / "run_config.yaml")]
    logger.info("run %s seed %d: %s", arm, seed, " ".join(cmd))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), WANDB_MODE="disabled")
    if config.parallel > 1:
        threads = str(max(1, (os.cpu_count() or 1) // config.parallel))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    start = time.perf_counter()
    with open(out / "train.log", "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise ExperimentError(f"run {arm} seed {seed} failed (exit {proc.returncode}); see {out / 'train.log'}.")
    (out / "wall_clock.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}))
    for checkpoint in out.glob("checkpoint-*"):  # keep the report data, not 0.5 GB per checkpoint
        import shutil

        shutil.rmtree(checkpoint, ignore_errors=True)
    return out


def probe_model(config: ExperimentConfig, model: str, out: Path) -> dict:
    """Score one model on the probe benchmark's test split once (``out`` holds the record; reruns reuse it)."""
    if out.is_file():
        return json.loads(out.read_text())
    from saerl_hf.evaluation import evaluate_model

    start = time.perf_counter()
    result = evaluate_model(model, benchmarks=[config.probe_benchmark], split="test", limit=config.probe_limit,
                            max_new_tokens=config.probe_max_new_tokens, batch_size=32, progress=True, make_plots=False)
    bench = result["benchmarks"][config.probe_benchmark]
    record = {"benchmark": config.probe_benchmark, "accuracy": bench["accuracy"], "n": bench["n_items"],
              "max_new_tokens": config.probe_max_new_tokens, "seconds": round(time.perf_counter() - start, 1)}
    out.write_text(json.dumps(record))
    return record


def probe_runs(config: ExperimentConfig) -> None:
    """The probe for the untrained policy and every finished run that kept its final model."""
    if not config.probe_benchmark:
        return
    probe_model(config, base_grpo_values(config)["model_name_or_path"], Path(config.output_dir) / "probe_step0.json")
    for summary in sorted(Path(config.output_dir).glob("runs/*/seed*/saerl_training.json")):
        if (summary.parent / "config.json").is_file():
            logger.info("probe %s on %s", config.probe_benchmark, summary.parent)
            probe_model(config, str(summary.parent), summary.parent / "probe.json")


def run_experiment(config: ExperimentConfig) -> dict:
    """Curate once, run every arm x seed (resumable), then write the report."""
    from concurrent.futures import ThreadPoolExecutor

    curated = run_curate_stage(config)
    heldout = build_heldout(config, curated)
    if config.shared_step0:
        step0_accuracy(config, heldout, base_grpo_values(config))
    runs = config.run_list()
    if config.parallel > 1:
        with ThreadPoolExecutor(max_workers=config.parallel) as pool:
            for done in pool.map(lambda run: launch_run(config, run[0], run[1], curated), runs):
                logger.info("finished %s", done)
    else:
        for i, (arm, seed) in enumerate(runs, 1):
            logger.info("[%d/%d] %s seed %d", i, len(runs), arm, seed)
            launch_run(config, arm, seed, curated)
    probe_runs(config)
    return write_report(config)


# ------------------------------------------------------------------------------------------- report


def load_run(path: Path) -> dict:
    """Held-out curve, reward curve, settings and wall clock of one finished run."""
    summary = json.loads((path / "saerl_training.json").read_text())
    state_path = path / "trainer_state.json"
    log_history = json.loads(state_path.read_text())["log_history"] if state_path.is_file() else []
    rewards = {
        name: [(e["step"], float(e[key])) for e in log_history if key in e and "step" in e]
        for name, key in (("total", "reward"), ("correctness", "rewards/correctness_reward/mean"),
                          ("format", "rewards/format_reward/mean"), ("length", "completions/mean_length"))
    }
    curve = []
    for entry in summary.get("heldout_curve", []):
        acc = next((v for k, v in entry.items() if k.endswith("/accuracy")), None)
        if acc is not None:
            curve.append((int(entry["step"]), float(acc)))
    wall = json.loads((path / "wall_clock.json").read_text())["seconds"] if (path / "wall_clock.json").is_file() \
        else summary.get("metrics", {}).get("train_runtime")
    probe = json.loads((path / "probe.json").read_text()) if (path / "probe.json").is_file() else None
    return {"curve": curve, "rewards": rewards, "wall_clock_s": wall, "metrics": summary.get("metrics", {}),
            "probe": probe,
            "num_train_rows": summary.get("num_train_rows"), "quality_filter": summary.get("quality_filter"),
            "heldout_n": next((v for e in summary.get("heldout_curve", [])[:1] for k, v in e.items()
                               if k.endswith("/n")), None)}


def collect(output_dir: Path) -> dict[str, dict[int, dict]]:
    """Every finished run; the shared step-0 score (if any) is put at the start of each curve."""
    runs: dict[str, dict[int, dict]] = {}
    step0_path = Path(output_dir) / "step0.json"
    step0 = json.loads(step0_path.read_text()) if step0_path.is_file() else None
    for summary in sorted(Path(output_dir).glob("runs/*/seed*/saerl_training.json")):
        arm, seed = summary.parent.parent.name, int(summary.parent.name.removeprefix("seed"))
        run = load_run(summary.parent)
        if step0 is not None and all(step != 0 for step, _ in run["curve"]):
            run["curve"].insert(0, (0, float(step0["accuracy"])))
            run["heldout_n"] = run["heldout_n"] or step0["n"]
        runs.setdefault(arm, {})[seed] = run
    return runs


def _seed_mean(seeds: dict[int, dict], name: str, steps: slice) -> float:
    """Mean over seeds of a logged per-step series (``name`` in load_run's ``rewards``) over a slice of steps."""
    return float(np.mean([np.mean([v for _, v in r["rewards"][name][steps]] or [np.nan]) for r in seeds.values()]))


def aggregate(runs: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Mean and spread over seeds of the held-out curve, at the steps every seed of an arm evaluated."""
    out = {}
    for arm, seeds in runs.items():
        step_sets = [dict(r["curve"]) for r in seeds.values()]
        steps = sorted(set.intersection(*(set(s) for s in step_sets))) if step_sets else []
        acc = np.array([[s[step] for step in steps] for s in step_sets]) if steps else np.zeros((0, 0))
        out[arm] = {
            "steps": steps,
            "mean": acc.mean(axis=0).tolist() if acc.size else [],
            "std": acc.std(axis=0).tolist() if acc.size else [],
            "per_seed": {seed: dict(r["curve"]) for seed, r in seeds.items()},
            "seeds": sorted(seeds),
            "wall_clock_s": float(np.mean([r["wall_clock_s"] or 0 for r in seeds.values()])),
            "seconds_per_step": float(np.mean([r["metrics"].get("seconds_per_step", np.nan) for r in seeds.values()])),
            "num_train_rows": [r["num_train_rows"] for r in seeds.values()][0],
            "late_rewards": {name: _seed_mean(seeds, name, slice(-10, None)) for name in ("correctness", "format")},
            "all_rewards": {name: _seed_mean(seeds, name, slice(None)) for name in ("correctness", "format")},
            "heldout_n": [r["heldout_n"] for r in seeds.values()][0],
            "probe": [r["probe"]["accuracy"] for r in seeds.values() if r.get("probe")],
            "completion_length": {"first_10": _seed_mean(seeds, "length", slice(10)),
                                  "last_10": _seed_mean(seeds, "length", slice(-10, None))},
        }
    return out


def steps_to_reach(steps: list[int], mean: list[float], target: float) -> int | None:
    """First evaluated step whose mean held-out accuracy reaches ``target`` (None: never)."""
    for step, value in zip(steps, mean):
        if value >= target - 1e-12:
            return step
    return None


def write_report(config: ExperimentConfig) -> dict:
    """docs/RESULTS.md (+ PNG curves) from the saved run logs only: rerunning it changes nothing."""
    from saerl_hf.plots import plot_learning_curves

    runs = collect(Path(config.output_dir))
    if not runs:
        raise ExperimentError(f"No finished runs under {config.output_dir}/runs. Fix: run the experiment first.")
    agg = aggregate(runs)
    report = Path(config.report_path)
    image = report.with_name(report.stem.lower() + "_curves.png")
    plot_learning_curves({arm: (a["steps"], a["mean"], a["std"]) for arm, a in agg.items()}, image,
                         title=config.title, labels=ARM_LABELS)
    analysis = compare_arms(agg)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_report(config, agg, analysis, image.name))
    data = {"aggregate": agg, "analysis": analysis, "config": asdict(config)}
    (Path(config.output_dir) / "results.json").write_text(json.dumps(data, indent=1, default=str))
    return data


def compare_arms(agg: dict[str, dict]) -> dict:
    """Accuracy at equal (final) steps vs vanilla, and steps each arm needs to reach vanilla's final accuracy."""
    if "vanilla" not in agg or not agg["vanilla"]["steps"]:
        return {}
    base = agg["vanilla"]
    target = base["mean"][-1]
    final_step = base["steps"][-1]
    n = base.get("heldout_n") or 0
    # one seed's accuracy on n items has binomial noise; a difference of two such is sqrt(2) wider
    noise = float(np.sqrt(2 * max(target, 1.0 / max(n, 1)) * (1 - target) / max(n, 1))) if n else None
    out = {"target_accuracy": target, "final_step": final_step, "noise_2se": None if noise is None else 2 * noise,
           "vanilla_improved": bool(base["mean"]) and target > base["mean"][0], "arms": {}}
    for arm, a in agg.items():
        at_final = dict(zip(a["steps"], a["mean"])).get(final_step)
        # "steps to vanilla's final accuracy" only means something if vanilla ended above where it started
        improved = bool(base["mean"]) and target > base["mean"][0]
        reach = steps_to_reach(a["steps"], a["mean"], target) if improved else None
        out["arms"][arm] = {
            "final_accuracy": at_final,
            "delta_points": None if at_final is None else round(100 * (at_final - target), 2),
            "steps_to_vanilla_final": reach,
            "step_ratio": None if reach is None or not final_step else round(reach / final_step, 3),
            "start_accuracy": a["mean"][0] if a["mean"] else None,
        }
        seed_se = _seed_se(a, base, final_step) if arm != "vanilla" else None
        out["arms"][arm]["seed_2se"] = None if seed_se is None else 2 * seed_se
        if arm != "vanilla" and at_final is not None and noise is not None:
            gap = at_final - target
            bound = 2 * max(noise, seed_se or 0.0)
            out["arms"][arm]["verdict"] = ("tie (within ±2 SE of the held-out and seed noise)" if abs(gap) <= bound
                                           else ("win" if gap > 0 else "loss"))
    return out


def _seed_se(a: dict, base: dict, step: int) -> float | None:
    """Standard error of the difference of two arms' mean accuracy at ``step`` from their spread over seeds
    (None unless both arms have at least 2 seeds there)."""
    ours = [c[step] for c in a["per_seed"].values() if step in c]
    theirs = [c[step] for c in base["per_seed"].values() if step in c]
    if len(ours) < 2 or len(theirs) < 2:
        return None
    return float(np.sqrt(np.var(ours, ddof=1) / len(ours) + np.var(theirs, ddof=1) / len(theirs)))


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def render_report(config: ExperimentConfig, agg: dict, analysis: dict, image: str) -> str:
    lines = [f"# {config.title}", "",
             f"Regenerate this page from the saved run logs: `python -m saerl_hf.experiment --config <yaml> "
             f"--report_only true` (runs: `{config.output_dir}/runs`).", "",
             f"![held-out accuracy, mean ± std over seeds]({image})", "",
             "| arm | seeds | train rows | held-out n | acc. at step 0 | final acc. (mean ± std) | Δ vs vanilla (pts) "
             "| steps to vanilla's final | s/step | wall clock / run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    arms = analysis.get("arms", {})
    for arm, a in agg.items():
        info = arms.get(arm, {})
        final = f"{_pct(a['mean'][-1])} ± {_pct(a['std'][-1])}" if a["mean"] else "n/a"
        ratio = info.get("step_ratio")
        reach = info.get("steps_to_vanilla_final")
        if not analysis.get("vanilla_improved", True):
            reach_text = "n/a (vanilla ended below its start)"
        else:
            reach_text = "never" if reach is None and info else (f"{reach} ({ratio:.0%})" if ratio is not None else "-")
        lines.append(
            f"| {ARM_LABELS.get(arm, arm)} | {','.join(map(str, a['seeds']))} | {a['num_train_rows']} | "
            f"{a['heldout_n']} | {_pct(info.get('start_accuracy'))} | {final} | {info.get('delta_points', 'n/a')} "
            f"| {reach_text} | {a['seconds_per_step']:.1f} | {a['wall_clock_s'] / 60:.1f} min |"
        )
    if analysis:
        lines += ["", "## Verdict", ""]
        for arm, info in arms.items():
            if "verdict" in info:
                seeds = (f", ±{100 * info['seed_2se']:.1f} points at 2 SE over seeds"
                         if info.get("seed_2se") is not None else ", one seed: no seed spread")
                lines.append(f"- **{ARM_LABELS.get(arm, arm)} vs vanilla: {info['verdict']}** — Δ {info['delta_points']} "
                             f"points at step {analysis['final_step']} (noise ±{100 * analysis['noise_2se']:.1f} points "
                             f"at 2 SE for n={agg['vanilla']['heldout_n']}{seeds}); steps to vanilla's final accuracy: "
                             + (("never within " if info["steps_to_vanilla_final"] is None
                                 else f"{info['steps_to_vanilla_final']} of ") + f"{analysis['final_step']} steps."
                                if analysis.get("vanilla_improved") else "n/a (vanilla ended below its start)."))
        finished = {arm: a["seeds"] for arm, a in agg.items()}
        lines.append(f"- Planned runs: {config.runs}; finished: {finished}.")
        correct = max(a["late_rewards"]["correctness"] for a in agg.values())
        if correct < 0.05:
            fmt = [a["late_rewards"]["format"] for a in agg.values()]
            lines.append(f"- What it means: the correctness reward stayed below 5% of sampled completions in every arm "
                         f"(at most {100 * correct:.1f}% over the last 10 steps), while the format reward ended at "
                         f"{min(fmt):.2f}-{max(fmt):.2f}: at this budget GRPO reinforces the answer format, not the "
                         f"arithmetic, so the data order and filter have almost nothing to act on. This run cannot "
                         f"confirm or refute the paper's claim.")
        few = [arm for arm, a in agg.items() if len(a["seeds"]) < 3]
        if few:
            lines.append(f"- Fewer than 3 seeds for {', '.join(few)}: the spread over seeds is barely known there, so "
                         f"no difference involving {'it' if len(few) == 1 else 'them'} is established even where it "
                         f"exceeds the held-out binomial noise.")
    lines += ["", "Training signal (per-step mean reward and completion length of the sampled completions, averaged "
              "over seeds):", "",
              "| arm | correctness, all steps | correctness, last 10 | format, all steps | format, last 10 "
              "| tokens/completion, first 10 | tokens/completion, last 10 |",
              "|---|---|---|---|---|---|---|"]
    for arm, a in agg.items():
        length = a.get("completion_length", {})
        lines.append(f"| {arm} | {a['all_rewards']['correctness']:.4f} | {a['late_rewards']['correctness']:.4f} | "
                     f"{a['all_rewards']['format']:.4f} | {a['late_rewards']['format']:.4f} | "
                     f"{length.get('first_10', float('nan')):.1f} | {length.get('last_10', float('nan')):.1f} |")
    lines += probe_lines(config, agg)
    lines += ["", "Per-seed held-out accuracy (%) by step:", ""]
    for arm, a in agg.items():
        for seed, curve in sorted(a["per_seed"].items()):
            points = ", ".join(f"{step}: {100 * acc:.1f}" for step, acc in sorted(curve.items()))
            lines.append(f"- {arm} seed {seed}: {points}")
    for companion in config.companions:
        lines += ["", *companion_section(companion, report_dir=Path(config.report_path).parent)]
    if config.history:
        lines += ["", "## What was tried", ""] + [f"- {item}" for item in config.history]
    lines += ["", "## Settings", "", f"- curate recipe: `{config.curate_config}` {config.curate_overrides}",
              f"- GRPO recipe shared by every arm: `{config.grpo_config}`, overrides {config.grpo_overrides}",
              f"- arms: {', '.join(f'{arm} = {ARMS[arm]}' for arm in agg)}",
              f"- runs: {config.runs}; accelerate config `{config.accelerate_config}`"]
    return "\n".join(lines) + "\n"


def probe_lines(config: ExperimentConfig, agg: dict) -> list[str]:
    """The harder probe (e.g. GSM8K test) of the final models, beside the untrained policy."""
    step0_path = Path(config.output_dir) / "probe_step0.json"
    if not config.probe_benchmark or not step0_path.is_file():
        return []
    step0 = json.loads(step0_path.read_text())
    lines = ["", f"Harder probe: {step0['benchmark']} test, first {step0['n']} items, greedy, "
             f"{step0['max_new_tokens']} new tokens, final models (untrained policy: {_pct(step0['accuracy'])}%):", "",
             "| arm | seeds probed | accuracy (mean ± std) | per seed |", "|---|---|---|---|"]
    for arm, a in agg.items():
        if a["probe"]:
            lines.append(f"| {arm} | {len(a['probe'])} | {_pct(float(np.mean(a['probe'])))} ± "
                         f"{_pct(float(np.std(a['probe'])))} | {', '.join(_pct(x) for x in a['probe'])} |")
    return lines


def companion_section(yaml_path: str, report_dir: Path) -> list[str]:
    """A short summary of another experiment (e.g. transfer to another policy) from its saved results.json."""
    values = yaml.safe_load(Path(yaml_path).read_text()) or {}
    title = values.get("title", yaml_path)
    results = Path(values.get("output_dir", "")) / "results.json"
    lines = [f"## {title}", ""]
    if not results.is_file():
        return lines + [f"Not run yet: `python -m saerl_hf.experiment --config {yaml_path}`."]
    data = json.loads(results.read_text())
    agg, analysis = data["aggregate"], data.get("analysis") or {}
    report = Path(values.get("report_path", ""))
    link = os.path.relpath(report, report_dir) if report.name else None
    lines += [f"Experiment `{yaml_path}`" + (f"; full report: [{report.name}]({link})." if link else "."), "",
              "| arm | seeds | acc. at step 0 | final acc. (mean ± std) | Δ vs vanilla (pts) | verdict |",
              "|---|---|---|---|---|---|"]
    for arm, a in agg.items():
        info = analysis.get("arms", {}).get(arm, {})
        final = f"{_pct(a['mean'][-1])} ± {_pct(a['std'][-1])} (step {a['steps'][-1]})" if a["mean"] else "n/a"
        lines.append(f"| {ARM_LABELS.get(arm, arm)} | {','.join(map(str, a['seeds']))} | "
                     f"{_pct(info.get('start_accuracy'))} | {final} | {info.get('delta_points', 'n/a')} | "
                     f"{info.get('verdict', '-')} |")
    late = {arm: a["late_rewards"]["correctness"] for arm, a in agg.items()}
    lines += ["", "Correctness reward of sampled completions over the last 10 steps: "
              + ", ".join(f"{arm} {100 * v:.1f}%" for arm, v in late.items()) + "."]
    return lines


def cli_main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    @dataclass
    class ReportOnly:
        report_only: bool = field(default=False, metadata={"help": "Only rebuild the report from saved runs."})
        probe_only: bool = field(default=False, metadata={
            "help": "Only score the probe benchmark on finished runs (no training), then rebuild the report."})

    parser = TrlParser((ExperimentConfig, ReportOnly), prog="python -m saerl_hf.experiment")
    config, flags = parser.parse_args_and_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if flags.probe_only:
        probe_runs(config)
    data = write_report(config) if flags.report_only or flags.probe_only else run_experiment(config)
    print(json.dumps(data["analysis"], indent=1, default=str))
    print(f"report: {config.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
