"""``saerl-hf sae-sweep``: train one SAE per sweep point and score each by the difficulty Spearman it gives.

Issue 15 asks for a stronger default SAE whose width and k come from a small sweep. Each point (d_sae x k, times
optional override sets, plus named extra points) is trained by :func:`saerl_hf.sae_train.train_sae` into
``<output_dir>/saes/<name>``; an SAE already there with the same settings is reused, so a killed sweep goes on
with the next unfinished point (and that point from train-sae's own checkpoint, ``<name>.ckpt/``). Its held-out EV / L0 / dead share come from its ``sae_training.json``; the same MATH
rows as ``report-signals`` are featurized with it and scored the same way (ElasticNet difficulty probe, Spearman
with MATH-500 level, bootstrap CI), beside the dense baseline on those rows once. ``docs/results/sae_sweep.json``
is rewritten after every point; :mod:`saerl_hf.signals.report_sweep` renders it (a section of docs/signals.md).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from saerl_hf.configs import ConfigError

__all__ = ["SAESweepConfig", "SweepPoint", "cli_main", "run_sweep", "sweep_points", "token_label"]

logger = logging.getLogger(__name__)

#: TrainSAEConfig fields that do not change what an SAE is: a saved SAE differing only there is reused.
VOLATILE_FIELDS = ("output_dir", "overwrite", "device", "checkpoint_every", "activation_cache")
#: Settings that the grid itself names (anything else a point sets is listed as its "other settings").
GRID_FIELDS = ("d_sae", "k", "training_tokens")


@dataclass
class SAESweepConfig:
    """Options of ``saerl-hf sae-sweep`` (YAML via ``--config``, overridable on the command line)."""

    model: str = field(default="smollm2-135m", metadata={"help": "Reader model the SAEs read (alias, dir, Hub id)."})
    layer: int | None = field(default=None, metadata={"help": "Block to read; default: train-sae's (the middle one)."})
    d_sae: list[int] = field(default_factory=lambda: [4096, 8192, 16384], metadata={
        "help": "Widths of the grid (latents); with `k` it makes d_sae x k points (empty: extra_points only)."})
    k: list[int] = field(default_factory=lambda: [32, 64], metadata={"help": "TopK k values of the grid."})
    training_tokens: int = field(default=2_000_000, metadata={"help": "Token budget of every point (a point's "
                                                                      "own training_tokens=... wins)."})
    override_sets: list[str] = field(default_factory=list, metadata={
        "help": "TrainSAEConfig settings crossed with the grid, one set per entry as 'key=value,key=value' "
                "(e.g. 'aux_loss_coefficient=0' 'aux_loss_coefficient=1'); empty: the grid as is."})
    extra_points: list[str] = field(default_factory=list, metadata={
        "help": "Points outside the grid, '[name:]key=value,key=value' (e.g. "
                "'final:d_sae=8192,k=64,training_tokens=10000000'); unnamed ones are named like the grid's."})
    train_options: list[str] = field(default_factory=list, metadata={
        "help": "TrainSAEConfig settings shared by every point, 'key=value' each (e.g. 'dtype=bfloat16' "
                "'seed=0'); any train-sae option works."})
    reuse_activations: bool = field(default=True, metadata={
        "help": "Keep the reader's activations in <output_dir>/activations and reuse them across points that read "
                "the same texts (train-sae's activation_cache; ~1.2 GB per million tokens with a bfloat16 reader): "
                "only the first point runs the reader. A point's own activation_cache=... wins."})
    n_train: int = field(default=2000, metadata={"help": "MATH train problems (random, seeded) the probe fits on."})
    n_test: int = field(default=500, metadata={"help": "First MATH-500 problems the Spearman is measured on."})
    top_k: int = field(default=0, metadata={"help": "Pooled latents kept per prompt (as report-signals; 0 = every "
                                                    "active latent)."})
    pooling: str = field(default="mean", metadata={"help": "Pooling of SAE codes over the problem's tokens."})
    max_length: int = field(default=256, metadata={"help": "Prompt tokens read per problem (longer are cut)."})
    reader_dtype: str = field(default="auto", metadata={"help": "Reader dtype when featurizing: float32, bfloat16 "
                                                                "or auto (bfloat16 where native)."})
    dense_baseline: bool = field(default=True, metadata={"help": "Also score the dense mean residual on the same "
                                                                 "rows (once, for reference)."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples (the 95 percent intervals)."})
    probe_n_jobs: int = field(default=1, metadata={"help": "Parallel cross-validation fits of each difficulty probe "
                                                           "(-1 = every core; the same probe for any value)."})
    seed: int = field(default=0, metadata={"help": "Seed of the MATH train sample, the probe's CV and the "
                                                   "bootstrap (the SAE training seed is train_options' seed=)."})
    output_dir: str = field(default="outputs/sae-sweep", metadata={"help": "SAEs go to <output_dir>/saes/<name>, "
                                                                           "featurized sets to <output_dir>/featurize."})
    results: str = field(default="docs/results/sae_sweep.json", metadata={
        "help": "Results JSON (report-signals shows it as a section of the page beside it, docs/signals.md)."})


@dataclass
class SweepPoint:
    """One SAE of the sweep: its name (its directory) and its full train-sae settings."""

    name: str
    train_config: object  # TrainSAEConfig
    overrides: list[str]  # its settings beyond d_sae / k / training_tokens, as 'key=value'


# ----------------------------------------------------------------------------- points


def _pairs(text: str, where: str) -> list[tuple[str, str]]:
    """``'a=1,sources=gsm8k:train,math:train'`` -> ``[('a', '1'), ('sources', 'gsm8k:train,math:train')]``: a comma
    starts a new pair only before ``key=``, so values may hold commas."""
    out = []
    for item in re.split(r",(?=\s*[A-Za-z_]\w*=)", text.strip()) if text.strip() else []:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key.strip()):
            raise ConfigError(f"sae-sweep: {where} entry '{text}' is not 'key=value[,key=value]'. Fix: e.g. "
                              f"'d_sae=8192,k=64'.")
        out.append((key.strip(), value.strip()))
    return out


def _train_config(config: SAESweepConfig, pairs: list[tuple[str, str]]):
    """TrainSAEConfig from the sweep's shared settings + a point's pairs, parsed by train-sae's own parser (so its
    types, checks and did-you-mean apply, and options added to train-sae later work here unchanged)."""
    from trl import TrlParser

    from saerl_hf.configs import parse_config
    from saerl_hf.sae_train import TrainSAEConfig

    shared = [("model", config.model), ("training_tokens", str(config.training_tokens))]
    shared += [("layer", str(config.layer))] if config.layer is not None else []
    if config.reuse_activations:
        shared += [("activation_cache", str(Path(config.output_dir) / "activations"))]
    for option in config.train_options:
        shared += _pairs(option, "train_options")
    argv = [part for key, value in shared + pairs for part in (f"--{key}", value)]
    (train_config,) = parse_config(TrlParser((TrainSAEConfig,), prog="saerl-hf sae-sweep"), argv)
    return train_config


def token_label(n: int) -> str:
    """``2000000`` -> ``2M``: the token budget in point names and section headings."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def sweep_points(config: SAESweepConfig) -> list[SweepPoint]:
    """The grid (d_sae x k x override sets) then the extra points; names are unique (their directories)."""
    specs = [(None, [("d_sae", str(d)), ("k", str(k)), *_pairs(extra, "override_sets")])
             for d, k, extra in itertools.product(config.d_sae, config.k, config.override_sets or [""])]
    for spec in config.extra_points:
        match = re.match(r"([A-Za-z0-9_.-]+):(?=\s*[A-Za-z_]\w*=)", spec)
        specs.append((match.group(1) if match else None, _pairs(spec[match.end():] if match else spec,
                                                                "extra_points")))
    points = []
    for name, pairs in specs:
        train_config = _train_config(config, pairs)
        overrides = [f"{key}={value}" for key, value in pairs if key not in GRID_FIELDS]
        suffix = "".join("-" + re.sub(r"[^A-Za-z0-9_.+-]+", "_", item.replace("=", "")) for item in overrides)
        name = name or f"w{train_config.d_sae}-k{train_config.k}-{token_label(train_config.training_tokens)}{suffix}"
        out = Path(config.output_dir) / "saes" / name
        points.append(SweepPoint(name, replace(train_config, output_dir=str(out)), overrides))
    names = [p.name for p in points]
    shared = sorted({n for n in names if names.count(n) > 1})
    if shared or not points:
        raise ConfigError(f"sae-sweep: two points share a name ({', '.join(shared)}). Fix: name the extra points "
                          f"('name:key=value,...') or drop the duplicates." if shared else
                          "sae-sweep: no points (empty d_sae or k, and no extra_points). Fix: e.g. --d_sae 4096 --k 32.")
    return points


