"""Recipe YAML + command-line flags -> config dataclasses (TRL's ``TrlParser``), with errors that say the fix.

TRL already refuses unknown keys and argparse already refuses values of the wrong type, but one prints a
usage screen and exits, and neither suggests the option that was meant. :func:`parse_config` turns both
into a :class:`ConfigError` naming the option (with a "did you mean" for near-misses) and the fix;
validation errors raised by the dataclasses themselves (``__post_init__``) pass through unchanged.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

__all__ = ["ConfigError", "parse_config", "valid_options"]


class ConfigError(ValueError):
    """An option in a recipe or on the command line that does not exist or has a value of the wrong type."""


# TRL / transformers checks worth a concrete fix (matched on their message).
_HINTS = (
    (re.compile(r"generation_batch_size \((\d+)\) must be divisible by num_generations \((\d+)\)"),
     "Fix: make per_device_train_batch_size x processes x steps_per_generation (default: "
     "gradient_accumulation_steps) a multiple of num_generations, or set generation_batch_size to one."),
)


def valid_options(parser) -> list[str]:
    """Field names of every dataclass the parser fills."""
    names = set()
    for dtype in getattr(parser, "dataclass_types", ()):
        names.update(f.name for f in dataclasses.fields(dtype))
    return sorted(names)


def _describe_unknown(names: list[str], valid: list[str]) -> str:
    out = []
    for name in names:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.75)
        out.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return ", ".join(out)


def parse_config(parser, argv: list[str] | None):
    """``parser.parse_args_and_config(argv)``; unknown options and ill-typed values raise :class:`ConfigError`."""
    prog = getattr(parser, "prog", None) or "saerl-hf"

    def error(message: str):  # argparse's own error(): would print the usage screen and exit(2)
        match = re.search(r"argument (--[\w-]+)", message)
        option = match.group(1).lstrip("-") if match else None
        raise ConfigError(f"{prog}: {message}. Fix: give "
                          + (f"'{option}'" if option else "that option")
                          + " a value of the type shown by --help (in a YAML recipe or as a flag).")

    parser.error = error
    try:
        return parser.parse_args_and_config(args=argv)
    except ConfigError:
        raise
    except ValueError as err:
        text = str(err)
        match = re.search(r"(Unknown arguments from config file|not used by the \w+): \[(.*?)\]", text)
        if match:
            names = [n.strip().strip("'\"") for n in match.group(2).split(",")]
            names = [n.lstrip("-").replace("-", "_") for n in names if n.startswith("--")]
            where = "in the config file" if match.group(1).startswith("Unknown") else "on the command line"
            raise ConfigError(
                f"{prog}: unknown option(s) {where}: {_describe_unknown(names, valid_options(parser))}. Fix: remove "
                f"or rename them (`{prog} --help` lists the valid options)."
            ) from None
        for pattern, hint in _HINTS:
            if pattern.search(text) and "Fix" not in text:
                raise ConfigError(f"{prog}: {text} {hint}") from None
        raise
