"""``BPOConfig``: TRL's ``GRPOConfig`` plus the knobs of Bi-mode Policy Optimization."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import isclose

from trl import GRPOConfig

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
    * Telemetry: the auto-mode probe (``probe_steps``), the collapse alarm, and the rollout dump.

    ``beta`` defaults to 0.001 here (TRL's default is 0.0): the paper's objective has a KL term to the reference.
    """

    beta: float = field(default=0.001, metadata={"help": "KL coefficient (the paper's objective has a KL term)."})
    force_modes: bool = field(default=True, metadata={"help": "Force G·f thinking + G·(1−f) non-thinking rollouts "
                                                              "per prompt (BPO). False = vanilla GRPO, free mode choice."})
    thinking_fraction: float = field(default=0.5, metadata={"help": "Share of each group forced to think."})
    prefix_family: str = field(default="qwen3", metadata={"help": f"Prefix strings: one of {sorted(PREFIX_FAMILIES)}."})
    mode_prefixes: dict | None = field(default=None, metadata={"help": "Override the prefixes: keys open_tag, "
                                                                       "close_tag, auto, thinking, non_thinking."})
    train_mode_token: bool = field(default=False, metadata={"help": "Move the forced mode-decision token from the "
        "prompt into the completion so it is trained, with the old log-probability of that token set to log(mode "
        "share) (the behaviour policy's forcing; AdaptThink's importance correction)."})
    thinking_cost: float = field(default=0.0, metadata={"help": "Opt-in cost c in [0, 1) for needless thinking: in a "
        "group where some non-thinking answer is correct, every correct thinking answer scores 1 - c. Never touches "
        "wrong answers or groups where only thinking is right. 0 = the paper's correctness-only reward."})
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
        G = self.num_generations
        if self.force_modes:
            n_think = G * self.thinking_fraction
            if not isclose(n_think, round(n_think)):
                raise ValueError(
                    f"BPO: thinking_fraction={self.thinking_fraction} × num_generations={G} = {n_think} is not a whole "
                    "number of rollouts. Choose num_generations (e.g. an even number for the default 0.5) so that both "
                    "modes get a whole number of rollouts."
                )
            n_think = round(n_think)
            if not 1 <= n_think <= G - 1:
                raise ValueError(
                    f"BPO: thinking_fraction={self.thinking_fraction} with num_generations={G} leaves a mode with no "
                    "rollouts (each group needs at least one thinking and one non-thinking rollout)."
                )
        if self.train_mode_token and not self.force_modes:
            raise ValueError("BPO: train_mode_token needs force_modes=true (it trains the forced decision token).")
        if not 0.0 <= self.thinking_cost < 1.0:
            raise ValueError(f"BPO: thinking_cost={self.thinking_cost} must be in [0, 1) so that a correct thinking "
                             "answer still beats a wrong one.")
        if self.probe_steps < 0 or self.dump_steps < 1 or self.collapse_patience < 1:
            raise ValueError("BPO: probe_steps must be >= 0, dump_steps >= 1 and collapse_patience >= 1.")
        if not 0 <= self.collapse_low < self.collapse_high <= 1:
            raise ValueError("BPO: need 0 <= collapse_low < collapse_high <= 1.")
        if self.mode_prefixes is None and self.prefix_family not in PREFIX_FAMILIES:
            raise ModeError(f"BPO: unknown prefix_family {self.prefix_family!r}; known: {sorted(PREFIX_FAMILIES)}.")

    @property
    def num_thinking(self) -> int:
        return round(self.num_generations * self.thinking_fraction) if self.force_modes else 0
