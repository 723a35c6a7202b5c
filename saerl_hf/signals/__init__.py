"""SAERL's three data signals from SAE features: difficulty (ElasticNet), quality (logistic probe) and
diversity (k-means clusters + near-duplicate removal), plus pass-rate labels and the quality negatives.

Every fitted model saves as safetensors + JSON, refuses features of another SAE, and adds its column with a
picklable ``datasets.map`` function whose fingerprint depends only on the input and the fitted model.
"""

from saerl_hf.signals.corruptions import KINDS, corruption_counts, make_quality_dataset, off_domain_prompts
from saerl_hf.signals.difficulty import DifficultyConfig, DifficultyProbe
from saerl_hf.signals.diversity import ClusterConfig, ClusterModel, deduplicate
from saerl_hf.signals.passrate import PassRateConfig, PassRateLabeller, label_pass_rates
from saerl_hf.signals.persistence import SAEMismatchError, SignalLabelError
from saerl_hf.signals.quality import QualityConfig, QualityProbe, keep_by_quality

__all__ = [
    "KINDS", "ClusterConfig", "ClusterModel", "DifficultyConfig", "DifficultyProbe", "PassRateConfig",
    "PassRateLabeller", "QualityConfig", "QualityProbe", "SAEMismatchError", "SignalLabelError",
    "corruption_counts", "deduplicate", "keep_by_quality", "label_pass_rates", "make_quality_dataset",
    "off_domain_prompts",
]
