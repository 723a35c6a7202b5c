"""`saerl-hf curate`: load -> featurize -> difficulty / quality / clusters -> filter -> order, resumably.

Every stage writes its result under ``<output_dir>/stages/`` atomically, and featurization goes in chunks,
so a run killed at any point (even ``kill -9``) resumes from the last finished piece and produces the
same dataset (see ``summary.json``'s ``content_hash``). The output dir is the curated-dir contract that
``saerl-hf push`` / :func:`saerl_hf.hub.push_curated` publishes:

    <output_dir>/dataset/          the curated, ordered dataset (save_to_disk)
    <output_dir>/holdout/          rows set aside for evaluation, never trained on (if requested)
    <output_dir>/probes/           difficulty/ quality/ clusters/ (safetensors + JSON)
    <output_dir>/summary.json      counts kept/dropped per reason, signal metrics, timings, curriculum, command
    <output_dir>/provenance.json   reader model, SAE identity + hash, layer, pooling, k, library versions

Data-parallel on GPUs (or CPU processes, gloo): ``accelerate launch --num_processes N -m saerl_hf.cli curate
--config ...``; each rank featurizes its share of the chunks, rank 0 does the rest (:mod:`saerl_hf.distributed`).
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from saerl_hf.curate_config import (  # noqa: F401  (re-exported: the options live in curate_config.py)
    DEFAULT_SOURCES,
    PUBLISH_OPTIONS,
    CurateConfig,
    CurateError,
)
from saerl_hf.pool import (  # noqa: F401  (re-exported: the pool stages live in pool.py)
    featurize_config,
    featurize_pool_stages,
    featurize_quality_set,
    fill_levels,
    inject_noise,
    load_pool,
    sources_with_licenses,
    split_source,
)

logger = logging.getLogger(__name__)

#: Bump when the same settings fit other signals (2: idf-weighted SAE clusters; 3: dense probes standardised, not
#: log1p-clipped; 4: each signal reads its own part of a two-part pooling, the near-duplicates the clusters' part): on resume, what an older version fitted (SIGNAL_OUTPUTS: stages 06-09 and the probes and dataset
#: copied out of them) is fitted again, and the featurized pool (the expensive part) is kept.
SIGNALS_VERSION = 4
SIGNAL_OUTPUTS = ("stages/06_probes", "stages/07_signals", "stages/08_filter", "stages/09_order", "probes", "dataset",
                 "dataset.tmp")


# ----------------------------------------------------------------------------------------------- stages


def label_subset(pool, config: CurateConfig, stage_dir: Path, timings: dict):
    """The small labelled subset the difficulty proxy is fitted on (pass rates sampled here if asked)."""
    from saerl_hf.curriculum import _column
    from saerl_hf.stages import run_dataset_stage

    label = config.difficulty_label
    if label == "pass_rate":
        from saerl_hf.signals.passrate import label_pass_rates

        def build():
            if config.pass_rate_labels:
                return reuse_pass_rates(pool, config.pass_rate_labels)
            rows = np.random.default_rng(config.seed).permutation(len(pool))[: config.difficulty_max_labels]
            return label_pass_rates(pool.select(np.sort(rows)), pass_rate_config(config))

        return run_dataset_stage(stage_dir / "labels_pass_rate", build, "pass_rate_labels", timings)
    if label not in pool.column_names:
        raise CurateError(f"difficulty_label '{label}' is not a column of the pool ({', '.join(pool.column_names)}). "
                          f"Fix: use 'level' (with source_levels for unlabelled sources) or 'pass_rate'.")
    values = np.array([np.nan if v is None else float(v) for v in _column(pool, label)], dtype=np.float64)
    labelled = np.flatnonzero(np.isfinite(values))
    rng = np.random.default_rng(config.seed)
    take = np.sort(rng.permutation(labelled)[: config.difficulty_max_labels])
    return pool.select(take)


def pass_rate_config(config: CurateConfig):
    """The sampling settings of curate's pass-rate labels (one place, so other labellings can match them)."""
    from saerl_hf.signals.passrate import PassRateConfig

    return PassRateConfig(model=config.pass_rate_model or config.model, k=config.pass_rate_samples,
                          max_new_tokens=config.pass_rate_max_new_tokens, seed=config.seed)


