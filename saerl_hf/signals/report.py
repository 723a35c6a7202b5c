"""``saerl-hf report-signals``: measure the three signals on real data -> docs/signals.md + PNGs.

Difficulty: fit on MATH train levels, Spearman on MATH-500 levels, beside the same regressors on the dense
mean-pooled residual of the same layer and prompt length alone. Quality: AUROC on held-out corrupted vs clean
MATH-500 prompts (+ dense and length baselines). Clusters: NMI with MATH subjects (+ dense). Cost: seconds per
1,000 prompts for the SAE proxy vs the pass-rate labeller. Featurized sets are cached, so a rerun only refits.
The measurements are in :mod:`~saerl_hf.signals.report_sections`, the page in
:mod:`~saerl_hf.signals.report_render` (a Jinja2 template).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from saerl_hf.signals.matrix import part_option
from saerl_hf.signals.report_generalisation import SAME_ROWS, generalisation_section, variant_sweep
from saerl_hf.signals.report_render import render_markdown
from saerl_hf.signals.report_sections import (
    Featurizer,
    cluster_section,
    cost_section,
    difficulty_section,
    math_samples,
    quality_section,
    top_k_ablation,
)

__all__ = ["ReportSignalsConfig", "cli_main", "render_markdown", "run_report"]

logger = logging.getLogger(__name__)


@dataclass
class ReportSignalsConfig:
    """Options of ``saerl-hf report-signals``."""

    model: str = field(default="smollm2-135m", metadata={"help": "Reader model (alias, dir or Hub id)."})
    sae: str | None = field(default=None, metadata={"help": "SAE dir/Hub id; default: the `train-sae` default dir."})
    d_sae: int = field(default=4096, metadata={"help": "Width (latents, sae-lens' d_sae) of the default SAE (when "
                                                       "`sae` is unset)."})
    sae_k: int = field(default=32, metadata={"help": "k of the default TopK SAE (when `sae` is unset)."})
    layer: int | None = field(default=None, metadata={"help": "Block to read (default: the SAE's own layer)."})
    top_k: int = field(default=0, metadata={"help": "Pooled latents kept per prompt (featurize top_k; 0 = every "
                                                    "active latent, the featurize default)."})
    pooling: str = field(default="mean+last", metadata={"help": "Pooling of SAE codes over the problem's tokens "
                                                                "(curate's default: see its help)."})
    difficulty_pooling_part: str | None = part_option("difficulty_pooling_part")
    quality_pooling_part: str | None = part_option("quality_pooling_part")
    cluster_pooling_part: str | None = part_option("cluster_pooling_part")
    max_length: int = field(default=256, metadata={"help": "Prompt tokens read per problem (longer are cut)."})
    reader_dtype: str = field(default="auto", metadata={"help": "Reader model dtype when featurizing: float32, "
                                                                "bfloat16, or auto (bfloat16 where it is native, "
                                                                "see saerl_hf/devices.py; else float32)."})
    n_train: int = field(default=2000, metadata={"help": "MATH train problems (random, seeded) to fit on."})
    n_test: int = field(default=500, metadata={"help": "MATH-500 problems to evaluate on."})
    n_quality_train: int = field(default=800, metadata={"help": "Train problems whose corruptions train the probe."})
    n_clusters: int = field(default=7, metadata={"help": "k-means clusters (MATH has 7 subjects)."})
    n_passrate: int = field(default=8, metadata={"help": "MATH-500 prompts timed with the pass-rate labeller "
                                                         "(0 skips the cost measurement)."})
    passrate_k: int = field(default=4, metadata={"help": "Samples per prompt for the pass-rate labeller."})
    passrate_max_new_tokens: int = field(default=256, metadata={"help": "Completion budget of the labeller."})
    ablation_top_k: int = field(default=0, metadata={"help": "Also fit the SAE difficulty probe on features keeping "
                                                             "this many pooled latents (0 = off)."})
    ablation_n_train: int = field(default=1000, metadata={"help": "Train rows for the top_k ablation."})
    generalisation: bool = field(default=True, metadata={"help": "Also measure sae / dense / sae+dense on the same "
                                                                 "rows: leave-one-kind-out and real-text quality, "
                                                                 "the learning curve, the probes' top latents."})
    n_real_text: int = field(default=500, metadata={"help": "Real-text negatives (docstrings of installed packages) "
                                                            "for the quality probe's held-out test (0 skips)."})
    learning_curve_sizes: list[int] = field(default_factory=lambda: [250, 500, 1000, 2000, 7500], metadata={
        "help": "Label counts of the difficulty learning curve (capped at n_train)."})
    explain_k: int = field(default=5, metadata={"help": "Top latents shown per probe."})
    feature_variants: list[str] = field(default_factory=list, metadata={
        "help": "Featurization variants 'pooling:top_k' (pooling mean | max | sum | last | mean+max | mean+last; top_k "
                "0 = every active latent) whose difficulty Spearman (sae and sae+dense) and quality AUROC (in "
                "distribution and leave-one-kind-out) are measured; each re-featurizes the train, test and quality "
                "sets. Example: mean:0 max:0 mean+max:0 last:0 mean+last:0 mean:64."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for confidence intervals."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, corruptions, CV and k-means."})
    cache_dir: str | None = field(default=None, metadata={"help": "Cache (default `<SAERL_CACHE>/report-signals`)."})
    output: str = field(default="docs/signals.md", metadata={"help": "Markdown report path."})
    img_dir: str = field(default="docs/img", metadata={"help": "Where the PNGs go."})
    render_only: bool = field(default=False, metadata={"help": "Rewrite the markdown from the cached results.json of "
                                                              "the last run (no featurizing or fitting)."})
    variants_only: bool = field(default=False, metadata={
        "help": "Measure only `feature_variants` and merge them into the cached results.json of the last full run "
                "(same rows, reader and SAE: checked), then rewrite the page; the other sections are kept."})

    def __post_init__(self):
        from saerl_hf.signals.matrix import check_pooling_parts

        check_pooling_parts(self)


# ----------------------------------------------------------------------------- report


def run_report(config: ReportSignalsConfig) -> dict:
    from saerl_hf.models import cache_dir

    started = time.time()
    cache = Path(config.cache_dir) if config.cache_dir else cache_dir() / "report-signals"
    cache.mkdir(parents=True, exist_ok=True)
    if config.render_only and config.variants_only:
        raise ValueError("render_only and variants_only exclude each other. Fix: pass one of them.")
    if config.render_only or config.variants_only:
        results, saved = _cached_results(cache)
        if config.variants_only:
            results, saved = _merge_variants(results, saved, config, cache)
        Path(config.output).parent.mkdir(parents=True, exist_ok=True)
        Path(config.output).write_text(_page(results, saved, page_path=config.output))
        return results
    results = {"config": asdict(config), **_measure(config, cache),
               "wall_seconds": round(time.time() - started, 1),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"}
    (cache / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    Path(config.output).write_text(_page(results, config))
    logger.info("wrote %s (%.0fs)", config.output, time.time() - started)
    return results


def _page(results: dict, config: ReportSignalsConfig, page_path: str | None = None) -> str:
    """The page: the measured sections, the feature-set sections when they were measured, then one section per SAE
    sweep whose results (``results/sae_sweep*.json`` beside the page written, ``page_path``) exist."""
    from saerl_hf.signals.report_generalisation import render_generalisation
    from saerl_hf.signals.report_sweep import sweep_section_for

    page = render_markdown(results, config)
    from saerl_hf.signals.matrix import signal_parts

    page += render_generalisation(results["generalisation"], config.pooling, signal_parts(config)) \
        if results.get("generalisation") else ""
    return page + sweep_section_for(page_path or config.output)


def _measure(config: ReportSignalsConfig, cache: Path) -> dict:
    """Featurize the MATH samples, run every section and draw the figures: the measured part of results."""
    from saerl_hf.models import load_tokenizer
    from saerl_hf.sparse import feature_provenance

    featurize = Featurizer(config, cache)
    tokenizer = load_tokenizer(config.model)
    train_raw, test_raw = math_samples(config.n_train, config.n_test, config.seed)
    train, test = featurize(train_raw, "math_train"), featurize(test_raw, "math500_test")
    provenance = feature_provenance(train)

    probe_dir = cache / "probes"
    difficulty = difficulty_section(train, test, config, tokenizer, probe_dir)
    if config.ablation_top_k:
        difficulty["ablation"] = top_k_ablation(train_raw, test_raw, train, test, config, cache)
    quality = quality_section(train.select(range(config.n_quality_train)), test, featurize, config, tokenizer)
    clusters = cluster_section(train, test, config)
    cost = cost_section(test, featurize, probe_dir, config)
    generalisation = generalisation_section(train, test, featurize, config) if config.generalisation else {}
    if generalisation and config.feature_variants:
        generalisation["variants"] = variant_sweep(train_raw, test_raw, config, cache)
    return {"generalisation": generalisation, "provenance": provenance, "difficulty": difficulty["rows"],
            "difficulty_ablation": difficulty.get("ablation", {}), "sae_training": _sae_training(provenance),
            "quality": {k: v for k, v in quality.items() if k != "curves"},
            "clusters": {"rows": clusters["rows"]}, "cost": cost,
            "figures": _figures(config, difficulty, quality, clusters)}


def _cached_results(cache: Path) -> tuple[dict, ReportSignalsConfig]:
    """The last full run's results.json and its config (older option names upgraded)."""
    from saerl_hf.configs import upgrade_options

    path = cache / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: render_only and variants_only read a full run's results. "
                                f"Fix: run report-signals once without them (or pass that run's --cache_dir).")
    results = json.loads(path.read_text())
    saved = upgrade_options(results["config"], (ReportSignalsConfig,), warn=False)  # a cache of older names
    results.setdefault("sae_training", _sae_training(results["provenance"]))
    from saerl_hf.signals.matrix import PART_OPTIONS

    saved = {**dict.fromkeys(PART_OPTIONS), **saved}  # a run from before the parts read every column
    return results, ReportSignalsConfig(**{**saved, "render_only": False, "variants_only": False})


