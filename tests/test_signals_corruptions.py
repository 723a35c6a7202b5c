"""Quality negatives from real MATH / GSM8K problems: determinism, every kind, and what each kind does."""

from __future__ import annotations

import re

import pytest

from saerl_hf.data import load_math_dataset
from saerl_hf.signals.corruptions import (
    KINDS,
    OFF_DOMAIN_PROMPTS,
    corruption_counts,
    make_quality_dataset,
    off_domain_prompts,
    remove_numbers,
)


@pytest.fixture(scope="module")
def clean(data_dir):
    return load_math_dataset("gsm8k", split="test", limit=120)


def test_same_seed_same_rows_other_seed_other_rows(clean):
    a = make_quality_dataset(clean, seed=3)
    b = make_quality_dataset(clean, seed=3)
    c = make_quality_dataset(clean, seed=4)
    assert a.to_dict() == b.to_dict()
    assert a["problem"] != c["problem"]


def test_problem_only_kinds_and_their_effects(clean):
    data = make_quality_dataset(clean, seed=0, negatives_per_clean=1.0)
    counts = corruption_counts(data)
    assert counts["none"] == len(clean)
    assert set(counts) == {"none", "truncate", "shuffle", "remove_numbers", "off_domain"}
    assert sum(counts.values()) == 2 * len(clean)
    assert min(v for k, v in counts.items() if k != "none") >= 20
    originals = clean["problem"]
    for row in data:
        kind, text = row["corruption"], row["problem"]
        if kind == "none":
            assert row["is_clean"] == 1 and text == originals[row["origin"]]
            continue
        assert row["is_clean"] == 0
        if kind == "truncate":
            source = originals[row["origin"]]
            assert source.startswith(text) and len(text.split()) < len(source.split())
        elif kind == "shuffle":
            source = originals[row["origin"]]
            assert text != source and sorted(text.split()) == sorted(source.split())
        elif kind == "remove_numbers":
            assert not re.search(r"\d", text) and re.search(r"\d", originals[row["origin"]])
        elif kind == "off_domain":
            assert row["origin"] == -1
            assert any(text.startswith(p) for p in OFF_DOMAIN_PROMPTS)


def test_answer_mismatch_needs_the_answer_in_the_text(clean):
    with pytest.raises(ValueError, match="include_answer=True"):
        make_quality_dataset(clean, kinds=("answer_mismatch",))
    data = make_quality_dataset(clean, kinds=KINDS, include_answer=True, seed=1)
    assert "answer_mismatch" in corruption_counts(data)
    golds = clean["answer"]
    for row in data:
        assert row["problem"].endswith(f"\nAnswer: {row['answer']}")  # every row carries an answer line
        if row["corruption"] == "answer_mismatch":
            assert row["answer"] != golds[row["origin"]]
            assert row["problem"].startswith(clean["problem"][row["origin"]])
        elif row["corruption"] == "none":
            assert row["answer"] == golds[row["origin"]]


def test_off_domain_pool_halves_are_disjoint_and_real_looking():
    train, test = off_domain_prompts("train"), off_domain_prompts("test")
    assert len(OFF_DOMAIN_PROMPTS) >= 48 and len(set(OFF_DOMAIN_PROMPTS)) == len(OFF_DOMAIN_PROMPTS)
    assert not set(train) & set(test) and len(train) + len(test) == len(OFF_DOMAIN_PROMPTS)
    assert all(len(p.split()) >= 5 for p in OFF_DOMAIN_PROMPTS)
    with pytest.raises(ValueError, match="part must be"):
        off_domain_prompts("dev")


def test_kinds_that_do_not_apply_fall_through():
    assert remove_numbers("No numbers here at all.") == ""
    from datasets import Dataset

    no_digits = Dataset.from_dict({"problem": ["Is a square a rectangle? Explain why."] * 4, "answer": ["yes"] * 4})
    data = make_quality_dataset(no_digits, kinds=("remove_numbers", "truncate"), seed=0)
    assert corruption_counts(data) == {"none": 4, "truncate": 4}
    with pytest.raises(ValueError, match="Unknown corruption kind"):
        make_quality_dataset(no_digits, kinds=("typos",))
