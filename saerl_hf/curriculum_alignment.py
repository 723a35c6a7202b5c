"""Batch geometry of a curriculum: TRL's B (unique prompts per generation batch) and whether an order fits it.

An order is built for one B (``curriculum_batch`` = rank // B records which); :func:`validate_alignment` says
whether a dataset still lines up with a trainer's B, how many tail prompts that B drops and whether the rows
are in rank order, with the fix. Split from :mod:`saerl_hf.curriculum`, which re-exports every name.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from saerl_hf.configs import renamed_kwargs, warn_renamed
from saerl_hf.errors import SaerlError

logger = logging.getLogger("saerl_hf.curriculum")

RANK_COLUMN = "curriculum_rank"
BATCH_COLUMN = "curriculum_batch"
PROMPTS_PER_BATCH_HELP = ("Unique prompts per generation batch, over all processes: TRL's generation_batch_size // "
                          "num_generations (generation_batch_size = per_device_train_batch_size x processes x "
                          "steps_per_generation).")


class CurriculumError(SaerlError, ValueError):
    """A bad ordering request; the message names the field and the fix."""


@dataclass(frozen=True)
class AlignmentReport:
    """How an order of ``num_rows`` prompts lines up with ``prompts_per_batch`` (TRL's B)."""

    num_rows: int
    prompts_per_batch: int
    num_batches: int
    dropped_tail: int  # prompts TRL's RepeatSampler never yields (the incomplete last chunk)
    built_for: int | None = None  # B the order was built for (from ``curriculum_batch``), if known
    sorted_by_rank: bool | None = None  # dataset rows are physically in rank order (zero-patch path)
    zero_patch: bool = True  # stock GRPOTrainer(shuffle_dataset=False) reads rows in storage order

    @property
    def aligned(self) -> bool:
        return self.built_for is None or self.built_for == self.prompts_per_batch

    def message(self) -> str:
        parts = [
            f"{self.num_rows} prompts, {self.prompts_per_batch} unique prompts per generation batch -> "
            f"{self.num_batches} batches"
        ]
        if self.dropped_tail:
            parts.append(
                f"{self.dropped_tail} tail prompts (the hardest end of the order) are dropped each epoch because "
                f"{self.num_rows} is not a multiple of {self.prompts_per_batch}"
            )
        if not self.aligned:
            parts.append(
                f"MISALIGNED: the order was built for {self.built_for} prompts per batch, so cluster-first batches "
                f"and the tail-swap mixing straddle TRL's batches. Fix: rebuild the order with "
                f"prompts_per_batch={self.prompts_per_batch}, or set generation_batch_size = "
                f"{self.built_for} * num_generations"
            )
        if self.sorted_by_rank is False and self.zero_patch:
            parts.append("rows are not sorted by curriculum_rank: call sort_by_curriculum(ds) before stock GRPOTrainer")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "aligned": self.aligned}


def prompts_per_batch_of(args, num_processes: int = 1) -> int:
    """TRL's B = ``generation_batch_size // num_generations`` from a ``GRPOConfig`` (after its __post_init__).

    ``generation_batch_size`` in a GRPOConfig already counts all processes when ``world_size`` was known at
    construction; ``num_processes`` is only used when it was not set.
    """
    gen = getattr(args, "generation_batch_size", None)
    if gen is None:
        gen = args.per_device_train_batch_size * num_processes * args.steps_per_generation
    if gen % args.num_generations:
        raise CurriculumError(
            f"generation_batch_size={gen} is not divisible by num_generations={args.num_generations}. "
            f"Fix: choose per_device_train_batch_size * num_processes * steps_per_generation as a multiple of "
            f"num_generations."
        )
    return gen // args.num_generations


def unique_prompts_per_batch(args, num_processes: int = 1) -> int:
    """The old name of :func:`prompts_per_batch_of`, until the next release."""
    warn_renamed("unique_prompts_per_batch()", "prompts_per_batch_of()")
    return prompts_per_batch_of(args, num_processes)


@renamed_kwargs(unique_prompts_per_batch="prompts_per_batch")
def validate_alignment(
    ds_or_n, prompts_per_batch: int, strict: bool = False, zero_patch: bool = True
) -> AlignmentReport:
    """Check an ordered dataset (or a row count) against TRL's batch size; log or raise what would go wrong.

    Reports how many tail prompts the batch size drops, whether the order was built for this batch size
    (``curriculum_batch`` column) and whether rows are physically sorted (needed by the zero-patch path).
    ``strict=True`` raises :class:`CurriculumError` on misalignment instead of warning. ``zero_patch=False``
    (the curriculum sampler reads ``curriculum_rank`` itself) does not ask for sorted rows.
    """
    b = int(prompts_per_batch)
    if b < 1:
        raise CurriculumError(f"prompts_per_batch must be >= 1, got {b}")
    built_for = None
    sorted_by_rank = None
    if isinstance(ds_or_n, (int, np.integer)):
        n = int(ds_or_n)
    else:
        n = len(ds_or_n)
        cols = getattr(ds_or_n, "column_names", None) or []
        if RANK_COLUMN in cols:
            rank = _column(ds_or_n, RANK_COLUMN).astype(np.int64)
            sorted_by_rank = bool(np.array_equal(rank, np.arange(n)))
            if BATCH_COLUMN in cols:
                batch = _column(ds_or_n, BATCH_COLUMN).astype(np.int64)
                built_for = _infer_built_for(rank, batch)
    if n < b:
        raise CurriculumError(
            f"the dataset has {n} rows but one generation batch needs {b} unique prompts; nothing would be trained. "
            f"Fix: use more data or lower per_device_train_batch_size / steps_per_generation."
        )
    report = AlignmentReport(n, b, n // b, n % b, built_for, sorted_by_rank, zero_patch)
    if not report.aligned and strict:
        raise CurriculumError(report.message())
    if not report.aligned or report.dropped_tail or (report.sorted_by_rank is False and zero_patch):
        logger.warning("curriculum alignment: %s", report.message())
    return report


def _infer_built_for(rank: np.ndarray, batch: np.ndarray) -> int | None:
    counts = np.bincount(batch[rank < rank.size]) if batch.size else np.array([])
    if counts.size == 0:
        return None
    b = int(counts[0])
    if b and np.array_equal(rank // b, batch):
        return b
    return -1  # inconsistent columns: treat as misaligned with anything


def _column(ds, name: str) -> np.ndarray:
    """A column as numpy through Arrow (``np.asarray(ds[name])`` iterates Python objects: minutes at 1M rows)."""
    if hasattr(ds, "select_columns") and hasattr(ds, "with_format"):
        arr = ds.select_columns([name]).with_format("arrow")[:][name]
        return arr.to_numpy() if arr.null_count == 0 else np.asarray(arr.to_pylist(), dtype=object)
    return np.asarray(ds[name])
