"""Batched vs one-at-a-time greedy generation, same prompts, same run, real SmolLM2 -> docs/benchmarks.md.

    python benchmarks/generation.py --n-prompts 32 --max-new-tokens 48 --num-threads 1

Tokens/s counts generated tokens up to and including EOS (padding after EOS does not count), so both
modes are credited for the same work. The evaluation runner batches because of this ratio.
"""

from __future__ import annotations

import argparse
import time

from docs_section import machine, write_section


def run(n_prompts: int, max_new_tokens: int, batch_size: int, model_name: str, benchmark: str) -> dict:
    import torch

    from saerl_hf.data import load_math_dataset
    from saerl_hf.generation import generate
    from saerl_hf.models import load_model, load_tokenizer
    from saerl_hf.prompts import render_prompt

    model, tokenizer = load_model(model_name), load_tokenizer(model_name)
    rows = load_math_dataset(benchmark, limit=n_prompts)
    prompts = [render_prompt(tokenizer, row["problem"], row["source"]) for row in rows]
    generate(model, tokenizer, prompts[:1], max_new_tokens=4, progress=False)  # warm-up

    timings = {}
    start = time.perf_counter()
    texts, counts, _ = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                desc="batched", return_details=True)
    timings["batched"] = (time.perf_counter() - start, sum(c[0] for c in counts), texts)
    start = time.perf_counter()
    single_texts, single_tokens = [], 0
    from tqdm.auto import tqdm

    for prompt in tqdm(prompts, desc="one at a time"):
        text, count, _ = generate(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, progress=False,
                                  return_details=True)
        single_texts.append(text[0])
        single_tokens += count[0][0]
    timings["single"] = (time.perf_counter() - start, single_tokens, single_texts)
    same = sum(a == b for a, b in zip(timings["batched"][2], single_texts))
    result = {
        "n_prompts": len(prompts), "max_new_tokens": max_new_tokens, "batch_size": batch_size, "model": model_name,
        "benchmark": benchmark, "torch_threads": torch.get_num_threads(), "identical_outputs": same,
    }
    for mode, (seconds, tokens, _) in timings.items():
        result[f"{mode}_s"] = seconds
        result[f"{mode}_tokens"] = tokens
        result[f"{mode}_tok_per_s"] = tokens / seconds
    result["speedup"] = result["batched_tok_per_s"] / result["single_tok_per_s"]
    return result


def section(result: dict, command: str) -> str:
    r = result
    return "\n".join([
        "## Evaluation / generation",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Greedy generation with {r['model']} on the first {r['n_prompts']} {r['benchmark']} prompts (chat template, "
        f"the elementary prompt), at most {r['max_new_tokens']} new tokens, fp32, {r['torch_threads']} torch "
        f"thread(s). Machine: {machine()}.",
        "",
        "| mode | wall time (s) | generated tokens | tokens/s |",
        "|---|---:|---:|---:|",
        f"| one prompt at a time | {r['single_s']:.1f} | {r['single_tokens']} | {r['single_tok_per_s']:.1f} |",
        f"| batched (batch {r['batch_size']}, left padding, length-sorted) | {r['batched_s']:.1f} | "
        f"{r['batched_tokens']} | {r['batched_tok_per_s']:.1f} |",
        "",
        f"**Batched / one-at-a-time: {r['speedup']:.1f}x** (goal >= 4x). Identical greedy outputs in both modes: "
        f"{r['identical_outputs']}/{r['n_prompts']}.",
        "",
        "Both modes prefill every prompt (~150-250 tokens here), so short budgets dilute the gain; greedy "
        "batches drop rows that reached EOS (`saerl_hf.generation`), which `model.generate` does not.",
    ])


def answer_check_cost() -> dict:
    """Mean is_correct cost: plain numbers (GSM8K gold solutions) vs symbolic (MATH-500 gold solutions)."""
    from saerl_hf.answers import is_correct, verify_cost
    from saerl_hf.data import load_math_dataset

    is_correct("\\boxed{x}", "\\frac12")  # start the helper process outside the timing
    math500 = [(r["solution"], r["answer"]) for r in load_math_dataset("math500")]
    gsm8k = [(r["solution"], r["answer"]) for r in load_math_dataset("gsm8k", limit=1000)]
    start = time.perf_counter()
    is_correct("\\boxed{9^{9^{9^{9}}}}", "5", timeout_s=1.0)
    pathological = time.perf_counter() - start
    return {"math500_ms": 1000 * verify_cost(math500, "competition"), "n_math500": len(math500),
            "gsm8k_ms": 1000 * verify_cost(gsm8k, "elementary"), "n_gsm8k": len(gsm8k),
            "pathological_s": pathological}


def check_section(cost: dict) -> str:
    return "\n".join([
        "### Answer checking cost (`saerl_hf.answers.is_correct`)",
        "",
        "Regenerate: `python benchmarks/generation.py --part answer-check`. Machine: " + machine() + ".",
        "",
        "| items | path | mean time per item |",
        "|---|---|---:|",
        f"| GSM8K gold solutions ({cost['n_gsm8k']}) | plain numbers, in-process | {cost['gsm8k_ms']:.3f} ms |",
        f"| MATH-500 gold solutions ({cost['n_math500']}) | math-verify in a helper process | "
        f"{cost['math500_ms']:.2f} ms |",
        f"| `\\boxed{{9^{{9^{{9^9}}}}}}` with `timeout_s=1` | helper killed, scored False | "
        f"{cost['pathological_s']:.2f} s |",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--num-threads", type=int, default=None, help="torch threads (1 on a busy shared CPU)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    parser.add_argument("--part", choices=["all", "generation", "answer-check"], default="all")
    args = parser.parse_args(argv)
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    if args.part in ("all", "generation"):
        result = run(args.n_prompts, args.max_new_tokens, args.batch_size, args.model, args.benchmark)
        command = (f"python benchmarks/generation.py --part generation --n-prompts {args.n_prompts} --max-new-tokens "
                   f"{args.max_new_tokens} --batch-size {args.batch_size}"
                   + (f" --num-threads {args.num_threads}" if args.num_threads else ""))
        text = section(result, command)
        print(text)
        if not args.no_write:
            write_section("generation", text)
    if args.part in ("all", "answer-check"):
        text = check_section(answer_check_cost())
        print(text)
        if not args.no_write:
            write_section("answer-check", text, after="generation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
