"""Benchmark runner: generate with the fixed prompt per family, score with math-verify, report.

``saerl-hf evaluate`` and :func:`evaluate_model` (for in-memory models, e.g. a held-out check inside the
GRPO loop) share one code path. Every setting, the seed and library versions go into ``results.json``
with the per-item outputs, which is rewritten after every batch so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from saerl_hf.answers import is_correct
from saerl_hf.prompts import INSTRUCTIONS, family_of, render_prompt

logger = logging.getLogger(__name__)

RESULTS_FORMAT = "saerl-hf-eval/1"
#: Completion budget per family when --max-new-tokens is not given: word problems need a short
#: computation; competition problems need room to reason before the \\boxed{} answer.
DEFAULT_MAX_NEW_TOKENS = {"elementary": 256, "competition": 512}
# Settings that change what a completion is: a resumed run must match them exactly.
_GENERATION_KEYS = ("model", "n_samples", "temperature", "top_p", "seed", "dtype", "max_new_tokens")


@dataclass
class EvalConfig:
    """Options of ``saerl-hf evaluate`` (also loadable from a YAML file with ``--config``)."""

    model: str = field(default="smollm2-135m", metadata={"help": "Model alias (smollm2-135m), local dir or Hub id."})
    benchmarks: str = field(
        default="gsm8k,math500",
        metadata={"help": "Comma-separated benchmarks: gsm8k, math500, aime24, amc23, minerva_math, olympiadbench, "
                          "mawps, svamp, asdiv, ... (see `saerl-hf info`)."},
    )
    limit: int | None = field(default=None, metadata={"help": "Score only the first N items of each benchmark."})
    split: str | None = field(default=None, metadata={"help": "Dataset split (default: each benchmark's test split)."})
    output_dir: str = field(default="eval_results", metadata={"help": "Where results.json, results.md and PNGs go."})
    n_samples: int = field(default=1, metadata={"help": "Completions per problem; > 1 reports avg@k and pass@k "
                                                         "(needs --temperature > 0)."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy decoding; > 0 samples."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling cut (only when sampling)."})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": f"Completion budget; default per family {DEFAULT_MAX_NEW_TOKENS}."})
    batch_size: int = field(default=32, metadata={"help": "Sequences per generate() call (transformers backend)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed (recorded in results.json)."})
    backend: str = field(default="auto", metadata={"help": "auto (vLLM when installed with a GPU), transformers, vllm."})
    dtype: str = field(default="float32", metadata={"help": "torch dtype to load the model in."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: where the model loads)."})
    timeout_s: float = field(default=5.0, metadata={"help": "Seconds allowed to check one answer; over it scores 0."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    overwrite: bool = field(default=False, metadata={"help": "Start afresh instead of resuming output_dir/results.json."})
    num_threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads (default: torch's choice). On a shared CPU, 1 avoids "
                                        "thread oversubscription (6.8x faster generation measured on 2 busy cores)."})

    def benchmark_list(self) -> list[str]:
        names = [b.strip() for b in self.benchmarks.split(",") if b.strip()]
        if not names:
            raise ValueError("--benchmarks is empty; pass e.g. --benchmarks gsm8k,math500.")
        return names


@dataclass
class CompareConfig:
    """Options of ``saerl-hf compare``."""

    results: list[str] = field(default_factory=list, metadata={"help": "results.json files (or their dirs) to compare."})
    names: str | None = field(default=None, metadata={"help": "Comma-separated run names (default: parent dir names)."})
    output_dir: str = field(default="eval_compare", metadata={"help": "Where compare.md and compare.png go."})


# ----------------------------------------------------------------------------- scoring helpers


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples per item, got {n}.")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def score_outputs(outputs: list, gold, family: str, timeout_s: float = 5.0) -> list[bool]:
    """Verdict per completion; a missing gold or a non-string completion is a documented 0, not an error."""
    if not isinstance(gold, str) or not gold.strip():
        return [False] * len(outputs)
    return [bool(is_correct(output, gold, family, timeout_s=timeout_s)) for output in outputs]


def summarize(items: list[dict], n_samples: int) -> dict:
    """avg@k, pass@k, counts and per-level / per-subject accuracy of one benchmark's scored items."""
    scored = [item for item in items if item.get("verdicts")]
    summary = {"n_items": len(scored), "n_samples": n_samples}
    if not scored:
        return {**summary, "accuracy": 0.0}
    avg = [sum(item["verdicts"]) / len(item["verdicts"]) for item in scored]
    summary["accuracy"] = sum(avg) / len(avg)
    if n_samples > 1:
        summary[f"avg@{n_samples}"] = summary["accuracy"]
        summary[f"pass@{n_samples}"] = sum(
            pass_at_k(len(i["verdicts"]), sum(i["verdicts"]), n_samples) for i in scored) / len(scored)
    summary["truncated"] = sum(i.get("truncated", 0) for i in scored) / sum(len(i["verdicts"]) for i in scored)
    summary["no_answer"] = sum(i.get("no_answer", 0) for i in scored) / sum(len(i["verdicts"]) for i in scored)
    for key in ("level", "subject"):
        groups: dict = defaultdict(list)
        for item, value in zip(scored, avg):
            if item.get(key) is not None:
                groups[item[key]].append(value)
        if groups:
            ordered = sorted(groups, key=lambda g: (isinstance(g, str), g))
            summary[f"by_{key}"] = {str(_tidy_level(g)): sum(groups[g]) / len(groups[g]) for g in ordered}
            summary[f"count_by_{key}"] = {str(_tidy_level(g)): len(groups[g]) for g in ordered}
    return summary