# ----------------------------------------------------------------------------- train or reuse


def _reusable(train_config) -> bool:
    """Whether the SAE at ``output_dir`` was trained with these settings (fields it predates count as defaults)."""
    from saerl_hf.sae_load import SAE_WEIGHTS, sae_training_info
    from saerl_hf.sae_train import TrainSAEConfig

    out = Path(train_config.output_dir)
    info = sae_training_info(out)
    if not (out / SAE_WEIGHTS).is_file() or "metrics" not in info:
        return False
    saved, defaults = info.get("config", {}), asdict(TrainSAEConfig())
    wanted = json.loads(json.dumps(asdict(train_config), default=str))  # tuples -> lists, as the file has them
    return all(saved.get(key, defaults.get(key)) == value for key, value in wanted.items()
               if key not in VOLATILE_FIELDS)


def train_or_reuse(point: SweepPoint) -> tuple[dict, bool]:
    """(the SAE's training record, whether it was trained now): trains unless a matching SAE is there."""
    from saerl_hf.sae_load import sae_training_info
    from saerl_hf.sae_train import train_sae

    out = Path(point.train_config.output_dir)
    if _reusable(point.train_config):
        logger.info("sae-sweep %s: reusing %s (same settings)", point.name, out)
        return sae_training_info(out), False
    if out.exists():
        logger.info("sae-sweep %s: %s has other settings: retraining", point.name, out)
    train_sae(replace(point.train_config, overwrite=out.exists()))
    return sae_training_info(out), True


