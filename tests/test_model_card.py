"""Model cards render offline: valid front matter, every mode's instructions, results tables that match results."""

import re
import shutil

import pytest
import yaml

from r4b_trl.model_card import (
    card_from_training,
    render_model_card,
    training_summary,
    use_r4b_model_card,
    write_model_card,
)
from r4b_trl.modes import ModePrefixes


def metrics(n, unscorable, acc, think, mean, median, trunc, **extra):
    return {"n": n, "n_scored": n - unscorable, "n_unscorable": unscorable, "unscorable_reasons": {},
            "n_correct": None, "accuracy": acc, "n_generated": n, "think_rate": think, "truncation_rate": trunc,
            "mean_tokens": mean, "median_tokens": median, **extra}


RESULTS = {
    "model": "me/r4b-tiny",
    "settings": {"backend": "vllm", "max_new_tokens": 8192, "temperature": 0.0, "top_p": 1.0,
                 "modes": ["auto", "thinking", "non_thinking"]},
    "benchmark_info": {"mathvista": {"path": "AI4Math/MathVista", "num_items": 1000, "group_column": "skill"}},
    "benchmarks": {"mathvista": {
        "auto": metrics(1000, 3, 0.7802, 0.322, 996.25, 812.0, 0.011, accuracy_vs_thinking=0.9789,
                        tokens_vs_thinking=0.8767, oracle_gap=0.0412, oracle_n=997,
                        groups={"geometry": metrics(200, 0, 0.71, 0.8, 1500.0, 1400.0, 0.02,
                                                    accuracy_vs_thinking=0.95, tokens_vs_thinking=0.9,
                                                    oracle_gap=0.05, oracle_n=200)}),
        "thinking": metrics(1000, 3, 0.797, 0.99, 1136.4, 1001.0, 0.03,
                            groups={"geometry": metrics(200, 0, 0.75, 1.0, 1666.6, 1500.0, 0.04)}),
        "non_thinking": metrics(1000, 3, 0.715, 0.0, 270.0, 201.5, 0.0,
                                groups={"geometry": metrics(200, 0, 0.6, 0.0, 300.0, 280.0, 0.0)}),
    }},
}


def split_card(card):
    assert card.startswith("---\n")
    _, front, body = card.split("---\n", 2)
    return yaml.safe_load(front), body


