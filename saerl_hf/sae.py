"""Train (sae-lens) and load sparse autoencoders on a reader LM's residual stream.

Training streams activations from the model with an early exit at the SAE's layer (no activation files),
shuffles them in an in-memory mixing buffer and feeds sae-lens' ``SAETrainer`` step by step. The result is
saved in sae-lens' own format (``save_inference_model`` -> ``SAE.load_from_disk``) with a card rendered from
the ``sae_card.md`` template (:mod:`saerl_hf.cards`) and a ``sae_training.json`` with the metrics.

``load_sae`` takes a local dir, a Hub repo id (``snapshot_download``) or a sae-lens registry entry
(``release:sae_id``); the reader model need not be the policy model, only its hidden size must match.

Split along its seams: :mod:`saerl_hf.sae_train` (config, save, card), :mod:`saerl_hf.sae_fit` (training loop
and resumable checkpoints), :mod:`saerl_hf.sae_data` (training texts and the activation stream),
:mod:`saerl_hf.sae_load` (load and width checks); every public name stays importable from here.
"""

from __future__ import annotations

from saerl_hf.models import file_sha256
from saerl_hf.sae_data import MixingBuffer, stream_activations, training_texts
from saerl_hf.sae_load import (
    SAE_CFG,
    SAE_WEIGHTS,
    TRAINING_FILE,
    SAEHandle,
    SAELoadError,
    default_sae_dir,
    load_sae,
    model_alias,
    sae_training_info,
)
from saerl_hf.sae_train import (
    ARCHITECTURES,
    DEFAULT_SOURCES,
    TrainResult,
    TrainSAEConfig,
    cli_main,
    evaluate_sae,
    render_sae_card,
    train_sae,
)

__all__ = [
    "ARCHITECTURES", "DEFAULT_SOURCES", "SAE_CFG", "SAE_WEIGHTS", "TRAINING_FILE", "MixingBuffer", "SAEHandle",
    "SAELoadError", "TrainResult", "TrainSAEConfig", "cli_main", "default_sae_dir", "evaluate_sae", "file_sha256",
    "load_sae", "model_alias", "render_sae_card", "sae_training_info", "stream_activations", "train_sae", "training_texts",
]
