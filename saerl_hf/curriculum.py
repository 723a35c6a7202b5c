"""SAERL ordering: turn ``cluster`` / ``difficulty`` / ``quality`` columns into a training order.

The order is materialised as a ``curriculum_rank`` column (0..n-1) so that stock TRL can train on it
(``shuffle_dataset=False`` on a dataset sorted by rank) and so that :class:`saerl_hf.samplers.CurriculumRepeatSampler`
can follow it without touching the data. A ``curriculum_batch`` column (``rank // B``) records the number of
unique prompts per generation batch ``B`` the order was built for, which is what the alignment check needs.

The order is a function of its keys (the ``cluster`` / ``difficulty`` columns, plus the curriculum, its mixing and
seed, kept in the dataset info under ``saerl.curriculum``) and of ``B``. A run whose batch geometry differs (another GPU
count, per-device batch or accumulation) rebuilds it for its own ``B`` with :func:`fit_to_geometry`, so one
curated revision trains anywhere.

Curricula (the paper's ablation axes, compared like with like):

- ``random``: a seeded permutation (vanilla GRPO).
- ``difficulty``: global easy-to-hard by predicted difficulty.
- ``cluster``: cluster-first batches interleaved across clusters, random order inside a cluster, mixing.
- ``saerl``: cluster-first batches, easy-to-hard inside each cluster, interleaved across clusters, and a
  moderate share of each batch tail-swapped with its neighbouring batches (default 0.25).

Everything is vectorised numpy (one ``lexsort`` plus a chunk sort): O(n log n), ~1 s for 1M rows.
"""

from __future__ import annotations

import logging

import numpy as np

from saerl_hf.configs import renamed_kwargs
from saerl_hf.curriculum_alignment import (  # noqa: F401  (re-exported: the batch geometry lives there)
    BATCH_COLUMN,
    PROMPTS_PER_BATCH_HELP,
    RANK_COLUMN,
    AlignmentReport,
    CurriculumError,
    _column,
    _infer_built_for,
    prompts_per_batch_of,
    unique_prompts_per_batch,
    validate_alignment,
)
from saerl_hf.sparse import read_provenance, write_provenance

logger = logging.getLogger(__name__)

CURRICULA = ("saerl", "difficulty", "cluster", "random")  # the orders built from a dataset's columns
MODES = CURRICULA  # the old name, until the next release
SPEC_KEY = "curriculum"  # dataset info: saerl.curriculum = the order's recipe (curriculum, mixing, seed, key columns)
# the recipe's keys before the names were unified (datasets curated then still rebuild their order; old cards)
OLD_CURRICULUM_KEYS = {"mode": "curriculum", "mixing": "curriculum_mixing", "unique_prompts_per_batch": "prompts_per_batch",
                       "batch_prompts": "prompts_per_batch"}

# ----------------------------------------------------------------------------- ordering core (numpy)


@renamed_kwargs(unique_prompts_per_batch="prompts_per_batch", mode="curriculum", mixing="curriculum_mixing")
def curriculum_order(
    num_rows: int,
    prompts_per_batch: int,
    curriculum: str = "saerl",
    cluster=None,
    difficulty=None,
    curriculum_mixing: float = 0.25,
    seed: int = 0,
) -> np.ndarray:
    """Row indices in training order (``order[r]`` is the row trained r-th). Pure numpy, deterministic per seed.

    Incomplete batches: clusters whose size is not a multiple of B leave remainders; these are pooled by
    within-cluster progress into mixed batches that take their place in the interleave. The global
    remainder (``num_rows % B``) goes last, where TRL drops it (see :func:`validate_alignment`).
    """
    if curriculum not in CURRICULA:
        raise CurriculumError(f"unknown curriculum '{curriculum}'. Choose one of: {', '.join(CURRICULA)}.")
    n = int(num_rows)
    b = int(prompts_per_batch)
    if b < 1:
        raise CurriculumError(f"prompts_per_batch must be >= 1, got {b}")
    if not 0.0 <= float(curriculum_mixing) <= 1.0:
        raise CurriculumError(f"curriculum_mixing must be in [0, 1] (share of each batch swapped with neighbours), "
                              f"got {curriculum_mixing}")
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if curriculum == "random":
        return rng.permutation(n).astype(np.int64)
    tie = rng.random(n)  # seeded tie-break: equal difficulties (e.g. integer levels) come out in random order
    if curriculum == "difficulty":
        d = _numeric(difficulty, n, "difficulty")
        return np.lexsort((tie, d)).astype(np.int64)
    c = _clusters(cluster, n)
    d = _numeric(difficulty, n, "difficulty") if curriculum == "saerl" else np.zeros(n)
    order = _cluster_first(c, d, tie, b, rng)
    return _tail_swap(order, b, curriculum_mixing)


