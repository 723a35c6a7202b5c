"""The GRPO run's data: the train set (curated dir, saved dataset, file, benchmark names or Hub id) with TRL's
``prompt`` column, and the held-out rows scored while training."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger("saerl_hf.grpo")

DROP_COLUMNS_PREFIX = ("sae_",)  # sparse feature columns: large and not needed by rewards


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def load_train_dataset(name: str, split: str = "train", revision: str | None = None, config: str | None = None,
                       limit: int | None = None):
    """Local dir / curated dir / data file / benchmark name(s) / Hub id -> a ``datasets.Dataset``."""
    import datasets

    from saerl_hf import data as sdata

    path = Path(name).expanduser()
    ds = None
    if path.is_dir():
        if (path / "dataset").is_dir() and (path / "provenance.json").is_file():
            from saerl_hf.hub import load_curated

            ds = load_curated(path).dataset
        elif _is_saved_dataset(path):
            ds = datasets.load_from_disk(str(path))
        else:
            raise FileNotFoundError(
                f"'{name}' is a directory but neither a save_to_disk dataset nor a curated dir "
                f"(dataset/ + provenance.json). Fix: point dataset_name at one of those."
            )
    elif path.is_file():
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
        if kind is None:
            raise ValueError(f"unsupported data file '{name}'. Fix: use .jsonl, .json, .parquet or .csv.")
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    else:
        names = [n.strip() for n in name.split(",") if n.strip()]
        if names and all(n in sdata.list_benchmarks() for n in names):
            if len(names) == 1:
                ds = sdata.load_math_dataset(names[0], split=split, limit=limit)
            else:
                ds = sdata.load_mixture(names, split=split, limit_per_source=limit)
        else:
            from saerl_hf.hub import CuratedLoadError, load_curated

            try:
                ds = load_curated(name, revision=revision).dataset
            except CuratedLoadError as err:
                # A missing revision/repo, an unsafe file list or a content mismatch is the answer, not a cue to
                # retry as a plain dataset (whose error would hide it); only "no push record" falls through.
                if err.reason != "not_curated":
                    raise
                ds = datasets.load_dataset(name, config, split=split, revision=revision)
            except Exception:  # noqa: BLE001 - offline or not a dataset repo we can inspect: plain Hub dataset
                ds = datasets.load_dataset(name, config, split=split, revision=revision)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"split '{split}' not in {name} (splits: {', '.join(ds)}). Fix: set dataset_train_split.")
        ds = ds[split]
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    return ds


def prepare_prompts(ds, tokenizer=None):
    """Add TRL's ``prompt`` from ``problem`` (+ ``source``) with the shared prompt builder.

    Conversational (a list of messages) when the tokenizer has a chat template; a base model without one
    (Gemma 3 270M base) gets the same few-shot text prompt the evaluation gives it (``prompts.plain_prompt``),
    so training and held-out scoring see one prompt.
    """
    from saerl_hf.prompts import build_messages, family_of, plain_prompt

    cols = ds.column_names
    drop = [c for c in cols if c.startswith(DROP_COLUMNS_PREFIX)]
    if drop:
        ds = ds.remove_columns(drop)
    if "prompt" in cols:
        return ds
    for needed in ("problem", "answer"):
        if needed not in cols:
            raise ValueError(f"the train dataset has no '{needed}' column (columns: {', '.join(cols)}). "
                             f"Fix: use the canonical schema of saerl_hf.data (problem, answer, source, ...).")
    has_source = "source" in cols
    if tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        return ds.map(
            lambda row: {"prompt": plain_prompt(row["problem"], family_of(row["source"] if has_source else None))},
            desc="prompts (few-shot text)",
        )
    return ds.map(
        lambda row: {"prompt": build_messages(row["problem"], row["source"] if has_source else None)},
        desc="prompts",
    )


def heldout_subset(rows: list, limit: int | None) -> list:
    """``limit`` rows of a held-out set, the same ones for every run and seed (so step 0, the arms and the seeds
    score the same items and can be paired); a seeded random subset, since held-out sets are often stored source
    by source and the first N would be biased."""
    if limit is None or len(rows) <= int(limit):
        return rows
    import numpy as np

    keep = np.random.default_rng(0).choice(len(rows), int(limit), replace=False)
    return [rows[i] for i in sorted(keep.tolist())]


def load_heldout(script_args, train_ds) -> list[dict]:
    """The held-out rows (:func:`heldout_subset` of ``heldout_limit``), minus any problem also in the train set."""
    if not script_args.heldout_dataset_name:
        return []
    ds = load_train_dataset(script_args.heldout_dataset_name, split=script_args.heldout_split)
    train_problems = set(train_ds["problem"]) if "problem" in train_ds.column_names else set()
    rows = [dict(r) for r in ds if r.get("problem") not in train_problems]
    overlap = len(ds) - len(rows)
    if overlap:
        logger.info("held-out set: dropped %d problems that also appear in the train set", overlap)
    rows = heldout_subset(rows, script_args.heldout_limit)
    for i, r in enumerate(rows):
        r.setdefault("id", f"{script_args.heldout_dataset_name}/{i}")
        r.setdefault("source", script_args.heldout_dataset_name)
    return rows
