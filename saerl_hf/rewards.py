"""GRPO reward functions, registered by name (open-r1 style) and called the TRL way.

TRL calls ``f(prompts=..., completions=..., completion_ids=..., **columns)`` where every dataset column
(``answer``, ``source``, ``difficulty``, ...) arrives as a list aligned with ``completions``. Each function
returns one float per completion and never raises on garbage output: a 135M policy produces plenty.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from saerl_hf.prompts import ANSWER_CUE, cut_completion, family_of

logger = logging.getLogger(__name__)

#: Per-completion bound on the symbolic check (answers.is_correct kills the helper past it: scored 0).
REWARD_TIMEOUT_S = 5.0
_ANSWER_MARKER = re.compile(r"answer\s*[:：]\s*(\S*)", re.IGNORECASE)
_NUMBER = re.compile(r"^-?\$?\d[\d,]*(?:\.\d+)?")


def completion_text(completion) -> str:
    """Plain text of a completion: a string (standard format) or a list of messages (conversational)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = [m.get("content", "") for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        return "".join(p if isinstance(p, str) else str(p) for p in parts)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return "" if completion is None else str(completion)


def _broadcast(values, n: int) -> list:
    if values is None:
        return [None] * n
    values = list(values)
    return values if len(values) == n else (values + [None] * n)[:n]


def correctness_reward(completions, answer=None, source=None, **kwargs) -> list[float]:
    """1.0 when the completion's final answer equals ``answer`` (math-verify, bounded time), else 0.0.

    The answer family (``Answer: <number>`` for word problems, ``\\boxed{}`` for competition math) comes from
    the ``source`` column, the same rule the prompt and the evaluation use.
    """
    from saerl_hf.answers import is_correct

    n = len(completions)
    golds, sources = _broadcast(answer, n), _broadcast(source, n)
    out = []
    for completion, gold, src in zip(completions, golds, sources):
        try:
            ok = gold is not None and is_correct(completion_text(completion), str(gold), family_of(src), timeout_s=REWARD_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - a reward must never stop training
            logger.debug("correctness reward failed; scored 0", exc_info=True)
            ok = False
        out.append(1.0 if ok else 0.0)
    return out


def _boxed_content(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + len("\\boxed{") : i]
        i += 1
    return None


def format_reward(completions, source=None, prompts=None, **kwargs) -> list[float]:
    """Partial credit for stating an answer the way the prompt asks (dense signal while correctness is sparse).

    Word problems: 1.0 for ``Answer: <number>``, 0.5 for the marker without a number. Competition math:
    1.0 for a non-empty ``\\boxed{...}``, 0.5 for an unclosed or empty one. Otherwise 0.0. A few-shot text
    prompt (base models) already ends with ``Answer:``, so there the completion itself must open with the
    answer; only the text before the model invents a next ``Question:`` counts.
    """
    n = len(completions)
    out = []
    for completion, src, prompt in zip(completions, _broadcast(source, n), _broadcast(prompts, n)):
        try:
            text = cut_completion(completion_text(completion))[-20_000:]
            if isinstance(prompt, str) and prompt.rstrip().endswith(ANSWER_CUE):
                text = ANSWER_CUE + text if text.strip() else ""  # the marker is the prompt's, not an answer
            if family_of(src) == "elementary":
                matches = list(_ANSWER_MARKER.finditer(text))
                if not matches:
                    score = 0.0
                else:
                    score = 1.0 if _NUMBER.match(matches[-1].group(1) or "") else 0.5
            else:
                content = _boxed_content(text)
                score = 1.0 if content and content.strip() else (0.5 if "\\boxed" in text else 0.0)
        except Exception:  # noqa: BLE001
            score = 0.0
        out.append(score)
    return out


REWARD_FUNCS: dict[str, Callable] = {
    "correctness": correctness_reward,
    "format": format_reward,
}


def get_reward_funcs(names) -> list[Callable]:
    """Reward functions by registry name (``correctness``, ``format``); a clear error lists the known ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    funcs = []
    for name in names:
        if name not in REWARD_FUNCS:
            raise ValueError(f"unknown reward function '{name}'. Known: {', '.join(REWARD_FUNCS)}.")
        funcs.append(REWARD_FUNCS[name])
    if not funcs:
        raise ValueError(f"no reward function given. Choose from: {', '.join(REWARD_FUNCS)}.")
    return funcs
