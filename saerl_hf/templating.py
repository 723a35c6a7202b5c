"""The one Jinja environment every generated page and card renders through (``templates/*.md``, package data).

Markdown, not HTML: nothing is escaped; block tags take their own line's whitespace and newline
(``trim_blocks``, ``lstrip_blocks``) and a template's final newline is kept, so a template reads like its page.
Missing values render empty (jinja2's default): cards and pages built from older saved files leave a field out.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TEMPLATE_DIR", "environment"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def _counts(counts: dict) -> str:
    """``{"shuffle": 3, "truncate": 2}`` -> ``"3 shuffle, 2 truncate"``."""
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def environment():
    """A fresh environment over :data:`TEMPLATE_DIR` with the shared filters: ``{{ x | f(".3f") }}`` (Python's
    ``format``) and ``counts``. Fresh, so a caller may add its own filters without leaking them to another page."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True,
                             autoescape=jinja2.select_autoescape(("html", "htm", "xml"), default_for_string=False))
    env.filters["f"] = format
    env.filters["counts"] = _counts
    return env
