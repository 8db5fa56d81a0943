"""The demo's RL ablation: several BPO variants × several RL seeds × a long horizon, from one annealed checkpoint.

    python benchmarks/ablation.py --out demo_output [--seeds 0 1 2] [--steps 200] [--jobs 2] [--variants ...]

Every run is ``recipes/bpo.py`` with ``recipes/demo/bpo.yaml`` plus the variant's options and ``--seed S`` (the RL
seed: rollout sampling and data order; the starting weights are the same annealed checkpoint for every run), in
``<out>/ablations/<variant>/seed<S>``. The auto-mode probe runs on ``--probe_size`` items of the held-out test split (balanced over difficulties)
every ``--probe_steps`` steps: the **gate** per item (P(thinking decision token), normalised over the two decision tokens),
one greedy and one T = 1 auto answer per item. Forced-mode accuracy and length come from the training logs.

Resumable: a finished run leaves ``ablation_run.json`` and is skipped; an interrupted one resumes from its last
checkpoint (``recipes/bpo.py`` does that). Runs go ``--jobs`` at a time, one thread each.

Outputs in ``<out>/ablations/``: ``summary.json`` (per variant and step: mean, min and max across seeds of every
curve; the final-step table; the recommendation), ``summary.md``, and four plots with one panel per variant
(mean line, min–max band across seeds): ``gate.png``, ``sampled_think_rate.png``, ``accuracy.png``, ``tokens.png``.
``--report_only`` rebuilds them from finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r4b_trl.plots import end_labels, pyplot, save_figure  # noqa: E402

#: name -> (recipes/bpo.py options on top of recipes/demo/bpo.yaml, label)
VARIANTS = {
    "bpo_token_margin": (["--train_mode_token", "true", "--thinking_margin", "0.5"],
                         "BPO + estimator + margin 0.5"),
    "bpo": ([], "paper-faithful BPO"),
    "grpo": (["--force_modes", "false"], "vanilla GRPO"),
    "bpo_token": (["--train_mode_token", "true"], "BPO + decision-token estimator"),
    "bpo_token_margin_per_mode": (["--train_mode_token", "true", "--thinking_margin", "0.5",
                                   "--advantage_grouping", "per_mode"], "BPO + estimator + margin + per_mode"),
}
DEFAULT_VARIANTS = list(VARIANTS)  # run order: the candidate first, so a cut-short run still has it
PLOT_ORDER = ["bpo", "grpo", "bpo_token", "bpo_token_margin", "bpo_token_margin_per_mode"]
LEVELS = ("hard", "easy")
DONE = "ablation_run.json"


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / "ablations" / variant / f"seed{seed}"


def command(out: Path, variant: str, seed: int, args) -> list[str]:
    from r4b_trl.demo import _subst

    cfg = out / "configs" / "ablation_bpo.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(_subst((ROOT / "recipes" / "demo" / "bpo.yaml").read_text(), out))
    return [sys.executable, str(ROOT / "recipes" / "bpo.py"), "--config", str(cfg),
            "--output_dir", str(run_dir(out, variant, seed)), "--seed", str(seed), "--max_steps", str(args.steps),
            "--probe_steps", str(args.probe_steps), "--probe_size", str(args.probe_size),
            "--probe_batch_size", str(args.probe_size), "--save_steps", str(args.save_steps), "--save_total_limit", "1",
            "--logging_steps", "10", "--dump_first_steps", "1", "--dump_steps", str(args.steps),
            *VARIANTS[variant][0], *args.extra]


def run_all(out: Path, args) -> None:
    # seed-major: every variant's first seed before any second seed (a cut-short run still compares all variants)
    todo = [(v, s) for s in args.seeds for v in args.variants if not (run_dir(out, v, s) / DONE).exists()]
    print(f"ablation: {len(args.variants) * len(args.seeds) - len(todo)} runs done, {len(todo)} to go "
          f"({args.jobs} at a time)", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", R4B_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    running: list = []
    t_start = time.time()
    for v, s in list(todo):  # a run still going from an earlier (killed) invocation is waited for, not restarted
        pid = _live_pid(run_dir(out, v, s))
        if pid is not None:
            todo.remove((v, s))
            running.append((v, s, command(out, v, s, args), time.time(), None, pid))
            print(f"  adopt {v} seed {s} (pid {pid}, still running)", flush=True)
    while todo or running:
        while todo and len(running) < args.jobs:
            v, s = todo.pop(0)
            d = run_dir(out, v, s)
            d.mkdir(parents=True, exist_ok=True)
            cmd = command(out, v, s, args)
            log = open(d / "train.log", "a")
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            (d / "pid").write_text(str(proc.pid))
            running.append((v, s, cmd, time.time(), log, proc))
            print(f"  start {v} seed {s}", flush=True)
        time.sleep(2)
        for job in list(running):
            v, s, cmd, t0, log, proc = job
            if isinstance(proc, int):  # adopted: finished when the process is gone; success = the final probe
                if _alive(proc):
                    continue
                running.remove(job)
                if not _finished(run_dir(out, v, s), args.steps):
                    raise SystemExit(f"ablation run {v} seed {s} (adopted pid {proc}) ended before step "
                                     f"{args.steps}; rerun to resume it from its checkpoint.")
                (run_dir(out, v, s) / DONE).write_text(json.dumps({"seconds": None, "cmd": cmd, "adopted": True}))
                print(f"  done  {v} seed {s} (adopted)", flush=True)
                continue
            if proc.poll() is None:
                continue
            running.remove(job)
            log.close()
            if proc.returncode != 0:
                raise SystemExit(f"ablation run {v} seed {s} failed (exit {proc.returncode}); log: "
                                 f"{run_dir(out, v, s) / 'train.log'}")
            secs = time.time() - t0
            (run_dir(out, v, s) / DONE).write_text(json.dumps({"seconds": secs, "cmd": cmd}))
            print(f"  done  {v} seed {s} in {secs:.0f} s (elapsed {time.time() - t_start:.0f} s)", flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie or a recycled pid is not our run
        return "recipes/bpo.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True


def _live_pid(d: Path) -> int | None:
    p = d / "pid"
    if not p.exists():
        return None
    pid = int(p.read_text())
    return pid if _alive(pid) else None


def _finished(d: Path, steps: int) -> bool:
    p = d / "probe_history.jsonl"
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []
    return (d / "model.safetensors").exists() and any(r["step"] == steps for r in rows)


# ------------------------------------------------------------------------------------------------ curves

def _probe_curves(d: Path) -> dict[str, dict[int, float]]:
    curves: dict[str, dict[int, float]] = {}
    p = d / "probe_history.jsonl"
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []
    for r in rows:
        for lv in LEVELS:
            g = (r.get("groups") or {}).get(lv) or {}
            for key in ("gate", "sampled_think_rate", "think_rate", "accuracy", "mean_tokens"):
                if g.get(key) is not None:
                    curves.setdefault(f"{key}/{lv}", {})[r["step"]] = g[key]
        for key in ("accuracy", "mean_tokens", "gate", "sampled_think_rate"):
            if r.get(key) is not None:
                curves.setdefault(f"{key}/all", {})[r["step"]] = r[key]
    return curves


def _train_curves(d: Path) -> dict[str, dict[int, float]]:
    """Forced-mode rollout accuracy and length from the last checkpoint's log history (logged every 10 steps)."""
    ckpts = sorted(d.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not ckpts or not (ckpts[-1] / "trainer_state.json").exists():
        return {}
    curves: dict[str, dict[int, float]] = {}
    for h in json.loads((ckpts[-1] / "trainer_state.json").read_text())["log_history"]:
        for mode in ("thinking", "non_thinking", "auto"):
            for key, name in (("accuracy", "rollout_accuracy"), ("completion_length", "rollout_tokens")):
                v = h.get(f"bpo/{mode}/{key}")
                if v is not None:
                    curves.setdefault(f"{name}/{mode}", {})[h["step"]] = v
    return curves


def collect(out: Path, variants, seeds) -> dict:
    """``{variant: {curve: {step: {mean, min, max, n}}}}`` over the seeds that have data."""
    res = {}
    for v in variants:
        per_seed = [{**_probe_curves(run_dir(out, v, s)), **_train_curves(run_dir(out, v, s))} for s in seeds]
        curves = {}
        for name in sorted({k for c in per_seed for k in c}):
            steps = sorted({st for c in per_seed for st in c.get(name, {})})
            pts = {}
            for st in steps:
                vals = [c[name][st] for c in per_seed if st in c.get(name, {})]
                pts[st] = {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
            curves[name] = pts
        res[v] = {"label": VARIANTS[v][1], "options": " ".join(VARIANTS[v][0]) or "(defaults)",
                  "seeds": [s for s, c in zip(seeds, per_seed) if c], "curves": curves,
                  "last_step": {s: max(c["gate/hard"]) for s, c in zip(seeds, per_seed) if c.get("gate/hard")}}
    return res


def final_table(data: dict) -> dict:
    """Per variant, at the last probe step (the horizon): mean and range over the seeds that reached it (``n``; a
    run cut short is left out there and its last step is listed under ``short``)."""
    table = {}
    for v, d in data.items():
        gh = d["curves"].get("gate/hard", {})
        if not gh:
            continue
        st = max(gh)
        short = {}
        for s, last in d.get("last_step", {}).items():
            if last < st:
                short[s] = last
        table[v] = {"step": st, "n": gh[st]["n"], "short": short, **{k: d["curves"][k][st] for k in (
            "gate/hard", "gate/easy", "sampled_think_rate/hard", "sampled_think_rate/easy", "think_rate/hard",
            "think_rate/easy", "accuracy/hard", "accuracy/easy", "mean_tokens/all") if st in d["curves"].get(k, {})}}
    return table


def recommend(table: dict, data: dict | None = None) -> dict | None:
    """Among the variants whose gate meets the target on *every* seed (≥ 0.9 on hard, ≤ 0.1 on easy), the one with
    the fewest options beyond the paper (the smallest change that works); when none meets it, the variant whose
    worst seed separates hard from easy best (min gate(hard) − max gate(easy) across seeds)."""
    sep = {v: t["gate/hard"]["min"] - t["gate/easy"]["max"] for v, t in table.items() if "gate/hard" in t}
    if not sep:
        return None
    meets = [v for v, t in table.items() if v in sep and not t["short"] and t["gate/hard"]["min"] >= 0.9
             and t["gate/easy"]["max"] <= 0.1]
    n_opts = lambda v: len(VARIANTS.get(v, ([],))[0])  # noqa: E731
    if meets:
        best = min(meets, key=lambda v: (n_opts(v), -sep[v]))
        rule = "fewest options among the variants meeting the gate target on every seed"
    else:
        best = max(sep, key=sep.get)
        rule = "no variant meets the gate target on every seed: best worst-seed separation"
    return {"variant": best, "worst_seed_separation": sep[best], "meets_gate_target": best in meets,
            "variants_meeting_target": meets, "rule": rule}


def _cell(p, pct=True):
    if p is None:
        return "–"
    f = (lambda x: f"{100 * x:.0f}") if pct else (lambda x: f"{x:.2f}")
    return f"{f(p['mean'])} [{f(p['min'])}–{f(p['max'])}]"


def markdown(table: dict, data: dict, rec: dict | None, meta: dict) -> str:
    lines = [f"Ablation: {meta['runs']} runs ({len(data)} variants × seeds {meta['seeds']}), {meta['steps']} steps "
             f"each from the same annealed checkpoint; probe on {meta['probe_size']} items of the held-out test split "
             "(balanced over difficulties). "
             "Mean [min–max] across seeds at the last probe step; gate = P(thinking decision token | auto), "
             "normalised over the two decision tokens; think-rates in %.", "",
             "| variant | options | step (seeds) | gate hard | gate easy | sampled think % hard | sampled think % easy "
             "| greedy think % hard / easy | auto acc % hard | auto tokens |", "|---|---|---|---|---|---|---|---|---|---|"]
    for v, t in sorted(table.items(), key=lambda kv: PLOT_ORDER.index(kv[0]) if kv[0] in PLOT_ORDER else 99):
        g = lambda k, pct=True: _cell(t.get(k), pct)  # noqa: E731
        cut = "".join(f"; seed {s} at step {st}" for s, st in t["short"].items())
        lines.append(f"| {v} | `{data[v]['options']}` | {t['step']} ({t['n']}{cut}) | {g('gate/hard', False)} "
                     f"| {g('gate/easy', False)} "
                     f"| {g('sampled_think_rate/hard')} | {g('sampled_think_rate/easy')} "
                     f"| {g('think_rate/hard')} / {g('think_rate/easy')} | {g('accuracy/hard')} "
                     f"| {_cell(t.get('mean_tokens/all'), False)} |")
    if rec:
        lines += ["", f"Recommended: **{rec['variant']}** ({rec['rule']}; worst-seed gate(hard) − gate(easy) = "
                      f"{rec['worst_seed_separation']:.3f}; variants meeting gate ≥ 0.9 hard / ≤ 0.1 easy on every "
                      f"seed: {', '.join(rec['variants_meeting_target']) or 'none'})."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ plots

def _panels(data: dict, title: str, series: list[tuple[str, str, str]], ylabel: str, path: Path,
            ylim=None) -> None:
    """One panel per variant; each series (curve name, label, colour[, style]) a mean line with its min–max band,
    labelled at its right end (no legend). Styles differ (width, marker) so that equal curves stay visible: the
    series drawn first is thick and light, later ones thinner with their own markers."""
    plt = pyplot()

    names = sorted(data, key=lambda v: PLOT_ORDER.index(v) if v in PLOT_ORDER else len(PLOT_ORDER))
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 0.6, 3.9), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], names):
        ends = []
        for curve, label, color, *style in series:
            lw, alpha, marker = style[0] if style else (2.0, 1.0, "o")
            pts = data[v]["curves"].get(curve)
            if not pts:
                continue
            steps = sorted(pts)
            mean = [pts[s]["mean"] for s in steps]
            ax.fill_between(steps, [pts[s]["min"] for s in steps], [pts[s]["max"] for s in steps], color=color,
                            alpha=0.2, lw=0)
            ax.plot(steps, mean, color=color, lw=lw, alpha=alpha, marker=marker, ms=5, mew=1.3)
            ends.append([steps[-1], mean[-1], label, color])
            ax.set_xlim(0, steps[-1] * 1.3)  # room for the end labels inside the panel
        lo, hi = ylim or ax.get_ylim()
        end_labels(ax, ends, lo, hi - 0.04 * (hi - lo), gap=0.09, dx=4)  # kept apart, inside the axes
        ax.set_title(data[v]["label"], fontsize=11)
        ax.set_xlabel("RL step", fontsize=11)
        ax.grid(alpha=0.3)
        if ylim:
            ax.set_ylim(*ylim)
        ax.tick_params(labelsize=10)
    axes[0][0].set_ylabel(ylabel, fontsize=11)
    ns = sorted({len(d["seeds"]) for d in data.values()}) or [0]
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    fig.suptitle(f"{title}  (line: mean of {n} seed{'s' if n != '1' else ''}; band: min–max)", fontsize=13)
    save_figure(fig, path, rect=(0, 0, 0.97, 0.95), dpi=110)


