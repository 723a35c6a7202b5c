"""Save/load fitted signal models as safetensors (arrays) + JSON (everything else); never pickle.

A probe is only meaningful on features of the SAE it was fitted on, so every saved model carries the SAE
identity (hash, width, reader model, layer, hook, pooling) and the feature set it was fitted on (``sae``,
``dense_mean`` or ``sae+dense``), and every ``apply`` checks them against the dataset's featurization provenance.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from saerl_hf.sparse import feature_provenance

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
# Provenance keys that identify the feature space; a mismatch in any of them makes a probe meaningless.
# (The SAE's location, ``sae``, is recorded too but not compared: a moved SAE has the same hash.)
IDENTITY_KEYS = ("sae_hash", "d_sae", "model", "layer", "hook", "pooling")
RECORDED_KEYS = ("sae", "top_k", "prompt_format", "d_in", "n_features")


class SAEMismatchError(ValueError):
    """A fitted signal model met features from another SAE, width or pooling."""


class FeatureSetMismatchError(SAEMismatchError):
    """A fitted signal model asked to score another feature set (sae / dense / sae+dense) than it was fitted on."""


class SignalLabelError(ValueError):
    """Labels are missing, non-numeric or too few to fit a signal model."""


class ProbeLoadError(ValueError):
    """A saved signal model that cannot be read (corrupt, truncated or incomplete files)."""


def library_versions() -> dict:
    """Versions of the libraries whose numerics a saved model depends on."""
    import datasets
    import safetensors
    import scipy
    import sklearn

    from saerl_hf import __version__

    return {
        "saerl_hf": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "datasets": datasets.__version__,
        "safetensors": safetensors.__version__,
    }


def sae_identity(dataset_or_provenance) -> dict:
    """The identity block (see ``IDENTITY_KEYS``) of a featurized dataset or a provenance dict."""
    if isinstance(dataset_or_provenance, dict):
        provenance = dataset_or_provenance
    else:
        provenance = feature_provenance(dataset_or_provenance)
    identity = {key: provenance.get(key) for key in IDENTITY_KEYS + RECORDED_KEYS}
    if identity["d_sae"] is None:
        raise SAEMismatchError(
            "The dataset's featurization provenance has no 'd_sae' (feature width). Fix: featurize it with "
            "`saerl-hf featurize`, which records the SAE identity in the dataset info."
        )
    identity["d_sae"] = int(identity["d_sae"])
    return identity


def check_identity(expected: dict, found: dict, what: str) -> None:
    """Raise ``SAEMismatchError`` naming every field where ``found`` (the dataset) differs from ``expected``."""
    diffs = [
        f"{key}: fitted on {expected.get(key)!r}, dataset has {found.get(key)!r}"
        for key in sorted(set(expected) | set(found))
        if key in IDENTITY_KEYS + ("features", "d_in", "n_features")
        and expected.get(key) is not None and found.get(key) is not None and expected.get(key) != found.get(key)
    ]
    if diffs:
        raise SAEMismatchError(
            f"The {what} was fitted on features of another SAE or feature space: " + "; ".join(diffs)
            + ". Fix: featurize the dataset with the SAE the model was fitted on, or refit the model on "
            "these features."
        )


def check_feature_set(fitted: str, requested: str, what: str) -> None:
    """Raise ``FeatureSetMismatchError`` when ``requested`` is not the feature set the model was fitted on."""
    from saerl_hf.signals.matrix import feature_set

    if feature_set(requested) != feature_set(fitted):
        raise FeatureSetMismatchError(
            f"The {what} was fitted on '{feature_set(fitted)}' features, not '{feature_set(requested)}'. Fix: refit "
            f"it with features='{feature_set(requested)}' (the probe config's `features`, or curate's `features:`), "
            f"or score with features='{feature_set(fitted)}'."
        )


def check_width(expected_width: int, matrix, what: str) -> None:
    if matrix.shape[1] != expected_width:
        raise SAEMismatchError(
            f"The {what} expects {expected_width} features but got a matrix of width {matrix.shape[1]}. "
            f"Fix: use features of the SAE it was fitted on (d_sae={expected_width}) or refit."
        )


def save_model(directory, kind: str, arrays: dict[str, np.ndarray], config: dict) -> Path:
    """Write ``model.safetensors`` + ``config.json`` to ``directory``; returns the directory."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(directory / WEIGHTS_NAME),
              metadata={"kind": kind, "format_version": str(FORMAT_VERSION)})
    payload = {"kind": kind, "format_version": FORMAT_VERSION, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime()),
               "library_versions": library_versions(), **config}
    (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default))
    return directory


def load_model(directory, kind: str, config_keys: tuple[str, ...] = (),
               array_keys: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], dict]:
    """Read what ``save_model`` wrote; raises if the directory holds another kind of model, or if a file is
    corrupt/truncated or lacks one of ``config_keys`` / ``array_keys``."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"No {path.name} in '{directory}'. Fix: point at a directory written by "
                                    f"`.save(dir)` of a {kind} model.")
    fix = f"Fix: refit and save the {kind} model again (or re-download the curated revision it came from)."
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProbeLoadError(f"{config_path} is not valid JSON ({err}); the file is corrupt or truncated. "
                             f"{fix}") from None
    if not isinstance(config, dict):
        raise ProbeLoadError(f"{config_path} holds a JSON {type(config).__name__}, not an object. {fix}")
    if config.get("kind") != kind:
        raise ValueError(f"'{directory}' holds a {config.get('kind')!r} model, not a {kind!r} model.")
    try:
        arrays = load_file(str(weights_path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type for bad headers/sizes
        raise ProbeLoadError(f"{weights_path} cannot be read ({type(err).__name__}: {err}); the file is corrupt or "
                             f"truncated. {fix}") from None
    missing = [f"{CONFIG_NAME}:{key}" for key in config_keys if key not in config]
    missing += [f"{WEIGHTS_NAME}:{key}" for key in array_keys if key not in arrays]
    if missing:
        raise ProbeLoadError(f"'{directory}' is missing {', '.join(missing)}. {fix}")
    return arrays, config


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fingerprint_of(*parts) -> str:
    """A stable ``datasets`` fingerprint from strings / arrays (same inputs -> same cache entry)."""
    from datasets.fingerprint import Hasher

    hasher = Hasher()
    for part in parts:
        hasher.update(part.tobytes() if isinstance(part, np.ndarray) else part)
    return hasher.hexdigest()
