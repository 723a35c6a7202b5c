"""Negatives for the quality probe, derived from clean prompts (no hand labelling, no downloads).

Kinds: ``truncate`` (problem cut short), ``shuffle`` (sentences out of order), ``remove_numbers`` (every
digit dropped, so the problem is unanswerable), ``off_domain`` (built-in non-math requests), and
``answer_mismatch`` (a problem paired with another problem's answer). The mismatch only exists when the
answer is part of the text being featurized, so it is produced only with ``include_answer=True``; then every
row, clean or corrupted, carries ``"\\nAnswer: ..."`` and the format itself gives nothing away.
Held-out off-domain text that nobody here wrote: :func:`real_text_negatives` (docstrings of installed packages).
Everything is deterministic for a seed.
"""

from __future__ import annotations

import random
import re

from saerl_hf.docstring_text import REAL_TEXT_PACKAGES, docstring_paragraphs, package_source_files

KINDS = ("truncate", "shuffle", "remove_numbers", "off_domain", "answer_mismatch")
PROBLEM_ONLY_KINDS = ("truncate", "shuffle", "remove_numbers", "off_domain")

# Written for this project: everyday requests of the kind a chat model sees, none of them a math problem.
OFF_DOMAIN_PROMPTS = (
    "Can you suggest a vegetarian dinner I can cook in under thirty minutes with what is usually in the fridge?",
    "Write a short, friendly email to my landlord asking when the broken heater will be repaired.",
    "What are the main differences between the Baroque and the Classical periods in European music?",
    "Summarize the plot of a mystery novel set in a small fishing village without spoiling the ending.",
    "How do I remove a red wine stain from a light-coloured wool carpet?",
    "Give me three tips for staying focused when working from home with small children around.",
    "Translate 'Where is the nearest train station?' into French, Spanish and German.",
    "Why do leaves change colour in autumn, and why are some trees more vivid than others?",
    "Draft a polite message declining a wedding invitation because of a work trip.",
    "What should I pack for a four-day hiking trip in the mountains in early spring?",
    "Explain how a bill becomes a law in a parliamentary system, in plain language.",
    "My tomato plants have yellow leaves at the bottom. What could be causing this?",
    "Recommend a few podcasts about the history of ancient Rome for a long car journey.",
    "Write a haiku about the first snowfall in a quiet city.",
    "How can I politely tell a coworker that their music is too loud in the shared office?",
    "What is the difference between baking soda and baking powder in cakes?",
    "Describe the water cycle for a primary school class presentation.",
    "Help me write a cover letter for a job as a librarian at a public library.",
    "Which houseplants survive in a dark room with almost no direct sunlight?",
    "Tell me a bedtime story about a lighthouse keeper and a lost seagull.",
    "What are common symptoms of dehydration in older adults, and when should someone see a doctor?",
    "How do I set up a weekly cleaning schedule for a flat shared by four students?",
    "Compare the advantages of train travel and air travel for a trip across Europe.",
    "Suggest a name for a small bakery that specialises in sourdough bread and cinnamon buns.",
    "Why is the sky blue during the day but red and orange at sunset?",
    "Rewrite this sentence to sound more formal: we gotta finish the report by friday or the boss will be mad.",
    "What were the main causes of the French Revolution?",
    "Give me a packing list for moving house, room by room.",
    "How do vaccines train the immune system to recognise a virus?",
    "Write a product description for a handmade ceramic coffee mug with a blue glaze.",
    "What are good conversation starters at a networking event for someone who is shy?",
    "Explain the rules of cricket to someone who has only ever watched football.",
    "My laptop fan is very loud when I open a web browser. What can I try before taking it to a shop?",
    "Plan a relaxed two-day itinerary for a first visit to Lisbon.",
    "What is the best way to learn to play the guitar as an adult beginner?",
    "Write a limerick about a cat who refuses to get off the keyboard.",
    "How should I store fresh herbs so that they stay green for longer?",
    "Explain what a cover crop is and why farmers plant them in winter.",
    "Draft a speech for a best man at a wedding, warm and a little funny.",
    "Which birds are most likely to visit a garden feeder in northern Europe in winter?",
    "How do I ask my manager for feedback on a project without sounding insecure?",
    "Describe the architecture of Gothic cathedrals and what made flying buttresses necessary.",
    "What are the pros and cons of adopting an older dog instead of a puppy?",
    "Write a short poem about a train leaving a station at dawn.",
    "How can I reduce food waste in a household of two people?",
    "Summarise the main ideas of stoic philosophy in a few sentences.",
    "What should I check before buying a second-hand bicycle?",
    "Explain how tides are related to the moon to a curious ten-year-old.",
    "Write a thank-you note to a teacher at the end of the school year.",
    "What is the origin of the tradition of decorating trees in winter?",
    "Give me ideas for a birthday party for a seven-year-old who loves dinosaurs.",
    "How do noise-cancelling headphones work?",
    "Suggest some exercises to relieve stiffness in the neck after a long day at a desk.",
    "Write a review of a cosy neighbourhood café with excellent pastries and slow service.",
    "What is the difference between weather and climate?",
    "How do I politely end a phone call with a talkative relative?",
    "Describe a typical day in the life of a medieval blacksmith.",
    "Recommend a few classic films for someone who has never watched black-and-white movies.",
    "Why do cats purr, and do they only do it when they are happy?",
    "Write instructions for making a simple paper boat that floats.",
    "Tell me about the history of the printing press and why it mattered.",
    "What is a good routine for a beginner who wants to start running?",
    "Draft a text message to a neighbour asking them to water my plants while I am away.",
    "Explain the plot of Hamlet in a few sentences for someone who has never read it.",
)


