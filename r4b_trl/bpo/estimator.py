"""The decision-token estimator (``train_mode_token``): a mixin over TRL's ``GRPOTrainer`` loss.

The forced decision token (``\\n`` vs ``\\n\\n`` after ``<think>``) is sampled by the forcing — mode m with
probability ``share_m`` (``thinking_fraction`` or its complement) — not by the policy. The token is clipped like any
other token against the *previous policy* (TRL's ``old_per_token_logps``, or the detached current log-probs when
TRL skips them because the data is on-policy), and the forcing is corrected by a detached weight
``w = π_old(d) / share`` on that token's advantage. ``E_forcing[w·A·∇log π(d)] = Σ_d π_old(d)·A(d)·∇log π(d)``:
the policy gradient of the auto-mode gate, with PPO's usual trust region and no ceiling.
Derivation: ``docs/bpo-estimator.md``.

Two hooks, no copied TRL code: ``_compute_loss`` marks the batch, and ``_get_per_token_logps_and_entropies`` (which
TRL's ``_compute_loss`` calls once, before it reads the advantages) turns the advantages into a (B, T) tensor whose
column 0 is ``decision_advantage · w``. TRL's loss accepts (B, T) advantages. No extra forward pass.
"""

from __future__ import annotations

import torch

DEC_ADV = "bpo_decision_advantage"  # (B,) advantage of completion column 0 (before the weight)
DEC_LOG_SHARE = "bpo_decision_log_share"  # (B,) log(share of the forced mode) for rows whose column 0 is forced; NaN else
DEC_THINKING = "bpo_decision_thinking"  # (B,) 1.0 thinking / 0.0 non-thinking for forced rows; NaN else


def decision_token_advantages(inputs: dict, per_token_logps: torch.Tensor):
    """(B, T) advantages: every token gets ``inputs["advantages"]``; column 0 gets ``DEC_ADV · w`` where
    ``w = π_old(token 0) / share`` on rows whose token 0 was forced (else 1). Returns (advantages, w, old_logp0)."""
    adv = inputs["advantages"]
    B, T = per_token_logps.shape
    adv2 = (adv.unsqueeze(1).expand(B, T) if adv.dim() == 1 else adv).clone().to(per_token_logps.dtype)
    old = inputs.get("old_per_token_logps")
    old0 = (old[:, 0] if old is not None else per_token_logps[:, 0]).detach().to(per_token_logps.dtype)
    log_share = inputs.get(DEC_LOG_SHARE)
    if log_share is None:  # no forced decision token in the batch
        log_share = torch.full_like(old0, float("nan"))
    log_share = log_share.to(old0.device)
    moved = ~torch.isnan(log_share)
    w = torch.where(moved, torch.exp(old0 - torch.nan_to_num(log_share)), torch.ones_like(old0))
    adv2[:, 0] = inputs[DEC_ADV].to(adv2.dtype) * w
    return adv2, w, old0


class DecisionTokenEstimator:
    """Mixin placed before ``GRPOTrainer`` in the bases. Active only for batches that carry ``DEC_ADV``."""

    _bpo_loss_inputs: dict | None = None

    def _compute_loss(self, model, inputs):
        if DEC_ADV not in inputs:
            return super()._compute_loss(model, inputs)
        # The buffered batch is reused across iterations (num_iterations > 1): edit a shallow copy only.
        self._bpo_loss_inputs = dict(inputs)
        try:
            return super()._compute_loss(model, self._bpo_loss_inputs)
        finally:
            self._bpo_loss_inputs = None

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        inputs, self._bpo_loss_inputs = self._bpo_loss_inputs, None
        if inputs is not None:
            inputs["advantages"], w, old0 = decision_token_advantages(inputs, out[0])
            self._log_decision_metrics(inputs, w, old0)
        return out

    def _log_decision_metrics(self, inputs, w, old0) -> None:
        """``bpo/decision_weight`` (mean w) and ``bpo/decision_prob/<mode>``: the mean old probability of the forced
        decision token, i.e. on the training prompts the gate P(think) (thinking rows) and 1 − gate (non-thinking)."""
        thinking = inputs.get(DEC_THINKING)
        if thinking is None:
            return
        thinking = thinking.to(w.device)
        rows = {"thinking": thinking == 1.0, "non_thinking": thinking == 0.0}
        p = torch.exp(old0).float()
        stats = [(rows["thinking"] | rows["non_thinking"]), rows["thinking"], rows["non_thinking"]]
        local = torch.stack([torch.stack([(w.float() * m).sum() if i == 0 else (p * m).sum(), m.float().sum()])
                             for i, m in enumerate(stats)])
        total = self.accelerator.reduce(local, reduction="sum")
        mode = "train" if self.model.training else "eval"
        for (key, (s, n)) in zip(("bpo/decision_weight", "bpo/decision_prob/thinking", "bpo/decision_prob/non_thinking"),
                                 total.tolist()):
            if n > 0:
                self._metrics[mode][key].append(s / n)
