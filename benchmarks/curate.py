"""`saerl-hf curate` end to end on a recipe (default: GSM8K train + MATH train + elementary sets) -> docs.

    .venv/bin/python benchmarks/curate.py                                   # default recipe, fresh output dir
    .venv/bin/python benchmarks/curate.py --config recipes/smollm2-135m/curate/testbed.yaml

Runs the real pipeline (load -> featurize -> probes -> filter -> order) from scratch in its own output dir
(goal: <= 15 minutes on 2 cores for the default recipe) and reports the per-stage split from the run's
``summary.json``. The same run measures a baseline: a plain full forward with logits over a seeded sample of
the pool's whole chat prompts (the cost without early exit and prefix reuse), extrapolated to the pool by
token count, so the featurize stage is also reported as a ratio against it. Needs the recipe's SAE
(`saerl-hf train-sae`; the default one is written where the recipe looks for it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from docs_section import ROOT, machine, write_section

STAGES = [("load", "load + holdout"), ("inject_noise", "noise injection + source levels"),
          ("featurize", "featurize the pool (chunks)"), ("quality_set", "build the quality probe's set"),
          ("featurize_quality", "featurize the quality set"), ("fit_probes", "fit difficulty / quality / clusters"),
          ("apply_signals", "apply the probes to the pool"), ("filter", "quality filter + dedup"),
          ("order", "curriculum order")]


def full_forward_baseline(pool, model_name: str, sample: int, batch_size: int, seed: int) -> dict:
    """Seconds per whole-prompt token of a plain full forward with logits, on a seeded sample of the pool."""
    import numpy as np
    import torch

    from saerl_hf.activations import right_pad
    from saerl_hf.models import load_model, load_tokenizer
    from saerl_hf.prompts import render_prompt

    model, tokenizer = load_model(model_name), load_tokenizer(model_name)

    def tokens(rows):
        return [tokenizer(render_prompt(tokenizer, r["problem"], r["source"]), add_special_tokens=False)["input_ids"]
                for r in rows]

    pool_tokens = sum(len(t) for t in tokens(pool))
    picked = pool.select(np.sort(np.random.default_rng(seed).permutation(len(pool))[:sample]))
    ids = sorted(tokens(picked), key=len)
    batches = [right_pad(ids[s : s + batch_size], tokenizer.pad_token_id) for s in range(0, len(ids), batch_size)]
    start = time.perf_counter()
    with torch.no_grad():
        for input_ids, mask in batches:
            model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits.sum()
    seconds = time.perf_counter() - start
    sample_tokens = sum(len(t) for t in ids)
    return {"sample_rows": len(ids), "sample_tokens": sample_tokens, "sample_s": seconds,
            "pool_tokens": pool_tokens, "pool_estimate_s": seconds * pool_tokens / sample_tokens}


def run(config_path: str, output_dir: str | None, baseline_sample: int, overrides: list[str]) -> dict:
    from datasets import load_from_disk
    from trl import TrlParser

    from saerl_hf.configs import parse_config
    from saerl_hf.curate import CurateConfig, run_curate

    name = Path(config_path).stem
    out = Path(output_dir or ROOT / "outputs" / "bench" / f"curate-{name}")
    argv = ["--config", config_path, "--output_dir", str(out), *overrides]
    (config,) = parse_config(TrlParser((CurateConfig,), prog="benchmarks/curate.py"), argv)
    shutil.rmtree(out, ignore_errors=True)  # from scratch: a resumed run would time nothing
    start = time.perf_counter()
    summary = run_curate(config, command="python benchmarks/curate.py " + " ".join(argv))
    wall = time.perf_counter() - start
    pool = load_from_disk(str(out / "stages" / "02_noise"))
    summary["provenance_dtype"] = json.loads((out / "provenance.json").read_text()).get("dtype")
    baseline = full_forward_baseline(pool, config.model, baseline_sample, config.featurize_batch_size, config.seed)
    return {"config": config_path, "overrides": overrides, "wall_s": wall, "summary": summary, "machine": machine(),
            "baseline": baseline, "pool_rows": len(pool), "output_dir": str(out)}


def section(r: dict) -> str:
    s, b = r["summary"], r["baseline"]
    timings = s["timings_s"]
    counts = s["counts"]
    featurize_s = timings.get("featurize", float("nan"))
    rows = [f"| {label} | {timings[key]:.1f} | {100 * timings[key] / r['wall_s']:.0f}% |"
            for key, label in STAGES if key in timings]
    other = r["wall_s"] - sum(timings[key] for key, _ in STAGES if key in timings)
    sources = ", ".join(f"{k} {v:,}" for k, v in counts["by_source"].items())
    overrides = f" {' '.join(r['overrides'])}" if r["overrides"] else ""
    if r.get("section", "curate") != "curate":
        overrides += f" --section {r['section']} --output-dir {r['output_dir']}"
    goal = "met" if r["wall_s"] <= 900 else "NOT met"
    dtype = s["config"].get("reader_dtype", "float32")
    resolved = s.get("provenance_dtype") or dtype
    return "\n".join([
        f"## Curate end to end (reader dtype {dtype}{f' -> {resolved}' if resolved != dtype else ''})",
        "",
        f"Regenerate: `.venv/bin/python benchmarks/curate.py --config {r['config']}{overrides}`",
        "",
        f"`saerl-hf curate` from scratch on `{r['config']}`: {r['pool_rows']:,} pooled prompts ({sources}) -> "
        f"{s['rows']:,} curated rows (quality filter dropped {counts['quality']['n_dropped']:,}, duplicates "
        f"{counts['dedup']['exact_duplicates'] + counts['dedup']['near_duplicates']:,}). Machine: {r['machine']}.",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
        *rows,
        f"| other (config, saving the final dataset, summary) | {other:.1f} | {100 * other / r['wall_s']:.0f}% |",
        f"| **total** | **{r['wall_s']:.1f}** | |",
        "",
        f"**Total: {r['wall_s'] / 60:.1f} min** (goal <= 15 min on 2 cores: {goal}).",
        "",
        f"Baseline measured in the same run: a plain float32 full forward with logits over {b['sample_rows']} sampled whole "
        f"chat prompts took {b['sample_s']:.1f} s for {b['sample_tokens']:,} tokens; at that rate the pool's "
        f"{b['pool_tokens']:,} prompt tokens would take {b['pool_estimate_s']:.0f} s, "
        f"**{b['pool_estimate_s'] / featurize_s:.2f}x** the featurize stage ({featurize_s:.0f} s, which also "
        f"encodes, pools and saves).",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="recipes/smollm2-135m/curate/default.yaml")
    parser.add_argument("--output-dir", default=None, help="default: outputs/bench/curate-<recipe>")
    parser.add_argument("--baseline-sample", type=int, default=256, help="prompts in the full-forward baseline")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    parser.add_argument("--section", default="curate", help="block of docs/benchmarks.md to (re)write")
    parser.add_argument("--from-json", default=None, help="re-render a saved benchmark.json instead of running")
    args, overrides = parser.parse_known_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        text = section(result)
        print(text)
        if not args.no_write:
            write_section(args.section, text, after="featurize")
        return 0
    result = run(args.config, args.output_dir, args.baseline_sample, overrides)
    result["section"] = args.section
    text = section(result)
    print(text)
    (Path(result["output_dir"]) / f"benchmark-{args.section}.json").write_text(json.dumps(result, indent=2, default=str))
    if not args.no_write:
        write_section(args.section, text, after="featurize")
    return 0


if __name__ == "__main__":
    sys.exit(main())
