"""Benchmark runner: generate with the fixed prompt per family, score with math-verify, record.

``saerl-hf evaluate`` and :func:`evaluate_model` (for in-memory models, e.g. a held-out check inside the
GRPO loop) share one code path. Every setting, the seed and library versions go into ``results.json``
with the per-item outputs, which is rewritten after every batch so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from saerl_hf.evaluation_reports import RESULTS_FORMAT, results_markdown, write_figures
from saerl_hf.evaluation_scoring import _score_item, summarize
from saerl_hf.prompts import INSTRUCTIONS, family_of, render_prompt

logger = logging.getLogger(__name__)

#: Completion budget per family when --max-new-tokens is not given: word problems need a short
#: computation; competition problems need room to reason before the \\boxed{} answer.
DEFAULT_MAX_NEW_TOKENS = {"elementary": 256, "competition": 512}
# Settings that change what a completion is: a resumed run must match them exactly.
_GENERATION_KEYS = ("model", "n_samples", "temperature", "top_p", "seed", "dtype", "max_new_tokens")


# ----------------------------------------------------------------------------- provenance


def library_versions() -> dict:
    """Versions that change numbers (math-verify and its LaTeX parser above all; see anchors: open-r1 #194)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("saerl-hf", "torch", "transformers", "trl", "datasets", "evaluate", "math-verify",
                    "latex2sympy2_extended", "sympy", "antlr4-python3-runtime", "vllm"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_info() -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return info


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, payload: dict) -> None:
    """Atomic rewrite: a run killed mid-write leaves the previous complete file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    tmp.replace(path)


# ----------------------------------------------------------------------------- the runner


def _as_rows(name: str, data) -> list[dict]:
    """Rows of a benchmark given as a Dataset or list of dicts; checks the fields the runner needs."""
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, Mapping):
            raise ValueError(f"{name}: row {i} is a {type(row).__name__}, not a mapping with 'problem' and 'answer'. "
                             f"Fix: pass a Dataset or a list of dicts.")
        rows.append(dict(row))
    if not rows:
        raise ValueError(f"{name}: no rows to evaluate (an empty dataset would report 0% accuracy). Fix: pass rows, "
                         f"raise --limit, or drop '{name}' from the benchmarks.")
    first_seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        problem = row.get("problem")
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(f"{name}: row {i} has no 'problem' text; every row needs a non-empty 'problem' string. "
                             f"Fix: repair or drop that row.")
        row.setdefault("id", f"{name}/{i}")
        row["id"] = str(row["id"] if row["id"] is not None else f"{name}/{i}")
        row.setdefault("source", name)
        if row["id"] in first_seen:
            raise ValueError(f"{name}: duplicate 'id' {row['id']!r} in rows {first_seen[row['id']]} and {i}; ids key "
                             f"resumption. Fix: make the ids unique (or drop the 'id' field to number the rows).")
        first_seen[row["id"]] = i
    return rows


def _load_rows(name: str, split: str | None, limit: int | None) -> list[dict]:
    from saerl_hf.data import load_math_dataset

    return _as_rows(name, load_math_dataset(name, split=split, limit=limit))


def _resolve_max_new_tokens(max_new_tokens, family: str) -> int:
    if max_new_tokens is None:
        return DEFAULT_MAX_NEW_TOKENS[family]
    if isinstance(max_new_tokens, Mapping):
        return int(max_new_tokens.get(family, DEFAULT_MAX_NEW_TOKENS[family]))
    return int(max_new_tokens)


def _load_previous(path: Path, settings: dict, overwrite: bool) -> dict | None:
    if overwrite or not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it was left as it is. Fix: rerun with --overwrite true "
                         f"or another --output_dir.") from err
    old = previous.get("settings", {})
    changed = {k: (old.get(k), settings.get(k)) for k in _GENERATION_KEYS if old.get(k) != settings.get(k)}
    if changed:
        raise ValueError(
            f"{path} was written with different settings {changed} (old, new); resuming would mix them. "
            "Fix: pass --overwrite true, or use another --output_dir."
        )
    return previous


def evaluate_model(
    model,
    tokenizer=None,
    benchmarks: Iterable[str] | str | None = None,
    *,
    datasets: Mapping | None = None,
    limit: int | None = None,
    split: str | None = None,
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int | Mapping | None = None,
    batch_size: int = 32,
    seed: int = 0,
    output_dir: str | os.PathLike | None = None,
    timeout_s: float = 5.0,
    backend: str = "auto",
    dtype: str = "float32",
    device: str | None = None,
    trust_remote_code: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    make_plots: bool = True,
) -> dict:
    """Generate and score; returns the results dict (also written to ``output_dir`` when given).

    ``model`` is a loaded model (then pass its ``tokenizer``) or an alias / path / Hub id. ``benchmarks``
    defaults to the keys of ``datasets``, else gsm8k and math500.
    ``datasets`` maps a benchmark name to rows (a Dataset or list of dicts with ``problem``, ``answer``
    and optionally ``id``, ``source``, ``level``, ``subject``) instead of loading it: e.g. a held-out
    slice during GRPO training. Missing gold answers and empty completions score 0 and are counted.
    """
    benchmarks = _benchmark_names(benchmarks, datasets, n_samples, temperature)
    gen = _load_generator(model, tokenizer, backend, seed, dtype, device, trust_remote_code)
    settings = {
        "model": gen.name, "model_identity": gen.identity,
        "benchmarks": benchmarks, "limit": limit, "split": split, "n_samples": n_samples,
        "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens if not isinstance(
            max_new_tokens, Mapping) else dict(max_new_tokens), "batch_size": batch_size, "seed": seed,
        "backend": gen.backend, "dtype": dtype, "timeout_s": timeout_s,
        "chat_template": bool(getattr(gen.tokenizer, "chat_template", None)), "instructions": dict(INSTRUCTIONS),
    }
    out_dir = Path(output_dir) if output_dir is not None else None
    results_path = out_dir / "results.json" if out_dir else None
    results = _start_results(settings, out_dir, results_path, overwrite)
    checkpoint = _Checkpoint(results, results_path)
    for name in benchmarks:
        _run_benchmark(name, _benchmark_rows(name, datasets, split, limit), results, gen, settings, progress,
                       checkpoint)
    # Keep only the benchmarks asked for this time in the summary order.
    results["benchmarks"] = {b: results["benchmarks"][b] for b in benchmarks if b in results["benchmarks"]}
    checkpoint.stamp()
    if out_dir:
        _write_outputs(results, out_dir, results_path, make_plots)
    return results


def _benchmark_rows(name: str, datasets: Mapping | None, split: str | None, limit: int | None) -> list[dict]:
    """The rows of one benchmark: given in ``datasets`` (cut to ``limit``) or loaded by name."""
    if datasets is None:
        return _load_rows(name, split, limit)
    rows = _as_rows(name, datasets[name])
    return rows[:limit] if limit is not None else rows


def _write_outputs(results: dict, out_dir: Path, results_path: Path, make_plots: bool) -> None:
    """results.json, results.md and (with ``make_plots``) the figures, recorded in results.json."""
    _write_json(results_path, results)
    (out_dir / "results.md").write_text(results_markdown(results))
    if make_plots:
        results["figures"] = write_figures(results, out_dir)
        _write_json(results_path, results)


def _benchmark_names(benchmarks, datasets: Mapping | None, n_samples: int, temperature: float) -> list[str]:
    """The benchmarks to run, checked against ``datasets`` and the sampling settings before any model work."""
    if isinstance(benchmarks, str):
        benchmarks = [b.strip() for b in benchmarks.split(",") if b.strip()]
    if not benchmarks:
        benchmarks = list(datasets) if datasets is not None else ["gsm8k", "math500"]
    benchmarks = list(benchmarks)
    if datasets is not None:
        missing = [b for b in benchmarks if b not in datasets]
        if missing:
            raise ValueError(f"datasets has no rows for {missing}; pass them or drop them from benchmarks.")
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples}; it must be >= 1.")
    if n_samples > 1 and temperature == 0:
        raise ValueError("n_samples > 1 with temperature 0 gives k identical greedy completions; "
                         "pass a temperature > 0 (e.g. 0.6) to sample.")
    return benchmarks


@dataclass
class _Generator:
    """What generates: a loaded model (transformers) or a vLLM engine, its tokenizer, and how results name it."""

    model: object
    tokenizer: object
    llm: object
    backend: str
    name: str
    identity: str


def _load_generator(model, tokenizer, backend: str, seed: int, dtype: str, device: str | None,
                    trust_remote_code: bool) -> _Generator:
    """Load what an alias / path / Hub id names (vLLM or transformers); a loaded model needs its tokenizer."""
    from saerl_hf.generation import select_backend
    from saerl_hf.models import load_model, load_tokenizer, model_identity

    model_is_path = isinstance(model, (str, os.PathLike))
    chosen_backend = select_backend(backend, model_is_path=model_is_path)
    model_name = str(model) if model_is_path else (getattr(getattr(model, "config", None), "_name_or_path", "") or "in-memory")
    llm = None
    if model_is_path:
        tokenizer = tokenizer or load_tokenizer(str(model), trust_remote_code=trust_remote_code)
        if chosen_backend == "vllm":
            from vllm import LLM

            from saerl_hf.models import resolve_model_path

            llm = LLM(model=resolve_model_path(str(model)), seed=seed, dtype=dtype if dtype != "float32" else "auto",
                      trust_remote_code=trust_remote_code)
        else:
            model = load_model(str(model), dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    elif tokenizer is None:
        raise ValueError("evaluate_model got a loaded model without its tokenizer; pass tokenizer=...")
    identity = model_identity(model_name) if model_is_path else model_name
    return _Generator(model, tokenizer, llm, chosen_backend, model_name, identity)


def _start_results(settings: dict, out_dir: Path | None, results_path: Path | None, overwrite: bool) -> dict:
    """A fresh results dict, or the one in ``out_dir`` to resume (same generation settings only)."""
    previous = None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        previous = _load_previous(results_path, settings, overwrite)
    results = {
        "format": RESULTS_FORMAT, "settings": settings, "seed": settings["seed"], "versions": library_versions(),
        "machine": machine_info(), "started_at": (previous or {}).get("started_at", _now()),
        "wall_time_s": (previous or {}).get("wall_time_s", 0.0), "benchmarks": {}, "items": {},
    }
    if previous:
        results["items"] = previous.get("items", {})
        results["benchmarks"] = previous.get("benchmarks", {})
    return results


class _Checkpoint:
    """``checkpoint()`` rewrites results.json (when there is one) after every scored chunk, so a killed run
    resumes there; ``wall_time_s`` adds this run's time to what the resumed runs before it took."""

    def __init__(self, results: dict, path: Path | None):
        self.results, self.path = results, path
        self.start, self.base_wall = time.perf_counter(), results["wall_time_s"]

    def stamp(self) -> None:
        self.results["wall_time_s"] = self.base_wall + time.perf_counter() - self.start
        self.results["updated_at"] = _now()

    def __call__(self) -> None:
        if self.path:
            self.stamp()
            _write_json(self.path, self.results)


