"""Rule-based, mode-aware correctness: the one home for "is this answer right".

BPO's reward, data curation and evaluation all call into this package:

* :func:`extract_answer` — the stated answer of an answer text, by the extraction rule of :mod:`.answer`;
* :func:`verify` — does an answer (the text after ``</think>``) state the reference? ``math`` (math-verify),
  ``choice`` (letters A–J), ``exact`` (normalised strings) or ``auto``; ``None`` when the *reference* cannot be
  parsed, so callers can count the item as unscorable instead of silently wrong;
* :func:`score_response` — scores a full assistant turn (forced pre-fill + completion) with the mode rules;
* :func:`accuracy_reward` — the same as a TRL reward function, for every completion shape TRL hands over
  (text, messages, messages parsed into ``reasoning_content`` + ``content`` + ``tool_calls``);
* :func:`assistant_turn` — rebuilds the assistant turn (pre-fill + reasoning + answer) from such messages.

Time bound: every check runs in a small pool of worker processes (:mod:`.pool`); one that takes longer than
``TIMEOUT_S`` is killed and replaced, whatever thread called it and whatever C code it was in. An answer cut short
scores 0; a reference cut short is unscorable (None).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ..modes import Mode, ModePrefixes, get_prefixes, parse_response, resolve_mode
from . import answer as _answer
from . import check as _check
from .pool import TIMEOUT, PoolUnavailable, WorkerPool

__all__ = ["KINDS", "extract_answer", "verify", "verify_many", "score_response", "accuracy_reward",
           "assistant_turn"]

logger = logging.getLogger(__name__)

KINDS = ("auto", "math", "choice", "exact")
#: Wall-clock budget (seconds) of one check (reference + answer), enforced by killing the worker process.
TIMEOUT_S = float(os.environ.get("R4B_REWARD_TIMEOUT_S", "1.0"))
#: Worker processes (checks of a batch run in parallel). 0: check in the calling process, with no time bound.
WORKERS = int(os.environ.get("R4B_REWARD_WORKERS", str(min(4, os.cpu_count() or 1))))

_pool: WorkerPool | None = None
_pool_lock = threading.Lock()
_warned: set[str] = set()


def _warn_once(key: str, msg: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(msg, *args)


def get_pool() -> WorkerPool | None:
    """The process pool (started on first use), or None when checks run in-process."""
    global _pool
    with _pool_lock:
        if _pool is None and WORKERS > 0:
            _pool = WorkerPool(WORKERS)
        return _pool


def _as_text(x: Any) -> str:
    return "" if x is None else x if isinstance(x, str) else str(x)


def _kind(kind: str | None) -> str:
    kind = (kind or "auto").strip().lower() if isinstance(kind, str) or kind is None else str(kind)
    if kind not in KINDS:
        raise ValueError(f"Unknown answer kind {kind!r}; use one of {KINDS}.")
    return kind


def verify_many(items: list[tuple[str, str, str]]) -> list[bool | None]:
    """:func:`verify` for many ``(answer_text, solution, kind)`` at once (spread over the worker processes)."""
    requests = [[_as_text(a), _as_text(s), _kind(k)] for a, s, k in items]
    p = get_pool()
    if p is not None:
        try:
            raw = p.run(requests, TIMEOUT_S)
        except PoolUnavailable as e:
            _warn_once("pool", "rewards: %s; checking in-process without a time bound.", e)
            raw = [_check.verify_text(*r) for r in requests]
    else:
        raw = [_check.verify_text(*r) for r in requests]
    out: list[bool | None] = []
    for r in raw:
        if isinstance(r, tuple) and r[0] == TIMEOUT:  # (TIMEOUT, the reference parsed before the cut?)
            out.append(False if r[1] else None)
        elif isinstance(r, str):  # an error inside the worker: the answer scores 0
            _warn_once("error", "rewards: a check failed (%s); it scores 0. Further failures are not logged.", r)
            out.append(False)
        else:
            out.append(r)
    return out


def verify(answer_text: str, solution: str, kind: str = "auto") -> bool | None:
    """Does ``answer_text`` (the text after ``</think>``) state ``solution``?

    The answer is extracted by the rule in :mod:`r4b_trl.rewards.answer` (boxes; else a closing statement; else
    the whole text as one value; otherwise no answer → False). ``kind``: ``math`` (math-verify on both sides:
    ``\\frac{1}{2}`` = ``0.5``, ``\\sqrt{8}`` = ``2\\sqrt{2}``), ``choice`` (one letter A–J), ``exact``
    (normalised string equality) or ``auto`` (``choice`` if the reference is a single letter, ``exact`` for a
    word reference, else ``math``, else ``exact``). Returns None when the *reference* cannot be parsed. Raises
    ValueError only for an unknown ``kind``.
    """
    return verify_many([(answer_text, solution, kind)])[0]


def extract_answer(answer_text: str, kind: str = "math") -> str:
    """The stated answer of ``answer_text`` as one string (several boxes joined by ``", "``), ``""`` if none."""
    return _answer.extract_answer(answer_text, kind if kind in ("math", "choice", "exact") else "math")


def _turn_verdict(text: str, forced_mode, prefixes: ModePrefixes) -> str | None:
    """The answer text to check, or None when the mode rules already make the turn score 0."""
    parsed = parse_response(_as_text(text), prefixes)
    if parsed.mode == "truncated":
        return None
    if forced_mode is not None and resolve_mode(forced_mode) is Mode.NON_THINKING and parsed.mode != "non_thinking":
        return None
    return parsed.answer


def score_response(text: str, solution: str, kind: str = "auto", forced_mode: str | Mode | None = None,
                   prefixes: ModePrefixes | str | dict | None = None) -> float | None:
    """Score a full assistant turn (forced pre-fill + completion): 1.0 right, 0.0 wrong, None if unscorable.

    * the reference cannot be parsed → None (whatever the response);
    * a think block that was never closed (``truncated``) → 0.0;
    * ``forced_mode`` non-thinking (any alias, e.g. ``short``) but the model thought anyway → 0.0;
    * otherwise :func:`verify` on the text after the last ``</think>``.
    """
    p = get_prefixes(prefixes)
    answer = _turn_verdict(text, forced_mode, p)
    verdict = verify(answer if answer is not None else "", solution, kind)
    return None if verdict is None else float(bool(verdict) and answer is not None)


# --------------------------------------------------------------------------------------------------------------
# TRL completion shapes
# --------------------------------------------------------------------------------------------------------------


def _blocks(content: Any) -> str:
    if isinstance(content, (list, tuple)):
        return "".join((b.get("text") or "") if isinstance(b, dict) else _as_text(b) for b in content)
    return _as_text(content)


_PARSED_KEYS = ("reasoning_content", "reasoning", "thinking", "tool_calls")


def assistant_turn(completion: Any, prefix: str = "", prefixes: ModePrefixes | str | dict | None = None,
                   parsed: bool | None = None) -> str:
    """The assistant turn (``prefix`` + reasoning + answer) of a completion in any shape TRL hands a reward:

    * a string, or messages ``[{"role": "assistant", "content": ...}]`` decoded as raw text (content may be
      ``{"type": "text"}`` blocks): ``prefix`` + the last message's content;
    * messages parsed by the tokenizer's ``response_template`` (TRL does this whenever the tokenizer has one, which
      it installs with ``tools``): ``reasoning_content`` holds the think block without its tags, ``content`` the
      answer, and after tool calls every assistant message of the rollout is in the list. The turn is rebuilt as
      pre-fill + reasoning + close tag + the last message's content, which parses to the same mode and answer as
      the raw text. The parser keeps an unclosed think block in ``reasoning_content`` with an empty ``content``:
      the rebuilt turn has no answer and scores 0, as the raw text does.

    ``parsed``: whether the messages come from a response parser. By default, when a message has one of the
    parser's fields; pass True when the tokenizer has a response template (BPO does, in its
    ``completions_parsed`` column): after a pre-fill that leaves the think block open, a parsed message with only
    ``content`` had an empty think block, whereas a raw one is a think block never closed.
    """
    p = get_prefixes(prefixes)
    prefix = _as_text(prefix)
    if not isinstance(completion, (list, tuple, dict)):
        return prefix + _as_text(completion)
    messages = [completion] if isinstance(completion, dict) else list(completion)
    messages = [m for m in messages if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
    if not messages:
        return prefix
    content = _blocks(messages[-1].get("content"))
    if parsed is None:
        parsed = any(k in m for m in messages for k in _PARSED_KEYS)
    if not parsed:
        return prefix + content
    reasoning = [_as_text(m.get("reasoning_content") or m.get("reasoning") or m.get("thinking")) for m in messages]
    reasoning = "\n".join(r for r in reasoning if r)
    if parse_response(prefix, p).mode == "truncated":  # the pre-fill left the think block open
        return f"{prefix}{reasoning}\n{p.close_tag}\n\n{content}"
    if reasoning:
        return f"{prefix}{p.open_tag}\n{reasoning}\n{p.close_tag}\n\n{content}"
    return prefix + content


def _column(kwargs: dict, name: str, i: int) -> Any:
    """Row ``i`` of an optional per-row column (a scalar is used for every row)."""
    value = kwargs.get(name)
    if isinstance(value, (list, tuple)):
        return value[i] if i < len(value) else None
    return value


def accuracy_reward(completions, solution, **kwargs) -> list[float | None]:
    """Mode-aware correctness reward in TRL's signature (``GRPOTrainer(reward_funcs=[accuracy_reward])``).

    Each completion is rebuilt into its assistant turn (:func:`assistant_turn`) and scored like
    :func:`score_response`. Optional per-row columns: ``forced_prefix`` (the assistant pre-fill that was in the
    prompt; a prefix that closes the think block implies ``forced_mode="non_thinking"``), ``forced_mode``, and
    ``answer_kind`` or ``kind``, ``completions_parsed`` (see :func:`assistant_turn`). Without ``forced_prefix`` the texts are scored as they are (evaluation passes full
    assistant turns). ``prefixes`` (a :class:`ModePrefixes`, family name or dict) may be passed as a keyword. The
    rows of a batch are checked in parallel. Never raises: a row that fails scores 0.0 (logged once); an
    unparseable reference gives None (TRL then ignores the row).
    """
    try:
        n = len(completions)
    except Exception:
        return []
    rewards: list[float | None] = [0.0] * n
    items, where = [], []
    for i in range(n):
        try:
            p = get_prefixes(kwargs.get("prefixes"))
            prefix, mode = _as_text(_column(kwargs, "forced_prefix", i)), _column(kwargs, "forced_mode", i)
            if prefix and mode is None and parse_response(prefix, p).mode == "non_thinking":
                mode = Mode.NON_THINKING
            parsed = _column(kwargs, "completions_parsed", i)
            turn = assistant_turn(completions[i], prefix, p, None if parsed is None else bool(parsed))
            answer = _turn_verdict(turn, mode, p)
            kind = _kind(_column(kwargs, "answer_kind", i) or _column(kwargs, "kind", i) or "auto")
            sol = solution[i] if isinstance(solution, (list, tuple)) else solution
            items.append((answer if answer is not None else "", sol, kind))
            where.append((i, answer is not None))
        except Exception as e:  # noqa: BLE001 - a junk row scores 0, the batch goes on
            _warn_once("row", "accuracy_reward: scoring a row failed (%r); it scores 0.0. Further failures are "
                       "not logged.", e)
    try:
        verdicts = verify_many(items)
    except Exception as e:  # noqa: BLE001
        _warn_once("batch", "accuracy_reward: the batch could not be checked (%r); it scores 0.0.", e)
        return rewards
    for (i, has_answer), v in zip(where, verdicts):
        rewards[i] = None if v is None else float(bool(v) and has_answer)
    return rewards


accuracy_reward.__name__ = "accuracy_reward"
