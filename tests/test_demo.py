"""The demo pipeline (smoke budgets): every stage through the real entry points, the report, caching."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _demo(out, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "r4b_trl.demo", "--config", "recipes/demo/smoke.yaml",
                          "--output_dir", str(out), *extra], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_smoke_pipeline_report_and_cache(tmp_path):
    out = tmp_path / "demo"
    _demo(out)
    report = json.loads((out / "report.json").read_text())
    for model in ("annealed", "bpo", "grpo", "bpo_token_margin"):
        for mode in ("auto", "thinking", "non_thinking"):
            for level in ("easy", "hard", "all"):
                cell = report["models"][model][mode][level]
                assert set(cell) >= {"accuracy", "think_rate", "mean_tokens"}
                if mode == "auto":  # the gate and the sampled think-rate sit next to the greedy think-rate
                    assert 0 <= cell["gate"] <= 1 and 0 <= cell["sampled_think_rate"] <= 1
    stages = ["task", "model", "base", "curate", "anneal", "eval_annealed", "bpo", "grpo", "eval_bpo", "eval_grpo",
              "bpo_token_margin", "eval_bpo_token_margin"]
    assert list(report["stages"]) == stages and all(v["seconds"] >= 0 for v in report["stages"].values())
    assert 0.0 <= report["curation"]["thinking_share"] <= 1.0
    assert {t["name"] for t in report["targets"]} >= {"thinking_atrophy", "wall_time", "grpo:single_mode",
                                                     "bpo_token_margin:gate", "bpo_token_margin:sampled_think_rate"}
    for png in ("gate.png", "think_rate.png", "accuracy_vs_tokens.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    md = (out / "report.md").read_text()
    assert "gate / T=1 think % / greedy think %" in md and "Recommended variant: **bpo_token_margin**" in md
    # The recommended variant: its key in models, its model folder; its gate measured independently (plain
    # transformers forward, no r4b_trl code) equals the report's.
    rec = report["recommended"]
    assert rec["model"] == "bpo_token_margin" and rec["model"] in report["models"]
    assert (out / rec["folder"] / "config.json").exists() and (out / "task" / "test.jsonl").exists()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ablation_gate_check import measure

    independent = measure(str(out / rec["folder"]), str(out / "task" / "test.jsonl"), samples=1)
    for level in ("easy", "hard"):
        assert independent[level]["gate"] == pytest.approx(report["models"][rec["model"]]["auto"][level]["gate"],
                                                           abs=1e-4)
        assert rec["gate"][level] == report["models"][rec["model"]]["auto"][level]["gate"]
    probe = report["probe"]["bpo_token_margin"]
    assert [r["step"] for r in probe] == [0, 1, 2] and all(r["gate"] is not None for r in probe)
    # The stages really ran the project's entry points on their rendered configs.
    assert json.loads((out / "stages" / "bpo.json").read_text())["cmd"][1] == "recipes/bpo.py"
    assert (out / "bpo" / "probe_history.jsonl").exists() and (out / "grpo" / "rollouts").is_dir()
    rendered = (out / "configs" / "recipes__demo__bpo.yaml").read_text()
    assert "{out}" not in rendered and str(out) in rendered
    # The GRPO baseline is free mode choice: its rollouts carry no forced mode.
    grpo_rows = [json.loads(line) for p in (out / "grpo" / "rollouts").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert {r["forced_mode"] for r in grpo_rows} == {"auto"}
    # A second run reuses every finished stage; --redo runs the named one again.
    stdout = _demo(out)
    assert stdout.count("cached") == len(stages)
    stdout = _demo(out, "--redo", "eval_bpo")
    assert stdout.count("cached") == len(stages) - 1


def test_wall_time_counts_overlapping_pairs_once():
    from r4b_trl.demo import Stage, wall_seconds

    stages = [Stage("a", []), Stage("b", [], parallel_with="c"), Stage("c", []), Stage("d", [])]
    assert wall_seconds(stages, {"a": 10, "b": 30, "c": 20, "d": 5}) == 45
    assert wall_seconds(stages, {"a": 10, "c": 20}) == 30  # cached/missing stages are skipped


def test_ablation_summary_recomputed_by_hand(tmp_path):
    """benchmarks/ablation.py's report from hand-made run folders: mean / min / max across seeds per step, the
    final table at the last step every seed reached, the recommendation, and the plots."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ablation

    gates = {  # variant -> seed -> step -> (gate hard, gate easy)
        "bpo": {0: {0: (0.45, 0.22), 20: (0.46, 0.21)}, 1: {0: (0.45, 0.22), 20: (0.40, 0.30)}},
        "bpo_token_margin": {0: {0: (0.45, 0.22), 20: (0.95, 0.05), 40: (0.99, 0.01)},
                             1: {0: (0.45, 0.22), 20: (0.91, 0.08)}},
    }
    for v, seeds in gates.items():
        for s, steps in seeds.items():
            d = ablation.run_dir(tmp_path, v, s)
            (d / "checkpoint-20").mkdir(parents=True)
            rows = [{"step": st, "accuracy": 0.5, "mean_tokens": 9.0, "groups": {
                "hard": {"gate": h, "sampled_think_rate": h, "think_rate": float(h > 0.5), "accuracy": h,
                         "mean_tokens": 10.0},
                "easy": {"gate": e, "sampled_think_rate": e, "think_rate": float(e > 0.5), "accuracy": 1.0,
                         "mean_tokens": 4.0}}} for st, (h, e) in steps.items()]
            (d / "probe_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (d / "checkpoint-20" / "trainer_state.json").write_text(json.dumps({"log_history": [
                {"step": 10, "bpo/thinking/accuracy": 0.9 + 0.05 * s, "bpo/thinking/completion_length": 12.0}]}))
            (d / ablation.DONE).write_text(json.dumps({"seconds": 1.0, "cmd": []}))
    ns = type("A", (), {"variants": ["bpo", "bpo_token_margin"], "seeds": [0, 1], "steps": 40, "probe_steps": 20,
                        "probe_size": 150, "machine": "test"})()
    summary = ablation.report(tmp_path, ns)
    c = summary["variants"]["bpo"]["curves"]["gate/hard"][20]
    assert (c["mean"], c["min"], c["max"], c["n"]) == (pytest.approx(0.43), 0.40, 0.46, 2)
    assert summary["variants"]["bpo"]["curves"]["rollout_accuracy/thinking"][10]["mean"] == pytest.approx(0.925)
    final = summary["final"]
    assert final["bpo"]["step"] == 20 and final["bpo_token_margin"]["step"] == 20  # seed 1 stopped at 20
    assert final["bpo_token_margin"]["gate/easy"]["max"] == 0.08
    rec = summary["recommended"]
    assert rec["variant"] == "bpo_token_margin" and rec["meets_gate_target"] is True
    assert rec["worst_seed_separation"] == pytest.approx(0.91 - 0.08)
    for png in summary["plots"]:
        assert (tmp_path / "ablations" / png).read_bytes()[:4] == b"\x89PNG"
    assert "| bpo_token_margin |" in (tmp_path / "ablations" / "summary.md").read_text()