def off_domain_prompts(part: str = "all") -> tuple[str, ...]:
    """The built-in off-domain pool; ``part='train'``/``'test'`` give disjoint halves (even/odd positions)
    so a held-out evaluation never sees a training sentence."""
    if part == "all":
        return OFF_DOMAIN_PROMPTS
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'all', 'train' or 'test', got {part!r}.")
    return OFF_DOMAIN_PROMPTS[0 if part == "train" else 1 :: 2]


def real_text_negatives(n: int, seed: int = 0, packages: tuple[str, ...] = REAL_TEXT_PACKAGES,
                        min_words: int = 8, max_words: int = 60) -> list[str]:
    """``n`` off-domain texts nobody here wrote: first paragraphs (``min_words``-``max_words`` words, doctests and
    reST directives left out) of docstrings in the installed sources of ``packages``, read with ``ast`` (never
    imported). Deterministic for ``(n, seed)`` and the installed versions: the files are visited in a seeded
    order until there are 4x ``n`` distinct paragraphs, and ``n`` are drawn from them, sorted, with the seed.
    These are held-out negatives: the quality probe's training negatives never come from them, nor does the
    SAE's general training text (:mod:`saerl_hf.docstring_text`)."""
    files = package_source_files(packages)
    rng = random.Random(seed)
    rng.shuffle(files)
    found = docstring_paragraphs(files, 4 * n, min_words, max_words)
    if len(found) < n:
        raise ValueError(f"Only {len(found)} docstring paragraphs of {min_words}-{max_words} words in {packages}; "
                         f"asked for {n}. Fix: ask for fewer or add packages.")
    return rng.sample(sorted(found), n)


def real_text_dataset(n: int, seed: int = 0, text_column: str = "problem", **kwargs):
    """:func:`real_text_negatives` as quality rows (``is_clean`` 0, ``corruption`` 'real_text', ``origin`` -1),
    the columns ``make_quality_dataset`` writes, ready to featurize."""
    from datasets import Dataset

    texts = real_text_negatives(n, seed, **kwargs)
    return Dataset.from_dict({text_column: texts, "answer": [None] * n, "is_clean": [0] * n,
                              "corruption": ["real_text"] * n, "origin": [-1] * n})


_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z$\\(])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def truncate(text: str, rng: random.Random) -> str:
    """Keep the first 25-60% of the words: the question is cut off before it is asked."""
    words = list(re.finditer(r"\S+", text))
    if len(words) < 2:
        return ""
    n_keep = max(1, min(len(words) - 1, int(round(len(words) * rng.uniform(0.25, 0.6)))))
    return text[: words[n_keep - 1].end()].lstrip()  # original spacing and line breaks kept


def shuffle(text: str, rng: random.Random) -> str:
    """Sentences (or, for one-sentence problems, words) in a random different order."""
    parts = [p for p in _SENTENCE_END.split(text.strip()) if p]
    joiner = " "
    if len(parts) < 2:
        parts = text.split()
    if len(parts) < 2 or len(set(parts)) < 2:
        return ""
    for _ in range(10):
        order = parts[:]
        rng.shuffle(order)
        if order != parts:
            return joiner.join(order)
    return joiner.join(parts[1:] + parts[:1])