def _run_benchmark(name: str, rows: list[dict], results: dict, gen: _Generator, settings: dict, progress: bool,
                   checkpoint) -> None:
    """Generate and score the rows of one benchmark not scored yet; ``checkpoint()`` after every chunk."""
    from tqdm.auto import tqdm

    family = family_of(rows[0]["source"] if rows else name)
    budget = _resolve_max_new_tokens(settings["max_new_tokens"], family)
    done = {item["id"]: item for item in results["items"].get(name, []) if item.get("verdicts")}
    pending = [row for row in rows if row["id"] not in done]
    prompts = {row["id"]: render_prompt(gen.tokenizer, row["problem"], row["source"]) for row in pending}
    # Longest prompts first and in the same chunks as generate() batches them: each chunk is written
    # to results.json as soon as it is scored.
    pending.sort(key=lambda row: -len(prompts[row["id"]]))
    copies = 1 if settings["temperature"] == 0 else settings["n_samples"]
    chunk = len(pending) if gen.backend == "vllm" else max(1, settings["batch_size"] // copies)
    bench_start = time.perf_counter()
    with tqdm(total=len(rows), initial=len(rows) - len(pending), desc=f"{name} ({family})", unit="item",
              disable=not progress) as bar:
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            outputs, lengths, ended = _generate_chunk(gen, [prompts[row["id"]] for row in part], budget, settings,
                                                      start)
            for row, completions, n_tokens, stopped in zip(part, outputs, lengths, ended):
                row_family = family_of(row["source"])
                done[row["id"]] = _score_item(row, completions, row_family, n_tokens, stopped, settings["timeout_s"])
                bar.update(1)
            _record(results, name, rows, done, family, budget, settings["n_samples"])
            checkpoint()
    _record(results, name, rows, done, family, budget, settings["n_samples"])
    if pending:
        results["benchmarks"][name]["wall_time_s"] = round(time.perf_counter() - bench_start, 2)


def _generate_chunk(gen: _Generator, texts: list[str], budget: int, settings: dict, start: int):
    """(completions, new-token counts, stopped-before-budget flags) per prompt, from vLLM or transformers."""
    from saerl_hf.generation import generate, generate_vllm

    if gen.backend == "vllm":
        outputs = generate_vllm(None, texts, budget, settings["temperature"], settings["top_p"], settings["n_samples"],
                                settings["seed"], llm=gen.llm)
        lengths = [[len(gen.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in o] for o in outputs]
        ended = [[n < budget for n in row] for row in lengths]
        return outputs, lengths, ended
    return generate(
        gen.model, gen.tokenizer, texts, max_new_tokens=budget, temperature=settings["temperature"],
        top_p=settings["top_p"], n=settings["n_samples"], batch_size=settings["batch_size"],
        seed=settings["seed"] + start, progress=False, return_details=True)


def _record(results: dict, name: str, rows: list[dict], done: dict, family: str, budget: int, n_samples: int) -> None:
    """The benchmark's scored items in row order and their summary, into ``results``."""
    ordered = [done[row["id"]] for row in rows if row["id"] in done]
    results["items"][name] = ordered
    results["benchmarks"][name] = {"family": family, "max_new_tokens": budget, "n_total": len(rows),
                                   **summarize(ordered, n_samples)}
