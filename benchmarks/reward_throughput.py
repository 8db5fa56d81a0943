"""Reward throughput on realistic rollouts, and per-completion latency on adversarial fuzz.

1. ``--rollouts`` (1,024) realistic completions scored the way TRL does, one ``accuracy_reward`` call per batch
   (128 prompts × 8 rollouts):
   thinking / non-thinking / never-closed turns, 1–4k characters of reasoning with numbers and LaTeX, answers
   boxed (right, wrong, hedged), stated in prose, as choices and exact strings → completions/s.
2. ``--fuzz`` (10,000) adversarial completions (tests/test_rewards_fuzz.py: unicode, LaTeX fragments, tag soup,
   nested and unclosed boxes, huge exponents, deep nesting) scored one at a time → p50 / p99 / max seconds per
   completion, checks killed at the deadline, and how many scored 1 although they state no answer.

    python benchmarks/reward_throughput.py [--rollouts 1024] [--fuzz 10000] [--load 2] [--json out.json]

``--load N`` runs N busy-looping processes meanwhile (the machine's other work counts too: see ``uptime``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's r4b_trl and the fuzz generators

THINK, NO_THINK = "<think>\n", "<think>\n\n</think>\n\n"
STEPS = ["We have {a} + {b} = {s}.", "So $x^2 - {a}x + {b} = 0$ gives $x = \\frac{{{a} \\pm \\sqrt{{{d}}}}}{{2}}$.",
         "Check: {a} \\times {b} = {p}, and {p} / {b} = {a}.", "Let $f(x) = {a}x + {b}$; then $f({s}) = {q}$.",
         "Hmm, wait. That is not right, try {b} instead.", "The area is $\\frac{{1}}{{2}} \\cdot {a} \\cdot {b} = {h}$.",
         "By symmetry the two cases give the same count, so we double it: {p}."]


def _reasoning(rng: random.Random, n_chars: int) -> str:
    out = []
    while sum(map(len, out)) < n_chars:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        out.append(rng.choice(STEPS).format(a=a, b=b, s=a + b, d=a * a - 4 * b, p=a * b, q=a * (a + b) + b,
                                            h=a * b / 2))
    return " ".join(out)[:n_chars]


def rollouts(n: int, seed: int = 0, group: int = 8) -> tuple[list[str], list[str], list[str], list[str]]:
    """(completions, solutions, forced_prefix, answer_kind) like a BPO generation batch: groups of ``group``
    rollouts of one prompt share its gold."""
    rng = random.Random(seed)
    comps, sols, prefixes, kinds = [], [], [], []
    for i in range(n):
        if i % group == 0:  # a new prompt: its gold is shared by the group's rollouts
            prompt = random.Random(rng.random())
            a, b = prompt.randint(2, 500), prompt.randint(2, 500)
            kind = prompt.choices(["math", "choice", "exact"], [0.8, 0.15, 0.05])[0]
            gold_pick, letter = prompt.random(), prompt.choice("ABCD")
        r = random.Random(gold_pick)
        if kind == "math":
            gold = r.choice([str(a + b), f"\\frac{{{a}}}{{{b}}}", f"{a}\\sqrt{{2}}", f"({a}, {b})", f"x^2+{a}"])
            right = rng.choice([gold, gold.replace("\\frac", "\\dfrac"), f"{gold}"])
            answer = rng.choice([f"The answer is $\\boxed{{{right}}}$.", f"\\boxed{{{right}}}",
                                 f"Therefore the answer is ${right}$.", f"\\boxed{{{a + b + 1}}}",
                                 f"\\boxed{{{right}}} or \\boxed{{{a}}}", f"**Final Answer**\n\n$$\\boxed{{{right}}}$$"])
        elif kind == "choice":
            gold = letter
            answer = rng.choice([f"The answer is ({gold}).", f"\\boxed{{{rng.choice('ABCD')}}}", f"{gold}"])
        else:
            gold = r.choice(["Paris", "yes", "no", "blue whale"])
            answer = rng.choice([f"The answer is {gold}.", f"\\boxed{{\\text{{{gold}}}}}", "Lyon"])
        mode = rng.choices(["thinking", "non_thinking", "truncated"], [0.5, 0.4, 0.1])[0]
        n_chars = rng.randint(1000, 4000)
        if mode == "thinking":
            prefix, text = THINK, _reasoning(rng, n_chars - 200) + "\n</think>\n\n" + answer
        elif mode == "non_thinking":
            prefix, text = NO_THINK, _reasoning(rng, n_chars - 200) + "\n\n" + answer
        else:
            prefix, text = THINK, _reasoning(rng, n_chars)
        comps.append(text)
        sols.append(gold)
        prefixes.append(prefix)
        kinds.append(kind)
    return comps, sols, prefixes, kinds


def _burn(stop):
    while not stop.is_set():
        pass


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rollouts", type=int, default=1024)
    ap.add_argument("--fuzz", type=int, default=10_000)
    ap.add_argument("--load", type=int, default=0, help="busy-looping processes while measuring")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from test_rewards_fuzz import adversarial

    from r4b_trl import rewards

    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in burners:
        p.start()
    try:
        rewards.accuracy_reward(["\\boxed{1}"], ["1"])  # start the worker pool
        comps, sols, prefixes, kinds = rollouts(args.rollouts, args.seed)
        pool = rewards.get_pool()
        kills0 = pool.kills if pool else 0
        start = time.monotonic()
        scores = rewards.accuracy_reward(comps, sols, forced_prefix=prefixes, answer_kind=kinds)
        elapsed = time.monotonic() - start
        res = {"rollouts": len(comps), "rollout_seconds": round(elapsed, 3),
               "completions_per_s": round(len(comps) / elapsed, 1), "workers": rewards.WORKERS,
               "rollout_mean_reward": round(statistics.mean(s or 0.0 for s in scores), 4),
               "rollout_killed": (pool.kills - kills0) if pool else None}
        print(f"realistic rollouts: {len(comps)} in {elapsed:.2f} s = {len(comps) / elapsed:.0f} completions/s "
              f"(mean reward {res['rollout_mean_reward']}, {rewards.WORKERS} workers, "
              f"{res['rollout_killed']} checks killed at the deadline)", flush=True)
        kills0 = pool.kills if pool else 0
        times, hits = [], 0
        for text, gold in adversarial(args.fuzz, args.seed):
            t = time.monotonic()
            r = rewards.accuracy_reward([text], [gold])[0]
            times.append(time.monotonic() - t)
            hits += r == 1.0
        times.sort() if times else times.append(0.0)
        q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
        res.update(fuzz=len(times), fuzz_p50_s=round(q(0.5), 4), fuzz_p99_s=round(q(0.99), 4),
                   fuzz_max_s=round(times[-1], 3), fuzz_killed=(pool.kills - kills0) if pool else None,
                   fuzz_scored_1=hits, timeout_s=rewards.TIMEOUT_S, load=args.load,
                   loadavg=[round(x, 2) for x in os.getloadavg()], cpus=os.cpu_count())
        print(f"adversarial fuzz: {len(times)} completions, p50 {q(0.5) * 1000:.1f} ms, p99 {q(0.99) * 1000:.1f} ms, "
              f"max {times[-1]:.2f} s; {res['fuzz_killed']} killed at the {rewards.TIMEOUT_S} s deadline; "
              f"{hits} scored 1 (none states an answer)", flush=True)
        print(f"load average {res['loadavg']} on {os.cpu_count()} CPUs, {args.load} extra busy processes")
    finally:
        stop.set()
        for p in burners:
            p.join(5)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