def python_blocks(body):
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def table_rows(body, first_cell):
    """Rows of the results tables (11 columns, 12 with a group) whose first cell is ``first_cell``."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in body.splitlines()
            if line.startswith(f"| {first_cell} |")]
    return [r for r in rows if len(r) in (11, 12)]


def test_card_front_matter_modes_and_results(tmp_path):
    card = render_model_card("me/r4b-tiny", "Qwen/Qwen2.5-VL-3B-Instruct", "bpo", dataset=["me/bpo-data", "local.jsonl"],
                             is_vision=True, results=RESULTS, pareto_path=str(tmp_path / "pareto.png"),
                             training_args={"learning_rate": 1e-6, "num_generations": 8})
    front, body = split_card(card)
    assert front["library_name"] == "transformers" and front["pipeline_tag"] == "image-text-to-text"
    assert front["base_model"] == "Qwen/Qwen2.5-VL-3B-Instruct" and front["license"] == "apache-2.0"
    assert front["tags"] == ["r4b-trl", "auto-thinking", "trl", "bpo"]
    assert front["datasets"] == ["me/bpo-data"]  # the local file is named in the body, not claimed as a Hub dataset
    assert "`local.jsonl`" in body and "Bi-mode Policy Optimization" in body
    # every mode, with transformers (R-4B-style template by default) and vLLM
    assert 'thinking_mode=mode' in body and 'for mode in ("auto", "long", "short")' in body
    for r4b_name in ("auto", "long", "short"):
        assert f'extra_body={{"chat_template_kwargs": {{"thinking_mode": "{r4b_name}"}}}}' in body
    assert "vllm serve me/r4b-tiny" in body and "AutoModelForImageTextToText" in body
    assert "python -m r4b_trl.chat --model me/r4b-tiny --mode auto --image question.png" in body
    for block in python_blocks(body):
        compile(block, "card", "exec")
    # results: one row per mode with the numbers of results.json; group table; Pareto plot
    (auto,) = table_rows(body, "auto")
    assert auto == ["auto", "1000", "3", "78.0", "32.2", "996.2", "812.0", "1.1", "0.98", "0.88", "4.1"]
    (nt,) = table_rows(body, "non_thinking")
    assert nt == ["non_thinking", "1000", "3", "71.5", "0.0", "270.0", "201.5", "0.0", "–", "–", "–"]
    (thinking,) = table_rows(body, "thinking")
    assert thinking[3] == "79.7" and thinking[5] == "1136.4"
    (geo_auto,) = [r for r in table_rows(body, "geometry") if r[1] == "auto"]
    assert geo_auto[:5] == ["geometry", "auto", "200", "0", "71.0"]
    assert "### mathvista (1000 items)" in body and "By skill:" in body
    assert "![Accuracy vs output tokens per mode](pareto.png)" in body
    assert "temperature 0.0 (greedy)" in body


def test_card_for_text_models_and_other_templates():
    card = render_model_card("org/qwen3-auto", "Qwen/Qwen3-1.7B", "sft", "org/anneal", is_vision=False,
                             template_style="qwen3")
    front, body = split_card(card)
    assert front["pipeline_tag"] == "text-generation" and "sft" in front["tags"]
    assert "## Evaluation" not in body and "AutoModelForCausalLM" in body
    assert 'chat(enable_thinking=False)' in body and "chat(enable_thinking=True) + '<think>\\n'" in body
    assert '{"chat_template_kwargs": {"enable_thinking": False}}' in body
    assert '{"chat_template_kwargs": {"enable_thinking": True}}' in body
    assert '"thinking_mode": "long"' in body and "--chat-template" in body  # forcing thinking over the server
    for block in python_blocks(body):
        compile(block, "card", "exec")

    p = ModePrefixes(non_thinking="<think>\n</think>\n\n")
    card = render_model_card("m", None, "sft", None, False, prefixes=p, template_style="plain")
    front, body = split_card(card)
    assert "base_model" not in front and "datasets" not in front
    assert "base + '<think>\\n</think>\\n\\n'" in body and "`<think>\\n</think>\\n\\n`" in body
    for block in python_blocks(body):
        compile(block, "card", "exec")
    with pytest.raises(ValueError, match="stage"):
        render_model_card("m", None, "dpo")


def test_write_model_card_copies_the_plot(tmp_path):
    import json

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "pareto.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "eval" / "results.json").write_text(json.dumps(RESULTS))
    path = write_model_card(tmp_path / "model", "me/m", "Qwen/Qwen3-1.7B", "bpo", is_vision=False,
                            results=str(tmp_path / "eval" / "results.json"),
                            pareto_path=str(tmp_path / "eval" / "pareto.png"))
    assert path == tmp_path / "model" / "README.md"
    assert (tmp_path / "model" / "pareto.png").read_bytes() == b"\x89PNG fake"
    assert "| auto | 1000 | 3 | 78.0 |" in path.read_text()


def test_card_from_training_args(tiny_text_model, tiny_vision_model, tmp_path):
    from trl import ModelConfig, ScriptArguments, SFTConfig

    out = tmp_path / "sft-out"
    shutil.copytree(tiny_text_model, out)
    args = SFTConfig(output_dir=str(out), learning_rate=2e-5, num_train_epochs=2, hub_model_id="me/tiny-sft",
                     report_to=[], bf16=False, use_cpu=True)
    path = card_from_training(out, ScriptArguments(dataset_name="me/anneal-mix"), args,
                              ModelConfig(model_name_or_path="Qwen/Qwen3-0.6B"), stage="sft")
    front, body = split_card(path.read_text())
    assert front["base_model"] == "Qwen/Qwen3-0.6B" and front["datasets"] == ["me/anneal-mix"]
    assert front["pipeline_tag"] == "text-generation" and front["tags"][-1] == "sft"
    assert "# tiny-sft" in body and "| learning_rate | `2e-05` |" in body and "| num_train_epochs | `2` |" in body
    assert "enable_thinking" in body  # the tiny text model ships Qwen3's template

    vout = tmp_path / "bpo-out"
    shutil.copytree(tiny_vision_model, vout)
    path = card_from_training(vout, None, None, None, stage="bpo")
    front, body = split_card(path.read_text())
    assert front["pipeline_tag"] == "image-text-to-text" and "base_model" not in front
    assert '"thinking_mode": "short"' in body  # r4b-trl's default template has thinking_mode


def test_training_summary_picks_card_worthy_settings():
    s = training_summary({"learning_rate": 1e-6, "max_steps": -1, "use_peft": False, "lora_r": 16,
                          "irrelevant": 1}, {"num_generations": 8, "learning_rate": 5.0})
    assert s == {"learning_rate": 1e-6, "num_generations": 8}
    assert training_summary({"use_peft": True, "lora_r": 16}) == {"use_peft": True, "lora_r": 16}


def test_push_to_hub_uses_the_r4b_card(tiny_text_model, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_text_model, out)

    class Args:
        output_dir = str(out)
        hub_model_id = "me/bpo-run"
        learning_rate = 1e-6

    class FakeTrainer:  # the two things TRL's push_to_hub relies on here
        args = Args()

        def is_world_process_zero(self):
            return True

        def create_model_card(self, **kw):
            raise AssertionError("TRL's generic card must be replaced")

    trainer = FakeTrainer()
    use_r4b_model_card(trainer, stage="bpo")
    trainer.create_model_card(model_name="bpo-run", dataset_name=None, tags=["extra-tag"])
    front, body = split_card((out / "README.md").read_text())
    assert front["tags"] == ["r4b-trl", "auto-thinking", "trl", "bpo", "extra-tag"]
    assert "# bpo-run" in body and "| learning_rate | `1e-06` |" in body


def _no_local_paths(card, *paths):
    for p in paths:
        assert str(p) not in card, f"local path {p} in the card"
    assert "/tmp/" not in card


@pytest.mark.parametrize("source", ["readme", "config", "adapter", "none"])
def test_base_model_is_a_hub_id_or_absent(tiny_text_model, tmp_path, source):
    """A run started from a local checkpoint names the Hub id that checkpoint stems from, or no base model; the
    card names no local folder (not in the front matter, not in the prose, not in the settings table)."""
    import json

    from trl import ModelConfig, SFTConfig

    base = tmp_path / "local" / "annealed"
    shutil.copytree(tiny_text_model, base)
    expected = None
    if source == "readme":  # e.g. the card r4b-trl wrote for the SFT stage, or a Hub download's card
        (base / "README.md").write_text("---\nlicense: apache-2.0\nbase_model:\n- Qwen/Qwen3-0.6B\n---\n# x\n")
        expected = "Qwen/Qwen3-0.6B"
    elif source == "config":
        cfg = json.loads((base / "config.json").read_text())
        cfg["_name_or_path"] = "Qwen/Qwen3-1.7B"
        (base / "config.json").write_text(json.dumps(cfg))
        expected = "Qwen/Qwen3-1.7B"
    elif source == "adapter":
        (base / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen3-4B"}))
        expected = "Qwen/Qwen3-4B"
    else:  # a card that names a local path itself is no help either
        (base / "README.md").write_text(f"---\nbase_model: {base.parent}/sft\n---\n")
    out = tmp_path / "run" / "bpo-out"
    shutil.copytree(tiny_text_model, out)
    data = tmp_path / "local" / "mix.jsonl"
    data.write_text("{}\n")
    args = SFTConfig(output_dir=str(out), report_to=[], bf16=False, use_cpu=True)
    path = card_from_training(out, type("S", (), {"dataset_name": str(data)})(), args,
                              ModelConfig(model_name_or_path=str(base)), stage="bpo")
    card = path.read_text()
    front, body = split_card(card)
    assert front.get("base_model") == expected
    if expected:
        assert f"starting from [{expected}](https://huggingface.co/{expected})." in body
    else:
        assert "starting from" not in body
    assert "`mix.jsonl` (local)" in body and "datasets" not in front
    _no_local_paths(card, base, data, tmp_path)


def test_render_drops_a_local_base_model(tmp_path):
    from r4b_trl.model_card import base_model_id

    card = render_model_card("me/m", str(tmp_path / "nowhere"), "sft", dataset=str(tmp_path / "d.jsonl"),
                             is_vision=False, training_args={"dataset_mixture": [{"path": str(tmp_path / "a.jsonl"),
                                                                                 "weight": 2}]})
    front, body = split_card(card)
    assert "base_model" not in front and '"path": "a.jsonl"' in body
    _no_local_paths(card, tmp_path)
    assert base_model_id("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B" and base_model_id(None) is None
    assert base_model_id("./outputs/sft") is None and base_model_id("/abs/path") is None
