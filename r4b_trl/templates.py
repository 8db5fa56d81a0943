"""Chat-template adaptation: every mode's generation prompt ends with exactly that mode's pre-fill, once.

Models arrive with their own chat templates, and many pre-fill the assistant turn themselves: Qwen3.5/3.6/3.8,
Qwen3-*-Thinking and DeepSeek-R1-distill end the generation prompt with ``<think>\\n`` (or the empty block when
thinking is off), R-4B-style templates may pre-fill ``<think>`` when ``thinking_mode`` is unset. One adaptation,
used by every stage (SFT, BPO, evaluation, curation on every backend, chat, model cards):

1. **The template's own switch** (``thinking_mode`` = auto/long/short, ``enable_thinking`` = True/False) where it
   has one; the rendering is kept when its pre-fill *equals or starts* the wanted pre-fill, and only the rest is
   appended (``<think>\\n`` + ``\\n</think>\\n\\n`` = the non-thinking pre-fill).
2. Where no switch value renders a mode (``auto`` on a template that always pre-fills ``<think>\\n``), a **patched
   template**: the original renders the conversation without a generation prompt, the wrapper adds the
   template's own assistant header (the generation prompt with its pre-fill cut off) and the wanted pre-fill. One
   log line says so.
3. Where even that is impossible (the generation prompt rewrites the conversation, its header changes from one
   conversation to the next, or it pre-fills reasoning text), :class:`~r4b_trl.modes.ModeError` with one line
   naming the template family and what to pass instead — raised by :func:`check_template` before any model loads.

The wrapper (:func:`wrap_template`) never edits the original's source: it shadows ``add_generation_prompt`` (and,
for SFT, ``messages``) before the original body runs and adds its own tail, so it works for any template. It also
serves SFT (generation prompt cut to the header; the target turn rendered verbatim, reasoning included) and the
template a trained model is saved with (``thinking_mode`` = auto/long/short reaches every mode, for
``apply_chat_template`` and vLLM's ``chat_template_kwargs`` alike).
"""

from __future__ import annotations

import functools
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .modes import (
    PREFIX_MARKER,
    PREFIX_FAMILIES,
    Mode,
    ModeError,
    ModePrefixes,
    TemplateStyle,
    chat_template_of,
    resolve_mode,
    template_style,
    with_prefix,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SWITCH_KEYS",
    "TemplateShape",
    "template_family",
    "template_shape",
    "wrap_template",
    "render_prompt",
    "mode_plan",
    "check_template",
    "check_generation_prompt",
    "Plan",
    "hook_template",
    "sft_template",
    "sft_row_kwargs",
    "switch_changes_prompt",
    "inference_template",
    "set_chat_template",
    "check_model_template",
]

#: Chat-template kwargs that switch thinking on or off; the adaptation sets them per mode (a user's value is
#: overridden).
SWITCH_KEYS = ("thinking_mode", "enable_thinking")
#: Marker in the wrapper that identifies an already-wrapped template.
WRAP_MARK = "{{ '' }}{# r4b-trl wrapper end #}"
#: Marker where the original template starts inside a wrapper.
ORIG_MARK = "{# r4b-trl original #}{{ '' }}"
PROBES = (
    [{"role": "user", "content": "1+1?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"}, {"role": "user", "content": "3+3?"}],
)
_SENTINEL = "QZXQZX"


# --------------------------------------------------------------------------------------------------------------
# Families (for messages) and the template's shape (header, default pre-fill, end of turn)
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _trl_templates() -> dict[str, str]:
    from importlib import resources

    folder = resources.files("trl").joinpath("chat_templates")
    return {f.name[:-6]: f.read_text(encoding="utf-8") for f in folder.iterdir() if f.name.endswith(".jinja")}


def template_family(template: str | None) -> str:
    """A human name for a chat template: TRL's file name for the templates TRL ships (``qwen3_5_think``,
    ``deepseek_r1_distill``, ...), ``r4b_default``, or a description of its markup."""
    if not template:
        return "missing"
    from .chat_templates import DEFAULT_CHAT_TEMPLATE

    template = _original_of(template)
    if template.removesuffix("\n") == DEFAULT_CHAT_TEMPLATE.removesuffix("\n"):
        return "r4b_default"
    for name, text in _trl_templates().items():
        if text.removesuffix("\n") == template.removesuffix("\n"):
            return name
    if "thinking_mode" in template:
        kind = "R-4B-style (thinking_mode)"
    elif "enable_thinking" in template:
        kind = "Qwen3-style (enable_thinking)"
    else:
        kind = "plain"
    markup = ("ChatML" if "<|im_start|>" in template else "DeepSeek" if "Assistant｜>" in template
              else "GLM" if "<|assistant|>" in template else "custom")
    return f"{kind} {markup}"


