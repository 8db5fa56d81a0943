"""BPO telemetry: per-mode step metrics, the rollout dump, the auto-mode probe history, and the collapse alarm.

Everything here is plain Python on lists so it can be tested (and recomputed) without a trainer.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data.io import read_jsonl, write_jsonl

logger = logging.getLogger(__name__)


def _mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else float("nan")


@dataclass
class RolloutRecord:
    """One rollout, as gathered across processes (global order = TRL's group layout)."""

    prompt_id: str
    forced_mode: str
    mode: str
    reward: float
    accuracy: float | None
    completion_tokens: int
    truncated: bool
    completion: str | None  # gathered on dump steps only
    advantage: float | None = None
    decision_advantage: float | None = None  # advantage of the decision token (before the estimator's weight)


def step_metrics(records: list[RolloutRecord], num_generations: int) -> dict[str, float]:
    """Per-mode metrics for one generation batch.

    Keys: ``bpo/<forced_mode>/{reward,accuracy,completion_length,truncated,said_thinking}`` per forced mode
    present, ``bpo/frac_zero_spread_groups`` (groups of two or more scored rewards, all equal: TRL's
    ``frac_reward_zero_std`` for groups) and
    ``bpo/think_minus_nothink_reward`` (mean over groups of mean thinking reward − mean non-thinking reward;
    only groups holding both modes count).
    """
    out: dict[str, float] = {}
    for fm in sorted({r.forced_mode for r in records}):
        rs = [r for r in records if r.forced_mode == fm]
        out[f"bpo/{fm}/reward"] = _mean([r.reward for r in rs])
        acc = [r.accuracy for r in rs if r.accuracy is not None]
        out[f"bpo/{fm}/accuracy"] = _mean(acc) if acc else _mean([1.0 if r.reward > 0 else 0.0 for r in rs])
        out[f"bpo/{fm}/completion_length"] = _mean([r.completion_tokens for r in rs])
        out[f"bpo/{fm}/truncated"] = _mean([1.0 if r.truncated else 0.0 for r in rs])
        out[f"bpo/{fm}/said_thinking"] = _mean([1.0 if r.mode == "thinking" else 0.0 for r in rs])
    groups = [records[i:i + num_generations] for i in range(0, len(records), num_generations)]
    zero, gaps = [], []
    for g in groups:
        vals = [r.reward for r in g if not math.isnan(r.reward)]
        # as TRL's frac_reward_zero_std: a group with fewer than two scored rewards has no (NaN) spread, not zero
        zero.append(1.0 if (len(vals) >= 2 and max(vals) - min(vals) < 1e-9) else 0.0)
        t = [r.reward for r in g if r.forced_mode == "thinking"]
        n = [r.reward for r in g if r.forced_mode == "non_thinking"]
        if t and n:
            gaps.append(_mean(t) - _mean(n))
    out["bpo/frac_zero_spread_groups"] = _mean(zero)
    if gaps:
        out["bpo/think_minus_nothink_reward"] = _mean(gaps)
    return out


class RolloutDump:
    """``<output_dir>/rollouts/step_<N>.jsonl``: one row per rollout of the generation used from step N."""

    def __init__(self, output_dir: str, first_steps: int = 5, every: int = 50, enabled: bool = True):
        self.dir = Path(output_dir) / "rollouts"
        self.first_steps, self.every, self.enabled = first_steps, every, enabled

    def wanted(self, step: int) -> bool:
        return self.enabled and (step <= self.first_steps or step % self.every == 0)

    def write(self, step: int, records: list[RolloutRecord], num_generations: int) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for i, r in enumerate(records):
            rows.append({
                "step": step,
                "prompt_id": r.prompt_id,
                "group_id": f"{step}-{i // num_generations}",
                "index_in_group": i % num_generations,
                "forced_mode": r.forced_mode,
                "mode": r.mode,
                "reward": None if math.isnan(r.reward) else r.reward,
                "advantage": r.advantage,
                "decision_advantage": r.decision_advantage,
                "completion_tokens": r.completion_tokens,
                "truncated": r.truncated,
                "completion": r.completion,
            })
        path = self.dir / f"step_{step}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        write_jsonl(tmp, rows)
        os.replace(tmp, path)  # atomic: a killed run never leaves a half-written dump
        return path

    def truncate_after(self, step: int) -> None:
        """On resume from a checkpoint at ``step``: drop dumps of steps the resumed run will redo."""
        if not self.dir.exists():
            return
        for p in self.dir.glob("step_*.jsonl"):
            try:
                n = int(p.stem.split("_")[1])
            except ValueError:
                continue
            if n > step:
                p.unlink()


@dataclass
class ProbeHistory:
    """``<output_dir>/probe_history.jsonl``: one row per auto-mode probe (step, think_rate, accuracy, per group)."""

    path: Path
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def open(cls, output_dir: str) -> "ProbeHistory":
        p = Path(output_dir) / "probe_history.jsonl"
        return cls(p, read_jsonl(p))

    def steps(self) -> set[int]:
        return {r["step"] for r in self.rows}

    def append(self, row: dict) -> None:
        self.rows = [r for r in self.rows if r["step"] != row["step"]] + [row]
        self._write()

    def truncate_after(self, step: int) -> None:
        """On resume from a checkpoint at ``step``: forget probes of steps the resumed run will redo."""
        self.rows = [r for r in self.rows if r["step"] <= step]
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".jsonl.tmp")
        write_jsonl(tmp, self.rows)
        os.replace(tmp, self.path)


