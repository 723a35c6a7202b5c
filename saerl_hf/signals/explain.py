"""What the linear probes look at, in words and examples: the latents with the largest weights, the pool prompts
that light each one up most, a short automatic label, and per row the latents that drove its score.

- :func:`top_latents`: the SAE columns of a difficulty / quality probe with the largest |weight| (weights are on
  the probe's own preprocessed scale, the one the fit regularised).
- :func:`describe_latents`: for each, its highest-activating pool prompts (snippets) and a label: the words most
  over-represented in those prompts against the whole pool (log-odds of document frequencies, add-one smoothed).
- :func:`explain_row` / :func:`explain`: one featurized row's score split into ``weight x value`` contributions;
  the contributions plus the intercept give the raw score (before the quality probe's sigmoid) exactly.
- :func:`probe_explanations`: the block the dataset card's "What the probes look at" section renders.

A column ``i`` is latent ``i``, except under a two-part pooling (``mean+max``, ``mean+last``) where
``i >= d_sae`` is the second part (max, last token) of latent ``i - d_sae``, and for a probe that reads one
part only (``pooling_part``) where ``i`` is that part's latent ``i``; the dense block of a hybrid probe is named ``dense[j]`` (no latent behind it).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
from scipy import sparse as sp

from saerl_hf.pooling import TWO_PART
from saerl_hf.signals.matrix import (
    DENSE,
    HYBRID,
    SAE,
    apply_scaler,
    batch_matrix,
    dataset_matrix,
    part_columns,
    transform,
)

_WORD = re.compile(r"\\[a-zA-Z]+|[a-zA-Z]{3,}")
STOPWORDS = frozenset(
    "the and for are but not you all any can had her was one our out has him his how its may new now old see two "
    "way who did get let put say she too use that with have this will your from they know want been good much some "
    "time very when come here just like long make many more only over such take than them then well were what "
    "which their there these into each other about would could should after first also where does find what".split()
)


def _column_name(column: int, identity: dict) -> dict:
    """Latent, pooling part and display name of SAE column ``column`` (of a model that reads one part of a
    two-part pooling, its ``pooling_part``: column 0 is the part's first latent)."""
    columns = part_columns(identity)
    if columns is not None:
        column += columns[0]
    d_sae = int(identity.get("d_sae") or 0)
    pooling = identity.get("pooling") or "mean"
    if pooling in TWO_PART and d_sae and column >= d_sae:
        part = TWO_PART[pooling][1]
        return {"latent": column - d_sae, "part": part, "name": f"latent {column - d_sae} ({part})"}
    part = TWO_PART[pooling][0] if pooling in TWO_PART else pooling
    return {"latent": column, "part": part, "name": f"latent {column}"}


def _sae_columns(probe) -> int:
    """How many leading columns of the probe are SAE columns (all of them unless hybrid; none if dense)."""
    if probe.features == DENSE:
        return 0
    return probe.split if probe.features == HYBRID else probe.width


def top_latents(probe, k: int = 10) -> list[dict]:
    """The ``k`` SAE columns with the largest |weight| (non-zero only): ``column``, ``latent``, ``part``, ``name``,
    ``weight``. A dense-only probe has none (its dimensions are not latents)."""
    probe._require_fitted()
    n_sae = _sae_columns(probe)
    weights = probe.coef[:n_sae]
    order = [int(c) for c in np.argsort(-np.abs(weights), kind="stable")[:k] if weights[c] != 0]
    return [{"column": c, **_column_name(c, probe.identity), "weight": float(weights[c])} for c in order]


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text or "") if w.lower() not in STOPWORDS}


def distinctive_words(texts: list[str], pool_texts: list[str], n: int = 3) -> list[str]:
    """The ``n`` words most over-represented in ``texts`` against ``pool_texts`` (log-odds of the share of
    documents holding the word, add-one smoothed), over-represented ones only, preferring words in at least two
    of ``texts``."""
    top = Counter(w for t in texts for w in _words(t))
    pool = Counter(w for t in pool_texts for w in _words(t))
    n_top, n_pool = max(len(texts), 1), max(len(pool_texts), 1)

    def log_odds(word: str) -> float:
        p, q = (top[word] + 1) / (n_top + 2), (pool[word] + 1) / (n_pool + 2)
        return math.log(p / (1 - p)) - math.log(q / (1 - q))

    over = [w for w in top if log_odds(w) > 0]  # words no more frequent here than in the pool say nothing
    candidates = [w for w in over if top[w] >= 2] or over
    return sorted(candidates, key=lambda w: (-log_odds(w), w))[:n]


