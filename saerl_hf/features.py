"""The ``datasets.map`` featurizer: reader + SAE -> ``sae_idx`` / ``sae_val`` / ``sae_l0`` (and ``dense_mean``).

The map function itself, :class:`Featurizer` (what each row gets and how it is computed), lives in
:mod:`saerl_hf.features_map` and is re-exported here with everything else public. Options:
:class:`saerl_hf.featurize_config.FeaturizeConfig`.

:func:`featurize` wraps ``Dataset.map`` with a fingerprint built from the input fingerprint, the settings and
the SAE's content hash, so reruns hit the ``datasets`` cache and any change of SAE, layer, pooling or k
recomputes. Provenance goes to the dataset info (see ``saerl_hf.sparse``). :func:`cli_main` is
``saerl-hf featurize`` (data-parallel under a launcher through :mod:`saerl_hf.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from saerl_hf.devices import native_bf16
from saerl_hf.features_map import STATS, Featurizer, resolve_dtype
from saerl_hf.featurize_config import PROMPT_FORMATS, FeaturizeConfig, FeaturizeError
from saerl_hf.models import cache_dir
from saerl_hf.pooling import FEATURE_SETS, POOLINGS
from saerl_hf.reader import Reader, resolve_reader
from saerl_hf.sparse import feature_provenance, to_csr, write_provenance

__all__ = [
    "FeaturizeConfig", "Featurizer", "FeaturizeError", "featurize", "featurize_fingerprint", "to_csr",
    "feature_provenance", "cli_main", "POOLINGS", "FEATURE_SETS", "PROMPT_FORMATS", "native_bf16", "resolve_dtype",
    "Reader", "resolve_reader",
]

logger = logging.getLogger(__name__)


def featurize_fingerprint(dataset, featurizer: Featurizer) -> str:
    """Stable fingerprint of (input dataset, featurizer settings, SAE content hash)."""
    payload = json.dumps({"input": dataset._fingerprint, "settings": featurizer.settings(), "v": 1},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _output_features(dataset, featurizer: Featurizer, d_in: int):
    from datasets import Features, List, Value

    features = dict(dataset.features)
    features.update(sae_idx=List(Value("int32")), sae_val=List(Value("float32")), sae_l0=Value("int32"))
    if featurizer.dense:
        features["dense_mean"] = List(Value("float32"), length=d_in)
    return Features(features)


def featurize(dataset, config: FeaturizeConfig | None = None, **overrides):
    """``dataset.map`` with the featurizer, a stable fingerprint, a cache file and provenance in the info.

    Reruns with the same input/settings/SAE load the cached result; another SAE, layer, pooling, k or
    prompt format recomputes. Keyword overrides replace config fields (``featurize(ds, pooling="max")``).
    """
    config = config or FeaturizeConfig()
    if overrides:
        config = FeaturizeConfig(**{**asdict(config), **overrides})
    if config.problem_column not in dataset.column_names:
        raise FeaturizeError(f"The dataset has no '{config.problem_column}' column (columns: "
                             f"{', '.join(dataset.column_names)}). Fix: pass problem_column=<name>.")
    # The reader (model path, layer, hook, SAE, dtype) resolved once, here in the parent: it loads and checks the
    # SAE (width vs the reader model) before any work, without model weights or CUDA (map workers fork after).
    reader = resolve_reader(config)
    featurizer = Featurizer.from_config(config, reader=reader)
    fingerprint = featurize_fingerprint(dataset, featurizer)
    drop = [c for c in ("sae_idx", "sae_val", "sae_l0", "dense_mean") if c in dataset.column_names]
    if drop:
        dataset = dataset.remove_columns(drop)
    kwargs = {}
    if config.cache_dir or not dataset.cache_files:
        # In-memory datasets have no cache dir of their own (without a file name, map never caches); a given
        # cache_dir is honoured for file-backed inputs too.
        folder = Path(config.cache_dir) if config.cache_dir else cache_dir() / "featurize"
        folder.mkdir(parents=True, exist_ok=True)
        kwargs["cache_file_name"] = str(folder / f"{fingerprint}.arrow")
    if len(dataset) == 0:  # datasets.map returns an empty input as is, without the new columns
        from datasets import Dataset

        features = _output_features(dataset, featurizer, reader.d_in)
        empty = Dataset.from_dict({name: [] for name in features}, features=features)
        return write_provenance(empty, featurizer.provenance(), key="featurize")
    rows_before, truncated_before = STATS["rows"], STATS["truncated"]
    result = dataset.map(
        featurizer,
        batched=True,
        batch_size=config.map_batch_size,
        with_indices=True,
        with_rank=config.with_rank,
        num_proc=config.num_proc,
        new_fingerprint=fingerprint,
        features=_output_features(dataset, featurizer, reader.d_in),
        desc=f"featurize ({config.pooling}, {f'top-{config.top_k}' if config.top_k else 'all active'}, "
             f"block {reader.layer})",
        **kwargs,
    )
    if STATS["truncated"] > truncated_before:
        logger.warning("featurize: %d prompt(s) truncated to %d tokens", STATS["truncated"] - truncated_before,
                       config.max_length)
    logger.info("featurize: %d row(s) computed in this process (0 = cache hit or worker processes)",
                STATS["rows"] - rows_before)
    return write_provenance(result, featurizer.provenance(), key="featurize")


def _load_input(config: FeaturizeConfig):
    from datasets import load_from_disk

    from saerl_hf.data import load_math_dataset

    if not config.dataset:
        raise FeaturizeError("No input dataset. Fix: pass --dataset <gsm8k | dir | file | org/name>.")
    path = Path(config.dataset).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        dataset = load_from_disk(str(path))
        if hasattr(dataset, "keys"):  # a DatasetDict
            split = config.split or ("train" if "train" in dataset else next(iter(dataset)))
            dataset = dataset[split]
    else:
        dataset = load_math_dataset(config.dataset, split=config.split)
    if config.limit is not None:
        dataset = dataset.select(range(min(config.limit, len(dataset))))
    return dataset


def cli_main(argv: list[str]) -> int:
    """``saerl-hf featurize``: dataset in (name, Hub id, file or dir), dataset with SAE columns out."""
    from trl import TrlParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from saerl_hf.configs import parse_config

    (config,) = parse_config(TrlParser((FeaturizeConfig,), prog="saerl-hf featurize"), argv)
    if not config.output_dir:
        raise FeaturizeError("No --output_dir. Fix: pass --output_dir <dir> for `save_to_disk`.")
    from saerl_hf.distributed import featurize_across_processes

    dataset = featurize_across_processes(_load_input(config), config)  # plain featurize without a launcher
    if dataset is None:  # another rank of `accelerate launch`: its chunks are written, rank 0 assembles
        return 0
    dataset.save_to_disk(config.output_dir)
    prov = feature_provenance(dataset)
    l0 = np.asarray(dataset["sae_l0"]) if len(dataset) else np.zeros(1)
    print(json.dumps({"output_dir": config.output_dir, "rows": len(dataset), "mean_pooled_l0": float(l0.mean()),
                      "provenance": prov}, indent=2))
    return 0

