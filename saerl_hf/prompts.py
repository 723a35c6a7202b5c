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

    Base models without a chat template (e.g. Gemma 3 270M base) get ``Question: ...\\nAnswer:`` style text.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            build_messages(problem, source, family), tokenize=False, add_generation_prompt=True
        )
    return f"Question: {user_message(problem, source, family)}\nAnswer:"


def problem_span(prompt_text: str, problem: str) -> tuple[int, int]:
    """Character span of the problem inside a rendered prompt (for pooling over the problem's own tokens)."""
    start = prompt_text.find(problem.strip())
    if start < 0:
        raise ValueError("problem text not found in the rendered prompt")
    return start, start + len(problem.strip())
