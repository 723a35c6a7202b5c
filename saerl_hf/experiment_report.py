"""docs/RESULTS*.md from the saved run logs of an experiment (:mod:`saerl_hf.experiment`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from saerl_hf.experiment import ARM_LABELS, ARMS, ExperimentConfig, ExperimentError, results_root
from saerl_hf.experiment_stats import aggregate, collect, compare_arms


def write_report(config: ExperimentConfig) -> dict:
    """docs/RESULTS.md (+ PNG curves) from the saved run logs only: rerunning it changes nothing."""
    from saerl_hf.plots import plot_learning_curves

    root = results_root(config)
    runs = collect(root)
    if not runs:
        raise ExperimentError(f"No finished runs under {root}/runs. Fix: run the experiment first.")
    agg = aggregate(runs)
    report = Path(config.report_path)
    image = report.with_name(report.stem.lower() + "_curves.png")
    plot_learning_curves({arm: (a["steps"], a["mean"], a["std"]) for arm, a in agg.items()}, image,
                         title=config.title, labels=ARM_LABELS)
    analysis = compare_arms(agg)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_report(config, agg, analysis, image.name))
    data = {"aggregate": agg, "analysis": analysis, "config": asdict(config)}
    (root / "results.json").write_text(json.dumps(data, indent=1, default=str))
    return data


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def render_report(config: ExperimentConfig, agg: dict, analysis: dict, image: str) -> str:
    lines = [f"# {config.title}", "",
             f"Regenerate this page from the saved run logs: `python -m saerl_hf.experiment --config <yaml> "
             f"--report_only true` (run logs: `{results_root(config)}/runs`).", "",
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
    lines += testbed_lines(config)
    lines += gate_lines(agg)
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
              "| tokens/completion, first 10 | tokens/completion, last 10 | groups without reward spread, first 10 "
              "| last 10 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for arm, a in agg.items():
        length, zero = a.get("completion_length", {}), a.get("zero_std", {})
        lines.append(f"| {arm} | {a['all_rewards']['correctness']:.4f} | {a['late_rewards']['correctness']:.4f} | "
                     f"{a['all_rewards']['format']:.4f} | {a['late_rewards']['format']:.4f} | "
                     f"{length.get('first_10', float('nan')):.1f} | {length.get('last_10', float('nan')):.1f} | "
                     f"{zero.get('first_10', float('nan')):.2f} | {zero.get('last_10', float('nan')):.2f} |")
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


def testbed_lines(config: ExperimentConfig) -> list[str]:
    """The testbed's description (from the recipe) and the difficulty proxy's check against measured pass rates."""
    items = list(config.testbed)
    path = results_root(config) / "proxy_check.json"
    if path.is_file():
        check = json.loads(path.read_text())
        rho = check["spearman_difficulty_vs_pass_rate"]
        items.append(f"Difficulty proxy vs the policy's measured pass rates (k=8, `{config.calibration_json}`) on "
                     f"{check['n']} pool problems outside its {check['n_labelled']} labelled prompts: Spearman "
                     + ("n/a" if rho is None else f"{rho:+.2f} (p={check['p_value']:.2f}; a good proxy is strongly "
                        "negative: harder = lower pass rate)") + f"; problems per source {check['by_source']}.")
    return ["", "## The testbed", ""] + [f"- {item}" for item in items] if items else []


def gate_lines(agg: dict) -> list[str]:
    """The learning gate per arm: final minus step-0 held-out accuracy vs 2 SE (paired over items + seeds)."""
    rows = [(arm, a["gate"]) for arm, a in agg.items() if a.get("gate")]
    if not rows:
        return []
    lines = ["", "## Did it learn? (the gate: final minus step-0 accuracy > 2 SE, mean of >= 3 seeds)", "",
             "| arm | seeds | gain (pts) | 2 SE (pts) | SE kind | per seed (pts) | passed |", "|---|---|---|---|---|---|---|"]
    for arm, g in rows:
        lines.append(f"| {arm} | {g['seeds']} | {100 * g['gain']:+.1f} | {200 * g['se']:.1f} | "
                     f"{'paired items + seeds' if g['paired'] else 'binomial + seeds'} | "
                     f"{', '.join(f'{100 * d:+.1f}' for d in g['per_seed_gain'])} | "
                     f"{'yes' if g['passed'] else ('no' if g['seeds'] >= 3 else 'not yet (< 3 seeds)')} |")
    return lines


def probe_lines(config: ExperimentConfig, agg: dict) -> list[str]:
    """The harder probe (e.g. GSM8K test) of the final models, beside the untrained policy."""
    step0_path = results_root(config) / "probe_step0.json"
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
    results = Path(values.get("results_dir") or values.get("output_dir", "")) / "results.json"
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
