"""``BPOConfig``: TRL's ``GRPOConfig`` plus the knobs of Bi-mode Policy Optimization."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import isclose

from trl import GRPOConfig

from ..errors import UsageError
from ..modes import ModeError, PREFIX_FAMILIES


@dataclass
class BPOConfig(GRPOConfig):
    r"""Configuration for :class:`~r4b_trl.bpo.BPOTrainer`.

    Every field of TRL's ``GRPOConfig`` applies. BPO adds:

    * ``force_modes`` (default True): each group of ``num_generations`` rollouts holds exactly
      ``thinking_fraction × G`` thinking rollouts (assistant pre-filled with ``<think>\n``) and the rest
      non-thinking (pre-filled with ``<think>\n\n</think>\n\n``). False gives vanilla GRPO with free mode choice
      (every rollout pre-filled with the auto prefix ``<think>``): the baseline the paper compares against.
    * ``thinking_fraction`` (default 0.5, the paper's g + g).
    * ``prefix_family`` / ``mode_prefixes``: the prefix strings (defaults follow R-4B / Qwen3).
    * Beyond the paper (off by default): ``train_mode_token`` (the decision-token estimator), ``thinking_margin``,
      ``advantage_grouping``, ``mode_credit``, ``forced_schedule`` (see ``r4b_trl/bpo/advantages.py``).
    * Telemetry: the auto-mode probe (``probe_steps``), the collapse alarm, and the rollout dump.

    Defaults are one objective: the paper's, as the shipped recipes run it. Where they differ from TRL's
    ``GRPOConfig``: ``beta=0.001`` (KL to the reference; TRL 0.0), ``loss_type="grpo"`` (GRPO's sequence-mean
    aggregation; TRL "dapo") and ``mask_truncated_completions=True`` (TRL False): a cut-off rollout has no answer
    yet, so it is neither trained on nor, in BPO, counted in its group's baseline (its reward becomes
    unscorable); otherwise a length limit trains long thinking as *wrong* and manufactures thinking atrophy.
    ``scale_rewards="group"`` (the paper's group-std normalisation) is TRL's default.
    """

    beta: float = field(default=0.001, metadata={"help": "KL coefficient (the paper's objective has a KL term)."})
    loss_type: str = field(default="grpo", metadata={"help": "TRL's loss type; BPO's default is GRPO's sequence-mean "
                                                             "aggregation (the paper's objective; TRL's default is dapo)."})
    mask_truncated_completions: bool = field(default=True, metadata={"help": "Leave truncated rollouts out of the loss "
        "and (BPO) out of their group's baseline: a cut-off answer is not a wrong one (TRL's default is false)."})
    force_modes: bool = field(default=True, metadata={"help": "Force G·f thinking + G·(1−f) non-thinking rollouts "
                                                              "per prompt (BPO). False = vanilla GRPO, free mode choice."})
    thinking_fraction: float = field(default=0.5, metadata={"help": "Share of each group forced to think."})
    prefix_family: str = field(default="qwen3", metadata={"help": f"Prefix strings: one of {sorted(PREFIX_FAMILIES)}."})
    mode_prefixes: dict | None = field(default=None, metadata={"help": "Override the prefixes: keys open_tag, "
                                                                       "close_tag, auto, thinking, non_thinking."})
    train_mode_token: bool = field(default=False, metadata={"help": "Move the forced mode-decision token from the "
        "prompt into the completion and train it with the decision-token estimator: clipped against the previous "
        "policy, its advantage weighted by the detached correction pi_old(token)/share (docs/bpo-estimator.md)."})
    thinking_margin: float = field(default=0.0, metadata={"help": "Margin b >= 0 on the mode-level comparison in each "
        "group: thinking is preferred only when its rollouts beat the non-thinking ones by more than b (in reward "
        "units). Never makes a lucky direct guess beat thinking where thinking is the more accurate mode. 0 = paper."})
    advantage_grouping: str = field(default="mixed", metadata={"help": "mixed (R-4B: one group of G) | per_mode "
        "(answer-token advantages normalised within each forced mode; the mode credit stays mode-level)."})
    mode_credit: str = field(default="sequence", metadata={"help": "sequence (R-4B: every token carries the mode "
        "credit) | decision_token (only the decision token does; needs train_mode_token)."})
    forced_schedule: str | None = field(default=None, metadata={"help": "Forced -> free schedule 'step:share,...', "
        "e.g. '0:1.0,100:0.5,200:0.3': from each step on, that share of groups is forced (BPO), the rest are free "
        "auto rollouts. Unset = always forced."})
    # Auto-mode probe
    probe_steps: int = field(default=0, metadata={"help": "Run the auto-mode probe every N steps (0 = off)."})
    probe_max_new_tokens: int | None = field(default=None, metadata={"help": "Probe generation limit "
                                                                             "(default max_completion_length)."})
    probe_batch_size: int = field(default=32, metadata={"help": "Probe generation batch size."})
    probe_group_column: str | None = field(default="group", metadata={"help": "Probe column to break think-rate down by."})
    # Collapse alarm
    collapse_low: float = field(default=0.02, metadata={"help": "Alarm when the probe think-rate stays at or below."})
    collapse_high: float = field(default=0.98, metadata={"help": "Alarm when the probe think-rate stays at or above."})
    collapse_patience: int = field(default=3, metadata={"help": "Consecutive probes before the alarm fires."})
    stop_on_collapse: bool = field(default=False, metadata={"help": "Stop training when the alarm fires."})
    # Rollout dump
    dump_rollouts: bool = field(default=True, metadata={"help": "Write <output_dir>/rollouts/step_<N>.jsonl."})
    dump_first_steps: int = field(default=5, metadata={"help": "Dump every step up to this step."})
    dump_steps: int = field(default=50, metadata={"help": "Then dump every N steps."})

    def __post_init__(self):
        self._check_bpo()
        super().__post_init__()

    def _check_bpo(self):
        """Every wrong combination is refused here, before anything (model, data) is loaded."""
        G = self.num_generations
        if self.force_modes:
            self._check_split(G, "num_generations")
            if self.num_generations_eval is not None:
                self._check_split(self.num_generations_eval, "num_generations_eval")
        if self.train_mode_token:
            if not self.force_modes:
                raise UsageError("BPO: train_mode_token needs force_modes=true (it trains the forced decision token).")
            if self.importance_sampling_level != "token":
                raise UsageError(
                    f"BPO: train_mode_token needs importance_sampling_level='token' (got "
                    f"{self.importance_sampling_level!r}): a sequence-level ratio would average the decision token's "
                    "forcing correction into the whole sequence.")
            if self.loss_type in ("vespo", "luspo"):
                raise UsageError(f"BPO: train_mode_token does not support loss_type={self.loss_type!r} (its "
                                 "sequence-level weights would mix the decision token's correction into the sequence).")
        if self.advantage_grouping not in ("mixed", "per_mode"):
            raise UsageError(f"BPO: advantage_grouping={self.advantage_grouping!r}; use 'mixed' or 'per_mode'.")
        if self.mode_credit not in ("sequence", "decision_token"):
            raise UsageError(f"BPO: mode_credit={self.mode_credit!r}; use 'sequence' or 'decision_token'.")
        if self.mode_credit == "decision_token" and not self.train_mode_token:
            raise UsageError("BPO: mode_credit='decision_token' needs train_mode_token=true (the decision token must be "
                             "in the completion to carry the credit).")
        if not (self.thinking_margin >= 0.0 and math.isfinite(self.thinking_margin)):
            raise UsageError(f"BPO: thinking_margin={self.thinking_margin} must be >= 0 (reward units).")
        custom = self.advantage_grouping != "mixed" or self.mode_credit != "sequence" or self.thinking_margin > 0
        if custom and not self.force_modes:
            raise UsageError("BPO: thinking_margin / advantage_grouping / mode_credit act on forced groups; they need "
                             "force_modes=true.")
        if custom and self.multi_objective_aggregation != "sum_then_normalize":
            raise UsageError("BPO: thinking_margin / advantage_grouping / mode_credit need "
                             "multi_objective_aggregation='sum_then_normalize'.")
        if self.forced_schedule:
            from .advantages import parse_schedule

            parse_schedule(self.forced_schedule)
            if not self.force_modes:
                raise UsageError("BPO: forced_schedule needs force_modes=true (it moves from forced to free groups).")
        if self.probe_steps < 0 or self.dump_steps < 1 or self.collapse_patience < 1:
            raise UsageError("BPO: probe_steps must be >= 0, dump_steps >= 1 and collapse_patience >= 1.")
        if not 0 <= self.collapse_low < self.collapse_high <= 1:
            raise UsageError("BPO: need 0 <= collapse_low < collapse_high <= 1.")
        if self.mode_prefixes is None and self.prefix_family not in PREFIX_FAMILIES:
            raise ModeError(f"BPO: unknown prefix_family {self.prefix_family!r}; known: {sorted(PREFIX_FAMILIES)}.")

    def _check_split(self, G: int, name: str) -> None:
        n_think = G * self.thinking_fraction
        if not isclose(n_think, round(n_think)):
            raise UsageError(
                f"BPO: thinking_fraction={self.thinking_fraction} × {name}={G} = {n_think} is not a whole number of "
                "rollouts. Choose it (e.g. an even number for the default 0.5) so that both modes get a whole number "
                "of rollouts.")
        if not 1 <= round(n_think) <= G - 1:
            raise UsageError(
                f"BPO: thinking_fraction={self.thinking_fraction} with {name}={G} leaves a mode with no rollouts (each "
                "group needs at least one thinking and one non-thinking rollout).")

    @property
    def num_thinking(self) -> int:
        return round(self.num_generations * self.thinking_fraction) if self.force_modes else 0