def remove_numbers(text: str, rng: random.Random | None = None) -> str:
    """Every number dropped; '' when the text has none (the kind does not apply)."""
    if not _NUMBER.search(text):
        return ""
    return re.sub(r"[ \t]{2,}", " ", _NUMBER.sub("", text)).strip()


def off_domain(rng: random.Random, pool: tuple[str, ...]) -> str:
    """One or two pool prompts: pairs multiply a few dozen authored sentences into hundreds of texts."""
    if rng.random() < 0.5:
        return rng.choice(pool)
    first, second = rng.sample(pool, 2)
    return f"{first} {second}"


def _with_answer(text: str, answer) -> str:
    return f"{text}\nAnswer: {answer}"


def make_quality_dataset(clean, kinds: tuple[str, ...] | None = None, seed: int = 0,
                         negatives_per_clean: float = 1.0, include_answer: bool = False,
                         text_column: str = "problem", answer_column: str = "answer",
                         off_domain_pool: tuple[str, ...] | None = None):
    """Clean rows (``is_clean=1``) plus corrupted copies (``is_clean=0``) as a ``datasets.Dataset``.

    Columns: ``text_column`` (the text to featurize), ``answer_column``, ``is_clean``, ``corruption`` ('none'
    or the kind) and ``origin`` (row index in ``clean`` the text came from; -1 for off-domain text), so a
    held-out split can keep every corruption of a problem on one side.
    """
    from datasets import Dataset

    kinds = tuple(kinds) if kinds is not None else (KINDS if include_answer else PROBLEM_ONLY_KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"Unknown corruption kind(s) {unknown}; valid: {', '.join(KINDS)}.")
    if "answer_mismatch" in kinds and not include_answer:
        raise ValueError(
            "answer_mismatch changes only the answer, which is not in the featurized text unless "
            "include_answer=True (then every row gets '\\nAnswer: ...'). Fix: set include_answer=True or drop "
            "the kind."
        )
    if text_column not in clean.column_names:
        raise ValueError(f"The clean dataset has no '{text_column}' column (columns: {clean.column_names}).")
    if include_answer and answer_column not in clean.column_names:
        raise ValueError(f"include_answer=True needs an '{answer_column}' column in the clean dataset.")
    texts = list(clean[text_column])
    answers = list(clean[answer_column]) if answer_column in clean.column_names else [None] * len(texts)
    pool = tuple(off_domain_pool or OFF_DOMAIN_PROMPTS)
    rng = random.Random(seed)

    rows = [{"text": _with_answer(t, a) if include_answer else t, "answer": a, "is_clean": 1,
             "corruption": "none", "origin": i} for i, (t, a) in enumerate(zip(texts, answers))]
    n_negatives = int(round(negatives_per_clean * len(texts)))
    for j in range(n_negatives):
        origin = rng.randrange(len(texts))
        start = j % len(kinds)
        for step in range(len(kinds)):  # fall through to the next kind when one does not apply
            kind = kinds[(start + step) % len(kinds)]
            text, answer, source = _corrupt(kind, origin, texts, answers, rng, pool)
            if text and (text.strip(), str(answer)) != (texts[origin].strip(), str(answers[origin])):
                break
        else:
            continue
        rows.append({"text": _with_answer(text, answer) if include_answer else text, "answer": answer,
                     "is_clean": 0, "corruption": kind, "origin": source})
    columns = {text_column: [r["text"] for r in rows], answer_column: [r["answer"] for r in rows],
               "is_clean": [r["is_clean"] for r in rows], "corruption": [r["corruption"] for r in rows],
               "origin": [r["origin"] for r in rows]}
    return Dataset.from_dict(columns)


def _corrupt(kind, origin, texts, answers, rng, pool):
    text, answer = texts[origin], answers[origin]
    if kind == "truncate":
        return truncate(text, rng), answer, origin
    if kind == "shuffle":
        return shuffle(text, rng), answer, origin
    if kind == "remove_numbers":
        return remove_numbers(text), answer, origin
    if kind == "off_domain":
        return off_domain(rng, pool), rng.choice(answers) if include_any(answers) else None, -1
    # answer_mismatch: another problem's answer, different from this one's
    for _ in range(20):
        other = answers[rng.randrange(len(answers))]
        if str(other) != str(answer):
            return text, other, origin
    return "", answer, origin


def include_any(values) -> bool:
    return any(v is not None for v in values)


def corruption_counts(dataset) -> dict[str, int]:
    """Rows per ``corruption`` kind (``'none'`` = clean)."""
    from collections import Counter

    return dict(sorted(Counter(dataset["corruption"]).items()))
