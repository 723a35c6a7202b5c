"""Final-answer extraction and math-verify equivalence, shared by evaluation, GRPO rewards and pass-rate labels.

One implementation so that a "correct" answer means the same thing when a reward is computed, when a
problem's pass rate is labelled and when a benchmark is scored.

Time bound: sympy can spend minutes (or forever, inside C big-integer code that no signal interrupts) on
outputs such as ``\\boxed{9^{9^{9^9}}}``. math-verify's own SIGALRM timeouts cannot stop that and only
work in the main thread, so symbolic checks run in a ``pebble.ProcessPool`` of helper processes whose
per-task timeout kills the worker when an item exceeds ``timeout_s`` (the pool starts a fresh one); such
an item scores False. Plain numbers (most GSM8K-style items) are compared in-process without sympy.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from saerl_hf.data import last_boxed
from saerl_hf.prompts import cut_completion

logger = logging.getLogger(__name__)

FAMILIES = ("elementary", "competition")
#: Longest answer string handed to the symbolic checker; longer ones score False (no real answer is this long).
MAX_ANSWER_CHARS = 1000
#: Only the tail of a completion is searched for its final answer.
MAX_TEXT_CHARS = 50_000
#: How long a check may wait for a helper process to start (import math-verify) before its own timeout counts.
WORKER_START_TIMEOUT_S = 120.0
#: Helper processes (each one checks one item at a time; callers beyond this many wait their turn).
MAX_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: Seconds a timed-out helper gets to exit on SIGTERM before SIGKILL.
KILL_AFTER_S = 0.2

# ----------------------------------------------------------------------------- extraction

_HASH_MARK = re.compile(r"####\s*(.*)")
_ANSWER_IS = re.compile(r"answer\s+is\s*[:：]?\s*(.*)", re.IGNORECASE)
_ANSWER_COLON = re.compile(r"answer\s*[:：]\s*(.*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+")
_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_INLINE_MATH = re.compile(r"\$\$?(.+?)\$\$?|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)


def _clean_span(span: str) -> str:
    """The answer inside the text after a marker: math delimiters off, trailing punctuation off."""
    span = span.strip()
    math = _INLINE_MATH.search(span)
    if math and span.startswith(("$", "\\(", "\\[")):
        span = next(g for g in math.groups() if g is not None)
    span = span.replace("$", "").strip()
    span = re.sub(r"^\*+|\*+$", "", span).strip()  # markdown bold around the answer
    return span.rstrip(" .;,:").strip()


def _number_after_marker(span: str) -> str | None:
    """For word problems: the number an 'Answer:' line states (the result after '=' when it shows work)."""
    span = span.replace("$", " ")
    if "=" in span:
        span = span.rsplit("=", 1)[1]
    match = _NUMBER.search(span)
    return _normalize_number_text(match.group(0)) if match else None


def _normalize_number_text(text: str) -> str:
    return re.sub(r"\s+", "", text).replace(",", "")


def _last_marker(text: str, pattern: re.Pattern) -> str | None:
    """Text on the line after the last occurrence of a marker that has something after it."""
    for match in reversed(list(pattern.finditer(text))):
        span = match.group(1).strip()
        if span:
            return span
    return None


def extract_answer(text: str, family: str | None = None) -> str | None:
    """The final answer a completion states, as each benchmark expects it; None when there is none.

    Order: last ``\\boxed{}``; else the text after the last ``####``, else after the last "answer is",
    else after the last "Answer:" (for the ``elementary`` family the number there, the result after
    ``=`` if it shows work); else a bare answer (a short output that is only an expression); else the
    last number in the text. ``family`` is ``"elementary"`` (GSM8K, MAWPS, SVAMP, ASDiv), ``"competition"``
    or None (treated as competition).
    """
    if not isinstance(text, str) or not text.strip():
        return None
    # A base model answering a few-shot prompt goes on to invent the next "Question:"; only its first
    # answer counts (saerl_hf.prompts.plain_prompt).
    text = cut_completion(text)[-MAX_TEXT_CHARS:]
    if not text.strip():
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    elementary = family == "elementary"
    for pattern in (_HASH_MARK, _ANSWER_IS, _ANSWER_COLON):
        span = _last_marker(text, pattern)
        if span is None:
            continue
        if elementary:
            number = _number_after_marker(span)
            if number is not None:
                return number
            continue
        cleaned = _clean_span(span)
        if cleaned:
            return cleaned
    bare = text.strip()
    if _looks_like_bare_answer(bare) and (not elementary or _as_plain_number(bare) is not None):
        return _clean_span(bare)
    numbers = _NUMBER.findall(text)
    return _normalize_number_text(numbers[-1]) if numbers else None


def _looks_like_bare_answer(text: str) -> bool:
    """A completion that is only an answer ('x^2+1', '$\\frac12$', '(1, 3]', 'Evelyn'), not a sentence."""
    if len(text) > 100 or "\n" in text:
        return False
    if re.fullmatch(r"\(?[A-Za-z][A-Za-z'\-]*\)?\.?", text):
        return True
    return not re.search(r"[A-Za-z]{2,}[\s,]+[A-Za-z]{2,}", text)


# ----------------------------------------------------------------------------- comparison


def _as_plain_number(text: str) -> Fraction | None:
    """``'1,234.50'``/``'$18'``/``'-3'`` -> exact value; None for anything that is not one plain number."""
    text = text.strip().replace("\\$", "").replace("$", "").replace("\\!", "").replace("{,}", ",").strip()
    text = text.rstrip(".").strip()
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        return Fraction(Decimal(text.replace(",", "")))
    except (InvalidOperation, ValueError):
        return None


_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")


def _as_word(text: str) -> str | None:
    """Word answers ('Evelyn', '\\text{(C)}', 'yes'): lower-cased letters; None for anything mathematical.

    sympy reads a word as a product of single-letter symbols, so anagrams would otherwise compare equal.
    """
    inner = _TEXT_WRAPPER.sub(r"\1", text).strip().strip("$").strip()
    inner = re.sub(r"^\((.*)\)$", r"\1", inner).strip().rstrip(".").strip()
    if re.fullmatch(r"[A-Za-z][A-Za-z '\-]*", inner) and (len(inner) > 1 or inner.isupper() or text != inner):
        return re.sub(r"\s+", " ", inner).lower()
    return None


def _symbolic_equal(prediction: str, gold: str) -> bool:
    """math-verify on both answers wrapped in ``\\boxed{}`` (its timeouts off: the caller bounds time)."""
    from math_verify import parse, verify

    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    pred_parsed = parse(f"\\boxed{{{prediction}}}", parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return _normalize_string(prediction) == _normalize_string(gold)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _normalize_string(text: str) -> str:
    text = _TEXT_WRAPPER.sub(r"\1", text)
    text = re.sub(r"\\left|\\right|\\!|\\,|\\;|\$|\s+", "", text)
    return text.rstrip(".").lower()


_BASE_NUMBER = re.compile(r"([0-9A-Za-z]+)(?:_\{?(\d+)\}?)?")


def _base_number(text: str) -> tuple[str, str | None] | None:
    match = _BASE_NUMBER.fullmatch(re.sub(r"[\s$]", "", _TEXT_WRAPPER.sub(r"\1", text)))
    return (match.group(1).lower(), match.group(2)) if match else None


def _numbers_equal(a: Fraction, b: Fraction) -> bool:
    """Exact, or equal to a relative 1e-6 (math-verify rounds to 6 decimals, which equates 6.72e-5 and 6.73e-5)."""
    return a == b or abs(a - b) <= Fraction(1, 10**6) * max(abs(a), abs(b))


def _quick_verdict(prediction: str, gold: str) -> bool | None:
    """Cases decided without sympy: plain numbers, base-n numbers, word answers. None: needs math-verify."""
    gold_number = _as_plain_number(gold)
    pred_number = _as_plain_number(prediction)
    if gold_number is not None and pred_number is not None:
        return _numbers_equal(gold_number, pred_number)
    gold_base = _base_number(gold) if "_" in gold else None
    if gold_base is not None:
        # '52_8' (base 8): math-verify drops the subscript, so '52_9' would pass. Same digits and same (or no) base.
        pred_base = _base_number(prediction)
        return pred_base is not None and pred_base[0] == gold_base[0] and pred_base[1] in (None, gold_base[1])
    gold_word = _as_word(gold)
    if gold_word is not None:
        return _as_word(prediction) == gold_word
    return None


def is_correct(prediction: str, gold: str, family: str | None = None, timeout_s: float = 5.0) -> bool:
    """True when the completion's final answer equals the gold answer (math-verify equivalence).

    Never raises: a non-string, an empty completion, a missing gold, an unparsable answer, a crash inside
    the checker or an item that takes longer than ``timeout_s`` seconds all score False. Safe to call
    from any thread.
    """
    try:
        if not isinstance(prediction, str) or not isinstance(gold, str) or not gold.strip():
            return False
        answer = extract_answer(prediction, family)
        if answer is None:
            return False
        gold = gold.strip()
        boxed_gold = last_boxed(gold)  # a gold given as a full solution
        gold = boxed_gold or gold
        quick = _quick_verdict(answer, gold)
        if quick is not None:
            return quick
        if len(answer) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return False
        return _POOL.verify(answer, gold, timeout_s)
    except Exception:  # noqa: BLE001 - scoring must never stop a run
        logger.debug("is_correct failed; scored False", exc_info=True)
        return False


# ----------------------------------------------------------------------------- time-bounded helper processes


class _CheckerPool:
    """A ``pebble.ProcessPool`` made on first use in each process (a forked child makes its own).

    Workers are forked: ``spawn`` and ``forkserver`` re-import the caller's ``__main__``, which runs a
    script without a ``__main__`` guard again (and loads TRL again under ``accelerate launch grpo.py``).
    A worker runs only sympy, which needs none of the locks other threads of the caller may hold.
    """

    def __init__(self):
        self._pool = None
        self._pid = None
        self._lock = threading.Lock()
        self.timeouts = 0
        self.broken = False

    def _get(self):
        import pebble

        # A worker stuck in C code never runs its SIGTERM handler: SIGKILL it after 0.2 s, not pebble's 3 s.
        pebble.CONSTS.term_timeout = min(pebble.CONSTS.term_timeout, KILL_AFTER_S)
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # a forked child must not use the parent's pool
                self._pool, self._pid = None, os.getpid()
                self._pool = pebble.ProcessPool(max_workers=MAX_WORKERS, initializer=_init_worker,
                                         context=multiprocessing.get_context("fork"))
            return self._pool

    def verify(self, prediction: str, gold: str, timeout_s: float) -> bool:
        if not self.broken and multiprocessing.current_process().daemon:
            self.broken = True  # multiprocessing forbids children here (datasets.map num_proc workers)
            logger.warning("answer checks in a daemonic process run in-process: only the main thread gets a "
                           "time bound there, and it cannot stop a sympy blow-up inside C code")
        if self.broken:
            return _symbolic_equal_in_process(prediction, gold, timeout_s)
        try:
            future = self._get().schedule(_symbolic_equal, (prediction, gold), timeout=timeout_s)
        except (OSError, RuntimeError) as err:
            self.broken = True
            logger.warning("cannot start math-verify helper processes (%s): checking in-process; only the main "
                           "thread gets a time bound there", err)
            return _symbolic_equal_in_process(prediction, gold, timeout_s)
        try:
            return bool(future.result(timeout=timeout_s + WORKER_START_TIMEOUT_S))
        except (TimeoutError, FutureTimeout):  # pebble killed the worker (or none started in time)
            future.cancel()
            self.timeouts += 1
            logger.info("answer check exceeded %.1f s; scored False: %.80r", timeout_s, prediction)
        except Exception:  # noqa: BLE001 - a worker that crashed (pebble.ProcessExpired) or a checker error
            logger.debug("answer check failed in its helper process; scored False", exc_info=True)
        return False

    def close(self):
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is None or self._pid != os.getpid():
                return
        pool.stop()
        pool.join(timeout=5)


def _symbolic_equal_in_process(prediction: str, gold: str, timeout_s: float) -> bool:
    """Fallback when helper processes cannot start: SIGALRM bound in the main thread, none elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        return _symbolic_equal(prediction, gold)
    import signal

    def on_alarm(signum, frame):
        raise TimeoutError

    _warm_in_process()  # loading math-verify is not the item's time
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 0.01))
    try:
        return _symbolic_equal(prediction, gold)
    except TimeoutError:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_WARMED: list[bool] = []


