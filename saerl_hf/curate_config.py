"""Options of ``saerl-hf curate`` (:class:`CurateConfig`, every field with its help) and :class:`CurateError`.

Beside the code it configures, as TRL keeps ``GRPOConfig`` beside the trainer; :mod:`saerl_hf.curate` runs it
and re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saerl_hf.curriculum import CURRICULA, PROMPTS_PER_BATCH_HELP
from saerl_hf.errors import SaerlError
from saerl_hf.signals.matrix import part_option

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
    pooling: str = field(default="mean+last", metadata={
        "help": "Pooling of SAE codes over the problem's tokens: mean | max | sum | last (the last problem token) | "
                "mean+max | mean+last (one index space of width 2*d_sae: the max, or the last token's value, of "
                "latent i at d_sae + i). Default mean+last with difficulty and clusters on its mean part: the "
                "last-token part lifts the quality probe, the mean part keeps clusters on topic (docs/signals.md)."})
    difficulty_pooling_part: str | None = part_option("difficulty_pooling_part")
    quality_pooling_part: str | None = part_option("quality_pooling_part")
    cluster_pooling_part: str | None = part_option("cluster_pooling_part")
    top_k: int | None = field(default=0, metadata={"help": "Pooled latents kept per prompt; 0 or null (the default) "
                                                            "keeps every active latent (see featurize's top_k)."})
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
    pass_rate_labels: str | None = field(default=None, metadata={
        "help": "With difficulty_label=pass_rate: reuse the labels of another curate run of the same pool (its "
                "stages/labels_pass_rate dir) by problem id instead of sampling them again, e.g. for the same "
                "pipeline on another feature set."})
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
        if self.pass_rate_labels and self.difficulty_label != "pass_rate":
            raise CurateError(f"pass_rate_labels is set but difficulty_label is '{self.difficulty_label}'. Fix: set "
                              f"difficulty_label: pass_rate, or pass_rate_labels: null.")
        if not self.sources:
            raise CurateError("sources is empty: nothing to curate. Fix: list at least one, e.g. sources: "
                              "[gsm8k:train, mawps].")
        from saerl_hf.signals.matrix import check_pooling_parts

        check_pooling_parts(self, CurateError)
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
