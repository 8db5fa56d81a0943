"""Rule-based, mode-aware correctness: the one home for "is this answer right".

BPO's reward, data curation and evaluation all call into this module:

* :func:`extract_answer` — the final answer string of an answer (the last ``\\boxed{}``, else the whole text);
* :func:`verify` — does an answer (the text after ``</think>``) match a reference? ``math`` (math-verify),
  ``choice`` (letters A–J), ``exact`` (normalised strings) or ``auto``; ``None`` when the *reference* cannot be
  parsed, so callers can count the item as unscorable instead of silently wrong;
* :func:`score_response` — scores a full assistant turn (forced pre-fill + completion) with the mode rules;
* :func:`accuracy_reward` — the same as a TRL reward function (``GRPOTrainer``/``BPOTrainer``).

Robustness: the reward never raises, and every math-verify call is bounded in wall-clock time in *any* thread.
math-verify's own timeouts use ``signal.alarm``, which only works in the main thread (TRL runs ``async`` reward
functions on another thread), so they are switched off and replaced by :func:`_bounded`, a watchdog that raises an
exception in the working thread, like the alarm would, plus caps on the size of what is parsed (math-verify's LaTeX
parser is quadratic on nested brackets, and a regex cannot be interrupted by either mechanism).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import re
import threading
from typing import Any

from r4b_trl.modes import Mode, ModePrefixes, get_prefixes, parse_response, resolve_mode

__all__ = ["KINDS", "extract_answer", "verify", "score_response", "accuracy_reward"]

logger = logging.getLogger(__name__)

KINDS = ("auto", "math", "choice", "exact")
#: Wall-clock budget (seconds) for parsing a reference, and for parsing + comparing one prediction.
TIMEOUT_S = 3.0
#: Longest boxed/bare expression handed to the LaTeX parser (longer → unparseable).
MAX_EXPR_CHARS = 1000
#: Prose answers without a box: only their last this-many characters are searched for the answer.
MAX_PROSE_CHARS = 4000
#: Expressions whose evaluation would build a number with more digits than this count as unparseable.
MAX_DIGITS = 100_000

# --------------------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"(?<!\\)[{}]")  # \{ and \} are literal braces in LaTeX


def _as_text(x: Any) -> str:
    return "" if x is None else x if isinstance(x, str) else str(x)


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` whose braces close, or None. Linear time."""
    starts = [m.end() - 1 for m in _BOX_RE.finditer(text)]  # index of each box's "{"
    if not starts:
        return None
    partner, stack = {}, []
    for m in _BRACE_RE.finditer(text, starts[0]):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            partner[stack.pop()] = m.start()
    for open_idx in reversed(starts):
        if open_idx in partner:
            return text[open_idx + 1:partner[open_idx]].strip()
    return None


def extract_answer(answer_text: str) -> str:
    """The final answer in ``answer_text`` (the text after ``</think>``): the content of the last ``\\boxed{}``
    (or ``\\fbox{}``) whose braces balance, else the whole stripped text."""
    text = _as_text(answer_text)
    boxed = _last_boxed(text)
    return text.strip() if boxed is None else boxed


# --------------------------------------------------------------------------------------------------------------
# A wall-clock guard that works in any thread
# --------------------------------------------------------------------------------------------------------------


class _Timeout(BaseException):
    """Raised inside a guarded call when its time is up (a BaseException, so ``except Exception`` can't eat it)."""


_TIMED_OUT = object()
#: How many checks the time bound has cut short in this process (observable in logs and tests).
TIMEOUTS = 0


