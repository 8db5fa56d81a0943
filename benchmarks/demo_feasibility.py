"""Feasibility measurements for `make demo` (issue 6): the running-sum task and the demo model through TRL's
SFTTrainer and r4b-trl's TransformersBackend. Findings: docs/demo_feasibility.md.

Every sub-command appends one JSON record per measurement (with `uptime`'s load averages) to
``WORK/results.jsonl``. Typical sequence (each in its own process, so thread settings are clean):

    B="python benchmarks/demo_feasibility.py"
    $B setup      --work W                                   # task data + demo model
    $B throughput --work W --threads 1 --steps 40            # SFTTrainer vs hand loop, same batches
    $B sft        --work W --name base --data W/data/bimodal_sft.jsonl --steps 3000 --eval-every 250 --threads 2
    $B sft        --work W --name direct --data W/data/direct_sft.jsonl --steps 1500 --eval-every 250
    $B label      --work W --annotator W/base/step-1500 --name lab_base
    $B sft        --work W --name anneal --init W/base/step-3000 --data W/lab_base/anneal_sft.jsonl --lr 1e-3 ...
    $B gencost    --work W --model W/anneal/step-300
    $B eval       --work W --model W/anneal/step-300

Set ``PYTHONPATH`` to the repository root (or install the package).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

MODES = ("auto", "thinking", "non_thinking")


def load_avg() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()
    except Exception:
        return "?"


def record(work: Path, kind: str, **data) -> dict:
    rec = {"kind": kind, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "load": load_avg(), **data}
    with open(work / "results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)
    return rec


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def load(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    return model, tok


# ----------------------------------------------------------------------------------------------------------------
# Evaluation: greedy, per difficulty, three modes
# ----------------------------------------------------------------------------------------------------------------


def evaluate(model, tok, rows, modes=MODES, max_new_tokens: int = 40, batch_size: int = 1024) -> dict:
    """Greedy accuracy / think rate / mean assistant tokens (pre-fill + generated) per mode and difficulty, plus
    forced-thinking accuracy per k on hard items."""
    from r4b_trl.generation import TransformersBackend, generate_in_mode
    from r4b_trl.modes import ModePrefixes, parse_response

    was_training = model.training
    model.eval()
    backend = TransformersBackend(model, tok, batch_size=batch_size)
    convs = [[{"role": "user", "content": r["question"]}] for r in rows]
    p = ModePrefixes()
    out = {}
    for mode in modes:
        pre_len = len(tok.encode(p.prefix(mode), add_special_tokens=False))
        gens = generate_in_mode(backend, tok, convs, mode, max_new_tokens=max_new_tokens, temperature=0.0)
        acc, think, ntok = defaultdict(list), defaultdict(list), defaultdict(list)
        byk = defaultdict(list)
        for r, [(text, g)] in zip(rows, gens):
            parsed = parse_response(text)
            ok = parsed.answer == r["answer"]
            for key in (r["difficulty"], "all"):
                acc[key].append(ok)
                think[key].append(parsed.mode == "thinking")
                ntok[key].append(pre_len + g.num_tokens)
            if r["difficulty"] == "hard":
                byk[r["k"]].append(ok)
        out[mode] = {d: {"accuracy": round(sum(acc[d]) / len(acc[d]), 4),
                         "think_rate": round(sum(think[d]) / len(think[d]), 4),
                         "mean_tokens": round(sum(ntok[d]) / len(ntok[d]), 2)} for d in acc}
        out[mode]["hard_by_k"] = {str(k): round(sum(v) / len(v), 3) for k, v in sorted(byk.items())}
    out["gate"] = think_probability(model, tok, rows)
    if was_training:
        model.train()
    return out


def think_probability(model, tok, rows) -> dict:
    """The auto-mode gate as a number: after the auto pre-fill ``<think>``, the model's probability of the thinking
    decision token relative to the non-thinking one, P(think) = p(tok_think) / (p(tok_think) + p(tok_direct)),
    averaged per difficulty (greedy decoding only shows which side of 0.5 it is on)."""
    import torch

    from r4b_trl.templates import render_prompt
    from r4b_trl.tiny_models import mode_decision_tokens

    info = mode_decision_tokens(tok)
    if not (info["thinking"] and info["non_thinking"]):
        return {}
    t_id, d_id = tok.convert_tokens_to_ids([info["thinking"], info["non_thinking"]])
    prompts = [render_prompt(tok, [{"role": "user", "content": r["question"]}], "auto") for r in rows]
    enc = tok(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**enc).logits[:, -1, :]
    p = torch.softmax(logits.float(), -1)
    gate = (p[:, t_id] / (p[:, t_id] + p[:, d_id])).tolist()
    by = defaultdict(list)
    for r, g in zip(rows, gate):
        by[r["difficulty"]].append(g)
        by["all"].append(g)
    return {d: round(sum(v) / len(v), 4) for d, v in by.items()}


def brief(ev: dict) -> str:
    """One line: accuracy/think-rate per mode and difficulty."""
    parts = []
    if ev.get("gate"):
        parts.append("P(think|auto)[" + " ".join(f"{d}={v:.2f}" for d, v in ev["gate"].items() if d != "all") + "]")
    for mode, m in ev.items():
        if mode == "gate":
            continue
        cells = " ".join(f"{d}={v['accuracy']:.2f}/{v['think_rate']:.2f}" for d, v in m.items()
                         if isinstance(v, dict) and "accuracy" in v and d != "all")
        parts.append(f"{mode}[{cells}]")
    return "  ".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# setup
# ----------------------------------------------------------------------------------------------------------------


def cmd_setup(a):
    from r4b_trl.data.io import write_jsonl
    from r4b_trl.data.synthetic import DEFAULT_LEVELS, TaskSpec, _levels_arg, sft_row, write_task
    from r4b_trl.tiny_models import build_demo_model

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    spec = TaskSpec(width=a.width, levels=_levels_arg(a.levels) if a.levels else dict(DEFAULT_LEVELS),
                    easy_holdout=a.easy_holdout, style=a.style)
    pretrain = {lv: (a.pretrain_easy if lv == "easy" and a.pretrain_easy else a.pretrain) for lv in spec.levels}
    paths = write_task(work / "data", spec, seed=a.seed, n_test=a.n_test,
                       pools={"pretrain": pretrain, "curation": a.curation, "rl": a.rl}, bimodal=a.bimodal)
    from r4b_trl.data.io import read_jsonl

    pre = read_jsonl(paths["pretrain"])
    write_jsonl(work / "data" / "direct_sft.jsonl", [sft_row(r, "non_thinking") for r in pre])
    t_data = time.perf_counter() - t0
    build_demo_model(work / "model", num_layers=a.layers, hidden_size=a.hidden, seed=a.seed)
    t_model = time.perf_counter() - t0 - t_data
    info = json.loads((work / "model" / "r4b_tiny.json").read_text())
    record(work, "setup", data_seconds=round(t_data, 2), model_seconds=round(t_model, 2), spec=spec.to_dict(),
           pools={"pretrain": pretrain, "curation": a.curation, "rl": a.rl, "test": a.n_test}, bimodal=a.bimodal,
           model=info)


# ----------------------------------------------------------------------------------------------------------------
# SFT through TRL's SFTTrainer
# ----------------------------------------------------------------------------------------------------------------


def _sft_dataset(path):
    from datasets import Dataset

    from r4b_trl.data.io import read_jsonl

    rows = read_jsonl(path)
    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])


def _sft_config(out, steps, lr, batch, warmup, seed, min_lr_rate=0.05, logging_steps=50,
                gradient_checkpointing=False):
    # TRL 1.16 turns gradient checkpointing ON by default in SFTConfig and GRPOConfig: ~1.5x slower for nothing
    # at this size (measured, docs/demo_feasibility.md).
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": min_lr_rate},
        warmup_steps=warmup, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.98, max_grad_norm=1.0,
        use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=logging_steps,
        disable_tqdm=True, seed=seed, dataloader_num_workers=0, max_length=128,
        gradient_checkpointing=gradient_checkpointing,
    )


def cmd_sft(a):
    set_threads(a.threads)
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from r4b_trl.data.io import read_jsonl

    work = Path(a.work)
    out = work / a.name
    out.mkdir(parents=True, exist_ok=True)
    test = read_jsonl(a.test or (work / "data" / "test.jsonl"))
    model, tok = load(a.init or (work / "model"))
    _, eval_tok = load(a.init or (work / "model"))
    t_load = time.perf_counter()
    ds = _sft_dataset(a.data)
    trainer = SFTTrainer(model=model, args=_sft_config(out, a.steps, a.lr, a.batch, a.warmup, a.seed),
                         train_dataset=ds, processing_class=tok)
    t_prep = time.perf_counter() - t_load
    evals = set(range(a.eval_every, a.steps + 1, a.eval_every)) | {a.steps} if a.eval_every else {a.steps}

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.t0, self.eval_s, self.last = time.perf_counter(), 0.0, None

        def on_step_end(self, args, state, control, model=None, **kw):
            step = state.global_step
            if step not in evals:
                return
            t = time.perf_counter()
            train_s = t - self.t0 - self.eval_s
            ev = evaluate(model, eval_tok, test, modes=a.modes.split(","))
            loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
            if a.save:
                model.save_pretrained(out / f"step-{step}")
                tok.save_pretrained(out / f"step-{step}")
            eval_s = time.perf_counter() - t
            self.eval_s += eval_s
            print(f"[{a.name}] step {step} train {train_s:.0f}s loss {loss} eval {eval_s:.1f}s  {brief(ev)}", flush=True)
            record(work, "sft_eval", name=a.name, step=step, train_seconds=round(train_s, 1),
                   samples=step * a.batch, samples_per_s=round(step * a.batch / train_s, 1),
                   steps_per_s=round(step / train_s, 3), loss=loss, eval_seconds=round(eval_s, 2),
                   threads=torch.get_num_threads(), eval=ev)

    trainer.add_callback(Probe())
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    record(work, "sft_done", name=a.name, data=str(a.data), init=str(a.init or "scratch"), rows=len(ds),
           steps=a.steps, batch=a.batch, lr=a.lr, warmup=a.warmup, threads=torch.get_num_threads(),
           trainer_init_seconds=round(t_prep, 2), train_wall_seconds=round(total, 1),
           log=[h for h in trainer.state.log_history if "loss" in h][-3:])


# ----------------------------------------------------------------------------------------------------------------
# Throughput: SFTTrainer vs a hand-written loop on the same batches
# ----------------------------------------------------------------------------------------------------------------


def cmd_throughput(a):
    """Samples/s of SFTTrainer (gradient checkpointing off, and on as TRL 1.16 defaults) against a hand-written
    loop (AdamW, clip 1.0) on the trainer's own collated batches. The hand loop runs before and after the trainers
    and is averaged, to bracket load changes on a shared machine."""
    set_threads(a.threads)
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    work = Path(a.work)
    res = {}
    n_steps = a.steps + a.warmup_steps
    for fmt, path in (("bimodal", work / "data" / "bimodal_sft.jsonl"), ("direct", work / "data" / "direct_sft.jsonl")):
        full = _sft_dataset(path)
        t = time.perf_counter()
        SFTTrainer(model=load(work / "model")[0], args=_sft_config(work / "tmp_tp", 1, 2e-3, a.batch, 0, 0),
                   train_dataset=full, processing_class=load(work / "model")[1])
        init_full = time.perf_counter() - t
        ds = full.select(range(min(len(full), a.batch * n_steps)))

        def trainer_run(gc):
            model, tok = load(work / "model")
            trainer = SFTTrainer(model=model, args=_sft_config(work / "tmp_tp", n_steps, 2e-3, a.batch, 10, 0,
                                                               logging_steps=10 ** 6, gradient_checkpointing=gc),
                                 train_dataset=ds, processing_class=tok)
            marks = {}

            class Clock(TrainerCallback):
                def on_step_end(self, args, state, control, **kw):
                    marks[state.global_step] = time.perf_counter()

            trainer.add_callback(Clock())
            trainer.train()
            return trainer, marks[n_steps] - marks[a.warmup_steps]

        trainer, tr_s = trainer_run(False)
        batches = []
        for b in trainer.get_train_dataloader():
            batches.append({k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "labels")})
            if len(batches) >= n_steps:
                break
        seq = sum(b["input_ids"].shape[1] for b in batches) / len(batches)

        def hand_loop():
            model2, _ = load(work / "model")
            model2.train()
            opt = torch.optim.AdamW(model2.parameters(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01)
            t0 = None
            for i, b in enumerate(batches):
                if i == a.warmup_steps:
                    t0 = time.perf_counter()
                loss = model2(**b).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model2.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
            return time.perf_counter() - t0

        hand_before = hand_loop()
        _, tr_s2 = trainer_run(False)
        _, tr_gc = trainer_run(True)
        hand_after = hand_loop()
        hand_s = (hand_before + hand_after) / 2
        tr_s = (tr_s + tr_s2) / 2
        sps = lambda sec: round(a.steps * a.batch / sec, 1)  # noqa: E731
        res[fmt] = {"trainer_samples_per_s": sps(tr_s), "trainer_steps_per_s": round(a.steps / tr_s, 2),
                    "trainer_gc_samples_per_s": sps(tr_gc), "hand_samples_per_s": sps(hand_s),
                    "hand_steps_per_s": round(a.steps / hand_s, 2), "trainer_over_hand": round(tr_s / hand_s, 2),
                    "gc_over_no_gc": round(tr_gc / tr_s, 2), "mean_padded_len": round(seq, 1),
                    "hand_before_after_s": [round(hand_before, 2), round(hand_after, 2)],
                    "trainer_init_seconds_full": round(init_full, 2), "rows_full": len(full)}
        print(fmt, res[fmt], flush=True)
    record(work, "throughput", threads=torch.get_num_threads(), batch=a.batch, steps=a.steps, result=res)


# ----------------------------------------------------------------------------------------------------------------
# Curation: R-4B's performance heuristic (N samples at temperature 1, all wrong -> thinking)
# ----------------------------------------------------------------------------------------------------------------


def cmd_label(a):
    set_threads(a.threads)
    import torch

    from r4b_trl.data.io import read_jsonl, write_jsonl
    from r4b_trl.data.synthetic import reasoner, sft_row
    from r4b_trl.generation import TransformersBackend, generate_in_mode
    from r4b_trl.modes import parse_response

    work = Path(a.work)
    out = work / a.name
    out.mkdir(parents=True, exist_ok=True)
    pool = read_jsonl(a.pool or (work / "data" / "curation.jsonl"))
    if a.limit:
        pool = pool[: a.limit]
    model, tok = load(a.annotator)
    model.eval()
    backend = TransformersBackend(model, tok, batch_size=a.batch_size)
    convs = [[{"role": "user", "content": r["question"]}] for r in pool]
    t = time.perf_counter()
    gens = generate_in_mode(backend, tok, convs, a.mode, max_new_tokens=a.max_new_tokens, temperature=1.0, n=a.n,
                            seed=a.seed)
    gen_s = time.perf_counter() - t
    share, greedy_like = defaultdict(list), defaultdict(list)
    labelled = []
    for r, outs in zip(pool, gens):
        n_ok = sum(parse_response(text).answer == r["answer"] for text, _ in outs)
        thinking = n_ok == 0
        share[r["difficulty"]].append(thinking)
        share["all"].append(thinking)
        greedy_like[r["difficulty"]].append(n_ok / len(outs))
        labelled.append({**r, "label": "thinking" if thinking else "non_thinking", "n_correct": n_ok})
    write_jsonl(out / "labels.jsonl", labelled)
    mix = [sft_row(r, r["label"], trace=reasoner(r) if r["label"] == "thinking" else None) for r in labelled]
    import random

    random.Random(a.seed).shuffle(mix)
    write_jsonl(out / "anneal_sft.jsonl", mix)
    record(work, "label", name=a.name, annotator=str(a.annotator), mode=a.mode, n=a.n, items=len(pool),
           threads=torch.get_num_threads(), generate_seconds=round(gen_s, 2),
           items_per_s=round(len(pool) / gen_s, 1),
           thinking_share={k: round(sum(v) / len(v), 4) for k, v in share.items()},
           mean_sample_accuracy={k: round(sum(v) / len(v), 4) for k, v in greedy_like.items()})


# ----------------------------------------------------------------------------------------------------------------
# Generation cost of a GRPO/BPO-like step
# ----------------------------------------------------------------------------------------------------------------


def cmd_gencost(a):
    set_threads(a.threads)
    import torch

    from r4b_trl.data.io import read_jsonl
    from r4b_trl.generation import TransformersBackend, generate_in_mode

    work = Path(a.work)
    rl = read_jsonl(work / "data" / "rl.jsonl")[: a.prompts * a.repeats]
    model, tok = load(a.model)
    model.eval()
    backend = TransformersBackend(model, tok, batch_size=1024)
    res = {}
    for label, plan in (("grpo_auto_8", [("auto", a.group)]),
                        ("bpo_4think_4direct", [("thinking", a.group // 2), ("non_thinking", a.group // 2)])):
        times, tokens = [], []
        for rep in range(a.repeats):
            convs = [[{"role": "user", "content": r["question"]}] for r in rl[rep * a.prompts:(rep + 1) * a.prompts]]
            t = time.perf_counter()
            for mode, n in plan:
                outs = generate_in_mode(backend, tok, convs, mode, max_new_tokens=a.max_new_tokens, temperature=1.0,
                                        n=n, seed=rep)
                tokens += [g.num_tokens for row in outs for _, g in row]
            times.append(time.perf_counter() - t)
        times = times[1:] or times  # the first call warms up
        res[label] = {"seconds_per_step": round(sum(times) / len(times), 3),
                      "rollouts_per_s": round(a.prompts * a.group / (sum(times) / len(times)), 1),
                      "mean_generated_tokens": round(sum(tokens) / len(tokens), 2)}
        print(label, res[label], flush=True)
    record(work, "gencost", model=str(a.model), prompts=a.prompts, group=a.group, max_new_tokens=a.max_new_tokens,
           threads=torch.get_num_threads(), result=res)


def cmd_minirl(a):
    """A *hand-written* GRPO/BPO-like loop (not the project's BPOTrainer) to test, before the real trainers exist,
    whether a policy-gradient stage can move the auto gate of the annealed demo model:

    * ``bpo``: per prompt ``group/2`` rollouts pre-filled ``<think>\\n`` and ``group/2`` pre-filled
      ``<think>\\n\\n</think>\\n\\n`` (the paper: pre-fill in the prompt, so with this tokenizer the decision
      token -- ``\\n`` vs ``\\n\\n`` right after ``<think>`` -- is never trained);
    * ``bpo_mode_token``: the same rollouts, but the decision token is scored as the first completion token (the
      issue-8 ``train_mode_token`` idea, without importance correction);
    * ``grpo``: ``group`` rollouts pre-filled ``<think>`` (auto), every generated token trained.

    Reward 1 if the answer is right; advantage (r - mean) / std within the prompt's group (0 if all equal); loss
    -A * sum(log-prob of trained tokens) / max_new_tokens (Dr.GRPO-style), AdamW without weight decay, clip 1.0."""
    set_threads(a.threads)
    import random

    import torch

    from r4b_trl.data.io import read_jsonl
    from r4b_trl.modes import ModePrefixes, parse_response
    from r4b_trl.templates import render_prompt

    work = Path(a.work)
    test = read_jsonl(a.test or (work / "data" / "test.jsonl"))
    rl = read_jsonl(work / "data" / "rl.jsonl")
    model, tok = load(a.model)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    p = ModePrefixes()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    auto_ids = tok.encode(p.auto, add_special_tokens=False)

    def rollouts(rows, mode, n):
        prompts = [render_prompt(tok, [{"role": "user", "content": r["question"]}], mode) for r in rows]
        enc = tok(prompts, return_tensors="pt", add_special_tokens=False)  # fixed-width prompts: no padding
        model.eval()
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=n,
                                 max_new_tokens=a.max_new_tokens, eos_token_id=eos, pad_token_id=pad)
        L = enc["input_ids"].shape[1]
        res = []
        for j in range(out.shape[0]):
            ids = out[j, L:].tolist()
            end = ids.index(eos) + 1 if eos in ids else len(ids)
            comp = ids[:end]
            text = p.prefix(mode) + tok.decode([t for t in comp if t != eos], skip_special_tokens=True)
            r = rows[j // n]
            res.append({"row": r, "prompt_ids": enc["input_ids"][j // n].tolist(), "comp": comp,
                        "reward": float(parse_response(text).answer == r["answer"]), "mode": mode})
        return res

    def train_step(groups):
        seqs, masks, advs = [], [], []
        for g in groups:
            rs = torch.tensor([x["reward"] for x in g])
            std = rs.std(unbiased=False)
            adv = torch.zeros_like(rs) if std < 1e-6 else (rs - rs.mean()) / (std + 1e-4)
            for x, A in zip(g, adv.tolist()):
                if A == 0:
                    continue
                ids = x["prompt_ids"] + x["comp"]
                n_train = len(x["comp"])
                if a.algo == "bpo_mode_token":
                    # Score the pre-fill tokens after "<think>" too: the decision token is one of them.
                    n_train += len(x["prompt_ids"]) - (_suffix_start(x["prompt_ids"], auto_ids) + len(auto_ids))
                seqs.append(ids)
                masks.append([0] * (len(ids) - n_train) + [1] * n_train)
                advs.append(A)
        if not seqs:
            return 0
        model.train()
        width = max(map(len, seqs))
        inp = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        att = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        msk = torch.tensor([m + [0] * (width - len(m)) for m in masks], dtype=torch.float)
        logits = model(input_ids=inp, attention_mask=att).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, inp[:, 1:, None])[..., 0]
        loss = -(torch.tensor(advs)[:, None] * lp * msk[:, 1:]).sum() / (a.max_new_tokens * len(groups) * a.group)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return len(seqs)

    def probe(it, t_train):
        ev = evaluate(model, tok, test, modes=("auto",))
        rec = {"iteration": it, "train_seconds": round(t_train, 1), "gate": ev["gate"],
               "auto": {d: v for d, v in ev["auto"].items() if d != "hard_by_k"}}
        print(f"[{a.algo}] it {it} {t_train:.0f}s {brief(ev)}", flush=True)
        return rec

    curve = [probe(0, 0.0)]
    t_train = 0.0
    for it in range(1, a.iterations + 1):
        t = time.perf_counter()
        rows = [rl[rng.randrange(len(rl))] for _ in range(a.prompts)]
        if a.algo == "grpo":
            outs = rollouts(rows, "auto", a.group)
            groups = [outs[i * a.group:(i + 1) * a.group] for i in range(len(rows))]
        else:
            th = rollouts(rows, "thinking", a.group // 2)
            nt = rollouts(rows, "non_thinking", a.group // 2)
            h = a.group // 2
            groups = [th[i * h:(i + 1) * h] + nt[i * h:(i + 1) * h] for i in range(len(rows))]
        train_step(groups)
        t_train += time.perf_counter() - t
        if it % a.eval_every == 0 or it == a.iterations:
            curve.append(probe(it, t_train))
    final = evaluate(model, tok, test)
    print(brief(final))
    if a.save:
        model.save_pretrained(work / f"minirl_{a.algo}")
        tok.save_pretrained(work / f"minirl_{a.algo}")
    record(work, "minirl", algo=a.algo, model=str(a.model), lr=a.lr, prompts=a.prompts, group=a.group,
           iterations=a.iterations, max_new_tokens=a.max_new_tokens, threads=torch.get_num_threads(),
           seconds_per_iteration=round(t_train / a.iterations, 3), curve=curve, final=final)


def _suffix_start(ids, sub):
    """Index of the last occurrence of ``sub`` in ``ids``."""
    for i in range(len(ids) - len(sub), -1, -1):
        if ids[i:i + len(sub)] == sub:
            return i
    raise ValueError("auto pre-fill not found in the prompt")


def cmd_eval(a):
    set_threads(a.threads)
    import torch

    from r4b_trl.data.io import read_jsonl

    work = Path(a.work)
    test = read_jsonl(a.test or (work / "data" / "test.jsonl"))
    model, tok = load(a.model)
    t = time.perf_counter()
    ev = evaluate(model, tok, test)
    s = time.perf_counter() - t
    print(brief(ev))
    record(work, "eval", model=str(a.model), items=len(test), threads=torch.get_num_threads(),
           seconds=round(s, 2), eval=ev)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--work", required=True)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--test", default=None, help="test rows (default WORK/data/test.jsonl)")
        return p

    p = common(sub.add_parser("setup"))
    p.add_argument("--levels", default=None, help="e.g. easy=2,med=4,hard=8-12 (default: the library's)")
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--easy-holdout", type=int, default=0)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--style", default="copy")
    p.add_argument("--pretrain", type=int, default=1000)
    p.add_argument("--pretrain-easy", type=int, default=3000, help="easy pre-training items (0: --pretrain)")
    p.add_argument("--curation", type=int, default=1000)
    p.add_argument("--rl", type=int, default=1000)
    p.add_argument("--bimodal", default="both")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.set_defaults(fn=cmd_setup)

    p = common(sub.add_parser("sft"))
    p.add_argument("--name", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--init", default=None)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--save", action="store_true", default=True)
    p.set_defaults(fn=cmd_sft)

    p = common(sub.add_parser("throughput"))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.set_defaults(fn=cmd_throughput)

    p = common(sub.add_parser("label"))
    p.add_argument("--name", required=True)
    p.add_argument("--annotator", required=True)
    p.add_argument("--pool", default=None)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--mode", default="non_thinking")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(fn=cmd_label)

    p = common(sub.add_parser("gencost"))
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=6)
    p.set_defaults(fn=cmd_gencost)

    p = common(sub.add_parser("minirl"))
    p.add_argument("--model", required=True)
    p.add_argument("--algo", choices=["bpo", "bpo_mode_token", "grpo"], default="bpo")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--save", action="store_true")
    p.set_defaults(fn=cmd_minirl)

    p = common(sub.add_parser("eval"))
    p.add_argument("--model", required=True)
    p.set_defaults(fn=cmd_eval)

    a = ap.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main()