def _apply(pc, messages, template, add_generation_prompt=True, **kwargs) -> str:
    return pc.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                  chat_template=template, **kwargs)


def _trailing_think(text: str, p: ModePrefixes) -> str:
    """The think pre-fill ``text`` ends with (an open tag followed by whitespace and at most a close tag plus
    whitespace), or ``""``."""
    idx = text.rfind(p.open_tag)
    if idx == -1:
        return ""
    tail = text[idx:]
    rest = tail[len(p.open_tag):].replace(p.close_tag, "", 1)
    return tail if rest.strip() == "" else ""


def _open_block(text: str, p: ModePrefixes) -> bool:
    """True when ``text`` ends inside a think block (its last open tag is after its last close tag)."""
    return text.rfind(p.open_tag) > text.rfind(p.close_tag)


@dataclass(frozen=True)
class TemplateShape:
    """What a template's generation prompt is made of: ``header`` (the assistant header, e.g.
    ``<|im_start|>assistant\\n``) followed by ``prefill`` (its own think pre-fill under the base kwargs, ``""``
    for none); ``end`` is what follows an assistant turn's content (``<|im_end|>\\n``)."""

    family: str
    header: str
    prefill: str
    end: str


def _fail(family: str, why: str) -> ModeError:
    """The one-line error for a template that cannot be adapted: its family, why, and what to pass instead."""
    instead = "a chat template whose generation prompt ends at the assistant header"
    if family in _trl_templates() and f"{family}_training" in _trl_templates():
        instead = f"TRL's {family}_training.jinja (trl/chat_templates/) or " + instead
    return ModeError(
        f"The {family} chat template cannot be adapted to r4b-trl's thinking modes: {why}. Pass {instead} instead "
        "(SFT: chat_template_path; any stage: save it as the model's chat_template.jinja, e.g. "
        "r4b_trl/chat_templates/r4b_default.jinja), or set prefix_family / mode_prefixes to this template's pre-fills.")


_CACHE: dict = {}


def _key(kind: str, pc, template: str, p: ModePrefixes, kw: dict) -> tuple:
    return kind, id(pc), type(pc).__name__, template, p, json.dumps(kw, sort_keys=True, default=str)


def template_shape(pc, prefixes: ModePrefixes | None = None, chat_template: str | None = None,
                   **kwargs: Any) -> TemplateShape:
    """Measure a template's assistant header, default pre-fill and end of turn on probe conversations; raise
    :class:`ModeError` (one line) where the pre-fill cannot be cut from the header."""
    p = prefixes or PREFIX_FAMILIES["default"]
    template = chat_template or chat_template_of(pc)
    template_style(template)  # a clear error when there is none
    kw = {k: v for k, v in kwargs.items() if k not in SWITCH_KEYS}
    key = _key("shape", pc, template, p, kw)
    if key not in _CACHE:
        _CACHE[key] = _measure(pc, p, template, kw)
    return _CACHE[key]


def _measure(pc, p: ModePrefixes, template: str, kw: dict) -> TemplateShape:
    family = template_family(template)
    heads = set()
    prefill = ""
    for probe in PROBES:
        try:
            gen = _apply(pc, probe, template, True, **kw)
            nogen = _apply(pc, probe, template, False, **kw)
        except Exception as e:  # a template error is a template problem: say which
            raise _fail(family, f"rendering a probe conversation failed ({type(e).__name__}: {e})") from e
        if not gen.startswith(nogen):
            raise _fail(family, "its generation prompt is not an addition at the end of the conversation")
        tail = gen[len(nogen):]
        prefill = _trailing_think(tail, p)
        head = tail[:len(tail) - len(prefill)]
        if p.open_tag in head or p.close_tag in head:
            raise _fail(family, f"its generation prompt pre-fills more than a think block ({tail!r})")
        heads.add(head)
    if len(heads) != 1:
        raise _fail(family, f"its assistant header differs between conversations ({sorted(heads)})")
    header = heads.pop()
    full = _apply(pc, PROBES[0] + [{"role": "assistant", "content": _SENTINEL}], template, False, **kw)
    idx = full.rfind(_SENTINEL)
    end = full[idx + len(_SENTINEL):] if idx != -1 else ""
    return TemplateShape(family, header, prefill, end)


