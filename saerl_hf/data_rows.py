"""Raw records -> canonical rows, two ways: the Arrow path (``load_dataset`` + a batched ``Dataset.map``, checks
vectorised, cached by fingerprint; what every well-formed file and every Hub dataset takes) and the strict reader
(row by row in Python, for files Arrow cannot parse: its errors name the file, line, row and field).

Both convert a record with :func:`convert_record`, so they give the same rows.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from saerl_hf.errors import SaerlError

logger = logging.getLogger("saerl_hf.data")

CANONICAL_COLUMNS = ("id", "problem", "answer", "solution", "source", "subject", "level")
REQUIRED_COLUMNS = ("problem", "answer")
MARKERS = ("_row", "_skip", "_bad_level")  # per-row outcome of the Arrow map, read back vectorised


class DataError(SaerlError, ValueError):
    """Bad or missing data; the message names the file/row/field and the fix."""


def canonical_features(markers: bool = False):
    from datasets import Features, Value

    features = {name: Value("string") for name in CANONICAL_COLUMNS}
    features["level"] = Value("float64")
    if markers:
        features.update(_row=Value("int64"), _skip=Value("bool"), _bad_level=Value("bool"))
    return Features(features)


# ----------------------------------------------------------------------------- one record


def convert_record(record, i: int, bench_name: str, converter, where: str, split: str, subject: str | None = None,
                   id_offset: int = 0, skip_unanswered: bool = False, file_columns: dict | None = None):
    """(canonical row, outcome) for raw record ``i``; outcome is None, ``"skip"`` (empty gold answer, when
    ``skip_unanswered``) or ``"bad_level"`` (a NaN/inf level, loaded as None). ``file_columns`` (user files)
    lets the record's own ``id`` / ``source`` fields win."""
    if not isinstance(record, dict):
        raise DataError(f"{where}, row {i}: expected an object with named fields, got {type(record).__name__} "
                        f"{record!r}"[:300] + ". Fix: make every row an object like "
                        '{"problem": ..., "answer": ...}; nothing was loaded.')
    try:
        row = converter(record)
    except KeyError as err:
        raise DataError(
            f"{where}, row {i}: missing required field {err} for '{bench_name}'. "
            f"Present fields: {sorted(record)}. Fix the file or pass a column mapping."
        ) from err
    except (ValueError, TypeError) as err:
        raise DataError(f"{where}, row {i}: {err}. Fix: repair or drop that row (nothing was loaded).") from err
    rid = record.get("unique_id") or record.get("id") or record.get("ID")
    row_id = f"{bench_name}/{rid}" if rid is not None else f"{bench_name}/{split}/{id_offset + i}"
    if skip_unanswered and not str(row.get("answer") or "").strip():
        return {"id": row_id}, "skip"
    finished = _finish_row(row, row_id, bench_name, subject, where, i)
    if file_columns is not None:
        own_id = record.get(file_columns.get("id", "id"))
        if own_id is not None:
            finished["id"] = str(own_id)
        own_source = record.get(file_columns.get("source", "source"))
        if own_source is not None:
            finished["source"] = str(own_source)
    if finished["level"] is not None and not math.isfinite(finished["level"]):
        finished["level"] = None
        return finished, "bad_level"
    return finished, None


def _finish_row(row: dict, row_id: str, source: str, subject: str | None, where: str, i: int) -> dict:
    out = {
        "id": str(row_id),
        "problem": row.get("problem"),
        "answer": row.get("answer"),
        "solution": row.get("solution"),
        "source": row.get("source") or source,
        "subject": row.get("subject") if row.get("subject") is not None else subject,
        "level": row.get("level"),
    }
    for name in REQUIRED_COLUMNS:
        value = out[name]
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}, row {i}: field '{name}' is empty or not a string ({value!r})"[:300]
                            + f". Fix: give every row a non-empty text '{name}', or drop that row; nothing was loaded.")
    if out["level"] is not None:
        try:
            out["level"] = float(out["level"])
        except (TypeError, ValueError):
            raise DataError(
                f"{where}, row {i}: field 'level' holds {out['level']!r}, which is not a number"[:300]
                + ". Fix: use numbers (or null) for 'level', or map another column with columns={'level': ...}."
            ) from None
    for name in ("solution", "subject"):
        if out[name] is not None:
            out[name] = str(out[name])
    return out


def _report(where: str, skipped: list[str], bad_levels: list[str]) -> None:
    if skipped:
        logger.warning("%s: skipped %d row(s) with an empty gold answer: %s", where, len(skipped), ", ".join(skipped))
    if bad_levels:
        logger.warning("%s: %d row(s) have a NaN/inf 'level', loaded as unlabelled (None): %s", where,
                       len(bad_levels), ", ".join(bad_levels[:20]) + (" ..." if len(bad_levels) > 20 else ""))


# ----------------------------------------------------------------------------- Arrow path


