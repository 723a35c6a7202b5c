"""Canonical math data: every benchmark in one schema, from a local data dir or the Hub.

Schema (every row): ``id`` (str), ``problem`` (str), ``answer`` (str, the gold final answer),
``solution`` (str or None), ``source`` (str), ``subject`` (str or None), ``level`` (float or None).
Local files win when ``SAERL_DATA_DIR`` (or ``data_dir=``) has them; otherwise the Hub dataset is used.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

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


# ----------------------------------------------------------------------------- answer normalisation


_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed\s+([^\s$]+)")


def last_boxed(text: str | None) -> str | None:
    """Content of the last non-empty ``\\boxed{...}``/``\\fbox{...}`` (braces balanced; ``\\boxed 5`` too).

    Bounded: degenerate model outputs repeat ``\\boxed{`` thousands of times, so only the last 20 are tried.
    """
    if not text:
        return None
    starts = [m.end() for m in _BOXED_START.finditer(text)]
    for start in reversed(starts[-20:]):
        depth = 1
        for pos in range(start, len(text)):
            char = text[pos]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    content = text[start:pos].strip()
                    if content:
                        return content
                    break
    bare = list(_BOXED_BARE.finditer(text))
    return bare[-1].group(1) if bare else None


def format_number(value) -> str:
    """``14.0`` -> ``"14"``, ``0.5`` -> ``"0.5"``, strings pass through stripped."""
    if isinstance(value, bool):
        raise TypeError("boolean is not a number")
    if isinstance(value, (list, tuple, dict, set)) or value is None:
        raise TypeError(f"expected a string or a number, got {type(value).__name__} {value!r}"[:200])
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if isinstance(value, (int, float)):
        if float(value).is_integer():
            return str(int(value))
        return repr(float(value)).rstrip("0").rstrip(".") if "e" not in repr(float(value)) else repr(float(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return format_number(number) if re.fullmatch(r"-?\d+(\.\d+)?", text) else text


def gsm8k_answer(answer_text: str) -> str:
    """GSM8K gold: the text after ``####``, thousands separators removed."""
    if "####" not in answer_text:
        raise ValueError("no '####' marker")
    return answer_text.split("####")[-1].strip().replace(",", "")


def _level_from_math(level) -> float | None:
    if level is None:
        return None
    if isinstance(level, (int, float)):
        return float(level)
    match = re.search(r"(\d+(?:\.\d+)?)", str(level))
    return float(match.group(1)) if match else None


# ----------------------------------------------------------------------------- per-source converters
# Each converter maps one raw record to the canonical schema (without `id`/`source`, added by the loader).


def _conv_gsm8k(r: dict) -> dict:
    return {"problem": r["question"], "answer": gsm8k_answer(r["answer"]), "solution": r["answer"]}


def _conv_math(r: dict) -> dict:
    answer = r.get("answer") or last_boxed(r.get("solution"))
    if answer is None:
        if _BOXED_START.search(r.get("solution") or ""):
            answer = ""  # an empty \boxed{}: skipped and reported by the loader
        else:
            raise ValueError("no \\boxed{} answer in 'solution'")
    return {
        "problem": r["problem"],
        "answer": str(answer),
        "solution": r.get("solution"),
        "subject": r.get("subject") or r.get("type"),
        "level": _level_from_math(r.get("level")),
    }


def _conv_omni(r: dict) -> dict:
    domain = r.get("domain")
    if isinstance(domain, list):
        domain = domain[0] if domain else None
    return {
        "problem": r["problem"],
        "answer": str(r["answer"]),
        "solution": r.get("solution"),
        "subject": domain,
        "level": float(r["difficulty"]) if r.get("difficulty") is not None else None,
    }


def _conv_competition(r: dict) -> dict:
    answer = r.get("answer")
    if answer is None:
        answer = last_boxed(r.get("solution"))
    if answer is None:
        raise ValueError("no 'answer' field and no \\boxed{} answer in 'solution'")
    return {"problem": r.get("problem") or r["question"], "answer": format_number(answer), "solution": r.get("solution")}


def _conv_minerva(r: dict) -> dict:
    answer = last_boxed(r.get("solution"))
    if answer is None:
        raise ValueError("no \\boxed{} answer in 'solution'")
    return {"problem": r["problem"], "answer": answer, "solution": r["solution"], "subject": r.get("type")}


def _conv_olympiad(r: dict) -> dict:
    final = r["final_answer"]
    answer = final[0] if isinstance(final, list) else final
    answer = str(answer).strip()
    if answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    solution = r.get("solution")
    if isinstance(solution, list):
        solution = "\n\n".join(solution)
    return {"problem": r["question"], "answer": answer, "solution": solution, "subject": r.get("subfield")}


def _conv_mawps(r: dict) -> dict:
    return {"problem": r["input"].strip(), "answer": format_number(r["target"])}


def _conv_svamp(r: dict) -> dict:
    body, question = r["Body"].strip(), r["Question"].strip()
    sep = "" if body.endswith((".", "?", "!")) else ","
    return {"problem": f"{body}{sep} {question}", "answer": format_number(r["Answer"]), "subject": r.get("Type")}


def _conv_asdiv(r: dict) -> dict:
    answer = re.sub(r"\s*\(.*\)\s*$", "", str(r["answer"])).strip()
    answer = format_number(answer.replace(",", "")) if re.fullmatch(r"-?[\d,]+(\.\d+)?", answer) else answer
    return {
        "problem": f"{r['body'].strip()} {r['question'].strip()}",
        "answer": answer,
        "subject": r.get("solution_type"),
    }


@dataclass(frozen=True)
class Benchmark:
    """Where a named set lives locally and on the Hub, and how to convert it."""

    name: str
    converter: Callable[[dict], dict]
    local: dict[str, tuple[str, ...]]  # split -> relative JSONL files under the data dir
    hub: tuple[str, str | None] | None  # (repo id, config) on the Hub
    hub_splits: dict[str, str] | None = None
    license: str = ""
    subjects_from_file: bool = False  # MAWPS: the subset name is the subject


MAWPS_PARTS = ("singleop", "singleeq", "addsub", "multiarith")

BENCHMARKS: dict[str, Benchmark] = {
    "gsm8k": Benchmark("gsm8k", _conv_gsm8k, {"train": ("gsm8k/train.jsonl",), "test": ("gsm8k/test.jsonl",)},
                       ("openai/gsm8k", "main"), license="MIT"),
    "math": Benchmark("math", _conv_math,
                      {"train": ("math_hendrycks/train.jsonl",), "test": ("math_hendrycks/test.jsonl",)},
                      ("DigitalLearningGmbH/MATH-lighteval", "default"), license="MIT"),
    "math500": Benchmark("math500", _conv_math, {"test": ("math500/test.jsonl",)},
                         ("HuggingFaceH4/MATH-500", None), license="MIT"),
    "omni_math": Benchmark("omni_math", _conv_omni, {"test": ("omni_math_rule/test.jsonl",)},
                           ("KbsdJames/Omni-MATH", None), license="Apache-2.0"),
    "aime24": Benchmark("aime24", _conv_competition, {"test": ("aime24/test.jsonl",)},
                        ("HuggingFaceH4/aime_2024", None), hub_splits={"test": "train"}),
    "amc23": Benchmark("amc23", _conv_competition, {"test": ("amc23/test.jsonl",)}, ("math-ai/amc23", None)),
    "minerva_math": Benchmark("minerva_math", _conv_minerva, {"test": ("minerva_math/test.jsonl",)},
                              ("math-ai/minervamath", None)),
    "olympiadbench": Benchmark("olympiadbench", _conv_olympiad, {"test": ("olympiadbench/test.jsonl",)},
                               ("math-ai/olympiadbench", None)),
    "mawps": Benchmark("mawps", _conv_mawps, {"test": tuple(f"mawps/{p}.jsonl" for p in MAWPS_PARTS)},
                       ("MU-NLPC/Calc-mawps", None), subjects_from_file=True),
    "svamp": Benchmark("svamp", _conv_svamp, {"test": ("svamp/test.jsonl",)}, ("ChilleD/SVAMP", None), license="MIT"),
    "asdiv": Benchmark("asdiv", _conv_asdiv, {"test": ("asdiv/test.jsonl",)}, ("EleutherAI/asdiv", None),
                       license="CC BY-NC 4.0"),
}
for _part in MAWPS_PARTS:
    BENCHMARKS[f"mawps_{_part}"] = Benchmark(
        f"mawps_{_part}", _conv_mawps, {"test": (f"mawps/{_part}.jsonl",)}, None, subjects_from_file=True
    )


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


def list_benchmarks() -> list[str]:
    return sorted(BENCHMARKS)


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
