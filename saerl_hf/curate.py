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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from saerl_hf.curriculum import CURRICULA, PROMPTS_PER_BATCH_HELP
from saerl_hf.errors import SaerlError
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

DEFAULT_SOURCES = ["gsm8k:train", "math:train", "mawps", "svamp", "asdiv"]
PUBLISH_OPTIONS = ("push_to_hub", "hub_dataset_id", "hub_revision", "create_pr")  # a resumed run may change them


class CurateError(SaerlError, ValueError):
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
    d_sae: int = field(default=4096, metadata={"help": "Width (latents, sae-lens' d_sae) of the default SAE."})
    sae_k: int = field(default=32, metadata={"help": "k of the default TopK SAE."})
    layer: int | None = field(default=None, metadata={"help": "Reader block (default: the SAE's hook layer)."})
    pooling: str = field(default="mean", metadata={
        "help": "Pooling of SAE codes over the problem's tokens: mean | max | sum | last (the last problem token) | "
                "mean+max (one index space of width 2*d_sae: the max of latent i at d_sae + i)."})
    top_k: int = field(default=64, metadata={"help": "Pooled latents kept per prompt (0 or null keeps every active "
                                                     "latent)."})
    features: str = field(default="sae", metadata={"help": "Feature set the probes fit on: sae | dense | sae+dense "
                                                           "(dense and sae+dense also featurize the mean residual)."})
    max_length: int = field(default=384, metadata={"help": "Longer prompts are truncated (counted)."})
    featurize_batch_size: int = field(default=16, metadata={"help": "Prompts per reader forward."})
    reader_dtype: str = field(default="float32", metadata={
        "help": "Reader dtype for featurizing: float32, bfloat16, or auto (bfloat16 where the CPU/GPU computes it "
                "natively: 2.6x faster on an AVX512-BF16 CPU, pooled features at cosine 0.998 to float32's)."})
    chunk_size: int = field(default=1000, metadata={"help": "Rows per resumable featurize chunk (the unit the ranks "
                                                             "of `accelerate launch` share out)."})
    featurize_num_proc: int | None = field(default=None, metadata={
        "help": "`Dataset.map` processes inside each featurize chunk (with_rank: process r reads on cuda:r when "
                "there are GPUs); for several GPUs prefer `accelerate launch`."})
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
    # curriculum
    curriculum: str = field(default="saerl", metadata={
        "help": "The order written as curriculum_rank: saerl | difficulty | cluster | random (GRPO's "
                "`curriculum: rank` trains in it)."})
    curriculum_mixing: float = field(default=0.25, metadata={
        "help": "Share of each batch tail-swapped with its neighbouring batches (saerl and cluster)."})
    prompts_per_batch: int = field(default=2, metadata={"help": PROMPTS_PER_BATCH_HELP})
    # publish (TRL's words: push_to_hub is a bool, the repo id is separate)
    push_to_hub: bool = field(default=False, metadata={"help": "Publish the curated dir to the Hub at the end "
                                                               "(what `saerl-hf push` does)."})
    hub_dataset_id: str | None = field(default=None, metadata={
        "help": "Hub dataset repo to publish to, e.g. me/gsm8k-saerl (as TRL's hub_model_id for a model)."})
    hub_revision: str = field(default="main", metadata={
        "help": "Revision (branch) to push to, created from main; GRPO reads it back as dataset_revision."})
    create_pr: bool = field(default=False, metadata={"help": "Open a PR instead of committing to the branch."})

    def __post_init__(self):
        if isinstance(self.push_to_hub, str):  # the old `push_to_hub=<repo id>` from Python (or "true" / "false")
            from saerl_hf.configs import upgrade_options

            vars(self).update(upgrade_options({"push_to_hub": self.push_to_hub}, (CurateConfig,), "CurateConfig"))
            if isinstance(self.push_to_hub, str):
                self.push_to_hub = self.push_to_hub.strip().lower() in ("true", "yes", "y", "1")
        if self.curriculum not in CURRICULA:
            raise CurateError(f"curriculum must be {' | '.join(CURRICULA)}, got '{self.curriculum}'. "
                              f"Fix: set `curriculum:` to one of them.")
        if self.push_to_hub and not self.hub_dataset_id:
            raise CurateError("push_to_hub is on but hub_dataset_id is not set. Fix: set hub_dataset_id: "
                              "<org>/<name> (or push_to_hub: false).")
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


def label_subset(pool, config: CurateConfig, stage_dir: Path, timings: dict):
    """The small labelled subset the difficulty proxy is fitted on (pass rates sampled here if asked)."""
    from saerl_hf.curriculum import _column
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
    values = np.array([np.nan if v is None else float(v) for v in _column(pool, label)], dtype=np.float64)
    labelled = np.flatnonzero(np.isfinite(values))
    rng = np.random.default_rng(config.seed)
    take = np.sort(rng.permutation(labelled)[: config.difficulty_max_labels])
    return pool.select(take)


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
                                                      features=config.features))
        difficulty.fit(labelled)
        difficulty.save(tmp / "difficulty")
        quality = QualityProbe(QualityConfig(features=config.features))
        quality.fit(quality_set)
        quality.save(tmp / "quality")
        clusters = ClusterModel(ClusterConfig(n_clusters=min(config.n_clusters, len(featurized)), seed=config.seed,
                                              features=config.features))
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
            ds, dcounts = deduplicate(ds, threshold=config.dedup_threshold)
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
    """Resuming with different settings would mix stages of two runs: refuse, and say how to proceed."""
    from saerl_hf.distributed import is_main

    path = out / "stages" / "config.json"
    current = {k: v for k, v in asdict(config).items() if k not in PUBLISH_OPTIONS}
    if path.is_file():
        from saerl_hf.configs import upgrade_options

        previous = upgrade_options(json.loads(path.read_text()), (CurateConfig,), warn=False)  # older key names
        # A setting added to CurateConfig after that run was made is compared at its default value.
        defaults = {k: v for k, v in asdict(CurateConfig(sources=config.sources)).items() if k in current}
        changed = sorted(k for k in set(previous) | set(current)
                         if previous.get(k, defaults.get(k)) != current.get(k))
        if changed:
            raise CurateError(
                f"{out} holds a curate run with other settings ({', '.join(changed)}). Fix: choose another "
                f"--output_dir, or delete {out / 'stages'} to start over."
            )
    elif is_main():  # under a launcher the other ranks only read it
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(current, indent=2, sort_keys=True, default=str))
        tmp.replace(path)


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

