"""`saerl-hf curate`: load -> featurize -> difficulty / quality / clusters -> filter -> order, resumably.

Every stage writes its result under ``<output_dir>/stages/`` atomically, and featurization goes in chunks,
so a run killed at any point (even ``kill -9``) resumes from the last finished piece and produces the
same dataset (see ``summary.json``'s ``content_hash``). The output dir is the curated-dir contract that
``saerl-hf push`` / :func:`saerl_hf.hub.push_curated` publishes:

    <output_dir>/dataset/          the curated, ordered dataset (save_to_disk)
    <output_dir>/holdout/          rows set aside for evaluation, never trained on (if requested)
    <output_dir>/probes/           difficulty/ quality/ clusters/ (safetensors + JSON)
    <output_dir>/summary.json      counts kept/dropped per reason, signal metrics, timings, order, command
    <output_dir>/provenance.json   reader model, SAE identity + hash, layer, pooling, k, library versions
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_SOURCES = ["gsm8k:train", "math:train", "mawps", "svamp", "asdiv"]


class CurateError(ValueError):
    """A curate config or input that cannot work; the message says which field and the fix."""


@dataclass
class CurateConfig:
    """Options of ``saerl-hf curate`` (a YAML recipe via ``--config``; any field overridable by a flag)."""

    output_dir: str = field(default="outputs/curated/smollm2-135m", metadata={"help": "Where the curated dir goes."})
    sources: list[str] = field(default_factory=lambda: list(DEFAULT_SOURCES), metadata={
        "help": "Datasets to pool: benchmark names as name[:split][@limit] (e.g. gsm8k:train@500), files or Hub ids."})
    limit_per_source: int | None = field(default=None, metadata={"help": "Seeded random slice of each source."})
    data_dir: str | None = field(default=None, metadata={"help": "Local data dir (default SAERL_DATA_DIR)."})
    columns: list[str] = field(default_factory=list, metadata={
        "help": "Column mapping for file / Hub sources, canonical=source: e.g. 'problem=question' "
                "'answer=final_answer' 'level=difficulty' 'subject=topic'."})
    holdout_per_source: int = field(default=0, metadata={
        "help": "Rows per source set aside (seeded) into <output_dir>/holdout for evaluation; never curated."})
    inject_noise: float = field(default=0.0, metadata={
        "help": "Share of low-quality prompts injected into the pool (corrupted problems and off-domain text, "
                "source 'noise'): a testbed for the quality filter."})
    seed: int = field(default=0, metadata={"help": "Seed of every random choice (slices, noise, probes, order)."})
    # reader + SAE
    model: str = field(default="smollm2-135m", metadata={"help": "Reader model (need not be the policy)."})
    sae: str | None = field(default=None, metadata={"help": "SAE dir / Hub repo / 'release:sae_id'; default: the "
                                                            "SAE `saerl-hf train-sae` wrote for the reader."})
    sae_width: int = field(default=4096, metadata={"help": "Width of the default SAE."})
    sae_k: int = field(default=32, metadata={"help": "k of the default TopK SAE."})
    layer: int | None = field(default=None, metadata={"help": "Reader block (default: the SAE's hook layer)."})
    pooling: str = field(default="mean", metadata={"help": "mean | max | sum over the problem's tokens."})
    top_k: int = field(default=64, metadata={"help": "Pooled latents kept per prompt."})
    max_length: int = field(default=384, metadata={"help": "Longer prompts are truncated (counted)."})
    featurize_batch_size: int = field(default=16, metadata={"help": "Prompts per reader forward."})
    reader_dtype: str = field(default="float32", metadata={
        "help": "Reader dtype for featurizing: float32, bfloat16, or auto (bfloat16 where the CPU/GPU computes it "
                "natively: 2.6x faster on an AVX512-BF16 CPU, pooled features at cosine 0.998 to float32's)."})
    chunk_size: int = field(default=1000, metadata={"help": "Rows per resumable featurize chunk."})
    # difficulty
    difficulty_label: str = field(default="level", metadata={
        "help": "Numeric label column for the difficulty proxy ('level' or 'pass_rate')."})
    source_levels: list[str] = field(default_factory=list, metadata={
        "help": "Labels for rows without one, by source or source/subject: e.g. 'mawps/singleop=1' 'gsm8k=2.5'."})
    difficulty_max_labels: int = field(default=1500, metadata={
        "help": "Size of the small labelled subset the proxy is fitted on (seeded sample of labelled rows)."})
    pass_rate_model: str | None = field(default=None, metadata={
        "help": "With difficulty_label=pass_rate: the model whose pass rates label the subset (default: reader)."})
    pass_rate_samples: int = field(default=4, metadata={"help": "k completions per prompt for pass rates."})
    pass_rate_max_new_tokens: int = field(default=96, metadata={"help": "Completion budget for pass rates."})
    # quality
    quality_train_size: int = field(default=1000, metadata={
        "help": "Clean prompts (sampled before noise injection) used as the probe's positives."})
    quality_threshold: float | None = field(default=0.5, metadata={"help": "Keep rows with quality >= this."})
    quality_keep_fraction: float | None = field(default=None, metadata={
        "help": "Instead of a threshold: keep this top fraction by quality."})
    # diversity
    n_clusters: int = field(default=16, metadata={"help": "k-means clusters in SAE space."})
    dedup: bool = field(default=True, metadata={"help": "Drop identical / near-duplicate (cos >= threshold) prompts."})
    dedup_threshold: float = field(default=0.98, metadata={"help": "Cosine for near-duplicates within a cluster."})
    # order
    order: str = field(default="saerl", metadata={"help": "saerl | difficulty | cluster | random."})
    mixing: float = field(default=0.25, metadata={"help": "Share of each batch swapped with neighbouring batches."})
    prompts_per_batch: int = field(default=2, metadata={
        "help": "Unique prompts per generation batch: TRL's generation_batch_size // num_generations."})
    # publish
    push_to_hub: str | None = field(default=None, metadata={"help": "Hub dataset repo to publish to."})
    hub_revision: str = field(default="main", metadata={"help": "Branch of the Hub repo (created from main)."})
    create_pr: bool = field(default=False, metadata={"help": "Open a PR instead of committing to the branch."})

    def __post_init__(self):
        if self.order not in ("saerl", "difficulty", "cluster", "random"):
            raise CurateError(f"order must be saerl | difficulty | cluster | random, got '{self.order}'. "
                              f"Fix: set `order:` to one of them.")
        if self.quality_threshold is not None and self.quality_keep_fraction is not None:
            raise CurateError("Set either quality_threshold or quality_keep_fraction, not both. "
                              "Fix: set quality_threshold: null in the YAML to use the fraction.")
        if not 0.0 <= self.inject_noise < 1.0:
            raise CurateError(f"inject_noise must be in [0, 1), got {self.inject_noise}. Fix: e.g. 0.1 (or 0 for none).")
        if self.prompts_per_batch < 1 or self.chunk_size < 1:
            raise CurateError(f"prompts_per_batch and chunk_size must be >= 1 (got {self.prompts_per_batch} and "
                              f"{self.chunk_size}). Fix: prompts_per_batch = generation_batch_size // num_generations "
                              f"of the GRPO recipe; chunk_size e.g. 1000.")
        if self.quality_keep_fraction is not None and not 0.0 < self.quality_keep_fraction <= 1.0:
            raise CurateError(f"quality_keep_fraction must be in (0, 1], got {self.quality_keep_fraction}. "
                              f"Fix: e.g. 0.8 keeps the best 80%.")
        if not self.sources:
            raise CurateError("sources is empty: nothing to curate. Fix: list at least one, e.g. sources: "
                              "[gsm8k:train, mawps].")
        self.source_levels = list(self.source_levels or [])
        self.level_map()  # validate early
        self.column_map()

    def column_map(self) -> dict[str, str]:
        out = {}
        for item in self.columns or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise CurateError(f"columns entry '{item}' is not 'canonical=source'. Fix: write it like "
                                  f"'problem=question'.")
            out[key.strip()] = value.strip()
        return out

    def level_map(self) -> dict[str, float]:
        out = {}
        for item in self.source_levels:
            key, sep, value = item.partition("=")
            try:
                out[key.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep:
                raise CurateError(f"source_levels entry '{item}' is not 'source=number'. Fix: write it like "
                                  f"'gsm8k=2.5'.")
        return out


# ----------------------------------------------------------------------------------------------- stages


def _split_source(spec: str) -> tuple[str, str | None, int | None]:
    """``name[:split][@limit]`` -> (name, split, limit); e.g. ``gsm8k:train@500``."""
    from saerl_hf.data import BENCHMARKS

    limit = None
    head, at, tail = spec.rpartition("@")
    if at and tail.isdigit():
        spec, limit = head, int(tail)
    name, sep, split = spec.rpartition(":")
    if sep and name in BENCHMARKS:
        return name, split, limit
    return spec, None, limit


def load_pool(config: CurateConfig):
    """Concatenate the sources; set aside the holdout; return (pool, holdout, clean_for_quality)."""
    from datasets import concatenate_datasets

    from saerl_hf.data import load_math_dataset

    pools, holdouts = [], []
    for spec in config.sources:
        name, split, source_limit = _split_source(spec)
        ds = load_math_dataset(name, split=split, data_dir=config.data_dir, columns=config.column_map() or None)
        ds = ds.shuffle(seed=config.seed).flatten_indices()
        if config.holdout_per_source:
            n_hold = min(config.holdout_per_source, len(ds) // 2)
            holdouts.append(ds.select(range(n_hold)))
            ds = ds.select(range(n_hold, len(ds)))
        limit = source_limit if source_limit is not None else config.limit_per_source
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        pools.append(ds)
    pool = concatenate_datasets(pools).flatten_indices()
    holdout = concatenate_datasets(holdouts).flatten_indices() if holdouts else None
    return pool, holdout


def inject_noise(pool, share: float, seed: int):
    """Add ``share`` low-quality rows (corrupted copies of pool problems, off-domain text) as source 'noise'."""
    from datasets import Dataset, concatenate_datasets

    from saerl_hf.signals.corruptions import make_quality_dataset

    if share <= 0:
        return pool
    n_noise = int(round(share / (1 - share) * len(pool)))
    made = make_quality_dataset(pool, seed=seed + 7919, negatives_per_clean=n_noise / len(pool))
    noise = made.filter(lambda row: row["is_clean"] == 0)
    rows = {
        "id": [f"noise/{i}" for i in range(len(noise))],
        "problem": noise["problem"],
        "answer": [str(a) if a is not None else "0" for a in noise["answer"]],
        "solution": [None] * len(noise),
        "source": ["noise"] * len(noise),
        "subject": noise["corruption"],
        "level": [None] * len(noise),
    }
    noise_ds = Dataset.from_dict(rows, features=pool.features)
    merged = concatenate_datasets([pool, noise_ds]).shuffle(seed=seed).flatten_indices()
    return merged


def fill_levels(dataset, config: CurateConfig):
    """Rows without a label get their source's level from ``source_levels`` (source/subject wins)."""
    levels = config.level_map()
    if not levels or config.difficulty_label != "level":
        return dataset

    def fill(batch):
        out = []
        for level, source, subject in zip(batch["level"], batch["source"], batch["subject"]):
            if level is None:
                level = levels.get(f"{source}/{subject}", levels.get(source))
            out.append(level)
        return {"level": out}

    return dataset.map(fill, batched=True, desc="source levels")