def _bounded(fn, *args, seconds: float | None = None):
    """``fn(*args)``, or ``_TIMED_OUT`` if it runs longer than ``seconds``.

    A watchdog thread raises :class:`_Timeout` in the calling thread (``PyThreadState_SetAsyncExc``), which, like
    ``signal.alarm``, interrupts Python code between bytecodes but not a single long C call. An asynchronous
    exception can land in a finalizer (``__del__``) that happens to run at that moment, where Python swallows it, so
    the watchdog keeps re-raising every 50 ms until the call stops. Disarming under a lock and clearing any
    not-yet-delivered exception after ``fn`` returns make sure it never escapes this function.
    """
    global TIMEOUTS
    seconds = TIMEOUT_S if seconds is None else seconds
    tid = ctypes.c_ulong(threading.get_ident())
    lock, armed, done = threading.Lock(), [True], threading.Event()

    def watchdog():
        wait = seconds
        while not done.wait(wait):
            with lock:
                if not armed[0]:
                    return
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, ctypes.py_object(_Timeout))
            wait = 0.05

    threading.Thread(target=watchdog, name="r4b-reward-watchdog", daemon=True).start()
    try:
        try:
            return fn(*args)
        finally:
            done.set()
            with lock:
                armed[0] = False
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, ctypes.c_void_p(0))  # drop an undelivered one
    except _Timeout:
        TIMEOUTS += 1
        return _TIMED_OUT


# --------------------------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------------------------

_DELIMITERS = ("$", "\\(", "\\[")
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # a word that is not a LaTeX command


def _math_input(text: str) -> str | None:
    """What to hand to ``math_verify.parse``: the last box, a bare expression in ``$…$``, or the tail of prose."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return "\\boxed{" + boxed + "}" if boxed and len(boxed) <= MAX_EXPR_CHARS else None
    text = text.strip()
    if not text:
        return None
    if not any(d in text for d in _DELIMITERS) and len(text) <= MAX_EXPR_CHARS and not _PROSE_WORD.search(text):
        return "$" + text.rstrip(". ") + "$"  # a bare expression such as \frac{1}{2} or x^2+1
    return text[-MAX_PROSE_CHARS:]


def _log10_bound(e) -> float:
    """A rough upper bound of log10|value| of a sympy expression, used to spot integers too large to build."""
    if e.is_Rational:  # Integer or Rational: log10|p| - log10 q
        return sum(sign * (math.log10(n) if n.bit_length() < 1000 else n.bit_length() * 0.302)
                   for sign, n in ((1, max(abs(int(e.p)), 1)), (-1, int(e.q))))
    args = [_log10_bound(a) for a in e.args]
    if e.is_Pow:  # |b^x| <= 10^(|x| * |log10 b|)
        return 10 ** min(args[1], 300.0) * max(abs(args[0]), 0.302)
    if e.func.__name__ in ("factorial", "factorial2", "subfactorial", "gamma", "binomial"):
        n = 10 ** min(args[0], 300.0)  # n! < n^n
        return n * max(args[0], 0.302)
    if e.is_Mul:
        return sum(abs(a) for a in args)
    return max(args, default=1.0) + 1.0


def _too_big(expr) -> bool:
    """Would evaluating ``expr`` build an integer of more than ``MAX_DIGITS`` digits (``10^{10^{10}}``,
    ``(10^9)!``)? CPython computes ``10**(10**10)`` in one C call that no timeout can interrupt."""
    import sympy

    if not isinstance(expr, sympy.Basic):
        return False
    try:
        return any(not node.free_symbols and _log10_bound(node) > MAX_DIGITS
                   for node in sympy.preorder_traversal(expr) if node.args and not node.is_Rational)
    except RecursionError:
        return True


def _math_parse(text: str) -> list | None:
    """math-verify's parse (sympy objects plus a string fallback), or None if nothing usable was extracted."""
    import math_verify

    try:
        src = _math_input(text)
        parsed = math_verify.parse(src, parsing_timeout=None) if src is not None else None
        return None if not parsed or any(_too_big(p) for p in parsed) else parsed
    except Exception:  # math-verify catches its own errors; this is for ours
        return None


def _math_equal(gold: list, answer_text: str) -> bool:
    import math_verify

    pred = _math_parse(answer_text)
    return bool(pred) and bool(math_verify.verify(gold, pred, timeout_seconds=None))


_GOLD_LETTER = re.compile(r"\(?\s*([A-J])\s*\)?\.?")
_LETTER_ONLY = re.compile(r"\(?\s*([A-Ja-j])\s*\)?\s*[.:]?")
_LETTER_LEAD = re.compile(r"\(?([A-J])[).:](?:\s|$)")
_LETTER_ANCHOR = re.compile(r"(?i:answer|option|choice)(?:\s+(?i:is|would\s+be|should\s+be))?\s*[:*]*\s*"
                            r"(?i:option\s+)?\**\(?([A-J])\)?(?![A-Za-z0-9])")
