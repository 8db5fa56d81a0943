"""The auto-mode probe: the gate it reports equals a direct forward of the policy, its sampled pass leaves the
training RNG alone, and with vLLM it generates through the trainer's engine (fake colocate / server engines driving
TRL's real VLLMGeneration) after the weight sync, with its own token limit."""

import json
from types import SimpleNamespace

import pytest
import torch
from bpo_helpers import FakeServerClient, ScriptedLLM, bpo_args, install_fake_vllm, length_reward, read_dump

GROUPS = ["easy", "hard", "easy", "hard", "hard", "easy"]


def probe_rows():
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i}+2?"}], "solution": str(i + 2),
                               "group": g} for i, g in enumerate(GROUPS)])


def train_rows():
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i}+{i}?"}], "solution": str(2 * i),
                               "prompt_id": f"p{i}"} for i in range(8)])


def make_trainer(model_path, tokenizer, args):
    from transformers import AutoModelForCausalLM

    from r4b_trl.bpo import BPOTrainer

    return BPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), reward_funcs=[length_reward], args=args,
                      train_dataset=train_rows(), processing_class=tokenizer, probe_dataset=probe_rows())


def history(args):
    return [json.loads(line) for line in open(f"{args.output_dir}/probe_history.jsonl")]


def direct_gates(model_path, tokenizer):
    """P("\\n") / (P("\\n") + P("\\n\\n")) after each auto prompt, one unpadded forward per prompt."""
    from transformers import AutoModelForCausalLM

    from r4b_trl.modes import Mode
    from r4b_trl.templates import render_prompt

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    nl, nlnl = (tokenizer.encode(t, add_special_tokens=False) for t in ("\n", "\n\n"))
    out = []
    for row in probe_rows():
        text = render_prompt(tokenizer, row["prompt"], Mode.AUTO)
        assert text.endswith("<|im_start|>assistant\n<think>")
        with torch.no_grad():
            p = torch.softmax(model(torch.tensor([tokenizer.encode(text, add_special_tokens=False)])).logits[0, -1], -1)
        out.append(float(p[nl[0]] / (p[nl[0]] + p[nlnl[0]])))
    return out


def test_probe_gate_matches_direct_forward_and_sampling_leaves_training_alone(tiny_text_model, text_tokenizer,
                                                                              tmp_path):
    args = bpo_args(tmp_path / "a", per_device_train_batch_size=8, max_steps=2, probe_steps=1, probe_max_new_tokens=5,
                    probe_batch_size=4)
    make_trainer(tiny_text_model, text_tokenizer, args).train()
    rows = history(args)
    assert [r["step"] for r in rows] == [0, 1, 2]
    first = rows[0]  # step 0: the weights on disk
    gates = direct_gates(tiny_text_model, text_tokenizer)
    assert first["gate"] == pytest.approx(sum(gates) / len(gates), abs=1e-5)
    for g in ("easy", "hard"):
        mine = [x for x, grp in zip(gates, GROUPS) if grp == g]
        assert first["groups"][g]["gate"] == pytest.approx(sum(mine) / len(mine), abs=1e-5)
        assert first["groups"][g]["n"] == 3
    for r in rows:
        assert r["engine"] == "transformers" and r["max_new_tokens"] == 5 and r["seconds"] > 0
        assert r["gate_note"].startswith("exact") and 0 <= r["gate_other_mass"] <= 1
        assert 0 <= r["sampled_think_rate"] <= 1 and 0 <= r["think_rate"] <= 1 and r["mean_tokens"] <= 5
    # The sampled pass runs on a forked RNG: the rollouts are the same as in a run without the probe.
    quiet = bpo_args(tmp_path / "b", per_device_train_batch_size=8, max_steps=2)
    make_trainer(tiny_text_model, text_tokenizer, quiet).train()
    strip = lambda d: [(r["step"], r["completion"], r["reward"]) for r in d]  # noqa: E731
    assert strip(read_dump(args.output_dir)) == strip(read_dump(quiet.output_dir))


class RecordingLLM(ScriptedLLM):
    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        self.calls.append({"prompts": [list(p["prompt_token_ids"]) for p in prompts], "params": sampling_params})
        return super().generate(prompts, sampling_params, use_tqdm)


class RecordingServer(FakeServerClient):
    def generate(self, prompts, features=None, n=1, **kw):
        out = super().generate(prompts, features, n, **kw)
        self.calls[-1]["params"] = SimpleNamespace(n=n, **kw)
        return out


@pytest.mark.parametrize("vllm_mode", ["colocate", "server"])
def test_probe_generates_on_the_trainers_vllm_engine(tiny_text_model, text_tokenizer, tmp_path, monkeypatch,
                                                     vllm_mode):
    from r4b_trl.modes import Mode
    from r4b_trl.templates import render_prompt

    args = bpo_args(tmp_path, per_device_train_batch_size=8, max_steps=1, probe_steps=1, probe_max_new_tokens=5)
    trainer = make_trainer(tiny_text_model, text_tokenizer, args)
    install_fake_vllm(trainer, vllm_mode, monkeypatch)
    eos = text_tokenizer.convert_tokens_to_ids("<|im_end|>")
    engine = RecordingLLM(text_tokenizer, eos) if vllm_mode == "colocate" else RecordingServer(eos)
    if vllm_mode == "colocate":
        trainer.vllm_generation.llm = engine
    else:
        trainer.vllm_generation.vllm_client = engine
    events = []
    trainer.vllm_generation.sync_weights = lambda: events.append(("sync", trainer.state.global_step))
    orig = engine.generate
    engine.generate = lambda *a, **k: (events.append(("generate", trainer.state.global_step)), orig(*a, **k))[1]
    trainer.train()

    want = [text_tokenizer.encode(render_prompt(text_tokenizer, r["prompt"], Mode.AUTO), add_special_tokens=False)
            for r in probe_rows()]
    probe_calls = [c for c in engine.calls if c["prompts"] == want]
    assert len(probe_calls) == 4  # greedy + sampled at step 0 and at step 1
    temps = [c["params"].temperature for c in probe_calls]
    assert temps == [0.0, 1.0, 0.0, 1.0]
    assert all(c["params"].max_tokens == 5 for c in probe_calls)  # its own limit (training: 6)
    assert all(c["params"].n == 1 for c in probe_calls)
    train_calls = [c for c in engine.calls if c["prompts"] != want]
    assert train_calls and all(c["params"].max_tokens == 6 and c["params"].temperature == 1.0 for c in train_calls)
    # Weights are synced before the first generation at every step: the probe at step 1 sees the updated policy.
    for step in (0, 1):
        first = next(i for i, e in enumerate(events) if e[1] == step)
        assert events[first] == ("sync", step)
    rows = history(args)
    assert [r["step"] for r in rows] == [0, 1]
    for r in rows:
        assert r["engine"] == f"vllm-{vllm_mode}" and r["n"] == 6 and r["seconds"] > 0
        assert r["gate"] is not None and set(r["groups"]) == {"easy", "hard"}
    if vllm_mode == "colocate":  # the scripted engine answers auto prompts with a closed thinking trace, "4"
        assert rows[0]["think_rate"] == rows[0]["sampled_think_rate"] == 1.0
        assert rows[0]["accuracy"] == pytest.approx(1 / 6)  # only "What is 2+2?" has solution 4
