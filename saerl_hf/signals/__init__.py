"""SAERL's three data signals from SAE features: difficulty (ElasticNet), quality (logistic probe) and
diversity (k-means clusters + near-duplicate removal), plus pass-rate labels and the quality negatives.

Every fitted model saves as safetensors + JSON, refuses features of another SAE, and adds its column with a
picklable ``datasets.map`` function whose fingerprint depends only on the input and the fitted model. Each model
fits on a feature set (``sae``, ``dense`` or the ``sae+dense`` hybrid); ``explain`` says which latents drove a
score, and ``signals.evaluation`` measures the probes where they have no home advantage.
"""

from saerl_hf.signals.corruptions import (
    KINDS,
    corruption_counts,
    make_quality_dataset,
    off_domain_prompts,
    real_text_dataset,
    real_text_negatives,
)
from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe
from saerl_hf.signals.diversity import ClusterConfig, ClusterModel, deduplicate
from saerl_hf.signals.explain import explain, probe_explanations, top_latents
from saerl_hf.signals.matrix import FEATURE_SETS
from saerl_hf.signals.passrate import PassRateConfig, PassRateLabeller, label_pass_rates
from saerl_hf.signals.persistence import FeatureSetMismatchError, SAEMismatchError, SignalLabelError
from saerl_hf.signals.quality import QualityConfig, QualityProbe, keep_by_quality

__all__ = [
    "FEATURE_SETS", "KINDS", "ClusterConfig", "ClusterModel", "DifficultyConfig", "DifficultyProbe",
    "FeatureSetMismatchError", "PassRateConfig", "PassRateLabeller", "QualityConfig", "QualityProbe",
    "SAEMismatchError", "SignalLabelError", "corruption_counts", "deduplicate", "explain", "keep_by_quality",
    "label_pass_rates", "make_quality_dataset", "off_domain_prompts", "probe_explanations", "real_text_dataset",
    "real_text_negatives", "top_latents",
]