def plots(data: dict, outdir: Path) -> list[str]:
    red, blue, grey, green = "#c0392b", "#2471a3", "#555555", "#1e8449"
    thick, o, x, tri, sq = (4.5, 0.4, None), (2.0, 1.0, "o"), (1.3, 1.0, "x"), (1.6, 1.0, "^"), (1.6, 1.0, "s")
    _panels(data, "Gate: P(think | auto) on hard vs easy test items",
            [("gate/hard", "hard", red, o), ("gate/easy", "easy", blue, x)], "mean gate", outdir / "gate.png",
            (-0.03, 1.03))
    _panels(data, "Sampled (T = 1) auto think-rate",
            [("sampled_think_rate/hard", "hard", red, o), ("sampled_think_rate/easy", "easy", blue, x)],
            "share of answers that think", outdir / "sampled_think_rate.png", (-0.03, 1.03))
    _panels(data, "Accuracy: auto (greedy, test) and forced rollouts (training)",
            [("rollout_accuracy/thinking", "forced think", green, thick), ("rollout_accuracy/auto", "free rollouts",
             green, thick), ("rollout_accuracy/non_thinking", "forced direct", grey, sq),
             ("accuracy/hard", "auto hard", red, o), ("accuracy/easy", "auto easy", blue, x)], "accuracy",
            outdir / "accuracy.png", (-0.03, 1.03))
    _panels(data, "Tokens: auto answers (greedy, test) and forced rollouts (training)",
            [("rollout_tokens/thinking", "forced think", green, thick), ("rollout_tokens/auto", "free rollouts", green,
             thick), ("rollout_tokens/non_thinking", "forced direct", grey, sq), ("mean_tokens/hard", "auto hard", red, o),
             ("mean_tokens/easy", "auto easy", blue, x)], "mean output tokens", outdir / "tokens.png")
    return ["gate.png", "sampled_think_rate.png", "accuracy.png", "tokens.png"]


