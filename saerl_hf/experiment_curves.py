"""Curve measurements of the arm comparison, from saved run logs only: the fixed target, steps-to-target from a
monotone fit of each run's held-out curve, the area under the curve, the difference at equal steps, the verdicts.

Each run's held-out curve (step 0 included) is fitted by isotonic regression (the best non-decreasing curve in
least squares) and read between eval points by linear interpolation; with a few eval points that is all the
fit can say, and :func:`measure` states the eval points it had. Intervals are percentile bootstraps over seeds
(resampled within each arm) and over held-out items (one resample shared by every arm and step, since all are
scored on the same items) when runs log which items they solved; otherwise a binomial draw per eval point
stands in for the item noise.
"""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np

TARGET_FRACTION = 0.8  # target = step-0 accuracy + this share of vanilla's mean final gain
STEPS_GOAL = 0.70  # an arm's steps-to-target / vanilla's
POINTS_GOAL = 0.03  # accuracy over vanilla at equal steps
N_BOOT = 2000
TARGET_FILE = "target.json"  # the target, written once when the baseline has its seeds; never rewritten
BASE = "vanilla"


def paired_item_var(before: set | None, after: set | None, acc0: float, acc1: float, n: int) -> float:
    """Item-noise variance of a difference of two scores on the same ``n`` items (``after - before``).

    With the solved item sets the per-item difference is in {-1, 0, +1} and its variance comes from the gained and
    lost counts (items solved by both or neither do not count); without them, two independent binomial variances.
    """
    if before is not None and after is not None:
        gained, lost = len(after - before) / n, len(before - after) / n
        return (gained + lost - (gained - lost) ** 2) / n
    return (acc0 * (1 - acc0) + acc1 * (1 - acc1)) / n


def compute_target(runs: dict[str, dict[int, dict]], fraction: float = TARGET_FRACTION) -> dict | None:
    """Step-0 accuracy plus ``fraction`` of vanilla's mean final gain (None without vanilla runs from step 0)."""
    seeds = {s: r["curve"] for s, r in runs.get(BASE, {}).items() if r["curve"] and r["curve"][0][0] == 0}
    if not seeds:
        return None
    start = float(np.mean([c[0][1] for c in seeds.values()]))
    gain = float(np.mean([c[-1][1] - c[0][1] for c in seeds.values()]))
    return {"accuracy": start + fraction * gain, "step0": start, "vanilla_gain": gain, "fraction": fraction,
            "seeds": sorted(seeds), "final_step": int(next(iter(seeds.values()))[-1][0])}


def fixed_target(root: Path, runs: dict[str, dict[int, dict]]) -> dict | None:
    """The target written to ``root/target.json`` when vanilla's seeds were in, else one computed from the runs."""
    path = Path(root) / TARGET_FILE
    if path.is_file():
        return {**json.loads(path.read_text()), "frozen": True}
    target = compute_target(runs)
    return None if target is None else {**target, "frozen": False}


def freeze_target(root: Path, runs: dict[str, dict[int, dict]], min_seeds: int = 3) -> dict | None:
    """Write ``target.json`` once vanilla has ``min_seeds`` runs and gained: later runs (other arms, more vanilla
    seeds) can no longer move the target they are measured against."""
    path = Path(root) / TARGET_FILE
    target = compute_target(runs)
    if path.is_file() or target is None or len(target["seeds"]) < min_seeds or target["vanilla_gain"] <= 0:
        return fixed_target(root, runs)
    path.write_text(json.dumps(target, indent=1))
    return {**target, "frozen": True}


def monotone_fit(values) -> np.ndarray:
    """Isotonic (non-decreasing, least squares, equal weights) fit of each row: the max-min formula
    ``fit[i] = max_{j<=i} min_{k>=i} mean(y[j..k])``, vectorised over rows (few eval points: cheap)."""
    y = np.atleast_2d(np.asarray(values, float))
    t = y.shape[1]
    sums = np.concatenate([np.zeros((len(y), 1)), np.cumsum(y, axis=1)], axis=1)
    fit = np.empty_like(y)
    for i in range(t):
        fit[:, i] = np.max([np.min([(sums[:, k + 1] - sums[:, j]) / (k - j + 1) for k in range(i, t)], axis=0)
                            for j in range(i + 1)], axis=0)
    return fit if np.ndim(values) > 1 else fit[0]


