"""Statistics of the SAERL vs vanilla comparison, from saved run logs only: curves, gate, verdicts (the curve
fits and intervals behind the verdicts are in :mod:`saerl_hf.experiment_curves`).

Used by :mod:`saerl_hf.experiment_report`; nothing here trains or generates, so the report regenerates from
the committed logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saerl_hf.experiment_curves import BASE, measure, paired_item_var
from saerl_hf.grpo_card import finished_runs, summary_file
from saerl_hf.pool import NOISE_SOURCE


def load_run(path: Path) -> dict:
    """Held-out curve, reward curve, settings and wall clock of one finished run."""
    summary = json.loads(summary_file(path).read_text())
    state_path = path / "trainer_state.json"
    log_history = json.loads(state_path.read_text())["log_history"] if state_path.is_file() else []
    rewards = {
        name: [(e["step"], float(e[key])) for e in log_history if key in e and "step" in e]
        for name, key in (("total", "reward"), ("correctness", "rewards/correctness_reward/mean"),
                          ("format", "rewards/format_reward/mean"), ("length", "completions/mean_length"),
                          ("zero_std", "frac_reward_zero_std"), ("difficulty", "curriculum/difficulty"))
    }
    solved = {int(e["step"]): set(e["correct_ids"]) for e in summary.get("heldout_curve", []) if "correct_ids" in e}
    curve = {}
    # a run resumed before the held-out curve was kept in checkpoints: earlier points live in log_history only
    for entry in [*log_history, *summary.get("heldout_curve", [])]:
        acc = next((v for k, v in entry.items() if k.startswith("heldout/") and k.endswith("/accuracy")), None)
        if acc is not None and "step" in entry:
            curve[int(entry["step"])] = float(acc)
    curve = sorted(curve.items())
    wall = json.loads((path / "wall_clock.json").read_text())["seconds"] if (path / "wall_clock.json").is_file() \
        else summary.get("metrics", {}).get("train_runtime")
    probe = json.loads((path / "probe.json").read_text()) if (path / "probe.json").is_file() else None
    return {"curve": curve, "rewards": rewards, "wall_clock_s": wall, "metrics": summary.get("metrics", {}),
            "probe": probe, "solved": solved,
            "num_train_rows": summary.get("num_train_rows"), "quality_filter": summary.get("quality_filter"),
            "heldout_n": next((v for e in summary.get("heldout_curve", [])[:1] for k, v in e.items()
                               if k.endswith("/n")), None)}


def collect(output_dir: Path) -> dict[str, dict[int, dict]]:
    """Every finished run; the shared step-0 score (if any) is put at the start of each curve."""
    runs: dict[str, dict[int, dict]] = {}
    step0_path = Path(output_dir) / "step0.json"
    step0 = json.loads(step0_path.read_text()) if step0_path.is_file() else None
    ids_path = Path(output_dir) / "heldout_ids.json"
    if step0 is not None and "correct_ids" in step0 and ids_path.is_file():
        # Score step 0 on the items the runs score: the held-out set less its pool-overlapping problems (an old
        # step 0 was scored before they left) and, with heldout_limit, only its shared subset (``scored_ids``).
        ids = set(json.loads(ids_path.read_text())["ids"])
        n = len(ids & set(step0["scored_ids"])) if "scored_ids" in step0 else min(len(ids), int(step0["n"]))
        correct = sorted(set(step0["correct_ids"]) & ids)
        step0 = {**step0, "correct_ids": correct, "n": n, "accuracy": len(correct) / max(1, n)}
    for run_dir in finished_runs(output_dir):
        arm, seed = run_dir.parent.name, int(run_dir.name.removeprefix("seed"))
        run = load_run(run_dir)
        if step0 is not None and all(step != 0 for step, _ in run["curve"]):
            run["curve"].insert(0, (0, float(step0["accuracy"])))
            if "correct_ids" in step0:
                run["solved"][0] = set(step0["correct_ids"])
            run["heldout_n"] = run["heldout_n"] or step0["n"]
        runs.setdefault(arm, {})[seed] = run
    return runs


def _seed_mean(seeds: dict[int, dict], name: str, steps: slice) -> float:
    """Mean over seeds of a logged per-step series (``name`` in load_run's ``rewards``) over a slice of steps."""
    return float(np.mean([np.mean([v for _, v in r["rewards"][name][steps]] or [np.nan]) for r in seeds.values()]))


def _span(values: list):
    """One value when the seeds agree, else "min-max" (e.g. seeds trained on pools rebuilt with another SAE)."""
    known = sorted({v for v in values if v is not None})
    if len(known) <= 1:
        return known[0] if known else None
    return f"{known[0]}-{known[-1]}"


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
            "num_train_rows": _span([r["num_train_rows"] for r in seeds.values()]),
            "late_rewards": {name: _seed_mean(seeds, name, slice(-10, None)) for name in ("correctness", "format")},
            "all_rewards": {name: _seed_mean(seeds, name, slice(None)) for name in ("correctness", "format")},
            "heldout_n": [r["heldout_n"] for r in seeds.values()][0],
            "probe": [r["probe"]["accuracy"] for r in seeds.values() if r.get("probe")],
            "completion_length": {"first_10": _seed_mean(seeds, "length", slice(10)),
                                  "last_10": _seed_mean(seeds, "length", slice(-10, None))},
            "zero_std": {"first_10": _seed_mean(seeds, "zero_std", slice(10)),
                         "last_10": _seed_mean(seeds, "zero_std", slice(-10, None)),
                         "all": _seed_mean(seeds, "zero_std", slice(None))},
            "gate": learning_gate(seeds, [r["heldout_n"] for r in seeds.values()][0]),
        }
    return out


