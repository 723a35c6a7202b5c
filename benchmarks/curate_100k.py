"""`saerl-hf curate` on a 100k-prompt pool: wall time and peak memory -> docs/benchmarks.md.

    .venv/bin/python benchmarks/curate_100k.py                          # 100,000 rows, default recipe
    .venv/bin/python benchmarks/curate_100k.py --rows 2000 --no-write   # a quick check of the script

The pool is the local sets of the default recipe (GSM8K train, MATH train, MAWPS, SVAMP, ASDiv; ~20k prompts)
repeated with new ids up to ``--rows``, written once as JSON Lines and curated as one file source, in a child
process so that its peak resident memory (``ru_maxrss``) is the curate run's alone. The repeats are exact
duplicates of their originals, so the dedup stage keeps one of each: the load, featurize, probe and dedup
stages see every row, the later ones the distinct prompts. Goal (issue 16): <= 45 min and <= 8 GiB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from docs_section import ROOT, machine, write_section

SOURCES = ["gsm8k:train", "math:train", "mawps", "svamp", "asdiv"]


def build_pool(rows: int, path: Path) -> int:
    """The local sets (shuffled) repeated with new ids (``<id>#r<k>``) up to ``rows``, as JSON Lines."""
    from datasets import concatenate_datasets

    from saerl_hf.data import load_math_dataset
    from saerl_hf.pool import split_source

    base = concatenate_datasets([load_math_dataset(name, split) for name, split, _ in map(split_source, SOURCES)])
    base = base.shuffle(seed=0).flatten_indices()  # every source in any prefix (a small --rows run too)
    copies = []
    for k in range(-(-rows // len(base))):
        take = base.select(range(min(len(base), rows - k * len(base))))
        copies.append(take.map(lambda ids, k=k: {"id": [f"{i}#r{k}" for i in ids]}, input_columns="id",
                               batched=True, desc=f"copy {k}"))
    pool = concatenate_datasets(copies)
    path.parent.mkdir(parents=True, exist_ok=True)
    pool.to_json(str(path), lines=True)
    return len(pool)


def run(rows: int, config: str, output_dir: Path, overrides: list[str]) -> dict:
    shutil.rmtree(output_dir, ignore_errors=True)  # from scratch: a resumed run would time nothing
    pool_file = output_dir / "pool.jsonl"
    pool_rows = build_pool(rows, pool_file)
    argv = [sys.executable, "-m", "saerl_hf.cli", "curate", "--config", config, "--output_dir",
            str(output_dir / "curated"), "--sources", str(pool_file), "--holdout_per_source", "0", *overrides]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)  # noqa: S603 - our own CLI
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"curate failed:\n{done.stderr[-4000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, the largest child
    summary = json.loads((output_dir / "curated" / "summary.json").read_text())
    return {"rows": pool_rows, "config": config, "overrides": overrides, "wall_s": wall,
            "peak_rss_gib": peak_kib / 2**20, "summary": summary, "machine": machine(),
            "command": " ".join(argv[1:])}


def section(r: dict) -> str:
    s = r["summary"]
    timings = s["timings_s"]
    counts = s["counts"]
    stages = " | ".join(f"{k} {v:.0f} s" for k, v in timings.items() if k != "total_this_run")
    wall_ok = "met" if r["wall_s"] <= 45 * 60 else "NOT met"
    rss_ok = "met" if r["peak_rss_gib"] <= 8 else "NOT met"
    overrides = f" {' '.join(r['overrides'])}" if r["overrides"] else ""
    return "\n".join([
        f"## Curate a {r['rows']:,}-prompt pool",
        "",
        f"Regenerate: `.venv/bin/python benchmarks/curate_100k.py --rows {r['rows']}{overrides}`",
        "",
        f"`saerl-hf curate` (`{r['config']}`) from scratch on {r['rows']:,} prompts: the default recipe's local sets "
        f"repeated with new ids; the quality filter kept {counts['quality']['n_kept']:,}, dedup (the repeats are "
        f"exact duplicates) {counts['dedup']['n_kept']:,}, and {s['rows']:,} are curated. Machine: {r['machine']}.",
        "",
        f"**Wall time {r['wall_s'] / 60:.1f} min** (goal <= 45 min: {wall_ok}); **peak RSS "
        f"{r['peak_rss_gib']:.2f} GiB** (goal <= 8 GiB: {rss_ok}){_rss_scope(r['overrides'])}.",
        "",
        f"Stages: {stages}.",
    ])


def _rss_scope(overrides: list[str]) -> str:
    """What the peak RSS covers: ``ru_maxrss`` of the children is the largest single process, so with map workers
    the machine held up to (workers + 1) times it at once."""
    procs = next((int(v) for k, v in zip(overrides, overrides[1:]) if k == "--featurize_num_proc" and v.isdigit()), 1)
    if procs <= 1:
        return ""
    return (f"; with {procs} featurize workers this is the largest single process (the parent or one worker), so "
            f"the machine held at most {procs + 1} x that at once")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--config", default="recipes/smollm2-135m/curate/default.yaml")
    parser.add_argument("--output-dir", default=None, help="default: outputs/bench/curate-<rows>")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args, overrides = parser.parse_known_args(argv)
    out = Path(args.output_dir or ROOT / "outputs" / "bench" / f"curate-{args.rows}")
    result = run(args.rows, args.config, out, overrides)
    text = section(result)
    print(text)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2, default=str))
    if not args.no_write:
        write_section("curate-100k", text, after="curate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
