"""Every TRL completion shape scores exactly as the plain text would.

With a ``response_template`` on the tokenizer (TRL installs one with ``tools``; some Hub tokenizers ship one), TRL's
GRPOTrainer hands rewards messages parsed by ``trl.chat_template_utils.parse_response`` (``reasoning_content`` +
``content`` + ``tool_calls``) instead of the decoded text. Here the messages come from TRL's own parser on real token
ids of the tiny model's tokenizer, and the reference is the plain-text path on the same text.
"""

import copy

import pytest

from bpo_helpers import NO_THINK, THINK, bpo_args, install_fake_vllm, read_dump, torch_threads

torch_threads(1)

CASES = [  # (name, pre-fill, generated text, forced mode, expected reward for gold "5")
    ("thinking", THINK, "2+3=5\n</think>\n\n\\boxed{5}<|im_end|>", "thinking", 1.0),
    ("thinking wrong", THINK, "2+3=6\n</think>\n\n\\boxed{6}<|im_end|>", "thinking", 0.0),
    ("thinking never closed", THINK, "2+3=5 so \\boxed{5}", "thinking", 0.0),
    ("think closed twice", THINK, "a\n</think>\nb </think>\n\n\\boxed{5}<|im_end|>", "thinking", 1.0),
    ("think reopened", THINK, "a\n</think>\n\n<think>b \\boxed{5}", "thinking", 0.0),
    ("non-thinking", NO_THINK, "\\boxed{5}<|im_end|>", "non_thinking", 1.0),
    ("non-thinking but thought", NO_THINK, "hmm 2+3=5\n</think>\n\n\\boxed{5}<|im_end|>", "non_thinking", 0.0),
    ("auto thinks", "<think>", "\n2+3=5\n</think>\n\n\\boxed{5}<|im_end|>", "auto", 1.0),
    ("auto skips thinking", "<think>", "\n\n</think>\n\n\\boxed{5}<|im_end|>", "auto", 1.0),
    ("auto never closed", "<think>", "\n\\boxed{5}", "auto", 0.0),
    ("hedge", THINK, "x\n</think>\n\n\\boxed{5} or \\boxed{6}<|im_end|>", "thinking", 0.0),
]


@pytest.fixture(scope="module")
def template_tokenizer(text_tokenizer):
    from trl.chat_template_utils import qwen3_template

    tok = copy.deepcopy(text_tokenizer)
    tok.response_template = qwen3_template
    return tok


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _prompt(tok, tools=None):
    kw = {"tools": tools} if tools else {}
    return tok.apply_chat_template([{"role": "user", "content": "2+3?"}], tokenize=False, add_generation_prompt=True,
                                   **kw)


@pytest.mark.parametrize("name, prefix, generated, mode, expected", CASES, ids=[c[0] for c in CASES])
def test_parsed_messages_score_as_plain_text(template_tokenizer, name, prefix, generated, mode, expected):
    from trl.chat_template_utils import parse_response

    from r4b_trl.rewards import accuracy_reward

    tok = template_tokenizer
    ids = _ids(tok, generated)
    message = parse_response(tok, ids, prefix=_ids(tok, _prompt(tok) + prefix))
    plain = tok.decode(ids, skip_special_tokens=True)  # what TRL hands rewards without a response template
    kw = dict(forced_prefix=[prefix], forced_mode=[mode])
    assert accuracy_reward([plain], ["5"], **kw) == [expected]
    assert accuracy_reward([[{"role": "assistant", "content": plain}]], ["5"], **kw) == [expected]
    assert accuracy_reward([[message]], ["5"], completions_parsed=[True], **kw) == [expected], message
    if "reasoning_content" in message:  # recognised as parsed without being told
        assert accuracy_reward([[message]], ["5"], **kw) == [expected]


def _add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: first integer
        b: second integer
    """
    return a + b


@pytest.mark.parametrize("final, expected", [("\\boxed{5}", 1.0), ("\\boxed{6}", 0.0),
                                             ("<think>\nok 5\n</think>\n\n\\boxed{5}", 1.0)])
def test_tool_rollouts(template_tokenizer, final, expected):
    """With ``tools`` TRL parses the tool call, runs it, generates again after the tool result and hands the
    reward every assistant message of the rollout; the answer is the last one's."""
    from trl.chat_template_utils import parse_response

    from r4b_trl.rewards import accuracy_reward, assistant_turn

    tok = template_tokenizer
    prompt = _prompt(tok, tools=[_add]) + THINK
    call = 'need the sum\n</think>\n\n<tool_call>\n{"name": "_add", "arguments": {"a": 2, "b": 3}}\n</tool_call><|im_end|>'
    first = parse_response(tok, _ids(tok, call), prefix=_ids(tok, prompt), tools=[_add])
    assert first["tool_calls"][0]["function"]["arguments"] == {"a": 2, "b": 3}
    after_tool = prompt + call + "\n<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n"
    after_tool += "<|im_start|>assistant\n"
    second = parse_response(tok, _ids(tok, final + "<|im_end|>"), prefix=_ids(tok, after_tool), tools=[_add])
    completion = [first, second]
    out = accuracy_reward([completion], ["5"], forced_prefix=[THINK], forced_mode=["thinking"],
                          completions_parsed=[True])
    assert out == [expected]
    turn = assistant_turn(completion, THINK, parsed=True)
    assert turn.startswith(THINK + "need the sum") and "</think>" in turn


def test_bpo_rewards_thinking_rollouts_with_a_response_template(tiny_text_model, template_tokenizer, tmp_path,
                                                                monkeypatch):
    """BPO with the default accuracy_reward and a tokenizer that has a response template: correct thinking and
    non-thinking rollouts are all rewarded 1.0 (before, every thinking rollout scored 0), wrong ones 0."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from bpo_helpers import ScriptedLLM
    from r4b_trl.bpo import BPOTrainer

    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": f"2+2? ({i})"}], "solution": "4" if i < 3 else "5",
                               "prompt_id": f"p{i}"} for i in range(4)])
    args = bpo_args(tmp_path, per_device_train_batch_size=8, max_steps=1, shuffle_dataset=False)
    trainer = BPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_text_model), args=args, train_dataset=rows,
                         processing_class=template_tokenizer)
    assert trainer.reward_func_names == ["accuracy_reward"]
    install_fake_vllm(trainer, "colocate", monkeypatch)
    eos = template_tokenizer.convert_tokens_to_ids("<|im_end|>")
    trainer.vllm_generation.llm = ScriptedLLM(template_tokenizer, eos, think_text="2+2=4\n</think>\n\n\\boxed{4}",
                                              nothink_text="\\boxed{4}")
    trainer.train()
    dump = read_dump(args.output_dir)
    assert len(dump) == 8 and {r["forced_mode"] for r in dump} == {"thinking", "non_thinking"}
    for r in dump:
        assert r["mode"] == r["forced_mode"]  # the telemetry sees the think block too
        assert r["reward"] == (1.0 if r["prompt_id"] != "p3" else 0.0), r