_LATEX_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")


def _letter(answer_text: str) -> str | None:
    """The option letter an answer picks: ``B``, ``(B)``, ``B.``, ``\\boxed{B}``, ``The answer is B``, …"""
    ans = _plain(answer_text)
    if m := _LETTER_ONLY.fullmatch(ans):
        return m.group(1).upper()
    if m := _LETTER_LEAD.match(ans):
        return m.group(1)
    hits = _LETTER_ANCHOR.findall(ans[-MAX_PROSE_CHARS:])
    return hits[-1] if hits else None


def _plain(text: str) -> str:
    """The extracted answer without ``\\text{}``-style wrappers, ``$`` and ``**``."""
    return _LATEX_WRAP.sub(r"\1", extract_answer(text)).replace("$", "").replace("*", "").strip()


def _norm(text: str, fold: bool = True) -> str:
    """Exact-match normal form: the plain extracted answer, case-folded (unless ``fold=False``, for maths, where
    ``X`` is not ``x``), whitespace collapsed, trailing period dropped."""
    text = _plain(text)
    return " ".join((text.casefold() if fold else text).split()).rstrip(".").strip()


_WORDS = re.compile(r"[A-Za-z]+(?:[\s'-]+[A-Za-z]+)*\.?")


@functools.lru_cache(maxsize=4096)
def _prepare_gold(solution: str, kind: str) -> tuple[str, Any] | None:
    """(resolved kind, reference value) for a reference answer, or None if it cannot be parsed. Cached: the same
    reference is scored once per rollout of its prompt."""
    if kind == "auto":
        plain = _plain(solution)
        if letter := _GOLD_LETTER.fullmatch(plain):
            return "choice", letter.group(1)
        if len(plain) > 1 and _WORDS.fullmatch(plain):  # "yes", "Paris": sympy would read n*o == o*n
            return _prepare_gold(solution, "exact")
        return _prepare_gold(solution, "math") or _prepare_gold(solution, "exact")
    if kind == "choice":
        letter = _letter(solution)
        return None if letter is None else ("choice", letter)
    if kind == "exact":
        norm = _norm(solution)
        return ("exact", norm) if norm else None
    parsed = _bounded(_math_parse, solution)
    if parsed is _TIMED_OUT or not parsed or all(isinstance(p, str) for p in parsed):
        return None
    return "math", (parsed, _norm(solution, fold=False))


def _matches(gold: tuple[str, Any], answer_text: str) -> bool:
    kind, value = gold
    if kind == "choice":
        return _letter(answer_text) == value
    if kind == "exact":
        return _norm(answer_text) == value
    parsed, norm = value
    return _norm(answer_text, fold=False) == norm or _bounded(_math_equal, parsed, answer_text) is True


def _gold(solution: Any, kind: str | None) -> tuple[str, Any] | None:
    kind = (kind or "auto").strip().lower()
    if kind not in KINDS:
        raise ValueError(f"Unknown answer kind {kind!r}; use one of {KINDS}.")
    return _prepare_gold(_as_text(solution), kind)


def verify(answer_text: str, solution: str, kind: str = "auto") -> bool | None:
    """Does ``answer_text`` (the text after ``</think>``) answer ``solution`` correctly?

    ``kind``: ``math`` (math-verify on both sides: ``\\frac{1}{2}`` = ``0.5``, ``\\sqrt{8}`` = ``2\\sqrt{2}``),
    ``choice`` (option letters A–J in common spellings), ``exact`` (normalised string equality) or ``auto``
    (``choice`` if the reference is a single letter A–J, optionally in parentheses, else ``math``, else ``exact``
    if math-verify cannot parse the reference). Returns None when the *reference* cannot be parsed; an answer
    that cannot be parsed is False. Raises ValueError only for an unknown ``kind``.
    """
    gold = _gold(solution, kind)
    return None if gold is None else _matches(gold, _as_text(answer_text))


