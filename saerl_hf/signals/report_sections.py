"""The measurements of ``saerl-hf report-signals``: one function per section of docs/signals.md.

Each returns plain numbers (and, for the figures, the arrays behind them); :mod:`saerl_hf.signals.report`
runs them and :mod:`saerl_hf.signals.report_render` turns the numbers into the page.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from saerl_hf.signals.report import ReportSignalsConfig

logger = logging.getLogger(__name__)


def bootstrap_ci(metric, a, b, n: int, seed: int, method: str = "percentile") -> tuple[float, float]:
    """95% bootstrap CI of ``metric(a, b)`` over paired rows (``scipy.stats.bootstrap``; percentile unless
    ``method`` says otherwise: ``basic`` for a metric a resample inflates, such as NMI of duplicated rows).

    A resample whose ``b`` holds a single value (one class, one level) has no defined metric: NaN, so
    the interval is NaN too (scipy warns) rather than quietly narrower.
    """
    from scipy.stats import bootstrap

    def statistic(a_rows, b_rows):
        return metric(a_rows, b_rows) if len(np.unique(b_rows)) > 1 else np.nan

    result = bootstrap((np.asarray(a), np.asarray(b)), statistic, n_resamples=n, paired=True, vectorized=False,
                       method=method, confidence_level=0.95, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def auroc(score, y) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def math_samples(n_train: int, n_test: int, seed: int):
    """The report's rows: a seeded sample of MATH train problems with a level and a subject (to fit on) and the
    first MATH-500 problems (to score on); ``sae-sweep`` scores every SAE on these same rows."""
    from saerl_hf.data import load_math_dataset

    math_train = load_math_dataset("math", split="train")
    math_train = math_train.filter(lambda r: r["level"] is not None and r["subject"] is not None)
    math500 = load_math_dataset("math500")
    for name, n, available, what in (("n_train", n_train, math_train, "MATH train problems with a level and a subject"),
                                     ("n_test", n_test, math500, "MATH-500 problems")):
        if not 0 < n <= len(available):
            raise ValueError(f"{name}={n}, but there are {len(available)} {what}. Fix: pass --{name} between 1 and "
                             f"{len(available)}.")
    train_raw = math_train.shuffle(seed=seed).select(range(n_train)).flatten_indices()
    return train_raw, math500.select(range(n_test))


class Featurizer:
    """Featurize with the report's settings, recording seconds and rows actually computed per set."""

    def __init__(self, config: ReportSignalsConfig, cache: Path):
        from saerl_hf.features import FeaturizeConfig

        self.config = FeaturizeConfig(model=config.model, sae=config.sae, d_sae=config.d_sae,
                                      sae_k=config.sae_k, layer=config.layer, top_k=config.top_k,
                                      pooling=config.pooling, max_length=config.max_length, dense=True,
                                      dtype=config.reader_dtype,
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


def difficulty_section(train, test, config: ReportSignalsConfig, tokenizer, probe_dir: Path) -> dict:
    from sklearn.linear_model import RidgeCV

    from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe
    from saerl_hf.signals.matrix import dataset_matrix, fit_scaler, identity_for, part_columns, transform

    levels = np.asarray(test["level"], dtype=float)
    rows, predictions = {}, {}

    def record(name, pred, fit_seconds, detail):
        rho = spearman(pred, levels)
        ci = bootstrap_ci(spearman, pred, levels, config.bootstrap, config.seed)
        rows[name] = {"spearman": rho, "ci95": ci, "fit_seconds": fit_seconds, "detail": detail}
        predictions[name] = np.asarray(pred, dtype=float)
        logger.info("difficulty %s: Spearman %.3f [%.3f, %.3f]", name, rho, *ci)

    for name, features, scaling in (("SAE, ElasticNetCV", "sae", "log1p"),
                                    ("dense, ElasticNetCV", "dense_mean", "std")):
        probe = DifficultyProbe(DifficultyConfig(label_column="level", features=features, scaling=scaling,
                                                 seed=config.seed,
                                                 pooling_part=config.difficulty_pooling_part)).fit(train)
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
        columns = part_columns(identity_for(train, features, config.difficulty_pooling_part))
        x_train = transform(dataset_matrix(train, features, columns=columns), scaling)
        x_test = transform(dataset_matrix(test, features, width=x_train.shape[1] if features == "sae" else None,
                                          columns=columns), scaling)
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
    wide = Featurizer(replace(config, top_k=config.ablation_top_k), cache)
    variants = {config.top_k: (train.select(range(n)), test),
                config.ablation_top_k: (wide(train_raw.select(range(n)), f"math_train_top{config.ablation_top_k}"),
                                        wide(test_raw, f"math500_test_top{config.ablation_top_k}"))}
    levels = np.asarray(test["level"], dtype=float)
    rows = {}
    for top_k, (fit_on, score_on) in variants.items():
        probe = DifficultyProbe(DifficultyConfig(label_column="level", seed=config.seed,
                                                 pooling_part=config.difficulty_pooling_part)).fit(fit_on)
        pred = probe.predict(score_on)
        rows[f"SAE top-{top_k}, ElasticNetCV ({n} train)"] = {
            "spearman": spearman(pred, levels), "ci95": bootstrap_ci(spearman, pred, levels, config.bootstrap,
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
        probe = QualityProbe(QualityConfig(features=features, scaling=scaling, seed=config.seed,
                                           pooling_part=config.quality_pooling_part))
        probe.fit(train_clean, negatives=train_neg)
        score = np.r_[probe.predict(test_clean), probe.predict(test_neg)]
        per_kind = {k: auroc(score[(kinds == "none") | (kinds == k)], y_test[(kinds == "none") | (kinds == k)])
                    for k in sorted(set(kinds.tolist()) - {"none"})}
        rows[name] = {"auroc": auroc(score, y_test),
                      "ci95": bootstrap_ci(auroc, score, y_test, config.bootstrap, config.seed),
                      "per_kind": per_kind, "fit_seconds": probe.metrics["fit_seconds"], "C": probe.metrics["C"],
                      "kept_at_0.5": {"clean": float(np.mean(score[y_test == 1] >= 0.5)),
                                      "noisy": float(np.mean(score[y_test == 0] >= 0.5))}}
        curves[name] = (y_test, score)
        logger.info("quality %s: AUROC %.3f", name, rows[name]["auroc"])
    # Length baseline: longer = more likely clean (truncation and most off-domain requests are short).
    texts = list(test_clean["problem"]) + list(test_neg["problem"])
    length = np.array([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts], float)
    per_kind = {k: auroc(length[(kinds == "none") | (kinds == k)], y_test[(kinds == "none") | (kinds == k)])
                for k in sorted(set(kinds.tolist()) - {"none"})}
    rows["prompt length (tokens)"] = {"auroc": auroc(length, y_test),
                                      "ci95": bootstrap_ci(auroc, length, y_test, config.bootstrap, config.seed),
                                      "per_kind": per_kind, "fit_seconds": 0.0}
    curves["prompt length"] = (y_test, length)
    return {"rows": rows, "curves": curves, "train_counts": corruption_counts(train_neg),
            "test_counts": corruption_counts(test_neg), "n_train_clean": len(train_clean),
            "n_test_clean": len(test_clean)}


#: k-means seeds per cluster row: NMI moves by a few hundredths between restarts, more than some gaps between rows.
CLUSTER_SEEDS = 3


def clusters_over_seeds(train, test, config: ReportSignalsConfig, features: str = "sae", scaling: str | None = None,
                        pooling_part: str | None = None):
    """k-means on ``train`` at ``CLUSTER_SEEDS`` seeds from ``config.seed``: the first seed's model and MATH-500
    clusters, and the NMI with ``test["subject"]`` at every seed (NMI moves by a few hundredths between restarts)."""
    from saerl_hf.signals.diversity import ClusterConfig, ClusterModel

    seeds = []
    for seed in range(config.seed, config.seed + CLUSTER_SEEDS):
        model = ClusterModel(ClusterConfig(n_clusters=config.n_clusters, features=features, scaling=scaling,
                                           seed=seed, pooling_part=pooling_part)).fit(train)
        seeds.append((model, model.predict(test)))
    nmi = [_nmi(clusters, test["subject"]) for _, clusters in seeds]
    return *seeds[0], nmi


def _nmi(clusters, subjects) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(subjects, clusters))


def _nmi_interval(clusters, subjects, config: ReportSignalsConfig) -> tuple[float, float]:
    """The basic bootstrap interval of NMI (a resample's duplicated rows inflate NMI, which the percentile interval
    would inherit; the basic one reflects it), clipped to NMI's range [0, 1]."""
    low, high = bootstrap_ci(_nmi, clusters, subjects, config.bootstrap, config.seed, method="basic")
    return float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))


