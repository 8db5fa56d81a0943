"""BPO's forced G/2 + G/2 groups through the real vLLM engine on a CPU (`make test-vllm`): colocate (TRL's
in-process engine) and server mode (a real OpenAI-compatible vLLM server started as `trl vllm-serve` starts it).

Checked from outside the trainer: the prompt ids the engine actually received (recorded at the engine's /
client's `generate`), the rollout dump, and advantages recomputed by hand.

Weight sync on a CPU — what is test-side here, and why:

* colocate: TRL's sync (`model_runner.model.load_weights`) fails on vLLM's CPU path (`AttributeError: 'Parameter'
  object has no attribute 'weight_loader'`: vLLM-CPU repacks linear weights after loading). ``TEST-SIDE CPU WEIGHT
  SYNC`` below replaces it with vLLM's own ``model_runner.reload_weights(weights_iterator=...)``, fed by TRL's own
  parameter iterator; ``test_colocate_test_side_sync_reaches_the_engine`` shows the synced weights reach the engine.
  TRL's GPU sync path itself is only exercised on a GPU (`make test-gpu`).
* server: TRL's sync needs vLLM's NCCL weight-transfer engine (CUDA only); ``TEST-SIDE SERVER SYNC STUB`` turns it
  off, so the server keeps the initial weights: generation and BPO's grouping are real, the weight update is not.
"""

import math
import os
from collections import Counter, defaultdict

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from bpo_helpers import bpo_args, length_reward, read_dump, text_rows  # noqa: E402
from test_bpo import _check_dump, _check_groups, _mode_of_prompt, _recompute_advantages  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture
def test_side_cpu_weight_sync(monkeypatch):
    """TEST-SIDE CPU WEIGHT SYNC (colocate): vLLM's own reload API instead of TRL's `load_weights` loop."""
    from trl.generation.vllm_generation import VLLMGeneration

    syncs = []
    original = VLLMGeneration.sync_weights

    def sync_weights(self):
        if self.mode != "colocate":
            return original(self)
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=self._iter_named_params())
        self.llm.reset_prefix_cache()
        syncs.append(1)

    monkeypatch.setattr(VLLMGeneration, "sync_weights", sync_weights)
    return syncs


@pytest.fixture
def test_side_server_sync_stub(monkeypatch):
    """TEST-SIDE SERVER SYNC STUB: no NCCL communicator, no weight push (CUDA-only in vLLM); the server keeps its
    initial weights."""
    from trl.generation.vllm_client import VLLMClient
    from trl.generation.vllm_generation import VLLMGeneration

    monkeypatch.setattr(VLLMClient, "init_communicator", lambda self, device=0: None)
    monkeypatch.setattr(VLLMGeneration, "sync_weights", lambda self: None)


def _trainer(model_path, args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r4b_trl.bpo import BPOTrainer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_path)
    return BPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), reward_funcs=[length_reward], args=args,
                      train_dataset=text_rows(), processing_class=tok), tok