def featurize_config(config: CurateConfig, cache: Path):
    from saerl_hf.features import FeaturizeConfig

    return FeaturizeConfig(
        model=config.model, sae=config.sae, sae_width=config.sae_width, sae_k=config.sae_k, layer=config.layer,
        pooling=config.pooling, top_k=config.top_k, max_length=config.max_length,
        batch_size=config.featurize_batch_size, map_batch_size=config.chunk_size, cache_dir=str(cache),
        dtype=config.reader_dtype,
    )


def label_subset(pool, config: CurateConfig, stage_dir: Path, timings: dict):
    """The small labelled subset the difficulty proxy is fitted on (pass rates sampled here if asked)."""
    from saerl_hf.stages import run_dataset_stage

    label = config.difficulty_label
    if label == "pass_rate":
        from saerl_hf.signals.passrate import PassRateConfig, label_pass_rates

        def build():
            rows = np.random.default_rng(config.seed).permutation(len(pool))[: config.difficulty_max_labels]
            subset = pool.select(np.sort(rows))
            pr_config = PassRateConfig(model=config.pass_rate_model or config.model, k=config.pass_rate_samples,
                                       max_new_tokens=config.pass_rate_max_new_tokens, seed=config.seed)
            return label_pass_rates(subset, pr_config)

        return run_dataset_stage(stage_dir / "labels_pass_rate", build, "pass_rate_labels", timings)
    if label not in pool.column_names:
        raise CurateError(f"difficulty_label '{label}' is not a column of the pool ({', '.join(pool.column_names)}). "
                          f"Fix: use 'level' (with source_levels for unlabelled sources) or 'pass_rate'.")
    values = np.array([np.nan if v is None else float(v) for v in pool[label]], dtype=np.float64)
    labelled = np.flatnonzero(np.isfinite(values))
    rng = np.random.default_rng(config.seed)
    take = np.sort(rng.permutation(labelled)[: config.difficulty_max_labels])
    return pool.select(take)


