"""Near-duplicate search of `deduplicate`: the old Python loop over a per-cluster similarity matrix vs sklearn.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dedup.py     # 100k rows, rewrites its block of docs/benchmarks.md
    .venv/bin/python benchmarks/dedup.py --rows 20000 --clusters 1 --no-write

Synthetic SAE-like rows (width 4096, 64 active latents, log-normal values after log1p): each of ``--clusters``
clusters has its own 256 favoured latents, and 1% of rows are planted near-copies (values jittered by 0.1%)
of an earlier row of their cluster. Both implementations see the same L2-normalised float32 CSR rows of each
cluster, exactly as `deduplicate` builds them, and must drop the same rows. Single-threaded (set
``OMP_NUM_THREADS=1``), one run each, timed in CPU seconds of this process (``time.process_time``): on a
shared machine wall-clock mostly measures the other jobs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from docs_section import machine, write_section  # noqa: E402

from saerl_hf.signals.diversity import l2_normalise, near_duplicates  # noqa: E402

WIDTH, ACTIVE, FAVOURED = 4096, 64, 256


def synthetic_rows(rows: int, clusters: int, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, int]:
    """(unit float32 CSR rows, cluster of each row, number of planted near-copies)."""
    rng = np.random.default_rng(seed)
    favoured = [rng.choice(WIDTH, FAVOURED, replace=False) for _ in range(clusters)]
    group = rng.integers(0, clusters, rows)
    indices = np.empty((rows, ACTIVE), dtype=np.int32)
    for row in range(rows):
        own = rng.choice(favoured[group[row]], ACTIVE // 2, replace=False)
        rest = rng.choice(WIDTH, ACTIVE, replace=False)
        indices[row] = np.concatenate([own, rest[~np.isin(rest, own)][: ACTIVE - ACTIVE // 2]])
    values = np.log1p(rng.lognormal(0.0, 1.0, (rows, ACTIVE))).astype(np.float32)
    copies = rng.choice(np.arange(rows // 2, rows), rows // 100, replace=False)
    for row in copies:
        same = np.flatnonzero(group[:row] == group[row])
        if len(same):
            source = rng.choice(same)
            indices[row] = indices[source]
            values[row] = values[source] * (1.0 + rng.uniform(-1e-3, 1e-3, ACTIVE)).astype(np.float32)
    indptr = np.arange(0, rows * ACTIVE + 1, ACTIVE)
    matrix = sp.csr_matrix((values.ravel(), indices.ravel(), indptr), shape=(rows, WIDTH))
    matrix.sum_duplicates()
    return l2_normalise(matrix).astype(np.float32).tocsr(), group, len(copies)


def loop_near_duplicates(block, threshold: float, chunk: int = 2048) -> np.ndarray:
    """The implementation `deduplicate` had before sklearn (kept here only to measure against)."""
    dropped = np.zeros(block.shape[0], dtype=bool)
    for lo in range(0, block.shape[0], chunk):
        sims = (block[lo:lo + chunk] @ block.T).toarray()
        for offset in range(sims.shape[0]):
            i = lo + offset
            if dropped[i]:
                continue
            dropped[np.flatnonzero(sims[offset, i + 1:] >= threshold) + i + 1] = True
    return dropped


def timed(search, unit, group, threshold) -> tuple[float, np.ndarray]:
    start = time.process_time()
    dropped = np.zeros(unit.shape[0], dtype=bool)
    for cluster in np.unique(group):
        rows = np.flatnonzero(group == cluster)
        dropped[rows[search(unit[rows], threshold)]] = True
    return time.process_time() - start, dropped


def markdown(rows, clusters, planted, loop_s, sklearn_s, n_dropped, threshold) -> str:
    return "\n".join([
        "## Near-duplicate search (`deduplicate`)",
        "",
        f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dedup.py --rows {rows} --clusters {clusters}` - {rows:,} "
        f"synthetic SAE rows (width {WIDTH}, {ACTIVE} active), {clusters} clusters, {planted:,} planted near-copies, "
        f"cosine >= {threshold}; single-threaded, CPU seconds of one run each. Machine: {machine()}; Python "
        f"{platform.python_version()}.",
        "",
        "| Near-duplicate search | CPU seconds | Rows dropped |",
        "|---|---:|---:|",
        f"| Python loop over each cluster's similarity matrix (before) | {loop_s:.1f} | {n_dropped:,} |",
        f"| `sklearn.neighbors.NearestNeighbors` radius graph on unit rows (now) | {sklearn_s:.1f} | {n_dropped:,} |",
        "",
        "Both drop exactly the same rows. Both are brute force (every pair inside a cluster is scored); the radius",
        "graph keeps only the pairs within the threshold, so the greedy keep-the-first pass walks just the rows",
        "that have a later neighbour instead of every row of the similarity matrix.",
        "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--threshold", type=float, default=0.98)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for the single-threaded figures the docs quote", file=sys.stderr)
    unit, group, planted = synthetic_rows(args.rows, args.clusters)
    loop_s, loop_dropped = timed(loop_near_duplicates, unit, group, args.threshold)
    sklearn_s, sklearn_dropped = timed(near_duplicates, unit, group, args.threshold)
    if not np.array_equal(loop_dropped, sklearn_dropped):
        print(f"MISMATCH: {int((loop_dropped != sklearn_dropped).sum())} rows differ", file=sys.stderr)
        return 1
    text = markdown(args.rows, args.clusters, planted, loop_s, sklearn_s, int(sklearn_dropped.sum()), args.threshold)
    print(text)
    if not args.no_write:
        write_section("dedup", text, after="sampler")
    return 0


if __name__ == "__main__":
    sys.exit(main())
