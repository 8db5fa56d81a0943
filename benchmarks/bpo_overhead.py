"""Median step-time ratio BPOTrainer / GRPOTrainer on the same tiny model, data and config.

The two trainers run alternately (GRPO, BPO, GRPO, BPO, ...) in one process so that machine load affects both alike.
Step time is TRL's own ``step_time`` metric (generation + scoring + backward + optimizer, per optimizer step),
logged every step; the first step of each run is dropped as warm-up.

    python benchmarks/bpo_overhead.py [--rounds 6] [--steps 8] [--model DIR]

Prints each round's medians and the overall ratio. Target: <= 1.02.
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


def _run(kind, model_dir, tok, steps, out, seed):
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from r4b_trl.bpo import BPOConfig, BPOTrainer

    common = dict(output_dir=str(out), per_device_train_batch_size=8, num_generations=4, max_completion_length=24,
                  max_steps=steps, use_cpu=True, bf16=False, report_to=[], logging_steps=1, save_strategy="no",
                  gradient_checkpointing=False, learning_rate=1e-5, seed=seed, beta=0.001,
                  disable_tqdm=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if kind == "bpo":
        trainer = BPOTrainer(model=model, reward_funcs=[_reward], args=BPOConfig(**common), train_dataset=_rows(),
                             processing_class=tok)
    else:
        trainer = GRPOTrainer(model=model, reward_funcs=[_reward], args=GRPOConfig(**common), train_dataset=_rows(),
                              processing_class=tok)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h]
    return times[1:]


def main(argv=None):
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from r4b_trl.tiny_models import build_text_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--model", default=None, help="a model dir (default: build the tiny text model)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    tmp = Path(tempfile.mkdtemp(prefix="bpo-overhead-"))
    model_dir = args.model or str(build_text_model(tmp / "model"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    all_t = {"grpo": [], "bpo": []}
    t0 = time.time()
    for r in range(args.rounds):
        order = ("grpo", "bpo") if r % 2 == 0 else ("bpo", "grpo")
        meds = {}
        for kind in order:
            ts = _run(kind, model_dir, tok, args.steps, tmp / f"{kind}-{r}", seed=r)
            all_t[kind] += ts
            meds[kind] = statistics.median(ts)
        print(f"round {r}: median step_time grpo={meds['grpo'] * 1000:.1f} ms  bpo={meds['bpo'] * 1000:.1f} ms  "
              f"ratio={meds['bpo'] / meds['grpo']:.3f}", flush=True)
    g, b = statistics.median(all_t["grpo"]), statistics.median(all_t["bpo"])
    print(f"\n{len(all_t['grpo'])} GRPO steps, {len(all_t['bpo'])} BPO steps, {time.time() - t0:.0f} s wall")
    print(f"median step_time: GRPOTrainer {g * 1000:.1f} ms, BPOTrainer {b * 1000:.1f} ms")
    print(f"BPO/GRPO median step-time ratio: {b / g:.3f}  (target <= 1.02)")


if __name__ == "__main__":
    main()