def featurize_quality_set(quality_set, featurized_pool, stage_dir: Path, featurize_chunk, chunk_size: int):
    """Features for the quality probe's set: its clean rows are pool rows, already featurized, so their features
    are copied from the pool (the featurizer reads only the prompt up to the problem's end, so they are the same
    features); only the generated corruptions run through the reader."""
    from datasets import concatenate_datasets

    from saerl_hf.stages import chunked_map

    clean = np.flatnonzero(np.asarray(quality_set["is_clean"]) == 1)
    corrupted = np.flatnonzero(np.asarray(quality_set["is_clean"]) != 1)
    negatives = chunked_map(quality_set.select(corrupted), stage_dir, featurize_chunk, chunk_size,
                            "featurize_quality", desc="featurize quality set (chunks)")
    row_of = {pool_id: i for i, pool_id in enumerate(featurized_pool["id"])}
    copied = featurized_pool.select([row_of[i] for i in quality_set.select(clean)["pool_id"]])
    positives = quality_set.select(clean)
    for column in ("sae_idx", "sae_val", "sae_l0"):
        positives = positives.add_column(column, copied[column], feature=negatives.features[column])
    merged = concatenate_datasets([positives, negatives])
    merged.info.description = negatives.info.description  # the featurize provenance
    return merged