# ----------------------------------------------------------------------------- measure


def _featurizer(config: SAESweepConfig, sae_dir: Path, layer: int | None = None):
    """report-signals' featurizer (its cache, its timings) with this SAE, its block (a point's own ``layer=``) and
    the sweep's reading settings."""
    from saerl_hf.signals.matrix import PART_OPTIONS
    from saerl_hf.signals.report import ReportSignalsConfig
    from saerl_hf.signals.report_sections import Featurizer

    report = ReportSignalsConfig(model=config.model, sae=str(sae_dir), layer=layer, top_k=config.top_k,
                                 pooling=config.pooling, max_length=config.max_length,
                                 reader_dtype=config.reader_dtype, seed=config.seed, bootstrap=config.bootstrap,
                                 **dict.fromkeys(PART_OPTIONS))  # the sweep scores the whole pooled vector
    return Featurizer(report, Path(config.output_dir))


def measure_point(point: SweepPoint, info: dict, trained: bool, rows, config: SAESweepConfig) -> tuple[dict, tuple]:
    """The point's row of results (training record + featurize seconds + difficulty) and its featurized sets."""
    from saerl_hf.signals.report_sweep import difficulty_spearman

    featurize = _featurizer(config, Path(point.train_config.output_dir), point.train_config.layer)
    names = (f"math_train[{point.name}]", f"math500_test[{point.name}]")
    train, test = featurize(rows[0], names[0]), featurize(rows[1], names[1])
    seconds = [featurize.timings.get(name, {}).get("seconds") for name in names]
    metrics = info.get("metrics", {})
    trained_on = metrics.get("device_name") or info.get("config", {}).get("device")
    row = {"name": point.name, "sae_dir": point.train_config.output_dir, "d_sae": point.train_config.d_sae,
           "k": point.train_config.k, "training_tokens": point.train_config.training_tokens,
           "overrides": point.overrides, "reused": not trained, "sae_hash": info.get("sae_hash"),
           "trained_on": trained_on,
           **{key: metrics.get(key) for key in ("explained_variance", "l0", "dead_fraction", "train_seconds",
                                                 "train_tokens", "eval_tokens", "activation_blocks_cached",
                                                 "activation_blocks")},
           "featurize_seconds": round(sum(seconds), 1) if None not in seconds else None,
           "mean_pooled_l0": float(np.mean(train["sae_l0"])),
           "difficulty": difficulty_spearman(train, test, "sae", config.seed, config.bootstrap,
                                                     config.probe_n_jobs)}
    logger.info("sae-sweep %s: EV %.3f, L0 %.1f, dead %.1f%%, train %s s%s, featurize %s s, Spearman %.3f "
                "[%.3f, %.3f]", point.name, row["explained_variance"], row["l0"], 100 * row["dead_fraction"],
                row["train_seconds"], " (reused)" if row["reused"] else "", row["featurize_seconds"],
                row["difficulty"]["spearman"], *row["difficulty"]["ci95"])
    return row, (train, test)


