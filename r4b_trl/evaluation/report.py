"""What people read: ``report.md`` (a table per benchmark, per group, the auto-mode gate), ``pareto.png``
(accuracy against output tokens) and the summary lines printed at the end of a run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..plots import pyplot, save_figure
from .config import MODE_ORDER


def fmt_pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def fmt_num(x, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


TABLE_HEADER = ("| mode | n | unscorable | accuracy % | think rate % | mean tokens | median tokens | truncated % "
                "| acc / thinking | tokens / thinking | oracle gap % |")


def table_row(label: str, m: dict) -> str:
    return (f"| {label} | {m['n']} | {m['n_unscorable']} | {fmt_pct(m['accuracy'])} | {fmt_pct(m['think_rate'])} "
            f"| {fmt_num(m['mean_tokens'])} | {fmt_num(m['median_tokens'])} | {fmt_pct(m['truncation_rate'])} "
            f"| {fmt_num(m.get('accuracy_vs_thinking'), 2)} | {fmt_num(m.get('tokens_vs_thinking'), 2)} "
            f"| {fmt_pct(m.get('oracle_gap'))} |")


def results_table(bench_results: dict[str, dict]) -> str:
    """A markdown table (one row per mode) for one benchmark's results."""
    lines = [TABLE_HEADER, "|" + "---|" * TABLE_HEADER.count(" | ") + "---|"]
    for mode in [m for m in MODE_ORDER if m in bench_results]:
        lines.append(table_row(mode, bench_results[mode]))
    return "\n".join(lines)


def group_table(bench_results: dict[str, dict]) -> str | None:
    modes = [m for m in MODE_ORDER if m in bench_results]
    groups = sorted({g for m in modes for g in bench_results[m].get("groups", {})}, key=str)
    if not groups:
        return None
    header = TABLE_HEADER.replace("| mode |", "| group | mode |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for g in groups:
        for m in modes:
            met = bench_results[m].get("groups", {}).get(g)
            if met is not None:
                lines.append(table_row(f"{g} | {m}", met))
    return "\n".join(lines)


def gate_table(bench_results: dict[str, dict]) -> str | None:
    """Auto mode's gate next to its greedy and sampled think-rates, overall and per group (None without a gate
    pass)."""
    auto = bench_results.get("auto") or {}
    if "sampled_think_rate" not in auto:
        return None
    lines = ["| group | n | gate (mean P(think) at the decision) | mass on neither token | greedy think % "
             "| sampled think % | sampled acc % |", "|---|---|---|---|---|---|---|"]
    for label, m in [("all", auto)] + sorted((auto.get("groups") or {}).items(), key=lambda kv: str(kv[0])):
        lines.append(f"| {label} | {m.get('gate_n', 0)} | {fmt_num(m.get('gate'), 3)} "
                     f"| {fmt_num(m.get('gate_other_mass'), 3)} | {fmt_pct(m.get('think_rate'))} "
                     f"| {fmt_pct(m.get('sampled_think_rate'))} | {fmt_pct(m.get('sampled_accuracy'))} |")
    return "\n".join(lines)


def render_report(results: dict) -> str:
    lines = ["# Auto-thinking evaluation", ""]
    if results.get("model"):
        lines.append(f"Model: `{results['model']}`" + (f" + adapter `{results['adapter']}`"
                                                        if results.get("adapter") else ""))
    s = results.get("settings")
    if s:
        lines.append(f"Backend {s['backend']}, max_new_tokens {s['max_new_tokens']}, temperature "
                     f"{s['temperature']}" + (" (greedy)" if not s["temperature"] else f", top_p {s['top_p']}") + ".")
    lines += ["", "accuracy is over scorable items (unscorable ones are counted in their own column); think rate = "
              "share of answers whose parsed mode is thinking; truncated = hit the token limit or never closed the "
              "think block; acc / thinking and tokens / thinking compare auto with forced thinking; oracle gap = "
              "share of items where auto's choice was wrong but the other forced mode was right.", ""]
    for name, bench in results["benchmarks"].items():
        info = results.get("benchmark_info", {}).get(name, {})
        lines += [f"## {name}", "", f"{info.get('num_items', '?')} items from `{info.get('path', '?')}`.", "",
                  results_table(bench), ""]
        gt = group_table(bench)
        if gt:
            lines += [f"By {info.get('group_column') or 'group'}:", "", gt, ""]
        gate = gate_table(bench)
        if gate:
            a = bench["auto"]
            lines += [f"Auto-mode gate (`r4b_trl.gate`: {a.get('gate_note') or 'not measured'}) and one auto sample "
                      f"per item at temperature {a.get('sampled_temperature')}:", "", gate, ""]
        reasons = Counter()
        for m in bench.values():
            reasons.update(m.get("unscorable_reasons", {}))
        if reasons:
            lines += ["Unscorable items by reason (all modes): "
                      + ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) + "; see `unscorable_reason` in "
                      "generations.jsonl.", ""]
    return "\n".join(lines)


