"""Prose that nobody here wrote: first paragraphs of docstrings in the sources of installed packages.

Read with ``ast`` (never imported, so nothing runs). Two users draw on disjoint packages: the quality probe's
held-out negatives (:data:`REAL_TEXT_PACKAGES`, :func:`saerl_hf.signals.corruptions.real_text_negatives`) and
the general text mixed into the SAE's training text (:func:`saerl_hf.sae_data.general_texts`), which must never
see the held-out packages.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import re
from pathlib import Path

#: Held-out quality negatives: no training text (probe or SAE) may come from these packages.
REAL_TEXT_PACKAGES = ("numpy", "scipy", "sklearn", "datasets")


def package_source_files(packages: tuple[str, ...] | list[str]) -> list[Path]:
    """The ``.py`` files of each package's source dir, sorted per package, tests left out."""
    files = []
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"Package '{package}' is not installed (or has no source dir). Fix: install it or pass "
                             f"packages= without it.")
        root = Path(list(spec.submodule_search_locations)[0])
        files += [f for f in sorted(root.rglob("*.py")) if "tests" not in f.relative_to(root).parts]
    return files


def docstring_paragraphs(files: list[Path], stop_at: int, min_words: int = 8, max_words: int = 60,
                         exclude: frozenset[str] = frozenset()) -> set[str]:
    """Distinct first paragraphs (``min_words``-``max_words`` words, doctests and reST directives left out, none of
    ``exclude``) of the module, class and function docstrings of ``files``, read in the given order until there
    are ``stop_at``."""
    found: set[str] = set()
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = first_paragraph(ast.get_docstring(node))
                if text and min_words <= len(text.split()) <= max_words and text not in exclude:
                    found.add(text)
        if len(found) >= stop_at:
            break
    return found


_TRIPLE_QUOTED = re.compile(r"(?s)(\"\"\"|''')(.*?)\1")


@functools.lru_cache(maxsize=4)
def held_out_paragraphs(packages: tuple[str, ...] = REAL_TEXT_PACKAGES) -> frozenset[str]:
    """First paragraphs of every triple-quoted string in ``packages``: what other text must not repeat, since
    packages copy docstrings from each other (torch and pandas carry some of numpy's). A regex scan (seconds, where
    ``ast`` takes minutes) that finds a superset of :func:`docstring_paragraphs` but for docstrings with escapes."""
    found = set()
    for path in package_source_files(packages):
        try:
            source = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found.update(p for p in (first_paragraph(m.group(2)) for m in _TRIPLE_QUOTED.finditer(source)) if p)
    return frozenset(found)


def first_paragraph(docstring: str | None) -> str:
    """A docstring's first paragraph on one line; '' for none, a doctest or a reST directive."""
    if not docstring:
        return ""
    text = " ".join(inspect.cleandoc(docstring).split("\n\n")[0].split())
    return "" if ">>>" in text or text.startswith("..") else text