def learning_gate(seeds: dict[int, dict], n_items: int | None) -> dict | None:
    """Did an arm learn? Its final held-out accuracy (mean over seeds) minus step 0, against 2 SE of that change.

    The SE is paired over items (the same held-out items are scored at both steps, so only items that flip count)
    and adds the spread of the change over seeds: var = mean over seeds of the per-item paired variance / n +
    variance of the per-seed changes / seeds. Runs without per-item records fall back to the binomial SE.
    """
    deltas, item_vars, paired = [], [], []
    for run in seeds.values():
        if not run["curve"]:
            return None
        (first, acc0), (last, acc1) = run["curve"][0], run["curve"][-1]
        deltas.append(acc1 - acc0)
        n = n_items or run.get("heldout_n") or 0
        before, after = run.get("solved", {}).get(first), run.get("solved", {}).get(last)
        paired.append(before is not None and after is not None)
        if n:  # per-item change in {-1, 0, +1}: its variance from the gained and lost counts (else binomial)
            item_vars.append(paired_item_var(before, after, acc0, acc1, n))
    seed_var = float(np.var(deltas, ddof=1)) / len(deltas) if len(deltas) > 1 else 0.0
    se = float(np.sqrt(np.mean(item_vars) + seed_var)) if item_vars else float("nan")
    gain = float(np.mean(deltas))
    return {"gain": gain, "se": se, "paired": all(paired), "seeds": len(deltas), "per_seed_gain": deltas,
            "passed": bool(gain > 2 * se) and len(deltas) >= 3, "final_step": int(list(seeds.values())[0]["curve"][-1][0])}


