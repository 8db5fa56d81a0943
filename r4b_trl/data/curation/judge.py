"""The difficulty heuristic's judge: its prompt (shipped, replaceable) and the verdict parsed from its reply."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..io import DataError

DEFAULT_JUDGE_PROMPT_FILE = Path(__file__).parent.parent / "prompts" / "judge_difficulty.txt"


def load_judge_prompt(path: str | os.PathLike | None = None) -> str:
    p = Path(path) if path else DEFAULT_JUDGE_PROMPT_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"judge_prompt_file {str(p)!r} cannot be read ({e}).") from e
    if "{question}" not in text:
        raise DataError(f"judge_prompt_file {str(p)!r} has no {{question}} placeholder for the query.")
    return text


_VERDICT_RE = re.compile(r"verdict\s*(?:is)?\s*[:=\-–—]?\s*(reasoning|direct)\b", re.I)
_BOXED_RE = re.compile(r"\\boxed\s*\{\s*(?:\\text\s*\{\s*)?([A-Za-z_ ]+?)\s*\}")
_BARE_RE = re.compile(r"^\s*(reasoning|direct)\s*[.!]?\s*$", re.I)


def parse_verdict(text: str | None) -> str | None:
    """``"REASONING"``, ``"DIRECT"`` or None from a judge's reply. Markdown emphasis and code marks are ignored,
    ``\\boxed{...}`` is unwrapped, case does not matter, and when several verdicts appear the last one wins. A reply
    that is only the word counts too. Anything else is None (unparseable), never a guess."""
    if not text:
        return None
    t = re.sub(r"[*_`#]", "", text)
    found: list[tuple[int, str]] = [(m.start(), m.group(1)) for m in _VERDICT_RE.finditer(t)]
    for m in _BOXED_RE.finditer(t):
        word = m.group(1).strip().lower()
        if word in ("reasoning", "direct"):
            found.append((m.start(), word))
    if not found:
        m = _BARE_RE.match(t)
        return m.group(1).upper() if m else None
    return max(found)[1].upper()
