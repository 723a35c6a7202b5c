"""Hand-checked answer extraction and equivalence cases (both directions), thread safety and time bounds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from saerl_hf.answers import extract_answer, is_correct

E, C = "elementary", "competition"

# (model output, gold, family): each must score True.
EQUIVALENT = [
    ("\\boxed{\\frac{1}{2}}", "0.5", C),
    ("\\boxed{0.5}", "\\frac{1}{2}", C),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac34", C),
    ("\\boxed{3/4}", "\\frac{3}{4}", C),
    ("\\boxed{\\tfrac{5}{6}}", "\\frac{5}{6}", C),
    ("\\boxed{25\\%}", "25", C),
    ("\\boxed{25}", "25\\%", C),
    ("\\boxed{5\\text{ cm}}", "5", C),
    ("\\boxed{5 \\text{ dollars}}", "5", C),
    ("\\boxed{1,000}", "1000", C),
    ("\\boxed{10000}", "10,\\!000", C),
    ("\\boxed{(1,3]}", "(1, 3]", C),
    ("\\boxed{(-\\infty, 3)}", "(-\\infty,3)", C),
    ("\\boxed{\\{2,1\\}}", "\\{1,2\\}", C),
    ("\\boxed{3, 5}", "5, 3", C),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", C),
    ("\\boxed{Evelyn}", "\\text{Evelyn}", C),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}", C),
    ("The answer is (C).", "\\text{(C)}", C),
    ("\\boxed{x=3}", "3", C),
    ("\\boxed{y = 2x + 3}", "2x+3", C),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt2}{2}", C),
    ("\\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt{2}}", C),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", C),
    ("\\boxed{90^\\circ}", "90", C),
    ("\\boxed{2x+3}", "3+2x", C),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", C),
    ("\\boxed{2\\pi}", "2 \\pi", C),
    ("\\boxed{\\$18.50}", "18.5", C),
    ("\\boxed{-\\frac{1}{3}}", "-1/3", C),
    ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", C),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", C),
    ("First I got \\boxed{3}, but correcting the sign: \\boxed{5}", "5", C),
    ("\\boxed{ \\frac{7}{2} }", "3.5", C),
    ("The final answer is $\\boxed{6}$. I hope it is correct.", "6", C),
    ("\\boxed{1.5}", "\\frac{3}{2}", C),
    ("\\fbox{12}", "12", C),
    ("\\boxed{12}", "12.0", C),
    ("\\boxed{10^{3}}", "1000", C),
    ("So the answer is $\\frac{1}{2}$.", "\\frac12", C),
    ("x^2+1", "x^2+1", C),
    ("\\boxed{52_{8}}", "52_8", C),
    ("\\boxed{0.0000672}", ".0000672", C),
    ("#### 1,234", "1234", E),
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72", E),
    ("Answer: $18", "18", E),
    ("Answer: 3 + 4 = 7 apples.", "7", E),
    ("Answer: **18.00**", "18", E),
    ("Answer: -4", "-4", E),
    ("He pays 5*3=15 dollars. So 15 + 2 = 17 in total.", "17", E),
    ("The answer is 42.", "42", E),
    ("She has 1,250 marbles left.", "1250", E),
    ("Answer: 0.5", "0.50", E),
    ("Answer: \\boxed{9}", "9", E),
]

# (model output, gold, family): near misses that must score False.
DIFFERENT = [
    ("\\boxed{4.67}", "\\frac{14}{3}", C),
    ("\\boxed{0.333}", "\\frac13", C),
    ("\\boxed{[1,3]}", "(1,3]", C),
    ("\\boxed{3}", "-3", C),
    ("\\boxed{\\text{Nevely}}", "\\text{Evelyn}", C),
    ("\\boxed{x^2-1}", "x^2+1", C),
    ("\\boxed{\\sqrt{3}}", "\\sqrt{2}", C),
    ("\\boxed{\\{1,2\\}}", "\\{1,2,3\\}", C),
    ("\\boxed{2\\pi}", "\\pi", C),
    ("\\boxed{(C)}", "\\text{(D)}", C),
    ("\\boxed{x=4}", "3", C),
    ("\\boxed{50\\%}", "5", C),
    ("\\boxed{1.0001}", "1", C),
    ("\\boxed{}", "0", C),
    ("\\boxed{3} was wrong, it is \\boxed{5}", "3", C),
    ("The answer is 5. Actually, the answer is 6.", "5", C),
    ("\\boxed{\\frac{1}{2}}", "\\frac{2}{1}", C),
    ("\\boxed{(3, \\pi)}", "\\left( 3, \\frac{\\pi}{2} \\right)", C),
    ("\\boxed{52_9}", "52_8", C),
    ("\\boxed{0.0000673}", ".0000672", C),
    ("#### 123", "1234", E),
    ("Answer: 17", "71", E),
    ("Answer: 7 apples", "8", E),
    ("12345", "1234.5", E),
    ("Answer: 3 + 4 = 7", "3", E),
    ("no answer here", "5", E),
    ("", "5", E),
    ("   ", "5", C),
]


@pytest.mark.parametrize("output,gold,family", EQUIVALENT)
def test_equivalent_forms_pass(output, gold, family):
    assert is_correct(output, gold, family), (output, gold, extract_answer(output, family))


@pytest.mark.parametrize("output,gold,family", DIFFERENT)
def test_near_misses_fail(output, gold, family):
    assert not is_correct(output, gold, family), (output, gold, extract_answer(output, family))


def test_case_count():
    assert len(EQUIVALENT) + len(DIFFERENT) >= 50


@pytest.mark.parametrize(
    "text,family,expected",
    [
        ("so \\boxed{\\frac{a}{b+\\{c\\}}} done", C, "\\frac{a}{b+\\{c\\}}"),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", E, "72"),
        ("Answer: 3 + 4 = 7 apples.", E, "7"),
        ("The answer is $\\frac{3}{4}$.", C, "\\frac{3}{4}"),
        ("Final answer: 12 cm", C, "12 cm"),
        ("It costs $1,200 in total.", E, "1200"),
        ("I think it is -0.5", C, "-0.5"),
        ("nothing numeric", C, None),
        ("", C, None),
        (None, C, None),
    ],
)
def test_extract_answer(text, family, expected):
    assert extract_answer(text, family) == expected


@pytest.mark.parametrize("prediction,gold", [(42, "42"), (["42"], "42"), (None, "42"), ("42", None), ("42", ""),
                                             ("42", 42), (b"42", "42")])
def test_garbage_scores_false_without_raising(prediction, gold):
    assert is_correct(prediction, gold) is False


def test_pathological_output_is_bounded():
    """sympy would compute 9^(9^(9^9)) forever inside C code that no signal interrupts."""
    assert is_correct("\\boxed{9^{9^{9^{9}}}}", "5", timeout_s=1.0) is False
    assert is_correct("\\boxed{\\frac{1}{2}}", "0.5")  # the checker recovers after a killed item


def test_worker_threads_score_and_stay_bounded():
    """TRL reward functions and evaluation may call from threads, where SIGALRM timeouts do not work."""
    items = [("\\boxed{\\frac{1}{2}}", "0.5", True), ("\\boxed{(1,3]}", "[1,3]", False),
             ("\\boxed{9^{9^{9^{9}}}}", "1", False), ("#### 72", "72", True)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = list(pool.map(lambda item: is_correct(item[0], item[1], timeout_s=1.0), items))
    assert verdicts == [item[2] for item in items]


def test_forked_children_do_not_share_the_parents_helper():
    """datasets.map(num_proc=...) forks: a child must start its own helper, not talk on the parent's pipes."""
    import multiprocessing

    assert is_correct("\\boxed{\\frac{1}{2}}", "0.5")  # the parent now holds an idle helper
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        verdicts = pool.starmap(is_correct, [("\\boxed{(1,3]}", "(1,3]"), ("\\boxed{(1,3]}", "[1,3]")] * 2)
    assert verdicts == [True, False, True, False]
    assert is_correct("\\boxed{\\sqrt{8}}", "2\\sqrt{2}")


