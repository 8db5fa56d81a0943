"""The thinking-mode vocabulary of r4b-trl.

Every stage (SFT, BPO, evaluation, curation, chat) imports its notion of a *mode* from here:

* the three modes a user can ask for (``auto``, ``thinking``, ``non_thinking``) and their aliases
  (R-4B's ``long`` / ``short``),
* the assistant pre-fill ("prefix") that forces each mode, configurable per model family,
* (rendering a prompt in a mode for any chat template, ``render_prompt`` / ``check_template``, lives in
  :mod:`r4b_trl.templates`, which builds on this module),
* parsing what a model said (prefix + generated text) into mode, reasoning and final answer,
* checks that a tokenizer can carry the think tags through decoding.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UsageError

__all__ = [
    "Mode",
    "MODE_ALIASES",
    "ModeError",
    "ModePrefixes",
    "PREFIX_FAMILIES",
    "get_prefixes",
    "resolve_mode",
    "ParsedResponse",
    "parse_response",
    "TemplateStyle",
    "template_style",
    "check_think_tokens",
    "add_think_tokens",
    "PREFIX_MARKER",
    "with_prefix",
    "chat_template_of",
    "DecisionTokens",
    "decision_tokens",
]


class ModeError(UsageError):
    """Raised for an unknown mode, a template that cannot express a mode, or a tokenizer that cannot carry the
    think tags. The message always says what to do."""


class Mode(str, enum.Enum):
    AUTO = "auto"
    THINKING = "thinking"
    NON_THINKING = "non_thinking"

    def __str__(self) -> str:  # "thinking", not "Mode.THINKING"
        return self.value

    @property
    def r4b_name(self) -> str:
        """R-4B's name for this mode (the ``thinking_mode`` chat-template kwarg)."""
        return {"auto": "auto", "thinking": "long", "non_thinking": "short"}[self.value]


#: Every accepted spelling of a mode, lower-cased. R-4B's ``long``/``short`` and a few common variants.
MODE_ALIASES: dict[str, Mode] = {
    "auto": Mode.AUTO,
    "auto_thinking": Mode.AUTO,
    "thinking": Mode.THINKING,
    "think": Mode.THINKING,
    "long": Mode.THINKING,
    "non_thinking": Mode.NON_THINKING,
    "non-thinking": Mode.NON_THINKING,
    "nonthinking": Mode.NON_THINKING,
    "no_think": Mode.NON_THINKING,
    "nothink": Mode.NON_THINKING,
    "short": Mode.NON_THINKING,
}


def resolve_mode(name: str | Mode) -> Mode:
    """Return the :class:`Mode` for ``name`` (a mode, one of its values, or an alias such as ``long``)."""
    if isinstance(name, Mode):
        return name
    if isinstance(name, str):
        key = name.strip().lower()
        if key in MODE_ALIASES:
            return MODE_ALIASES[key]
    raise ModeError(
        f"Unknown thinking mode {name!r}. Use one of 'auto', 'thinking', 'non_thinking' "
        f"(R-4B's names 'long' = thinking and 'short' = non_thinking are accepted too)."
    )


