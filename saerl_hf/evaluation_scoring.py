"""Scoring of the benchmark runner: math-verify verdicts per completion, avg@k / pass@k and breakdowns."""

from __future__ import annotations

import math
from collections import defaultdict

from saerl_hf.answers import extract_answer, is_correct


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples per item, got {n}.")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def score_outputs(outputs: list, gold, family: str, timeout_s: float = 5.0) -> list[bool]:
    """Verdict per completion; a missing gold or a non-string completion is a documented 0, not an error."""
    if not isinstance(gold, str) or not gold.strip():
        return [False] * len(outputs)
    return [bool(is_correct(output, gold, family, timeout_s=timeout_s)) for output in outputs]


def summarize(items: list[dict], n_samples: int) -> dict:
    """avg@k, pass@k, counts and per-level / per-subject accuracy of one benchmark's scored items."""
    scored = [item for item in items if item.get("verdicts")]
    summary = {"n_items": len(scored), "n_samples": n_samples}
    if not scored:
        return {**summary, "accuracy": 0.0}
    avg = [sum(item["verdicts"]) / len(item["verdicts"]) for item in scored]
    summary["accuracy"] = sum(avg) / len(avg)
    if n_samples > 1:
        summary[f"avg@{n_samples}"] = summary["accuracy"]
        summary[f"pass@{n_samples}"] = sum(
            pass_at_k(len(i["verdicts"]), sum(i["verdicts"]), n_samples) for i in scored) / len(scored)
    summary["truncated"] = sum(i.get("truncated", 0) for i in scored) / sum(len(i["verdicts"]) for i in scored)
    summary["no_answer"] = sum(i.get("no_answer", 0) for i in scored) / sum(len(i["verdicts"]) for i in scored)
    for key in ("level", "subject"):
        groups: dict = defaultdict(list)
        for item, value in zip(scored, avg):
            if item.get(key) is not None:
                groups[item[key]].append(value)
        if groups:
            ordered = sorted(groups, key=lambda g: (isinstance(g, str), g))
            summary[f"by_{key}"] = {str(_tidy_level(g)): sum(groups[g]) / len(groups[g]) for g in ordered}
            summary[f"count_by_{key}"] = {str(_tidy_level(g)): len(groups[g]) for g in ordered}
    return summary


def _tidy_level(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _score_item(row: dict, completions: list[str], family: str, n_tokens: list[int], stopped: list[bool],
                timeout_s: float) -> dict:
    gold = row.get("answer")
    verdicts = score_outputs(completions, gold, family, timeout_s)
    item = {
        "id": row["id"], "source": row.get("source"), "subject": row.get("subject"), "level": row.get("level"),
        "answer": gold, "outputs": completions,
        "extracted": [extract_answer(text, family) for text in completions],
        "verdicts": verdicts, "new_tokens": list(n_tokens),
        "truncated": sum(not s for s in stopped),
        "no_answer": sum(not text or not text.strip() for text in completions),
    }
    if not isinstance(gold, str) or not gold.strip():
        item["error"] = "missing gold answer: scored 0"
    return item
