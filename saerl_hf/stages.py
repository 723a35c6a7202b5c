"""Resumable pipeline stages: each stage's output is a directory that appears atomically when complete.

A killed run (even ``kill -9``) leaves at most one half-written ``*.tmp`` directory, which the rerun
discards; finished stages are reloaded instead of recomputed. Deterministic stages therefore give the
identical dataset on resume (compare :func:`content_hash`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

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


def run_dataset_stage(path: Path, build: Callable[[], object], name: str, timings: dict | None = None):
    """Load the dataset saved at ``path`` if that stage finished, else ``build()`` it and save it atomically."""
    from datasets import load_from_disk

    path = Path(path)
    if is_done(path):
        logger.info("stage %s: reusing %s", name, path)
        if timings is not None:
            timings.setdefault(name, stage_info(path).get("seconds", 0.0))
        return load_from_disk(str(path))
    start = time.perf_counter()
    dataset = build()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    seconds = round(time.perf_counter() - start, 2)
    _finish(tmp, path, {"stage": name, "seconds": seconds, "rows": len(dataset)})
    if timings is not None:
        timings[name] = seconds
    return load_from_disk(str(path))


def run_dir_stage(path: Path, build: Callable[[Path], dict | None], name: str, timings: dict | None = None) -> dict:
    """Like :func:`run_dataset_stage` for stages that write files: ``build(tmp_dir)`` fills a directory."""
    path = Path(path)
    if is_done(path):
        info = stage_info(path)
        if timings is not None:
            timings.setdefault(name, info.get("seconds", 0.0))
        return info.get("result") or {}
    start = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = build(tmp) or {}
    seconds = round(time.perf_counter() - start, 2)
    _finish(tmp, path, {"stage": name, "seconds": seconds, "result": result})
    if timings is not None:
        timings[name] = seconds
    return result


def chunked_map(dataset, path: Path, fn: Callable, chunk_size: int, name: str, desc: str = ""):
    """Apply ``fn(chunk) -> dataset`` to fixed-size chunks, each saved atomically, then concatenate.

    A kill loses at most the chunk in flight: the rerun skips every finished chunk.
    """
    from datasets import concatenate_datasets, load_from_disk
    from tqdm.auto import tqdm

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    parts = []
    starts = range(0, len(dataset), chunk_size)
    for start in tqdm(starts, desc=desc or name, unit="chunk"):
        chunk_dir = path / f"chunk_{start:09d}"
        if not is_done(chunk_dir):
            out = fn(dataset.select(range(start, min(start + chunk_size, len(dataset)))))
            tmp = chunk_dir.with_name(chunk_dir.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            out.save_to_disk(str(tmp))
            _finish(tmp, chunk_dir, {"stage": f"{name}/{start}", "rows": len(out)})
        parts.append(load_from_disk(str(chunk_dir)))
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
