"""Offline tiny models: save/load round trip without network, generation, safetensors only."""

import json
import subprocess
import sys
from pathlib import Path

import torch


def test_text_model_round_trip_and_generates(tiny_text_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = {p.name for p in Path(tiny_text_model).iterdir()}
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    model = AutoModelForCausalLM.from_pretrained(tiny_text_model)
    tok = AutoTokenizer.from_pretrained(tiny_text_model)
    assert model.config.model_type == "qwen3" and model.config.hidden_size <= 64
    assert "enable_thinking" in tok.chat_template
    ids = tok("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.input_ids.shape[1]
    # Reloaded weights are the saved weights.
    again = AutoModelForCausalLM.from_pretrained(tiny_text_model)
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


def test_vision_model_round_trip_and_generates_with_image(tiny_vision_model, red_image):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import r4b_trl  # noqa: F401

    model = AutoModelForImageTextToText.from_pretrained(tiny_vision_model)
    proc = AutoProcessor.from_pretrained(tiny_vision_model)
    assert model.config.model_type == "qwen2_5_vl"
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, thinking_mode="long")
    assert text.endswith("<|im_start|>assistant\n<think>\n")
    inputs = proc(text=[text], images=[red_image], return_tensors="pt")
    assert "pixel_values" in inputs and int((inputs.input_ids == model.config.image_token_id).sum()) >= 1
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs.input_ids.shape[1] + 4 or out[0, -1].item() == model.generation_config.eos_token_id


def test_cli_builds_a_loadable_model(tmp_path):
    out = tmp_path / "m"
    res = subprocess.run([sys.executable, "-m", "r4b_trl.tiny_models", "--out", str(out), "--kind", "text"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "r4b_tiny.json").read_text())["kind"] == "text"
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out).model_type == "qwen3"


def test_no_remote_code_in_saved_configs(tiny_text_model, tiny_vision_model):
    for d in (tiny_text_model, tiny_vision_model):
        for f in Path(d).glob("*.json"):
            assert "auto_map" not in json.loads(f.read_text()), f
