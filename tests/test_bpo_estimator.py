"""The decision-token estimator, trained through TRL's real loss (``GRPOTrainer._compute_loss`` and
``_get_per_token_logps_and_entropies``) on a softmax gate: two decision tokens, forced G·f / G·(1−f) per group,
Bernoulli rewards per mode, two PPO iterations per generation (so the clip acts, against TRL's old log-probs)."""

import math
from types import SimpleNamespace

import pytest
import torch
from bpo_helpers import torch_threads

torch_threads(1)

THINK, NO_THINK = 0, 1  # the two decision tokens of the toy vocabulary


class GateModel(torch.nn.Module):
    """A policy over two decision tokens, shaped like a transformers causal LM for TRL's ``fused_lm_head`` call:
    ``log_probs[:, t]`` is the log-probability of ``labels[:, t]``."""

    def __init__(self, p_think: float):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([math.log(p_think), math.log(1 - p_think)]))

    def forward(self, input_ids, attention_mask=None, labels=None, **kw):
        logp = torch.log_softmax(self.theta, dim=-1)
        tok = labels.clamp(min=0)
        log_probs = logp[tok] * (labels >= 0)
        entropy = -(logp.exp() * logp).sum().expand_as(log_probs)
        return SimpleNamespace(log_probs=log_probs, entropy=entropy)

    def p_think(self) -> float:
        return torch.softmax(self.theta, -1)[THINK].item()


def _toy_trainer(model, epsilon, loss_type="grpo"):
    """A BPOTrainer shell carrying only what TRL's ``_compute_loss`` reads (no model load, no generation)."""
    from collections import defaultdict

    from accelerate import Accelerator

    from r4b_trl.bpo import BPOTrainer

    t = object.__new__(BPOTrainer)
    t.model = model
    t.accelerator = Accelerator(cpu=True)
    t.args = SimpleNamespace(use_bias_correction_kl=True, delta=None, steps_per_generation=1)
    t.loss_type, t.beta, t.importance_sampling_level = loss_type, 0.0, "token"
    t.epsilon_low = t.epsilon_high = epsilon
    t.top_entropy_quantile, t.off_policy_mask_threshold = 1.0, None
    t.use_vllm, t.vllm_importance_sampling_correction = False, False
    t.aux_loss_enabled, t._entropy_bonus_enabled = False, False
    t.current_gradient_accumulation_steps = 1
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return t


def _batch(model, f, p_correct, G, n_groups, gen, estimator):
    from r4b_trl.bpo.advantages import AdvantageSpec, bpo_advantages
    from r4b_trl.bpo.estimator import DEC_ADV, DEC_LOG_SHARE, DEC_THINKING

    k = round(G * f)
    modes = (["thinking"] * k + ["non_thinking"] * (G - k)) * n_groups
    rewards = [float(torch.rand((), generator=gen).item() < p_correct[m]) for m in modes]
    seq, dec, _ = bpo_advantages(rewards, modes, G, AdvantageSpec())
    tokens = torch.tensor([[THINK if m == "thinking" else NO_THINK] for m in modes])
    B = len(modes)
    log_share = torch.tensor([math.log(f if m == "thinking" else 1 - f) for m in modes])
    with torch.no_grad():
        old = torch.log_softmax(model.theta, -1)[tokens]  # what TRL computes when num_iterations > 1
    inputs = {"prompt_ids": torch.full((B, 1), 7), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
              "completion_ids": tokens, "completion_mask": torch.ones(B, 1, dtype=torch.long),
              "advantages": torch.tensor(seq), "num_items_in_batch": torch.tensor(float(B))}
    if estimator == "decoupled":
        inputs.update({"old_per_token_logps": old, DEC_ADV: torch.tensor(dec), DEC_LOG_SHARE: log_share,
                       DEC_THINKING: torch.tensor([float(m == "thinking") for m in modes])})
    else:  # the shipped-before estimator: old log-prob pinned to log(share) inside the clip, no weight
        inputs["old_per_token_logps"] = log_share.unsqueeze(1)
    return inputs


