"""Interpretable signals: top latents, their highest-activating prompts and labels, per-row contributions, and the
dataset card's "What the probes look at" section; synthetic features whose latents each come with a word."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from saerl_hf.signals import DifficultyConfig, DifficultyProbe, QualityConfig, QualityProbe
from saerl_hf.signals.explain import (
    describe_latents,
    distinctive_words,
    explain,
    probe_explanations,
    snippet,
    top_latents,
)
from saerl_hf.sparse import write_provenance

D_SAE = 48
WORDS = [f"{a}{b}" for a in ("alpha", "bravo", "delta", "gamma", "kilo", "lima") for b in ("ton", "ria", "vex", "zor",
                                                                                          "mun", "pel", "quo", "sid")]
PROVENANCE = {"model": "r", "layer": 1, "hook": "model.layers.1", "sae": "s", "sae_hash": "h", "d_sae": D_SAE,
              "d_in": 8, "pooling": "mean", "top_k": None}
WEIGHTS = np.zeros(D_SAE)
WEIGHTS[[3, 7, 11]] = [2.0, -1.5, 1.0]  # level is driven by latents 3, 7 (negatively) and 11


def worded_set(n, seed, pooling="mean"):
    """Each active latent j puts WORDS[j] into the prompt text; level = WEIGHTS . log1p(values) + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n):
        idx = np.sort(rng.choice(D_SAE, size=6, replace=False))
        val = rng.exponential(2.0, size=6)
        x = np.zeros(D_SAE)
        x[idx] = np.log1p(val)
        text = f"Problem {r}: " + " ".join(WORDS[j] for j in rng.permutation(idx)) + " and the rest of it."
        rows.append({"problem": text, "sae_idx": idx.tolist(), "sae_val": val.tolist(), "sae_l0": 6,
                     "dense_mean": rng.normal(size=8).tolist(), "level": float(x @ WEIGHTS + rng.normal(scale=0.1)),
                     "is_clean": int(x[3] == 0)})
    return write_provenance(Dataset.from_list(rows), {**PROVENANCE, "pooling": pooling})


@pytest.fixture(scope="module")
def pool():
    return worded_set(300, 0)


@pytest.fixture(scope="module")
def difficulty(pool):
    return DifficultyProbe(DifficultyConfig(cv=3, n_alphas=6)).fit(pool)


def test_top_latents_are_the_driving_ones_with_their_words_as_labels(difficulty, pool):
    top = top_latents(difficulty, 3)
    assert [t["latent"] for t in top] == [3, 7, 11] and top[1]["weight"] < 0
    described = describe_latents(top, pool, n_examples=4)
    for latent in described:
        assert latent["label"].split(", ")[0] == WORDS[latent["latent"]]  # the latent's own word comes first
        assert "problem" not in latent["label"]  # in every pool prompt: not distinctive
        assert all(WORDS[latent["latent"]] in example for example in latent["examples"])
        assert latent["activation"] == sorted(latent["activation"], reverse=True) and latent["n_active"] > 10


def test_explain_row_contributions_add_up_to_the_score(difficulty, pool):
    row = pool[5]
    explained = difficulty.explain(row, k=3)
    assert explained["raw"] == pytest.approx(difficulty.predict(pool.select([5]))[0], abs=1e-9)
    total = explained["intercept"] + sum(t["contribution"] for t in explained["top"]) + explained["rest"]
    assert total == pytest.approx(explained["raw"], abs=1e-9)
    magnitudes = [abs(t["contribution"]) for t in explained["top"]]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert {t["latent"] for t in explained["top"]} <= set(row["sae_idx"])  # only active latents contribute (log1p)


def test_explain_both_probes_and_the_hybrid_dense_block_is_named(pool):
    quality = QualityProbe(QualityConfig(Cs=4, cv=3)).fit(pool)
    hybrid = DifficultyProbe(DifficultyConfig(features="sae+dense", cv=3, n_alphas=6)).fit(pool)
    both = explain(pool[0], difficulty=hybrid, quality=quality, k=4)
    assert set(both) == {"difficulty", "quality"} and 0 < both["quality"]["score"] < 1
    assert both["quality"]["score"] == pytest.approx(quality.predict(pool.select([0]))[0], abs=1e-9)
    assert all(t["latent"] is None and t["name"].startswith("dense[") for t in both["difficulty"]["top"]
               if t["column"] >= D_SAE)
    assert all(t["column"] < D_SAE for t in top_latents(hybrid, 10))  # dense dimensions are not latents


def test_mean_max_columns_name_the_latent_and_the_part():
    wide = worded_set(200, 1, pooling="mean+max")
    rows = wide.to_list()
    for row in rows:  # only the max half of each latent is stored
        row["sae_idx"] = [i + D_SAE for i in row["sae_idx"]]
    probe = DifficultyProbe(DifficultyConfig(cv=3, n_alphas=6)).fit(
        write_provenance(Dataset.from_list(rows), {**PROVENANCE, "pooling": "mean+max", "n_features": 2 * D_SAE}))
    top = top_latents(probe, 1)[0]
    assert top["latent"] == 3 and top["part"] == "max" and top["name"] == "latent 3 (max)"


def test_labels_and_snippets():
    assert distinctive_words(["a triangle area", "the triangle sides"], ["x", "a triangle area", "cats dogs"] * 5,
                             n=1) == ["triangle"]
    assert snippet("a | b\n c", 100) == "a \\| b c" and len(snippet("x" * 300, 50)) == 50


def test_card_shows_what_the_probes_look_at_only_when_given(difficulty, pool):
    from saerl_hf.cards import render_card

    record = {"dataset_sha256": "0" * 64, "splits": {"train": 1}, "artefacts": {}, "push_command": "saerl-hf push",
              "versions": {}}
    plain = render_card("", "me/data", "v1", {"sae": "s"}, {"command": "c"}, record, [("id", "string")])
    assert "What the probes look at" not in plain
    explanations = probe_explanations(pool, difficulty=difficulty, k=2)
    card = render_card("", "me/data", "v1", {"sae": "s"}, {"command": "c"}, record, [("id", "string")],
                       explanations=explanations)
    assert "## What the probes look at" in card and "### difficulty (higher = harder; sae features)" in card
    assert f"| latent 3 | +{difficulty.coef[3]:.3f} | {WORDS[3]}" in card
    stored = render_card("", "me/data", "v1", {"sae": "s"}, {"command": "c", "explanations": explanations}, record,
                         [("id", "string")])
    assert stored == card  # curate may keep them in summary.json instead
