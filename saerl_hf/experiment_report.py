"""docs/RESULTS*.md from the saved run logs of an experiment (:mod:`saerl_hf.experiment`).

The page's text lives in ``saerl_hf/templates/experiment_report.md`` (and ``experiment_companion.md``);
this module only picks the numbers out of the aggregated run logs, so ``--report_only`` rewrites the page
without training anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from saerl_hf.experiment import ARM_LABELS, ARMS, ExperimentConfig, ExperimentError, results_root
from saerl_hf.experiment_curves import STEPS_GOAL, fixed_target, freeze_target
from saerl_hf.experiment_stats import aggregate, collect, compare_arms

TEMPLATE = "experiment_report.md"  # package data under saerl_hf/templates/
COMPANION_TEMPLATE = "experiment_companion.md"  # one companion experiment, included by TEMPLATE


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
    analysis = analyse(config, runs, agg, freeze=True)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_report(config, agg, analysis, image.name))
    data = {"aggregate": agg, "analysis": analysis, "config": asdict(config)}
    (root / "results.json").write_text(json.dumps(data, indent=1, default=str))
    return data


def analyse(config: ExperimentConfig, runs: dict, agg: dict, freeze: bool = False) -> dict:
    """The comparison against the fixed target (``target.json``; with ``freeze`` it is written once vanilla has
    its seeds, so later arms cannot move it)."""
    root = results_root(config)
    target = freeze_target(root, runs) if freeze else fixed_target(root, runs)
    return compare_arms(agg, runs, target)


def labelling_cost(config: ExperimentConfig) -> dict | None:
    """Seconds per 1,000 prompts each arm's labels cost (``labelling_cost.json``), when it was measured."""
    path = results_root(config) / "labelling_cost.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _steps(x) -> str:
    """Steps-to-target: None (the fit never reaches the target) as "never"."""
    return "never" if x is None else f"{x:.0f}"


def _ci(bounds, scale: float = 1.0, fmt: str = ".0f", suffix: str = "") -> str:
    """A bootstrap interval as "[low, high]"; an open end (never reached) as "never"."""
    if bounds is None:
        return "n/a"
    return "[" + ", ".join("never" if b is None else format(scale * b, fmt) + suffix for b in bounds) + "]"


def _render(template: str, **context) -> str:
    """Render a page template with the project's one Jinja environment (templating.environment), plus its own filters."""
    from saerl_hf.templating import environment

    env = environment()
    env.filters["pct"] = _pct  # a fraction as a percentage with one decimal, None as "n/a"
    env.filters["steps"] = _steps
    env.filters["ci"] = _ci
    return env.get_template(template).render(labels=ARM_LABELS, nan=float("nan"), **context)


def render_report(config: ExperimentConfig, agg: dict, analysis: dict, image: str) -> str:
    """The page (``templates/experiment_report.md``): every number comes from ``agg`` and ``analysis``."""
    return _render(TEMPLATE, **report_context(config, agg, analysis, image))


def report_context(config: ExperimentConfig, agg: dict, analysis: dict, image: str) -> dict:
    """What the template shows: the aggregated run logs plus the few values derived from them."""
    late = [a["late_rewards"] for a in agg.values()]
    return {
        "config": config, "agg": agg, "analysis": analysis, "arms": analysis.get("arms", {}), "image": image,
        "runs_dir": f"{results_root(config)}/runs", "arm_settings": ARMS,
        "testbed": list(config.testbed), "proxy": proxy_check(config),
        "gates": {arm: a["gate"] for arm, a in agg.items() if a.get("gate")},
        "finished": {arm: a["seeds"] for arm, a in agg.items()},
        "late_correctness": max((r["correctness"] for r in late), default=float("nan")),
        "late_format": [r["format"] for r in late],
        "few_seeds": [arm for arm, a in agg.items() if len(a["seeds"]) < 3],
        "probe": probe_context(config, agg),
        "per_seed": [(arm, seed, sorted(curve.items())) for arm, a in agg.items()
                     for seed, curve in sorted(a["per_seed"].items())],
        "companions": [companion_context(path, Path(config.report_path).parent) for path in config.companions],
        "labelling_cost": labelling_cost(config), "steps_goal": STEPS_GOAL, "target": analysis.get("target"),
        "others": [arm for arm in agg if arm != "vanilla"], "close": close_to_target(analysis),
    }


def close_to_target(analysis: dict, margin: float = 0.01) -> list[str]:
    """Runs whose fit ends less than ``margin`` above the target: item resamples put them on either side of it."""
    target = (analysis.get("target") or {}).get("accuracy")
    return [f"{arm} seed {seed} ends at {100 * r['fitted'][-1]:.1f}%" for arm, seeds in analysis.get("runs", {}).items()
            for seed, r in seeds.items() if target is not None and 0 <= r["fitted"][-1] - target < margin]


def proxy_check(config: ExperimentConfig) -> dict | None:
    """The difficulty proxy's check against measured pass rates (``proxy_check.json``), when it was made."""
    path = results_root(config) / "proxy_check.json"
    return json.loads(path.read_text()) if path.is_file() else None


def probe_context(config: ExperimentConfig, agg: dict) -> dict | None:
    """The harder probe (e.g. GSM8K test) of the final models, beside the untrained policy."""
    step0_path = results_root(config) / "probe_step0.json"
    if not config.probe_benchmark or not step0_path.is_file():
        return None
    rows = [{"arm": arm, "scores": a["probe"], "mean": float(np.mean(a["probe"])), "std": float(np.std(a["probe"]))}
            for arm, a in agg.items() if a["probe"]]
    return {"step0": json.loads(step0_path.read_text()), "rows": rows}


def companion_context(yaml_path: str, report_dir: Path) -> dict:
    """Another experiment (e.g. transfer to another policy) from its saved results.json, if it ran."""
    values = yaml.safe_load(Path(yaml_path).read_text()) or {}
    results = Path(values.get("results_dir") or values.get("output_dir", "")) / "results.json"
    context = {"yaml_path": yaml_path, "title": values.get("title", yaml_path), "ran": results.is_file()}
    if not context["ran"]:
        return context
    data = json.loads(results.read_text())
    report = Path(values.get("report_path", ""))
    return {**context, "agg": data["aggregate"], "arms": (data.get("analysis") or {}).get("arms", {}),
            "report_name": report.name, "link": os.path.relpath(report, report_dir) if report.name else None}


def companion_section(yaml_path: str, report_dir: Path) -> list[str]:
    """The lines of one companion's section (``templates/experiment_companion.md``)."""
    return _render(COMPANION_TEMPLATE, companion=companion_context(yaml_path, report_dir)).splitlines()
