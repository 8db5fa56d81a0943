"""recipes/bpo.py end to end on the tiny model: configs parse, the recipe trains, a killed run resumes without
duplicated or lost steps in the rollout dump and the probe history."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BPO_CONFIGS = sorted(ROOT.glob("recipes/*/bpo/*.yaml"))


def _parser():
    from trl import ModelConfig, TrlParser

    from r4b_trl.bpo import BPOConfig
    from r4b_trl.bpo.recipe import BPOScriptArguments

    return TrlParser((BPOScriptArguments, BPOConfig, ModelConfig)), (BPOScriptArguments, BPOConfig, ModelConfig)


@pytest.mark.parametrize("path", BPO_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bpo_config_parses(path):
    parser, classes = _parser()
    known = {f.name for c in classes for f in dataclasses.fields(c)}
    raw = yaml.safe_load(path.read_text())
    unknown = set(raw) - known
    assert not unknown, f"{path}: unknown keys {unknown}"
    overrides = [] if _has_cuda() else ["--bf16", "false", "--use_cpu", "true"]
    script_args, training_args, model_args = parser.parse_args_and_config(
        args=["--config", str(path), "--output_dir", "/tmp/unused", *overrides])
    assert script_args.dataset_name and model_args.model_name_or_path
    assert training_args.beta > 0, "BPO recipes set the KL coefficient explicitly (the paper's objective has one)"
    assert training_args.force_modes and training_args.num_generations % 2 == 0


def _has_cuda():
    import torch

    return torch.cuda.is_available()


def _run(args, cwd=ROOT, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "recipes/bpo.py", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def _dump_steps(out):
    steps = {}
    for p in Path(out, "rollouts").glob("step_*.jsonl"):
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        steps[int(p.stem.split("_")[1])] = rows
    return steps


def test_recipe_trains_and_resumes(tiny_text_model, tmp_path):
    out = tmp_path / "run"
    base = ["--config", "recipes/tiny/bpo/tiny.yaml", "--model_name_or_path", tiny_text_model, "--output_dir", str(out)]
    # A run that dies after step 3 leaves: checkpoint-2, dumps of steps 1-3, probes at steps 0 and 2.
    _run(base + ["--max_steps", "3"])
    assert sorted(_dump_steps(out)) == [1, 2, 3]
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()
    first = _dump_steps(out)
    # Restart with the same command and a later max_steps: it auto-resumes from checkpoint-2.
    res = _run(base + ["--max_steps", "4"])
    assert "Resuming from the last checkpoint" in res.stderr + res.stdout
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    logged = [h["step"] for h in state["log_history"] if "loss" in h]
    assert logged == [1, 2, 3, 4]  # no duplicated or lost steps in the training log
    steps = _dump_steps(out)
    assert sorted(steps) == [1, 2, 3, 4]
    assert all(len(rows) == 4 for rows in steps.values())
    assert steps[1] == first[1] and steps[2] == first[2]  # steps before the checkpoint are kept as they were
    probes = [json.loads(line) for line in (out / "probe_history.jsonl").read_text().splitlines()]
    assert [p["step"] for p in probes] == [0, 2, 4]
    assert all(0.0 <= p["think_rate"] <= 1.0 and set(p["groups"]) <= {"easy", "hard"} for p in probes)
    # The saved model keeps its own chat template (BPO's prefix hook is not saved).
    saved = json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") or \
        (out / "chat_template.jinja").read_text()
    assert "r4b_prefix" not in saved
    card = (out / "README.md").read_text()
    assert "bpo" in card.lower() and "<think>" in card  # the r4b-trl model card, with the modes


def test_bad_data_fails_before_model_load(tiny_text_model, tmp_path, monkeypatch):
    from r4b_trl.bpo import recipe
    from r4b_trl.data.io import DataError

    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n" + json.dumps({"question": "2+2?"}) + "\n")
    parser, _ = _parser()
    script_args, training_args, model_args = parser.parse_args_and_config(args=[
        "--config", "recipes/tiny/bpo/tiny.yaml", "--model_name_or_path", tiny_text_model, "--output_dir",
        str(tmp_path / "o"), "--dataset_name", str(data), "--id_column", "question", "--group_column", "question"])
    import r4b_trl.models

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the data was validated")

    monkeypatch.setattr(r4b_trl.models, "load_model", no_load)
    with pytest.raises(DataError, match="row 2 \\(id '2\\+2\\?'\\): the answer column 'answer' is empty"):
        recipe.main(script_args, training_args, model_args)


def test_recipe_lora_preset(tiny_text_model, tmp_path):
    out = tmp_path / "lora"
    _run(["--config", "recipes/tiny/bpo/tiny.yaml", "--model_name_or_path", tiny_text_model, "--output_dir", str(out),
          "--max_steps", "2", "--peft_preset", "lora_lm", "--probe_steps", "0", "--save_strategy", "no"])
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA"
    for step, rows in _dump_steps(out).items():
        modes = [r["forced_mode"] for r in rows]
        assert modes.count("thinking") == modes.count("non_thinking") == 2


def test_bpo_configs_start_from_the_shipped_annealing_outputs():
    """Each GPU BPO config that starts from a local path starts from what a shipped SFT config writes there (its
    output_dir, or output_dir/merged for a LoRA run)."""
    produced = set()
    for p in ROOT.glob("recipes/*/sft/*.yaml"):
        cfg = yaml.safe_load(p.read_text())
        produced.add(cfg["output_dir"])
        if cfg.get("use_peft") or cfg.get("peft_preset"):
            produced.add(cfg["output_dir"].rstrip("/") + "/merged")
    for p in BPO_CONFIGS:
        if "/tiny/" in str(p) or "/demo/" in str(p):
            continue
        start = yaml.safe_load(p.read_text())["model_name_or_path"]
        if start.startswith("outputs/"):
            assert start in produced, f"{p}: {start} is not written by any shipped SFT config"


def test_probe_subset_is_balanced_across_groups():
    from datasets import Dataset

    from r4b_trl.bpo.recipe import balanced_subset

    ds = Dataset.from_list([{"group": g, "i": i} for i, g in enumerate(["easy"] * 5 + ["med"] * 20 + ["hard"] * 20)])
    sub = balanced_subset(ds, "group", 9)
    assert sorted(sub["group"]) == sorted(["easy"] * 3 + ["med"] * 3 + ["hard"] * 3)
    assert len(balanced_subset(ds, "group", 40)) == 40 and balanced_subset(ds, "group", 40)["group"].count("easy") == 5
    assert balanced_subset(ds, None, 4)["i"] == [0, 1, 2, 3]
