"""Deterministic, rule-based stand-ins for the annotator, judge and reasoner models.

They let the curation pipeline run offline and reproducibly (the shipped ``data_prep/configs/sample_fake.yaml``, the
tests, CI). They are *fakes*: the arithmetic annotator solves only single operations, the judge matches keywords,
and the "oracle" reasoner writes a trace that ends in the reference answer. Use real models for real data.

Each is a curation ``type: python`` callable: it takes a :class:`r4b_trl.data.curation.Request` and returns the
assistant text(s).
"""

from __future__ import annotations

import hashlib
import re

_OP = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/^x×])\s*(-?\d+(?:\.\d+)?)")
_CHOICE_LINE = re.compile(r"^\s*([A-E])[.)]\s", re.M)


def _h(*parts) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _solve_single_operation(question: str) -> str | None:
    """The value of the only ``a op b`` in a short question, or None (word problems, several operations)."""
    ops = _OP.findall(question)
    if len(ops) != 1 or len(question) > 60:
        return None
    a, op, b = ops[0]
    a, b = float(a), float(b)
    ops = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "x": lambda: a * b, "×": lambda: a * b,
           "/": lambda: a / b, "^": lambda: a ** b}
    try:
        value = ops[op]()
    except (ZeroDivisionError, OverflowError):
        return None
    return _fmt(value)


def _dominant_colour(image) -> str:
    counts = {"red": 0, "green": 0, "blue": 0}
    data = image.convert("RGB").resize((16, 16)).tobytes()
    for r, g, b in zip(data[0::3], data[1::3], data[2::3]):
        if max(r, g, b) - min(r, g, b) < 60:
            continue  # white / grey
        counts[max(("red", r), ("green", g), ("blue", b), key=lambda t: t[1])[0]] += 1
    colour = max(counts, key=counts.get)
    return colour if counts[colour] else "white"


def arithmetic_annotator(req) -> list[str]:
    """A weak annotator: it answers single arithmetic operations (with an occasional slip: about 1 sample in 4
    is off by one), always picks option A in multiple choice, describes an image by its dominant colour, and
    guesses 0 otherwise. Returns ``req.n`` non-thinking answers."""
    out = []
    for k in range(req.n):
        if req.kind == "subjective":
            if req.images:
                out.append(f"The image is mostly {_dominant_colour(req.images[0])}.")
            else:
                out.append(f'Here is a direct answer to "{req.question}".')
            continue
        if req.images:
            out.append(f"The image is mostly {_dominant_colour(req.images[0])}.")
            continue
        if _CHOICE_LINE.search(req.question):
            out.append("The answer is A.")
            continue
        value = _solve_single_operation(req.question)
        if value is None:
            out.append("I think the answer is \\boxed{0}.")
        else:
            if _h(req.question, k) % 4 == 0:  # an arithmetic slip
                value = _fmt(float(value) + 1)
            out.append(f"The answer is \\boxed{{{value}}}.")
    return out


_REASONING_WORDS = ("prove", "step by step", "plan", "explain why", "derive", "schedule", "how many ways")
_DIRECT_WORDS = ("write", "translate", "summary", "summarise", "summarize", "describe", "haiku", "list")
_VERDICT_STYLES = ("VERDICT: {v}", "**Verdict:** {v}", "verdict: {vl}", "Final verdict: \\boxed{{{v}}}")


def keyword_judge(req) -> str:
    """A keyword judge: reasoning words → REASONING, direct-answer words → DIRECT, neither → no verdict at all
    (curation records that row as unparseable). The verdict line's formatting varies with the question, as a
    real judge's does."""
    q = req.question.lower()
    if any(w in q for w in _REASONING_WORDS):
        v = "REASONING"
    elif any(w in q for w in _DIRECT_WORDS):
        v = "DIRECT"
    else:
        return "Hard to say; it depends on what the user wants."
    style = _VERDICT_STYLES[_h(req.question) % len(_VERDICT_STYLES)]
    return f"The query {'needs working out' if v == 'REASONING' else 'can be answered at once'}.\n" + style.format(
        v=v, vl=v.lower())


def oracle_reasoner(req) -> str:
    """A fake reasoning model: a short step-by-step trace that ends in the reference answer (or, without one, in a
    generic answer). Returns the whole thinking-mode assistant turn."""
    steps = [
        "Let me work through this step by step.",
        f"The question asks: {req.question.strip()}",
        "I will break it into parts and check each one.",
    ]
    if req.solution:
        if req.answer_kind == "choice":
            final = f"The answer is {req.solution}."
        else:
            final = f"The answer is \\boxed{{{req.solution}}}."
        steps.append(f"Putting the parts together gives {req.solution}.")
    else:
        final = f'Here is a worked answer to "{req.question.strip()}".'
        steps.append("Now I can write the answer.")
    return "<think>\n" + "\n".join(steps) + "\n</think>\n\n" + final