def read_arrow(paths: list[Path]):
    """The files as one memory-mapped ``Dataset`` via ``load_dataset``, or None when Arrow cannot read them
    (malformed or mixed-type JSON, not UTF-8, empty: the strict reader then says exactly what is wrong)."""
    from datasets import load_dataset

    kind = "parquet" if paths[0].suffix.lower() == ".parquet" else "json"
    try:
        raw = load_dataset(kind, data_files=[str(p) for p in paths], split="train")
        raw.data.table.validate(full=True)  # Arrow's JSON reader takes bytes as they are: check UTF-8 here
    except Exception as err:  # noqa: BLE001 - any parse failure: the strict reader names the line and the fix
        logger.debug("%s: Arrow could not read it (%s); reading row by row", paths[0], err)
        return None
    return raw if len(raw) else None


def has_nulls(raw, names) -> bool:
    """Whether any of these columns has a null: in JSON a null may be an absent key, which Arrow cannot tell
    apart, so such files go to the strict reader for its 'missing required field' message."""
    table = raw.data.table
    return any(table.column(name).null_count for name in names if name in table.column_names)


class CanonicalMap:
    """Picklable batched ``Dataset.map`` function: raw columns -> canonical columns + outcome markers."""

    def __init__(self, bench_name: str, converter, where: str, split: str, subject: str | None = None,
                 id_offset: int = 0, skip_unanswered: bool = False, file_columns: dict | None = None):
        self.bench_name, self.converter, self.where, self.split = bench_name, converter, where, split
        self.subject, self.id_offset, self.skip_unanswered = subject, id_offset, skip_unanswered
        self.file_columns = file_columns

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        out: dict[str, list] = {name: [] for name in CANONICAL_COLUMNS + MARKERS}
        names = list(batch)
        for j, i in enumerate(indices):
            record = {name: batch[name][j] for name in names}
            row, outcome = convert_record(record, i, self.bench_name, self.converter, self.where, self.split,
                                          self.subject, self.id_offset, self.skip_unanswered, self.file_columns)
            for name in CANONICAL_COLUMNS:
                out[name].append(row.get(name))
            out["_row"].append(i)
            out["_skip"].append(outcome == "skip")
            out["_bad_level"].append(outcome == "bad_level")
        return out


def canonical_part(raw, fn: CanonicalMap):
    """``raw`` mapped to the canonical schema; skipped rows dropped and, like NaN levels, reported."""
    import numpy as np

    mapped = raw.map(fn, batched=True, batch_size=1000, with_indices=True, remove_columns=raw.column_names,
                     features=canonical_features(markers=True), desc=f"canonical rows ({fn.bench_name})")
    table = mapped.select_columns(["id", *MARKERS]).with_format("arrow")[:]
    skip = table["_skip"].to_numpy(zero_copy_only=False)
    bad = table["_bad_level"].to_numpy(zero_copy_only=False)
    rows, ids = table["_row"].to_numpy(), table["id"]
    _report(fn.where, [f"row {rows[k]} ({ids[k]})" for k in np.flatnonzero(skip)],
            [f"row {rows[k]}" for k in np.flatnonzero(bad)])
    if skip.any():
        mapped = mapped.select(np.flatnonzero(~skip)).flatten_indices()
    return mapped.remove_columns(list(MARKERS))


def finish(parts: list, where: str):
    """Concatenate the parts; refuse an empty result and duplicate ids (ids key resumption and counts)."""
    import pyarrow.compute as pc
    from datasets import concatenate_datasets

    ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    if len(ds) == 0:
        raise DataError(f"{where}: no rows to load (the source is empty). Fix: point at a file or split with at "
                        f"least one row.")
    ids = ds.select_columns(["id"]).with_format("arrow")[:]["id"]
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated):
        dup = repeated[0].as_py()
        first, second = pc.indices_nonzero(pc.equal(ids, dup)).to_pylist()[:2]
        raise DataError(f"{where}: duplicate id {dup!r} in rows {first} and {second}. Fix: make the ids unique, or "
                        f"drop the id field (then ids are generated from the row number).")
    return ds


# ----------------------------------------------------------------------------- strict reader


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON Lines strictly: a malformed line raises with the file and line number."""
    path = Path(path)
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start}). Fix: re-encode the file as UTF-8.") from err
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path}, line {lineno}: invalid JSON ({err.msg} at column {err.colno}). "
                f"Fix or remove that line; nothing was loaded."
            ) from err
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {lineno}: expected a JSON object, got {type(record).__name__}. Fix: write "
                            f'one object per line, like {{"problem": ..., "answer": ...}}; nothing was loaded.')
        rows.append(record)
    return rows


def strict_dataset(records, bench_name: str, converter, where: str, split: str, subject: str | None = None,
                   skip_unanswered: bool = False, file_columns: dict | None = None):
    """Records converted one by one in Python (files Arrow cannot read), then checked like the Arrow path."""
    from datasets import Dataset

    rows, skipped, bad_levels = [], [], []
    for i, record in enumerate(records):
        row, outcome = convert_record(record, i, bench_name, converter, where, split, subject, 0, skip_unanswered,
                                      file_columns)
        if outcome == "skip":
            skipped.append(f"row {i} ({row['id']})")
            continue
        if outcome == "bad_level":
            bad_levels.append(f"row {i}")
        rows.append(row)
    _report(where, skipped, bad_levels)
    if not rows:
        raise DataError(f"{where}: no rows to load (the source is empty). Fix: point at a file or split with at "
                        f"least one row.")
    return finish([Dataset.from_list(rows, features=canonical_features())], where)