def _merge_variants(results: dict, saved: ReportSignalsConfig, config: ReportSignalsConfig,
                    cache: Path) -> tuple[dict, ReportSignalsConfig]:
    """``results`` with the variant section (re)measured on its rows; refuses other settings or another reader/SAE
    (the features' provenance is compared with the full run's before any fit)."""
    from saerl_hf.signals.report_sections import math_samples

    differ = {k: (getattr(saved, k), getattr(config, k)) for k in (*SAME_ROWS, "n_quality_train", "n_clusters")
              if getattr(saved, k) != getattr(config, k)}  # variants score the page's quality sets and cluster k
    if differ or not config.feature_variants or not results.get("generalisation"):
        raise ValueError(f"variants_only needs the last full run's settings, a generalisation section and "
                         f"--feature_variants; settings that differ (cached, given): {differ}. Fix: pass the same "
                         f"options as that run, or run the full report.")
    train_raw, test_raw = math_samples(config.n_train, config.n_test, config.seed)
    results["generalisation"]["variants"] = variant_sweep(train_raw, test_raw, config, cache, results["provenance"])
    saved.feature_variants = list(config.feature_variants)
    results["config"] = asdict(saved)
    results["generalisation"]["variants_added_later"] = True
    (cache / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    return results, saved


def _figures(config: ReportSignalsConfig, difficulty: dict, quality: dict, clusters: dict) -> dict:
    from saerl_hf import plots

    img = Path(config.img_dir)
    rows = difficulty["rows"]
    return {
        "difficulty_bars": plots.plot_metric_bars(
            {k: v["spearman"] for k, v in rows.items()}, img / "signals_difficulty_spearman.png",
            "Spearman with MATH-500 level", "Difficulty: held-out rank correlation", goal=0.6,
            errors={k: v["ci95"] for k, v in rows.items()}),
        "difficulty_box": plots.plot_difficulty_by_level(
            difficulty["levels"], {k: difficulty["predictions"][k] for k in ("SAE, ElasticNetCV",
                                                                              "dense, ElasticNetCV",
                                                                              "prompt length (tokens)")},
            img / "signals_difficulty_by_level.png"),
        "quality_roc": plots.plot_roc_curves(quality["curves"], img / "signals_quality_roc.png"),
        "clusters": plots.plot_cluster_subjects(clusters["assignments"]["SAE k-means"], clusters["subjects"],
                                                img / "signals_clusters_subjects.png",
                                                f"SAE k-means (k={config.n_clusters}) vs subject, MATH-500"),
    }


def _sae_training(provenance: dict) -> dict:
    """The SAE's own training metrics (``sae_training.json`` beside a locally trained SAE), if any."""
    from saerl_hf.sae_load import sae_training_info

    info = sae_training_info(provenance.get("sae"))
    metrics = info.get("metrics", info)
    return {k: metrics.get(k) for k in ("explained_variance", "dead_fraction", "l0", "train_tokens") if k in metrics}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def cli_main(argv: list[str]) -> int:
    from trl import TrlParser

    from saerl_hf.configs import parse_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    (config,) = parse_config(TrlParser((ReportSignalsConfig,), prog="saerl-hf report-signals"), argv)
    run_report(config)
    print(f"wrote {config.output}")
    return 0
