"""The demo's final report: ``report.json``, ``report.md`` and plots, assembled from what the stages wrote
(evaluation ``results.json`` files, BPO/GRPO ``probe_history.jsonl``, the curation summary, stage timings, and the
ablation summary when ``make demo DEMO=ablations`` ran).

Every auto-mode number comes with the **gate** (P(thinking decision token | auto pre-fill), normalised over the two
decision tokens: ``r4b_trl.gate``) and the **sampled (T = 1) think-rate** next to the greedy think-rate: greedy
decoding thinks iff the gate is above ½, so a greedy think-rate alone hides where the gate sits.

The targets come from the R-4B paper (Table 4, Figs. 8-10) in miniature and are fixed here; the report says for
each whether it was met and by how much it was missed. ``report.json['recommended']`` names the variant the project
recommends (``model``: its key in ``models``; ``folder``: its model folder under the output dir).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .plots import end_labels, pyplot, save_figure

MODES = ("auto", "thinking", "non_thinking")
LEVELS = ("easy", "hard", "all")
KEYS = ("accuracy", "think_rate", "mean_tokens", "n")
AUTO_KEYS = ("gate", "gate_other_mass", "sampled_think_rate", "sampled_accuracy")
HARD, EASY, MED = "#c0392b", "#2471a3", "#7d3c98"


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def summarize_eval(results_path: Path, benchmark: str | None = None) -> dict:
    """``{mode: {easy|hard|all|<group>: {accuracy, think_rate, mean_tokens, n[, gate, gate_other_mass,
    sampled_think_rate, sampled_accuracy]}}}`` from an evaluation results.json (the gate keys for auto)."""
    res = json.loads(Path(results_path).read_text())["benchmarks"]
    bench = res[benchmark] if benchmark else next(iter(res.values()))
    out = {}
    for mode in MODES:
        m = bench.get(mode)
        if not m:
            continue
        keys = KEYS + (AUTO_KEYS if mode == "auto" else ())
        row = {"all": {k: _num(m.get(k)) for k in keys}}
        for g, gm in (m.get("groups") or {}).items():
            row[g] = {k: _num(gm.get(k)) for k in keys}
        out[mode] = row
    return out


def _get(summary, model, mode, level, key):
    try:
        return summary[model][mode][level][key]
    except (KeyError, TypeError):
        return None


def targets(models: dict, total_seconds: float | None) -> list[dict]:
    """The targets, each with the measured value, whether it was met, and the margin."""
    t = []

    def add(name, text, measured, met, detail=""):
        t.append({"name": name, "target": text, "measured": measured, "met": bool(met) if met is not None else None,
                  "detail": detail})

    a_auto = _get(models, "annealed", "auto", "hard", "accuracy")
    a_think = _get(models, "annealed", "thinking", "hard", "accuracy")
    a_gate = _get(models, "annealed", "auto", "hard", "gate")
    if a_auto is not None and a_think is not None:
        add("thinking_atrophy", "annealed: auto accuracy on hard clearly (>= 10 points) below forced thinking, and "
            "its hard-item gate below 0.5", {"auto_hard": a_auto, "thinking_hard": a_think, "gate_hard": a_gate},
            a_think - a_auto >= 0.10 and (a_gate is None or a_gate < 0.5),
            f"gap {100 * (a_think - a_auto):+.1f} points; gate on hard {_f3(a_gate)}")
    for model in [m for m in models if m != "annealed"]:
        b_auto = _get(models, model, "auto", "hard", "accuracy")
        b_think = _get(models, model, "thinking", "hard", "accuracy")
        if b_auto is not None and b_think is not None:
            add(f"{model}:auto_vs_thinking_hard", "auto accuracy on hard within 2 points of forced thinking",
                {"auto_hard": b_auto, "thinking_hard": b_think}, b_auto >= b_think - 0.02,
                f"auto - thinking = {100 * (b_auto - b_think):+.1f} points")
        for key, what in (("gate", "gate (mean P(think | auto))"), ("sampled_think_rate", "sampled (T=1) think-rate")):
            h, e = _get(models, model, "auto", "hard", key), _get(models, model, "auto", "easy", key)
            if h is not None and e is not None:
                add(f"{model}:{key}", f"auto {what} >= 0.9 on hard and <= 0.1 on easy", {"hard": h, "easy": e},
                    h >= 0.9 and e <= 0.1, f"hard {_f3(h)}, easy {_f3(e)}")
        tr_h = _get(models, model, "auto", "hard", "think_rate")
        tr_e = _get(models, model, "auto", "easy", "think_rate")
        if tr_h is not None and tr_e is not None:
            add(f"{model}:greedy_think_rates", "greedy auto think-rate >= 90% on hard and <= 10% on easy (a greedy read "
                "of the gate: thinks iff gate > 0.5)", {"hard": tr_h, "easy": tr_e}, tr_h >= 0.9 and tr_e <= 0.1,
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
    g_h, g_e = _get(models, "grpo", "auto", "hard", "gate"), _get(models, "grpo", "auto", "easy", "gate")
    if g_h is not None and g_e is not None:
        single = (g_h >= 0.9 and g_e >= 0.9) or (g_h <= 0.1 and g_e <= 0.1)
        add("grpo:single_mode", "vanilla GRPO drifts toward a single mode (reported, on the gate)",
            {"hard": g_h, "easy": g_e}, single, f"gate hard {_f3(g_h)}, easy {_f3(g_e)}")
    if total_seconds is not None:
        add("wall_time", "total wall time <= 10 minutes on 2 CPU cores", total_seconds, total_seconds <= 600,
            f"{total_seconds:.0f} s")
    return t


def _f3(x):
    return "–" if x is None else f"{x:.3f}"


def _share(curation: dict):
    counts = curation.get("counts", {}) if isinstance(curation, dict) else {}
    labelled = counts.get("thinking", 0) + counts.get("non_thinking", 0)
    return counts.get("thinking", 0) / labelled if labelled else None


def _probe(path: Path) -> list[dict]:
    p = Path(path) / "probe_history.jsonl"
    if not p.exists():
        return []
    return sorted((json.loads(line) for line in p.read_text().splitlines() if line.strip()), key=lambda r: r["step"])


# ---------------------------------------------------------------------------------------------------- plots

def _curve_panels(path: Path, probes: dict, labels: dict, title: str, series: list, ylabel: str) -> None:
    """One panel per trained model, x = RL step; ``series`` = (history key, level, label, colour, style). The
    thicker, lighter line is drawn first so that an identical thinner line on top stays visible."""
    plt = pyplot()

    names = list(probes)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names) + 0.8, 4.0), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = probes[name]
        steps = [r["step"] for r in rows]
        ends = []
        for key, level, label, color, (lw, alpha, marker) in series:
            ys = [((r.get("groups") or {}).get(level) or {}).get(key) for r in rows]
            pts = [(s, y) for s, y in zip(steps, ys) if y is not None]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, lw=lw, alpha=alpha, marker=marker,
                    ms=7 if marker == "o" else 6, mew=1.5)
            ends.append([pts[-1][0], pts[-1][1], label, color])
        ax.axhline(0.5, color="#999999", lw=0.8, ls=":")
        ax.set_ylim(-0.04, 1.04)
        if steps:
            ax.set_xlim(min(steps), max(steps) + 0.32 * max(1, max(steps) - min(steps)))
        end_labels(ax, ends)
        ax.set_title(labels.get(name, name), fontsize=11)
        ax.set_xlabel("RL step (0 = annealed model)", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel, fontsize=11)
    fig.suptitle(title, fontsize=12)
    save_figure(fig, path, rect=(0, 0, 1, 0.88), dpi=110)


def _accuracy_vs_tokens(path: Path, models: dict, labels: dict) -> None:
    """One panel per model: accuracy against mean output tokens, per mode (marker) on hard and easy (colour)."""
    plt = pyplot()

    names = list(models)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 0.6, 3.9), sharey=True, sharex=True,
                             squeeze=False)
    short = {"auto": "auto", "thinking": "think", "non_thinking": "direct"}
    offsets = {"auto": ((0, 9), "center"), "thinking": ((6, -14), "left"), "non_thinking": ((0, -16), "center")}
    for ax, name in zip(axes[0], names):
        for level, color in (("hard", HARD), ("easy", EASY)):
            for mode, marker in (("thinking", "^"), ("non_thinking", "s"), ("auto", "o")):
                v = (models[name].get(mode) or {}).get(level)
                if not v or v.get("accuracy") is None or v.get("mean_tokens") is None:
                    continue
                ax.scatter(v["mean_tokens"], 100 * v["accuracy"], marker=marker, s=90 if mode == "auto" else 50,
                           color=color, edgecolor="black" if mode == "auto" else "none", zorder=3)
                ax.annotate(f"{short[mode]} {level}", (v["mean_tokens"], 100 * v["accuracy"]), fontsize=9,
                            color=color, xytext=offsets[mode][0], textcoords="offset points", ha=offsets[mode][1])
        ax.set_title(labels.get(name, name), fontsize=11)
        ax.set_xlabel("mean output tokens", fontsize=11)
        ax.set_ylim(-8, 112)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=10)
    xmax = max([v["mean_tokens"] for m in models.values() for md in m.values() for v in md.values()
                if v and v.get("mean_tokens") is not None] + [1])
    axes[0][0].set_xlim(0, 1.25 * xmax)
    axes[0][0].set_ylabel("accuracy (%)", fontsize=11)
    fig.suptitle("Accuracy vs tokens, greedy, held-out test (auto: circled)", fontsize=13)
    save_figure(fig, path, rect=(0, 0, 1, 0.93), dpi=110)


def _plots(out: Path, models: dict, probes: dict, labels: dict) -> list[str]:
    files = []
    # hard: circles, easy: crosses drawn on top, so equal curves stay visible
    thick, hard_thin, easy_thin = (4.0, 0.45, None), (1.8, 1.0, "o"), (1.2, 1.0, "x")
    if probes:
        _curve_panels(out / "gate.png", probes, labels, "Does the model learn when to think?\nGate = P(think | auto) "
                      "per difficulty (dotted: 0.5, greedy thinks above it)",
                      [("gate", "hard", "hard", HARD, hard_thin), ("gate", "med", "med", MED, (1.2, 0.8, None)),
                       ("gate", "easy", "easy", EASY, easy_thin)], "mean gate on probe items")
        files.append("gate.png")
        _curve_panels(out / "think_rate.png", probes, labels, "How often does auto mode think?\nSampled at T = 1 "
                      "(thick, light) and greedy (thin, markers)",
                      [("sampled_think_rate", "hard", "hard T=1", HARD, thick),
                       ("sampled_think_rate", "easy", "easy T=1", EASY, thick),
                       ("think_rate", "hard", "hard greedy", HARD, hard_thin),
                       ("think_rate", "easy", "easy greedy", EASY, easy_thin)], "share of auto answers that think")
        files.append("think_rate.png")
    if models:
        _accuracy_vs_tokens(out / "accuracy_vs_tokens.png", models, labels)
        files.append("accuracy_vs_tokens.png")
    return files


# ---------------------------------------------------------------------------------------------------- tables

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


def gate_table(models: dict, levels=("easy", "med", "hard")) -> str:
    """Auto mode per model: gate (mean P(think | auto)), sampled T=1 think-rate %, greedy think-rate %."""
    lines = ["| model | " + " | ".join(f"{lv}: gate / T=1 think % / greedy think %" for lv in levels) + " |",
             "|---|" + "---|" * len(levels)]
    for model, summary in models.items():
        cells = []
        for lv in levels:
            v = (summary.get("auto") or {}).get(lv) or {}
            cells.append(f"{_f3(v.get('gate'))} / {_fmt(v.get('sampled_think_rate'))} / {_fmt(v.get('think_rate'))}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _recommended(out: Path, spec: dict, models: dict) -> dict | None:
    rec = spec.get("recommended")
    if not rec:
        return None
    name = rec["model"]
    gate = {lv: _get(models, name, "auto", lv, "gate") for lv in ("hard", "easy")}
    sampled = {lv: _get(models, name, "auto", lv, "sampled_think_rate") for lv in ("hard", "easy")}
    met = None
    if None not in gate.values() and None not in sampled.values():
        met = gate["hard"] >= 0.9 and gate["easy"] <= 0.1 and sampled["hard"] >= 0.9 and sampled["easy"] <= 0.1
    return {"model": name, "folder": rec.get("folder", name), "path": str(out / rec.get("folder", name)),
            "options": rec.get("options"), "why": rec.get("why"), "gate": gate, "sampled_think_rate": sampled,
            "meets_gate_target": met}


def write_report(out: Path, stage_seconds: dict, config: dict) -> dict:
    """Assemble report.json / report.md / plots in ``out`` from the stage outputs named in ``config['report']``."""
    out = Path(out)
    spec = config.get("report_inputs", {})
    labels = spec.get("labels") or {}
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
    ablations = None
    apath = out / spec.get("ablations", "ablations") / "summary.json"
    if spec.get("ablations") and apath.exists():
        a = json.loads(apath.read_text())
        ablations = {"meta": a["meta"], "final": a["final"], "recommended": a["recommended"],
                     "summary": str(apath), "plots": [str(apath.parent / f) for f in a.get("plots", [])]}
    total = config.get("wall_seconds", sum(stage_seconds.values()) if stage_seconds else None)
    recommended = _recommended(out, spec, models)
    if recommended and ablations and ablations.get("recommended"):
        recommended["agrees_with_ablation"] = ablations["recommended"]["variant"] == recommended["model"]
    report = {
        "models": {k: {mode: {lv: v.get(lv) for lv in (*LEVELS, *[g for g in v if g not in LEVELS])}
                           for mode, v in s.items()} for k, s in models.items()},
        "recommended": recommended,
        "stages": {k: {"seconds": round(v, 1)} for k, v in stage_seconds.items()},
        "total_seconds": round(total, 1) if total is not None else None,
        "curation": {**curation, "thinking_share": _share(curation)},
        "probe": probes,
        "targets": targets(models, total),
        "ablations": ablations,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plots = _plots(out, models, probes, labels)
    md = ["# r4b-trl demo: the R-4B pipeline in miniature", "",
          "Held-out test split. Gate = P(thinking decision token | auto pre-fill), normalised over the two decision "
          "tokens (`r4b_trl.gate`); greedy decoding thinks iff it is above 0.5. Think-rates and accuracy in %.", "",
          "## Auto mode: gate, sampled (T = 1) and greedy think-rate", "", gate_table(models), ""]
    if recommended:
        md += [f"Recommended variant: **{recommended['model']}** (`{recommended['options']}`; model folder "
               f"`{recommended['folder']}/`): gate hard {_f3(recommended['gate']['hard'])} / easy "
               f"{_f3(recommended['gate']['easy'])}, sampled think-rate hard "
               f"{_fmt(recommended['sampled_think_rate']['hard'])}% / easy "
               f"{_fmt(recommended['sampled_think_rate']['easy'])}%. {recommended.get('why') or ''}", ""]
    md += ["## Every mode (greedy): accuracy / think-rate / mean output tokens", "", headline_table(models), "",
           "## Targets (from the paper, in miniature)", "", "| target | met | measured |", "|---|---|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        md.append(f"| {t['target']} ({t['name']}) | {met} | {t['detail']} |")
    if ablations:
        md += ["", "## Ablations", "", (apath.parent / "summary.md").read_text()
               .replace("](", f"]({apath.parent.relative_to(out)}/")]
    share = _share(curation)
    md += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    md += [f"| {k} | {v:.0f} |" for k, v in stage_seconds.items()]
    if total is not None:
        md.append(f"| **pipeline wall time** (paired stages overlap) | **{total:.0f}** |")
    if share is not None:
        md += ["", f"Curation thinking share: {100 * share:.1f}%."]
    md += [""] + [f"![{p}]({p})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n")
    print("\n" + gate_table(models) + "\n\n" + headline_table(models))
    print("\nTargets:")
    for t in report["targets"]:
        print(f"  [{'x' if t['met'] else ' '}] {t['name']}: {t['target']}: {t['detail']}")
    print(f"\nreport: {out / 'report.md'}")
    return report