def _train(f, epsilon, better, p_start, estimator="decoupled", steps=30, seed=0):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = GateModel(p_start)
    trainer = _toy_trainer(model, epsilon)
    opt = torch.optim.Adam(model.parameters(), lr=0.2)
    p_correct = {"thinking": 0.9, "non_thinking": 0.3} if better == "thinking" else {"thinking": 0.3, "non_thinking": 0.9}
    for _ in range(steps):
        inputs = _batch(model, f, p_correct, G=8, n_groups=8, gen=gen, estimator=estimator)
        for _ in range(2):  # num_iterations = 2: the second update is clipped against the generation-time policy
            opt.zero_grad()
            trainer._compute_loss(model, inputs).backward()
            opt.step()
    p = model.p_think()
    return p if better == "thinking" else 1 - p, trainer


@pytest.mark.parametrize("epsilon", [0.2, 0.28])
@pytest.mark.parametrize("f", [0.25, 0.5, 0.75])
def test_decision_token_estimator_converges_to_the_better_mode(f, epsilon):
    for better in ("thinking", "non_thinking"):
        for p_start in (0.05, 0.95):  # from either side
            p_better, _ = _train(f, epsilon, better, p_start)
            assert p_better >= 0.99, (f, epsilon, better, p_start, p_better)


def test_pinned_estimator_has_a_ceiling():
    """Negative control: the old log-prob pinned to log(share) stalls near share·(1+ε) — the bug the estimator fixes."""
    p_better, _ = _train(0.5, 0.2, "thinking", 0.05, estimator="pinned", steps=60)
    assert 0.5 < p_better < 0.8


def test_weight_and_clip_reach_the_loss():
    """One loss call, checked by hand: column 0 carries A·π_old(d)/share; on-policy (no old log-probs in the batch)
    π_old is the detached current policy; and the gradient is the policy gradient of the gate."""
    from r4b_trl.bpo.estimator import DEC_ADV, DEC_LOG_SHARE, DEC_THINKING

    model = GateModel(0.2)
    trainer = _toy_trainer(model, 0.2)
    f = 0.25
    tokens = torch.tensor([[THINK], [NO_THINK], [NO_THINK], [NO_THINK]])
    adv = torch.tensor([1.5, -0.5, -0.5, -0.5])
    inputs = {"prompt_ids": torch.zeros(4, 1, dtype=torch.long), "prompt_mask": torch.ones(4, 1, dtype=torch.long),
              "completion_ids": tokens, "completion_mask": torch.ones(4, 1, dtype=torch.long), "advantages": adv,
              "num_items_in_batch": torch.tensor(4.0), DEC_ADV: adv.clone(),
              DEC_LOG_SHARE: torch.tensor([math.log(f)] + [math.log(1 - f)] * 3),
              DEC_THINKING: torch.tensor([1.0, 0.0, 0.0, 0.0])}
    loss = trainer._compute_loss(model, inputs)
    loss.backward()
    p = torch.softmax(model.theta.detach(), -1)
    w = torch.tensor([p[THINK] / f] + [p[NO_THINK] / (1 - f)] * 3)
    # GRPO loss, one token per sequence, on-policy: -mean_i(w_i A_i r_i), r_i = 1, d r_i = d log π(d_i).
    onehot = torch.nn.functional.one_hot(tokens[:, 0], 2).float()
    dlogp = onehot - p  # d log softmax / d theta
    want = -(w * adv).unsqueeze(1).mul(dlogp).mean(0)
    assert torch.allclose(model.theta.grad, want, atol=1e-6)
    # The batch handed in was not edited (TRL reuses it across iterations).
    assert inputs["advantages"].dim() == 1 and torch.equal(inputs["advantages"], adv)
    m = trainer._metrics["train"]
    assert m["bpo/decision_prob/thinking"][-1] == pytest.approx(p[THINK].item(), abs=1e-6)
    assert m["bpo/decision_weight"][-1] == pytest.approx(w.mean().item(), abs=1e-6)
