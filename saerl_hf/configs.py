"""Recipe YAML + command-line flags -> config dataclasses (TRL's ``TrlParser``), with errors that say the fix.

TRL already refuses unknown keys and argparse already refuses values of the wrong type, but one prints a
usage screen and exits, and neither suggests the option that was meant. :func:`parse_config` turns both
into a :class:`ConfigError` naming the option (with a "did you mean" for near-misses) and the fix; so do a
missing or unreadable ``--config`` file and the validation errors the dataclasses raise (``__post_init__``,
whose messages already name the fix), so the CLI shows every one as a single ``error: ...`` line.

Renamed options (:data:`RENAMED_OPTIONS`) keep working for one release: the old spelling, in a recipe or as a
flag, is rewritten to the new one before TRL sees it, with a ``FutureWarning`` (and a logged line) naming the
new key, so a recipe reader learns one word per concept.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from saerl_hf.errors import SaerlError, is_known

__all__ = ["RENAMED_OPTIONS", "ConfigError", "parse_config", "renamed_kwargs", "upgrade_options", "valid_options",
           "warn_renamed"]

logger = logging.getLogger(__name__)


class ConfigError(SaerlError, ValueError):
    """A recipe or command line that cannot be used: missing file, unknown option, wrong type or invalid value."""


# TRL / transformers checks worth a concrete fix (matched on their message).
_HINTS = (
    (re.compile(r"generation_batch_size \((\d+)\) must be divisible by num_generations \((\d+)\)"),
     "Fix: make per_device_train_batch_size x processes x steps_per_generation (default: "
     "gradient_accumulation_steps) a multiple of num_generations, or set generation_batch_size to one."),
)


_BOOL_WORDS = ("true", "false", "yes", "no", "y", "n", "1", "0")


def _push_to_hub_repo(value):
    """curate's old ``push_to_hub: <repo id>`` -> ``push_to_hub: true`` + ``hub_dataset_id`` (TRL: a bool + an id)."""
    if isinstance(value, str) and value.strip().lower() not in _BOOL_WORDS:
        return {"push_to_hub": True, "hub_dataset_id": value}
    return None  # a bool (or null): not deprecated


#: Old option names, accepted until the next release, per config class (by class name: no import needed here).
#: ``old: new`` renames; ``key: function`` maps a deprecated *value* to the new items (None: the value is fine).
#: An entry applies only to a parser whose dataclasses have the new field and not the old one.
RENAMED_OPTIONS: dict[str, dict[str, str | Callable]] = {
    "CurateConfig": {"sae_width": "d_sae", "order": "curriculum", "mixing": "curriculum_mixing",
                     "push_to_hub": _push_to_hub_repo},
    "FeaturizeConfig": {"sae_width": "d_sae"},
    "ReportSignalsConfig": {"sae_width": "d_sae", "clusters_k": "n_clusters"},
    "DemoConfig": {"sae_width": "d_sae"},
    "PushConfig": {"revision": "hub_revision"},  # the write revision, as curate / GRPO (TRL) name it
}


def warn_renamed(old: str, new: str, where: str = "saerl-hf") -> None:
    """One deprecation: a ``FutureWarning`` and a logged line, both naming the new spelling."""
    message = f"{where}: '{old}' is deprecated and will be removed in the next release; use '{new}' instead."
    warnings.warn(message, FutureWarning, stacklevel=3)
    logger.warning(message)


def _renames(dataclass_types) -> dict[str, str | Callable]:
    """The entries of :data:`RENAMED_OPTIONS` that apply to these dataclasses."""
    names = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype)}
    out: dict[str, str | Callable] = {}
    for dtype in dataclass_types:
        for old, new in RENAMED_OPTIONS.get(dtype.__name__, {}).items():
            if callable(new) or (new in names and old not in names):
                out[old] = new
    return out


def _new_items(new, value) -> tuple[str, dict | None]:
    """(the new spelling, for the warning; the new items, None when the value is not deprecated) of one old key."""
    if not callable(new):
        return new, {new: value}
    items = new(value)
    return " + ".join(f"{k}: {_yaml(v)}" for k, v in (items or {}).items()), items


def _yaml(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def upgrade_options(values: dict, dataclass_types, where: str = "saerl-hf", warn: bool = True) -> dict:
    """A recipe mapping with every deprecated key rewritten to its new spelling (warned unless ``warn=False``:
    saved configs, e.g. of a resumed curate run or a cached report, upgrade silently)."""
    out = dict(values)
    for old, new in _renames(dataclass_types).items():
        spelled, items = _new_items(new, out[old]) if old in out else ("", None)
        if items is None:
            continue
        clash = sorted(k for k in items if k != old and k in out)
        if clash:
            raise ConfigError(f"{where}: both '{old}' (deprecated) and '{clash[0]}' are set. Fix: keep only "
                              f"'{clash[0]}'.")
        if warn:
            warn_renamed(f"{old}: {out[old]}" if callable(new) else old, spelled, where)
        del out[old]
        out.update(items)
    return out


def _upgrade_argv(argv: list[str], renames: dict, where: str) -> list[str]:
    """Command-line flags with every deprecated option rewritten (``--old v``, ``--old=v``, ``--old-name v``)."""
    names = [a[2:].partition("=")[0].replace("-", "_") if a.startswith("--") else None for a in argv]
    out, skip = [], False
    for i, (token, name) in enumerate(zip(argv, names)):
        if skip:
            skip = False
            continue
        new = renames.get(name)
        if new is None:
            out.append(token)
            continue
        inline = token.partition("=")[2] if "=" in token else None
        value = inline if inline is not None else (argv[i + 1] if i + 1 < len(argv) and names[i + 1] is None
                                                   else None)
        spelled, items = _new_items(new, value) if value is not None or not callable(new) else ("", None)
        if items is None:
            out.append(token)
            continue
        clash = sorted(k for k in items if k != name and k in names)
        if clash:
            raise ConfigError(f"{where}: both '--{name}' (deprecated) and '--{clash[0]}' are given. Fix: keep only "
                              f"'--{clash[0]}'.")
        if not callable(new):  # a plain rename: only the flag changes (its values follow it, however many)
            warn_renamed(f"--{name}", f"--{new}", where)
            out.append(f"--{new}" + (f"={inline}" if inline is not None else ""))
            continue
        warn_renamed(f"--{name} {value}", " ".join(f"--{k} {_yaml(v)}" for k, v in items.items()), where)
        out += [part for k, v in items.items() for part in (f"--{k}", _yaml(v))]
        skip = inline is None
    return out


def renamed_kwargs(**renames: str):
    """Decorator: a function's old keyword names still work for one release (``FutureWarning`` naming the new)."""

    def wrap(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{func.__name__}() got both '{old}' (deprecated) and '{new}'; keep '{new}'.")
                    warn_renamed(f"{func.__name__}({old}=...)", f"{new}=", "saerl-hf")
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return inner

    return wrap


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
    dataclass_types = getattr(parser, "dataclass_types", ())
    renames = _renames(dataclass_types)
    if renames:
        argv = _upgrade_argv(list(sys.argv[1:] if argv is None else argv), renames, prog)
        set_defaults = parser.set_defaults_with_config  # TRL hands it the recipe's mapping: upgrade it first
        parser.set_defaults_with_config = lambda **values: set_defaults(
            **upgrade_options(values, dataclass_types, prog))
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