def reuse_pass_rates(pool, labels_dir: str):
    """The pool rows another curate run labelled, with its pass-rate columns joined by id: the same labels
    without sampling them again (they are the expensive part). ``labels_dir`` is that run's labels stage, or
    the JSON Lines file the experiment keeps of it (``<results_dir>/pass_rate_labels.jsonl``, committed)."""
    from datasets import Dataset, load_from_disk

    path = Path(labels_dir)
    if path.is_file() and path.suffix in (".json", ".jsonl"):
        labels = Dataset.from_json(str(path), keep_in_memory=True)
    elif (path / "dataset_info.json").is_file():
        labels = load_from_disk(str(path))
    else:
        raise CurateError(f"pass_rate_labels: no labelled dataset at {labels_dir}. Fix: point it at the "
                          f"stages/labels_pass_rate dir of a finished curate run of the same pool, or at a "
                          f".jsonl of its rows (id, pass_rate).")
    absent = [column for column in ("id", "pass_rate") if column not in labels.column_names]
    if absent:  # here, naming the option; not later in the probe fit, whose message points at label_column
        raise CurateError(f"pass_rate_labels: {labels_dir} has no {' or '.join(map(repr, absent))} column (columns: "
                          f"{', '.join(labels.column_names)}). Fix: point it at the stages/labels_pass_rate dir of a "
                          f"finished curate run of the same pool.")
    row_of = {row_id: i for i, row_id in enumerate(pool["id"])}
    missing = [row_id for row_id in labels["id"] if row_id not in row_of]
    if missing:
        raise CurateError(f"pass_rate_labels: {len(missing)} labelled ids are not in this pool (e.g. {missing[0]!r}). "
                          f"Fix: reuse labels only from a curate run with the same sources, seed and noise.")
    subset = pool.select([row_of[row_id] for row_id in labels["id"]])
    for column in ("pass_rate", "n_samples", "n_cut"):
        if column in labels.column_names:  # pass_rate always; the counts where the labeller recorded them
            subset = subset.add_column(column, labels[column], feature=labels.features[column])
    return subset


def _fit_probes(config: CurateConfig, out: Path, featurized, quality_set, timings: dict) -> dict:
    """Difficulty / quality / cluster probes fitted and saved (safetensors + JSON) under ``<out>/probes``."""
    from saerl_hf.signals import (
        ClusterConfig,
        ClusterModel,
        DifficultyConfig,
        DifficultyProbe,
        QualityConfig,
        QualityProbe,
    )
    from saerl_hf.stages import run_dir_stage

    stages, probes = out / "stages", out / "probes"

    def build_probes(tmp: Path) -> dict:
        labelled = label_subset(featurized, config, stages, timings)
        difficulty = DifficultyProbe(DifficultyConfig(label_column=config.difficulty_label, seed=config.seed,
                                                      features=config.features,
                                                      pooling_part=config.difficulty_pooling_part))
        difficulty.fit(labelled)
        difficulty.save(tmp / "difficulty")
        quality = QualityProbe(QualityConfig(features=config.features, pooling_part=config.quality_pooling_part))
        quality.fit(quality_set)
        quality.save(tmp / "quality")
        clusters = ClusterModel(ClusterConfig(n_clusters=min(config.n_clusters, len(featurized)), seed=config.seed,
                                              features=config.features, pooling_part=config.cluster_pooling_part))
        clusters.fit(featurized)
        clusters.save(tmp / "clusters")
        return {"difficulty": difficulty.metrics, "quality": quality.metrics, "clusters": clusters.metrics,
                "n_labelled": len(labelled)}

    metrics = run_dir_stage(stages / "06_probes", build_probes, "fit_probes", timings)
    if not (probes / "difficulty").is_dir():
        shutil.rmtree(probes, ignore_errors=True)
        shutil.copytree(stages / "06_probes", probes, ignore=shutil.ignore_patterns("_SAERL_*"))
    return metrics