@dataclass(frozen=True)
class ModePrefixes:
    """The strings that force each mode as an assistant pre-fill, and the think tags themselves.

    The defaults follow R-4B / Qwen3: thinking answers look like ``<think>\\n…\\n</think>\\n\\nanswer`` and
    non-thinking answers like ``<think>\\n\\n</think>\\n\\nanswer``.
    """

    open_tag: str = "<think>"
    close_tag: str = "</think>"
    auto: str = "<think>"
    thinking: str = "<think>\n"
    non_thinking: str = "<think>\n\n</think>\n\n"

    def __post_init__(self):
        for field_name in ("auto", "thinking", "non_thinking"):
            value = getattr(self, field_name)
            if not value.startswith(self.open_tag):
                raise ModeError(
                    f"ModePrefixes.{field_name}={value!r} must start with the open tag {self.open_tag!r}."
                )
        if self.close_tag not in self.non_thinking:
            raise ModeError(
                f"ModePrefixes.non_thinking={self.non_thinking!r} must close the think block with {self.close_tag!r}."
            )
        if self.close_tag in self.thinking or self.close_tag in self.auto:
            raise ModeError("The thinking and auto prefixes must leave the think block open.")

    def prefix(self, mode: str | Mode) -> str:
        return getattr(self, resolve_mode(mode).value)

    def thinking_answer(self, reasoning: str, answer: str) -> str:
        """A full assistant turn in thinking mode: ``<think>\\nreasoning\\n</think>\\n\\nanswer``."""
        reasoning = reasoning.strip("\n")
        if not reasoning.strip():
            raise ModeError("A thinking answer needs non-empty reasoning.")
        return f"{self.thinking}{reasoning}\n{self.close_tag}\n\n{answer.lstrip()}"

    def non_thinking_answer(self, answer: str) -> str:
        """A full assistant turn in non-thinking mode: ``<think>\\n\\n</think>\\n\\nanswer``."""
        return f"{self.non_thinking}{answer.lstrip()}"

    def answer_in_mode(self, mode: str | Mode, answer: str, reasoning: str | None = None) -> str:
        mode = resolve_mode(mode)
        if mode is Mode.THINKING:
            return self.thinking_answer(reasoning or "", answer)
        if mode is Mode.NON_THINKING:
            return self.non_thinking_answer(answer)
        raise ModeError("An answer is written in 'thinking' or 'non_thinking' mode, not 'auto'.")


#: Prefix sets per model family. ``qwen3`` is the default (R-4B builds on Qwen3 and uses the same strings).
PREFIX_FAMILIES: dict[str, ModePrefixes] = {
    "qwen3": ModePrefixes(),
    "r4b": ModePrefixes(),
    "default": ModePrefixes(),
}


def get_prefixes(family: str | ModePrefixes | dict | None = None) -> ModePrefixes:
    """Prefixes for a model family name, a dict of overrides, or an existing :class:`ModePrefixes`."""
    if family is None:
        return PREFIX_FAMILIES["default"]
    if isinstance(family, ModePrefixes):
        return family
    if isinstance(family, dict):
        return ModePrefixes(**family)
    if family in PREFIX_FAMILIES:
        return PREFIX_FAMILIES[family]
    raise ModeError(
        f"Unknown prefix family {family!r}; known: {sorted(PREFIX_FAMILIES)}. "
        "Pass a dict with keys open_tag, close_tag, auto, thinking, non_thinking to define your own."
    )


# --------------------------------------------------------------------------------------------------------------
# Parsing what the model said
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedResponse:
    """What an assistant turn (forced prefix + generated text) says.

    ``mode`` is ``thinking`` (a non-empty think block that was closed), ``non_thinking`` (an empty think block,
    or no think block at all) or ``truncated`` (a think block that was opened and never closed; its answer is
    empty). ``answer`` is only what follows the last closing tag.
    """

    mode: str
    reasoning: str
    answer: str
    has_think_block: bool

    @property
    def thought(self) -> bool:
        return self.mode == "thinking"


