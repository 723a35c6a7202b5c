"""Canonical math data: every benchmark in one schema, from a local data dir or the Hub.

Schema (every row): ``id`` (str), ``problem`` (str), ``answer`` (str, the gold final answer),
``solution`` (str or None), ``source`` (str), ``subject`` (str or None), ``level`` (float or None).
Local files win when ``SAERL_DATA_DIR`` (or ``data_dir=``) has them; otherwise the Hub dataset is used.
The named benchmarks (files, Hub repos, converters) are in :mod:`saerl_hf.data_registry`; the row layer
(Arrow map, strict reader) in :mod:`saerl_hf.data_rows`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from saerl_hf.data_registry import (  # noqa: F401  (the registry and the answer normalisation are part of this API)
    BENCHMARKS,
    MAWPS_PARTS,
    Benchmark,
    format_number,
    gsm8k_answer,
    last_boxed,
    list_benchmarks,
)
from saerl_hf.data_rows import (  # noqa: F401  (DataError, read_jsonl and the schema are part of this API)
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    CanonicalMap,
    DataError,
    canonical_part,
    finish,
    has_nulls,
    read_arrow,
    read_jsonl,
    strict_dataset,
)

logger = logging.getLogger(__name__)

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")


def default_data_dir() -> Path | None:
    """``SAERL_DATA_DIR`` if set, else ``../shared/data`` next to the working directory, else None."""
    env = os.environ.get("SAERL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), *Path.cwd().parents):
        candidate = base.parent / "shared" / "data"
        if (candidate / "SOURCES.md").is_file() or (base / "shared" / "data" / "SOURCES.md").is_file():
            return candidate if candidate.is_dir() else base / "shared" / "data"
    return None


def load_math_dataset(
    name: str,
    split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    columns: dict[str, str] | None = None,
    limit: int | None = None,
    revision: str | None = None,
):
    """Load a math set in the canonical schema as a ``datasets.Dataset``.

    ``name`` is a benchmark name (see :func:`list_benchmarks`), a local JSONL/JSON/parquet file, or a Hub id.
    ``columns`` maps canonical names to the source's names for files and Hub ids
    (e.g. ``{"problem": "question", "answer": "final_answer"}``).
    """
    if name in BENCHMARKS:
        dataset = _load_benchmark(BENCHMARKS[name], split, data_dir, revision)
    elif Path(name).expanduser().exists():
        dataset = _load_file(Path(name).expanduser(), columns or {})
    elif "/" in name and not name.startswith((".", "/", "~")):
        dataset = _load_hub(name, split or "train", columns or {}, revision)
    elif name.startswith((".", "/", "~")) or name.endswith((".jsonl", ".json", ".parquet")):
        raise DataError(f"Data file '{name}' does not exist. Fix: check the path.")
    else:
        raise DataError(
            f"Unknown dataset '{name}'. Valid names: {', '.join(list_benchmarks())}; "
            f"or pass a local .jsonl/.json/.parquet path or a Hub id ('org/name')."
        )
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset


def _load_benchmark(bench: Benchmark, split: str | None, data_dir, revision: str | None):
    splits = list(bench.local)
    split = split or ("test" if "test" in splits else splits[0])
    if split not in bench.local:
        raise DataError(f"'{bench.name}' has no split '{split}'. Available: {', '.join(splits)}.")
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if data_dir is not None and not base.is_dir():
        raise DataError(
            f"Data dir '{base}' does not exist. Fix: point --data-dir / SAERL_DATA_DIR at the folder that holds "
            f"gsm8k/, math_hendrycks/, ... (the shared/data folder)."
        )
    files = [base / rel for rel in bench.local[split]] if base is not None else []
    if files and all(f.is_file() for f in files):
        return _load_local_benchmark(bench, split, files)
    if bench.hub is None:
        raise DataError(
            f"'{bench.name}' needs the local files {', '.join(bench.local[split])} under the data dir "
            f"({base}). Fix: set SAERL_DATA_DIR / --data-dir to the shared/data folder."
        )
    repo, config = bench.hub
    hub_split = (bench.hub_splits or {}).get(split, split)
    try:
        from datasets import load_dataset

        raw = load_dataset(repo, config, split=hub_split, revision=revision)
    except Exception as err:  # noqa: BLE001 - any Hub failure gets the same actionable message
        raise DataError(
            f"'{bench.name}' is not in the local data dir ({base}) and loading {repo} from the Hub failed: {err}. "
            f"Fix: set SAERL_DATA_DIR / --data-dir to a folder with {', '.join(bench.local[split])}, or go online."
        ) from err
    where = f"{repo}:{hub_split}"
    return finish([canonical_part(raw, CanonicalMap(bench.name, bench.converter, where, split,
                                                    skip_unanswered=True))], where)


def _load_local_benchmark(bench: Benchmark, split: str, files: list[Path]):
    """Each file through Arrow (``load_dataset`` + map), or the strict reader if Arrow cannot parse it."""
    parts, offset = [], 0
    for path in files:
        subject = path.stem if bench.subjects_from_file else None
        raw = read_arrow([path])
        if raw is None:
            part = strict_dataset(read_jsonl(path), bench.name, bench.converter, str(path), split, subject,
                                  skip_unanswered=True)
        else:
            part = canonical_part(raw, CanonicalMap(bench.name, bench.converter, str(path), split, subject, offset,
                                                    skip_unanswered=True))
        parts.append(part)
        offset += len(part)
    return finish(parts, ", ".join(str(f) for f in files))


def _generic_converter(columns: dict[str, str]):
    def convert(record: dict) -> dict:
        row = {}
        for canonical in CANONICAL_COLUMNS:
            source_name = columns.get(canonical, canonical)
            if source_name in record:
                row[canonical] = record[source_name]
            elif canonical in REQUIRED_COLUMNS:
                raise KeyError(source_name)
        if row.get("answer") is not None and not isinstance(row["answer"], str):
            try:
                row["answer"] = format_number(row["answer"])
            except (TypeError, ValueError) as err:
                raise type(err)(f"field 'answer': {err}") from None
        if row.get("answer") is None and row.get("solution"):
            row["answer"] = last_boxed(row["solution"])
        return row

    return convert


def _load_file(path: Path, columns: dict[str, str]):
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a data file. Fix: pass a .jsonl/.json/.parquet file; for a "
                        f"`save_to_disk` dir use `datasets.load_from_disk` (or `saerl-hf featurize --dataset <dir>`).")
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{path.suffix or '(none)'}'. Fix: convert it to one of "
                        f"{', '.join(FILE_SUFFIXES)} (JSON Lines: one JSON object per line).")
    converter, where = _generic_converter(columns), str(path)
    # A .json array is parsed whole by any reader (datasets too), so it takes the strict reader's messages.
    raw = read_arrow([path]) if path.suffix.lower() != ".json" else None
    if raw is not None and path.suffix.lower() != ".parquet" and has_nulls(raw, [columns.get(c, c) for c in
                                                                                  REQUIRED_COLUMNS]):
        raw = None
    if raw is not None:
        return finish([canonical_part(raw, CanonicalMap(path.stem, converter, where, "file",
                                                        file_columns=columns))], where)
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            records = pq.read_table(path).to_pylist()
        except Exception as err:  # noqa: BLE001
            raise DataError(f"{path}: not a readable parquet file ({err}). Fix: rewrite the file.") from err
    elif path.suffix == ".json":
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-8 (byte {err.start}). Fix: re-encode the file as UTF-8.") from err
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}; a truncated "
                            f"file ends like this). Fix: repair or regenerate the file; nothing was loaded.") from err
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of objects, got {type(records).__name__}. Fix: wrap the "
                            f"rows in [...], or write them as JSON Lines (.jsonl).")
    else:
        records = read_jsonl(path)
    return strict_dataset(records, path.stem, converter, where, "file", file_columns=columns)


def _load_hub(repo: str, split: str, columns: dict[str, str], revision: str | None):
    from datasets import load_dataset

    try:
        raw = load_dataset(repo, split=split, revision=revision)
    except Exception as err:  # noqa: BLE001
        raise DataError(f"Could not load '{repo}' (split {split}, revision {revision}) from the Hub: {err}") from err
    where = f"{repo}:{split}"
    return finish([canonical_part(raw, CanonicalMap(repo.split("/")[-1], _generic_converter(columns), where,
                                                    split))], where)


def load_mixture(names: Iterable[str], split: str | None = None, data_dir=None, limit_per_source: int | None = None,
                 seed: int = 0):
    """Concatenate several sets (canonical schema), optionally a seeded random slice of each."""
    from datasets import concatenate_datasets

    parts = []
    for name in names:
        bench = BENCHMARKS.get(name)
        name_split = split if bench is None or split in bench.local else None
        ds = load_math_dataset(name, split=name_split, data_dir=data_dir)
        if limit_per_source is not None and len(ds) > limit_per_source:
            ds = ds.shuffle(seed=seed).select(range(limit_per_source))
        parts.append(ds)
    return concatenate_datasets(parts)
