"""A minimal stand-in for ``r4b_trl.rewards`` (written on another branch), installed only while the real module
is missing, so these tests run on the curation branch alone. It implements the agreed API with simple rules:
``verify(answer_text, solution, kind="auto") -> bool | None`` (None: the gold answer cannot be parsed)."""

import re
import sys
import types

_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def _boxed(text):
    i = text.rfind("\\boxed{")
    if i == -1:
        return None
    depth, j = 1, i + len("\\boxed{")
    start = j
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[start:j - 1] if depth == 0 else None


def _number(text):
    b = _boxed(text)
    nums = _NUM.findall(b if b is not None else text)
    return float(nums[-1]) if nums else None


def _letter(text):
    m = re.findall(r"\b([A-E])\b", _boxed(text) or text)
    return m[-1] if m else None


def verify(answer_text, solution, kind="auto"):
    solution = (solution or "").strip()
    if kind == "auto":
        kind = "choice" if re.fullmatch(r"[A-E]", solution) else ("math" if _NUM.fullmatch(solution) else "exact")
    if kind == "math":
        gold = _number(solution)
        if gold is None:
            return None
        got = _number(answer_text or "")
        return got is not None and abs(got - gold) < 1e-9
    if kind == "choice":
        gold = _letter(solution)
        if gold is None:
            return None
        return _letter(answer_text or "") == gold
    if not solution:
        return None
    return " ".join((answer_text or "").lower().split()) == " ".join(solution.lower().split())


def install():
    try:
        import r4b_trl.rewards  # noqa: F401
    except ImportError:
        mod = types.ModuleType("r4b_trl.rewards")
        mod.verify = verify
        mod.__doc__ = __doc__
        sys.modules["r4b_trl.rewards"] = mod
        import r4b_trl

        r4b_trl.rewards = mod
