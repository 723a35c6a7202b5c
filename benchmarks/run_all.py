"""Regenerate every figure of docs/benchmarks.md in one command, each benchmark in its own process.

    .venv/bin/python benchmarks/run_all.py            # or: make benchmarks
    .venv/bin/python benchmarks/run_all.py --only featurize curate

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
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or list(BENCHMARKS):
        script, *rest = BENCHMARKS[name]
        start = time.perf_counter()
        print(f"== {name}: {script} {' '.join(rest)}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script), *rest], cwd=HERE.parent)
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
