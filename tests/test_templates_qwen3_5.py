"""Qwen3.5 first-class: the tiny random Qwen3.5 image-text model (transformers' ``qwen3_5`` architecture, Qwen3.5's
own chat template, which pre-fills ``<think>\\n``) goes through SFT, BPO (text and image rows) and evaluation."""

import copy
import importlib.util
import json
import os
from pathlib import Path

import pytest

from r4b_trl.modes import Mode, ModePrefixes

ROOT = Path(__file__).resolve().parents[1]
CURATED = ROOT / "r4b_trl" / "data" / "samples" / "curated_sample"
P = ModePrefixes()


@pytest.fixture(scope="module")
def qwen3_5_model(tmp_path_factory):
    from r4b_trl.tiny_models import main

    out = tmp_path_factory.mktemp("tiny") / "qwen3_5"
    main(["--out", str(out), "--kind", "qwen3_5"])
    return str(out)


@pytest.fixture(scope="module")
def qwen3_5_processor(qwen3_5_model):
    from r4b_trl.models import load_processing_class

    return load_processing_class(qwen3_5_model)


def test_tiny_qwen3_5_is_the_real_architecture_and_template(qwen3_5_model, qwen3_5_processor):
    import trl

    cfg = json.loads(Path(qwen3_5_model, "config.json").read_text())
    assert cfg["model_type"] == "qwen3_5" and cfg["architectures"] == ["Qwen3_5ForConditionalGeneration"]
    assert cfg["text_config"]["layer_types"] == ["linear_attention", "full_attention"]
    trl_template = Path(trl.__file__).parent.joinpath("chat_templates", "qwen3_5_think.jinja").read_text()
    assert qwen3_5_processor.chat_template == trl_template
    assert type(qwen3_5_processor).__name__ == "Qwen3VLImageOnlyProcessor"
    assert "auto_map" not in cfg  # no remote code


def _sft_recipe():
    spec = importlib.util.spec_from_file_location("r4b_sft_recipe_q35", ROOT / "recipes" / "sft.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sft_on_qwen3_5_trains_the_whole_turn_and_saves_every_mode(qwen3_5_model, qwen3_5_processor, tmp_path):
    import torch

    from r4b_trl.templates import render_prompt
    from r4b_trl.sft import SFTScriptArguments, load_sft_datasets

    torch.set_num_threads(1)
    out = tmp_path / "sft"
    trainer = _sft_recipe().main(["--config", str(ROOT / "recipes" / "tiny" / "sft" / "tiny_vision.yaml"),
                                  "--model_name_or_path", qwen3_5_model, "--dataset_name", str(CURATED),
                                  "--output_dir", str(out), "--max_steps", "1", "--save_strategy", "no",
                                  "--per_device_train_batch_size", "4"])
    assert trainer.state.global_step == 1
    lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert lrs["vision"] == pytest.approx(1e-5) and lrs["projector"] == pytest.approx(1e-5)
    ds, _ = load_sft_datasets(SFTScriptArguments(dataset_name=str(CURATED)), vision=True)
    picks = [i for i, imgs in enumerate(ds["images"]) if imgs][:2] + [0, 5]
    sub = ds.select(picks)
    batch = trainer.data_collator([sub[i] for i in range(len(sub))])
    tok = trainer.processing_class.tokenizer
    seen = set()
    for k in range(len(sub)):
        labels, ids = batch["labels"][k], batch["input_ids"][k]
        keep = [int(t) for t, lab in zip(ids, labels) if int(lab) != -100]
        target = sub[k]["completion"][0]["content"]
        # Qwen3.5's template would put "<think>\n" in the prompt; the whole think block is trained instead.
        assert tok.decode(keep) == target + "<|im_end|>\n"
        seen.add(target.startswith(P.non_thinking))
    assert seen == {True, False}
    # The saved template: unchanged for the model's own kwargs, every mode with thinking_mode.
    saved = (out / "chat_template.jinja").read_text() if (out / "chat_template.jinja").exists() else \
        json.loads((out / "processor_config.json").read_text())["chat_template"]
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    for mode in Mode:
        got = qwen3_5_processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                                    chat_template=saved, thinking_mode=mode.r4b_name)
        assert got == render_prompt(qwen3_5_processor, msgs, mode)
        assert got.endswith("<|im_start|>assistant\n" + P.prefix(mode))
    for kw in ({}, {"enable_thinking": False}):
        assert qwen3_5_processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                                     chat_template=saved, **kw) == \
            qwen3_5_processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kw)
    # The model card says how: thinking_mode through transformers and vLLM, and where the template came from.
    card = (out / "README.md").read_text()
    assert "base model's template (`qwen3_5_think`)" in card
    assert 'thinking_mode=mode' in card and '{"chat_template_kwargs": {"thinking_mode": "auto"}}' in card