def collapse_state(think_rates: list[float], low: float, high: float, patience: int) -> str | None:
    """``'never_thinks'`` / ``'always_thinks'`` when the last ``patience`` probe think-rates all sit at or below
    ``low`` / at or above ``high``; else None."""
    if len(think_rates) < patience:
        return None
    last = think_rates[-patience:]
    if all(r <= low for r in last):
        return "never_thinks"
    if all(r >= high for r in last):
        return "always_thinks"
    return None


def probe_summary(step: int, items: list[dict], group_column: str | None) -> dict:
    """Aggregate probe items into one history row, overall and per group: greedy ``think_rate`` / ``accuracy``
    (items' ``mode``, ``correct``), ``mean_tokens``; the mean ``gate`` (P(thinking decision token), normalised over
    the two decision tokens; None where not defined) and ``gate_other_mass``; the ``sampled_think_rate`` and
    ``sampled_accuracy`` of one T = 1 answer per item (items' ``sampled_mode``, ``sampled_correct``)."""

    def stats(v: list[dict]) -> dict:
        gates = [it.get("gate") for it in v if it.get("gate") is not None]
        sampled = [it for it in v if it.get("sampled_mode") is not None]
        return {
            "n": len(v),
            "think_rate": _mean([1.0 if it["mode"] == "thinking" else 0.0 for it in v]),
            "accuracy": _mean([it["correct"] for it in v if it["correct"] is not None]),
            "mean_tokens": _mean([it["num_tokens"] for it in v]),
            "gate": _mean(gates) if gates else None,
            "gate_other_mass": _mean([it["other_mass"] for it in v if it.get("other_mass") is not None])
            if gates else None,
            "sampled_think_rate": _mean([1.0 if it["sampled_mode"] == "thinking" else 0.0 for it in sampled])
            if sampled else None,
            "sampled_accuracy": _mean([it["sampled_correct"] for it in sampled if it["sampled_correct"] is not None])
            if sampled else None,
        }

    row = {"step": step, **stats(items)}
    if group_column:
        groups: dict[str, list] = {}
        for it in items:
            if it.get("group") is not None:
                groups.setdefault(str(it["group"]), []).append(it)
        row["groups"] = {g: stats(v) for g, v in sorted(groups.items())}
    return row
