"""BPO's advantage options: the thinking margin on hand-built groups, and per_mode grouping, decision-token credit,
the margin and the forced -> free schedule in training, with every advantage recomputed from the rollout dump by
the formulas of docs/bpo-estimator.md (written out again here, independently of r4b_trl/bpo/advantages.py)."""

import hashlib
import json
import math
import statistics
from collections import defaultdict

import pytest
from bpo_helpers import GenerateRecorder, bpo_args, ends_with_ids, length_reward, prefix_ids, read_dump, text_rows
from bpo_helpers import torch_threads

torch_threads(1)

T, N = "thinking", "non_thinking"


def _adv(rewards, modes, G, **kw):
    from r4b_trl.bpo.advantages import AdvantageSpec, bpo_advantages

    return bpo_advantages(rewards, modes, G, AdvantageSpec(**kw))


def _group(t_correct, n_correct, size=4):
    """A group of 2·size: thinking rollouts first, ``t_correct`` of them right; then non-thinking."""
    r = [1.0] * t_correct + [0.0] * (size - t_correct) + [1.0] * n_correct + [0.0] * (size - n_correct)
    return r, [T] * size + [N] * size


# ------------------------------------------------------------------------------------------- the margin, by hand


def test_margin_size_changes_advantages_under_group_std():
    """Where both modes are right on every rollout (σ = 0) and in a spread group with equal mode accuracy, the margin
    moves the advantages in proportion to b (a cost on the reward would be scaled away by the group std)."""
    spread, spread_modes = _group(2, 2)  # a tie with spread
    allright, allright_modes = _group(4, 4)
    hard, hard_modes = _group(4, 0)  # gives the batch a reward spread
    rewards, modes = allright + spread + hard, allright_modes + spread_modes + hard_modes
    for credit in ("sequence", "decision_token"):
        out = {b: _adv(rewards, modes, 8, margin=b, credit=credit) for b in (0.0, 0.05, 0.2)}
        seq0, dec0, _ = out[0.0]
        for b in (0.05, 0.2):
            seq, dec, groups = out[b]
            carrier = dec if credit == "decision_token" else seq
            base = dec0 if credit == "decision_token" else seq0
            shift = [c - c0 for c, c0 in zip(carrier, base)]
            for g in (0, 1):  # the two tied groups: non-thinking pushed up, thinking down, ∝ b
                assert all(s < 0 for s in shift[8 * g:8 * g + 4]) and all(s > 0 for s in shift[8 * g + 4:8 * g + 8])
            if credit == "sequence":  # thinking is better by 1 > b: untouched where credit and answer share tokens
                assert shift[16:] == [0.0] * 8 and groups[2]["mode_gap"] == 1.0
        s05 = [c - c0 for c, c0 in zip(*(x[1] if credit == "decision_token" else x[0] for x in (out[0.05], out[0.0])))]
        s20 = [c - c0 for c, c0 in zip(*(x[1] if credit == "decision_token" else x[0] for x in (out[0.2], out[0.0])))]
        for a, b in zip(s05[:16], s20[:16]):
            assert b == pytest.approx(4 * a, rel=1e-6)
        # In the all-right group the scale is the batch reward std (the group has none): independent recomputation.
        batch_sd = statistics.stdev(rewards)
        assert s20[4] == pytest.approx(0.5 * 0.2 / (batch_sd + 1e-4), rel=1e-6)