def compare_arms(agg: dict[str, dict], runs: dict[str, dict[int, dict]], target: dict | None) -> dict:
    """Each arm against vanilla: the curve measurements of :func:`~saerl_hf.experiment_curves.measure` (steps to
    the fixed target, area under the curve, accuracy at equal steps with its SE, verdicts) plus the start and
    final accuracy of each arm's mean curve."""
    if BASE not in agg or not agg[BASE]["steps"]:
        return {}
    measured = measure(runs, target)
    base = agg[BASE]
    out = {**{k: v for k, v in measured.items() if k != "arms"}, "final_step": base["steps"][-1],
           "vanilla_improved": bool(target) and target["vanilla_gain"] > 0, "arms": {}}
    for arm, a in agg.items():
        info = {"start_accuracy": a["mean"][0] if a["mean"] else None,
                "final_accuracy": a["mean"][-1] if a["mean"] else None, **measured.get("arms", {}).get(arm, {})}
        rows = info.get("delta_at_steps") or []
        if rows:  # the difference at the last eval step both arms reached
            info.update(delta_points=round(100 * rows[-1]["delta"], 2), delta_2se=round(200 * rows[-1]["se"], 2),
                        delta_step=rows[-1]["step"])
        out["arms"][arm] = info
    return out


def check_proxy(config, curated: Path) -> dict | None:
    """Does the difficulty proxy predict what this policy can solve? Spearman of the pool's proxy with measured
    pass rates (calibration_json) on pool problems outside its labelled subset, with a bootstrap CI; beside it the
    ceiling the labels allow (test-retest of two k-sample measurements of the same problems), the proxy's
    out-of-fold Spearman on its own labels against a per-source baseline and, once the oracle arm has labelled
    pool prompts, the proxy against those (``vs_oracle``)."""
    from datasets import load_from_disk

    from saerl_hf.experiment import base_grpo_values, results_root
    from saerl_hf.experiment_arms import ORACLE_KEPT

    out = results_root(config) / "proxy_check.json"
    pool_dir, labels_dir = curated / "stages" / "07_signals", curated / "stages" / "labels_pass_rate"
    if not config.calibration_json or not pool_dir.is_dir():
        return json.loads(out.read_text()) if out.is_file() else None
    calibration = json.loads(Path(config.calibration_json).read_text())
    policy = base_grpo_values(config)["model_name_or_path"]
    measured = {p["id"]: p["pass_rate"] for setting in calibration["settings"] if setting["model"] == policy
                for p in setting["problems"]}
    labels = load_from_disk(str(labels_dir)) if labels_dir.is_dir() else None
    labelled = set(labels["id"]) if labels is not None else set()
    pool = load_from_disk(str(pool_dir)).select_columns(["id", "source", "difficulty"])
    pairs = [(r["difficulty"], measured[r["id"]], r["source"]) for r in pool
             if r["id"] in measured and r["id"] not in labelled]
    rho = _spearman_ci([d for d, _, _ in pairs], [p for _, p, _ in pairs])
    record = {"n": len(pairs), "n_labelled": len(labelled), "policy": policy,
              "spearman_difficulty_vs_pass_rate": rho["rho"], "p_value": rho["p"], "ci95": rho["ci95"],
              "by_source": {src: sum(1 for *_, s in pairs if s == src) for src in sorted({s for *_, s in pairs})}}
    if labels is not None and "pass_rate" in labels.column_names:
        retest = [(measured[i], p) for i, p in zip(labels["id"], labels["pass_rate"]) if i in measured]
        record["label_retest"] = _spearman_ci([m for m, _ in retest], [p for _, p in retest])
        if "sae_idx" in labels.column_names and len(labels) >= 100:  # 5 folds of >= min_labels rows to fit on
            record["out_of_fold"] = _out_of_fold(labels, seed=0, fitted=curated / "probes" / "difficulty")
    oracle = _vs_oracle(results_root(config) / ORACLE_KEPT, pool, labelled, labels)
    if oracle:
        record["vs_oracle"] = oracle
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    return record