def _score_and_filter(config: CurateConfig, out: Path, featurized, timings: dict):
    """Apply the probes, then filter (quality, then duplicates), counting every drop: (filtered, counts)."""
    import pyarrow.compute as pc

    from saerl_hf.signals import ClusterModel, DifficultyProbe, QualityProbe, deduplicate, keep_by_quality
    from saerl_hf.stages import run_dataset_stage

    stages, probes = out / "stages", out / "probes"

    def build_signals():
        ds = DifficultyProbe.load(probes / "difficulty").apply(featurized)
        ds = QualityProbe.load(probes / "quality").apply(ds)
        return ClusterModel.load(probes / "clusters").apply(ds)

    scored = run_dataset_stage(stages / "07_signals", build_signals, "apply_signals", timings)
    sources = scored.select_columns(["id", "source"]).with_format("arrow")[:]
    counts: dict = {"pool": len(scored), "by_source": _count(sources["source"].to_pylist())}

    def build_filtered():
        ds, qcounts = keep_by_quality(scored, threshold=config.quality_threshold,
                                      top_fraction=config.quality_keep_fraction)
        dcounts = {"n_in": len(ds), "exact_duplicates": 0, "near_duplicates": 0, "n_kept": len(ds)}
        if config.dedup:
            ds, dcounts = deduplicate(ds, threshold=config.dedup_threshold, pooling_part=config.cluster_pooling_part)
        (stages / "filter_counts.json").write_text(json.dumps({"quality": qcounts, "dedup": dcounts}))
        return ds.flatten_indices()

    filtered = run_dataset_stage(stages / "08_filter", build_filtered, "filter", timings)
    counts.update(json.loads((stages / "filter_counts.json").read_text()))
    kept = pc.is_in(sources["id"], value_set=filtered.select_columns(["id"]).with_format("arrow")[:]["id"])
    counts["dropped_by_source"] = _count(sources.filter(pc.invert(kept))["source"].to_pylist())
    return filtered, counts


def _order(config: CurateConfig, out: Path, filtered, timings: dict):
    """Rank the kept rows (curriculum_rank + its recipe), save them in rank order to ``<out>/dataset``."""
    from datasets import load_from_disk

    from saerl_hf.curriculum import add_curriculum_rank, sort_by_curriculum, validate_alignment
    from saerl_hf.stages import run_dataset_stage

    alignment = validate_alignment(len(filtered), config.prompts_per_batch)

    def build_ordered():
        ds = add_curriculum_rank(filtered, config.prompts_per_batch, curriculum=config.curriculum,
                                 curriculum_mixing=config.curriculum_mixing, seed=config.seed)
        return sort_by_curriculum(ds)

    ordered = run_dataset_stage(out / "stages" / "09_order", build_ordered, "order", timings)
    final = out / "dataset"
    if not (final / "dataset_info.json").is_file():
        tmp = out / "dataset.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        ordered.save_to_disk(str(tmp))
        tmp.replace(final)
    return load_from_disk(str(final)), alignment


def run_curate(config: CurateConfig, command: str | None = None) -> dict:
    """Run (or resume) every stage; returns the summary (also written to ``summary.json``).

    Under ``accelerate launch`` / ``torchrun`` every rank featurizes its share of the chunks and returns
    ``{"rank": r, "worker": True}``; rank 0 fits the probes, filters, orders and writes the curated dir, which is
    the one a single process writes (same ``content_hash``).
    """
    from datasets import load_from_disk

    from saerl_hf.distributed import continue_alone, is_main, rank, world_size
    from saerl_hf.sparse import read_provenance
    from saerl_hf.stages import content_hash

    started = time.perf_counter()
    out = Path(config.output_dir)
    (out / "stages").mkdir(parents=True, exist_ok=True)
    _check_config_unchanged(out, config)
    timings: dict[str, float] = {}
    featurized, quality_set = featurize_pool_stages(config, out, timings)
    if not is_main():
        return {"rank": rank(), "worker": True}
    if world_size() > 1:
        continue_alone()  # the other ranks have left: the stages from here on are rank 0's alone
    metrics = _fit_probes(config, out, featurized, quality_set, timings)
    filtered, counts = _score_and_filter(config, out, featurized, timings)
    ordered, alignment = _order(config, out, filtered, timings)
    counts["kept"] = len(ordered)
    counts["kept_by_source"] = _count(ordered.select_columns(["source"]).with_format("arrow")[:]["source"].to_pylist())
    summary = {
        "content_hash": content_hash(ordered),
        "rows": len(ordered),
        "counts": counts,
        "metrics": metrics,
        "curriculum": {"curriculum": config.curriculum, "curriculum_mixing": config.curriculum_mixing,
                       "prompts_per_batch": config.prompts_per_batch, "seed": config.seed,
                       "alignment": asdict(alignment)},
        "timings_s": {**timings, "total_this_run": round(time.perf_counter() - started, 2)},
        "sources": sources_with_licenses(config.sources),
        "config": asdict(config),
        "command": command,
        "holdout_rows": len(load_from_disk(str(out / "holdout"))) if (out / "holdout").is_dir() else 0,
        "explanations": _explanations(out, featurized),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    provenance = _provenance(config, read_provenance(ordered))
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str))
    if config.push_to_hub:
        from saerl_hf.hub import push_curated

        result = push_curated(out, config.hub_dataset_id, config.hub_revision, create_pr=config.create_pr,
                              command=command)
        summary["push"] = {"repo_id": result.repo_id, "revision": result.revision, "commit_sha": result.commit_sha}
    return summary