def _tidy_level(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


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
    from saerl_hf.generation import generate, generate_vllm, select_backend
    from saerl_hf.models import load_model, load_tokenizer, model_identity

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

    settings = {
        "model": model_name, "model_identity": model_identity(model_name) if model_is_path else model_name,
        "benchmarks": benchmarks, "limit": limit, "split": split, "n_samples": n_samples,
        "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens if not isinstance(
            max_new_tokens, Mapping) else dict(max_new_tokens), "batch_size": batch_size, "seed": seed,
        "backend": chosen_backend, "dtype": dtype, "timeout_s": timeout_s,
        "chat_template": bool(getattr(tokenizer, "chat_template", None)), "instructions": dict(INSTRUCTIONS),
    }
    out_dir = Path(output_dir) if output_dir is not None else None
    results_path = out_dir / "results.json" if out_dir else None
    previous = None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        previous = _load_previous(results_path, settings, overwrite)
    results = {
        "format": RESULTS_FORMAT, "settings": settings, "seed": seed, "versions": library_versions(),
        "machine": machine_info(), "started_at": (previous or {}).get("started_at", _now()),
        "wall_time_s": (previous or {}).get("wall_time_s", 0.0), "benchmarks": {}, "items": {},
    }
    if previous:
        results["items"] = previous.get("items", {})
        results["benchmarks"] = previous.get("benchmarks", {})

    run_start = time.perf_counter()
    base_wall = results["wall_time_s"]
    for name in benchmarks:
        rows = _as_rows(name, datasets[name]) if datasets is not None else _load_rows(name, split, limit)
        if datasets is not None and limit is not None:
            rows = rows[:limit]
        family = family_of(rows[0]["source"] if rows else name)
        budget = _resolve_max_new_tokens(max_new_tokens, family)
        done = {item["id"]: item for item in results["items"].get(name, []) if item.get("verdicts")}
        pending = [row for row in rows if row["id"] not in done]
        prompts = {row["id"]: render_prompt(tokenizer, row["problem"], row["source"]) for row in pending}
        # Longest prompts first and in the same chunks as generate() batches them: each chunk is written
        # to results.json as soon as it is scored.
        pending.sort(key=lambda row: -len(prompts[row["id"]]))
        copies = 1 if temperature == 0 else n_samples
        chunk = len(pending) if chosen_backend == "vllm" else max(1, batch_size // copies)
        bench_start = time.perf_counter()
        from tqdm.auto import tqdm

        with tqdm(total=len(rows), initial=len(rows) - len(pending), desc=f"{name} ({family})", unit="item",
                  disable=not progress) as bar:
            for start in range(0, len(pending), chunk):
                part = pending[start:start + chunk]
                texts = [prompts[row["id"]] for row in part]
                if chosen_backend == "vllm":
                    outputs = generate_vllm(None, texts, budget, temperature, top_p, n_samples, seed, llm=llm)
                    lengths = [[len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in o] for o in outputs]
                    ended = [[n < budget for n in row] for row in lengths]
                else:
                    outputs, lengths, ended = generate(
                        model, tokenizer, texts, max_new_tokens=budget, temperature=temperature, top_p=top_p,
                        n=n_samples, batch_size=batch_size, seed=seed + start, progress=False, return_details=True)
                for row, completions, n_tokens, stopped in zip(part, outputs, lengths, ended):
                    row_family = family_of(row["source"])
                    done[row["id"]] = _score_item(row, completions, row_family, n_tokens, stopped, timeout_s)
                    bar.update(1)
                ordered = [done[row["id"]] for row in rows if row["id"] in done]
                results["items"][name] = ordered
                results["benchmarks"][name] = {
                    "family": family, "max_new_tokens": budget, "n_total": len(rows),
                    **summarize(ordered, n_samples),
                }
                if results_path:
                    results["wall_time_s"] = base_wall + time.perf_counter() - run_start
                    results["updated_at"] = _now()
                    _write_json(results_path, results)
        ordered = [done[row["id"]] for row in rows if row["id"] in done]
        results["items"][name] = ordered
        results["benchmarks"][name] = {"family": family, "max_new_tokens": budget, "n_total": len(rows),
                                       **summarize(ordered, n_samples)}
        if pending:
            results["benchmarks"][name]["wall_time_s"] = round(time.perf_counter() - bench_start, 2)
    # Keep only the benchmarks asked for this time in the summary order.
    results["benchmarks"] = {b: results["benchmarks"][b] for b in benchmarks if b in results["benchmarks"]}
    results["wall_time_s"] = base_wall + time.perf_counter() - run_start
    results["updated_at"] = _now()
    if out_dir:
        _write_json(results_path, results)
        (out_dir / "results.md").write_text(results_markdown(results))
        if make_plots:
            results["figures"] = write_figures(results, out_dir)
            _write_json(results_path, results)
    return results


def _score_item(row: dict, completions: list[str], family: str, n_tokens: list[int], stopped: list[bool],
                timeout_s: float) -> dict:
    from saerl_hf.answers import extract_answer

    gold = row.get("answer")
    verdicts = score_outputs(completions, gold, family, timeout_s)
    item = {
        "id": row["id"], "source": row.get("source"), "subject": row.get("subject"), "level": row.get("level"),
        "answer": gold, "outputs": completions,
        "extracted": [extract_answer(text, family) for text in completions],
        "verdicts": verdicts, "new_tokens": list(n_tokens),
        "truncated": sum(not s for s in stopped),
        "no_answer": sum(not text or not text.strip() for text in completions),
    }
    if not isinstance(gold, str) or not gold.strip():
        item["error"] = "missing gold answer: scored 0"
    return item


# ----------------------------------------------------------------------------- reports


def _pct(value) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}"


