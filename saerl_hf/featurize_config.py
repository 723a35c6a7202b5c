"""Options of the featurizer (``saerl-hf featurize`` and :func:`saerl_hf.features.featurize`).

Every option is a dataclass field with ``metadata={"help": ...}`` (CLI help and YAML keys from one place);
what each pooling writes is documented in :mod:`saerl_hf.pooling`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saerl_hf.errors import SaerlError
from saerl_hf.models import resolve_model_path
from saerl_hf.pooling import FEATURE_SETS, POOLINGS
from saerl_hf.sae import SAELoadError, default_sae_dir

PROMPT_FORMATS = ("chat", "plain")


class FeaturizeError(SaerlError, ValueError):
    """A row or setting the featurizer cannot use; the message names the row/field and the fix."""


@dataclass
class FeaturizeConfig:
    """Options of ``saerl-hf featurize`` and :func:`featurize` (YAML via ``--config`` + flag overrides)."""

    dataset: str | None = field(default=None, metadata={"help": "Input: benchmark name (gsm8k, math, ...), a "
                                                                "`save_to_disk` dir, a data file or a Hub id."})
    split: str | None = field(default=None, metadata={"help": "Split of a benchmark / Hub dataset."})
    limit: int | None = field(default=None, metadata={"help": "Featurize only the first N rows."})
    output_dir: str | None = field(default=None, metadata={"help": "Where `saerl-hf featurize` saves the result."})
    model: str = field(default="smollm2-135m", metadata={"help": "Reader model (alias, dir, Hub id); may differ "
                                                                 "from the policy model."})
    sae: str | None = field(default=None, metadata={"help": "SAE: local dir, Hub repo, or sae-lens 'release:sae_id'. "
                                                            "Default: the SAE `train-sae` saves for model/layer."})
    sae_id: str | None = field(default=None, metadata={"help": "sae-lens registry sae_id (or Hub subfolder)."})
    d_sae: int = field(default=4096, metadata={"help": "Width (latents, sae-lens' d_sae) of the default SAE (when "
                                                       "`sae` is unset)."})
    sae_k: int = field(default=32, metadata={"help": "k of the default TopK SAE (when `sae` is unset)."})
    layer: int | None = field(default=None, metadata={"help": "Block to read; default: the SAE's own hook layer, "
                                                              "else the middle layer."})
    pooling: str = field(default="mean", metadata={"help": "Pool SAE codes over the problem's tokens: mean, max, "
                                                           "sum, last (the last problem token), mean+max or mean+last "
                                                           "(both parts in one index space: the second part of "
                                                           "latent i at d_sae + i)."})
    top_k: int | None = field(default=None, metadata={
        "help": "Keep the k largest pooled latents per row; null or 0 (the default) keeps every active pooled latent "
                "(nothing cut: measured best for the difficulty probe, Spearman 0.609 vs 0.549 with the 64 largest "
                "on 7,496 MATH labels, docs/signals.md; ~10x the stored entries and probe-fit time)."})
    features: str = field(default="sae", metadata={"help": "Feature set the signals fit on: sae | dense | sae+dense; "
                                                           "dense and sae+dense also write `dense_mean`."})
    prompt_format: str = field(default="chat", metadata={"help": "`chat`: the policy's chat-formatted prompt "
                                                                 "(render_prompt); `plain`: the problem text alone."})
    problem_column: str = field(default="problem", metadata={"help": "Column with the problem text."})
    source_column: str = field(default="source", metadata={"help": "Column with the benchmark source (picks the "
                                                                   "prompt instruction); optional."})
    id_column: str = field(default="id", metadata={"help": "Column used to name rows in errors; optional."})
    max_length: int = field(default=1024, metadata={"help": "Longer prompts are truncated (counted, warned once)."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per model forward (length-sorted within the map "
                                                          "batch; on CPU 16 wastes less on padding than 32)."})
    reuse_prefix: bool = field(default=True, metadata={"help": "Run the prompt prefix the rows share (chat system "
                                                               "turn, few-shot block) once and continue each row "
                                                               "from its KV cache; same features within float "
                                                               "tolerance, much less compute."})
    map_batch_size: int = field(default=1000, metadata={"help": "Rows per `Dataset.map` batch: the window rows are "
                                                                "length-sorted in (larger: less padding)."})
    dense: bool = field(default=False, metadata={"help": "Also write `dense_mean` (mean raw residual, float32); "
                                                          "implied by features dense / sae+dense."})
    num_proc: int | None = field(default=None, metadata={"help": "`Dataset.map` processes."})
    with_rank: bool = field(default=False, metadata={"help": "One device per map rank (cuda:rank when available)."})
    device: str | None = field(default=None, metadata={"help": "Force a device (default: cuda if available, else cpu)."})
    dtype: str = field(default="float32", metadata={"help": "Reader model dtype: float32, bfloat16, or auto (bfloat16 "
                                                            "where the hardware computes it natively, else float32; "
                                                            "see docs/benchmarks.md for speed and fidelity)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Cache dir for the map results (default: the "
                                                                  "input's own cache dir; `<SAERL_CACHE>/featurize` "
                                                                  "for in-memory inputs)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code (off by default)."})

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise FeaturizeError(f"pooling must be one of {POOLINGS}, got '{self.pooling}'.")
        if self.prompt_format not in PROMPT_FORMATS:
            raise FeaturizeError(f"prompt_format must be one of {PROMPT_FORMATS}, got '{self.prompt_format}'.")
        if self.features not in FEATURE_SETS:
            raise FeaturizeError(f"features must be one of {FEATURE_SETS}, got '{self.features}'.")
        self.top_k = int(self.top_k) if self.top_k else None  # 0 and null both mean: keep every active latent
        if (self.top_k is not None and self.top_k < 0) or self.max_length < 2 or self.batch_size < 1:
            raise FeaturizeError(f"top_k must be >= 0 (0/null: keep all), batch_size >= 1 and max_length >= 2 (got "
                                 f"top_k={self.top_k}, batch_size={self.batch_size}, max_length={self.max_length}). "
                                 f"Fix: e.g. top_k 64 (or null), batch_size 32, max_length 1024.")

    @property
    def writes_dense(self) -> bool:
        """Whether ``dense_mean`` is written (``dense: true`` or a feature set that uses it)."""
        return bool(self.dense) or self.features != "sae"

    def sae_spec(self, model_config=None) -> str:
        """The SAE to use: ``sae`` if set, else the default dir ``train-sae`` writes for this model (its layer from
        ``model_config``, the reader's ``AutoConfig``, when given; else the config is read here)."""
        if self.sae:
            return self.sae
        from saerl_hf.models import default_layer

        if self.layer is None and model_config is None:
            from transformers import AutoConfig

            model_config = AutoConfig.from_pretrained(resolve_model_path(self.model),
                                                      trust_remote_code=self.trust_remote_code)
        layer = self.layer if self.layer is not None else default_layer(model_config)
        path = default_sae_dir(self.model, layer, self.d_sae, self.sae_k)
        if not path.is_dir():
            raise SAELoadError(
                f"No SAE given and the default SAE {path} does not exist. Fix: run `saerl-hf train-sae --model "
                f"{self.model}` first, or pass --sae <dir | org/repo | release:sae_id>."
            )
        return str(path)
