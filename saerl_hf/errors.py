"""Known errors: the ones whose message already names the fix, shown by the CLI as one ``error: ...`` line.

Anything else is a bug and keeps its traceback. ``saerl-hf --debug <command>`` (or ``SAERL_DEBUG=1``) shows
the traceback of a known error too.
"""

from __future__ import annotations

import os
import sys

__all__ = ["DEBUG_ENV", "KNOWN_ERRORS", "SaerlError", "debug_enabled", "format_error", "is_known"]

#: Environment variable that turns on tracebacks for known errors (any value but "", "0", "false", "no").
DEBUG_ENV = "SAERL_DEBUG"


class SaerlError(Exception):
    """Base of the errors a user can fix (bad data, config, model, SAE, Hub): the message says how.

    Subclasses keep their historical base too (``class DataError(SaerlError, ValueError)``), so existing
    ``except ValueError`` / ``except RuntimeError`` handlers still catch them."""


#: Known errors not (yet) subclassing :class:`SaerlError`, named "module:Class" so that checking an error imports
#: nothing: they are looked up only in modules already imported (a module that raised one is loaded).
#: New error classes should subclass :class:`SaerlError` instead of joining this list.
KNOWN_ERRORS = (
    "saerl_hf.sae:SAELoadError",
    "saerl_hf.sae_load:SAELoadError",  # where sae.py's split puts it
    "saerl_hf.activations:ActivationError",
    "saerl_hf.signals.persistence:SAEMismatchError",
    "saerl_hf.signals.persistence:SignalLabelError",
    "saerl_hf.signals.persistence:ProbeLoadError",
    "saerl_hf.experiment:ExperimentError",
)


def _loaded_known_types() -> tuple[type, ...]:
    types = []
    for spec in KNOWN_ERRORS:
        module_name, class_name = spec.split(":")
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            types.append(cls)
    return tuple(types)


def is_known(err: BaseException) -> bool:
    """True for errors the user can fix from the message alone (see :data:`KNOWN_ERRORS`)."""
    return isinstance(err, SaerlError) or isinstance(err, _loaded_known_types())


def format_error(err: BaseException) -> str:
    """``error: <message>`` on one line (line breaks inside the message become spaces)."""
    message = " ".join(str(err).split()) or type(err).__name__
    return f"error: {message}"


def debug_enabled() -> bool:
    """True when ``SAERL_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
