"""The shipped `evaluate` module: loads offline by path, 100% on MATH-500 gold solutions, 0% when perturbed."""

from __future__ import annotations

import re

import evaluate
import pytest

from saerl_hf.metrics import MATH_ACCURACY_PATH


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(MATH_ACCURACY_PATH)


@pytest.fixture(scope="module")
def math500(data_dir):
    from saerl_hf.data import load_math_dataset

    return list(load_math_dataset("math500"))


def _bump_first_digit(answer: str) -> str:
    """A near miss: the first digit +1 (mod 10); answers without digits get '+1'.

    The first digit, not the last: the last is sometimes a unit's exponent ('864 inches^2'), which
    math-verify rightly ignores together with the unit.
    """
    first = re.search(r"\d", answer)
    if not first:
        return answer + "+1"
    return answer[: first.start()] + str((int(first.group()) + 1) % 10) + answer[first.end():]


def _replace_last_boxed(solution: str, new_answer: str) -> str:
    return solution[: solution.rfind("\\boxed")] + "\\boxed{" + new_answer + "}"


def test_math500_gold_solutions_score_100(metric, math500):
    result = metric.compute(predictions=[r["solution"] for r in math500], references=[r["answer"] for r in math500],
                            families="competition", return_verdicts=True)
    wrong = [r["answer"] for r, ok in zip(math500, result["verdicts"]) if not ok]
    assert result["accuracy"] == 1.0, wrong


@pytest.mark.parametrize("perturb", [_bump_first_digit, lambda answer: answer + "+1"], ids=["digit", "plus-one"])
def test_math500_perturbed_answers_score_0(metric, math500, perturb):
    predictions = [_replace_last_boxed(r["solution"], perturb(r["answer"])) for r in math500]
    result = metric.compute(predictions=predictions, references=[r["answer"] for r in math500],
                            families="competition", return_verdicts=True)
    passed = [(r["answer"], perturb(r["answer"])) for r, ok in zip(math500, result["verdicts"]) if ok]
    assert result["accuracy"] == 0.0, passed


def test_gsm8k_gold_solutions(metric, data_dir):
    from saerl_hf.data import load_math_dataset

    rows = list(load_math_dataset("gsm8k", limit=200))
    result = metric.compute(predictions=[r["solution"] for r in rows], references=[r["answer"] for r in rows],
                            families="elementary")
    assert result["accuracy"] == 1.0
    off_by_one = [r["solution"].rsplit("####", 1)[0] + f"#### {int(float(r['answer'])) + 1}" for r in rows]
    assert metric.compute(predictions=off_by_one, references=[r["answer"] for r in rows],
                          families="elementary")["accuracy"] == 0.0


def test_verdicts_and_bad_input(metric):
    result = metric.compute(predictions=["so \\boxed{\\frac12}", None, "", "#### 7", "\\boxed{9^{9^{9^{9}}}}"],
                            references=["0.5", "3", "4", "7", "1"], families=["competition", "competition",
                                                                               "elementary", "elementary", None],
                            return_verdicts=True, timeout_s=1.0)
    assert result == {"accuracy": 0.4, "verdicts": [True, False, False, True, False]}
    assert metric.compute(predictions=["1"], references=["1"]) == {"accuracy": 1.0}
    assert metric.compute(predictions=["\\boxed{1}", "2"], references=["1", None]) == {"accuracy": 0.5}


def test_bad_arguments_raise_clear_errors(metric):
    with pytest.raises(ValueError, match="Mismatch in the number of predictions"):
        metric.compute(predictions=["1"], references=["1", "2"])
    with pytest.raises(ValueError, match="families"):
        metric.compute(predictions=["1", "2"], references=["1", "2"], families=["elementary"])
    with pytest.raises(ValueError, match="families\\[0\\]"):
        metric.compute(predictions=["1"], references=["1"], families=["olympiad"])
