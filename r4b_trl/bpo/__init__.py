"""Bi-mode Policy Optimization (R-4B's BPO) on TRL's GRPOTrainer."""

from .config import BPOConfig  # noqa: F401
from .trainer import BPOTrainer, forced_mode_at, subgroup_size, validate_processing_class, validate_train_rows  # noqa: F401
