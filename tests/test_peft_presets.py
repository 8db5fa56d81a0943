"""PEFT presets: target modules resolved per architecture, trainable parameters, one forward+backward."""

import re
import sys

import pytest
import torch

from r4b_trl.peft_presets import (
    GENERIC_LM_REGEX,
    PRESETS,
    check_vllm_compatible,
    classify_linear_modules,
    get_preset,
    get_quantization_config,
    list_presets,
    quantization_skip_modules,
)

VISION_MARKERS = ("visual", "vision_tower", "vision_model", "merger", "multi_modal_projector")


def _load_text(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def _load_vision(path):
    from transformers import AutoModelForImageTextToText

    import r4b_trl  # noqa: F401

    return AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)


def _trainable(peft_model):
    return [n for n, p in peft_model.named_parameters() if p.requires_grad]


def _is_vision(name):
    return any(f".{m}." in f".{name}." for m in VISION_MARKERS)


def _text_batch(tokenizer):
    enc = tokenizer(["<think>\n\n</think>\n\nThe answer is 5."], return_tensors="pt")
    return {**enc, "labels": enc["input_ids"].clone()}


def _vision_batch(processor, image):
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What colour?<|im_end|>\n<|im_start|>assistant\nred"
    enc = processor(text=[text], images=[image], return_tensors="pt")
    enc = dict(enc)
    enc["labels"] = enc["input_ids"].clone()
    return enc


def _forward_backward(peft_model, batch):
    out = peft_model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    # LoRA B starts at zero, so A gets no gradient on the first step; B always does.
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    return grads


def test_presets_listed():
    assert list_presets() == ["lora_lm", "lora_lm_vision", "qlora_lm"]
    with pytest.raises(ValueError, match="unknown PEFT preset"):
        get_preset("lora_everything")
    with pytest.raises(ValueError, match="stage"):
        get_preset("lora_lm", stage="dpo")


def test_stage_defaults_and_overrides():
    sft, bpo = get_preset("lora_lm", stage="sft"), get_preset("lora_lm", stage="bpo")
    assert (sft.r, sft.lora_alpha, sft.lora_dropout) == (64, 128, 0.05)
    assert (bpo.r, bpo.lora_alpha, bpo.lora_dropout) == (16, 32, 0.0)
    custom = get_preset("lora_lm", r=4, lora_alpha=8, use_rslora=True)
    assert (custom.r, custom.lora_alpha, custom.use_rslora) == (4, 8, True)
    assert custom.task_type == "CAUSAL_LM"


def test_generic_regex_selects_only_language_projections():
    names = [
        "model.layers.3.self_attn.q_proj",  # Qwen3 text
        "model.language_model.layers.0.mlp.down_proj",  # Qwen2.5-VL / Qwen3-VL
        "model.text_model.layers.1.self_attn.o_proj",  # Idefics3
        "model.visual.blocks.0.mlp.gate_proj",  # Qwen2.5-VL vision MLP: same leaf names as the LM
        "model.vision_tower.encoder.layers.0.self_attn.q_proj",  # LLaVA SigLIP
        "model.visual.merger.mlp.0",
        "model.multi_modal_projector.linear_1",
        "lm_head",
    ]
    hits = [n for n in names if re.fullmatch(GENERIC_LM_REGEX, n)]
    assert hits == names[:3]
    with pytest.raises(ValueError, match="pass the model"):
        get_preset("lora_lm_vision")


@pytest.mark.parametrize("preset", ["lora_lm", "qlora_lm"])
def test_lm_preset_on_text_model(preset, tiny_text_model, text_tokenizer):
    from peft import get_peft_model

    model = _load_text(tiny_text_model)
    cfg = get_preset(preset, model)
    assert cfg.target_modules.startswith("^(?:")
    peft_model = get_peft_model(model, cfg)
    trainable = _trainable(peft_model)
    assert trainable and all("lora_" in n for n in trainable)
    # every LM projection of both layers got an adapter: 7 projections x 2 layers x (A, B)
    assert len(trainable) == 7 * 2 * 2
    grads = _forward_backward(peft_model, _text_batch(text_tokenizer))
    assert set(grads) == set(trainable)


def test_text_model_has_no_vision_for_lora_lm_vision(tiny_text_model):
    with pytest.raises(ValueError, match="needs a vision tower"):
        get_preset("lora_lm_vision", _load_text(tiny_text_model))


def test_lora_lm_on_vision_model_freezes_vision(tiny_vision_model, vision_processor, red_image):
    from peft import get_peft_model

    model = _load_vision(tiny_vision_model)
    groups = classify_linear_modules(model)
    # Qwen2.5-VL: the vision MLP shares the LM's leaf names; it must be classified as vision, not language
    assert "model.visual.blocks.0.mlp.gate_proj" in groups["vision"]
    assert "model.visual.blocks.0.attn.qkv" in groups["vision"]
    assert groups["projector"] == ["model.visual.merger.mlp.0", "model.visual.merger.mlp.2"]
    assert len(groups["language"]) == 14 and "lm_head" in groups["other"]

    peft_model = get_peft_model(model, get_preset("lora_lm", model))
    trainable = _trainable(peft_model)
    assert trainable and not any(_is_vision(n) for n in trainable)
    assert all(".language_model." in n for n in trainable)
    _forward_backward(peft_model, _vision_batch(vision_processor, red_image))
    # the frozen vision tower got no gradient at all
    assert all(p.grad is None for n, p in peft_model.named_parameters() if _is_vision(n))