def _explanations(out: Path, pool) -> list[dict]:
    """The dataset card's "What the probes look at": each fitted probe's top latents described on the pool."""
    from saerl_hf.signals import DifficultyProbe, QualityProbe
    from saerl_hf.signals.explain import probe_explanations

    return probe_explanations(pool, difficulty=DifficultyProbe.load(out / "probes" / "difficulty"),
                              quality=QualityProbe.load(out / "probes" / "quality"))


def _count(values) -> dict:
    out: dict[str, int] = {}
    for value in values:
        out[str(value)] = out.get(str(value), 0) + 1
    return dict(sorted(out.items()))


def _check_config_unchanged(out: Path, config: CurateConfig) -> None:
    """Resuming with different settings would mix stages of two runs: refuse, and say how to proceed. Stages fitted
    by an older :data:`SIGNALS_VERSION` are refitted (main process; the others only featurize)."""
    from saerl_hf.distributed import is_main

    path = out / "stages" / "config.json"
    current = {k: v for k, v in asdict(config).items() if k not in PUBLISH_OPTIONS}
    if path.is_file():
        from saerl_hf.configs import upgrade_options

        previous = upgrade_options(json.loads(path.read_text()), (CurateConfig,), warn=False)  # older key names
        version = previous.pop("signals_version", 1)
        # A setting added to CurateConfig after that run was made is compared at its default value.
        defaults = {k: v for k, v in asdict(CurateConfig(sources=config.sources)).items() if k in current}
        changed = sorted(k for k in set(previous) | set(current)
                         if previous.get(k, defaults.get(k)) != current.get(k))
        if changed:
            raise CurateError(
                f"{out} holds a curate run with other settings ({', '.join(changed)}). Fix: choose another "
                f"--output_dir, or delete {out / 'stages'} to start over."
            )
        if version == SIGNALS_VERSION or not is_main():
            return
        stale = [out / name for name in SIGNAL_OUTPUTS if (out / name).exists()]
        logger.warning("curate: %s was fitted by signals version %s (now %s): refitting %s; the featurized pool is "
                       "kept.", out, version, SIGNALS_VERSION, ", ".join(p.name for p in stale) or "nothing")
        for stage in stale:
            shutil.rmtree(stage)
    if is_main():  # under a launcher the other ranks only read it
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({**current, "signals_version": SIGNALS_VERSION}, indent=2, sort_keys=True,
                                  default=str))
        tmp.replace(path)


def _provenance(config: CurateConfig, dataset_provenance: dict) -> dict:
    from saerl_hf.signals.matrix import signal_parts
    from saerl_hf.signals.persistence import library_versions

    feat = dataset_provenance.get("featurize", {})
    return {
        "reader_model": feat.get("model", config.model),
        "model_revision": feat.get("model_revision"),
        "sae": feat.get("sae"),
        "sae_hash": feat.get("sae_hash"),
        "d_sae": feat.get("d_sae"),
        "layer": feat.get("layer"),
        "hook": feat.get("hook"),
        "pooling": feat.get("pooling"),
        "pooling_parts": signal_parts(config),  # the signals that read one part of a two-part pooling
        "top_k": feat.get("top_k"),
        "prompt_format": feat.get("prompt_format"),
        "dtype": feat.get("dtype"),
        "signals": {k: v for k, v in dataset_provenance.items() if k != "featurize"},
        "library_versions": library_versions(),
    }


def cli_main(argv: list[str]) -> int:
    """``saerl-hf curate --config recipes/<model>/curate/<name>.yaml [--field value ...]``."""
    from trl import TrlParser

    parser = TrlParser((CurateConfig,), prog="saerl-hf curate")
    from saerl_hf.configs import parse_config

    (config,) = parse_config(parser, argv)
    command = "saerl-hf curate " + " ".join(shlex.quote(a) for a in argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    summary = run_curate(config, command=command)
    if summary.get("worker"):  # another rank of a launch: its chunks are in, rank 0 reports
        return 0
    print(json.dumps({k: summary[k] for k in ("rows", "content_hash", "timings_s")}, indent=2))
    print(f"curated dataset: {Path(config.output_dir) / 'dataset'}")
    return 0