def run_curate(config: CurateConfig, command: str | None = None) -> dict:
    """Run (or resume) every stage; returns the summary (also written to ``summary.json``)."""
    from datasets import load_from_disk

    from saerl_hf.curriculum import add_curriculum_rank, sort_by_curriculum, validate_alignment
    from saerl_hf.features import featurize
    from saerl_hf.signals import (
        ClusterConfig,
        ClusterModel,
        DifficultyConfig,
        DifficultyProbe,
        QualityProbe,
        deduplicate,
        keep_by_quality,
        make_quality_dataset,
    )
    from saerl_hf.sparse import read_provenance
    from saerl_hf.stages import chunked_map, content_hash, run_dataset_stage, run_dir_stage

    started = time.perf_counter()
    out = Path(config.output_dir)
    stages = out / "stages"
    stages.mkdir(parents=True, exist_ok=True)
    _check_config_unchanged(out, config)
    timings: dict[str, float] = {}
    fconf = featurize_config(config, stages / "featurize_cache")

    # 1. load: pool + holdout; clean sample for the quality probe taken before any noise is injected
    def build_pool():
        pool, holdout = load_pool(config)
        if holdout is not None:
            holdout.save_to_disk(str(stages / "holdout_tmp"))
        return pool

    clean = run_dataset_stage(stages / "01_load", build_pool, "load", timings)
    if (stages / "holdout_tmp").is_dir() and not (out / "holdout").is_dir():
        shutil.copytree(stages / "holdout_tmp", out / "holdout")
    pool = run_dataset_stage(stages / "02_noise", lambda: fill_levels(inject_noise(clean, config.inject_noise,
                                                                                   config.seed), config),
                             "inject_noise", timings)

    # 2. featurize the pool and the quality probe's training set (clean sample + generated negatives)
    t0 = time.perf_counter()
    featurized = chunked_map(pool, stages / "03_featurize", lambda chunk: featurize(chunk, fconf),
                             config.chunk_size, "featurize", desc="featurize pool (chunks)")
    timings["featurize"] = round(time.perf_counter() - t0, 2)

    def build_quality_set():
        n = min(config.quality_train_size, len(clean))
        sample = clean.select(np.sort(np.random.default_rng(config.seed + 1).permutation(len(clean))[:n]))
        made = make_quality_dataset(sample, seed=config.seed + 1)
        ids = sample["id"]
        return made.add_column("pool_id", [ids[o] if c == 1 else None for o, c in zip(made["origin"], made["is_clean"])])

    quality_set = run_dataset_stage(stages / "04_quality_set", build_quality_set, "quality_set", timings)
    t0 = time.perf_counter()
    quality_set = featurize_quality_set(quality_set, featurized, stages / "05_featurize_quality",
                                        lambda chunk: featurize(chunk, fconf), config.chunk_size)
    timings["featurize_quality"] = round(time.perf_counter() - t0, 2)

    # 3. fit the probes (saved as safetensors + JSON) and apply them to the pool
    probes = out / "probes"

    def build_probes(tmp: Path) -> dict:
        labelled = label_subset(featurized, config, stages, timings)
        difficulty = DifficultyProbe(DifficultyConfig(label_column=config.difficulty_label, seed=config.seed))
        difficulty.fit(labelled)
        difficulty.save(tmp / "difficulty")
        quality = QualityProbe()
        quality.fit(quality_set)
        quality.save(tmp / "quality")
        clusters = ClusterModel(ClusterConfig(k=min(config.n_clusters, len(featurized)), seed=config.seed))
        clusters.fit(featurized)
        clusters.save(tmp / "clusters")
        return {"difficulty": difficulty.metrics, "quality": quality.metrics, "clusters": clusters.metrics,
                "n_labelled": len(labelled)}

    metrics = run_dir_stage(stages / "06_probes", build_probes, "fit_probes", timings)
    if not (probes / "difficulty").is_dir():
        shutil.rmtree(probes, ignore_errors=True)
        shutil.copytree(stages / "06_probes", probes, ignore=shutil.ignore_patterns("_SAERL_*"))

    def build_signals():
        ds = DifficultyProbe.load(probes / "difficulty").apply(featurized)
        ds = QualityProbe.load(probes / "quality").apply(ds)
        return ClusterModel.load(probes / "clusters").apply(ds)

    scored = run_dataset_stage(stages / "07_signals", build_signals, "apply_signals", timings)

    # 4. filter (quality, then duplicates), counting every drop
    counts: dict = {"pool": len(scored), "by_source": _count(scored["source"])}

    def build_filtered():
        ds = scored
        ds, qcounts = keep_by_quality(ds, threshold=config.quality_threshold,
                                      top_fraction=config.quality_keep_fraction)
        dcounts = {"n_in": len(ds), "exact_duplicates": 0, "near_duplicates": 0, "n_kept": len(ds)}
        if config.dedup:
            ds, dcounts = deduplicate(ds, threshold=config.dedup_threshold)
        (stages / "filter_counts.json").write_text(json.dumps({"quality": qcounts, "dedup": dcounts}))
        return ds.flatten_indices()

    filtered = run_dataset_stage(stages / "08_filter", build_filtered, "filter", timings)
    counts.update(json.loads((stages / "filter_counts.json").read_text()))
    kept_ids = set(filtered["id"])
    counts["dropped_by_source"] = _count([s for s, i in zip(scored["source"], scored["id"]) if i not in kept_ids])

    # 5. order
    alignment = validate_alignment(len(filtered), config.prompts_per_batch)

    def build_ordered():
        ds = add_curriculum_rank(filtered, config.prompts_per_batch, mode=config.order, mixing=config.mixing,
                                 seed=config.seed)
        return sort_by_curriculum(ds)

    ordered = run_dataset_stage(stages / "09_order", build_ordered, "order", timings)
    final = out / "dataset"
    if not (final / "dataset_info.json").is_file():
        tmp = out / "dataset.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        ordered.save_to_disk(str(tmp))
        tmp.replace(final)
    ordered = load_from_disk(str(final))
    counts["kept"] = len(ordered)
    counts["kept_by_source"] = _count(ordered["source"])

    provenance = _provenance(config, read_provenance(ordered))
    summary = {
        "content_hash": content_hash(ordered),
        "rows": len(ordered),
        "counts": counts,
        "metrics": metrics,
        "order": {"mode": config.order, "mixing": config.mixing, "prompts_per_batch": config.prompts_per_batch,
                  "seed": config.seed, "alignment": asdict(alignment) if hasattr(alignment, "__dataclass_fields__")
                  else str(alignment)},
        "timings_s": {**timings, "total_this_run": round(time.perf_counter() - started, 2)},
        "sources": _sources_with_licenses(config.sources),
        "config": asdict(config),
        "command": command,
        "holdout_rows": len(load_from_disk(str(out / "holdout"))) if (out / "holdout").is_dir() else 0,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str))
    if config.push_to_hub:
        from saerl_hf.hub import push_curated

        result = push_curated(out, config.push_to_hub, revision=config.hub_revision, create_pr=config.create_pr,
                              command=command)
        summary["push"] = {"repo_id": result.repo_id, "revision": result.revision, "commit_sha": result.commit_sha}
    return summary