def _dense_baseline(train, test, config: SAESweepConfig) -> dict:
    """The dense mean residual on the same rows (the featurized sets carry it): the reference the SAEs must beat."""
    from saerl_hf.signals.report_sweep import difficulty_spearman

    dense = difficulty_spearman(train, test, "dense_mean", config.seed, config.bootstrap, config.probe_n_jobs)
    logger.info("sae-sweep dense baseline: Spearman %.3f [%.3f, %.3f]", dense["spearman"], *dense["ci95"])
    return dense


# ----------------------------------------------------------------------------- run


def command_line(config: SAESweepConfig, argv: list[str] | None = None) -> str:
    """The regenerate command: the flags as given, else every option that differs from its default."""
    if argv is not None:
        return shlex.join(["saerl-hf", "sae-sweep", *argv])
    defaults, parts = SAESweepConfig(), ["saerl-hf", "sae-sweep"]
    for option in fields(config):
        value = getattr(config, option.name)
        if value == getattr(defaults, option.name) or value == []:
            continue
        values = value if isinstance(value, list) else [value]
        parts += [f"--{option.name}", *(str(v).lower() if isinstance(v, bool) else str(v) for v in values)]
    return shlex.join(parts)


def run_sweep(config: SAESweepConfig, argv: list[str] | None = None) -> dict:
    """Train (or reuse) and score every point; rewrite the results JSON after each, return the final results."""
    from tqdm.auto import tqdm

    from saerl_hf.signals.report_sections import math_samples
    from saerl_hf.sparse import feature_provenance

    started = time.time()
    points = sweep_points(config)  # every point's settings checked before anything trains
    rows = math_samples(config.n_train, config.n_test, config.seed)
    results = {"config": asdict(config), "command": command_line(config, argv), "n_points": len(points),
               "n_train": len(rows[0]), "n_test": len(rows[1]), "train_seed": points[0].train_config.seed if points
               else None, "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
               "points": [], "dense": None, "partial": True}
    bar = tqdm(points, desc="sae-sweep", unit="SAE", file=sys.stderr)
    for point in bar:
        bar.set_postfix_str(point.name)
        info, trained = train_or_reuse(point)
        row, (train, test) = measure_point(point, info, trained, rows, config)
        provenance = feature_provenance(train)
        row["layer"] = provenance.get("layer")  # a point may set its own (override_sets: 'layer=8')
        results["points"].append(row)
        results.setdefault("layer", row["layer"])  # the first point's block (the old files' one field)
        results["reader_dtype"] = provenance.get("dtype")
        blocks = results.setdefault("dense_by_layer", {})
        if config.dense_baseline and str(row["layer"]) not in blocks:  # the dense residual of each block read
            blocks[str(row["layer"])] = {**_dense_baseline(train, test, config), "d_in": provenance.get("d_in")}
            results["dense"] = results["dense"] or blocks[str(row["layer"])]
        _write(config.results, results, started, partial=len(results["points"]) < len(points))
    bar.close()
    logger.info("sae-sweep: %d point(s) in %.0f s -> %s", len(points), time.time() - started, config.results)
    return results


def _write(path: str, results: dict, started: float, partial: bool) -> None:
    results.update(partial=partial, wall_seconds=round(time.time() - started, 1),
                   measured_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(path)


def cli_main(argv: list[str]) -> int:
    """``saerl-hf sae-sweep``: parse SAESweepConfig (YAML + flags), run the sweep, print its section."""
    from trl import TrlParser

    from saerl_hf.configs import parse_config
    from saerl_hf.signals.report_sweep import render_sweep

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    (config,) = parse_config(TrlParser((SAESweepConfig,), prog="saerl-hf sae-sweep"), argv)
    results = run_sweep(config, argv)
    print(render_sweep(results))
    print(f"wrote {config.results}")
    return 0
