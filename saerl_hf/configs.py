"""Recipe YAML + command-line flags -> config dataclasses (TRL's ``TrlParser``), with errors that say the fix.

TRL already refuses unknown keys and argparse already refuses values of the wrong type, but one prints a
usage screen and exits, and neither suggests the option that was meant. :func:`parse_config` turns both
into a :class:`ConfigError` naming the option (with a "did you mean" for near-misses) and the fix; so do a
missing or unreadable ``--config`` file and the validation errors the dataclasses raise (``__post_init__``,
whose messages already name the fix), so the CLI shows every one as a single ``error: ...`` line.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path

from saerl_hf.errors import SaerlError, is_known

__all__ = ["ConfigError", "parse_config", "valid_options"]


class ConfigError(SaerlError, ValueError):
    """A recipe or command line that cannot be used: missing file, unknown option, wrong type or invalid value."""


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


def _check_config_file(prog: str, argv: list[str] | None) -> None:
    """A ``--config`` that names no readable YAML file fails here, before TRL opens it."""
    args = list(argv or ())
    if "--config" not in args:
        return
    index = args.index("--config")
    if index + 1 >= len(args) or args[index + 1].startswith("--"):
        raise ConfigError(f"{prog}: --config needs a path. Fix: pass --config <recipe.yaml>.")
    path = Path(args[index + 1])
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(f"{prog}: config file '{path}' {where}. Fix: pass the path of a YAML recipe "
                          "(e.g. one under recipes/<model>/), relative to the current directory or absolute.")


def parse_config(parser, argv: list[str] | None):
    """``parser.parse_args_and_config(argv)``; every problem with the recipe or the flags raises :class:`ConfigError`."""
    import yaml

    prog = getattr(parser, "prog", None) or "saerl-hf"

    def error(message: str):  # argparse's own error(): would print the usage screen and exit(2)
        match = re.search(r"argument (--[\w-]+)", message)
        option = match.group(1).lstrip("-") if match else None
        raise ConfigError(f"{prog}: {message}. Fix: give "
                          + (f"'{option}'" if option else "that option")
                          + " a value of the type shown by --help (in a YAML recipe or as a flag).")

    parser.error = error
    _check_config_file(prog, argv)
    try:
        return parser.parse_args_and_config(args=argv)
    except yaml.YAMLError as err:
        raise ConfigError(f"{prog}: the config file is not valid YAML ({' '.join(str(err).split())}). "
                          "Fix: correct the YAML at the line shown.") from None
    except ValueError as err:
        if isinstance(err, ConfigError) or is_known(err):
            raise
        raise _as_config_error(prog, parser, str(err)) from err


def _as_config_error(prog: str, parser, text: str) -> ConfigError:
    """TRL's unknown-key complaints get a did-you-mean, known TRL checks a fix; the rest keep their message."""
    match = re.search(r"(Unknown arguments from config file|not used by the \w+): \[(.*?)\]", text)
    if match:
        names = [n.strip().strip("'\"") for n in match.group(2).split(",")]
        names = [n.lstrip("-").replace("-", "_") for n in names if n.startswith("--")]
        where = "in the config file" if match.group(1).startswith("Unknown") else "on the command line"
        return ConfigError(
            f"{prog}: unknown option(s) {where}: {_describe_unknown(names, valid_options(parser))}. Fix: remove "
            f"or rename them (`{prog} --help` lists the valid options)."
        )
    for pattern, hint in _HINTS:
        if pattern.search(text) and "Fix" not in text:
            return ConfigError(f"{prog}: {text} {hint}")
    return ConfigError(f"{prog}: {text}")  # a dataclass's own validation: its message names the fix