def results_markdown(results: dict) -> str:
    """The results table (plus MATH-500-style level / subject breakdowns) as markdown."""
    s = results["settings"]
    k = s["n_samples"]
    mode = "greedy" if s["temperature"] == 0 else f"T={s['temperature']}, top_p={s['top_p']}, k={k}"
    lines = [f"# Evaluation: {s.get('model_identity') or s['model']}", "",
             f"Decoding: {mode}; seed {s['seed']}; backend {s['backend']}; wall time "
             f"{results.get('wall_time_s', 0):.0f} s; math-verify {results['versions'].get('math-verify', '?')}.", ""]
    header = "| benchmark | family | items | max new tokens | accuracy (%) |"
    sep = "|---|---|---:|---:|---:|"
    if k > 1:
        header += f" avg@{k} (%) | pass@{k} (%) |"
        sep += "---:|---:|"
    header += " truncated (%) |"
    sep += "---:|"
    lines += [header, sep]
    for name, b in results["benchmarks"].items():
        row = f"| {name} | {b['family']} | {b['n_items']} | {b['max_new_tokens']} | {_pct(b['accuracy'])} |"
        if k > 1:
            row += f" {_pct(b.get(f'avg@{k}'))} | {_pct(b.get(f'pass@{k}'))} |"
        row += f" {_pct(b.get('truncated'))} |"
        lines.append(row)
    for name, b in results["benchmarks"].items():
        for key in ("level", "subject"):
            groups = b.get(f"by_{key}")
            if not groups or len(groups) < 2:
                continue
            counts = b.get(f"count_by_{key}", {})
            lines += ["", f"**{name} by {key}**", "", f"| {key} | items | accuracy (%) |", "|---|---:|---:|"]
            lines += [f"| {g} | {counts.get(g, '')} | {_pct(v)} |" for g, v in groups.items()]
    return "\n".join(lines) + "\n"


def safe_file_stem(name: str) -> str:
    """A file-name stem for a benchmark name that may be a path or Hub id (``../x``, ``/data/f.jsonl``,
    ``org/name``): never a separator or a leading dot, so figures always land inside the output dir."""
    stem = re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name)).strip("._")
    return stem or "benchmark"