def _numeric(values, n: int, name: str) -> np.ndarray:
    if values is None:
        raise CurriculumError(f"this curriculum needs a '{name}' column. Fix: run the signals/curate step first.")
    arr = np.asarray(values)
    if arr.dtype == object:  # Arrow nulls come back as None
        arr = np.array([np.nan if v is None else v for v in arr], dtype=np.float64)
    arr = arr.astype(np.float64)
    if arr.shape != (n,):
        raise CurriculumError(f"'{name}' has shape {arr.shape}, expected ({n},)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise CurriculumError(
            f"'{name}' is missing or not finite in {bad.size} rows (first: row {int(bad[0])}). "
            f"Fix: fill or drop those rows before ordering."
        )
    return arr


def _clusters(values, n: int) -> np.ndarray:
    if values is None:
        raise CurriculumError("this curriculum needs a 'cluster' column. Fix: run the signals/curate step first.")
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise CurriculumError(f"'cluster' has shape {arr.shape}, expected ({n},)")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.any(~np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise CurriculumError(f"'cluster' is missing in row {bad}. Fix: assign every row a cluster id.")
        _, arr = np.unique(arr, return_inverse=True)  # labels of any type -> 0..K-1
    return arr.astype(np.int64)


def _cluster_first(c: np.ndarray, d: np.ndarray, tie: np.ndarray, b: int, rng) -> np.ndarray:
    """Sort inside clusters, cut full batches per cluster, pool remainders, interleave batches by progress."""
    n = c.size
    sorted_idx = np.lexsort((tie, d, c))  # cluster, then difficulty (easy first), then random tie-break
    cs = c[sorted_idx]
    starts = np.r_[0, np.flatnonzero(np.diff(cs)) + 1]
    sizes = np.diff(np.r_[starts, n])
    size_of = np.repeat(sizes, sizes)
    pos = np.arange(n) - np.repeat(starts, sizes)  # rank inside the cluster
    full = np.repeat((sizes // b) * b, sizes)
    in_full = pos < full

    # Full, cluster-pure batches: progress key (j + 0.5) / m_c puts clusters of any size on one easy->hard clock.
    full_items = sorted_idx[in_full]
    n_full_batches = full_items.size // b
    chunk_rows = full_items.reshape(n_full_batches, b) if n_full_batches else full_items.reshape(0, b)
    j = pos[in_full][::b] // b if n_full_batches else np.zeros(0, dtype=np.int64)
    m = (full[in_full][::b] // b) if n_full_batches else np.zeros(0, dtype=np.int64)
    full_keys = (j + 0.5) / np.maximum(m, 1)

    # Remainders of each cluster, pooled in order of within-cluster progress -> mixed batches.
    rem_mask = ~in_full
    rem_items = sorted_idx[rem_mask]
    rem_progress = (pos[rem_mask] + 0.5) / size_of[rem_mask]
    if rem_items.size:
        ro = np.lexsort((tie[rem_items], rem_progress))
        rem_items, rem_progress = rem_items[ro], rem_progress[ro]
    n_rem_batches = rem_items.size // b
    rem_rows = rem_items[: n_rem_batches * b].reshape(n_rem_batches, b)
    rem_keys = rem_progress[: n_rem_batches * b].reshape(n_rem_batches, b).mean(axis=1) if n_rem_batches else np.zeros(0)
    leftover = rem_items[n_rem_batches * b :]  # < b prompts: the global tail, placed last

    rows = np.concatenate([chunk_rows, rem_rows], axis=0)
    keys = np.concatenate([full_keys, rem_keys])
    batch_order = np.lexsort((rng.random(keys.size), keys))  # interleave; random order among equal progress
    return np.concatenate([rows[batch_order].reshape(-1), leftover]).astype(np.int64)


def _tail_swap(order: np.ndarray, b: int, mixing: float) -> np.ndarray:
    """Swap the tails of adjacent batches so that, on average, a ``mixing`` share of each batch comes from
    its neighbours (the paper's "moderate mixing" / tail swap).

    Boundary i (between batches i and i+1) swaps h_i prompts, with h_i = floor((i+1)m) - floor(i m) and
    m = mixing * B / 2: inner batches exchange mixing * B prompts when that is even (e.g. 2 of 8 at 0.25),
    and the share holds on average otherwise (B = 2 at 0.25: every fourth boundary swaps one prompt).
    Batch i gives its last h_i positions to batch i+1, which gives back the h_i positions just before its
    own next-tail, so the two segments of a batch never overlap (h_{i-1} + h_i <= B).
    """
    nb = order.size // b
    m = float(mixing) * b / 2.0
    if m == 0 or nb < 2:
        return order
    out = order.copy()
    grid = out[: nb * b].reshape(nb, b)  # a view: edits land in `out`
    i = np.arange(nb - 1)
    h = (np.floor((i + 1) * m + 1e-9) - np.floor(i * m + 1e-9)).astype(np.int64)  # swap size per boundary
    h_next = np.r_[h, 0]  # per batch: how many of its last positions go to the next batch
    for size in np.unique(h):
        if size == 0:
            continue
        bounds = np.flatnonzero(h == size)  # boundaries with this swap size
        for off in range(int(size)):
            left_col = b - size + off  # batch i: its last `size` positions
            right_col = b - h_next[bounds + 1] - size + off  # batch i+1: positions before its own next-tail
            left = grid[bounds, left_col].copy()
            grid[bounds, left_col] = grid[bounds + 1, right_col]
            grid[bounds + 1, right_col] = left
    return out


# ----------------------------------------------------------------------------- datasets helpers


@renamed_kwargs(unique_prompts_per_batch="prompts_per_batch", mode="curriculum", mixing="curriculum_mixing")
def add_curriculum_rank(
    ds,
    prompts_per_batch: int,
    curriculum: str = "saerl",
    curriculum_mixing: float = 0.25,
    seed: int = 0,
    cluster_column: str = "cluster",
    difficulty_column: str = "difficulty",
):
    """Return ``ds`` with ``curriculum_rank`` (0..n-1) and ``curriculum_batch`` (rank // B) columns.

    ``prompts_per_batch`` is TRL's ``generation_batch_size // num_generations``: batches only stay
    cluster-first if the trainer chunks the order with the same B (see :func:`validate_alignment`).
    """
    n = len(ds)
    cols = ds.column_names
    for name in (RANK_COLUMN, BATCH_COLUMN):
        if name in cols:
            ds = ds.remove_columns(name)
    uses = {"cluster": ("cluster", "saerl"), "difficulty": ("difficulty", "saerl")}
    cluster = _column(ds, cluster_column) if curriculum in uses["cluster"] and cluster_column in cols else None
    difficulty = (_column(ds, difficulty_column) if curriculum in uses["difficulty"] and difficulty_column in cols
                  else None)
    order = curriculum_order(n, prompts_per_batch, curriculum, cluster, difficulty, curriculum_mixing, seed)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    ds = ds.add_column(RANK_COLUMN, rank).add_column(BATCH_COLUMN, rank // int(prompts_per_batch))
    spec = {"curriculum": curriculum, "curriculum_mixing": float(curriculum_mixing), "seed": int(seed),
            "prompts_per_batch": int(prompts_per_batch), "cluster_column": cluster_column,
            "difficulty_column": difficulty_column}
    write_provenance(ds, spec, key=SPEC_KEY)
    validate_alignment(n, prompts_per_batch)
    return ds


def order_spec(ds) -> dict | None:
    """The recipe of a dataset's stored order (curriculum, curriculum_mixing, seed, prompts_per_batch, key columns;
    older datasets' key names read as these), or None if it has none."""
    spec = read_provenance(ds).get(SPEC_KEY)
    if not isinstance(spec, dict):
        return None
    spec = {OLD_CURRICULUM_KEYS.get(key, key): value for key, value in spec.items()}
    return spec if spec.get("curriculum") in CURRICULA else None


@renamed_kwargs(unique_prompts_per_batch="prompts_per_batch")
def fit_to_geometry(ds, prompts_per_batch: int):
    """The stored order made right for a run with ``prompts_per_batch`` (B) unique prompts per generation batch.

    Unchanged when it was built for this B over these rows. Otherwise (another GPU count or batch geometry, or
    rows filtered after ordering) the same order is rebuilt for B from its keys and the rebuild is logged; a
    dataset without a stored recipe keeps its sequence (re-ranked 0..n-1) with a warning. Never raises for a
    different geometry; deterministic, so every process rebuilds the same order.
    """
    b, n = int(prompts_per_batch), len(ds)
    cols = ds.column_names
    if RANK_COLUMN not in cols:
        raise CurriculumError(f"no '{RANK_COLUMN}' column. Fix: train on a curated dataset (saerl-hf curate) or call "
                              f"add_curriculum_rank(ds, prompts_per_batch, curriculum=...).")
    rank = _column(ds, RANK_COLUMN).astype(np.int64)
    permutation = bool(np.array_equal(np.sort(rank), np.arange(n)))
    spec = order_spec(ds)
    built_for = (spec or {}).get("prompts_per_batch")
    if permutation and BATCH_COLUMN in cols:
        built_for = _infer_built_for(rank, _column(ds, BATCH_COLUMN).astype(np.int64))
    if permutation and built_for in (None, b):
        return ds
    why = (f"built for {built_for} unique prompts per generation batch, this run has {b}" if permutation else
           f"'{RANK_COLUMN}' does not number these {n} rows 0..{n - 1} (rows were filtered after ordering)")
    needs = {"cluster": ["cluster_column"], "difficulty": ["difficulty_column"],
             "saerl": ["cluster_column", "difficulty_column"], "random": []}
    if spec is not None and all(spec.get(k) in cols for k in needs[spec["curriculum"]]):
        logger.info("curriculum: the stored %s order was %s; rebuilt it for %d prompts per batch from its keys "
                    "(%s, mixing %s, seed %s), so cluster-first batches line up with this run's batches",
                    spec["curriculum"], why, b, ", ".join(spec[k] for k in needs[spec["curriculum"]]) or "seed only",
                    spec["curriculum_mixing"], spec["seed"])
        return add_curriculum_rank(ds, b, curriculum=spec["curriculum"], curriculum_mixing=spec["curriculum_mixing"],
                                   seed=spec["seed"], cluster_column=spec.get("cluster_column", "cluster"),
                                   difficulty_column=spec.get("difficulty_column", "difficulty"))
    logger.warning("curriculum: the stored order was %s and its recipe (curriculum, mixing, seed, key columns) is not "
                   "stored with the dataset, so it cannot be rebuilt; following the stored sequence, whose batches "
                   "may straddle this run's. Fix: re-curate with this version, or set curriculum: saerl to order "
                   "the rows here.", why)
    if permutation:
        return ds
    new_rank = np.empty(n, dtype=np.int64)
    new_rank[np.argsort(rank, kind="stable")] = np.arange(n, dtype=np.int64)
    ds = ds.remove_columns([c for c in (RANK_COLUMN, BATCH_COLUMN) if c in cols])
    return ds.add_column(RANK_COLUMN, new_rank)


def sort_by_curriculum(ds, flatten: bool = True):
    """Rows in ``curriculum_rank`` order: what stock ``GRPOTrainer(shuffle_dataset=False)`` needs.

    ``flatten`` rewrites the Arrow table so later reads do not go through an indices mapping.
    """
    if RANK_COLUMN not in ds.column_names:
        raise CurriculumError(
            f"no '{RANK_COLUMN}' column. Fix: call add_curriculum_rank(ds, prompts_per_batch, curriculum=...) first."
        )
    rank = _column(ds, RANK_COLUMN).astype(np.int64)
    if not np.array_equal(np.sort(rank), np.arange(len(ds))):
        raise CurriculumError(f"'{RANK_COLUMN}' is not a permutation of 0..{len(ds) - 1}; rebuild it.")
    out = ds.select(np.argsort(rank, kind="stable"))
    return out.flatten_indices() if flatten else out


def batch_stats(order: np.ndarray, prompts_per_batch: int, cluster=None, difficulty=None) -> dict:
    """Diagnostics of an order: cluster purity of batches and Spearman-like easy->hard trend (for docs/tests)."""
    b = int(prompts_per_batch)
    nb = order.size // b
    out: dict = {"num_batches": nb}
    if cluster is not None and nb:
        c = _clusters(cluster, len(cluster))[order[: nb * b]].reshape(nb, b)
        majority = np.array([np.bincount(row).argmax() for row in c])
        counts = np.array([np.bincount(row).max() for row in c])
        out["mean_purity"] = float(counts.mean() / b)
        out["adjacent_same_cluster"] = float(np.mean(majority[1:] == majority[:-1])) if nb > 1 else 0.0
    if difficulty is not None and nb:
        d = np.asarray(difficulty, dtype=np.float64)[order[: nb * b]].reshape(nb, b).mean(axis=1)
        if nb > 1:
            ranks = np.argsort(np.argsort(d))
            out["difficulty_trend"] = float(np.corrcoef(np.arange(nb), ranks)[0, 1])
    return out