def plot_pareto(results: dict, path: str | Path) -> Path:
    """Accuracy (%) against mean output tokens: one panel per benchmark, one labelled point per mode (auto's label
    carries its gate when measured), the modes of a benchmark joined by a line."""
    import math

    plt = pyplot()

    markers = {"auto": "o", "thinking": "^", "non_thinking": "s"}
    offsets = {"auto": ((7, 6), "left"), "thinking": ((-7, -13), "right"), "non_thinking": ((7, -13), "left")}
    benches = []
    for name, bench in results["benchmarks"].items():
        pts = [(m, bench[m]["mean_tokens"], bench[m]["accuracy"]) for m in MODE_ORDER
               if m in bench and bench[m]["mean_tokens"] is not None and bench[m]["accuracy"] is not None]
        benches.append((name, bench, pts))
    cols = max(1, min(3, len(benches)))
    rows = max(1, math.ceil(len(benches) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.8 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(benches):]:
        ax.axis("off")
    for ax, (name, bench, pts) in zip(axes.flat, benches):
        if not pts:
            ax.text(0.5, 0.5, "no scorable results", ha="center", va="center", transform=ax.transAxes, fontsize=11)
        line = sorted(pts, key=lambda p: p[1])
        ax.plot([p[1] for p in line], [100 * p[2] for p in line], color="#888888", lw=1, zorder=1)
        for m, x, y in pts:
            ax.scatter([x], [100 * y], marker=markers[m], s=70, color="#2471a3" if m == "auto" else "#555555",
                       zorder=3)
            label = m
            if m == "auto" and bench[m].get("gate") is not None:
                label += f" (gate {bench[m]['gate']:.2f})"
            (dx, dy), ha = offsets[m]
            ax.annotate(label, (x, 100 * y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=10)
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("mean output tokens", fontsize=10)
        ax.set_ylabel("accuracy (%)", fontsize=10)
        ax.set_ylim(-8, 112)
        ax.set_xlim(left=0, right=max([p[1] for p in pts] + [1]) * 1.35)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=9)
    fig.suptitle("Accuracy vs output tokens, per mode", fontsize=12)
    return save_figure(fig, path)


def summary_lines(results: dict) -> list[str]:
    lines = []
    for name, bench in results["benchmarks"].items():
        for mode in [m for m in MODE_ORDER if m in bench]:
            m = bench[mode]
            extra = ""
            if mode == "auto" and m.get("oracle_gap") is not None:
                extra = f"  oracle gap {fmt_pct(m['oracle_gap'])}%"
            if mode == "auto" and "sampled_think_rate" in m:
                extra += (f"  gate {fmt_num(m.get('gate'), 3)}  sampled (T={m.get('sampled_temperature')}) think "
                          f"{fmt_pct(m['sampled_think_rate'])}%")
            lines.append(f"{name:>20} {mode:>12}: acc {fmt_pct(m['accuracy'])}% (n={m['n_scored']}, "
                         f"unscorable {m['n_unscorable']})  think {fmt_pct(m['think_rate'])}%  "
                         f"tokens {fmt_num(m['mean_tokens'])}  truncated {fmt_pct(m['truncation_rate'])}%{extra}")
    return lines