@pytest.mark.parametrize("vision", [False, True], ids=["text_rows", "image_rows"])
def test_bpo_on_qwen3_5(qwen3_5_model, qwen3_5_processor, red_image, tmp_path, vision):
    import torch
    from transformers import AutoModelForImageTextToText

    from bpo_helpers import GenerateRecorder, bpo_args, length_reward, read_dump, text_rows, vision_rows
    from r4b_trl.bpo import BPOTrainer

    torch.set_num_threads(1)
    # Image rows also train the decision token (train_mode_token, as the Qwen3.5 recipes do): TRL's re-rendering
    # for image features must then end with the prompt-side part of the pre-fill.
    args = bpo_args(tmp_path, per_device_train_batch_size=4, max_steps=1, max_completion_length=4,
                    train_mode_token=vision)
    rows = vision_rows(red_image, n=2) if vision else text_rows(2)
    pc = copy.deepcopy(qwen3_5_processor)
    trainer = BPOTrainer(model=AutoModelForImageTextToText.from_pretrained(qwen3_5_model),
                         reward_funcs=[length_reward], args=args, train_dataset=rows, processing_class=pc)
    tok = pc.tokenizer
    rec = GenerateRecorder(trainer.model, tok.pad_token_id)
    trainer.train()
    assert trainer.state.global_step == 1
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    forced = []
    for prompts, _ in rec.calls:
        for p in prompts:
            assert (image_pad in p) == vision
            text = tok.decode(p)
            mode = "non_thinking" if text.endswith(P.non_thinking) else "thinking"
            prefix_ids = tok(P.prefix(mode), add_special_tokens=False)["input_ids"]
            # Exactly one pre-fill right after the assistant header, not Qwen3.5's "<think>\n" doubled.
            assert p[-len(prefix_ids) - len(header):] == header + prefix_ids, text[-60:]
            forced.append(mode)
    assert forced.count("thinking") == forced.count("non_thinking") == len(forced) // 2 > 0
    dump = read_dump(args.output_dir)
    assert sorted(r["forced_mode"] for r in dump) == sorted(forced)
    if vision:  # the decision token (the one after "<think>") heads every completion and is trained
        buf = trainer._buffered_inputs[0]
        think_open = tok.convert_tokens_to_ids("<think>")
        nl, nlnl = tok.convert_tokens_to_ids("Ċ"), tok.convert_tokens_to_ids("ĊĊ")
        for i in range(buf["completion_ids"].shape[0]):
            prompt = buf["prompt_ids"][i][buf["prompt_mask"][i].bool()].tolist()
            assert prompt[-1] == think_open  # only the auto part of the pre-fill stays in the prompt
            assert int(buf["completion_ids"][i][0]) in (nl, nlnl) and buf["tool_mask"][i, 0].item() == 1


def test_evaluation_on_qwen3_5(qwen3_5_model, tmp_path):
    from r4b_trl.data.io import read_jsonl
    from r4b_trl.evaluation import evaluate, parse_config

    cfg = parse_config(["--config", str(ROOT / "recipes/tiny/eval/tiny_vision.yaml"), "--model", qwen3_5_model,
                        "--output_dir", str(tmp_path / "e"), "--limit", "2", "--max_new_tokens", "3"])
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        res = evaluate(cfg)
    finally:
        os.chdir(cwd)
    assert set(res["benchmarks"]) == {"image", "text_math"}
    rows = read_jsonl(tmp_path / "e" / "generations.jsonl")
    assert len(rows) == (2 + 2) * 3
    for r in rows:
        assert r["prompt"].endswith("<|im_start|>assistant\n" + P.prefix(r["mode"]))
        assert r["prompt"].count("<think>") == 1
    assert all("<|image_pad|>" in r["prompt"] for r in rows if r["benchmark"] == "image")