def cluster_section(train, test, config: ReportSignalsConfig) -> dict:
    """NMI of k-means clusters with MATH subjects: SAE latents idf-weighted (the default), the same without idf,
    and the dense baseline; each at ``CLUSTER_SEEDS`` k-means seeds (the first is the row's main figure)."""
    from sklearn.metrics import normalized_mutual_info_score

    from saerl_hf.signals.diversity import deduplicate

    rows, assignments = {}, {}
    subject_codes = np.unique(np.asarray(test["subject"]), return_inverse=True)[1]  # numbers, for the bootstrap
    for name, features, scaling in (("SAE k-means", "sae", "log1p_idf"), ("SAE k-means, no idf", "sae", "log1p"),
                                    ("dense k-means", "dense_mean", "std")):
        model, test_clusters, nmi = clusters_over_seeds(train, test, config, features, scaling,
                                                        config.cluster_pooling_part)
        rows[name] = {"scaling": scaling, "nmi_test": nmi[0], "nmi_test_seeds": nmi,
                      "nmi_test_ci95": _nmi_interval(test_clusters, subject_codes, config),
                      "nmi_train": float(normalized_mutual_info_score(train["subject"], model.predict(train))),
                      "fit_seconds": model.metrics["fit_seconds"], "sizes": model.metrics["cluster_sizes"]}
        assignments[name] = test_clusters
        if name == "SAE k-means":
            _, rows[name]["dedup_train"] = deduplicate(model.apply(train), threshold=0.98,
                                                       pooling_part=config.cluster_pooling_part)
        logger.info("clusters %s: NMI test %.3f (seeds %s)", name, nmi[0], ", ".join(f"{v:.3f}" for v in nmi))
    return {"rows": rows, "assignments": assignments, "subjects": list(test["subject"])}


def cost_section(test, featurizer: Featurizer, difficulty_probe_dir: Path, config: ReportSignalsConfig) -> dict:
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
