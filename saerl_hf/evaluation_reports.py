"""Reports of the benchmark runner: the results table, its figures, and several runs side by side."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

RESULTS_FORMAT = "saerl-hf-eval/1"


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
