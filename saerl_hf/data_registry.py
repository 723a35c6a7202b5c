"""The named benchmarks: where each lives (files under the data dir, a Hub repo) and how its records become rows.

``BENCHMARKS`` maps a name to a :class:`Benchmark`: its local JSONL files per split, its Hub repo and config,
and a converter from one raw record to the canonical schema of :mod:`saerl_hf.data` (the loaders there add
``id`` and ``source``). The answer normalisation the converters share (``last_boxed``, ``format_number``,
``gsm8k_answer``) is here too; :mod:`saerl_hf.data` re-exports every public name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

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


def list_benchmarks() -> list[str]:
    return sorted(BENCHMARKS)