def report(out: Path, args) -> dict:
    data = collect(out, args.variants, args.seeds)
    table = final_table(data)
    rec = recommend(table)
    runs = [json.loads((run_dir(out, v, s) / DONE).read_text()) for v in args.variants for s in args.seeds
            if (run_dir(out, v, s) / DONE).exists()]
    meta = {"runs": len(runs), "seeds": args.seeds, "steps": args.steps, "probe_steps": args.probe_steps,
            "probe_size": args.probe_size,
            "run_seconds": [round(r["seconds"]) for r in runs if r.get("seconds")], "machine": args.machine}
    outdir = out / "ablations"
    outdir.mkdir(parents=True, exist_ok=True)
    files = plots(data, outdir) if data else []
    summary = {"meta": meta, "final": table, "recommended": rec, "variants": data, "plots": files}
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = markdown(table, data, rec, meta)
    (outdir / "summary.md").write_text(md + "\n" + "\n".join(f"![{f}]({f})" for f in files) + "\n")
    print("\n" + md)
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_output", help="the demo output dir (annealed checkpoint, task split)")
    p.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--probe_steps", type=int, default=20)
    p.add_argument("--probe_size", type=int, default=150)
    p.add_argument("--save_steps", type=int, default=50)
    p.add_argument("--jobs", type=int, default=3)
    p.add_argument("--machine", default="CPU, 2 cores (shared), 1 thread per run")
    p.add_argument("--report_only", action="store_true")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further recipes/bpo.py options for every run")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    if not (out / "annealed" / "config.json").exists() or not (out / "task" / "test.jsonl").exists():
        raise SystemExit(f"error: {out} has no annealed checkpoint or task split; run `make demo` first "
                         "(its stages up to anneal are reused).")
    if not args.report_only:
        run_all(out, args)
    report(out, args)


if __name__ == "__main__":
    main()
