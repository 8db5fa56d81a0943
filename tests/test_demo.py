"""The demo pipeline (smoke budgets): every stage through the real entry points, the report, caching."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
    for model in ("annealed", "bpo", "grpo"):
        for mode in ("auto", "thinking", "non_thinking"):
            for level in ("easy", "hard", "all"):
                cell = report["models"][model][mode][level]
                assert set(cell) >= {"accuracy", "think_rate", "mean_tokens"}
    stages = ["task", "model", "base", "curate", "anneal", "eval_annealed", "bpo", "grpo", "eval_bpo", "eval_grpo"]
    assert list(report["stages"]) == stages and all(v["seconds"] >= 0 for v in report["stages"].values())
    assert 0.0 <= report["curation"]["thinking_share"] <= 1.0
    assert {t["name"] for t in report["targets"]} >= {"thinking_atrophy", "wall_time", "grpo:single_mode"}
    assert (out / "report.md").exists() and (out / "think_rate.png").exists() and (out / "accuracy_vs_tokens.png").exists()
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
