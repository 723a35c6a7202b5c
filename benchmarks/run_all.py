"""Regenerate every figure of docs/benchmarks.md in one command, each benchmark in its own process.

    .venv/bin/python benchmarks/run_all.py            # or: make benchmarks
    .venv/bin/python benchmarks/run_all.py --only featurize curate

A benchmark whose input another command makes (grpo-step needs the SFT warm start) is skipped with a message
naming that command when the input is missing; the others still run.

Runs one after another (never side by side: they would share the 2 cores and compress each other's ratios).
Each script rewrites only its own block of the page; see each script's docstring for what it measures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS = {
    "featurize": ["featurize.py", "--n-prompts", "128", "--batch-size", "32", "--repeats", "3"],
    "curate": ["curate.py", "--config", "recipes/smollm2-135m/curate/default.yaml"],
    "curate-fp32": ["curate.py", "--config", "recipes/smollm2-135m/curate/default.yaml", "--section", "curate-fp32",
                    "--output-dir", "outputs/bench/curate-default-fp32", "--reader_dtype", "float32"],
    "sampler": ["sampler.py"],
    "generation": ["generation.py", "--n-prompts", "32", "--max-new-tokens", "128", "--batch-size", "32"],
    "dedup": ["dedup.py"],
    "difficulty-fit": ["difficulty_fit.py", "--n-rows", "2000"],
    "grpo-step": ["grpo_step.py", "--steps", "5", "--model", "outputs/warmstart/smollm2-135m-gsm8k/model"],
}

#: Paths (relative to the repository root) a benchmark needs that another command makes, and that command.
REQUIRES = {
    "grpo-step": [("outputs/warmstart/smollm2-135m-gsm8k/model",
                   "saerl-hf warmstart --config recipes/smollm2-135m/warmstart/gsm8k.yaml")],
}


def missing_requirement(name: str, root: Path = HERE.parent) -> str | None:
    """Why benchmark ``name`` cannot run yet (a required path is missing, and the command that makes it), or None."""
    for path, command in REQUIRES.get(name, []):
        if not (root / path).exists():
            return f"{path} is missing; make it first with: {command}"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    args = parser.parse_args(argv)
    failed, skipped = [], []
    for name in args.only or list(BENCHMARKS):
        script, *rest = BENCHMARKS[name]
        reason = missing_requirement(name)
        if reason:
            print(f"== {name}: skipped: {reason}", flush=True)
            skipped.append(name)
            continue
        start = time.perf_counter()
        print(f"== {name}: {script} {' '.join(rest)}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script), *rest], cwd=HERE.parent)
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if skipped:
        print(f"skipped (a required path is missing, see above): {', '.join(skipped)}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
