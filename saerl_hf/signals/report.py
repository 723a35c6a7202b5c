"""``saerl-hf report-signals``: measure the three signals on real data -> docs/signals.md + PNGs.

Difficulty: fit on MATH train levels, Spearman on MATH-500 levels, beside the same regressors on the dense
mean-pooled residual of the same layer and prompt length alone. Quality: AUROC on held-out corrupted vs clean
MATH-500 prompts (+ dense and length baselines). Clusters: NMI with MATH subjects (+ dense). Cost: seconds per
1,000 prompts for the SAE proxy vs the pass-rate labeller. Featurized sets are cached, so a rerun only refits.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class ReportSignalsConfig:
    """Options of ``saerl-hf report-signals``."""

    model: str = field(default="smollm2-135m", metadata={"help": "Reader model (alias, dir or Hub id)."})
    sae: str | None = field(default=None, metadata={"help": "SAE dir/Hub id; default: the `train-sae` default dir."})
    sae_width: int = field(default=4096, metadata={"help": "Width of the default SAE (when `sae` is unset)."})
    sae_k: int = field(default=32, metadata={"help": "k of the default TopK SAE (when `sae` is unset)."})
    layer: int | None = field(default=None, metadata={"help": "Block to read (default: the SAE's own layer)."})
    top_k: int = field(default=64, metadata={"help": "Pooled latents kept per prompt (featurize top_k)."})
    pooling: str = field(default="mean", metadata={"help": "Pooling of SAE codes over the problem's tokens."})
    max_length: int = field(default=256, metadata={"help": "Prompt tokens read per problem (longer are cut)."})
    n_train: int = field(default=2000, metadata={"help": "MATH train problems (random, seeded) to fit on."})
    n_test: int = field(default=500, metadata={"help": "MATH-500 problems to evaluate on."})
    n_quality_train: int = field(default=800, metadata={"help": "Train problems whose corruptions train the probe."})
    clusters_k: int = field(default=7, metadata={"help": "k-means clusters (MATH has 7 subjects)."})
    n_passrate: int = field(default=8, metadata={"help": "MATH-500 prompts timed with the pass-rate labeller "
                                                         "(0 skips the cost measurement)."})
    passrate_k: int = field(default=4, metadata={"help": "Samples per prompt for the pass-rate labeller."})
    passrate_max_new_tokens: int = field(default=256, metadata={"help": "Completion budget of the labeller."})
    ablation_top_k: int = field(default=0, metadata={"help": "Also fit the SAE difficulty probe on features keeping "
                                                             "this many pooled latents (0 = off)."})
    ablation_n_train: int = field(default=1000, metadata={"help": "Train rows for the top_k ablation."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for confidence intervals."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, corruptions, CV and k-means."})
    cache_dir: str | None = field(default=None, metadata={"help": "Cache (default `<SAERL_CACHE>/report-signals`)."})
    output: str = field(default="docs/signals.md", metadata={"help": "Markdown report path."})
    img_dir: str = field(default="docs/img", metadata={"help": "Where the PNGs go."})
    render_only: bool = field(default=False, metadata={"help": "Rewrite the markdown from the cached results.json of "
                                                              "the last run (no featurizing or fitting)."})


# ----------------------------------------------------------------------------- helpers


def _bootstrap_ci(metric, a, b, n: int, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap CI of ``metric(a, b)`` over paired rows (``scipy.stats.bootstrap``).

    A resample whose ``b`` holds a single value (one class, one level) has no defined metric: NaN, so
    the interval is NaN too (scipy warns) rather than quietly narrower.
    """
    from scipy.stats import bootstrap

    def statistic(a_rows, b_rows):
        return metric(a_rows, b_rows) if len(np.unique(b_rows)) > 1 else np.nan

    result = bootstrap((np.asarray(a), np.asarray(b)), statistic, n_resamples=n, paired=True, vectorized=False,
                       method="percentile", confidence_level=0.95, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _auroc(score, y) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


class _Featurizer:
    """Featurize with the report's settings, recording seconds and rows actually computed per set."""

    def __init__(self, config: ReportSignalsConfig, cache: Path):
        from saerl_hf.features import FeaturizeConfig

        self.config = FeaturizeConfig(model=config.model, sae=config.sae, sae_width=config.sae_width,
                                      sae_k=config.sae_k, layer=config.layer, top_k=config.top_k,
                                      pooling=config.pooling, max_length=config.max_length, dense=True,
                                      cache_dir=str(cache / "featurize"))
        self.timings_path = cache / "featurize_timings.json"
        self.timings = json.loads(self.timings_path.read_text()) if self.timings_path.is_file() else {}

    def __call__(self, dataset, name: str):
        from saerl_hf.features import STATS, featurize

        rows_before, start = STATS["rows"], time.perf_counter()
        out = featurize(dataset, self.config)
        seconds, computed = time.perf_counter() - start, STATS["rows"] - rows_before
        if computed == len(dataset) and computed > 0:  # a fresh computation, not a cache hit: keep its timing
            self.timings[name] = {"rows": computed, "seconds": round(seconds, 2)}
            self.timings_path.write_text(json.dumps(self.timings, indent=2))
        logger.info("featurized %s: %d rows (%d computed) in %.1fs", name, len(out), computed, seconds)
        return out


# ----------------------------------------------------------------------------- sections


def difficulty_section(train, test, config: ReportSignalsConfig, tokenizer, probe_dir: Path) -> dict:
    from sklearn.linear_model import RidgeCV

    from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe
    from saerl_hf.signals.matrix import dataset_matrix, fit_scaler, transform

    levels = np.asarray(test["level"], dtype=float)
    rows, predictions = {}, {}

    def record(name, pred, fit_seconds, detail):
        rho = _spearman(pred, levels)
        ci = _bootstrap_ci(_spearman, pred, levels, config.bootstrap, config.seed)
        rows[name] = {"spearman": rho, "ci95": ci, "fit_seconds": fit_seconds, "detail": detail}
        predictions[name] = np.asarray(pred, dtype=float)
        logger.info("difficulty %s: Spearman %.3f [%.3f, %.3f]", name, rho, *ci)

    for name, features, scaling in (("SAE, ElasticNetCV", "sae", "log1p"),
                                    ("dense, ElasticNetCV", "dense_mean", "std")):
        probe = DifficultyProbe(DifficultyConfig(label_column="level", features=features, scaling=scaling,
                                                 seed=config.seed)).fit(train)
        m = probe.metrics
        record(name, probe.predict(test), m["fit_seconds"],
               f"alpha {m['alpha']:.3g}, l1_ratio {m['l1_ratio']}, {m['n_nonzero_coef']} non-zero coefs, "
               f"{m['n_convergence_warnings']} convergence warnings")
        if features == "sae":
            probe.save(probe_dir / "difficulty")
            reloaded = DifficultyProbe.load(probe_dir / "difficulty")
            rows[name]["round_trip_identical"] = bool(np.array_equal(reloaded.predict(test), probe.predict(test)))
            rows[name]["metrics"] = m

    # Ridge on the same preprocessed matrices (the paper's summaries name ElasticNet and ridge).
    y_train = np.asarray(train["level"], dtype=float)
    for name, features, scaling in (("SAE, RidgeCV", "sae", "log1p"), ("dense, RidgeCV", "dense_mean", "std")):
        x_train = transform(dataset_matrix(train, features), scaling)
        x_test = transform(dataset_matrix(test, features, width=x_train.shape[1] if features == "sae" else None),
                           scaling)
        center, scale = fit_scaler(x_train, scaling)
        if features == "sae":
            x_train, x_test = x_train.multiply(1 / scale).tocsr(), x_test.multiply(1 / scale).tocsr()
        else:
            x_train, x_test = (x_train - center) / scale, (x_test - center) / scale
        start = time.perf_counter()
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(x_train, y_train)
        record(name, ridge.predict(x_test), round(time.perf_counter() - start, 3), f"alpha {ridge.alpha_:.3g}")

    lengths = np.array([len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in test["problem"]], float)
    record("prompt length (tokens)", lengths, 0.0, "no fit: Spearman of the token count itself")
    return {"rows": rows, "predictions": predictions, "levels": levels}


def top_k_ablation(train_raw, test_raw, train, test, config: ReportSignalsConfig, cache: Path) -> dict:
    """SAE difficulty probe with ``top_k`` vs ``ablation_top_k`` pooled latents kept, on the same rows."""
    from dataclasses import replace

    from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe

    n = min(config.ablation_n_train, len(train))
    wide = _Featurizer(replace(config, top_k=config.ablation_top_k), cache)
    variants = {config.top_k: (train.select(range(n)), test),
                config.ablation_top_k: (wide(train_raw.select(range(n)), f"math_train_top{config.ablation_top_k}"),
                                        wide(test_raw, f"math500_test_top{config.ablation_top_k}"))}
    levels = np.asarray(test["level"], dtype=float)
    rows = {}
    for top_k, (fit_on, score_on) in variants.items():
        probe = DifficultyProbe(DifficultyConfig(label_column="level", seed=config.seed)).fit(fit_on)
        pred = probe.predict(score_on)
        rows[f"SAE top-{top_k}, ElasticNetCV ({n} train)"] = {
            "spearman": _spearman(pred, levels), "ci95": _bootstrap_ci(_spearman, pred, levels, config.bootstrap,
                                                                       config.seed),
            "fit_seconds": probe.metrics["fit_seconds"], "mean_pooled_l0": float(np.mean(fit_on["sae_l0"]))}
        logger.info("ablation top-%d: Spearman %.3f", top_k, rows[f"SAE top-{top_k}, ElasticNetCV ({n} train)"]
                    ["spearman"])
    return rows


def quality_section(train_clean, test_clean, featurize, config: ReportSignalsConfig, tokenizer) -> dict:
    from saerl_hf.signals.corruptions import corruption_counts, make_quality_dataset, off_domain_prompts
    from saerl_hf.signals.quality import QualityConfig, QualityProbe

    def negatives(clean, part, seed, name):
        raw = make_quality_dataset(clean.select_columns(["problem", "answer"]), seed=seed,
                                   off_domain_pool=off_domain_prompts(part))
        raw = raw.filter(lambda r: r["is_clean"] == 0)
        return featurize(raw, name)

    train_neg = negatives(train_clean, "train", config.seed, "quality_train_negatives")
    test_neg = negatives(test_clean, "test", config.seed + 1, "quality_test_negatives")
    y_test = np.r_[np.ones(len(test_clean)), np.zeros(len(test_neg))]
    kinds = np.r_[np.array(["none"] * len(test_clean)), np.asarray(test_neg["corruption"])]
    rows, curves = {}, {}
    for name, features, scaling in (("SAE, logistic", "sae", "log1p"), ("dense, logistic", "dense_mean", "std")):
        probe = QualityProbe(QualityConfig(features=features, scaling=scaling, seed=config.seed))
        probe.fit(train_clean, negatives=train_neg)
        score = np.r_[probe.predict(test_clean), probe.predict(test_neg)]
        per_kind = {k: _auroc(score[(kinds == "none") | (kinds == k)], y_test[(kinds == "none") | (kinds == k)])
                    for k in sorted(set(kinds.tolist()) - {"none"})}
        rows[name] = {"auroc": _auroc(score, y_test),
                      "ci95": _bootstrap_ci(_auroc, score, y_test, config.bootstrap, config.seed),
                      "per_kind": per_kind, "fit_seconds": probe.metrics["fit_seconds"], "C": probe.metrics["C"],
                      "kept_at_0.5": {"clean": float(np.mean(score[y_test == 1] >= 0.5)),
                                      "noisy": float(np.mean(score[y_test == 0] >= 0.5))}}
        curves[name] = (y_test, score)
        logger.info("quality %s: AUROC %.3f", name, rows[name]["auroc"])
    # Length baseline: longer = more likely clean (truncation and most off-domain requests are short).
    texts = list(test_clean["problem"]) + list(test_neg["problem"])
    length = np.array([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts], float)
    per_kind = {k: _auroc(length[(kinds == "none") | (kinds == k)], y_test[(kinds == "none") | (kinds == k)])
                for k in sorted(set(kinds.tolist()) - {"none"})}
    rows["prompt length (tokens)"] = {"auroc": _auroc(length, y_test),
                                      "ci95": _bootstrap_ci(_auroc, length, y_test, config.bootstrap, config.seed),
                                      "per_kind": per_kind, "fit_seconds": 0.0}
    curves["prompt length"] = (y_test, length)
    return {"rows": rows, "curves": curves, "train_counts": corruption_counts(train_neg),
            "test_counts": corruption_counts(test_neg), "n_train_clean": len(train_clean),
            "n_test_clean": len(test_clean)}


def cluster_section(train, test, config: ReportSignalsConfig) -> dict:
    from sklearn.metrics import normalized_mutual_info_score

    from saerl_hf.signals.diversity import ClusterConfig, ClusterModel, deduplicate

    rows, assignments = {}, {}
    for name, features, scaling in (("SAE k-means", "sae", "log1p"), ("dense k-means", "dense_mean", "std")):
        model = ClusterModel(ClusterConfig(k=config.clusters_k, features=features, scaling=scaling,
                                           seed=config.seed)).fit(train)
        test_clusters = model.predict(test)
        rows[name] = {"nmi_test": float(normalized_mutual_info_score(test["subject"], test_clusters)),
                      "nmi_train": float(normalized_mutual_info_score(train["subject"], model.predict(train))),
                      "fit_seconds": model.metrics["fit_seconds"], "sizes": model.metrics["cluster_sizes"]}
        assignments[name] = test_clusters
        if features == "sae":
            clustered = model.apply(train)
            _, rows[name]["dedup_train"] = deduplicate(clustered, threshold=0.98)
        logger.info("clusters %s: NMI test %.3f", name, rows[name]["nmi_test"])
    return {"rows": rows, "assignments": assignments, "subjects": list(test["subject"])}


def cost_section(test, featurizer: _Featurizer, difficulty_probe_dir: Path, config: ReportSignalsConfig) -> dict:
    from saerl_hf.signals.difficulty import DifficultyProbe

    out: dict = {"featurize": featurizer.timings.get("math500_test")}
    probe = DifficultyProbe.load(difficulty_probe_dir / "difficulty")
    start = time.perf_counter()
    probe.predict(test)
    out["difficulty_apply_seconds_per_1000"] = (time.perf_counter() - start) / len(test) * 1000
    passrate_key = {"model": config.model, "k": config.passrate_k, "prompts": config.n_passrate,
                    "max_new_tokens": config.passrate_max_new_tokens, "seed": config.seed}
    passrate_cache = difficulty_probe_dir.parent / "passrate_cost.json"
    if config.n_passrate > 0 and passrate_cache.is_file():
        cached = json.loads(passrate_cache.read_text())
        if cached.get("key") == passrate_key:  # a timing measured by an earlier run with the same settings
            out["passrate"] = cached["passrate"]
            return out
    if config.n_passrate > 0:
        try:
            from saerl_hf.signals.passrate import PassRateConfig, label_pass_rates

            subset = test.select(range(min(config.n_passrate, len(test)))).select_columns(
                ["problem", "answer", "source"])
            pr_config = PassRateConfig(model=config.model, k=config.passrate_k,
                                       max_new_tokens=config.passrate_max_new_tokens, seed=config.seed,
                                       generation_batch_size=config.passrate_k * len(subset))
            start = time.perf_counter()
            labelled = label_pass_rates(subset, pr_config, batch_size=len(subset), load_from_cache_file=False)
            seconds = time.perf_counter() - start
            out["passrate"] = {"prompts": len(subset), "k": config.passrate_k,
                               "max_new_tokens": config.passrate_max_new_tokens, "seconds": round(seconds, 1),
                               "seconds_per_1000": seconds / len(subset) * 1000,
                               "mean_pass_rate": float(np.mean(labelled["pass_rate"])),
                               "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            passrate_cache.write_text(json.dumps({"key": passrate_key, "passrate": out["passrate"]}, indent=2))
        except ImportError as err:
            out["passrate_error"] = f"pass-rate labeller unavailable: {err}"
            logger.warning(out["passrate_error"])
    return out


# ----------------------------------------------------------------------------- report


def run_report(config: ReportSignalsConfig) -> dict:
    from saerl_hf import plots
    from saerl_hf.data import load_math_dataset
    from saerl_hf.models import cache_dir, load_tokenizer
    from saerl_hf.sparse import feature_provenance

    started = time.time()
    cache = Path(config.cache_dir) if config.cache_dir else cache_dir() / "report-signals"
    cache.mkdir(parents=True, exist_ok=True)
    if config.render_only:
        results = json.loads((cache / "results.json").read_text())
        saved = ReportSignalsConfig(**{**results["config"], "render_only": False})
        results.setdefault("sae_training", _sae_training(results["provenance"]))
        Path(config.output).write_text(render_markdown(results, saved))
        return results
    featurize = _Featurizer(config, cache)
    tokenizer = load_tokenizer(config.model)

    math_train = load_math_dataset("math", split="train")
    math_train = math_train.filter(lambda r: r["level"] is not None and r["subject"] is not None)
    train = math_train.shuffle(seed=config.seed).select(range(config.n_train)).flatten_indices()
    test = load_math_dataset("math500").select(range(config.n_test))
    train_raw, test_raw = train, test
    train = featurize(train, "math_train")
    test = featurize(test, "math500_test")
    provenance = feature_provenance(train)
    sae_training = _sae_training(provenance)

    probe_dir = cache / "probes"
    difficulty = difficulty_section(train, test, config, tokenizer, probe_dir)
    if config.ablation_top_k:
        difficulty["ablation"] = top_k_ablation(train_raw, test_raw, train, test, config, cache)
    quality = quality_section(train.select(range(config.n_quality_train)), test, featurize, config, tokenizer)
    clusters = cluster_section(train, test, config)
    cost = cost_section(test, featurize, probe_dir, config)

    img = Path(config.img_dir)
    figures = {
        "difficulty_bars": plots.plot_metric_bars(
            {k: v["spearman"] for k, v in difficulty["rows"].items()}, img / "signals_difficulty_spearman.png",
            "Spearman with MATH-500 level", "Difficulty: held-out rank correlation", goal=0.6,
            errors={k: v["ci95"] for k, v in difficulty["rows"].items()}),
        "difficulty_box": plots.plot_difficulty_by_level(
            difficulty["levels"], {k: difficulty["predictions"][k] for k in ("SAE, ElasticNetCV",
                                                                              "dense, ElasticNetCV",
                                                                              "prompt length (tokens)")},
            img / "signals_difficulty_by_level.png"),
        "quality_roc": plots.plot_roc_curves(quality["curves"], img / "signals_quality_roc.png"),
        "clusters": plots.plot_cluster_subjects(clusters["assignments"]["SAE k-means"], clusters["subjects"],
                                                img / "signals_clusters_subjects.png",
                                                f"SAE k-means (k={config.clusters_k}) vs subject, MATH-500"),
    }
    results = {"config": asdict(config), "provenance": provenance, "difficulty": difficulty["rows"],
               "difficulty_ablation": difficulty.get("ablation", {}), "sae_training": sae_training,
               "quality": {k: v for k, v in quality.items() if k != "curves"}, "clusters": {
                   k: v for k, v in clusters.items() if k in ("rows",)}, "cost": cost,
               "figures": figures, "wall_seconds": round(time.time() - started, 1),
               "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.python_version()}"}
    (cache / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    Path(config.output).write_text(render_markdown(results, config))
    logger.info("wrote %s (%.0fs)", config.output, time.time() - started)
    return results


def _sae_training(provenance: dict) -> dict:
    """The SAE's own training metrics (``saerl_training.json`` beside a locally trained SAE), if any."""
    path = Path(str(provenance.get("sae") or "")) / "saerl_training.json"
    if not path.is_file():
        return {}
    info = json.loads(path.read_text())
    metrics = info.get("metrics", info)
    return {k: metrics.get(k) for k in ("explained_variance", "dead_fraction", "l0", "train_tokens") if k in metrics}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _rel(path: str, output: str) -> str:
    import os

    return os.path.relpath(path, Path(output).parent)


def render_markdown(results: dict, config: ReportSignalsConfig) -> str:
    """The report text; every number comes from ``results`` (measured in this run)."""
    from saerl_hf.signals.difficulty import DifficultyConfig

    prov, diff, qual, clus, cost = (results["provenance"], results["difficulty"], results["quality"],
                                    results["clusters"]["rows"], results["cost"])
    out = config.output
    sae_rho = diff["SAE, ElasticNetCV"]["spearman"]
    best_diff = max(diff, key=lambda k: diff[k]["spearman"])
    sae_auc = qual["rows"]["SAE, logistic"]["auroc"]
    best_qual = max(qual["rows"], key=lambda k: qual["rows"][k]["auroc"])
    lines = [
        "# Signals: do SAE features measure difficulty, quality and diversity?",
        "",
        "Regenerate everything on this page (numbers and figures) with:",
        "",
        "```bash",
        f"saerl-hf report-signals --n_train {config.n_train} --n_test {config.n_test} "
        f"--clusters_k {config.clusters_k} --seed {config.seed}"
        + (f" --ablation_top_k {config.ablation_top_k} --ablation_n_train {config.ablation_n_train}"
           if config.ablation_top_k else ""),
        "```",
        "",
        f"Reader: `{prov.get('model')}`, block {prov.get('layer')} (`{prov.get('hook')}`); SAE `{prov.get('sae')}` "
        f"(d_sae {prov.get('d_sae')}, sha256 `{str(prov.get('sae_hash'))[:12]}…`); SAE codes {prov.get('pooling')}"
        f"-pooled over the problem's tokens (first position dropped), top-{prov.get('top_k')} latents kept, "
        f"prompts cut at {config.max_length} tokens. The dense baseline is the mean raw residual of the same "
        f"block over the same tokens (d_in {prov.get('d_in')}). Data: {config.n_train} MATH train problems "
        f"(seeded random sample) to fit, the first {config.n_test} MATH-500 problems to evaluate. "
        + _sae_training_text(results.get("sae_training") or {}) +
        f"Machine: {results['machine']}; total wall time {results['wall_seconds']:.0f} s "
        f"(featurized sets are cached between runs). 95% intervals: percentile bootstrap "
        f"({config.bootstrap} resamples) over the test rows.",
        "",
        "## Difficulty",
        "",
        f"Fit on MATH train `level` (1-5), scored by Spearman correlation with MATH-500 `level`. Goal: SAE >= 0.6. "
        f"**Measured: SAE ElasticNet {sae_rho:.3f}"
        f"{' (goal met)' if sae_rho >= 0.6 else ' (goal not met)'}; best method here: {best_diff}.**",
        "",
        "| method | Spearman (MATH-500) | 95% CI | fit s | details |",
        "|---|---|---|---|---|",
    ]
    for name, row in diff.items():
        lines.append(f"| {name} | {row['spearman']:.3f} | [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}] | "
                     f"{row['fit_seconds']:.2f} | {row['detail']} |")
    sae_metrics = diff["SAE, ElasticNetCV"].get("metrics", {})
    lines += [
        "",
        f"ElasticNetCV: l1_ratio in {list(DifficultyConfig.l1_ratios)} x {DifficultyConfig.n_alphas} alphas x "
        f"{DifficultyConfig.cv} folds on sparse log1p features ({sae_metrics.get('n_labelled')} rows); CV MSE {sae_metrics.get('cv_mse', float('nan')):.3f} vs "
        f"label variance {sae_metrics.get('label_variance', float('nan')):.3f}. The saved probe "
        f"(safetensors + JSON) reloads to identical predictions: "
        f"{diff['SAE, ElasticNetCV'].get('round_trip_identical')}.",
        "",
        *_ablation_lines(results.get("difficulty_ablation", {}), config),
        f"![Spearman by method]({_rel(results['figures']['difficulty_bars'], out)})",
        f"![Predicted difficulty by level]({_rel(results['figures']['difficulty_box'], out)})",
        "",
        "## Quality",
        "",
        f"Positives: {qual['n_train_clean']} clean MATH train problems; negatives: one corrupted copy each "
        f"({_counts(qual['train_counts'])}), off-domain text from one half of the built-in pool. Held out: the "
        f"{qual['n_test_clean']} MATH-500 problems vs their own corruptions ({_counts(qual['test_counts'])}), "
        f"off-domain text from the other half of the pool. Problem text only (no answer), so the "
        f"problem/answer-mismatch kind does not apply (see docs below). Goal: AUROC >= 0.95. "
        f"**Measured: SAE {sae_auc:.3f}{' (goal met)' if sae_auc >= 0.95 else ' (goal not met)'}; "
        f"best: {best_qual}.**",
        "",
        "| method | AUROC | 95% CI | " + " | ".join(f"AUROC {k}" for k in qual["rows"]["SAE, logistic"]["per_kind"])
        + " |",
        "|---|---|---|" + "---|" * len(qual["rows"]["SAE, logistic"]["per_kind"]),
    ]
    for name, row in qual["rows"].items():
        lines.append(f"| {name} | {row['auroc']:.3f} | [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}] | "
                     + " | ".join(f"{v:.3f}" for v in row["per_kind"].values()) + " |")
    sae_q = qual["rows"]["SAE, logistic"]
    lines += [
        "",
        f"At the default threshold 0.5 the SAE probe keeps {sae_q['kept_at_0.5']['clean']:.1%} of clean and "
        f"{sae_q['kept_at_0.5']['noisy']:.1%} of noisy held-out prompts.",
        "",
        f"![ROC]({_rel(results['figures']['quality_roc'], out)})",
        "",
        "## Diversity",
        "",
        f"k-means with k = {config.clusters_k} on L2-normalised features, fitted on the train sample; NMI between "
        f"cluster and MATH `subject` (7 subjects).",
        "",
        "| features | NMI (MATH-500) | NMI (train) | cluster sizes (train) |",
        "|---|---|---|---|",
    ]
    for name, row in clus.items():
        lines.append(f"| {name} | {row['nmi_test']:.3f} | {row['nmi_train']:.3f} | {row['sizes']} |")
    dedup = clus["SAE k-means"].get("dedup_train", {})
    lines += [
        "",
        f"Near-duplicate removal on the train sample (identical text, or cosine >= 0.98 inside an SAE cluster): "
        f"{dedup.get('exact_duplicates')} exact and {dedup.get('near_duplicates')} near duplicates dropped, "
        f"{dedup.get('n_kept')} of {dedup.get('n_in')} kept.",
        "",
        f"![Clusters vs subjects]({_rel(results['figures']['clusters'], out)})",
        "",
        "## Cost",
        "",
    ]
    feat = cost.get("featurize")
    feat_per_1000 = feat["seconds"] / feat["rows"] * 1000 if feat else None
    proxy = (feat_per_1000 or 0) + cost["difficulty_apply_seconds_per_1000"]
    lines += ["Both timings come from the same shared 2-core CPU machine while other jobs ran on it, so the absolute "
              "seconds are inflated (an idle machine featurizes ~20 prompts/s); the ratio is the point. Pass rates "
              "of a 135M model on MATH-500 are ~0 at this budget, which is also why they make poor labels here.",
              "", "| labeller | seconds per 1,000 prompts | how measured |", "|---|---|---|"]
    if feat:
        lines.append(f"| SAE proxy (featurize + ElasticNet) | {proxy:.0f} | featurizing {feat['rows']} MATH-500 "
                     f"prompts took {feat['seconds']:.0f} s; applying the probe "
                     f"{cost['difficulty_apply_seconds_per_1000']:.3f} s per 1,000 |")
    pr = cost.get("passrate")
    if pr:
        lines.append(f"| pass-rate labeller, k={pr['k']}, {pr['max_new_tokens']} new tokens | "
                     f"{pr['seconds_per_1000']:.0f} | {pr['prompts']} MATH-500 prompts x {pr['k']} samples took "
                     f"{pr['seconds']:.0f} s (mean pass rate {pr['mean_pass_rate']:.3f}; measured "
                     f"{pr.get('measured_at', 'in this run')}) |")
        if feat:
            lines += ["", f"The proxy is {pr['seconds_per_1000'] / proxy:.0f}x cheaper per prompt on this machine "
                          f"once the probe exists."]
    else:
        lines.append(f"| pass-rate labeller | not measured | {cost.get('passrate_error', 'skipped')} |")
    lines += ["", "## Verdict", "", *_verdict(diff, qual["rows"], clus, results.get("difficulty_ablation", {})),
              "", "## Using the signals", "", *USAGE, "", "## Notes", "", *NOTES]
    return "\n".join(lines) + "\n"


def _verdict(diff: dict, qual: dict, clus: dict, ablation: dict) -> list[str]:
    """Which features won each measurement, stated from the numbers (no hand-written claims)."""
    pairs = [
        ("Difficulty (Spearman)", diff["SAE, ElasticNetCV"]["spearman"], diff["dense, ElasticNetCV"]["spearman"],
         diff["prompt length (tokens)"]["spearman"], 0.6),
        ("Quality (AUROC)", qual["SAE, logistic"]["auroc"], qual["dense, logistic"]["auroc"],
         qual["prompt length (tokens)"]["auroc"], 0.95),
        ("Clusters (NMI with subject)", clus["SAE k-means"]["nmi_test"], clus["dense k-means"]["nmi_test"], None,
         None),
    ]
    lines = ["| signal | SAE | dense baseline | prompt length | goal | winner |", "|---|---|---|---|---|---|"]
    for name, sae, dense, length, goal in pairs:
        winner = "SAE" if sae > dense else "dense"
        lines.append(f"| {name} | {sae:.3f} | {dense:.3f} | {'' if length is None else f'{length:.3f}'} | "
                     f"{'' if goal is None else f'>= {goal:g}' + (' met' if sae >= goal else ' not met')} | "
                     f"{winner} (by {abs(sae - dense):.3f}) |")
    dense_wins = [name.split(" (")[0].lower() for name, sae, dense, _, _ in pairs if dense > sae]
    sae_wins = [name.split(" (")[0].lower() for name, sae, dense, _, _ in pairs if sae > dense]
    beats_length = all(sae > length for _, sae, _, length, _ in pairs if length is not None)
    lines += ["", (f"The dense baseline beats the SAE features on {', '.join(dense_wins)}" if dense_wins else
                   "The SAE features beat the dense baseline on every signal")
              + (f"; the SAE features win on {', '.join(sae_wins)}" if dense_wins and sae_wins else "")
              + (". The SAE signals beat prompt length alone." if beats_length else
                 ". Prompt length alone is not beaten everywhere: see the tables."),
              "", "Likely reasons for the gaps (interpretation; only the top-k ablation in the Difficulty section, when run, measures one of them): each "
              "prompt keeps only its top-k pooled latents while the dense vector keeps every dimension; the SAE "
              "was trained briefly (see its training metrics above); and MATH levels are coarse, noisy labels "
              f"(the dense regressor reaches {pairs[0][2]:.2f} on them, not far above the SAE)."]
    if ablation:
        best = max(ablation, key=lambda k: ablation[k]["spearman"])
        lines += ["", f"In the top-k ablation the best setting was **{best}** "
                      f"({ablation[best]['spearman']:.3f})."]
    return lines


def _sae_training_text(info: dict) -> str:
    if not info:
        return ""
    parts = [f"{info['train_tokens']:,} training tokens" if info.get("train_tokens") else None,
             f"explained variance {info['explained_variance']:.3f}" if info.get("explained_variance") else None,
             f"{info['dead_fraction']:.1%} dead latents" if info.get("dead_fraction") is not None else None]
    return "SAE training: " + ", ".join(p for p in parts if p) + ". "


def _ablation_lines(rows: dict, config: ReportSignalsConfig) -> list[str]:
    if not rows:
        return []
    lines = [f"How many pooled latents to keep per prompt (`--ablation_top_k {config.ablation_top_k} "
             f"--ablation_n_train {config.ablation_n_train}`; same rows, same MATH-500 test):", "",
             "| features | Spearman (MATH-500) | 95% CI | mean pooled L0 before the top-k cut |", "|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['spearman']:.3f} | [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}] | "
                     f"{row['mean_pooled_l0']:.0f} |")
    return [*lines, ""]


def _counts(counts: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())


USAGE = [
    "```python",
    "from saerl_hf.features import featurize, FeaturizeConfig",
    "from saerl_hf.signals import (DifficultyProbe, DifficultyConfig, QualityProbe, ClusterModel, ClusterConfig,",
    "                              make_quality_dataset, deduplicate, label_pass_rates, PassRateConfig)",
    "",
    "labelled = featurize(small_subset, FeaturizeConfig(model=\"smollm2-135m\"))  # sae_idx / sae_val / sae_l0",
    "probe = DifficultyProbe(DifficultyConfig(label_column=\"level\")).fit(labelled)  # or \"pass_rate\"",
    "probe.save(\"probes/difficulty\")            # model.safetensors + config.json, no pickle",
    "pool = DifficultyProbe.load(\"probes/difficulty\").apply(featurized_pool)  # adds `difficulty`",
    "",
    "noisy = featurize(make_quality_dataset(clean, seed=0).filter(lambda r: r[\"is_clean\"] == 0))",
    "quality = QualityProbe().fit(featurize(clean), negatives=noisy)",
    "kept, counts = quality.keep(pool, top_fraction=0.9)   # or threshold=0.5; adds `quality`",
    "",
    "clusters = ClusterModel(ClusterConfig(k=16)).fit(kept)",
    "deduped, counts = deduplicate(clusters.apply(kept), threshold=0.98)  # adds `cluster`",
    "",
    "with_labels = label_pass_rates(subset, PassRateConfig(model=\"smollm2-135m\", k=4))  # pass_rate, n_samples",
    "```",
    "",
    "Every fitted model refuses features of another SAE (hash, width, reader, layer, hook or pooling differ) "
    "with `SAEMismatchError`; a dataset without feature columns raises `MissingFeaturesError` (featurize "
    "first); labels that are None/NaN are skipped and counted in `probe.metrics`; fewer than `min_labels` "
    "raises `SignalLabelError`. `apply` uses a picklable map function and a fingerprint derived from the input "
    "and the fitted model, so a re-run hits the `datasets` cache.",
]

NOTES = [
    "- Difficulty labels with higher = easier (`pass_rate`) are sign-flipped at fit time "
    "(`DifficultyConfig.higher_is_harder`, default: False only for `pass_rate`), so `difficulty` is always "
    "higher = harder.",
    "- Problem/answer mismatches: the featurizer reads the problem only (the RL prompt), so an answer swapped "
    "for another problem's leaves the features unchanged and no probe could see it. `make_quality_dataset("
    "include_answer=True)` appends `Answer: ...` to every row (clean and corrupted) and then adds the mismatch "
    "kind; it is not part of this report.",
    "- Off-domain negatives are built from a pool of everyday requests written for this project "
    "(`saerl_hf.signals.corruptions.OFF_DOMAIN_PROMPTS`); train and test use disjoint halves.",
]


def cli_main(argv: list[str]) -> int:
    from trl import TrlParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    (config,) = TrlParser((ReportSignalsConfig,)).parse_args_and_config(args=argv)
    run_report(config)
    print(f"wrote {config.output}")
    return 0
