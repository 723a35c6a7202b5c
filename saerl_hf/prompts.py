"""One prompt per benchmark family, shared by featurization, GRPO and evaluation.

SAE features are read on the same chat-formatted text the policy sees, so the three stages must build
prompts in exactly one place.
"""

from __future__ import annotations

ELEMENTARY_SOURCES = {"gsm8k", "mawps", "svamp", "asdiv"}
INSTRUCTIONS = {
    # Short answers: a 135M model must be able to finish inside a short completion budget.
    "elementary": "Give the final answer as a number after 'Answer:'.",
    # The Qwen2.5-Math / open-r1 convention for competition math.
    "competition": "Please reason step by step, and put your final answer within \\boxed{}.",
}


# Base models (no chat template) answer zero-shot prompts almost never (Gemma 3 270M: 0/24 on MAWPS) but
# follow a few worked examples. These are written for this project, not taken from any benchmark.
FEW_SHOT = {
    "elementary": (
        ("Tom has 3 apples and buys 5 more apples. How many apples does Tom have now?", "8"),
        ("A shelf holds 12 books. Mia takes 3 books from the shelf. How many books are left on the shelf?", "9"),
        ("Each box has 4 pens. How many pens are in 5 boxes?", "20"),
    ),
    "competition": (
        ("What is $\\frac{1}{2} + \\frac{1}{3}$?", "\\frac{5}{6}"),
        ("Solve for $x$: $2x + 3 = 11$.", "4"),
        ("How many positive divisors does 12 have?", "6"),
    ),
}
ANSWER_CUE = "Answer:"  # a few-shot text prompt ends with it, so the completion opens with the answer
STOP_MARKER = "\nQuestion:"  # a base model that continues past its answer starts a new "Question:"


def family_of(source: str | None) -> str:
    """'elementary' for grade-school word problems, 'competition' for everything else."""
    base = (source or "").split("/")[0].split("_")[0].lower()
    return "elementary" if base in ELEMENTARY_SOURCES else "competition"


def user_message(problem: str, source: str | None = None, family: str | None = None) -> str:
    """The user turn: the problem, a newline, the family's fixed instruction."""
    return f"{problem.strip()}\n{INSTRUCTIONS[family or family_of(source)]}"


def build_messages(problem: str, source: str | None = None, family: str | None = None) -> list[dict]:
    """Conversational prompt in TRL's format (a list of messages)."""
    return [{"role": "user", "content": user_message(problem, source, family)}]


def render_prompt(tokenizer, problem: str, source: str | None = None, family: str | None = None) -> str:
    """The exact text the policy is given: chat template when the tokenizer has one, plain text otherwise.

    Base models without a chat template (e.g. Gemma 3 270M base) get a 3-shot ``Question: ...\\nAnswer: ...``
    prompt; their completion is cut at the next ``\\nQuestion:`` before scoring (see :func:`cut_completion`).
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            build_messages(problem, source, family), tokenize=False, add_generation_prompt=True
        )
    return plain_prompt(problem, family or family_of(source))


def plain_prompt(problem: str, family: str) -> str:
    """Few-shot text prompt for base models; ends with ``Answer:`` so the completion starts with the answer."""
    shots = "".join(f"Question: {q}\n{ANSWER_CUE} {a}\n\n" for q, a in FEW_SHOT[family])
    return f"{shots}Question: {problem.strip()}\n{ANSWER_CUE}"


def cut_completion(text: str) -> str:
    """The completion up to the point where a base model starts inventing the next few-shot question."""
    if not isinstance(text, str):
        return text
    cut = text.find(STOP_MARKER)
    return text if cut < 0 else text[:cut]


def problem_span(prompt_text: str, problem: str) -> tuple[int, int]:
    """Character span of the problem inside a rendered prompt (for pooling over the problem's own tokens)."""
    start = prompt_text.find(problem.strip())
    if start < 0:
        raise ValueError("problem text not found in the rendered prompt")
    return start, start + len(problem.strip())