def crossing(steps, fitted, target) -> np.ndarray:
    """First step where each row of ``fitted`` reaches ``target`` (one value, or one per row), linear between
    eval points (inf: never)."""
    steps, f = np.asarray(steps, float), np.asarray(fitted, float)
    target = np.broadcast_to(np.asarray(target, float), (len(f),))
    reached = f >= target[:, None] - 1e-12
    first = reached.argmax(axis=1)
    prev = np.maximum(first - 1, 0)
    rows = np.arange(len(f))
    lo, hi = f[rows, prev], f[rows, first]
    share = np.where(first > 0, (target - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    return np.where(reached.any(axis=1), steps[prev] + share * (steps[first] - steps[prev]), np.inf)


def area(steps, values) -> np.ndarray:
    """Area under each row's held-out curve (trapezoid) divided by the steps it spans: mean accuracy over training."""
    steps, v = np.asarray(steps, float), np.asarray(values, float)
    if len(steps) < 2:
        return v[:, 0]
    return ((v[:, 1:] + v[:, :-1]) / 2 * np.diff(steps)).sum(axis=1) / (steps[-1] - steps[0])


def item_matrices(runs: dict[str, dict[int, dict]]) -> tuple[int, dict] | None:
    """``(n, {(arm, seed): steps x n 0/1 matrix})`` from the solved item sets, None unless every run logged them at
    every eval step on the same ``n`` items. Items no run ever solved are the anonymous all-zero columns."""
    sizes = {r["heldout_n"] for seeds in runs.values() for r in seeds.values()}
    named = sorted({i for seeds in runs.values() for r in seeds.values() for s in r["solved"].values() for i in s})
    if len(sizes) != 1 or not all(sizes) or len(named) > next(iter(sizes)):
        return None
    n, index, out = next(iter(sizes)), {item: k for k, item in enumerate(named)}, {}
    for arm, seeds in runs.items():
        for seed, run in seeds.items():
            if any(step not in run["solved"] for step, _ in run["curve"]):
                return None
            matrix = np.zeros((len(run["curve"]), n))
            for row, (step, _) in enumerate(run["curve"]):
                matrix[row, [index[i] for i in run["solved"][step]]] = 1.0
            out[(arm, seed)] = matrix
    return n, out


def resampled_curves(runs: dict[str, dict[int, dict]], rng, n_boot: int) -> tuple[str, dict]:
    """``(kind, {(arm, seed): n_boot x steps accuracies})``: item resamples shared by all runs when the runs logged
    their solved items ("paired items"), else independent binomial draws per eval point ("binomial")."""
    matrices = item_matrices(runs)
    if matrices is not None:
        n, mats = matrices
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
        return "paired items", {key: counts @ m.T / n for key, m in mats.items()}
    out = {}
    for arm, seeds in runs.items():
        for seed, run in seeds.items():
            n = run["heldout_n"]
            acc = np.array([a for _, a in run["curve"]])
            out[(arm, seed)] = rng.binomial(n, np.clip(acc, 0, 1), size=(n_boot, len(acc))) / n
    return "binomial", out


def interval(values, level: float = 0.95) -> list[float] | None:
    """Percentile interval of bootstrap values (inf allowed: 'never'); None when none is finite or inf."""
    v = np.sort(np.asarray(values, float)[~np.isnan(values)])
    if not len(v):
        return None
    tail = (1 - level) / 2
    return [float(v[int(np.floor(tail * (len(v) - 1)))]), float(v[int(np.ceil((1 - tail) * (len(v) - 1)))])]


def seed_means(per_run: np.ndarray, rng) -> np.ndarray:
    """Arm means over seeds resampled with replacement, one resample per bootstrap row (``per_run``: seeds x B)."""
    k, b = per_run.shape
    picks = rng.integers(k, size=(b, k))
    return np.take_along_axis(per_run.T, picks, axis=1).mean(axis=1)


def delta_at_steps(arm_runs: dict[int, dict], base_runs: dict[int, dict], n: int) -> list[dict]:
    """Mean accuracy minus vanilla's at each eval step (after 0) both arms share, with the learning gate's SE:
    the mean over run pairs of the paired item variance plus the variance of each arm's mean over seeds."""
    curves = [dict(r["curve"]) for r in (*arm_runs.values(), *base_runs.values())]
    steps = sorted(set.intersection(*(set(c) for c in curves)) - {0}) if curves else []
    rows = []
    for step in steps:
        ours = [dict(r["curve"])[step] for r in arm_runs.values()]
        theirs = [dict(r["curve"])[step] for r in base_runs.values()]
        items = [paired_item_var(b["solved"].get(step), a["solved"].get(step), dict(b["curve"])[step],
                                 dict(a["curve"])[step], n) for a, b in product(arm_runs.values(), base_runs.values())]
        seeds = sum(float(np.var(x, ddof=1)) / len(x) for x in (ours, theirs) if len(x) > 1)
        paired = all(step in r["solved"] for r in (*arm_runs.values(), *base_runs.values()))
        rows.append({"step": step, "delta": float(np.mean(ours) - np.mean(theirs)),
                     "se": float(np.sqrt(np.mean(items) + seeds)), "paired": paired,
                     "one_seed": min(len(ours), len(theirs)) < 2})
    return rows


def points_verdict(delta: float, se: float, goal: float = POINTS_GOAL) -> tuple[str, str]:
    """Win: at least ``goal`` above vanilla and above it beyond 2 SE; loss: below vanilla beyond 2 SE; else tie."""
    low, high = delta - 2 * se, delta + 2 * se
    if low > 0 and delta >= goal:
        return "win", f"above vanilla beyond 2 SE and >= +{100 * goal:.0f} points"
    if high < 0:
        return "loss", "below vanilla beyond 2 SE"
    if low > 0:
        return "tie", f"above vanilla beyond 2 SE but short of +{100 * goal:.0f} points"
    return "tie", "within 2 SE of vanilla"


def steps_verdict(ratio: float | None, ci: list[float] | None, goal: float = STEPS_GOAL) -> tuple[str, str]:
    """Win: steps-to-target at most ``goal`` of vanilla's and the interval below 1; loss: interval above 1; else tie."""
    if ratio is None or ci is None or np.isnan(ratio):
        return "n/a", "vanilla's fits do not reach the target"
    if ratio <= goal and ci[1] < 1:
        return "win", f"<= {goal:.0%} of vanilla's steps, interval below 100%"
    if ci[0] > 1:
        return "loss", "slower than vanilla, interval above 100%"
    if ci[1] < 1:
        return "tie", f"faster than vanilla (interval below 100%) but above {goal:.0%}"
    return "tie", "interval includes vanilla's steps"


def overall_verdict(points: str, steps: str) -> str:
    """The goal is both: win when both are won, loss when either is lost, tie otherwise."""
    if "loss" in (points, steps):
        return "loss"
    return "win" if points == steps == "win" else "tie"


def _finite(x: float) -> float | None:
    """JSON-safe: inf ('never') and nan become None."""
    return float(x) if np.isfinite(x) else None


def _bounds(values) -> list[float | None] | None:
    ci = interval(values)
    return None if ci is None else [_finite(v) for v in ci]


def _per_run(run: dict, boot: np.ndarray, target: float, shift: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """One run's fit, steps-to-target and area, and the same two for each bootstrap row of its curve (whose
    target moves with the resampled step-0 accuracy: the fixed part is the gain over step 0)."""
    steps = [s for s, _ in run["curve"]]
    acc = np.array([[a for _, a in run["curve"]]])
    fitted = monotone_fit(acc)
    reach = crossing(steps, fitted, target)[0]
    record = {"steps": steps, "accuracy": acc[0].tolist(), "fitted": fitted[0].tolist(),
              "steps_to_target": _finite(reach), "auc": float(area(steps, acc)[0])}
    return record, crossing(steps, monotone_fit(boot), target + shift), area(steps, boot)


def _arm_summary(records: list[dict], boot_reach: np.ndarray, boot_auc: np.ndarray) -> dict:
    """Mean over seeds of steps-to-target (None if any run never reaches it) and area, with bootstrap intervals."""
    reach = [r["steps_to_target"] for r in records]
    return {"steps_to_target": None if None in reach else float(np.mean(reach)),
            "never": sum(r is None for r in reach), "n_runs": len(reach), "steps_to_target_ci": _bounds(boot_reach),
            "never_share": float(np.mean(~np.isfinite(boot_reach))),
            "auc": float(np.mean([r["auc"] for r in records])), "auc_ci": _bounds(boot_auc)}


def _against_base(arm: dict, base: dict, boot: dict, rows: list[dict]) -> dict:
    """Steps ratio, area difference and accuracy difference at equal steps vs vanilla, with the verdicts."""
    ours, theirs = arm["steps_to_target"], base["steps_to_target"]
    ratio = None if not theirs else (np.inf if ours is None else ours / theirs)  # 0: vanilla starts at the target
    defined = np.isfinite(boot["base_reach"]) & (boot["base_reach"] > 0)  # a ratio needs steps for vanilla to take
    with np.errstate(divide="ignore", invalid="ignore"):
        boot_ratio = np.where(defined, boot["reach"] / boot["base_reach"], np.nan)
    ratio_ci = interval(boot_ratio)
    final = rows[-1] if rows else None
    points = points_verdict(final["delta"], final["se"]) if final else ("n/a", "no shared eval step")
    steps = steps_verdict(ratio, ratio_ci) if theirs != 0 else ("n/a", "vanilla's fits are at the target from step 0")
    return {"step_ratio": None if ratio is None else _finite(ratio), "step_ratio_ci": _bounds(boot_ratio),
            "step_ratio_share": float(np.mean(~np.isnan(boot_ratio))),
            "auc_delta": arm["auc"] - base["auc"], "auc_delta_ci": _bounds(boot["auc"] - boot["base_auc"]),
            "delta_at_steps": rows, "points_verdict": list(points), "steps_verdict": list(steps),
            "verdict": overall_verdict(points[0], steps[0])}


def _check_scored(runs: dict[str, dict[int, dict]]) -> None:
    """Every run needs held-out points and their item count: a curve cannot be fitted without the one, and the
    item noise (binomial or paired) is meaningless without the other."""
    from saerl_hf.experiment import ExperimentError

    for arm, seeds in runs.items():
        for seed, run in seeds.items():
            missing = "held-out points" if not run["curve"] else "held-out item count (heldout/<name>/n)"
            if not run["curve"] or not run["heldout_n"]:
                raise ExperimentError(f"runs/{arm}/seed{seed}: no {missing} in its grpo_summary.json heldout_curve "
                                      f"or trainer_state.json. Fix: rerun it with the experiment's held-out set, or "
                                      f"move it out of runs/ to leave it out of the comparison.")


def measure(runs: dict[str, dict[int, dict]], target: dict | None, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Per run and per arm: steps-to-target, area under the curve, and (vs vanilla) the steps ratio, the area
    difference and the accuracy difference at equal steps, with intervals and verdicts against the goals."""
    if target is None or BASE not in runs:
        return {}
    _check_scored(runs)
    rng = np.random.default_rng(seed)
    kind, boot = resampled_curves(runs, rng, n_boot)
    out = {"target": target, "item_noise": kind, "n_boot": n_boot, "runs": {}, "arms": {},
           "eval_steps": sorted({s for seeds in runs.values() for r in seeds.values() for s, _ in r["curve"]})}
    starts = [(key, runs[key[0]][key[1]]["curve"][0][1]) for key in boot if runs[key[0]][key[1]]["curve"][0][0] == 0]
    shift = np.mean([boot[key][:, 0] - acc0 for key, acc0 in starts], axis=0) if starts else np.zeros(n_boot)
    draws = {}
    for arm, seeds in runs.items():
        per = {s: _per_run(run, boot[(arm, s)], target["accuracy"], shift) for s, run in sorted(seeds.items())}
        out["runs"][arm] = {s: record for s, (record, _, _) in per.items()}
        draws[arm] = {"reach": seed_means(np.array([r for _, r, _ in per.values()]), rng),
                      "auc": seed_means(np.array([a for _, _, a in per.values()]), rng)}
        out["arms"][arm] = _arm_summary(list(out["runs"][arm].values()), draws[arm]["reach"], draws[arm]["auc"])
    n = next(iter(runs[BASE].values()))["heldout_n"]
    for arm in runs:
        if arm != BASE:
            pair = {**draws[arm], "base_reach": draws[BASE]["reach"], "base_auc": draws[BASE]["auc"]}
            out["arms"][arm].update(_against_base(out["arms"][arm], out["arms"][BASE], pair,
                                                  delta_at_steps(runs[arm], runs[BASE], n)))
    return out