def _vs_oracle(path: Path, pool, labelled: set, labels) -> dict | None:
    """The proxy against the oracle arm's measured pass rates on every clean pool prompt outside the labelled subset
    that has one so far: the largest test of the proxy there is. Beside it the per-source mean of the labels, the
    prior a proxy has to beat; injected prompts are left out (the quality filter removes them)."""
    if not path.is_file():
        return None
    kept = json.loads(path.read_text())
    truth = {i: p for chunk in kept.get("chunks", {}).values() for i, p in zip(chunk["ids"], chunk["pass_rate"])}
    rows = [(r["difficulty"], truth[r["id"]], r["source"]) for r in pool
            if r["id"] in truth and r["id"] not in labelled and r["source"] != NOISE_SOURCE]
    if len(rows) < 3:
        return None
    rho = _spearman_ci([d for d, _, _ in rows], [p for _, p, _ in rows])
    record = {"n": len(rows), "n_pool_clean_unlabelled": sum(1 for r in pool if r["id"] not in labelled
                                                              and r["source"] != NOISE_SOURCE),
              "k": kept.get("settings", {}).get("pass_rate", {}).get("k"),
              "spearman_difficulty_vs_pass_rate": rho["rho"], "p_value": rho["p"], "ci95": rho["ci95"],
              "zero_share": float(np.mean([p == 0 for _, p, _ in rows]))}
    if labels is not None and {"pass_rate", "source"} <= set(labels.column_names):
        rates, sources = np.asarray(labels["pass_rate"], float), np.asarray(labels["source"])
        means = {s: rates[sources == s].mean() for s in set(sources)}  # as a difficulty: minus the source's mean
        prior = _spearman_ci([-means.get(s, rates.mean()) for *_, s in rows], [p for _, p, _ in rows])
        record["source_mean"] = {"spearman_difficulty_vs_pass_rate": prior["rho"], "ci95": prior["ci95"]}
    return record


def _spearman_ci(x, y) -> dict:
    """Spearman's rho with its p-value and a paired bootstrap 95% CI (None where there are < 8 pairs)."""
    from scipy.stats import bootstrap, spearmanr

    if len(x) < 3:
        return {"rho": None, "p": None, "ci95": None, "n": len(x)}
    test = spearmanr(x, y)
    ci = None
    if len(x) >= 8:
        boot = bootstrap((np.asarray(x, float), np.asarray(y, float)), lambda a, b: spearmanr(a, b).statistic,
                         paired=True, vectorized=False, n_resamples=2000, random_state=0, method="percentile")
        ci = [float(boot.confidence_interval.low), float(boot.confidence_interval.high)]
    return {"rho": float(test.statistic), "p": float(test.pvalue), "ci95": ci, "n": len(x)}


def _out_of_fold(labels, seed: int, folds: int = 5, fitted: Path | None = None) -> dict:
    """The difficulty proxy (as curate fits it: the feature set and pooling part of its saved probe ``fitted``) and
    a per-source mean, each scored on folds it was not fitted on: Spearman of the predicted ease with the held-out
    fold's pass rates."""
    from scipy.stats import spearmanr
    from sklearn.model_selection import KFold

    from saerl_hf.signals import DifficultyConfig, DifficultyProbe

    saved = json.loads((fitted / "config.json").read_text())["config"] if fitted and (fitted / "config.json").is_file() \
        else {}
    fit_as = {key: saved[key] for key in ("features", "pooling_part") if key in saved}
    rates = np.asarray(labels["pass_rate"], float)
    sources = np.asarray(labels["source"])
    proxy, by_source = np.zeros(len(rates)), np.zeros(len(rates))
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(rates):
        probe = DifficultyProbe(DifficultyConfig(label_column="pass_rate", seed=seed, **fit_as))
        proxy[test] = -probe.fit(labels.select(train)).predict(labels.select(test))  # difficulty -> ease
        means = {s: rates[train][sources[train] == s].mean() for s in set(sources[train])}
        by_source[test] = [means.get(s, rates[train].mean()) for s in sources[test]]
    return {"folds": folds, "seed": seed, "n": len(rates), "zero_share": float(np.mean(rates == 0)),
            "proxy_spearman": float(spearmanr(proxy, rates).statistic),
            "source_mean_spearman": float(spearmanr(by_source, rates).statistic)}
