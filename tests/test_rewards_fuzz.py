"""Fuzz: random strings that contain the gold answer must not score 1, and no check may overrun its time bound.

The generators are also used by ``benchmarks/reward_throughput.py`` (which measures p50/p99/max on 10,000).
"""

from __future__ import annotations

import random
import time

GOLDS = ["1", "7", "12", "0", "-3", "0.5", r"\frac{1}{2}", "2", "100"]

UNICODE_RANGES = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x2000, 0x206F), (0x2100, 0x22FF),
                  (0x2500, 0x25FF), (0x3040, 0x30FF), (0x4E00, 0x4E80), (0x1F300, 0x1F64F), (0x300, 0x36F)]
LATEX = ["\\frac{", "}", "{", "^", "_", "\\sqrt{", "$", "$$", "\\(", "\\)", "\\[", "\\]", "\\left(", "\\right)",
         "\\text{", "\\cdot", "=", "+", "-", "\\pi", "e^{", "\\times", ",", "(", ")", "[", "]", "\\infty", "x", "y",
         "\\in", "\\le", "&", "\\\\", "\\begin{pmatrix}", "\\end{pmatrix}", "%", "!", "/", ".", " "]
TAGS = ["<think>", "<tool_call>", "</tool_call>", "<|im_end|>", "<br>", "**", "##", "\n", "\n\n", "```"]
#: Words around the gold; no closing statement ("so 2", "x = 2" and "answer: 2" would end a text with one answer).
WORDS = ["maybe", "or", "and", "not", "between", "perhaps", "either", "we", "get", "then", "total", "is",
         "the", "value", "approximately", "about", "it", "cats", "hmm", "wait", "check"]
HUGE = [r"\prod_{k=1}^{10^{10}} k", r"e^{e^{e^{e^{e}}}}", r"9^{9^{9^{9}}}", r"10^{10^{10}}", r"(10^{9})!",
        r"\binom{1000000000}{500000000}", r"(x+1)^{1000}", "{" * 400, "(" * 2000, r"\sqrt{" * 200,
        r"\sum_{n=1}^{\infty} \frac{1}{n^{2}}", r"\int_0^{\infty} e^{-x^2} dx", "9" * 5000, r"2^{2^{2^{2^{2}}}}"]


def _junk(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        lo, hi = rng.choice(UNICODE_RANGES)
        return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6)))
    if r < 0.65:
        return rng.choice(LATEX)
    if r < 0.8:
        return rng.choice(TAGS)
    if r < 0.92:
        return rng.choice(WORDS)
    return str(rng.randint(0, 20))


def gold_strings(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(text, gold)``: random junk (unicode, LaTeX fragments, tags, words, numbers) with the gold inserted once
    or a few times, raw, in ``$…$`` or in a box among other boxes. None of them states one answer."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gold = rng.choice(GOLDS)
        parts = [_junk(rng) for _ in range(rng.randint(3, 25))]
        for _ in range(rng.randint(1, 3)):
            form = rng.random()
            other = next(j for j in iter(lambda: _junk(rng), None) if j.strip() != gold)
            g = gold if form < 0.6 else f"${gold}$" if form < 0.8 else rf"\boxed{{{gold}}} \boxed{{{other}}}"
            parts.insert(rng.randint(0, len(parts)), g)
        if all(p in WORDS or p in GOLDS or p.strip("$") in GOLDS for p in parts):
            parts.insert(rng.randint(0, len(parts)), rng.choice(LATEX[:20]))  # not just words around the gold
        out.append(("".join(parts) if rng.random() < 0.5 else " ".join(parts), gold))
    return out


def adversarial(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(text, gold)`` for timing: the gold strings plus huge numbers, deep nesting, nested and long boxes, long
    tag soup (what a policy can emit), as answers after ``</think>`` or as whole turns."""
    rng = random.Random(seed + 1)
    base = gold_strings(n, seed)
    out = []
    for text, gold in base:
        r = rng.random()
        if r < 0.25:
            text = rng.choice([r"\boxed{%s}", "$%s$", "The answer is %s", "%s", r"\boxed{\boxed{%s}}"]) % rng.choice(HUGE)
        elif r < 0.35:
            text = text + r"\boxed{" * rng.randint(1, 50) + text + "}" * rng.randint(0, 50)
        elif r < 0.4:
            text = text * rng.randint(20, 200)
        if rng.random() < 0.5:
            text = "<think>\n" + _junk(rng) + "\n</think>\n\n" + text
        elif rng.random() < 0.2:
            text = text.replace(" ", "</think>", 1)
        out.append((text, gold))
    return out


# ---------------------------------------------------------------------------------------------------------------


def test_random_strings_with_the_gold_never_score():
    from r4b_trl.rewards import accuracy_reward

    cases = gold_strings(3000, seed=12)
    assert all(g in t for t, g in cases)
    rewards = accuracy_reward([t for t, _ in cases], [g for _, g in cases])
    hits = [(t, g) for (t, g), r in zip(cases, rewards) if r == 1.0]
    assert not hits, f"{len(hits)} of {len(cases)} random strings scored 1: {hits[:5]}"
    assert all(r == 0.0 for r in rewards)  # every gold parses: none is None


def test_adversarial_sample_is_bounded(monkeypatch):
    """A sample of the timing fuzz, checked one completion at a time: none exceeds the time bound by more than
    the process round trip."""
    from r4b_trl import rewards

    monkeypatch.setattr(rewards, "TIMEOUT_S", 1.0)
    slowest = 0.0
    for text, gold in adversarial(150, seed=3):
        start = time.monotonic()
        out = rewards.accuracy_reward([text], [gold])
        slowest = max(slowest, time.monotonic() - start)
        assert out[0] in (0.0, 1.0)
    assert slowest < 1.0 + 1.0, slowest