def parse_response(text: str, prefixes: ModePrefixes | None = None) -> ParsedResponse:
    """Parse a full assistant turn into mode, reasoning and final answer.

    Rules (chosen to be unambiguous on adversarial text):

    * No open tag before the first close tag and no close tag at all → ``non_thinking``, the whole text is the
      answer (the model skipped the think block entirely).
    * The reasoning is everything between the first open tag and the *last* close tag, with any inner tags
      removed; the answer is what follows the last close tag. Duplicated or nested tags therefore fold into the
      reasoning (a non-thinking prefix followed by more reasoning and a second ``</think>`` counts as thinking).
    * An open tag after the last close tag (or an open tag with no close tag) is a think block never closed →
      ``truncated`` with an empty answer.
    * Whitespace-only reasoning → ``non_thinking``.
    """
    p = prefixes or PREFIX_FAMILIES["default"]
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    open_tag, close_tag = p.open_tag, p.close_tag
    last_close = text.rfind(close_tag)
    first_open = text.find(open_tag)
    if last_close == -1:
        if first_open == -1:
            return ParsedResponse("non_thinking", "", text.strip(), False)
        return ParsedResponse("truncated", _strip_tags(text[first_open + len(open_tag):], p).strip(), "", True)
    answer_raw = text[last_close + len(close_tag):]
    if open_tag in answer_raw:
        reasoning = _strip_tags(text[(first_open + len(open_tag)) if first_open != -1 else 0:], p).strip()
        return ParsedResponse("truncated", reasoning, "", True)
    start = first_open + len(open_tag) if (first_open != -1 and first_open < last_close) else 0
    reasoning = _strip_tags(text[start:last_close], p).strip()
    mode = "thinking" if reasoning else "non_thinking"
    return ParsedResponse(mode, reasoning, answer_raw.strip(), True)


def _strip_tags(s: str, p: ModePrefixes) -> str:
    return s.replace(p.open_tag, "").replace(p.close_tag, "")


# --------------------------------------------------------------------------------------------------------------
# Rendering prompts in a mode
# --------------------------------------------------------------------------------------------------------------


class TemplateStyle(str, enum.Enum):
    R4B = "r4b"  # the template takes thinking_mode = auto | long | short
    QWEN3 = "qwen3"  # the template takes enable_thinking (False pre-fills an empty think block)
    PLAIN = "plain"  # the template knows nothing of thinking: the prefix is appended after the generation prompt


