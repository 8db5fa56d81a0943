"""Median step-time ratio BPOTrainer / GRPOTrainer on the same tiny model, data and config.

Both run the same objective with beta = 0 (no reference forward for either), exactly 128-token completions (the forced
pre-fill is then about 2 % of the tokens) and identical loss settings. The two trainers run alternately
(GRPO, BPO, BPO, GRPO, ...) in one process so that machine load affects both alike. Step time is the wall time of
each optimizer step, from the trainer's step-begin to step-end callbacks: data loading, generation, scoring,
advantages, loss, backward and the optimizer. The first step of each run is dropped as warm-up.

    nice -n 10 python benchmarks/bpo_overhead.py [--rounds 6] [--steps 6] [--model DIR] [--profile OUT.prof]

Prints each round's medians and the overall ratio. Target: <= 1.02. ``--profile`` writes a cProfile of one BPO run
(host-side costs: ``python -m pstats OUT.prof``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _rows(n=64):
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"What is {i}+{i * 3}?"}], "solution": str(4 * i), "prompt_id": str(i)}
        for i in range(n)
    ])


def _reward(completions, **kw):
    return [float(len(c[0]["content"]) % 2) for c in completions]


class _StepTimer:
    """CPU time (this process) and wall time of each optimizer step (generation and scoring included)."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer.t0 = (time.process_time(), time.perf_counter())

            def on_step_end(self, args, state, control, **kw):
                timer.times.append((time.process_time() - timer.t0[0], time.perf_counter() - timer.t0[1]))

        self.times, self.t0, self.callback = [], None, CB()


def _run(kind, model_dir, tok, steps, out, seed, extra=None):
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from r4b_trl.bpo import BPOConfig, BPOTrainer

    # BPO's rollout dump writes every step up to dump_first_steps (5) and then every 50: measure the steady state.
    extra = {"dump_first_steps": 0, **(extra or {})}
    common = dict(output_dir=str(out), per_device_train_batch_size=8, num_generations=4, max_completion_length=128,
                  max_steps=steps, use_cpu=True, bf16=False, report_to=[], logging_steps=1, save_strategy="no",
                  gradient_checkpointing=False, learning_rate=1e-5, seed=seed, beta=0.0, loss_type="grpo",
                  mask_truncated_completions=False, disable_tqdm=True,
                  generation_kwargs={"min_new_tokens": 128})  # every completion exactly 128 tokens: no length noise
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if kind == "bpo":
        trainer = BPOTrainer(model=model, reward_funcs=[_reward], args=BPOConfig(**common, **extra),
                             train_dataset=_rows(), processing_class=tok)
    else:
        trainer = GRPOTrainer(model=model, reward_funcs=[_reward], args=GRPOConfig(**common), train_dataset=_rows(),
                              processing_class=tok)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    timer = _StepTimer()
    trainer.add_callback(timer.callback)
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return timer.times[1:], statistics.mean(lengths[1:])


def _host_time(path, steps):
    """From the profile: BPO's own Python per step (self time of r4b_trl functions, run-time only: the trainer's
    __init__ and module imports excluded) against the training loop's time per step."""
    import pstats

    st = pstats.Stats(path).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    own = sum(v[2] for (f, _, name), v in st.items()
              if "/r4b_trl/" in f and name not in ("__init__", "<module>") and "tiny_models" not in f)
    loop = max((v[3] for (f, _, name), v in st.items() if name == "_inner_training_loop"), default=float("nan"))
    print(f"profile written to {path}")
    print(f"BPO's own Python (r4b_trl, self time): {own / steps * 1000:.1f} ms per step; training loop "
          f"{loop / steps * 1000:.0f} ms per step (profiled) -> {own / loop * 100:.2f} %")


def main(argv=None):
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from r4b_trl.tiny_models import build_text_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--profile", default=None, help="write a cProfile of one BPO run here and exit")
    p.add_argument("--train_mode_token", action="store_true", help="measure BPO with the decision-token estimator")
    p.add_argument("--model", default=None, help="a model dir (default: build the tiny text model)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    tmp = Path(tempfile.mkdtemp(prefix="bpo-overhead-"))
    model_dir = args.model or str(build_text_model(tmp / "model"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    extra = {"train_mode_token": True} if args.train_mode_token else None
    if args.profile:
        import cProfile

        cProfile.runctx("_run('bpo', model_dir, tok, args.steps, tmp / 'prof', 0, extra)", globals(),
                        {"_run": _run, "model_dir": model_dir, "tok": tok, "args": args, "tmp": tmp, "extra": extra},
                        args.profile)
        _host_time(args.profile, args.steps)
        return
    all_t = {"grpo": [], "bpo": []}
    lens = {"grpo": [], "bpo": []}
    t0 = time.time()
    for r in range(args.rounds):
        order = ("grpo", "bpo") if r % 2 == 0 else ("bpo", "grpo")
        meds = {}
        for kind in order:
            ts, mean_len = _run(kind, model_dir, tok, args.steps, tmp / f"{kind}-{r}", seed=r,
                                 extra=extra if kind == "bpo" else None)
            all_t[kind] += ts
            lens[kind].append(mean_len)
            meds[kind] = [statistics.median(t[i] for t in ts) for i in (0, 1)]
        print(f"round {r}: median step CPU time grpo={meds['grpo'][0] * 1000:.0f} ms  bpo={meds['bpo'][0] * 1000:.0f} ms  "
              f"ratio={meds['bpo'][0] / meds['grpo'][0]:.3f}   (wall ratio {meds['bpo'][1] / meds['grpo'][1]:.3f})",
              flush=True)
    g = [statistics.median(t[i] for t in all_t["grpo"]) for i in (0, 1)]
    b = [statistics.median(t[i] for t in all_t["bpo"]) for i in (0, 1)]
    print(f"\n{len(all_t['grpo'])} GRPO steps, {len(all_t['bpo'])} BPO steps, {time.time() - t0:.0f} s wall, "
          f"torch threads {args.threads}, 128-token completions, beta 0")
    print(f"median step: GRPOTrainer {g[0] * 1000:.0f} ms CPU ({g[1] * 1000:.0f} ms wall), "
          f"BPOTrainer {b[0] * 1000:.0f} ms CPU ({b[1] * 1000:.0f} ms wall)")
    print(f"mean completion length: GRPO {statistics.mean(lens['grpo']):.1f}, BPO {statistics.mean(lens['bpo']):.1f} "
          "tokens (BPO's is without the forced pre-fill)")
    print(f"BPO/GRPO median step-time ratio: {b[0] / g[0]:.3f} CPU time, {b[1] / g[1]:.3f} wall  (target <= 1.02; "
          "CPU time is the robust one on a shared machine)")


if __name__ == "__main__":
    main()
