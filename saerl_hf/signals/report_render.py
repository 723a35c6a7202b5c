"""docs/signals.md from the numbers of one ``report-signals`` run: a Jinja2 template filled from ``results``.

The page's text lives in ``saerl_hf/templates/signals_report.md``; this module only picks the numbers
(and which sentence applies) out of ``results``, so ``--render_only`` rewrites the page from a saved
``results.json`` without measuring anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from saerl_hf.templating import environment

if TYPE_CHECKING:
    from saerl_hf.signals.report import ReportSignalsConfig

TEMPLATE = "signals_report.md"
PROVENANCE_KEYS = ("model", "layer", "hook", "sae", "sae_hash", "d_sae", "pooling", "top_k", "d_in",
                   "dtype")


def render_markdown(results: dict, config: ReportSignalsConfig) -> str:
    """The report text; every number comes from ``results`` (measured in one run)."""
    return environment().get_template(TEMPLATE).render(**report_context(results, config))


def report_context(results: dict, config: ReportSignalsConfig) -> dict:
    """What the template shows: the measured tables plus the few numbers derived from them."""
    from saerl_hf.signals.difficulty import DifficultyConfig
    from saerl_hf.signals.matrix import PART_OPTIONS, signal_parts

    diff, qual, clus, cost = results["difficulty"], results["quality"], results["clusters"]["rows"], results["cost"]
    sae_difficulty, sae_quality = diff["SAE, ElasticNetCV"], qual["rows"]["SAE, logistic"]
    metrics = sae_difficulty.get("metrics", {})
    ablation = results.get("difficulty_ablation", {})
    dedup = clus["SAE k-means"].get("dedup_train", {})
    featurize = cost.get("featurize")
    feat_per_1000 = featurize["seconds"] / featurize["rows"] * 1000 if featurize else 0
    return {
        "config": config, "prov": {key: results["provenance"].get(key) for key in PROVENANCE_KEYS},
        "parts": signal_parts(config), "part_options": PART_OPTIONS,
        "sae_training_text": _sae_training_text(results.get("sae_training") or {}),
        "machine": results["machine"], "wall_seconds": results["wall_seconds"],
        "difficulty": diff, "sae_rho": sae_difficulty["spearman"],
        "best_difficulty": max(diff, key=lambda k: diff[k]["spearman"]),
        "elasticnet": {"l1_ratios": list(DifficultyConfig.l1_ratios), "n_alphas": DifficultyConfig.n_alphas,
                       "cv": DifficultyConfig.cv},
        "sae_metrics": {"n_labelled": metrics.get("n_labelled"), "cv_mse": metrics.get("cv_mse", float("nan")),
                        "label_variance": metrics.get("label_variance", float("nan"))},
        "round_trip_identical": sae_difficulty.get("round_trip_identical"),
        "ablation": ablation,
        "figures": {name: os.path.relpath(path, Path(config.output).parent)
                    for name, path in results["figures"].items()},
        "quality": qual, "sae_auc": sae_quality["auroc"],
        "best_quality": max(qual["rows"], key=lambda k: qual["rows"][k]["auroc"]),
        "corruption_kinds": list(sae_quality["per_kind"]), "sae_kept": sae_quality["kept_at_0.5"],
        "clusters": clus, "dedup": {key: dedup.get(key) for key in ("exact_duplicates", "near_duplicates", "n_kept",
                                                                    "n_in")},
        "cost": cost, "featurize": featurize, "passrate": cost.get("passrate"),
        "proxy_per_1000": feat_per_1000 + cost["difficulty_apply_seconds_per_1000"],
        "verdict": verdict(diff, qual["rows"], clus, ablation),
    }


def verdict(diff: dict, qual: dict, clus: dict, ablation: dict) -> dict:
    """Which features won each measurement, decided from the numbers (no hand-written claims)."""
    rows = [
        {"name": "Difficulty (Spearman)", "sae": diff["SAE, ElasticNetCV"]["spearman"],
         "dense": diff["dense, ElasticNetCV"]["spearman"], "length": diff["prompt length (tokens)"]["spearman"],
         "goal": 0.6},
        {"name": "Quality (AUROC)", "sae": qual["SAE, logistic"]["auroc"], "dense": qual["dense, logistic"]["auroc"],
         "length": qual["prompt length (tokens)"]["auroc"], "goal": 0.95},
        {"name": "Clusters (NMI with subject)", "sae": clus["SAE k-means"]["nmi_test"],
         "dense": clus["dense k-means"]["nmi_test"], "length": None, "goal": None},
    ]
    for row in rows:
        row["winner"] = "SAE" if row["sae"] > row["dense"] else "dense"
        row["margin"] = abs(row["sae"] - row["dense"])
    short = {row["name"]: row["name"].split(" (")[0].lower() for row in rows}
    return {
        "rows": rows,
        "dense_wins": [short[row["name"]] for row in rows if row["dense"] > row["sae"]],
        "sae_wins": [short[row["name"]] for row in rows if row["sae"] > row["dense"]],
        "beats_length": all(row["sae"] > row["length"] for row in rows if row["length"] is not None),
        "best_ablation": max(ablation, key=lambda k: ablation[k]["spearman"]) if ablation else None,
    }


def _sae_training_text(info: dict) -> str:
    if not info:
        return ""
    parts = [f"{info['train_tokens']:,} training tokens" if info.get("train_tokens") else None,
             f"explained variance {info['explained_variance']:.3f}" if info.get("explained_variance") else None,
             f"{info['dead_fraction']:.1%} dead latents" if info.get("dead_fraction") is not None else None]
    return "SAE training: " + ", ".join(p for p in parts if p) + ". "
