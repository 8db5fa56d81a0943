"""Bi-mode Policy Optimization (R-4B's BPO) on TRL's GRPOTrainer."""

from .config import BPOConfig  # noqa: F401
from .trainer import (  # noqa: F401
    BPOTrainer,
    forced_mode_at,
    reward_columns,
    subgroup_size,
    validate_processing_class,
    validate_train_rows,
)