def test_lora_lm_vision_adapts_vision_and_projector(tiny_vision_model, vision_processor, red_image):
    from peft import get_peft_model

    model = _load_vision(tiny_vision_model)
    peft_model = get_peft_model(model, get_preset("lora_lm_vision", model, stage="sft"))
    trainable = _trainable(peft_model)
    vision = [n for n in trainable if _is_vision(n)]
    assert any(".attn.qkv." in n for n in vision) and any(".attn.proj." in n for n in vision)
    assert any(".mlp.gate_proj." in n for n in vision)
    assert any(".merger." in n for n in vision)
    assert any(".language_model." in n for n in trainable)
    assert not any("patch_embed" in n for n in trainable)  # the Conv3d patch embedding stays frozen
    grads = _forward_backward(peft_model, _vision_batch(vision_processor, red_image))
    # gradient reaches the vision adapters through the image tokens
    assert any(g.abs().sum() > 0 for n, g in grads.items() if _is_vision(n) and "lora_B" in n)


def test_preset_from_config_and_path_matches_module(tiny_vision_model):
    from transformers import AutoConfig

    module = _load_vision(tiny_vision_model)
    from_module = get_preset("lora_lm_vision", module).target_modules
    assert get_preset("lora_lm_vision", tiny_vision_model).target_modules == from_module
    assert get_preset("lora_lm_vision", AutoConfig.from_pretrained(tiny_vision_model)).target_modules == from_module
    # layer indices are generalised: the regex stays short
    assert from_module.count("|") + 1 == 5 + 2 + 7


@pytest.mark.parametrize(
    "kind",
    ["qwen3_vl", "llava", "idefics3"],
)
def test_other_vlm_namings(kind):
    """Qwen3-VL (linear_fc1/2, deepstack mergers), LLaVA (SigLIP q/k/v_proj + multi_modal_projector) and Idefics3
    (vision_model + connector), built on the meta device."""
    from transformers import (
        Idefics3Config,
        LlamaConfig,
        LlavaConfig,
        Qwen3VLConfig,
        SiglipVisionConfig,
    )

    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=512)
    if kind == "qwen3_vl":
        cfg = Qwen3VLConfig(
            text_config=dict(text, head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                                 "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               deepstack_visual_indexes=[1]),
        )
    elif kind == "llava":
        cfg = LlavaConfig(text_config=LlamaConfig(**text), vision_config=SiglipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            patch_size=8))
    else:
        cfg = Idefics3Config(text_config=dict(text, model_type="llama"), vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            patch_size=8))
    groups = classify_linear_modules(cfg)
    assert len(groups["language"]) == 14
    assert groups["vision"] and groups["projector"]
    assert not any(_is_vision(n) for n in groups["language"])
    lm = get_preset("lora_lm", cfg).target_modules
    both = get_preset("lora_lm_vision", cfg).target_modules
    every = [n for names in groups.values() for n in names]
    assert sorted(n for n in every if re.fullmatch(lm, n)) == sorted(groups["language"])
    assert sorted(n for n in every if re.fullmatch(both, n)) == sorted(
        groups["language"] + groups["vision"] + groups["projector"])
    # the generic (model-free) regex agrees with the resolved one on language projections
    assert sorted(n for n in every if re.fullmatch(GENERIC_LM_REGEX, n)) == sorted(groups["language"])


def test_qlora_config_built_on_cpu_without_bitsandbytes(tiny_vision_model):
    from transformers import BitsAndBytesConfig

    sys.modules.pop("bitsandbytes", None)
    assert get_quantization_config("lora_lm") is None
    q = get_quantization_config("qlora_lm", tiny_vision_model, check_runtime=False)
    assert isinstance(q, BitsAndBytesConfig)
    assert q.load_in_4bit and not q.load_in_8bit
    assert q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16 and q.bnb_4bit_quant_storage == torch.bfloat16
    assert sorted(q.llm_int8_skip_modules) == ["lm_head", "model.visual"]
    assert "bitsandbytes" not in sys.modules
    lora = get_preset("qlora_lm", tiny_vision_model)
    assert lora.target_modules == get_preset("lora_lm", tiny_vision_model).target_modules
    if not torch.cuda.is_available():
        # default check_runtime follows CUDA availability: still no import on a CPU machine
        get_quantization_config("qlora_lm")
        assert "bitsandbytes" not in sys.modules


def test_quantization_skip_modules_llava():
    from transformers import LlamaConfig, LlavaConfig, SiglipVisionConfig

    cfg = LlavaConfig(
        text_config=LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                num_key_value_heads=2, vocab_size=512),
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8))
    assert sorted(quantization_skip_modules(cfg)) == ["lm_head", "model.multi_modal_projector", "model.vision_tower"]


def test_vllm_compatibility_guard():
    check_vllm_compatible("lora_lm", use_vllm=True)
    check_vllm_compatible("lora_lm_vision", use_vllm=True)
    check_vllm_compatible("qlora_lm", use_vllm=False)
    with pytest.raises(ValueError, match="use_vllm: false"):
        check_vllm_compatible("qlora_lm", use_vllm=True)
    assert set(PRESETS) == {"lora_lm", "lora_lm_vision", "qlora_lm"}


@pytest.mark.gpu
def test_qlora_loads_in_4bit_and_trains(tiny_text_model, text_tokenizer):
    """On a CUDA machine with bitsandbytes: load the tiny model in 4-bit, add the adapter, one forward+backward."""
    import bitsandbytes as bnb
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    q = get_quantization_config("qlora_lm", tiny_text_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_text_model, quantization_config=q, dtype=torch.bfloat16,
                                                 device_map={"": 0})
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    peft_model = get_peft_model(model, get_preset("qlora_lm", model))
    trainable = _trainable(peft_model)
    assert trainable and all("lora_" in n for n in trainable)
    batch = {k: v.to("cuda") for k, v in _text_batch(text_tokenizer).items()}
    _forward_backward(peft_model, batch)
