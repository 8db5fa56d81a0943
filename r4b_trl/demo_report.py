"""The demo's final report: ``report.json``, ``report.md`` and plots, assembled from what the stages wrote
(evaluation ``results.json`` files, BPO/GRPO ``probe_history.jsonl``, the curation summary, stage timings).

The targets come from the R-4B paper (Table 4, Figs. 8-10) in miniature and are fixed here; the report says for
each whether it was met and by how much it was missed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

MODES = ("auto", "thinking", "non_thinking")
LEVELS = ("easy", "hard", "all")


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def summarize_eval(results_path: Path, benchmark: str | None = None) -> dict:
    """``{mode: {easy|hard|all|<group>: {accuracy, think_rate, mean_tokens, n}}}`` from an evaluation results.json."""
    res = json.loads(Path(results_path).read_text())["benchmarks"]
    bench = res[benchmark] if benchmark else next(iter(res.values()))
    out = {}
    for mode in MODES:
        m = bench.get(mode)
        if not m:
            continue
        row = {"all": {k: _num(m.get(k)) for k in ("accuracy", "think_rate", "mean_tokens", "n")}}
        for g, gm in (m.get("groups") or {}).items():
            row[g] = {k: _num(gm.get(k)) for k in ("accuracy", "think_rate", "mean_tokens", "n")}
        out[mode] = row
    return out


def _get(summary, model, mode, level, key):
    try:
        return summary[model][mode][level][key]
    except (KeyError, TypeError):
        return None


def targets(models: dict, total_seconds: float | None) -> list[dict]:
    """The issue's targets, each with the measured value, whether it was met, and the margin."""
    t = []

    def add(name, text, measured, met, detail=""):
        t.append({"name": name, "target": text, "measured": measured, "met": bool(met) if met is not None else None,
                  "detail": detail})

    a_auto = _get(models, "annealed", "auto", "hard", "accuracy")
    a_think = _get(models, "annealed", "thinking", "hard", "accuracy")
    if a_auto is not None and a_think is not None:
        add("thinking_atrophy", "annealed: auto accuracy on hard clearly (>= 10 points) below forced thinking",
            {"auto_hard": a_auto, "thinking_hard": a_think}, a_think - a_auto >= 0.10,
            f"gap {100 * (a_think - a_auto):+.1f} points")
    for model in [m for m in models if m.startswith("bpo")]:
        b_auto = _get(models, model, "auto", "hard", "accuracy")
        b_think = _get(models, model, "thinking", "hard", "accuracy")
        if b_auto is not None and b_think is not None:
            add(f"{model}:auto_vs_thinking_hard", "auto accuracy on hard within 2 points of forced thinking",
                {"auto_hard": b_auto, "thinking_hard": b_think}, b_auto >= b_think - 0.02,
                f"auto - thinking = {100 * (b_auto - b_think):+.1f} points")
        tr_h = _get(models, model, "auto", "hard", "think_rate")
        tr_e = _get(models, model, "auto", "easy", "think_rate")
        if tr_h is not None and tr_e is not None:
            add(f"{model}:think_rates", "auto think-rate >= 90% on hard and <= 10% on easy",
                {"hard": tr_h, "easy": tr_e}, tr_h >= 0.9 and tr_e <= 0.1,
                f"hard {100 * tr_h:.0f}%, easy {100 * tr_e:.0f}%")
        tok_a = _get(models, model, "auto", "all", "mean_tokens")
        tok_t = _get(models, model, "thinking", "all", "mean_tokens")
        if tok_a is not None and tok_t:
            add(f"{model}:tokens", "auto mean tokens on all <= 50% of forced thinking's",
                {"auto": tok_a, "thinking": tok_t}, tok_a <= 0.5 * tok_t, f"{100 * tok_a / tok_t:.0f}%")
        ok, detail = True, []
        for mode in ("thinking", "non_thinking"):
            x, y = _get(models, model, mode, "all", "accuracy"), _get(models, "annealed", mode, "all", "accuracy")
            if x is None or y is None:
                ok = None
                break
            ok = ok and x >= y
            detail.append(f"{mode} {100 * y:.1f} -> {100 * x:.1f}")
        if ok is not None:
            add(f"{model}:forced_modes_not_worse", "both forced modes at least as accurate as the annealed model's",
                None, ok, "; ".join(detail))
    g_h, g_e = _get(models, "grpo", "auto", "hard", "think_rate"), _get(models, "grpo", "auto", "easy", "think_rate")
    if g_h is not None and g_e is not None:
        single = (g_h >= 0.9 and g_e >= 0.9) or (g_h <= 0.1 and g_e <= 0.1)
        add("grpo:single_mode", "vanilla GRPO drifts toward a single mode (reported)", {"hard": g_h, "easy": g_e},
            single, f"think-rate hard {100 * g_h:.0f}%, easy {100 * g_e:.0f}%")
    if total_seconds is not None:
        add("wall_time", "total wall time <= 10 minutes on 2 CPU cores", total_seconds, total_seconds <= 600,
            f"{total_seconds:.0f} s")
    return t


