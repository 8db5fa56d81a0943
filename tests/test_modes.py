"""The thinking-mode vocabulary: names, prefixes, rendering in every kind of template, parsing."""

import pytest

from r4b_trl.chat_templates import DEFAULT_CHAT_TEMPLATE
from r4b_trl.modes import (
    PREFIX_MARKER,
    Mode,
    ModeError,
    ModePrefixes,
    TemplateStyle,
    check_think_tokens,
    parse_response,
    resolve_mode,
    template_style,
    with_prefix,
)
from r4b_trl.templates import check_generation_prompt, render_prompt

USER = [{"role": "user", "content": "What is 2+3?"}]
HEADER = "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
EXPECTED = {
    "auto": HEADER + "<think>",
    "thinking": HEADER + "<think>\n",
    "non_thinking": HEADER + "<think>\n\n</think>\n\n",
}
PLAIN_CHATML = (
    "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
PREFILLING = PLAIN_CHATML.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")


@pytest.mark.parametrize(
    "name,expected",
    [("auto", Mode.AUTO), ("thinking", Mode.THINKING), ("long", Mode.THINKING), ("LONG", Mode.THINKING),
     ("non_thinking", Mode.NON_THINKING), ("short", Mode.NON_THINKING), (" Short ", Mode.NON_THINKING),
     (Mode.AUTO, Mode.AUTO)],
)
def test_resolve_mode_accepts_r4b_names(name, expected):
    assert resolve_mode(name) is expected


@pytest.mark.parametrize("bad", ["medium", "", None, 3, "thinking_mode"])
def test_unknown_mode_is_a_clear_error(bad):
    with pytest.raises(ModeError, match="Use one of 'auto', 'thinking', 'non_thinking'"):
        resolve_mode(bad)


def test_r4b_names_round_trip():
    assert [m.r4b_name for m in Mode] == ["auto", "long", "short"]
    assert all(resolve_mode(m.r4b_name) is m for m in Mode)


def test_default_prefixes_are_r4b_qwen3():
    p = ModePrefixes()
    assert (p.prefix("auto"), p.prefix("long"), p.prefix("short")) == ("<think>", "<think>\n", "<think>\n\n</think>\n\n")
    assert p.thinking_answer("2+3=5", "5") == "<think>\n2+3=5\n</think>\n\n5"
    assert p.non_thinking_answer("5") == "<think>\n\n</think>\n\n5"
    with pytest.raises(ModeError):
        p.thinking_answer("   ", "5")


def test_bad_prefixes_are_refused():
    with pytest.raises(ModeError, match="must start with the open tag"):
        ModePrefixes(thinking="\n")
    with pytest.raises(ModeError, match="leave the think block open"):
        ModePrefixes(thinking="<think></think>")


# ---- rendering: one test per kind of template, exact text ---------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "thinking", "non_thinking"])
def test_render_qwen3_template(text_tokenizer, mode):
    assert template_style(text_tokenizer.chat_template) is TemplateStyle.QWEN3
    assert render_prompt(text_tokenizer, USER, mode) == EXPECTED[mode]


@pytest.mark.parametrize("mode", ["auto", "long", "short"])
def test_render_r4b_template(text_tokenizer, mode):
    assert template_style(DEFAULT_CHAT_TEMPLATE) is TemplateStyle.R4B
    got = render_prompt(text_tokenizer, USER, mode, chat_template=DEFAULT_CHAT_TEMPLATE)
    assert got == EXPECTED[resolve_mode(mode).value]


@pytest.mark.parametrize("mode", ["auto", "thinking", "non_thinking"])
def test_render_plain_template(text_tokenizer, mode):
    assert template_style(PLAIN_CHATML) is TemplateStyle.PLAIN
    assert render_prompt(text_tokenizer, USER, mode, chat_template=PLAIN_CHATML) == EXPECTED[mode]


@pytest.mark.parametrize("mode", ["auto", "thinking", "non_thinking"])
def test_render_vision_processor(vision_processor, mode):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is 2+3?"}]}]
    header = HEADER.replace("user\n", "user\n<|vision_start|><|image_pad|><|vision_end|>")
    assert render_prompt(vision_processor, msgs, mode) == header + EXPECTED[mode][len(HEADER):]


def test_template_that_prefills_think_is_adapted(text_tokenizer):
    # A plain template that always pre-fills "<think>\n": thinking keeps it, non_thinking appends the rest, auto
    # cuts it back to the assistant header. Exact text, and the pre-fill appears once.
    for mode in Mode:
        text = render_prompt(text_tokenizer, USER, mode, chat_template=PREFILLING)
        assert text == EXPECTED[mode.value]
        assert text.count("<think>") == 1


def test_template_that_prefills_reasoning_text_is_refused(text_tokenizer):
    reasoning = PLAIN_CHATML.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\nOkay, '")
    with pytest.raises(ModeError, match=r"The plain ChatML chat template cannot be adapted.*pre-fills more than a think block"):
        render_prompt(text_tokenizer, USER, "auto", chat_template=reasoning)


def test_r4b_template_with_shorter_prefix_gets_the_rest(text_tokenizer):
    # An R-4B template whose 'short' pre-fill lacks the trailing blank line: the rest is appended.
    other = DEFAULT_CHAT_TEMPLATE.replace("'<think>\\n\\n</think>\\n\\n'", "'<think>\\n\\n</think>'")
    assert other != DEFAULT_CHAT_TEMPLATE
    assert render_prompt(text_tokenizer, USER, "short", chat_template=other) == EXPECTED["non_thinking"]
    p = ModePrefixes(non_thinking="<think>\n\n</think>")
    assert render_prompt(text_tokenizer, USER, "short", prefixes=p, chat_template=other).endswith("<think>\n\n</think>")


def test_missing_template_is_a_clear_error(text_tokenizer):
    with pytest.raises(ModeError, match="DEFAULT_CHAT_TEMPLATE"):
        template_style(None)


def test_prefix_hook_is_inert_without_marker(text_tokenizer):
    from r4b_trl.templates import hook_template

    hooked = hook_template(text_tokenizer)
    plain = text_tokenizer.apply_chat_template(USER, tokenize=False, add_generation_prompt=True, chat_template=hooked)
    assert plain == HEADER
    marked = with_prefix(USER, "<think>\n")
    assert PREFIX_MARKER not in USER[-1]  # the input is not mutated
    text = text_tokenizer.apply_chat_template(marked, tokenize=False, add_generation_prompt=True, chat_template=hooked)
    assert text == HEADER + "<think>\n"
    # Without a generation prompt (training-time rendering) the hook adds nothing.
    text = text_tokenizer.apply_chat_template(marked, tokenize=False, add_generation_prompt=False, chat_template=hooked)
    assert "<think>" not in text


def test_check_generation_prompt(text_tokenizer, vision_processor):
    check_generation_prompt(text_tokenizer)
    check_generation_prompt(vision_processor)


# ---- tokenizer checks ----------------------------------------------------------------------------------------


def test_think_tokens_are_single_and_survive_decoding(text_tokenizer, vision_processor):
    check_think_tokens(text_tokenizer)
    check_think_tokens(vision_processor)
    for tag in ("<think>", "</think>"):
        ids = text_tokenizer.encode(tag, add_special_tokens=False)
        assert len(ids) == 1 and text_tokenizer.decode(ids, skip_special_tokens=True) == tag


def test_tokenizer_without_think_tokens_is_refused():
    from r4b_trl.tiny_models import build_tokenizer

    tok = build_tokenizer()
    p = ModePrefixes(open_tag="<reason>", close_tag="</reason>", auto="<reason>", thinking="<reason>\n",
                     non_thinking="<reason>\n\n</reason>\n\n")
    with pytest.raises(ModeError, match="add_tokens"):
        check_think_tokens(tok, p)


def test_special_think_tokens_are_refused():
    from tokenizers import AddedToken

    from r4b_trl.tiny_models import build_tokenizer

    tok = build_tokenizer()
    p = ModePrefixes(open_tag="<reason>", close_tag="</reason>", auto="<reason>", thinking="<reason>\n",
                     non_thinking="<reason>\n\n</reason>\n\n")
    tok.add_tokens([AddedToken("<reason>", special=True), AddedToken("</reason>", special=True)], special_tokens=True)
    with pytest.raises(ModeError, match="special token"):
        check_think_tokens(tok, p)


# ---- parsing -------------------------------------------------------------------------------------------------

PARSE_CASES = [
    # text, mode, reasoning, answer
    ("<think>\n2+3=5\n</think>\n\nThe answer is 5.", "thinking", "2+3=5", "The answer is 5."),
    ("<think>\n\n</think>\n\nThe answer is 5.", "non_thinking", "", "The answer is 5."),
    ("<think>\n\n</think>\n\n", "non_thinking", "", ""),  # empty answer
    ("<think></think>5", "non_thinking", "", "5"),
    ("The answer is 5.", "non_thinking", "", "The answer is 5."),  # no think block at all
    ("", "non_thinking", "", ""),
    ("<think>\nstill going 2+3", "truncated", "still going 2+3", ""),  # never closed
    ("<think>", "truncated", "", ""),
    # non-thinking prefix, then reasoning anyway and a second close: folds into thinking, answer after the last close
    ("<think>\n\n</think>\n\n2+3=5</think>\n\n5", "thinking", "2+3=5", "5"),
    # duplicated open tag inside reasoning
    ("<think>\n<think>\na\n</think>\n\n7", "thinking", "a", "7"),
    # closed block followed by a new unclosed block: the last think block was never closed
    ("<think>\n\n</think>\n\n<think>\nlet me think", "truncated", "let me think", ""),
    # answer mentions tags-like text after a proper close
    ("<think>\nx\n</think>\n\nUse </think> carefully: 3", "thinking", "x\n\n\nUse", "carefully: 3"),
    # stray close with no open tag
    ("reasoning</think>\n\n4", "thinking", "reasoning", "4"),
    ("</think>4", "non_thinking", "", "4"),
]


@pytest.mark.parametrize("text,mode,reasoning,answer", PARSE_CASES)
def test_parse_response(text, mode, reasoning, answer):
    r = parse_response(text)
    assert (r.mode, r.reasoning, r.answer) == (mode, reasoning, answer)


def test_parse_never_raises_on_junk():
    for junk in [None, 12, "<<think>>", "</think></think></think>", "<think>" * 50, "\x00<think>\n\x00</think>\x00"]:
        r = parse_response(junk)
        assert r.mode in ("thinking", "non_thinking", "truncated")
