"""The curation pool: sources (``name[:split][@limit]``) -> one canonical dataset, holdout set aside, noise
injected for the quality probe's testbed, missing difficulty labels filled from ``source_levels``.

The first stages of ``saerl-hf curate`` (:mod:`saerl_hf.curate`), up to the featurized pool and the quality
probe's featurized training set; every function takes the ``CurateConfig``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

NOISE_SOURCE = "noise"  # the source of injected low-quality prompts (their ids: noise/<i>)


def split_source(spec: str) -> tuple[str, str | None, int | None]:
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


def load_pool(config):
    """Concatenate the sources; set aside the holdout; return (pool, holdout, clean_for_quality)."""
    from datasets import concatenate_datasets

    from saerl_hf.data import load_math_dataset

    pools, holdouts = [], []
    for spec in config.sources:
        name, split, source_limit = split_source(spec)
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
        "source": [NOISE_SOURCE] * len(noise),
        "subject": noise["corruption"],
        "level": [None] * len(noise),
    }
    noise_ds = Dataset.from_dict(rows, features=pool.features)
    merged = concatenate_datasets([pool, noise_ds]).shuffle(seed=seed).flatten_indices()
    return merged


def fill_levels(dataset, config):
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


def sources_with_licenses(sources: list[str]) -> list[dict]:
    from saerl_hf.data import BENCHMARKS

    out = []
    for spec in sources:
        name, split, _ = split_source(spec)
        bench = BENCHMARKS.get(name)
        out.append({"name": name, "split": split, "hub_id": bench.hub[0] if bench and bench.hub else None,
                    "license": (bench.license if bench else "") or "see the source"})
    return out


def featurize_config(config, cache: Path):
    from saerl_hf.distributed import rank_device
    from saerl_hf.features import FeaturizeConfig

    num_proc = config.featurize_num_proc
    return FeaturizeConfig(
        model=config.model, sae=config.sae, d_sae=config.d_sae, sae_k=config.sae_k, layer=config.layer,
        pooling=config.pooling, top_k=config.top_k, features=getattr(config, "features", "sae"),
        max_length=config.max_length,
        batch_size=config.featurize_batch_size, map_batch_size=config.chunk_size, cache_dir=str(cache),
        dtype=config.reader_dtype, num_proc=num_proc, with_rank=bool(num_proc and num_proc > 1),
        device=rank_device(),  # cuda:<local rank> under a multi-GPU launch, else the featurizer's default
    )


def featurize_quality_set(quality_set, featurized_pool, stage_dir: Path, featurize_chunk, chunk_size: int):
    """Features for the quality probe's set: its clean rows are pool rows, already featurized, so their features
    are copied from the pool (the featurizer reads only the prompt up to the problem's end, so they are the same
    features); only the generated corruptions run through the reader. None on the other ranks of a launch."""
    from datasets import concatenate_datasets

    from saerl_hf.stages import chunked_map

    clean = np.flatnonzero(np.asarray(quality_set["is_clean"]) == 1)
    corrupted = np.flatnonzero(np.asarray(quality_set["is_clean"]) != 1)
    negatives = chunked_map(quality_set.select(corrupted), stage_dir, featurize_chunk, chunk_size,
                            "featurize_quality", desc="featurize quality set (chunks)")
    if negatives is None:
        return None
    row_of = {pool_id: i for i, pool_id in enumerate(featurized_pool["id"])}
    copied = featurized_pool.select([row_of[i] for i in quality_set.select(clean)["pool_id"]])
    positives = quality_set.select(clean)
    for column in [c for c in ("sae_idx", "sae_val", "sae_l0", "dense_mean") if c in negatives.column_names]:
        positives = positives.add_column(column, copied[column], feature=negatives.features[column])
    merged = concatenate_datasets([positives, negatives])
    merged.info.description = negatives.info.description  # the featurize provenance
    return merged


def featurize_pool_stages(config, out: Path, timings: dict):
    """load -> noise -> featurize pool -> quality set -> featurize its corruptions; every rank of a launch runs
    this (rank 0 builds the shared stages, the featurize chunks are dealt out over the ranks)."""
    from saerl_hf.distributed import is_main
    from saerl_hf.features import featurize
    from saerl_hf.signals import make_quality_dataset
    from saerl_hf.stages import chunked_map, run_dataset_stage

    stages = out / "stages"
    fconf = featurize_config(config, stages / "featurize_cache")

    def build_pool():  # the clean sample for the quality probe is taken before any noise is injected
        pool, holdout = load_pool(config)
        if holdout is not None:
            holdout.save_to_disk(str(stages / "holdout_tmp"))
        return pool

    clean = run_dataset_stage(stages / "01_load", build_pool, "load", timings)
    if is_main() and (stages / "holdout_tmp").is_dir() and not (out / "holdout").is_dir():
        shutil.copytree(stages / "holdout_tmp", out / "holdout")
    pool = run_dataset_stage(stages / "02_noise", lambda: fill_levels(inject_noise(clean, config.inject_noise,
                                                                                   config.seed), config),
                             "inject_noise", timings)
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
    return featurized, quality_set
