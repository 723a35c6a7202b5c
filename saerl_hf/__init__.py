"""saerl-hf: sparse-autoencoder signals (diversity, difficulty, quality) for TRL GRPO data engineering."""

__version__ = "0.1.0"

from saerl_hf.data import list_benchmarks, load_math_dataset  # noqa: E402
from saerl_hf.models import load_model, load_tokenizer  # noqa: E402

# Test fixtures (tiny random models) are not public API: tests take them from tests/conftest.py.
__all__ = ["__version__", "load_math_dataset", "list_benchmarks", "load_model", "load_tokenizer"]