def _count(values) -> dict:
    out: dict[str, int] = {}
    for value in values:
        out[str(value)] = out.get(str(value), 0) + 1
    return dict(sorted(out.items()))


def _check_config_unchanged(out: Path, config: CurateConfig) -> None:
    """Resuming with different settings would mix stages of two runs: refuse, and say how to proceed."""
    path = out / "stages" / "config.json"
    current = {k: v for k, v in asdict(config).items() if k not in ("push_to_hub", "hub_revision", "create_pr")}
    if path.is_file():
        previous = json.loads(path.read_text())
        # A setting added to CurateConfig after that run was made is compared at its default value.
        defaults = {k: v for k, v in asdict(CurateConfig(sources=config.sources)).items() if k in current}
        changed = sorted(k for k in set(previous) | set(current)
                         if previous.get(k, defaults.get(k)) != current.get(k))
        if changed:
            raise CurateError(
                f"{out} holds a curate run with other settings ({', '.join(changed)}). Fix: choose another "
                f"--output_dir, or delete {out / 'stages'} to start over."
            )
    else:
        path.write_text(json.dumps(current, indent=2, sort_keys=True, default=str))


def _provenance(config: CurateConfig, dataset_provenance: dict) -> dict:
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
        "top_k": feat.get("top_k"),
        "prompt_format": feat.get("prompt_format"),
        "dtype": feat.get("dtype"),
        "signals": {k: v for k, v in dataset_provenance.items() if k != "featurize"},
        "library_versions": library_versions(),
    }


def _sources_with_licenses(sources: list[str]) -> list[dict]:
    from saerl_hf.data import BENCHMARKS

    out = []
    for spec in sources:
        name, split, _ = _split_source(spec)
        bench = BENCHMARKS.get(name)
        out.append({"name": name, "split": split, "hub_id": bench.hub[0] if bench and bench.hub else None,
                    "license": (bench.license if bench else "") or "see the source"})
    return out


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
    print(json.dumps({k: summary[k] for k in ("rows", "content_hash", "timings_s")}, indent=2))
    print(f"curated dataset: {Path(config.output_dir) / 'dataset'}")
    return 0

