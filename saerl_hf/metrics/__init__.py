"""``evaluate`` metric modules shipped with the package (loadable offline by path).

>>> import evaluate
>>> from saerl_hf.metrics import MATH_ACCURACY_PATH
>>> metric = evaluate.load(MATH_ACCURACY_PATH)
"""

from __future__ import annotations

from pathlib import Path

#: Path of the math-accuracy metric script; pass it to ``evaluate.load``.
MATH_ACCURACY_PATH = str(Path(__file__).resolve().parent / "math_accuracy" / "math_accuracy.py")

__all__ = ["MATH_ACCURACY_PATH"]
