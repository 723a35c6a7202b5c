"""The SAE sweep's part of the report: one difficulty score per SAE, the pick, and its section of docs/signals.md.

``saerl-hf sae-sweep`` (:mod:`saerl_hf.sae_sweep`) trains the SAEs and featurizes; here is what it measures on the
featurized rows (the same ElasticNet difficulty probe and bootstrap interval as ``report-signals``) and how its
``sae_sweep.json`` becomes Markdown (``templates/sae_sweep.md``). ``report-signals`` appends that section to
docs/signals.md for every ``docs/results/sae_sweep*.json`` beside the page (one section per sweep: the 2M-token CPU
grid, the 10M-token GPU points).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: Where the sweeps' results live, relative to the page that shows them (docs/signals.md -> docs/results/...),
#: and which files there are sweeps: one section each, in name order (sae_sweep.json first).
SWEEP_DIR, SWEEP_GLOB = Path("results"), "sae_sweep*.json"
TEMPLATE = "sae_sweep.md"


def difficulty_spearman(train, test, features: str, seed: int, bootstrap: int, n_jobs: int = 1) -> dict:
    """Spearman with MATH-500 level of the difficulty probe fitted on ``train``'s levels, with its 95% interval:
    the "SAE, ElasticNetCV" / "dense, ElasticNetCV" rows of docs/signals.md (same probe, scaling and bootstrap)."""
    from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe
    from saerl_hf.signals.evaluation import _spearman
    from saerl_hf.signals.report_sections import bootstrap_ci

    scaling = "log1p" if features == "sae" else "std"
    probe = DifficultyProbe(DifficultyConfig(label_column="level", features=features, scaling=scaling, seed=seed,
                                              n_jobs=n_jobs))
    predicted = probe.fit(train).predict(test)
    levels = np.asarray(test["level"], dtype=float)
    m = probe.metrics
    return {"spearman": _spearman(predicted, levels), "ci95": bootstrap_ci(_spearman, predicted, levels, bootstrap,
                                                                           seed),
            "fit_seconds": m["fit_seconds"], "alpha": m["alpha"], "l1_ratio": m["l1_ratio"],
            "n_nonzero_coef": m["n_nonzero_coef"]}


def best_point(points: list[dict]) -> dict | None:
    """The point with the highest difficulty Spearman, and every other point whose interval overlaps its own
    (then the rows do not separate them: no winner)."""
    scored = [p for p in points if np.isfinite(p.get("difficulty", {}).get("spearman", np.nan))]
    if not scored:
        return None
    best = max(scored, key=lambda p: p["difficulty"]["spearman"])
    low = best["difficulty"]["ci95"][0]
    overlapping = [p["name"] for p in scored if p is not best and p["difficulty"]["ci95"][1] >= low]
    return {"name": best["name"], "spearman": best["difficulty"]["spearman"], "ci95": best["difficulty"]["ci95"],
            "overlapping": overlapping, "winner": not overlapping and len(scored) > 1}


def render_sweep(results: dict) -> str:
    """The sweep's Markdown section, every number from ``results`` (the saved ``sae_sweep.json``)."""
    from saerl_hf.sae_sweep import token_label
    from saerl_hf.templating import environment

    budget = results["config"]["training_tokens"]
    others = sorted({p["training_tokens"] for p in results["points"]} - {budget}, reverse=True)
    env = environment()
    env.filters["num"] = _fmt
    env.filters["interval"] = lambda ci: f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "n/a"
    dense = dense_by_block(results)
    best_dense = max(({"block": block, **row} for block, row in dense.items()), key=lambda d: d["spearman"],
                     default=None)
    blocks = sorted({p.get("layer", results.get("layer")) for p in results["points"]} | {int(b) for b in dense},
                    key=lambda b: (b is None, b))
    return env.get_template(TEMPLATE).render(results=results, best=best_point(results["points"]),
                                             config=results["config"], dense=dense, best_dense=best_dense,
                                             blocks=blocks,
                                             budget=token_label(budget),
                                             other_budgets=[token_label(n) for n in others])


def dense_by_block(results: dict) -> dict[int, dict]:
    """``{block: dense baseline}``: one per block the sweep read (files written before points had their own block
    hold one ``dense`` for ``layer``)."""
    if results.get("dense_by_layer"):
        return {int(block): row for block, row in sorted(results["dense_by_layer"].items(), key=lambda i: int(i[0]))}
    return {results.get("layer"): results["dense"]} if results.get("dense") else {}


def sweep_section_for(page: str | Path) -> str:
    """The sections for a page (``docs/signals.md``): one per sweep results file beside it, else ``""``."""
    paths = sorted((Path(page).parent / SWEEP_DIR).glob(SWEEP_GLOB))
    return "".join(render_sweep(json.loads(path.read_text())) for path in paths)


def _fmt(value, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return format(value, spec)