def chat_template_of(processing_class) -> str | None:
    """The chat template string of a tokenizer or processor (the default one for dict-valued templates)."""
    template = getattr(processing_class, "chat_template", None)
    if template is None and hasattr(processing_class, "tokenizer"):
        template = getattr(processing_class.tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return template


def template_style(template: str | None) -> TemplateStyle:
    if not template:
        raise ModeError(
            "This tokenizer/processor has no chat template. Set one first, e.g. "
            "`from r4b_trl.chat_templates import DEFAULT_CHAT_TEMPLATE; tok.chat_template = DEFAULT_CHAT_TEMPLATE`."
        )
    if "thinking_mode" in template:
        return TemplateStyle.R4B
    if "enable_thinking" in template:
        return TemplateStyle.QWEN3
    return TemplateStyle.PLAIN


#: Key added to the last prompt message to carry a per-rollout assistant pre-fill through a chat template
#: (read by the wrapper of :func:`r4b_trl.templates.hook_template`).
PREFIX_MARKER = "r4b_prefix"
def with_prefix(messages: list[dict], prefix: str) -> list[dict]:
    """A copy of ``messages`` whose last message carries ``prefix`` as the assistant pre-fill marker."""
    if not messages:
        raise ModeError("Cannot pre-fill an empty conversation.")
    out = [dict(m) for m in messages]
    out[-1] = copy.copy(out[-1])
    out[-1][PREFIX_MARKER] = prefix
    return out


def check_think_tokens(tokenizer, prefixes: ModePrefixes | None = None) -> None:
    """Check that the think tags exist as single tokens and survive ``decode(skip_special_tokens=True)``.

    TRL decodes completions with ``skip_special_tokens=True``; if the tags are *special* tokens they vanish and
    every reward function sees answers without think blocks.
    """
    p = prefixes or PREFIX_FAMILIES["default"]
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    for tag in (p.open_tag, p.close_tag):
        ids = tok.encode(tag, add_special_tokens=False)
        if len(ids) != 1:
            raise ModeError(
                f"The tokenizer splits {tag!r} into {len(ids)} tokens {ids}. Add the think tags as (non-special) "
                f"tokens: tokenizer.add_tokens([{p.open_tag!r}, {p.close_tag!r}]) and resize the model's embeddings."
            )
        decoded = tok.decode(ids, skip_special_tokens=True)
        if tag not in decoded:
            raise ModeError(
                f"{tag!r} is a special token: decoding with skip_special_tokens=True (as TRL does) strips it, so "
                "rewards and the mode parser would never see it. Re-register it as a normal added token "
                "(AddedToken(tag, special=False)) or remove it from the tokenizer's special tokens."
            )


def add_think_tokens(tokenizer, prefixes: ModePrefixes | None = None) -> list[int]:
    """Add the think tags as single *non-special* tokens where the tokenizer lacks them (e.g. Qwen2.5-VL's);
    return the ids of the tokens added (the model's embeddings must then be resized: annealing learns them).
    Tags that exist as special tokens are still refused by :func:`check_think_tokens`."""
    from tokenizers import AddedToken

    p = prefixes or PREFIX_FAMILIES["default"]
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    missing = [t for t in (p.open_tag, p.close_tag) if len(tok.encode(t, add_special_tokens=False)) != 1]
    if missing:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    check_think_tokens(tok, p)
    return tok.convert_tokens_to_ids(missing) if missing else []


def count_modes(texts: Iterable[str], prefixes: ModePrefixes | None = None) -> dict[str, int]:
    """Counts of parsed modes over assistant texts."""
    counts = {"thinking": 0, "non_thinking": 0, "truncated": 0}
    for t in texts:
        counts[parse_response(t, prefixes).mode] += 1
    return counts



@dataclass(frozen=True)
class DecisionTokens:
    """Where the auto-mode decision falls for a tokenizer and a prefix set.

    In auto mode the assistant turn is pre-filled with the auto prefix (``<think>``) and the model's next token(s)
    choose the mode. ``position`` is the index (in the token ids of the forced prefixes, rendered after the
    assistant header) of the first token where the thinking and non-thinking prefixes differ. A mode's decision
    token is *in its prefix* when its prefix is longer than ``position``: then BPO's forced prefix (part of the
    prompt, never trained) holds the decision, and the gate is not trained directly for that mode. Otherwise the
    decision falls on the first *generated* token, which BPO trains.
    """

    position: int
    thinking_ids: tuple
    non_thinking_ids: tuple
    thinking_token: str | None
    non_thinking_token: str | None

    @property
    def thinking_in_prefix(self) -> bool:
        return len(self.thinking_ids) > self.position

    @property
    def non_thinking_in_prefix(self) -> bool:
        return len(self.non_thinking_ids) > self.position

    def describe(self) -> str:
        def one(name, ids, tok, inside):
            where = "inside the forced prefix (never trained by BPO)" if inside else "the first generated token (trained)"
            return f"{name}: decision token {tok!r} at position {self.position} is {where}"

        return "; ".join([
            one("thinking", self.thinking_ids, self.thinking_token, self.thinking_in_prefix),
            one("non_thinking", self.non_thinking_ids, self.non_thinking_token, self.non_thinking_in_prefix),
        ])


def decision_tokens(tokenizer, prefixes: ModePrefixes | None = None, context: str = "<|im_start|>assistant\n") -> DecisionTokens:
    """Compute :class:`DecisionTokens` for the actual tokenizer (prefixes tokenized in context after ``context``)."""
    p = prefixes or PREFIX_FAMILIES["default"]
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    base = tok.encode(context, add_special_tokens=False)

    def ids_of(prefix):
        full = tok.encode(context + prefix, add_special_tokens=False)
        if full[: len(base)] != base:  # the prefix merged with the context: fall back to the prefix alone
            return tuple(tok.encode(prefix, add_special_tokens=False))
        return tuple(full[len(base):])

    t_ids, n_ids = ids_of(p.thinking), ids_of(p.non_thinking)
    pos = 0
    while pos < min(len(t_ids), len(n_ids)) and t_ids[pos] == n_ids[pos]:
        pos += 1

    def name(ids):
        return tok.convert_ids_to_tokens(ids[pos]) if len(ids) > pos else None

    return DecisionTokens(pos, t_ids, n_ids, name(t_ids), name(n_ids))

