"""``train_mode_token``: the forced decision token moved into the completion, and the decision-token estimator.

A mixin over TRL's ``GRPOTrainer``. ``_generate`` moves the forced prefix from the decision token on out of the
prompt ids into the head of the completion ids after generation (every backend generates exactly as before); only
the decision token is trained (TRL's ``tool_mask``).

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

import logging
import math

import torch

from ..modes import PREFIX_MARKER, Mode

logger = logging.getLogger(__name__)

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

    def _decision_split(self) -> dict:
        """For ``train_mode_token``: per forced mode, the prefix ids from the decision token on (moved from the prompt
        to the completion) and the prompt-side prefix text left in the prompt."""
        if not self.args.train_mode_token:
            return {}
        d = self.decision
        tok = self._tokenizer
        split = {}
        for mode, ids in ((Mode.THINKING, d.thinking_ids), (Mode.NON_THINKING, d.non_thinking_ids)):
            moved = list(ids[d.position:])
            split[self.prefixes.prefix(mode)] = {
                "mode": mode, "moved": moved, "prompt_side": tok.decode(list(ids[:d.position])),
                "log_share": math.log(self.args.thinking_fraction if mode is Mode.THINKING
                                      else 1.0 - self.args.thinking_fraction),
            }
        logger.info("train_mode_token: tokens moved into the completion per mode: %s",
                    {v["mode"].value: tok.convert_ids_to_tokens(v["moved"]) for v in split.values()})
        return split

    def _generate(self, prompts):
        out = super()._generate(prompts)
        self._moved_rows = None
        if not self._moved_ids:
            return out
        prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images = out
        tool_mask = tool_mask if tool_mask is not None else [[1] * len(c) for c in completion_ids]
        self._moved_rows = []
        for i, prompt in enumerate(prompts):
            info = self._moved_ids.get(prompt[-1].get(PREFIX_MARKER) if isinstance(prompt, list) else None)
            k = len(info["moved"]) if info else 0
            self._moved_rows.append((info["log_share"], info["mode"] is Mode.THINKING, k) if k else None)
            if not k:
                continue
            if list(prompt_ids[i][-k:]) != info["moved"]:
                raise RuntimeError(
                    f"train_mode_token: the prompt does not end with the expected decision tokens {info['moved']} "
                    f"(got {list(prompt_ids[i][-k:])}); the tokenizer merges the prefix with its context.")
            prompt_ids[i] = list(prompt_ids[i][:-k])
            completion_ids[i] = info["moved"] + list(completion_ids[i])
            # Train the decision token; keep forced tokens after it in the sequence but out of the loss.
            tool_mask[i] = [1] + [0] * (k - 1) + list(tool_mask[i])
            if logprobs is not None:  # no vLLM importance correction for forced tokens (NaN is neutral in TRL)
                logprobs[i] = [None] * k + list(logprobs[i])
            # TRL re-renders the prompt for vision features: it must now end with the prompt-side prefix only.
            prompt[-1][PREFIX_MARKER] = info["prompt_side"]
        return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images

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