def _warm_in_process() -> None:
    if not _WARMED:
        _symbolic_equal("1", "1")
        _WARMED.append(True)


_POOL = _CheckerPool()
atexit.register(_POOL.close)


def start_checkers(timeout_s: float = 30.0) -> None:
    """Fork the answer-checking helper processes now, while the caller is still small.

    A forked worker keeps a copy-on-write snapshot of its parent: forked after the policy and optimizer are
    loaded, the workers pinned ~6 GB each that training then rewrote, and two GRPO runs side by side ran out of
    memory. A worker replaced after a timeout still forks from the caller as it is then (rare)."""
    _POOL.verify("1", "1", timeout_s)


class _DropTimeoutWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


def _init_worker() -> None:
    """Helper-process start: quiet math-verify's 'timeout disabled' warnings, warm its LaTeX parser."""
    logging.basicConfig(level=logging.ERROR)
    for name in ("math_verify", "math_verify.utils", "math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_DropTimeoutWarning())
    _symbolic_equal("1", "1")


def verify_cost(pairs: list[tuple[str, str]], family: str | None = None, repeats: int = 1) -> float:
    """Mean seconds per ``is_correct`` call over ``pairs`` (for docs/benchmarks.md)."""
    start = time.perf_counter()
    for _ in range(repeats):
        for prediction, gold in pairs:
            is_correct(prediction, gold, family)
    return (time.perf_counter() - start) / max(1, len(pairs) * repeats)