def test_in_process_fallback_checks_in_main_thread():
    from saerl_hf.answers import _symbolic_equal_in_process

    assert _symbolic_equal_in_process("\\frac{1}{2}", "0.5", 5.0) is True
    assert _symbolic_equal_in_process("(1,3]", "[1,3]", 5.0) is False


def test_base_model_few_shot_continuations_are_cut_before_scoring():
    from saerl_hf.prompts import plain_prompt

    assert plain_prompt("How many?", "elementary").endswith("Question: How many?\nAnswer:")
    completion = " 4\n\nQuestion: Sam has 9 pears and eats 2. How many are left?\nAnswer: 7"
    assert extract_answer(completion, "elementary") == "4"
    assert is_correct(completion, "4", "elementary") and not is_correct(completion, "7", "elementary")


def test_checkers_fork_before_the_caller_grows():
    """grpo.main forks the helpers before loading the model: a worker forked later maps the whole policy."""
    import subprocess
    import sys

    code = ("import numpy as np, psutil\n"
            "from saerl_hf.answers import is_correct, start_checkers\n"
            "start_checkers()\n"
            "big = np.ones(60_000_000)  # 480 MB written after the fork\n"
            "assert is_correct('\\\\boxed{\\\\frac{1}{2}}', '0.5')\n"
            "kids = psutil.Process().children()\n"
            "print(len(kids), max(k.memory_info().rss for k in kids), big.nbytes)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    workers, largest, grown = map(int, out.stdout.split())
    assert workers >= 1 and largest < grown / 2, out.stdout