# --------------------------------------------------------------------------------------------------------------
# Rendering in a mode
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How one mode is rendered: ``how`` is ``switch`` (the template's switch pre-fills exactly the mode's
    prefix), ``append`` (its pre-fill — possibly none — starts the wanted one: ``rest`` is appended) or ``patch``
    (the pre-fill cut to the assistant header, the mode's prefix added); ``switch`` holds the kwargs used."""

    how: str
    switch: tuple = ()
    rest: str = ""

    @property
    def kwargs(self) -> dict:
        return dict(self.switch)


def _candidates(style: TemplateStyle, mode: Mode) -> list[dict]:
    if style is TemplateStyle.R4B:
        return [{"thinking_mode": mode.r4b_name}]
    if style is TemplateStyle.QWEN3:
        return [{"enable_thinking": mode is not Mode.NON_THINKING}, {"enable_thinking": mode is Mode.NON_THINKING}]
    return [{}]


_LOGGED: set = set()


def _log_patch(family: str, mode: Mode, got: list[str], want: str) -> None:
    key = (family, mode.value, want)
    if key not in _LOGGED:
        _LOGGED.add(key)
        logger.info("chat template %s: no switch value pre-fills the %s prefix %r (it pre-fills %s); using the "
                    "template with its pre-fill cut to the assistant header", family, mode.value, want,
                    " / ".join(repr(g) for g in got) or "nothing")


def _render(pc, messages, mode: Mode, p: ModePrefixes, template: str, kw: dict) -> tuple[str, Plan]:
    """Render in ``mode`` with the plan found for this template before (one rendering), else search it."""
    key = _key("plan", pc, template, p, kw) + (mode,)
    plan = _CACHE.get(key)
    if plan is not None:
        if plan.how == "patch":
            shape = template_shape(pc, p, template, **kw)
            text = _apply(pc, with_prefix(messages, plan.rest), _patched(template, shape.header, p), True, **kw)
        else:
            text = _apply(pc, messages, template, True, **plan.kwargs, **kw)
            if _trailing_think(text, p) + plan.rest != p.prefix(mode):
                text = None  # this conversation renders differently: search again
            else:
                text = text + plan.rest
        if text is not None:
            return text, plan
    text, plan = _search(pc, messages, mode, p, template, kw)
    _CACHE[key] = plan
    return text, plan


def _patched(template: str, header: str, p: ModePrefixes) -> str:
    key = ("patched", template, header, p)
    if key not in _CACHE:
        _CACHE[key] = wrap_template(template, header, prefixes=p)
    return _CACHE[key]


def _search(pc, messages, mode: Mode, p: ModePrefixes, template: str, kw: dict) -> tuple[str, Plan]:
    want = p.prefix(mode)
    style = template_style(template)
    got = []
    for switch in _candidates(style, mode):
        text = _apply(pc, messages, template, True, **switch, **kw)
        pre = _trailing_think(text, p)
        if want.startswith(pre) and not _open_block(text[:len(text) - len(pre)], p):
            rest = want[len(pre):]
            return text + rest, Plan("switch" if not rest else "append", tuple(switch.items()), rest)
        got.append(pre)
    shape = template_shape(pc, p, template, **kw)
    _log_patch(shape.family, mode, got, want)
    text = _apply(pc, with_prefix(messages, want), _patched(template, shape.header, p), True, **kw)
    return text, Plan("patch", (), want)


def render_prompt(processing_class, messages: list[dict], mode: str | Mode, prefixes: ModePrefixes | None = None,
                  chat_template: str | None = None, **template_kwargs: Any) -> str:
    """Render ``messages`` as a generation prompt that ends with exactly ``prefixes.prefix(mode)``, once, for any
    chat template (see the module docstring for how). ``thinking_mode`` / ``enable_thinking`` in
    ``template_kwargs`` are ignored: the mode sets them."""
    mode = resolve_mode(mode)
    p = prefixes or PREFIX_FAMILIES["default"]
    template = chat_template or chat_template_of(processing_class)
    template_style(template)
    kw = {k: v for k, v in template_kwargs.items() if k not in SWITCH_KEYS}
    text, _ = _render(processing_class, messages, mode, p, template, kw)
    want = p.prefix(mode)
    if not text.endswith(want) or _open_block(text[:len(text) - len(want)], p):
        raise ModeError(f"The {template_family(template)} chat template rendered {text[-40:]!r} for {mode.value}, "
                        f"not one {want!r} pre-fill.")
    return text


def mode_plan(processing_class, prefixes: ModePrefixes | None = None, chat_template: str | None = None,
              **template_kwargs: Any) -> dict[str, Plan]:
    """:class:`Plan` per mode (``auto``, ``thinking``, ``non_thinking``) for this template."""
    p = prefixes or PREFIX_FAMILIES["default"]
    template = chat_template or chat_template_of(processing_class)
    kw = {k: v for k, v in template_kwargs.items() if k not in SWITCH_KEYS}
    return {m.value: _render(processing_class, PROBES[0], m, p, template, kw)[1] for m in Mode}


def switch_changes_prompt(processing_class, plan: dict[str, Plan], chat_template: str | None = None,
                          **template_kwargs: Any) -> bool:
    """True when some mode's switch also changes the conversation before the generation prompt (e.g. Qwen3.8's
    ``enable_thinking`` adds a reasoning-effort system instruction): training must then render each row with its
    mode's switch."""
    template = chat_template or chat_template_of(processing_class)
    kw = {k: v for k, v in template_kwargs.items() if k not in SWITCH_KEYS}
    for probe in PROBES:
        base = _apply(processing_class, probe, template, False, **kw)
        for pl in plan.values():
            if pl.switch and _apply(processing_class, probe, template, False, **pl.kwargs, **kw) != base:
                return True
    return False


# --------------------------------------------------------------------------------------------------------------
# The wrapper
# --------------------------------------------------------------------------------------------------------------


def _lit(s) -> str:
    return json.dumps(s, ensure_ascii=False)


def _original_of(template: str) -> str:
    """The model's own template inside a wrapper (the template itself when it is not wrapped)."""
    if template and ORIG_MARK in template and WRAP_MARK in template:
        return template.split(ORIG_MARK, 1)[1].rsplit(WRAP_MARK, 1)[0]
    return template


def wrap_template(template: str, header: str, end: str = "", *, prefixes: ModePrefixes | None = None,
                  plan: dict[str, Plan] | None = None, modes: bool = False, cut: bool = False,
                  verbatim_last: bool = False, hook: bool = True) -> str:
    """Wrap ``template`` (never editing it). When a pre-fill is requested — by a last message carrying
    :data:`~r4b_trl.modes.PREFIX_MARKER` (BPO's per-rollout hook), or with ``modes`` by ``thinking_mode`` =
    ``auto``/``long``/``short`` (also ``thinking``/``non_thinking``) — the generation prompt ends with exactly that
    pre-fill: rendered as ``plan`` says for the mode (the template's switch plus the rest, or the original without
    its generation prompt + ``header`` + pre-fill). Without a request the original renders unchanged, except:

    * ``cut`` (SFT): every generation prompt ends at ``header``;
    * ``verbatim_last`` (SFT): a conversation ending with an assistant turn renders it as
      ``header + content + end``, verbatim (reasoning included), inside ``{% generation %}`` markers;
    * ``hook=False`` (the saved template): the marker is not read.
    """
    p = prefixes or PREFIX_FAMILIES["default"]
    original = _original_of(template)
    table = {"auto": p.auto, "long": p.thinking, "short": p.non_thinking, "thinking": p.thinking,
             "non_thinking": p.non_thinking}
    head = ["{# r4b-trl wrapper: see r4b_trl/templates.py #}",
            "{%- set r4b = namespace(prefill=none, last=none, keep=false, rest='') %}",
            "{%- if add_generation_prompt is defined and add_generation_prompt %}",
            (f"{{%- if messages and messages[-1]['{PREFIX_MARKER}'] is defined %}}"
             f"{{%- set r4b.prefill = messages[-1]['{PREFIX_MARKER}'] %}}") if hook else "{%- if false %}"]
    if modes:
        head.append(f"{{%- elif thinking_mode is defined and thinking_mode in {_lit(table)} %}}"
                    f"{{%- set r4b.prefill = {_lit(table)}[thinking_mode] %}}")
    if cut:
        head.append("{%- else %}{%- set r4b.prefill = '' %}")
    head.append("{%- endif %}")
    if verbatim_last:
        head.append("{%- elif messages and messages[-1]['role'] == 'assistant' %}"
                    "{%- set r4b.last = messages[-1] %}{%- set messages = messages[:-1] %}")
    head.append("{%- endif %}")
    for mode, pl in (plan or {}).items():  # the template's own switch, where the plan uses it
        if pl.how == "patch":
            continue
        sets = "".join(f"{{%- set {k} = {_lit(v)} %}}" for k, v in pl.switch)
        head.append(f"{{%- if r4b.prefill == {_lit(p.prefix(mode))} %}}{sets}"
                    f"{{%- set r4b.keep = true %}}{{%- set r4b.rest = {_lit(pl.rest)} %}}{{%- endif %}}")
    head.append("{%- if r4b.prefill is not none and not r4b.keep %}{%- set add_generation_prompt = false %}"
                "{%- endif %}")
    tail = [WRAP_MARK, "{%- if r4b.prefill is not none %}{%- if r4b.keep %}{{- r4b.rest }}{%- else %}"
                       f"{{{{- {_lit(header)} + r4b.prefill }}}}{{%- endif %}}{{%- endif %}}"]
    if verbatim_last:
        tail.append(
            "{%- if r4b.last is not none %}"
            "{%- if r4b.last['content'] is string %}{%- set r4b_text = r4b.last['content'] %}"
            "{%- else %}{%- set r4b_text = namespace(s='') %}{%- for b in r4b.last['content'] %}"
            "{%- if b['type'] == 'text' %}{%- set r4b_text.s = r4b_text.s + b['text'] %}{%- endif %}{%- endfor %}"
            "{%- set r4b_text = r4b_text.s %}{%- endif %}"
            f"{{{{- {_lit(header)} }}}}{{%- generation %}}{{{{- r4b_text + {_lit(end)} }}}}{{%- endgeneration %}}"
            "{%- endif %}")
    body = original[:-1] if original.endswith("\n") else original  # Jinja drops a template's final newline
    return "".join(head) + ORIG_MARK + body + "".join(tail)


# --------------------------------------------------------------------------------------------------------------
# The check every recipe runs, and the templates for training and for the saved model
# --------------------------------------------------------------------------------------------------------------


def hook_template(processing_class, prefixes: ModePrefixes | None = None, chat_template: str | None = None,
                  **template_kwargs: Any) -> str:
    """The template BPO renders rollouts with: a last message carrying the mode's pre-fill as
    :data:`~r4b_trl.modes.PREFIX_MARKER` renders exactly as :func:`render_prompt` does for that mode."""
    p = prefixes or PREFIX_FAMILIES["default"]
    template = _original_of(chat_template or chat_template_of(processing_class))
    shape = template_shape(processing_class, p, template, **template_kwargs)
    plan = mode_plan(processing_class, p, template, **template_kwargs)
    return wrap_template(template, shape.header, prefixes=p, plan=plan)


def sft_template(processing_class, prefixes: ModePrefixes | None = None, chat_template: str | None = None,
                 **template_kwargs: Any) -> str:
    """The template SFT tokenizes with: the conversation so far exactly as the model's template renders it at
    inference, the generation prompt cut to the assistant header (so the whole think block, decision token
    included, is in the completion), and the target turn verbatim (reasoning kept) followed by the template's own
    end of turn."""
    p = prefixes or PREFIX_FAMILIES["default"]
    template = _original_of(chat_template or chat_template_of(processing_class))
    shape = template_shape(processing_class, p, template, **template_kwargs)
    if not shape.end.strip():
        msg = "an assistant turn renders without an end-of-turn marker after its content, so SFT cannot teach it to stop"
        raise _fail(shape.family, msg)
    return wrap_template(template, shape.header, shape.end, prefixes=p, cut=True, verbatim_last=True)


def sft_row_kwargs(processing_class, prefixes: ModePrefixes | None = None, chat_template: str | None = None,
                   **template_kwargs: Any) -> dict | None:
    """Per-mode chat-template kwargs SFT rows must carry (``{"thinking": {...}, "non_thinking": {...}}``) when the
    template's switch changes the conversation, else None."""
    p = prefixes or PREFIX_FAMILIES["default"]
    template = _original_of(chat_template or chat_template_of(processing_class))
    plan = mode_plan(processing_class, p, template, **template_kwargs)
    if not switch_changes_prompt(processing_class, plan, template, **template_kwargs):
        return None
    return {m: plan[m].kwargs for m in ("thinking", "non_thinking")}


def inference_template(processing_class, prefixes: ModePrefixes | None = None, chat_template: str | None = None,
                       **template_kwargs: Any) -> str:
    """The template a trained model is saved with: the model's own template where its ``thinking_mode`` switch
    already pre-fills every mode exactly; else the model's template wrapped so that ``thinking_mode`` =
    ``auto``/``long``/``short`` reaches every mode (unset, it renders exactly as the original, ``enable_thinking``
    included) — with ``apply_chat_template(..., thinking_mode="auto")`` and vLLM's
    ``chat_template_kwargs={"thinking_mode": "auto"}`` alike."""
    p = prefixes or PREFIX_FAMILIES["default"]
    template = _original_of(chat_template or chat_template_of(processing_class))
    plan = mode_plan(processing_class, p, template, **template_kwargs)
    if template_style(template) is TemplateStyle.R4B and {pl.how for pl in plan.values()} == {"switch"}:
        return template
    shape = template_shape(processing_class, p, template, **template_kwargs)
    return wrap_template(template, shape.header, prefixes=p, plan=plan, modes=True, hook=False)


def check_template(processing_class, prefixes: ModePrefixes | None = None, chat_template: str | None = None,
                   stage: str = "", **template_kwargs: Any) -> dict[str, Plan]:
    """The one template check every recipe runs before loading a model: each mode renders with exactly its
    pre-fill on probe conversations (single- and multi-turn); for ``stage`` ``sft`` the SFT template can be built,
    for ``bpo`` the rollout hook renders exactly as :func:`render_prompt`. Raises :class:`ModeError` (one line,
    naming the template family and what to pass instead); returns :func:`mode_plan`."""
    p = prefixes or PREFIX_FAMILIES["default"]
    template = chat_template or chat_template_of(processing_class)
    template_style(template)
    family = template_family(template)
    kw = {k: v for k, v in template_kwargs.items() if k not in SWITCH_KEYS}
    try:
        for probe in PROBES:
            for mode in Mode:
                render_prompt(processing_class, probe, mode, p, template, **kw)
        if stage == "sft":
            sft_template(processing_class, p, template, **kw)
        if stage == "bpo":
            hooked = hook_template(processing_class, p, template, **kw)
            for probe in PROBES:
                for mode in Mode:
                    want = render_prompt(processing_class, probe, mode, p, template, **kw)
                    got = _apply(processing_class, with_prefix(probe, p.prefix(mode)), hooked, True, **kw)
                    if got != want:
                        raise _fail(family, f"BPO's rollout hook renders the {mode.value} prompt differently from "
                                            f"inference ({got[-60:]!r} vs {want[-60:]!r})")
    except ModeError as e:
        msg = str(e)
        raise ModeError((f"{stage.upper()}: " if stage else "") + (msg if family in msg else f"{family}: {msg}")) from e
    return mode_plan(processing_class, p, template, **kw)


def check_generation_prompt(processing_class, prefixes: ModePrefixes | None = None) -> None:
    """Backward-compatible name of :func:`check_template`."""
    check_template(processing_class, prefixes)


def check_model_template(name_or_path: str, prefixes: ModePrefixes | None = None, trust_remote_code: bool = False,
                         revision: str | None = None, stage: str = "", **template_kwargs: Any):
    """Load only ``name_or_path``'s tokenizer/processor and run :func:`check_template` on it — what evaluation,
    curation and chat do before loading any weights. Returns the processing class."""
    from .models import load_processing_class

    pc = load_processing_class(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    check_template(pc, prefixes, stage=stage, **template_kwargs)
    return pc


def set_chat_template(processing_class, template: str) -> None:
    """Set ``template`` on a tokenizer or processor and on its inner tokenizer."""
    processing_class.chat_template = template
    inner = getattr(processing_class, "tokenizer", None)
    if inner is not None and inner is not processing_class:
        inner.chat_template = template


@contextmanager
def chat_template_swapped(processing_class, template: str):
    """Use ``template`` inside the block (e.g. while saving a checkpoint), then put the current template back."""
    current = chat_template_of(processing_class)
    set_chat_template(processing_class, template)
    try:
        yield
    finally:
        set_chat_template(processing_class, current)