@pytest.mark.parametrize("credit", ["sequence", "decision_token"])
@pytest.mark.parametrize("b", [0.05, 0.1, 0.3, 0.6, 0.9])
def test_margin_never_favours_a_lucky_direct_guess(credit, b):
    """In every group where thinking is the more accurate mode, the tokens that carry the mode credit (the decision
    token, or the whole sequence) of a correct thinking answer get at least the advantage of a correct direct one."""
    cases = [_group(t, n, size) for size in (4, 8) for t in range(size + 1) for n in range(1, t)]  # gaps down to 1/8
    for rewards, modes in cases:
        G = len(rewards)
        other, other_modes = _group(G // 2, G // 2, G // 2)  # an all-right group in the same batch
        seq, dec, _ = _adv(rewards + other, modes + other_modes, G, margin=b, credit=credit)
        carrier = dec if credit == "decision_token" else seq
        right_t = [carrier[i] for i in range(G) if modes[i] == T and rewards[i] == 1.0]
        right_n = [carrier[i] for i in range(G) if modes[i] == N and rewards[i] == 1.0]
        assert min(right_t) >= max(right_n) - 1e-9, (rewards, b, credit)


@pytest.mark.parametrize("b", [0.0, 0.1, 0.2, 0.3])
def test_thinking_preferred_only_beyond_the_margin(b):
    """Decision-token credit: the thinking decision beats the non-thinking one iff thinking's accuracy lead > b."""
    for t in range(9):
        for n in range(9):
            rewards, modes = _group(t, n, size=8)
            _, dec, _ = _adv(rewards, modes, 16, margin=b, credit="decision_token")
            lead = (t - n) / 8
            assert (dec[0] > dec[8]) == (lead > b + 1e-9), (t, n, b)
            if lead > 0:
                assert dec[0] >= dec[8]


def test_paper_defaults_reproduce_trl():
    """With the defaults the decomposition C + M is TRL's mixed advantage (r − μ)/(σ + 1e-4), unscorable rows 0."""
    rewards = [1.0, 0.0, None, 1.0, 0.0, 0.0, 1.0, 0.5]
    modes = [T] * 4 + [N] * 4
    seq, dec, _ = _adv(rewards, modes, 8)
    vals = [r for r in rewards if r is not None]
    m, sd = statistics.mean(vals), statistics.stdev(vals)
    for r, a, d in zip(rewards, seq, dec):
        assert a == d == pytest.approx(0.0 if r is None else (r - m) / (sd + 1e-4), abs=1e-9)


# ------------------------------------------------------------------------------------------- recomputed from dumps


def _ref_step(rows, G, grouping="mixed", credit="sequence", margin=0.0):
    """Independent recomputation of one step's (sequence, decision) advantages from its dump rows."""
    rows = sorted(rows, key=lambda r: (int(r["group_id"].split("-")[1]), r["index_in_group"]))
    scored = [r["reward"] for r in rows if r["reward"] is not None]
    batch_sd = statistics.stdev(scored) if len(scored) > 1 else 0.0
    out = {}
    for gi in range(0, len(rows), G):
        g = rows[gi:gi + G]
        vals = [r["reward"] for r in g if r["reward"] is not None]
        mu = statistics.mean(vals)
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        if all(r["forced_mode"] == "auto" for r in g):
            for r in g:
                a = 0.0 if r["reward"] is None else (r["reward"] - mu) / (sd + 1e-4)
                out[id(r)] = (a, a)
            continue
        mt = [r["reward"] for r in g if r["forced_mode"] == T and r["reward"] is not None]
        mn = [r["reward"] for r in g if r["forced_mode"] == N and r["reward"] is not None]
        gap = statistics.mean(mt) - statistics.mean(mn) if mt and mn else 0.0  # one mode all unscorable: no credit
        if mt and mn and gap <= 0:
            gap -= margin
        elif credit == "decision_token":
            gap = max(gap - margin, 0.0)
        scale = (sd + 1e-4) if sd > 0 else (batch_sd + 1e-4)
        share_other = {T: len(mn) / len(vals), N: -len(mt) / len(vals)}
        for r in g:
            if r["reward"] is None:
                out[id(r)] = (0.0, 0.0)
                continue
            own = mt if r["forced_mode"] == T else mn
            mode_credit = share_other[r["forced_mode"]] * gap / scale
            if grouping == "per_mode":
                own_sd = statistics.stdev(own) if len(own) > 1 else 0.0
                content = (r["reward"] - statistics.mean(own)) / (own_sd + 1e-4)
            else:
                content = (r["reward"] - statistics.mean(own)) / (sd + 1e-4)
            out[id(r)] = (content, mode_credit) if credit == "decision_token" else (content + mode_credit,) * 2
    return [out[id(r)] for r in rows], rows


def _train(model_path, tok, args, rows=None):
    from transformers import AutoModelForCausalLM

    from r4b_trl.bpo import BPOTrainer

    trainer = BPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), reward_funcs=[length_reward], args=args,
                         train_dataset=rows if rows is not None else text_rows(), processing_class=tok)
    rec = GenerateRecorder(trainer.model, tok.pad_token_id)
    trainer.train()
    return trainer, rec


def _check_dump(dump, G, **kw):
    by_step = defaultdict(list)
    for r in dump:
        by_step[r["step"]].append(r)
    spread = 0
    for rows in by_step.values():
        want, rows = _ref_step(rows, G, **kw)
        for (a, d), r in zip(want, rows):
            assert r["advantage"] == pytest.approx(a, abs=1e-4), r
            assert r["decision_advantage"] == pytest.approx(d, abs=1e-4), r
        spread += len({r["reward"] for r in rows}) > 1
    assert spread  # the rewards had spread: the check had something to check


@pytest.mark.parametrize("opts", [
    dict(advantage_grouping="per_mode"),
    dict(advantage_grouping="per_mode", train_mode_token=True, mode_credit="decision_token", thinking_margin=0.1),
    dict(train_mode_token=True, mode_credit="decision_token"),
    dict(thinking_margin=0.2),
])
def test_advantages_recomputed_from_the_dump(tiny_text_model, text_tokenizer, tmp_path, opts):
    args = bpo_args(tmp_path, per_device_train_batch_size=16, num_generations=8, max_steps=2, **opts)
    trainer, _ = _train(tiny_text_model, text_tokenizer, args)
    dump = read_dump(args.output_dir)
    _check_dump(dump, 8, grouping=opts.get("advantage_grouping", "mixed"), credit=opts.get("mode_credit", "sequence"),
                margin=opts.get("thinking_margin", 0.0))
    # What the loss sees is what the dump says: the last generation's buffered tensors, as multisets.
    buf = trainer._buffered_inputs[0]
    last = [r for r in dump if r["step"] == 2]
    dec = buf.get("bpo_decision_advantage", buf["advantages"])  # only carried when the decision token is trained
    got = sorted(zip(buf["advantages"].tolist(), dec.tolist()))
    want = sorted((r["advantage"], r["decision_advantage"]) for r in last)
    assert [x for pair in got for x in pair] == pytest.approx([x for pair in want for x in pair], abs=1e-5)
    # ... and TRL's completions table shows them too (in the dump's order, which is TRL's layout).
    assert list(trainer._logs["advantages"]) == pytest.approx([r["advantage"] for r in last], abs=1e-5)