def score_response(
    text: str,
    solution: str,
    kind: str = "auto",
    forced_mode: str | Mode | None = None,
    prefixes: ModePrefixes | str | dict | None = None,
) -> float | None:
    """Score a full assistant turn (forced pre-fill + completion): 1.0 right, 0.0 wrong, None if unscorable.

    * the reference cannot be parsed → None (whatever the response);
    * a think block that was never closed (``truncated``) → 0.0;
    * ``forced_mode`` non-thinking (any alias, e.g. ``short``) but the model thought anyway → 0.0;
    * otherwise :func:`verify` on the text after the last ``</think>``.
    """
    gold = _gold(solution, kind)
    if gold is None:
        return None
    parsed = parse_response(_as_text(text), get_prefixes(prefixes))
    if parsed.mode == "truncated":
        return 0.0
    if forced_mode is not None and resolve_mode(forced_mode) is Mode.NON_THINKING and parsed.mode != "non_thinking":
        return 0.0
    return float(_matches(gold, parsed.answer))


# --------------------------------------------------------------------------------------------------------------
# TRL reward function
# --------------------------------------------------------------------------------------------------------------


def _content(completion: Any) -> str:
    """Text of a completion: a string, or the last message of ``[{"role": "assistant", "content": ...}]`` whose
    content may be a list of ``{"type": "text", "text": ...}`` blocks."""
    if isinstance(completion, (list, tuple)):
        completion = completion[-1] if completion else ""
    if isinstance(completion, dict):
        completion = completion.get("content", "")
    if isinstance(completion, (list, tuple)):
        completion = "".join((b.get("text") or "") if isinstance(b, dict) else _as_text(b) for b in completion)
    return _as_text(completion)


def _column(kwargs: dict, name: str, i: int) -> Any:
    """Row ``i`` of an optional per-row column (a scalar is used for every row)."""
    value = kwargs.get(name)
    return value[i] if isinstance(value, (list, tuple)) else value


_warned = False


def accuracy_reward(completions, solution, **kwargs) -> list[float | None]:
    """Mode-aware correctness reward in TRL's signature (``GRPOTrainer(reward_funcs=[accuracy_reward])``).

    Scores each completion with :func:`score_response`. Optional per-row columns (from the dataset or the
    trainer): ``forced_prefix`` (the assistant pre-fill that was in the prompt; prepended before scoring; a prefix
    that closes the think block implies ``forced_mode="non_thinking"``), ``forced_mode``, and ``answer_kind`` or
    ``kind``. Without ``forced_prefix`` the texts are scored as they are (evaluation passes full assistant turns).
    ``prefixes`` (a :class:`ModePrefixes`, family name or dict) may be passed as a keyword. Never raises: a row
    that fails scores 0.0 (logged once); an unparseable reference gives None (TRL then ignores the row).
    """
    global _warned
    try:
        n = len(completions)
    except Exception:
        return []
    prefixes = kwargs.get("prefixes")
    rewards: list[float | None] = []
    for i in range(n):
        try:
            p = get_prefixes(prefixes)
            text = _content(completions[i])
            prefix, mode = _column(kwargs, "forced_prefix", i), _column(kwargs, "forced_mode", i)
            if prefix:
                text = _as_text(prefix) + text
                if mode is None and _as_text(prefix).rstrip().endswith(p.close_tag):
                    mode = Mode.NON_THINKING
            kind = _column(kwargs, "answer_kind", i) or _column(kwargs, "kind", i) or "auto"
            sol = solution[i] if isinstance(solution, (list, tuple)) else solution
            rewards.append(score_response(text, sol, kind, mode, p))
        except (Exception, _Timeout) as e:
            if not _warned:
                _warned = True
                logger.warning("accuracy_reward: scoring a row failed (%r); it scores 0.0. Further failures are "
                               "not logged.", e)
            rewards.append(0.0)
    return rewards


accuracy_reward.__name__ = "accuracy_reward"


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its (signal-based) timeouts are off: here they are replaced by :func:`_bounded`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())
