"""The one token redactor: command lines and messages lose access tokens before they reach logs, cards or records.

A token reaches saerl-hf from the environment (``HF_TOKEN``) or the saved ``huggingface-cli login``; a token
given on the command line is masked wherever that command line is echoed.
"""

from __future__ import annotations

import re
import shlex
import sys

MASK = "REDACTED"
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9_]{8,}")
# Flags whose value is a secret (argparse / HfArgumentParser spell them with '-' or '_').
SECRET_FLAGS = ("--token", "--hub-token", "--hub_token", "--hf-token", "--hf_token")


def redact(text: str, token: str | None = None) -> str:
    """``text`` with ``token`` and anything shaped like a Hugging Face token (``hf_...``) masked."""
    if token:
        text = text.replace(token, MASK)
    return TOKEN_PATTERN.sub(f"hf_{MASK}", text)


def redact_argv(argv: list[str] | None = None) -> list[str]:
    """``argv`` (default ``sys.argv``) with the value of every secret flag and anything token-shaped masked;
    the flags themselves stay, so the command still reads as run."""
    out, hide = [], False
    for arg in list(sys.argv if argv is None else argv):
        if hide:
            out.append(MASK)
            hide = False
        elif arg in SECRET_FLAGS:
            out.append(arg)
            hide = True
        elif arg.startswith(tuple(f"{flag}=" for flag in SECRET_FLAGS)):
            out.append(arg.split("=", 1)[0] + f"={MASK}")
        else:
            out.append(redact(arg))
    return out


def redacted_command(argv: list[str] | None = None) -> str:
    """The command line as run (shell-quoted), with secrets masked (see :func:`redact_argv`)."""
    out = redact_argv(argv)
    if out and out[0].endswith(("saerl-hf", "cli.py")):
        out[0] = "saerl-hf"
    return shlex.join(out)
