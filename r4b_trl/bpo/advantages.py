"""BPO's advantages: R-4B's mixed group advantage, decomposed, and the options beyond the paper.

Everything here is plain Python on lists (one generation batch, gathered across processes, in TRL's group layout),
so tests can recompute it from the rollout dump. See ``docs/bpo-estimator.md``.

Per group of G rollouts with rewards ``r`` (``None`` = unscorable, e.g. truncated with
``mask_truncated_completions``), forced modes T (thinking) / N (non-thinking) and scorable counts ``n_T``, ``n_N``:

* TRL's (and R-4B's) mixed advantage ``(r_i − μ) / (σ + 1e-4)`` splits exactly into
  a **content** part ``C_i = (r_i − μ_mode(i)) / (σ + 1e-4)`` and a **mode credit**
  ``M_T = (n_N/n)·Δ / s``, ``M_N = −(n_T/n)·Δ / s`` with ``Δ = μ_T − μ_N`` and ``s = σ + 1e-4``.
* ``advantage_grouping="per_mode"`` normalises the content part within each forced mode instead:
  ``C_i = (r_i − μ_mode) / (σ_mode + 1e-4)``.
* ``thinking_margin = b`` replaces Δ in the mode credit by ``mode_gap(Δ, b)``: thinking is preferred only when it
  beats non-thinking by more than b, and the margin never turns a group where thinking is the more accurate mode
  into one that prefers non-thinking (see :func:`mode_gap`). In groups with no reward spread (σ = 0, where only the
  margin speaks) ``s`` is the batch's reward std (+1e-4), so the margin's size is never normalised away.
* ``mode_credit="sequence"`` (R-4B): every completion token carries ``C_i + M_i``; ``"decision_token"``: the
  decision token carries ``M_i`` and the other tokens ``C_i``.

Free (unforced, ``"auto"``) groups get TRL's plain group advantage on every token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError

EPS = 1e-4  # TRL's std epsilon (grpo_trainer.py: advantages / (std_rewards + 1e-4))


@dataclass(frozen=True)
class AdvantageSpec:
    grouping: str = "mixed"  # mixed | per_mode
    credit: str = "sequence"  # sequence | decision_token
    margin: float = 0.0
    scale_rewards: str = "group"  # TRL's scale_rewards: group | batch | none

    @property
    def is_paper(self) -> bool:
        """True when the advantages are exactly TRL's mixed group advantages (nothing to recompute)."""
        return self.grouping == "mixed" and self.credit == "sequence" and self.margin == 0.0

    @classmethod
    def from_args(cls, args) -> "AdvantageSpec":
        return cls(args.advantage_grouping, args.mode_credit, float(args.thinking_margin), args.scale_rewards)


def mode_gap(delta: float, margin: float, credit: str = "decision_token") -> float:
    """The mode-level gap Δ' = "how much better thinking is" after the margin b.

    * Δ ≤ 0 (non-thinking at least as accurate): Δ − b, so a tie (every answer right) prefers non-thinking by b.
    * Δ > 0 (thinking more accurate), decision-token credit: max(Δ − b, 0): thinking is preferred only by its lead
      over b, and never *dis*preferred: the decision of a lucky direct guess never beats thinking's.
    * Δ > 0, sequence credit: Δ unchanged. There the mode credit shares its tokens with the answer credit, and in
      R-4B's mixed group a correct direct answer and a correct thinking answer get the same advantage; any margin
      here would rank the lucky direct guess above correct thinking.
    """
    if delta <= 0:
        return delta - margin
    if credit == "decision_token":
        return max(delta - margin, 0.0)
    return delta


def _mean(xs):
    return sum(xs) / len(xs)


