"""Verification by kind: does an answer state the reference answer? Runs inside the worker processes
(:mod:`r4b_trl.rewards.pool`), so it imports only the standard library, math-verify and :mod:`answer`.

math-verify's own timeouts use ``signal.alarm``; they are off here: the worker is killed from outside instead.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import Any

try:
    from . import answer as A
except ImportError:  # imported as a top-level module by the worker script
    import answer as A  # type: ignore[no-redef]

#: Expressions whose evaluation would build a number with more digits than this count as unparseable.
MAX_DIGITS = 10_000
#: Evaluated while parsing, so rejected from the text: binomials and factorials of numbers with 7+ digits.
_HUGE_TEXT = re.compile(r"\\[dt]?binom\s*\{?\s*\d{7}|\\choose\s*\d{7}|\d{7,}\s*\}?\s*\)?\s*!")

_GOLD_LETTER = re.compile(r"\(?\s*([A-J])\s*\)?\.?")
_WORDS = re.compile(r"[A-Za-z]+(?:[\s'-]+[A-Za-z]+)*\.?")


def _plain(text: str) -> str:
    """A text without ``\\text{}``-style wrappers, ``$``, ``*`` and surrounding blanks/periods."""
    return A._WRAP_RE.sub(r"\1", text).replace("$", "").replace("*", "").strip().rstrip(".").strip()


def _norm(text: str, fold: bool = True) -> str:
    """Exact-match normal form: plain, case-folded (unless ``fold=False``, for maths, where ``X`` is not ``x``),
    whitespace collapsed."""
    text = _plain(A.normalize_text(text))
    return " ".join((text.casefold() if fold else text).split())


# --------------------------------------------------------------------------------------------------------------
# math-verify, bounded in size
# --------------------------------------------------------------------------------------------------------------


def _log10_bound(e) -> float:
    """A rough upper bound of log10|value| of a sympy expression, used to spot integers too large to build."""
    if e.is_Rational:
        return sum(sign * (math.log10(n) if n.bit_length() < 1000 else n.bit_length() * 0.302)
                   for sign, n in ((1, max(abs(int(e.p)), 1)), (-1, int(e.q))))
    if e.is_Pow and e.args[0].is_Add and e.args[0].free_symbols and e.args[1].is_Number and abs(e.args[1]) > 100:
        return float("inf")  # (x+1)^{1000}: expanding it takes seconds
    args = [_log10_bound(a) for a in e.args]
    if e.is_Pow:
        return 10 ** min(args[1], 300.0) * max(abs(args[0]), 0.302)
    if e.func.__name__ in ("Integral", "Sum", "Product") and any(b.has(sympy_oo()) for lim in e.args[1:] for b in lim.args[1:]):
        return float("inf")  # an improper integral or infinite series left for sympy: seconds to minutes
    if e.func.__name__ == "exp":  # e^x has about 0.43·x digits
        return 10 ** min(args[0], 300.0) * 0.4343
    if e.func.__name__ in ("Product", "Sum") and len(e.args) > 1:  # a product of n terms: n! at worst
        terms = sum(10 ** min(max(_log10_bound(b) for b in lim.args[1:]), 300.0) for lim in e.args[1:])
        return terms * max(args[0], 1.0) if e.func.__name__ == "Product" else max(args[0], 1.0) + math.log10(terms)
    if e.func.__name__ in ("factorial", "factorial2", "subfactorial", "gamma", "binomial"):
        n = 10 ** min(args[0], 300.0)
        return n * max(args[0], 0.302)
    if e.is_Mul:
        return sum(abs(a) for a in args)
    return max(args, default=1.0) + 1.0


def sympy_oo():
    import sympy

    return sympy.oo


def _too_big(expr) -> bool:
    """Would evaluating ``expr`` build an integer of more than ``MAX_DIGITS`` digits (``10^{10^{10}}``,
    ``\\prod_{k=1}^{10^{10}} k``, ``e^{e^{e^{e^{e}}}}``), expand a polynomial to a power above 100, or evaluate an
    improper integral or an infinite series? Such a value is rejected at once instead of running into the time bound."""
    import sympy

    if not isinstance(expr, sympy.Basic):
        return False
    try:
        return any(_log10_bound(node) > MAX_DIGITS for node in sympy.preorder_traversal(expr)
                   if node.args and not node.is_Rational and (not node.free_symbols or node.is_Pow))
    except (RecursionError, TypeError, ValueError, OverflowError):
        return True


def _mv_parse(latex: str) -> list | None:
    import math_verify

    parsed = math_verify.parse(latex, parsing_timeout=None)
    return None if not parsed or any(_too_big(p) for p in parsed) else parsed


def math_value(parts: tuple[str, ...], bare: bool = False) -> list | None:
    """math-verify's parse of a stated answer: one value, or a set for several boxes (as math-verify reads
    ``\\boxed{1}, \\boxed{2}``). None when a part does not parse. ``bare``: see ``answer.prepare_expression``."""
    values = []
    for part in parts:
        expr = A._DOLLAR.sub(" ", A.prepare_expression(part, bare=bare))
        if not expr or len(expr) > A.MAX_EXPR_CHARS or _HUGE_TEXT.search(expr):
            return None
        parsed = _mv_parse("\\boxed{" + expr + "}")
        if parsed is None:
            return None
        values.append(parsed)
    if len(values) == 1:
        return values[0]
    if any(isinstance(v[0], str) for v in values):
        return None
    from latex2sympy2_extended.sets import FiniteSet

    elements = []
    for v in values:
        elements.extend(v[0].args if isinstance(v[0], FiniteSet) else [v[0]])
    joined = FiniteSet(*elements)
    return [joined.args[0] if len(joined.args) == 1 else joined]


# --------------------------------------------------------------------------------------------------------------
# References and predictions
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def prepare_gold(solution: str, kind: str) -> tuple[str, Any] | None:
    """(resolved kind, reference value), or None if the reference cannot be parsed. References are trusted: the
    rule decides first, then math-verify reads the whole text if the rule finds nothing. Cached."""
    if kind == "auto":
        boxed = A.boxes(solution)
        plain = _plain(boxed[-1][2] if len(boxed) == 1 else solution)
        if letter := _GOLD_LETTER.fullmatch(plain):
            return "choice", letter.group(1)
        if len(plain) > 1 and _WORDS.fullmatch(plain):  # "yes", "Paris": sympy would read n*o == o*n
            return prepare_gold(solution, "exact")
        return prepare_gold(solution, "math") or prepare_gold(solution, "exact")
    found = A.final_answer(solution, kind)
    if kind == "choice":
        letters = {A.letter_of(p, whole=found.source == "whole") for p in found.parts} if found else {None}
        if None in letters:
            letters = {A.letter_of(solution, whole=True)}
        return ("choice", letters.pop()) if len(letters) == 1 and None not in letters else None
    if kind == "exact":
        if found is None and A.boxes(solution):
            return None  # an empty or unclosed box
        norm = _norm(", ".join(found.parts) if found else solution)
        return ("exact", norm) if norm else None
    raw = A.normalize_text(solution)[-A.MAX_PROSE_CHARS:]
    usable = lambda r: bool(r) and not all(isinstance(p, str) for p in r)  # noqa: E731
    readings = [math_value(found.parts, _bare(found)) if found else None]
    if not usable(readings[0]) or found.source != "whole":  # math-verify's own reading of the whole text
        readings.append(None if _HUGE_TEXT.search(raw) else _mv_parse(raw))
    readings = [r for r in readings if usable(r)]
    readings = [r for i, r in enumerate(readings) if str(r[0]) not in {str(x[0]) for x in readings[:i]}]
    if not readings:
        return None
    return "math", (readings, _norm(", ".join(found.parts) if found else solution, fold=False))


def _bare(found: A.Answer) -> bool:
    return found.source != "box" and len(found.parts) == 1 and not re.search(r"[$\\]", found.parts[0])


def matches(gold: tuple[str, Any], answer_text: str) -> bool:
    """Does ``answer_text`` state the prepared reference ``gold``?"""
    kind, value = gold
    if kind == "math" and len(answer_text) < 200 and _norm(A.strip_delimiters(answer_text), fold=False) == value[1]:
        return True  # the reference itself, word for word ("\\text{Even}" for "Even")
    found = A.final_answer(answer_text, kind)
    if found is None:
        return False
    if kind == "choice":
        return {A.letter_of(p, whole=found.source == "whole") for p in found.parts} == {value}
    if kind == "exact":
        return {_norm(p) for p in found.parts} == {value}
    import math_verify

    readings, norm = value
    if _norm(", ".join(found.parts), fold=False) == norm:
        return True
    pred = math_value(found.parts, _bare(found))
    return bool(pred) and any(math_verify.verify(gold_value, pred, timeout_seconds=None) for gold_value in readings)


WARM_UP = [("\\boxed{\\frac{1}{2}}", "0.5"), ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}"), ("\\boxed{(1, 2)}", "(1,2)"),
           ("\\boxed{x^2+2x+1}", "(x+1)^2"), ("\\boxed{[0, 1)}", "[0,1)"), ("\\boxed{\\{1, 2\\}}", "1, 2"),
           ("\\boxed{x = 5}", "5"), ("\\boxed{\\dfrac{\\pi}{4}}", "\\frac{\\pi}{4}"), ("\\boxed{10\\%}", "0.1"),
           ("\\boxed{\\text{B}}", "B"), ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "(1, 2)"),
           ("The answer is $-3$.", "-3"), ("\\boxed{e^{2}}", "e^2"), ("\\boxed{\\log_2 8}", "3"),
           ("\\boxed{\\int_0^{1} x^2 dx}", "1/3"), ("\\boxed{\\sum_{k=1}^{n} k}", "n(n+1)/2")]


def warm_up() -> None:
    """Parse typical answers once: the LaTeX parser's caches then serve every worker forked afterwards."""
    for answer, gold in WARM_UP:
        verify_text(answer, gold, "auto")


def verify_text(answer_text: str, solution: str, kind: str, on_gold=None) -> bool | None:
    """True/False, or None when the reference cannot be parsed. ``on_gold(ok)`` is called once the reference is
    prepared (the worker reports it, so that a later timeout is known to be the answer's)."""
    gold = prepare_gold(solution, kind)
    if on_gold is not None:
        on_gold(gold is not None)
    return None if gold is None else matches(gold, answer_text)


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its (signal-based) timeouts are off: here the worker is killed instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())