def test_forced_to_free_schedule(tiny_text_model, text_tokenizer, tmp_path):
    """'0:1.0,1:0.5': the first generation forces both groups; the second forces one of two and leaves the other free
    (auto pre-fill on every rollout, TRL's plain group advantage); recomputed from the dump and the prompts sent."""
    args = bpo_args(tmp_path, per_device_train_batch_size=8, num_generations=4, max_steps=3,
                    forced_schedule="0:1.0,1:0.5", thinking_margin=0.1)
    trainer, rec = _train(tiny_text_model, text_tokenizer, args)
    dump = read_dump(args.output_dir)
    assert set(trainer._logs["extra"]["forced_mode"]) == {"auto", T, N}  # named in TRL's completions table
    forced_groups = {}
    for r in dump:
        forced_groups.setdefault(r["step"], defaultdict(set))[r["group_id"]].add(r["forced_mode"])
    assert all(m == {T, N} for m in forced_groups[1].values())
    for step in (2, 3):
        kinds = sorted("auto" if m == {"auto"} else "forced" for m in forced_groups[step].values())
        assert kinds == ["auto", "forced"], forced_groups[step]
    # Over steps 2-3 (share 0.5, 4 groups): exactly 2 free. The free groups' prompts end with the auto pre-fill only.
    auto_ids = prefix_ids(text_tokenizer, "<think>")
    think_ids = prefix_ids(text_tokenizer, "<think>\n")
    for prompts, _ in rec.calls[1:]:
        n_auto = sum(ends_with_ids(p, auto_ids) and not ends_with_ids(p, think_ids) for p in prompts)
        assert n_auto == 4
    _check_dump(dump, 4, margin=0.1)


def test_stable_prompt_id_fallback(tiny_text_model, text_tokenizer, tmp_path):
    from datasets import Dataset

    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i}+{i}?"}]} for i in range(8)])
    args = bpo_args(tmp_path, per_device_train_batch_size=8, max_steps=1)
    _train(tiny_text_model, text_tokenizer, args, rows)
    want = {hashlib.sha1(json.dumps([{"role": "user", "content": f"What is {i}+{i}?"}], sort_keys=True,
                                    ensure_ascii=False).encode()).hexdigest()[:16] for i in range(8)}
    got = {r["prompt_id"] for r in read_dump(args.output_dir)}
    assert got <= want and len(got) == 2


def test_truncated_rollouts_leave_the_baseline(tiny_text_model, text_tokenizer, tmp_path, monkeypatch):
    """BPO's default mask_truncated_completions: a cut-off rollout is unscorable (reward None, advantage 0) and the
    group's mean/std use the finished rollouts only (recomputed from the dump)."""
    from types import SimpleNamespace

    from bpo_helpers import FakeLLM, _Logprob, install_fake_vllm

    from r4b_trl.bpo import BPOTrainer

    class SometimesCut(FakeLLM):  # the prompt's last 1-3 tokens, then EOS on two rollouts in three
        def generate(self, prompts, sampling_params=None, use_tqdm=False):
            self.n = getattr(self, "n", 0)
            outs = []
            for p in prompts:
                ids = list(p["prompt_token_ids"])
                self.n += 1
                toks = ids[-(1 + self.n % 3):] + ([self.eos_id] if self.n % 3 else [])
                outs.append(SimpleNamespace(prompt_token_ids=ids, outputs=[
                    SimpleNamespace(token_ids=toks, logprobs=[{t: _Logprob(-0.5)} for t in toks])]))
            return outs

    from transformers import AutoModelForCausalLM

    args = bpo_args(tmp_path, per_device_train_batch_size=16, num_generations=8, max_steps=2,
                    mask_truncated_completions=True)
    trainer = BPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_text_model), reward_funcs=[length_reward],
                         args=args, train_dataset=text_rows(), processing_class=text_tokenizer)
    install_fake_vllm(trainer, "colocate", monkeypatch)
    trainer.vllm_generation.llm = SometimesCut(text_tokenizer.convert_tokens_to_ids("<|im_end|>"))
    trainer.train()
    dump = read_dump(args.output_dir)
    cut = [r for r in dump if r["truncated"]]
    assert cut and len(cut) < len(dump)
    assert all(r["reward"] is None and r["advantage"] == 0.0 for r in cut)
    assert all(r["reward"] is not None for r in dump if not r["truncated"])
    _check_dump(dump, 8)
