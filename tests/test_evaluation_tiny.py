"""End-to-end evaluation on the tiny offline models: the CLI's outputs, every metric recomputed independently
from generations.jsonl, resume after an interruption, and the vision path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r4b_trl.data.io import read_jsonl
from r4b_trl.evaluation import EvalConfig, EvalError, evaluate, load_backend, parse_config
from r4b_trl.modes import ModePrefixes, parse_response

from eval_recompute import assert_same, recompute_all

ROOT = Path(__file__).resolve().parent.parent
TEXT_BENCH = ROOT / "r4b_trl" / "data" / "samples" / "bench_text_math.jsonl"
ROW_KEYS = {"benchmark", "mode", "item_id", "group", "prompt", "response", "parsed_mode", "answer", "gold", "kind",
            "correct", "unscorable_reason", "num_tokens", "finished"}


# ---------------------------------------------------------------------------------------------------------------

def run_cli(args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "evaluate.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_outputs_and_metrics_recomputed_from_generations(tiny_text_model, tmp_path):
    out = tmp_path / "eval"
    proc = run_cli(["--config", "recipes/tiny/eval/tiny.yaml", "--model", tiny_text_model, "--output_dir", str(out),
                    "--temperature", "1.0", "--max_new_tokens", "8", "--limit", "8", "--batch_size", "5"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "text_math" in proc.stdout and "oracle gap" in proc.stdout
    for name in ("generations.jsonl", "results.json", "report.md", "pareto.png"):
        assert (out / name).is_file(), name

    rows = read_jsonl(out / "generations.jsonl")
    source = [json.loads(line) for line in TEXT_BENCH.read_text().splitlines()][:8]
    assert len(rows) == 8 * 3
    assert {(r["mode"], r["item_id"]) for r in rows} == {(m, s["id"]) for m in ("auto", "thinking", "non_thinking")
                                                         for s in source}
    prefixes = ModePrefixes()
    gold = {s["id"]: s for s in source}
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["benchmark"] == "text_math" and r["group"] == gold[r["item_id"]]["difficulty"]
        assert r["gold"] == gold[r["item_id"]]["answer"] and r["kind"] == "math"
        assert r["prompt"].endswith(prefixes.prefix(r["mode"]))
        assert r["response"].startswith(prefixes.prefix(r["mode"]))
        parsed = parse_response(r["response"])
        assert (r["parsed_mode"], r["answer"]) == (parsed.mode, parsed.answer)
        assert 1 <= r["num_tokens"] <= 8 and isinstance(r["finished"], bool)
        assert r["correct"] in (True, False) and r["unscorable_reason"] is None

    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["max_new_tokens"] == 8 and results["model"] == tiny_text_model
    assert results["benchmark_info"]["text_math"]["num_items"] == 8
    bench = results["benchmarks"]["text_math"]
    assert set(bench) == {"auto", "thinking", "non_thinking"}
    gate_rows = read_jsonl(out / "auto_gate.jsonl")
    expected = recompute_all(rows, gate_rows)
    for mode, met in expected.items():
        assert_same(met, bench[mode], f"text_math.{mode}")
    assert set(bench["auto"]["groups"]) == {"easy", "hard"}
    for group in ("easy", "hard"):
        group_rows = [r for r in rows if gold[r["item_id"]]["difficulty"] == group]
        for mode, met in recompute_all(group_rows, gate_rows).items():
            assert_same(met, bench[mode]["groups"][group], f"text_math.{mode}.{group}")

    # The gate, recomputed with a plain forward of the model on each auto prompt (one prompt at a time, no padding):
    # P("\n") / (P("\n") + P("\n\n")) for the next token; the tiny BPE tokenizer has both as single tokens.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_text_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_text_model, dtype=torch.float32).eval()
    nl, nlnl = tok.encode("\n", add_special_tokens=False), tok.encode("\n\n", add_special_tokens=False)
    assert len(nl) == len(nlnl) == 1
    by_item = {r["item_id"]: r for r in gate_rows}
    assert set(by_item) == {s["id"] for s in source}
    for r in rows:
        if r["mode"] != "auto":
            continue
        ids = torch.tensor([tok.encode(r["prompt"], add_special_tokens=False)])
        with torch.no_grad():
            p = torch.softmax(model(ids).logits[0, -1].double(), -1)
        g = by_item[r["item_id"]]
        assert g["gate"] == pytest.approx(float(p[nl[0]] / (p[nl[0]] + p[nlnl[0]])), abs=1e-5)
        assert g["other_mass"] == pytest.approx(float(1 - p[nl[0]] - p[nlnl[0]]), abs=1e-5)
        assert g["gate_note"].startswith("exact") and g["temperature"] == 1.0
        assert g["sampled_mode"] in ("thinking", "non_thinking", "truncated") and 1 <= g["sampled_tokens"] <= 8
    assert "gate" in proc.stdout and "sampled (T=1.0) think" in proc.stdout

    report = (out / "report.md").read_text()
    assert "## text_math" in report and "By difficulty:" in report and "Auto-mode gate" in report
    table = [line for line in report.splitlines() if line.startswith(("| auto |", "| thinking |", "| non_thinking |"))]
    assert len(table) == 3
    from PIL import Image

    with Image.open(out / "pareto.png") as im:
        assert im.format == "PNG" and im.size[0] > 300


@pytest.fixture(scope="module")
def text_backend(tiny_text_model):
    cfg = EvalConfig(model=tiny_text_model, batch_size=4)
    return load_backend(cfg)


class Interrupting:
    """Wraps a backend; raises KeyboardInterrupt on the n-th generate call (a user pressing Ctrl-C)."""

    def __init__(self, backend, fail_on):
        self.backend, self.fail_on, self.calls = backend, fail_on, 0

    def __getattr__(self, name):  # the wrapped backend's model (the gate pass reads it)
        return getattr(self.backend, name)

    def generate(self, *a, **k):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        return self.backend.generate(*a, **k)


def tiny_config(model, out, limit=6, **kw):
    return EvalConfig(model=model, output_dir=str(out), batch_size=4, max_new_tokens=6, limit=limit,
                      benchmarks=[{"name": "text_math", "path": str(TEXT_BENCH), "id_column": "id",
                                   "kind_column": "kind", "group_column": "difficulty"}], **kw)


def test_resume_after_interruption_loses_and_duplicates_nothing(tiny_text_model, text_backend, tmp_path):
    backend, pc, vision = text_backend
    fresh = evaluate(tiny_config(tiny_text_model, tmp_path / "fresh"), backend=backend, processing_class=pc,
                     is_vision=vision)

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        evaluate(tiny_config(tiny_text_model, out), backend=Interrupting(backend, fail_on=3), processing_class=pc,
                 is_vision=vision)
    partial = read_jsonl(out / "generations.jsonl")
    assert len(partial) == 6  # auto: 4 + 2 written, the third batch never ran
    with open(out / "generations.jsonl", "a") as f:
        f.write('{"benchmark": "text_math", "mode": "thinking", "item_id": "math-0')  # killed mid-line
    counting = Interrupting(backend, fail_on=0)
    resumed = evaluate(tiny_config(tiny_text_model, out), backend=counting, processing_class=pc, is_vision=vision)
    assert counting.calls == 6  # thinking 2 + non_thinking 2 batches + the sampled auto pass 2; auto was done
    rows = read_jsonl(out / "generations.jsonl")
    keys = [(r["mode"], r["item_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 18
    assert resumed["benchmarks"] == fresh["benchmarks"]
    fresh_rows = {(r["mode"], r["item_id"]): r for r in read_jsonl(tmp_path / "fresh" / "generations.jsonl")}
    assert all(fresh_rows[(r["mode"], r["item_id"])]["response"] == r["response"] for r in rows)  # greedy

    # Rerun with a larger limit: only the new items are generated, nothing is duplicated.
    counting = Interrupting(backend, fail_on=0)
    bigger = evaluate(tiny_config(tiny_text_model, out, limit=9), backend=counting, processing_class=pc,
                      is_vision=vision)
    assert counting.calls == 4  # 3 new items per mode, one batch each, and one for the sampled auto pass
    keys = [(r["mode"], r["item_id"]) for r in read_jsonl(out / "generations.jsonl")]
    assert len(keys) == len(set(keys)) == 27
    assert bigger["benchmarks"]["text_math"]["auto"]["n"] == 9
    # ... and a smaller limit reports on the configured items only.
    smaller = evaluate(tiny_config(tiny_text_model, out, limit=6), backend=counting, processing_class=pc,
                       is_vision=vision)
    assert smaller["benchmarks"] == fresh["benchmarks"] and counting.calls == 4
    gate_keys = [r["item_id"] for r in read_jsonl(out / "auto_gate.jsonl")]
    assert len(gate_keys) == len(set(gate_keys)) == 9


def test_text_model_refuses_image_benchmark(tiny_text_model, text_backend, tmp_path):
    backend, pc, vision = text_backend
    cfg = tiny_config(tiny_text_model, tmp_path / "o")
    cfg.benchmarks = [{"name": "image", "path": str(ROOT / "r4b_trl/data/samples/bench_image.jsonl"),
                       "image_column": "image", "id_column": "id", "kind_column": "kind"}]
    with pytest.raises(EvalError, match=r"text-only model but benchmark\(s\) \['image'\]"):
        evaluate(cfg, backend=backend, processing_class=pc, is_vision=vision)


def test_vision_config_end_to_end(tiny_vision_model, tmp_path):
    cfg = parse_config(["--config", str(ROOT / "recipes/tiny/eval/tiny_vision.yaml"), "--model", tiny_vision_model,
                        "--output_dir", str(tmp_path / "v"), "--limit", "3", "--max_new_tokens", "4"])
    cwd = os.getcwd()
    os.chdir(ROOT)  # the config's benchmark paths are relative to the repository root
    try:
        res = evaluate(cfg)
    finally:
        os.chdir(cwd)
    assert set(res["benchmarks"]) == {"image", "text_math"}
    rows = read_jsonl(tmp_path / "v" / "generations.jsonl")
    assert len(rows) == (3 + 3) * 3
    img_rows = [r for r in rows if r["benchmark"] == "image"]
    assert all("<|image_pad|>" in r["prompt"] and r["num_tokens"] <= 4 for r in img_rows)
    groups = res["benchmarks"]["image"]["auto"]["groups"]
    assert (groups["counting"]["n"], groups["choice"]["n"]) == (2, 1)
    assert res["benchmarks"]["image"]["auto"]["n_unscorable"] == 0


def test_missing_tiny_model_path_says_how_to_build_it(tmp_path, capsys):
    from r4b_trl.evaluation import main

    (tmp_path / "empty.yaml").write_text("model: .tiny_models/nope-text\n")
    with pytest.raises(SystemExit) as e:
        main(["--config", str(tmp_path / "empty.yaml"), "--output_dir", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "No benchmarks configured" in capsys.readouterr().err
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with pytest.raises(SystemExit) as e:
            main(["--config", "recipes/tiny/eval/tiny.yaml", "--model", ".tiny_models/nope-text",
                  "--output_dir", str(tmp_path / "o")])
    finally:
        os.chdir(cwd)
    assert e.value.code == 2
    assert "python -m r4b_trl.tiny_models --out .tiny_models/nope-text --kind text" in capsys.readouterr().err
