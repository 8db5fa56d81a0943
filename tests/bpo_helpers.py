"""Test helpers for BPO: record what reaches the generation backend, and fake vLLM backends that drive TRL's real
``VLLMGeneration.generate`` (server and colocate code paths) without vLLM or a GPU."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

THINK = "<think>\n"
NO_THINK = "<think>\n\n</think>\n\n"


def length_reward(completions, **kwargs):
    """A deterministic reward with spread inside groups (depends on the sampled text)."""
    out = []
    for c in completions:
        text = c[0]["content"] if isinstance(c, list) else c
        out.append(float(len(text) % 3 == 0))
    return out


def bpo_args(tmp_path, **kw):
    from r4b_trl.bpo import BPOConfig

    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
                max_completion_length=6, max_steps=2, use_cpu=True, bf16=False, report_to=[], logging_steps=1,
                dump_first_steps=100, save_strategy="no", learning_rate=1e-5, gradient_checkpointing=False, seed=0,
                # 6-token completions of a random model are nearly all cut off: keep them scored (BPO's default
                # leaves them out; tests/test_bpo_estimator.py checks that).
                mask_truncated_completions=False)
    base.update(kw)
    return BPOConfig(**base)


def text_rows(n=8):
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"What is {i}+{i}?"}], "solution": str(2 * i), "prompt_id": f"p{i}"}
        for i in range(n)
    ])


def vision_rows(image, n=4):
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"How many? {i}"}]}],
         "images": [image], "solution": str(i), "prompt_id": f"v{i}"}
        for i in range(n)
    ])


class GenerateRecorder:
    """Wraps ``model.generate`` to record the prompt ids it receives and the ids it returns."""

    def __init__(self, model, pad_id):
        self.model, self.pad_id, self.calls = model, pad_id, []
        self._orig = model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        out = self._orig(*args, **kwargs)
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
        tails = [o[ids.shape[1]:].tolist() for o in out]
        self.calls.append((prompts, tails))
        return out


def read_dump(output_dir) -> list[dict]:
    rows = []
    for p in sorted(Path(output_dir, "rollouts").glob("step_*.jsonl"), key=lambda p: int(p.stem.split("_")[1])):
        rows += [json.loads(line) for line in p.read_text().splitlines()]
    return rows


# ---------------------------------------------------------------------------------------------------- fake vLLM


class _Logprob:
    def __init__(self, lp):
        self.logprob, self.rank = lp, 1


class FakeServerClient:
    """Stands in for TRL's ``VLLMClient``: answers each unique prompt ``n`` times with its own last 3 tokens + EOS,
    so a completion shows which pre-fill it was generated from."""

    def __init__(self, eos_id):
        self.eos_id, self.calls = eos_id, []

    def generate(self, prompts, features=None, n=1, **kw):
        self.calls.append({"prompts": [list(p) for p in prompts], "n": n, "features": features})
        completions = [list(p[-3:]) + [self.eos_id] for p in prompts for _ in range(n)]
        return {"prompt_ids": [list(p) for p in prompts], "completion_ids": completions,
                "logprobs": [[[-0.5] for _ in c] for c in completions], "logprob_token_ids": None}

    def image_features(self, images):
        return [{"mm_placeholders": {"image": [None] * len(imgs)}} if imgs else None for imgs in images]


class FakeLLM:
    """Stands in for ``vllm.LLM`` (colocate): one completion per prompt (n=1), the prompt's last 3 tokens + EOS."""

    def __init__(self, eos_id):
        self.eos_id, self.calls = eos_id, []

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        self.calls.append({"prompts": prompts, "n": sampling_params.n})
        outs = []
        for p in prompts:
            ids = list(p["prompt_token_ids"])
            toks = ids[-3:] + [self.eos_id]
            outs.append(SimpleNamespace(prompt_token_ids=ids, outputs=[
                SimpleNamespace(token_ids=toks, logprobs=[{t: _Logprob(-0.5)} for t in toks])]))
        return outs


def install_fake_vllm(trainer, mode: str, monkeypatch):
    """Make ``trainer`` generate through TRL's real ``VLLMGeneration.generate`` with a fake server or engine."""
    import trl.generation.vllm_generation as vg

    eos_id = trainer._tokenizer.convert_tokens_to_ids("<|im_end|>")
    gen = vg.VLLMGeneration.__new__(vg.VLLMGeneration)
    gen.mode = mode
    gen.accelerator = trainer.accelerator
    gen.model = trainer.model
    gen.processing_class = trainer.processing_class
    gen.temperature, gen.top_p, gen.top_k, gen.min_p, gen.repetition_penalty = 1.0, 1.0, 0, None, 1.0
    gen.max_completion_length = trainer.args.max_completion_length
    gen.logprobs, gen.structured_outputs_regex, gen.generation_kwargs = 0, None, {}
    gen.enable_sleep_mode, gen._llm_weights_sleeping, gen.tensor_parallel_size = False, False, 1
    gen.sync_weights = lambda: None
    gen._place_features = lambda features, prompt_ids: features
    if mode == "server":
        gen.vllm_client = FakeServerClient(eos_id)
        backend = gen.vllm_client
    else:
        gen.llm = FakeLLM(eos_id)
        backend = gen.llm
        monkeypatch.setattr(vg, "SamplingParams", lambda **kw: SimpleNamespace(**kw), raising=False)
    trainer.vllm_generation = gen
    trainer.use_vllm = True
    trainer.vllm_importance_sampling_correction = False
    trainer._last_loaded_step = -1
    return backend


def ends_with_ids(ids, suffix_ids) -> bool:
    return len(ids) >= len(suffix_ids) and list(ids[-len(suffix_ids):]) == list(suffix_ids)


def prefix_ids(tokenizer, prefix: str):
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    base = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    full = tok.encode("<|im_start|>assistant\n" + prefix, add_special_tokens=False)
    return full[len(base):]


def torch_threads(n=1):
    torch.set_num_threads(n)


class ScriptedLLM(FakeLLM):
    """A colocate engine whose completion depends on the forced pre-fill it sees: a closed thinking trace for
    thinking prompts, a plain answer for non-thinking prompts."""

    def __init__(self, tokenizer, eos_id, think_text="2+2=4\n</think>\n\n4", nothink_text="4"):
        super().__init__(eos_id)
        self.tok = getattr(tokenizer, "tokenizer", tokenizer)
        self.think_ids = self.tok.encode(think_text, add_special_tokens=False) + [eos_id]
        self.nothink_ids = self.tok.encode(nothink_text, add_special_tokens=False) + [eos_id]
        self.close_id = self.tok.convert_tokens_to_ids("</think>")

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        outs = []
        for p in prompts:
            ids = list(p["prompt_token_ids"])
            toks = self.nothink_ids if self.close_id in ids[-3:] else self.think_ids
            outs.append(SimpleNamespace(prompt_token_ids=ids, outputs=[
                SimpleNamespace(token_ids=toks, logprobs=[{t: _Logprob(-0.5)} for t in toks])]))
        return outs
