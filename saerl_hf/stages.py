"""Resumable pipeline stages: each stage's output is a directory that appears atomically when complete.

A killed run (even ``kill -9``) leaves at most one half-written ``*.tmp`` directory, which the rerun
discards; finished stages are reloaded instead of recomputed. Deterministic stages therefore give the
identical dataset on resume (compare :func:`content_hash`).

Under ``accelerate launch`` / ``torchrun`` (see :mod:`saerl_hf.distributed`) rank 0 builds each stage while the
other ranks wait, then every rank loads it; :func:`chunked_map` deals its chunks out over the ranks and rank 0
assembles them. Every rank calls the same stages in the same order, so the barriers pair up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from saerl_hf.distributed import barrier, is_main, owns, rank, world_size

logger = logging.getLogger(__name__)

DONE_MARKER = "_SAERL_STAGE_DONE.json"


def _finish(tmp: Path, final: Path, info: dict) -> None:
    (tmp / DONE_MARKER).write_text(json.dumps(info, indent=2, sort_keys=True))
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)


def is_done(path: Path) -> bool:
    return (Path(path) / DONE_MARKER).is_file()


def stage_info(path: Path) -> dict:
    return json.loads((Path(path) / DONE_MARKER).read_text())


def _run_once(path: Path, name: str, timings: dict | None, make: Callable[[Path], dict]) -> dict:
    """``make(tmp)`` fills ``path`` atomically unless done (on rank 0 only under a launcher); its done info."""
    if is_main() and not is_done(path):
        start = time.perf_counter()
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        info = {"stage": name, **make(tmp)}
        info["seconds"] = round(time.perf_counter() - start, 2)
        _finish(tmp, path, info)
        if timings is not None:
            timings[name] = info["seconds"]
    else:
        logger.info("stage %s: %s %s", name, "reusing" if is_main() else f"rank {rank()} waits for", path)
    barrier()
    info = stage_info(path)
    if timings is not None:
        timings.setdefault(name, info.get("seconds", 0.0))
    return info


def run_dataset_stage(path: Path, build: Callable[[], object], name: str, timings: dict | None = None):
    """Load the dataset saved at ``path`` if that stage finished, else ``build()`` it and save it atomically."""
    from datasets import load_from_disk

    def make(tmp: Path) -> dict:
        dataset = build()
        dataset.save_to_disk(str(tmp))
        return {"rows": len(dataset)}

    _run_once(Path(path), name, timings, make)
    return load_from_disk(str(path))


def run_dir_stage(path: Path, build: Callable[[Path], dict | None], name: str, timings: dict | None = None) -> dict:
    """Like :func:`run_dataset_stage` for stages that write files: ``build(tmp_dir)`` fills a directory."""

    def make(tmp: Path) -> dict:
        tmp.mkdir(parents=True)
        return {"result": build(tmp) or {}}

    return _run_once(Path(path), name, timings, make).get("result") or {}


def chunked_map(dataset, path: Path, fn: Callable, chunk_size: int, name: str, desc: str = ""):
    """Apply ``fn(chunk) -> dataset`` to fixed-size chunks, each saved atomically, then concatenate.

    A kill loses at most the chunk in flight: the rerun skips every finished chunk. Under a launcher each rank
    computes its share of the chunks (chunk i on rank i % world size); rank 0 gets the concatenation, the other
    ranks None.
    """
    from datasets import concatenate_datasets, load_from_disk
    from tqdm.auto import tqdm

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, len(dataset), chunk_size))
    mine = [start for i, start in enumerate(starts) if owns(i)]
    for start in tqdm(mine, desc=desc or name, unit="chunk"):
        chunk_dir = path / f"chunk_{start:09d}"
        if not is_done(chunk_dir):
            started = time.perf_counter()
            out = fn(dataset.select(range(start, min(start + chunk_size, len(dataset)))))
            tmp = chunk_dir.with_name(chunk_dir.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            out.save_to_disk(str(tmp))
            _finish(tmp, chunk_dir, {"stage": f"{name}/{start}", "rows": len(out), "rank": rank(),
                                     "seconds": round(time.perf_counter() - started, 2)})  # what a chunk costs
    if world_size() > 1:
        barrier()
        if not is_main():
            return None
    parts = [load_from_disk(str(path / f"chunk_{start:09d}")) for start in starts]
    if not parts:
        return dataset
    merged = concatenate_datasets(parts)
    merged.info.description = parts[0].info.description
    return merged


def content_hash(dataset) -> str:
    """SHA-256 over the dataset's rows (column names, types and values), independent of file layout."""
    import pyarrow as pa

    table = dataset.with_format("arrow")[:]
    digest = hashlib.sha256()
    digest.update(json.dumps(table.schema.names).encode())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.combine_chunks().to_batches(max_chunksize=1 << 16):
            writer.write_batch(batch)
    digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()
