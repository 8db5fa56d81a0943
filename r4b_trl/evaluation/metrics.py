"""Metrics from generation rows: per benchmark × mode (× group) accuracy, think rate and tokens
(:func:`mode_metrics`), auto against the forced modes (:func:`auto_metrics`), and ``results.json``
(:func:`compute_results`)."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict
from typing import Any, Sequence

from ..gate import gate_metrics
from ..modes import Mode
from .benchmarks import PreparedBenchmark
from .config import EvalConfig


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def mode_metrics(rows: Sequence[dict]) -> dict:
    """Metrics of one benchmark × mode (× group) from its generation rows.

    * ``accuracy`` = n_correct / n_scored, where unscorable items (``correct`` is null) are left out;
    * ``think_rate``, ``truncation_rate``, ``mean_tokens``, ``median_tokens`` are over the items that were
      generated (an item whose image failed to load has no generation);
    * truncated = generation hit ``max_new_tokens`` (not finished) or the think block was never closed.
    """
    n = len(rows)
    scored = [r for r in rows if r["correct"] is not None]
    correct = sum(1 for r in scored if r["correct"] is True)
    gen = [r for r in rows if r["num_tokens"] is not None]
    tokens = [r["num_tokens"] for r in gen]
    reasons = Counter(str(r["unscorable_reason"]).split(":", 1)[0] for r in rows if r["correct"] is None)
    return {
        "n": n,
        "n_scored": len(scored),
        "n_unscorable": n - len(scored),
        "unscorable_reasons": dict(sorted(reasons.items())),
        "n_correct": correct,
        "accuracy": _ratio(correct, len(scored)),
        "n_generated": len(gen),
        "think_rate": _ratio(sum(1 for r in gen if r["parsed_mode"] == "thinking"), len(gen)),
        "truncation_rate": _ratio(
            sum(1 for r in gen if not r["finished"] or r["parsed_mode"] == "truncated"), len(gen)),
        "mean_tokens": statistics.fmean(tokens) if tokens else None,
        "median_tokens": float(statistics.median(tokens)) if tokens else None,
    }


def auto_metrics(auto_rows: Sequence[dict], thinking_rows: Sequence[dict] | None,
                 non_thinking_rows: Sequence[dict] | None, auto: dict | None = None,
                 thinking: dict | None = None) -> dict:
    """Auto mode against the forced modes on the same items.

    * ``accuracy_vs_thinking`` = auto accuracy / forced-thinking accuracy;
    * ``tokens_vs_thinking`` = auto mean tokens / forced-thinking mean tokens;
    * ``oracle_gap`` = share of the items scored in all three modes where auto's choice was wrong but the other
      forced mode was right: auto did not think (parsed ``non_thinking``), was wrong, and forced thinking was right;
      or auto thought (parsed ``thinking`` or ``truncated`` — it opened a think block), was wrong, and forced
      non-thinking was right. ``oracle_n`` is that number of items.
    """
    auto = auto or mode_metrics(auto_rows)
    out: dict[str, Any] = {"accuracy_vs_thinking": None, "tokens_vs_thinking": None, "oracle_gap": None,
                           "oracle_n": 0}
    if thinking_rows is not None:
        thinking = thinking or mode_metrics(thinking_rows)
        out["accuracy_vs_thinking"] = _ratio(auto["accuracy"], thinking["accuracy"])
        out["tokens_vs_thinking"] = _ratio(auto["mean_tokens"], thinking["mean_tokens"])
    if thinking_rows is not None and non_thinking_rows is not None:
        th = {r["item_id"]: r for r in thinking_rows if r["correct"] is not None}
        nt = {r["item_id"]: r for r in non_thinking_rows if r["correct"] is not None}
        common = [r for r in auto_rows if r["correct"] is not None and r["item_id"] in th and r["item_id"] in nt]
        gap = 0
        for r in common:
            if r["correct"]:
                continue
            other = th if r["parsed_mode"] == "non_thinking" else nt
            gap += bool(other[r["item_id"]]["correct"])
        out["oracle_n"] = len(common)
        out["oracle_gap"] = _ratio(gap, len(common))
    return out


def _metrics_for(rows_by_mode: dict[str, list[dict]]) -> dict[str, dict]:
    res = {mode: mode_metrics(rows) for mode, rows in rows_by_mode.items()}
    if "auto" in res:
        res["auto"].update(auto_metrics(rows_by_mode["auto"], rows_by_mode.get("thinking"),
                                        rows_by_mode.get("non_thinking"), res["auto"], res.get("thinking")))
    return res


def compute_results(rows: Sequence[dict], benches: Sequence[PreparedBenchmark], modes: Sequence[Mode],
                    config: EvalConfig | None = None, gate_rows: Sequence[dict] | None = None) -> dict:
    """``results.json`` from generation rows (and auto-gate rows), restricted to the configured benchmarks, modes
    and items."""
    gates: dict[tuple, dict] = {}
    for r in gate_rows or []:
        gates.setdefault((r["benchmark"], str(r["item_id"])), r)
    index: dict[tuple, dict] = {}
    for r in rows:
        index.setdefault((r["benchmark"], r["mode"], str(r["item_id"])), r)  # first copy wins
    results: dict[str, Any] = {"benchmarks": {}, "benchmark_info": {}}
    if config is not None:
        results["model"] = config.model
        results["adapter"] = config.adapter
        results["settings"] = {"backend": config.backend, "max_new_tokens": config.max_new_tokens,
                               "temperature": config.temperature, "top_p": config.top_p,
                               "modes": [m.value for m in modes], "prefixes": asdict(config.resolved_prefixes())}
    for b in benches:
        by_mode = {}
        missing = 0
        for m in modes:
            rs = [index.get((b.name, m.value, it.item_id)) for it in b.items]
            missing += sum(r is None for r in rs)
            by_mode[m.value] = [r for r in rs if r is not None]
        bench_res = _metrics_for(by_mode)
        b_gates = [gates[(b.name, it.item_id)] for it in b.items if (b.name, it.item_id) in gates]
        if b_gates and "auto" in bench_res:
            bench_res["auto"].update(gate_metrics(b_gates))
        if b.spec.group_column:
            groups = sorted({it.group for it in b.items}, key=str)
            for g in groups:
                sub = _metrics_for({m: [r for r in rs if r["group"] == g] for m, rs in by_mode.items()})
                if b_gates and "auto" in sub:
                    sub["auto"].update(gate_metrics([r for r in b_gates if r["group"] == g]))
                for m, met in sub.items():
                    bench_res[m].setdefault("groups", {})[g] = met
        results["benchmarks"][b.name] = bench_res
        results["benchmark_info"][b.name] = {"path": b.spec.path, "split": b.spec.split,
                                             "num_items": len(b.items), "group_column": b.spec.group_column,
                                             "missing_generations": missing}
    return results
