"""Bi-mode annealing: configs parse, bad targets are refused by name, per-module LRs, one step text + vision
through the recipe, resume continues at the same step, and the loss covers the whole assistant turn."""

import importlib.util
import json
from pathlib import Path

import pytest

from r4b_trl.data.io import DataError, write_jsonl
from r4b_trl.modes import ModePrefixes

ROOT = Path(__file__).resolve().parents[1]
CURATED = ROOT / "r4b_trl" / "data" / "samples" / "curated_sample"
P = ModePrefixes()


def _recipe():
    spec = importlib.util.spec_from_file_location("r4b_sft_recipe", ROOT / "recipes" / "sft.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CPU = ["--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--gradient_checkpointing", "false"]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("recipes/*/sft/*.yaml")))
def test_shipped_configs_parse(path):
    from trl import SFTConfig

    from r4b_trl.sft import SFTScriptArguments

    args = ["--config", str(ROOT / path)]
    if "tiny" not in path:  # GPU configs: parse on this CPU machine (bf16 needs a GPU to validate)
        args += ["--bf16", "false", "--use_cpu", "true"]
    script, training, model = _recipe().make_parser().parse_args_and_config(args=args)
    assert isinstance(script, SFTScriptArguments) and isinstance(training, SFTConfig)
    assert model.model_name_or_path and (script.dataset_name or script.dataset_mixture)
    if "lora" in path:
        assert model.use_peft or script.peft_preset
    if "full_zero3" in path:
        assert script.vision_lr_multiplier == 0.1 and script.projector_lr_multiplier == 0.1 and not model.use_peft
    if "qwen3-4b" in path or path.endswith("tiny.yaml"):
        assert training.packing and script.skip_image_rows


@pytest.mark.parametrize("text,why", [
    (P.thinking_answer("r", "a"), None),
    (P.non_thinking_answer("a"), None),
    ("<think>\nr\n\n</think>\n\na", None),
    ("just an answer", "must start with exactly '<think>\\n\\n</think>\\n\\n'"),
    ("<think>\n\n</think>\n\n", "no answer after"),
    ("<think>\nnever closed", "never closed"),
    ("<think>reasoning</think>answer", "a thinking target must start with exactly '<think>\\n'"),
    ("<think> </think>answer", "non-thinking target must start with exactly"),
    ("<think>\nr\n</think>\n\n<think>\nx\n</think>\n\na", "2 '<think>' and 2 '</think>'"),
    ("", "empty"),
    (None, "empty"),
])
def test_check_target(text, why):
    from r4b_trl.sft import check_target

    got = check_target(text)
    assert (got is None) if why is None else (why in got), got


def test_bad_rows_refused_before_model_load(tmp_path, tiny_text_model, monkeypatch):
    rows = [
        {"id": "ok", "prompt": [{"role": "user", "content": "q"}],
         "completion": [{"role": "assistant", "content": P.non_thinking_answer("a")}]},
        {"id": "bare", "prompt": [{"role": "user", "content": "q"}],
         "completion": [{"role": "assistant", "content": "a"}]},
        {"id": "open", "prompt": [{"role": "user", "content": "q"}],
         "completion": [{"role": "assistant", "content": "<think>\nhmm"}]},
    ]
    write_jsonl(tmp_path / "bad.jsonl", rows)
    import transformers

    def no_weights(*a, **k):
        raise AssertionError("model weights loaded before the data was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    with pytest.raises(DataError) as e:
        _recipe().main(["--model_name_or_path", tiny_text_model, "--dataset_name", str(tmp_path / "bad.jsonl"),
                        "--output_dir", str(tmp_path / "o"), *CPU])
    msg = str(e.value)
    assert "2 problem(s) in 3 rows" in msg
    assert "row 2 (id 'bare'): a non-thinking target must start with exactly" in msg
    assert "row 3 (id 'open'): the think block is never closed" in msg
    assert not (tmp_path / "o").exists()


def test_messages_rows_and_image_count_check(tmp_path, tiny_text_model):
    from r4b_trl.sft import SFTScriptArguments, load_sft_datasets

    write_jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                     {"role": "assistant", "content": P.thinking_answer("r", "a")}]}])
    train, _ = load_sft_datasets(SFTScriptArguments(dataset_name=str(tmp_path / "m.jsonl")), vision=False)
    assert train.column_names == ["prompt", "completion"]
    assert train[0]["completion"] == [{"role": "assistant", "content": P.thinking_answer("r", "a")}]
    write_jsonl(tmp_path / "i.jsonl", [{"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}],
                                        "completion": [{"role": "assistant", "content": P.non_thinking_answer("a")}],
                                        "images": []}, {"prompt": [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
                                        "completion": [{"role": "assistant", "content": P.non_thinking_answer("a")}],
                                        "images": []}])
    with pytest.raises(DataError, match="row 1: the prompt has 1 image block"):
        load_sft_datasets(SFTScriptArguments(dataset_name=str(tmp_path / "i.jsonl")), vision=True)
    with pytest.raises(DataError, match="images but the model is a text-only model"):
        load_sft_datasets(SFTScriptArguments(dataset_name=str(CURATED)), vision=False)
    train, _ = load_sft_datasets(SFTScriptArguments(dataset_name=str(CURATED), skip_image_rows=True), vision=False)
    assert len(train) == 19 and "images" not in train.column_names
    assert isinstance(train[0]["prompt"][0]["content"], str)
    mixture = SFTScriptArguments(dataset_mixture=json.dumps([{"path": str(CURATED), "weight": 2},
                                                             {"path": str(tmp_path / "m.jsonl"), "weight": 0.0}]))
    train, _ = load_sft_datasets(mixture, vision=True)
    assert len(train) == 46 and sum(bool(x) for x in train["images"]) == 8


def test_module_of_and_param_groups(tiny_vision_model):
    from transformers import AutoModelForImageTextToText

    from r4b_trl.sft import module_of, param_groups

    assert module_of("model.visual.merger.mlp.0.weight") == "projector"
    assert module_of("model.visual.blocks.0.attn.qkv.weight") == "vision"
    assert module_of("model.multi_modal_projector.linear_1.weight") == "projector"
    assert module_of("model.vision_tower.encoder.layers.0.weight") == "vision"
    assert module_of("model.language_model.layers.0.self_attn.q_proj.weight") == "language"
    assert module_of("lm_head.weight") == "language"
    assert module_of("model.connector.modality_projection.proj.weight") == "projector"
    assert module_of("base_model.model.model.visual.merger.ln_q.weight") == "projector"
    model = AutoModelForImageTextToText.from_pretrained(tiny_vision_model)
    names = {n for n, _ in model.named_parameters()}
    groups = param_groups(model, 1e-4, 0.01, [n for n in names if "norm" not in n and "bias" not in n],
                          {"vision": 0.1, "projector": 0.5})
    by = {g["name"]: g for g in groups}
    assert groups[0]["name"] == "language"
    assert by["language"]["lr"] == 1e-4 and by["vision"]["lr"] == pytest.approx(1e-5)
    assert by["projector"]["lr"] == pytest.approx(5e-5) and by["vision_no_decay"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(names)
    n_proj = sum(1 for n in names if ".visual.merger." in n)
    assert len(by["projector"]["params"]) + len(by.get("projector_no_decay", {"params": []})["params"]) == n_proj


def test_text_step_with_packing_then_resume(tmp_path, tiny_text_model):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "run"
    common = ["--config", str(ROOT / "recipes" / "tiny" / "sft" / "tiny.yaml"), "--model_name_or_path",
              tiny_text_model, "--dataset_name", str(CURATED), "--output_dir", str(out), "--save_steps", "1",
              "--logging_steps", "1"]
    trainer = _recipe().main(common + ["--max_steps", "2"])
    assert trainer.state.global_step == 2 and trainer.args.packing
    assert (out / "checkpoint-2").is_dir() and (out / "model.safetensors").is_file()
    # packed sequences keep the completion-only loss: the trained tokens are exactly the 19 text targets
    tok = trainer.processing_class
    trained = []
    for row in trainer.train_dataset:
        trained.append(tok.decode([t for t, l in zip(row["input_ids"], row["labels"]) if l != -100]))
    trained = "".join(trained)
    from r4b_trl.data.mixing import load_curated

    targets = [r["completion"][0]["content"] + "<|im_end|>\n" for r in load_curated(CURATED) if not r["images"]]
    assert len(targets) == 19 and all(t in trained for t in targets)
    assert len(trained) == sum(map(len, targets)) and "<|im_start|>" not in trained
    # rerun with a larger budget: it picks up checkpoint-2 by itself and continues at step 3
    trainer = _recipe().main(common + ["--max_steps", "3"])
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3]
    meta = json.loads((out / "r4b_sft.json").read_text())
    assert meta["resumed_from"].endswith("checkpoint-2") and meta["global_step"] == 3
    # an explicit checkpoint works too
    trainer = _recipe().main(common + ["--max_steps", "3", "--resume_from_checkpoint", str(out / "checkpoint-2"),
                                       "--auto_resume", "false"])
    assert trainer.state.global_step == 3


def test_vision_step_with_module_lrs_and_mask(tmp_path, tiny_vision_model):
    """One step on the curated sample (text and image rows) with vision/projector LRs at 0.1x; the trained tokens
    of every row are exactly its target plus the end-of-turn token, think block included."""
    import torch

    from r4b_trl.sft import SFTScriptArguments, load_sft_datasets

    torch.set_num_threads(1)
    trainer = _recipe().main(["--config", str(ROOT / "recipes" / "tiny" / "sft" / "tiny_vision.yaml"),
                              "--model_name_or_path", tiny_vision_model, "--dataset_name", str(CURATED),
                              "--output_dir", str(tmp_path / "v"), "--max_steps", "1", "--save_strategy", "no",
                              "--per_device_train_batch_size", "4"])
    assert trainer.state.global_step == 1
    lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert lrs["language"] == pytest.approx(1e-4) and lrs["vision"] == pytest.approx(1e-5)
    assert lrs["projector"] == pytest.approx(1e-5)

    ds, _ = load_sft_datasets(SFTScriptArguments(dataset_name=str(CURATED)), vision=True)
    picks = [i for i, imgs in enumerate(ds["images"]) if imgs][:2] + [0, 5]  # image rows, a direct and a thinking row
    sub = ds.select(picks)
    collator = trainer.data_collator
    batch = collator([sub[i] for i in range(len(sub))])
    tok = trainer.processing_class.tokenizer
    for k in range(len(sub)):
        keep = [int(t) for t, l in zip(batch["input_ids"][k], batch["labels"][k]) if int(l) != -100]
        text = tok.decode(keep, skip_special_tokens=False)
        target = sub[k]["completion"][0]["content"]
        assert text == target + "<|im_end|>\n", (text, target)
    modes = {sub[k]["completion"][0]["content"].startswith(P.non_thinking) for k in range(len(sub))}
    assert modes == {True, False}
    assert sum(1 for k in range(len(sub)) if sub[k]["images"]) == 2


def test_lora_step_and_qlora_needs_peft(tmp_path, tiny_vision_model, caplog):
    import torch
    from peft import PeftModel

    torch.set_num_threads(1)
    args = ["--config", str(ROOT / "recipes" / "tiny" / "sft" / "tiny_vision.yaml"), "--model_name_or_path",
            tiny_vision_model, "--dataset_name", str(CURATED), "--output_dir", str(tmp_path / "lora"),
            "--max_steps", "1", "--save_strategy", "no", "--use_peft", "true", "--lora_r", "4",
            "--lora_target_modules", "q_proj", "v_proj"]
    with caplog.at_level("WARNING"):
        trainer = _recipe().main(args)
    assert isinstance(trainer.model, PeftModel) and trainer.state.global_step == 1
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    # ... and the adapter merged into the base, loadable as a plain model (what BPO and vLLM load).
    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "lora" / "merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert "ignored with LoRA" in caplog.text  # the tiny_vision config's LR multipliers do not apply to adapters
    assert all("name" not in g for g in trainer.optimizer.param_groups)
    with pytest.raises(ValueError, match="QLoRA.*use_peft: true"):
        _recipe().main(args[:-7] + ["--load_in_4bit", "true"])


def test_eval_split_from_a_file(tmp_path, tiny_text_model):
    import torch

    torch.set_num_threads(1)
    trainer = _recipe().main(["--config", str(ROOT / "recipes" / "tiny" / "sft" / "tiny.yaml"), "--model_name_or_path",
                              tiny_text_model, "--dataset_name", str(CURATED), "--output_dir", str(tmp_path / "e"),
                              "--max_steps", "1", "--save_strategy", "no", "--eval_strategy", "steps",
                              "--eval_steps", "1", "--dataset_test_split", str(CURATED / "curated.jsonl")])
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 1 and evals[0]["eval_loss"] > 0


def test_tokenizer_without_think_tokens_gets_them_and_learns_them(tmp_path, tiny_text_model):
    """A model whose tokenizer lacks <think>/</think> (as Qwen2.5-VL's does): annealing adds them as non-special
    tokens, resizes the embeddings, trains them, and saves a tokenizer that keeps them."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    src = tmp_path / "no_think"
    shutil.copytree(tiny_text_model, src)
    tok_json = json.loads((src / "tokenizer.json").read_text())
    tok_json["added_tokens"] = [t for t in tok_json["added_tokens"] if t["content"] not in ("<think>", "</think>")]
    (src / "tokenizer.json").write_text(json.dumps(tok_json))
    before = AutoTokenizer.from_pretrained(src)
    assert len(before.encode("<think>", add_special_tokens=False)) > 1
    out = tmp_path / "annealed"
    _recipe().main(["--config", str(ROOT / "recipes" / "tiny" / "sft" / "tiny.yaml"), "--model_name_or_path", str(src),
                    "--dataset_name", str(CURATED), "--output_dir", str(out), "--max_steps", "1",
                    "--save_strategy", "no"])
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = [tok.convert_tokens_to_ids(t) for t in ("<think>", "</think>")]
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in ("<think>", "</think>"))
    assert model.get_input_embeddings().weight.shape[0] >= len(tok) > max(ids)
    from r4b_trl.modes import check_think_tokens

    check_think_tokens(tok)