def snippet(text: str, chars: int = 120) -> str:
    """One line of at most ``chars`` characters, safe inside a Markdown table cell."""
    line = " ".join(str(text or "").split()).replace("|", "\\|")
    return line if len(line) <= chars else line[: chars - 1].rstrip() + "…"


def describe_latents(latents: list[dict], pool, n_examples: int = 3, text_column: str = "problem",
                     n_label_words: int = 3, width: int | None = None,
                     columns: tuple[int, int, int] | None = None) -> list[dict]:
    """Each latent of ``latents`` (as :func:`top_latents` gives) with ``examples`` (snippets of the pool prompts
    where its column is largest), ``activation`` (their values) and ``label`` (its distinctive words). ``columns``:
    the probe's part of a two-part pooling (``probe.columns``), so columns are numbered as the probe numbers them."""
    matrix = dataset_matrix(pool, SAE, width=width, columns=columns).tocsc()
    texts = list(pool[text_column])
    out = []
    for latent in latents:
        column = matrix.getcol(latent["column"])
        rows, values = column.indices, column.data
        best = rows[np.argsort(-values, kind="stable")[:n_examples]]
        top_texts = [texts[r] for r in best]
        out.append({**latent, "examples": [snippet(t) for t in top_texts],
                    "activation": [float(v) for v in np.sort(values)[::-1][:n_examples]],
                    "n_active": int(len(rows)),
                    "label": ", ".join(distinctive_words(top_texts, texts, n_label_words)) or "(never active)"})
    return out


def _row_batch(row) -> dict:
    """A featurized row (dict, or a one-row dataset) as a one-row map batch."""
    if hasattr(row, "column_names"):
        row = row[0]
    batch = {"sae_idx": [row["sae_idx"]], "sae_val": [row["sae_val"]]}
    if DENSE in row:
        batch[DENSE] = [row[DENSE]]
    return batch


def explain_row(probe, row, k: int = 5) -> dict:
    """The ``k`` columns with the largest |contribution| (``weight x preprocessed value``) to ``row``'s score:
    ``{"score", "raw", "intercept", "top": [...], "rest"}``; ``intercept + sum(all contributions) == raw``."""
    probe._require_fitted()
    matrix = batch_matrix(_row_batch(row), probe.features, probe.width, columns=probe.columns)
    design = apply_scaler(transform(matrix, probe.config.scaling, probe.split), probe.center, probe.scale)
    values = design.toarray().ravel() if sp.issparse(design) else np.asarray(design).ravel()
    contributions = values * probe.coef
    raw = float(probe.intercept + contributions.sum())
    n_sae = _sae_columns(probe)
    order = [int(c) for c in np.argsort(-np.abs(contributions), kind="stable")[:k] if contributions[c] != 0]
    top = []
    for c in order:
        name = _column_name(c, probe.identity) if c < n_sae else {"latent": None, "part": "dense",
                                                                  "name": f"dense[{c - n_sae}]"}
        top.append({"column": c, **name, "value": float(values[c]), "weight": float(probe.coef[c]),
                    "contribution": float(contributions[c])})
    score = 1.0 / (1.0 + math.exp(-raw)) if probe.LINK == "sigmoid" else raw
    return {"score": score, "raw": raw, "intercept": float(probe.intercept), "top": top,
            "rest": float(contributions.sum() - sum(t["contribution"] for t in top))}


def explain(row, difficulty=None, quality=None, k: int = 5) -> dict:
    """Which latents drove one featurized row's difficulty and quality scores (see :func:`explain_row`)."""
    return {name: explain_row(probe, row, k) for name, probe in (("difficulty", difficulty), ("quality", quality))
            if probe is not None}


def probe_explanations(pool, difficulty=None, quality=None, k: int = 5, n_examples: int = 3,
                       text_column: str = "problem") -> list[dict]:
    """For the dataset card: per probe, its top latents described on ``pool`` (``signal``, ``features``,
    ``direction`` and ``latents``)."""
    out = []
    for signal, probe, direction in (("difficulty", difficulty, "harder"), ("quality", quality, "cleaner")):
        if probe is None or probe.features == DENSE:
            continue
        width = probe.split if probe.features == HYBRID else probe.width
        latents = describe_latents(top_latents(probe, k), pool, n_examples, text_column, width=width,
                                   columns=probe.columns)
        out.append({"signal": signal, "features": probe.features, "direction": direction, "latents": latents})
    return out
