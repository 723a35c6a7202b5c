"""Benchmark runner: generate with the fixed prompt per family, score with math-verify, report.

``saerl-hf evaluate`` and :func:`evaluate_model` (for in-memory models, e.g. a held-out check inside the
GRPO loop) share one code path. Every setting, the seed and library versions go into ``results.json``
with the per-item outputs, which is rewritten after every batch so a killed run resumes where it stopped.

Split along its seams: :mod:`saerl_hf.evaluation_runner` (generate, resume, record),
:mod:`saerl_hf.evaluation_scoring` (verdicts, avg@k / pass@k), :mod:`saerl_hf.evaluation_reports` (table,
figures, compare); this module keeps the command-line options and entry points, and every public name stays
importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from saerl_hf.evaluation_reports import (
    RESULTS_FORMAT,
    compare_results,
    load_results,
    results_markdown,
    safe_file_stem,
    write_figures,
)
from saerl_hf.evaluation_runner import DEFAULT_MAX_NEW_TOKENS, evaluate_model, library_versions, machine_info
from saerl_hf.evaluation_scoring import pass_at_k, score_outputs, summarize


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
           "results_markdown", "summarize", "score_outputs", "cli_main", "compare_main", "DEFAULT_MAX_NEW_TOKENS",
           "RESULTS_FORMAT", "library_versions", "machine_info", "safe_file_stem", "write_figures"]
