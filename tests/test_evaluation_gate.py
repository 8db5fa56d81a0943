"""The auto-mode gate (r4b_trl.gate): where the decision falls per tokenizer, and the gate on a real model checked
against a direct forward pass; the vLLM path's arithmetic on a fake engine."""

from types import SimpleNamespace

import pytest
import torch

from r4b_trl.gate import decision_site, model_gates, vllm_gates
from r4b_trl.modes import Mode, ModePrefixes
from r4b_trl.templates import render_prompt

P = ModePrefixes()
MSG = [{"role": "user", "content": "7 3 1 ="}]


def char_tok(pair_newlines):
    from r4b_trl.chat_templates import qwen3_chat_template
    from r4b_trl.tiny_models import build_char_tokenizer

    tok = build_char_tokenizer(pair_newlines)
    tok.chat_template = qwen3_chat_template()
    return tok


def test_decision_site_per_tokenizer(text_tokenizer):
    demo = decision_site(char_tok(True), MSG, P)
    assert demo.defined and demo.note.startswith("exact")
    assert char_tok(True).convert_ids_to_tokens([demo.thinking_id, demo.non_thinking_id]) == ["\n", "\n\n"]
    bpe = decision_site(text_tokenizer, MSG, P)  # Qwen2-style byte-level BPE: "\n" = Ċ, "\n\n" = ĊĊ
    assert bpe.defined and [text_tokenizer.decode([i]) for i in (bpe.thinking_id, bpe.non_thinking_id)] == ["\n", "\n\n"]
    # "\n\n" as two "\n" tokens: both pre-fills start "<think>\n", so no single token decides the mode.
    split = decision_site(char_tok(False), MSG, P)
    assert not split.defined and "spans 2 generated tokens" in split.note


def test_model_gates_match_a_direct_forward(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r4b_trl.tiny_models import build_demo_model

    path = build_demo_model(tmp_path / "demo", seed=3)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    msgs = [[{"role": "user", "content": q}] for q in ("1 2 =", "9 9 9 9 9 9 8 =", "4 =")]  # unequal lengths
    prompts = [render_prompt(tok, m, Mode.AUTO, P) for m in msgs]
    site = decision_site(tok, msgs[0], P)
    got = model_gates(model, tok, prompts, site, batch_size=2)  # left-padded batches
    nl, nlnl = tok.convert_tokens_to_ids("\n"), tok.convert_tokens_to_ids("\n\n")
    for prompt, (gate, other) in zip(prompts, got):
        assert prompt.endswith("assistant\n<think>")
        ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
        with torch.no_grad():
            p = torch.softmax(model(ids).logits[0, -1].double(), -1)
        assert gate == pytest.approx(float(p[nl] / (p[nl] + p[nlnl])), abs=1e-5)
        assert other == pytest.approx(float(1 - p[nl] - p[nlnl]), abs=1e-5)
    assert tok.padding_side == "left"
    assert model_gates(model, tok, prompts, decision_site(char_tok(False), msgs[0], P)) == [None] * 3


def test_vllm_gates_score_each_decision_token(monkeypatch):
    """vLLM path: each prompt is sent twice, ending in each decision token, with prompt_logprobs; the gate is
    the normalised ratio of those two log-probabilities."""
    import math
    import sys

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(SamplingParams=lambda **kw: SimpleNamespace(**kw)))
    tok = char_tok(True)
    site = decision_site(tok, MSG, P)
    lp = {site.thinking_id: math.log(0.6), site.non_thinking_id: math.log(0.2)}

    class FakeLLM:
        def generate(self, requests, params, use_tqdm=False):
            self.requests, self.params = requests, params
            return [SimpleNamespace(prompt_logprobs=[None] * (len(r["prompt_token_ids"]) - 1) + [
                {r["prompt_token_ids"][-1]: SimpleNamespace(logprob=lp[r["prompt_token_ids"][-1]])}]) for r in requests]

    llm = FakeLLM()
    prompt = render_prompt(tok, MSG, Mode.AUTO, P)
    (gate, other), = vllm_gates(llm, tok, [prompt], site)
    assert gate == pytest.approx(0.75) and other == pytest.approx(0.2)
    base = tok.encode(prompt, add_special_tokens=False)
    assert [r["prompt_token_ids"] for r in llm.requests] == [base + [site.thinking_id], base + [site.non_thinking_id]]
    assert llm.params.prompt_logprobs == 0 and llm.params.max_tokens == 1