def _record(obj, name):
    """Wrap ``obj.<name>`` (the engine's or the server client's generate) and record its arguments and result."""
    calls = []
    orig = getattr(obj, name)

    def wrapped(*args, **kwargs):
        out = orig(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    setattr(obj, name, wrapped)
    return calls


def _colocate_args(tmp_path, **kw):
    base = dict(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.2, vllm_max_model_length=512,
                per_device_train_batch_size=8, max_steps=2, max_completion_length=8)
    return bpo_args(tmp_path, **{**base, **kw})


def _engine_prompts(call):
    args, kwargs, _ = call
    prompts = args[0] if args else kwargs["prompts"]
    return [p["prompt_token_ids"] for p in prompts]


def test_colocate_forced_groups_from_engine_prompts(vllm_text_model, tmp_path, test_side_cpu_weight_sync):
    args = _colocate_args(tmp_path)
    trainer, tok = _trainer(vllm_text_model, args)
    calls = _record(trainer.vllm_generation.llm, "generate")
    trainer.train()
    assert len(calls) == 2 and test_side_cpu_weight_sync  # one engine call per step, and weights were synced
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    dump = _check_dump(args.output_dir, 4, 2, 8)
    by_step = defaultdict(list)
    for r in dump:
        by_step[r["step"]].append(r)
    for step, call in zip(sorted(by_step), calls):
        prompts = _engine_prompts(call)
        assert len(prompts) == 8
        _check_groups([_mode_of_prompt(p, tok) for p in prompts], 4, 2)
        # the dump's completions are what the engine produced (token counts, in TRL's layout order)
        outs = [list(o.outputs[0].token_ids) for o in call[2]]
        engine_lens = [len(ids[: ids.index(eos) + 1] if eos in ids else ids) for ids in outs]
        rows = sorted(by_step[step], key=lambda r: (r["group_id"], r["index_in_group"]))
        assert [r["completion_tokens"] for r in rows] == engine_lens
    _recompute_advantages(dump)


def test_colocate_test_side_sync_reaches_the_engine(vllm_text_model, tmp_path, test_side_cpu_weight_sync):
    """After one real step, zero the trainer's (tied) embeddings: every logit becomes 0, so a token's log-probability
    is exactly -ln(vocab). The engine shows it only after the (test-side) sync."""
    import torch
    from vllm import SamplingParams

    args = _colocate_args(tmp_path, max_steps=1)
    trainer, tok = _trainer(vllm_text_model, args)
    trainer.train()
    gen = trainer.vllm_generation
    ids = tok.encode("What is 2 + 2?", add_special_tokens=False)
    params = SamplingParams(max_tokens=4, temperature=1.0, logprobs=0, seed=0)

    def logprobs():
        out = gen.llm.generate([{"prompt_token_ids": ids}], params, use_tqdm=False)[0].outputs[0]
        return [lp[t].logprob for t, lp in zip(out.token_ids, out.logprobs)]

    uniform = -math.log(trainer.model.config.vocab_size)
    with torch.no_grad():
        trainer.model.get_input_embeddings().weight.zero_()
    before = logprobs()
    assert not all(abs(lp - uniform) < 1e-3 for lp in before)  # the engine still has the trained weights
    gen.sync_weights()
    after = logprobs()
    assert all(abs(lp - uniform) < 1e-3 for lp in after), (after, uniform)


def test_colocate_with_train_mode_token(vllm_text_model, tmp_path, test_side_cpu_weight_sync):
    """The decision-token option (`train_mode_token`) through the real engine, G=4 with 1 thinking + 3 non-thinking:
    the engine still receives the full forced pre-fills (exact groups); in the training batch only the decision
    token moves into the completion (trained; forced tokens after it are not), with log(mode share) per row."""
    from bpo_helpers import NO_THINK, THINK, prefix_ids

    args = _colocate_args(tmp_path, max_steps=1, train_mode_token=True, thinking_fraction=0.25)
    trainer, tok = _trainer(vllm_text_model, args)
    calls = _record(trainer.vllm_generation.llm, "generate")
    trainer.train()
    prompts = _engine_prompts(calls[0])
    _check_groups([_mode_of_prompt(p, tok) for p in prompts], 4, 1)
    _check_dump(args.output_dir, 4, 1, 8)
    buf = trainer._buffered_inputs[0]
    think_open = tok.convert_tokens_to_ids("<think>")
    nl, nlnl = prefix_ids(tok, THINK)[1], prefix_ids(tok, NO_THINK)[1]
    close = tok.convert_tokens_to_ids("</think>")
    seen = Counter()
    for i in range(buf["completion_ids"].shape[0]):
        prompt = buf["prompt_ids"][i][buf["prompt_mask"][i].bool()].tolist()
        comp = buf["completion_ids"][i].tolist()
        assert prompt[-1] == think_open  # only the auto part of the prefix stays in the prompt
        assert buf["bpo_decision_log_share"][i].item() == pytest.approx(
            math.log(0.25) if comp[0] == nl else math.log(0.75), abs=1e-6)
        if comp[0] == nl:
            seen["thinking"] += 1
        else:
            assert comp[:3] == [nlnl, close, nlnl]
            assert buf["tool_mask"][i, :3].tolist() == [1, 0, 0]  # decision trained, forced rest not
            seen["non_thinking"] += 1
    assert seen == {"thinking": 2, "non_thinking": 6}


def test_server_forced_groups_through_real_server(vllm_server, tmp_path, test_side_server_sync_stub):
    """Server mode: TRL sends each unique prompt once with n samples; BPO's sub-group override makes each unique
    prompt homogeneous in mode, so the real server receives thinking/non-thinking prompts alternately, n = G/2."""
    args = bpo_args(tmp_path, use_vllm=True, vllm_mode="server", vllm_server_host="127.0.0.1",
                    vllm_server_port=vllm_server["port"], per_device_train_batch_size=8, max_steps=2,
                    max_completion_length=8)
    trainer, tok = _trainer(vllm_server["model"], args)
    calls = _record(trainer.vllm_generation.vllm_client, "generate")
    trainer.train()
    assert len(calls) == 2
    for args_, kwargs, out in calls:
        prompts = kwargs.get("prompts") or args_[0]
        assert kwargs["n"] == 2 and len(prompts) == 4
        assert [_mode_of_prompt(p, tok) for p in prompts] == ["thinking", "non_thinking"] * 2
        assert len(out["completion_ids"]) == 8  # n completions per unique prompt, from the server
    dump = _check_dump(args.output_dir, 4, 2, 8)
    _recompute_advantages(dump)
    assert len(read_dump(args.output_dir)) == 16