def _std(xs):
    """Sample std (Bessel), like TRL's ``nanstd``; 0 for fewer than 2 values."""
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def bpo_advantages(rewards: list, modes: list[str], num_generations: int, spec: AdvantageSpec):
    """Per-rollout advantages for one gathered generation batch.

    Args: ``rewards`` (float or None/NaN for unscorable), ``modes`` (the forced mode of each rollout:
    ``thinking`` / ``non_thinking`` / ``auto``), in TRL's layout of consecutive groups of ``num_generations``.

    Returns ``(sequence, decision, groups)``: the advantage of every completion token but the decision token, the
    advantage of the decision token (equal to ``sequence`` unless ``credit="decision_token"``), and per group a dict
    ``{mode_gap, raw_gap, scale, margin_decided}`` (None entries for free groups); ``margin_decided``: thinking was
    at least as accurate (Δ ≥ 0) but after the margin it is not preferred (Δ' ≤ 0).
    """
    G = num_generations
    r = [None if (x is None or (isinstance(x, float) and math.isnan(x))) else float(x) for x in rewards]
    scored = [x for x in r if x is not None]
    batch_std = _std(scored)
    seq, dec, groups = [0.0] * len(r), [0.0] * len(r), []
    for g0 in range(0, len(r), G):
        idx = list(range(g0, min(g0 + G, len(r))))
        vals = [r[i] for i in idx if r[i] is not None]
        if not vals:
            groups.append({"mode_gap": None, "raw_gap": None, "scale": None, "margin_decided": False})
            continue
        mu, sd = _mean(vals), _std(vals)
        if spec.scale_rewards == "group":
            s = sd + EPS
        elif spec.scale_rewards == "batch":
            s = batch_std + EPS
        else:
            s = 1.0
        forced = all(modes[i] in ("thinking", "non_thinking") for i in idx)
        if not forced:  # a free group (forced→free schedule): TRL's plain group advantage
            for i in idx:
                if r[i] is not None:
                    seq[i] = dec[i] = (r[i] - mu) / s
            groups.append({"mode_gap": None, "raw_gap": None, "scale": s, "margin_decided": False})
            continue
        by_mode = {m: [r[i] for i in idx if modes[i] == m and r[i] is not None] for m in ("thinking", "non_thinking")}
        n_t, n_n = len(by_mode["thinking"]), len(by_mode["non_thinking"])
        mode_mu = {m: (_mean(v) if v else mu) for m, v in by_mode.items()}
        if n_t and n_n:
            raw = mode_mu["thinking"] - mode_mu["non_thinking"]
            gap = mode_gap(raw, spec.margin, spec.credit)
        else:
            raw = gap = None
        # Scale of the mode credit: the group's (TRL's) scale, except that a group with no reward spread borrows the
        # batch std, so that a margin is not divided by 1e-4 there (and not normalised away either).
        s_mode = s
        if spec.scale_rewards == "group" and sd == 0.0:
            s_mode = (batch_std + EPS) if batch_std > 0 else 1.0
        n = n_t + n_n
        credit = {"thinking": 0.0, "non_thinking": 0.0}
        if gap is not None:
            credit = {"thinking": (n_n / n) * gap / s_mode, "non_thinking": -(n_t / n) * gap / s_mode}
        for i in idx:
            if r[i] is None:
                continue
            m = modes[i]
            if spec.grouping == "per_mode":
                sm = _std(by_mode[m])
                s_c = (sm + EPS) if spec.scale_rewards == "group" else s
                content = (r[i] - mode_mu[m]) / s_c
            else:
                content = (r[i] - mode_mu[m]) / s
            if spec.credit == "decision_token":
                seq[i], dec[i] = content, credit[m]
            else:
                seq[i] = dec[i] = content + credit[m]
        groups.append({"mode_gap": gap, "raw_gap": raw, "scale": s_mode,
                       "margin_decided": bool(gap is not None and spec.margin > 0 and raw >= 0 and gap <= 0)})
    return seq, dec, groups


# ------------------------------------------------------------------------------------------ forced → free schedule


def parse_schedule(text: str | None) -> list[tuple[int, float]]:
    """``"0:1.0,100:0.5,200:0.3"`` → [(0, 1.0), (100, 0.5), (200, 0.3)]: from each step on, that share of groups is
    forced (BPO); the rest are free (auto pre-fill, the model chooses). Empty/None = always forced."""
    if text is None or not str(text).strip():
        return []
    out = []
    for part in str(text).split(","):
        try:
            step, frac = part.split(":")
            out.append((int(step), float(frac)))
        except ValueError as e:
            raise UsageError(f"BPO: forced_schedule entry {part!r} is not 'step:fraction' "
                             "(e.g. '0:1.0,100:0.5,200:0.3').") from e
    if [s for s, _ in out] != sorted({s for s, _ in out}) or out[0][0] != 0:
        raise UsageError(f"BPO: forced_schedule {text!r} must start at step 0 with strictly increasing steps.")
    if not all(0.0 <= f <= 1.0 for _, f in out):
        raise UsageError(f"BPO: forced_schedule {text!r}: fractions must be in [0, 1].")
    return out


def forced_share_at(schedule: list[tuple[int, float]], step: int) -> float:
    share = 1.0
    for s, f in schedule:
        if step >= s:
            share = f
    return share


def group_is_forced(schedule: list[tuple[int, float]], step: int, group_index: int, groups_per_batch: int) -> bool:
    """Whether global group ``group_index`` of the generation at ``step`` is forced. Deterministic and the same on every
    rank: with k = step·groups_per_batch + group_index, group k is forced iff ⌊(k+1)p⌋ − ⌊kp⌋ = 1, which forces
    exactly ⌊Kp⌋ of any K consecutive groups (to ±1), even with one group per batch."""
    if not schedule:
        return True
    p = forced_share_at(schedule, step)
    k = step * groups_per_batch + group_index
    return math.floor((k + 1) * p + 1e-9) - math.floor(k * p + 1e-9) == 1
