#!/usr/bin/env python
"""Summarise BPO smoke runs: step times and the balance of the forced-mode rollout dump.

    python scripts/smoke_report.py OUTPUT_DIR [OUTPUT_DIR ...] [--wall OUTPUT_DIR=SECONDS ...] [--expect-steps 5]

For each run directory:

* **step times** from ``trainer_state.json`` (``<output_dir>/trainer_state.json``, else the newest
  ``checkpoint-*/trainer_state.json``): the ``step_time`` that TRL's GRPO trainer logs per optimizer step
  (``--logging_steps 1`` gives one value per step). The first step includes warm-up (CUDA graphs, vLLM sleep/wake,
  allocator growth), so the summary reports it separately from the median of the rest. Without a trainer state
  the run's wall time (``--wall``) is all there is.
* **rollout dump** ``<output_dir>/rollouts/step_*.jsonl``: one row per rollout with ``prompt_id`` and
  ``forced_mode``. BPO forces half of every group to think and half not to, so within each ``prompt_id`` of each
  file the numbers of ``thinking`` and ``non_thinking`` rows must be equal (mode names go through
  :func:`r4b_trl.modes.resolve_mode`, so ``long`` / ``short`` are accepted too).

Exit status 1 when a run has no rollout dump, an unbalanced group, a row without the two fields, or (with
``--expect-steps``) a trainer state that stopped early.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r4b_trl.modes import Mode, ModeError, resolve_mode  # noqa: E402


def find_trainer_state(output_dir: Path) -> Path | None:
    output_dir = Path(output_dir)
    direct = output_dir / "trainer_state.json"
    if direct.is_file():
        return direct
    checkpoints = [p for p in output_dir.glob("checkpoint-*/trainer_state.json") if p.parent.name[11:].isdigit()]
    if not checkpoints:
        return None
    return max(checkpoints, key=lambda p: int(p.parent.name[11:]))


def step_times(output_dir: Path) -> dict:
    """``{"global_step", "step_times": [(step, seconds)], "first", "median_rest", "source"}`` or ``{}``."""
    path = find_trainer_state(output_dir)
    if path is None:
        return {}
    state = json.loads(path.read_text())
    times = [(e["step"], float(e["step_time"])) for e in state.get("log_history", []) if "step_time" in e]
    rest = [t for _, t in times[1:]]
    return {
        "source": str(path),
        "global_step": state.get("global_step"),
        "step_times": times,
        "first": times[0][1] if times else None,
        "median_rest": statistics.median(rest) if rest else None,
    }


def check_rollouts(output_dir: Path) -> tuple[dict, list[str]]:
    """(summary, problems) for ``<output_dir>/rollouts/step_*.jsonl``."""
    files = sorted(Path(output_dir).glob("rollouts/step_*.jsonl"))
    problems: list[str] = []
    summary = {"files": len(files), "rows": 0, "groups": 0, "modes": Counter()}
    if not files:
        return summary, [f"{output_dir}: no rollout dump (rollouts/step_*.jsonl)"]
    for f in files:
        groups: dict[object, Counter] = defaultdict(Counter)
        for lineno, line in enumerate(f.read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "prompt_id" not in row or "forced_mode" not in row:
                problems.append(f"{f.name}:{lineno}: row without prompt_id / forced_mode")
                continue
            try:
                mode = resolve_mode(row["forced_mode"])
            except ModeError:
                problems.append(f"{f.name}:{lineno}: unknown forced_mode {row['forced_mode']!r}")
                continue
            groups[row["prompt_id"]][mode] += 1
            summary["rows"] += 1
            summary["modes"][mode.value] += 1
        if not groups:
            problems.append(f"{f.name}: empty")
        for pid, counts in groups.items():
            summary["groups"] += 1
            think, no_think = counts[Mode.THINKING], counts[Mode.NON_THINKING]
            if counts[Mode.AUTO]:
                problems.append(f"{f.name}: prompt_id {pid!r} has {counts[Mode.AUTO]} auto rows in a BPO group")
            if think != no_think or think == 0:
                problems.append(f"{f.name}: prompt_id {pid!r} is unbalanced: {think} thinking vs "
                                f"{no_think} non_thinking")
    summary["modes"] = dict(summary["modes"])
    return summary, problems


def report(run_dirs: list[Path], walls: dict[str, float], expect_steps: int | None) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    for d in run_dirs:
        d = Path(d)
        st = step_times(d)
        ro, probs = check_rollouts(d)
        problems += probs
        if expect_steps is not None and st and st.get("global_step") != expect_steps:
            problems.append(f"{d}: trainer state at step {st.get('global_step')}, expected {expect_steps}")
        rows.append({"run": str(d), "wall_s": walls.get(str(d)), **st, "rollouts": ro})
    return rows, problems


def _fmt(x):
    return "-" if x is None else f"{x:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--wall", action="append", default=[], metavar="DIR=SECONDS")
    parser.add_argument("--expect-steps", type=int)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    walls = {}
    for item in args.wall:
        key, _, value = item.rpartition("=")
        walls[str(Path(key))] = float(value)
    rows, problems = report(args.runs, walls, args.expect_steps)
    print(f"{'run':<40} {'steps':>5} {'first s':>8} {'median s':>9} {'wall s':>8} {'groups':>6}  modes")
    for r in rows:
        name = Path(r["run"]).name
        steps = r.get("global_step")
        print(f"{name:<40} {steps if steps is not None else '-':>5} {_fmt(r.get('first')):>8} "
              f"{_fmt(r.get('median_rest')):>9} {_fmt(r.get('wall_s')):>8} {r['rollouts']['groups']:>6}  "
              f"{r['rollouts']['modes']}")
        if r.get("step_times"):
            print("    step_time per step: " + ", ".join(f"{s}:{t:.2f}" for s, t in r["step_times"]))
        elif r.get("wall_s") is not None:
            print("    no trainer_state.json: wall time only")
    for p in problems:
        print(f"FAIL {p}")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "problems": problems}, indent=1, default=str) + "\n")
    if not problems:
        print("ok: every rollout group is balanced between thinking and non_thinking")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