def write_figures(results: dict, out_dir: Path) -> list[str]:
    """accuracy.png (per benchmark) and, where levels/subjects exist, <bench>_by_level / _by_subject PNGs."""
    from saerl_hf import plots

    benches = results["benchmarks"]
    if not benches:
        return []
    title = f"{results['settings']['model']}: accuracy" + (
        "" if results["settings"]["n_samples"] == 1 else f" (avg@{results['settings']['n_samples']})")
    paths = [plots.plot_accuracy_per_benchmark({n: b["accuracy"] for n, b in benches.items()},
                                               out_dir / "accuracy.png", title=title,
                                               counts={n: b["n_items"] for n, b in benches.items()})]
    for name, b in benches.items():
        for key in ("level", "subject"):
            if b.get(f"by_{key}") and len(b[f"by_{key}"]) >= 2:
                paths.append(plots.plot_accuracy_by_group(b[f"by_{key}"], out_dir / f"{safe_file_stem(name)}_by_{key}.png",
                                                          title=f"{name}: accuracy by {key}", xlabel=key,
                                                          counts=b.get(f"count_by_{key}")))
    return [str(Path(p).name) for p in paths]


def load_results(path: str | os.PathLike) -> dict:
    """A results.json (or a dir holding one), checked to be this runner's format."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass a results.json written by `saerl-hf evaluate` or its dir.")
    results = json.loads(path.read_text())
    if results.get("format") != RESULTS_FORMAT or "benchmarks" not in results:
        raise ValueError(f"{path} is not a `saerl-hf evaluate` results file (format {results.get('format')!r}).")
    return results


def compare_results(paths: list, names: list[str] | None = None, output_dir=None) -> str:
    """Markdown table of several runs side by side (delta vs the first run); optional chart."""
    if not paths:
        raise ValueError("compare needs at least one results.json (e.g. --results base/ grpo/ saerl/).")
    runs = [load_results(p) for p in paths]
    names = names or [Path(p).resolve().parent.name if Path(p).is_file() else Path(p).resolve().name for p in paths]
    if len(names) != len(runs):
        raise ValueError(f"{len(names)} names for {len(runs)} result files; give one name per file.")
    benchmarks = list(dict.fromkeys(b for r in runs for b in r["benchmarks"]))
    lines = ["| benchmark | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for bench in benchmarks:
        cells = []
        base = runs[0]["benchmarks"].get(bench, {}).get("accuracy")
        for i, run in enumerate(runs):
            b = run["benchmarks"].get(bench)
            if b is None:
                cells.append("—")
                continue
            cell = f"{_pct(b['accuracy'])} (n={b['n_items']})"
            if i > 0 and base is not None:
                cell += f" {100 * (b['accuracy'] - base):+.1f}"
            cells.append(cell)
        lines.append(f"| {bench} | " + " | ".join(cells) + " |")
    settings = ["", "Settings: " + "; ".join(
        f"{n}: {r['settings']['model']}, T={r['settings']['temperature']}, k={r['settings']['n_samples']}, "
        f"seed {r['settings']['seed']}" for n, r in zip(names, runs))]
    table = "\n".join(lines + settings) + "\n"
    if output_dir is not None:
        from saerl_hf import plots

        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(table)
        plots.plot_comparison({n: {b: v["accuracy"] for b, v in r["benchmarks"].items()} for n, r in zip(names, runs)},
                              out / "compare.png")
    return table


# ----------------------------------------------------------------------------- CLI


def cli_main(argv: list[str] | None = None) -> int:
    """``saerl-hf evaluate``: see :class:`EvalConfig`."""
    from trl import TrlParser

    from saerl_hf.configs import parse_config

    (config,) = parse_config(TrlParser((EvalConfig,), prog="saerl-hf evaluate"), argv)
    if config.num_threads:
        import torch

        torch.set_num_threads(config.num_threads)
    results = evaluate_model(
        config.model, benchmarks=config.benchmark_list(), limit=config.limit, split=config.split,
        n_samples=config.n_samples, temperature=config.temperature, top_p=config.top_p,
        max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, seed=config.seed,
        output_dir=config.output_dir, timeout_s=config.timeout_s, backend=config.backend, dtype=config.dtype,
        device=config.device, trust_remote_code=config.trust_remote_code, overwrite=config.overwrite,
    )
    print(results_markdown(results))
    print(f"wrote {Path(config.output_dir) / 'results.json'}")
    return 0


def compare_main(argv: list[str] | None = None) -> int:
    """``saerl-hf compare --results a b c [--names base,grpo,saerl]``."""
    from trl import TrlParser

    from saerl_hf.configs import parse_config

    (config,) = parse_config(TrlParser((CompareConfig,), prog="saerl-hf compare"), argv)
    names = [n.strip() for n in config.names.split(",")] if config.names else None
    print(compare_results(config.results, names, config.output_dir))
    return 0


__all__ = ["EvalConfig", "CompareConfig", "evaluate_model", "compare_results", "load_results", "pass_at_k",
           "results_markdown", "summarize", "score_outputs"]
