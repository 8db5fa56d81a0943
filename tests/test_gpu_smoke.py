"""scripts/gpu_smoke.sh (syntax, and a dry run of its orchestration with a stub `python`) and
scripts/smoke_report.py (step times from trainer_state.json, forced-mode balance of the rollout dump)."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scripts" / "gpu_smoke.sh"
REPORT = ROOT / "scripts" / "smoke_report.py"


def _rows(groups):
    """groups: {prompt_id: [mode, ...]} -> jsonl text."""
    return "".join(json.dumps({"prompt_id": pid, "forced_mode": m, "completion": "x"}) + "\n"
                   for pid, modes in groups.items() for m in modes)


def _run_dir(tmp_path, name, rollouts, state=None, in_checkpoint=True):
    d = tmp_path / name
    (d / "rollouts").mkdir(parents=True)
    for step, groups in rollouts.items():
        (d / "rollouts" / f"step_{step}.jsonl").write_text(_rows(groups))
    if state is not None:
        target = d / "checkpoint-5" if in_checkpoint else d
        target.mkdir(exist_ok=True)
        (target / "trainer_state.json").write_text(json.dumps(state))
    return d


STATE = {"global_step": 5, "log_history": [
    {"step": i, "loss": 0.1, "step_time": t} for i, t in zip(range(1, 6), [9.0, 1.0, 1.2, 0.8, 1.1])
] + [{"step": 5, "train_runtime": 13.1}]}
BALANCED = {1: {0: ["thinking", "thinking", "non_thinking", "non_thinking"], 1: ["long", "short"]},
            2: {"p7": ["thinking", "non_thinking"]}}


def _load_report_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke_report", REPORT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


smoke_report = _load_report_module()


class _Result:
    def __init__(self, returncode, stdout):
        self.returncode, self.stdout = returncode, stdout


@pytest.fixture
def _report(capsys):
    """Run scripts/smoke_report.py's main() in-process (its CLI is exercised by the dry run below)."""

    def run(*args):
        rc = smoke_report.main([str(a) for a in args])
        return _Result(rc, capsys.readouterr().out)

    return run


def test_smoke_script_syntax():
    subprocess.run(["bash", "-n", str(SMOKE)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-S", "warning", str(SMOKE)], check=True)


def test_report_balanced_run(_report, tmp_path):
    d = _run_dir(tmp_path, "bpo_vllm_colocate", BALANCED, STATE)
    out_json = tmp_path / "summary.json"
    proc = _report(d, "--wall", f"{d}=42.5", "--expect-steps", "5", "--json", out_json)
    assert proc.returncode == 0, proc.stdout
    assert "ok: every rollout group is balanced" in proc.stdout
    assert "1:9.00, 2:1.00, 3:1.20, 4:0.80, 5:1.10" in proc.stdout
    summary = json.loads(out_json.read_text())
    (run,) = summary["runs"]
    assert run["first"] == 9.0 and run["median_rest"] == pytest.approx(1.05)
    assert run["wall_s"] == 42.5 and run["global_step"] == 5
    assert run["rollouts"] == {"files": 2, "rows": 8, "groups": 3, "modes": {"thinking": 4, "non_thinking": 4}}


def test_report_prefers_root_state_and_falls_back_to_wall(_report, tmp_path):
    d = _run_dir(tmp_path, "root_state", BALANCED, STATE, in_checkpoint=False)
    assert _report(d).returncode == 0
    d2 = _run_dir(tmp_path, "no_state", BALANCED)
    proc = _report(d2, "--wall", f"{d2}=12.0", "--expect-steps", "5")
    assert proc.returncode == 0, proc.stdout
    assert "wall time only" in proc.stdout


@pytest.mark.parametrize(
    "rollouts, message",
    [
        ({1: {0: ["thinking", "thinking", "non_thinking"]}}, "unbalanced: 2 thinking vs 1 non_thinking"),
        ({1: {0: ["thinking", "thinking"]}}, "unbalanced: 2 thinking vs 0 non_thinking"),
        ({1: {0: ["auto", "thinking", "non_thinking"]}}, "auto rows"),
        ({1: {0: ["pondering", "thinking"]}}, "unknown forced_mode"),
        ({}, "no rollout dump"),
    ],
)
def test_report_flags_bad_dumps(_report, tmp_path, rollouts, message):
    d = _run_dir(tmp_path, "bad", rollouts, STATE)
    proc = _report(d)
    assert proc.returncode == 1
    assert message in proc.stdout


def test_report_flags_missing_fields_and_early_stop(_report, tmp_path):
    d = _run_dir(tmp_path, "fields", {}, {**STATE, "global_step": 3})
    (d / "rollouts" / "step_1.jsonl").write_text(json.dumps({"prompt_id": 0}) + "\n")
    proc = _report(d, "--expect-steps", "5")
    assert proc.returncode == 1
    assert "row without prompt_id / forced_mode" in proc.stdout
    assert "trainer state at step 3, expected 5" in proc.stdout


FAKE_PYTHON = r"""#!/bin/bash
echo "python $*" >> "$STUB_LOG"
case "$1" in
  -) cat > /dev/null; echo "GPU: stub" ;;
  -m) ;;
  recipes/bpo.py)
    out=""; prev=""
    for a in "$@"; do [ "$prev" = "--output_dir" ] && out="$a"; prev="$a"; done
    mkdir -p "$out/rollouts" "$out/checkpoint-5"
    for s in 1 2 3 4 5; do
      printf '{"prompt_id": 0, "forced_mode": "thinking"}\n{"prompt_id": 0, "forced_mode": "non_thinking"}\n' \
        > "$out/rollouts/step_$s.jsonl"
    done
    printf '{"global_step": 5, "log_history": [{"step": 1, "step_time": 2.5}, {"step": 2, "step_time": 0.5}]}' \
      > "$out/checkpoint-5/trainer_state.json"
    ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


def test_smoke_script_dry_run(tmp_path):
    stub = tmp_path / "python"
    stub.write_text(FAKE_PYTHON)
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    out = tmp_path / "smoke"
    env = {**os.environ, "PYTHON": str(stub), "REAL_PYTHON": sys.executable, "STUB_LOG": str(log),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["bash", str(SMOKE), str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    assert f"python -m r4b_trl.tiny_models --out {out}/tiny/text --kind text" in calls
    assert f"python -m r4b_trl.tiny_models --out {out}/tiny/vision --kind vision" in calls
    assert "python -m pytest -q -m gpu tests" in calls
    bpo = [c for c in calls if c.startswith("python recipes/bpo.py")]
    common = (f"python recipes/bpo.py --config recipes/tiny/bpo/tiny.yaml --model_name_or_path {out}/tiny/text "
              "--output_dir {dir} --max_steps 5 --use_cpu false --bf16 true --logging_steps 1 --report_to none")
    assert bpo == [
        common.format(dir=f"{out}/bpo_vllm_colocate") + " --use_vllm true --vllm_mode colocate",
        common.format(dir=f"{out}/bpo_transformers") + " --use_vllm false",
    ]
    assert "ok: every rollout group is balanced" in proc.stdout
    summary = json.loads((out / "smoke_summary.json").read_text())
    assert [Path(r["run"]).name for r in summary["runs"]] == ["bpo_vllm_colocate", "bpo_transformers"]
    assert all(r["wall_s"] is not None and r["rollouts"]["groups"] == 5 for r in summary["runs"])