def _share(curation: dict):
    counts = curation.get("counts", {}) if isinstance(curation, dict) else {}
    labelled = counts.get("thinking", 0) + counts.get("non_thinking", 0)
    return counts.get("thinking", 0) / labelled if labelled else None


def _probe(path: Path) -> list[dict]:
    p = Path(path) / "probe_history.jsonl"
    if not p.exists():
        return []
    return sorted((json.loads(line) for line in p.read_text().splitlines() if line.strip()), key=lambda r: r["step"])


def _plots(out: Path, models: dict, probes: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    if probes:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, rows in probes.items():
            steps = [r["step"] for r in rows]
            for level, style in (("hard", "-"), ("easy", "--")):
                ys = [((r.get("groups") or {}).get(level) or {}).get("think_rate") for r in rows]
                if any(y is not None for y in ys):
                    ax.plot(steps, ys, style, marker="o", ms=3, label=f"{name} {level}")
        ax.set_xlabel("training step")
        ax.set_ylabel("auto-mode think-rate (probe)")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title("Does the model learn when to think?")
        fig.tight_layout()
        fig.savefig(out / "think_rate.png", dpi=120)
        plt.close(fig)
        files.append("think_rate.png")
    fig, ax = plt.subplots(figsize=(7, 4))
    markers = {"auto": "o", "thinking": "^", "non_thinking": "s"}
    for model, summary in models.items():
        for mode in MODES:
            v = summary.get(mode, {}).get("all")
            if v and v.get("accuracy") is not None and v.get("mean_tokens") is not None:
                ax.scatter(v["mean_tokens"], v["accuracy"], marker=markers[mode], label=f"{model} {mode}")
    ax.set_xlabel("mean output tokens")
    ax.set_ylabel("accuracy (all)")
    ax.legend(fontsize=6, ncol=3)
    ax.set_title("Accuracy vs tokens per mode")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_tokens.png", dpi=120)
    plt.close(fig)
    files.append("accuracy_vs_tokens.png")
    return files


def _fmt(x, pct=True):
    if x is None:
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.1f}"


def headline_table(models: dict, levels=LEVELS) -> str:
    lines = ["| model | mode | " + " | ".join(f"{lv} acc / think / tokens" for lv in levels) + " |",
             "|---|---|" + "---|" * len(levels)]
    for model, summary in models.items():
        for mode in MODES:
            cells = []
            for lv in levels:
                v = summary.get(mode, {}).get(lv)
                cells.append("–" if not v else f"{_fmt(v['accuracy'])} / {_fmt(v['think_rate'])} / "
                                                f"{_fmt(v['mean_tokens'], pct=False)}")
            lines.append(f"| {model} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, stage_seconds: dict, config: dict) -> dict:
    """Assemble report.json / report.md / plots in ``out`` from the stage outputs named in ``config['report']``."""
    out = Path(out)
    spec = config.get("report_inputs", {})
    models = {}
    for name, path in (spec.get("models") or {}).items():
        p = out / path / "results.json"
        if p.exists():
            models[name] = summarize_eval(p, spec.get("benchmark"))
    probes = {name: _probe(out / path) for name, path in (spec.get("probes") or {}).items()}
    probes = {k: v for k, v in probes.items() if v}
    curation = {}
    cpath = out / spec.get("curation", "curated") / "curation_summary.json"
    if cpath.exists():
        curation = json.loads(cpath.read_text())
    total = config.get("wall_seconds", sum(stage_seconds.values()) if stage_seconds else None)
    report = {
        "models": {k: {mode: {lv: v.get(lv) for lv in (*LEVELS, *[g for g in v if g not in LEVELS])}
                           for mode, v in s.items()} for k, s in models.items()},
        "stages": {k: {"seconds": round(v, 1)} for k, v in stage_seconds.items()},
        "total_seconds": round(total, 1) if total is not None else None,
        "curation": {**curation, "thinking_share": _share(curation)},
        "probe": probes,
        "targets": targets(models, total),
        "ablations": {k: models[k] for k in models if k.startswith("bpo")},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plots = _plots(out, models, probes)
    md = ["# r4b-trl demo: the R-4B pipeline in miniature", "",
          "Accuracy / think-rate in % and mean output tokens, greedy, on the held-out test split.", "",
          headline_table(models), "", "## Targets (from the paper, in miniature)", "",
          "| target | met | measured |", "|---|---|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        md.append(f"| {t['target']} ({t['name']}) | {met} | {t['detail']} |")
    share = _share(curation)
    md += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    md += [f"| {k} | {v:.0f} |" for k, v in stage_seconds.items()]
    if total is not None:
        md.append(f"| **pipeline wall time** (paired stages overlap) | **{total:.0f}** |")
    if share is not None:
        md += ["", f"Curation thinking share: {100 * share:.1f}%."]
    md += [""] + [f"![{p}]({p})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n")
    print("\n" + headline_table(models))
    print("\nTargets:")
    for t in report["targets"]:
        print(f"  [{'x' if t['met'] else ' '}] {t['name']}: {t['target']}: {t['detail']}")
    print(f"\nreport: {out / 'report.md'}")
    return report
