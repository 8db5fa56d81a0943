"""Bi-mode annealing (R-4B §2.2): supervised fine-tuning on a mix of thinking and non-thinking targets.

The recipe (``recipes/sft.py``) is a thin wrapper around :func:`run`. What this module adds to TRL's
``SFTTrainer``:

* :class:`SFTScriptArguments`: the dataset (a curated file or folder, a Hub id, or a weighted mixture), column
  names, per-module learning-rate multipliers and resume behaviour.
* :func:`load_sft_datasets`: prompt/completion rows (``messages`` rows are split at the last assistant turn), image
  paths resolved relative to the data file, text-only rows made plain strings for text models.
* :func:`validate_sft_rows`: every target must be a valid thinking (``<think>\\n…\\n</think>\\n\\nanswer``) or
  non-thinking (``<think>\\n\\n</think>\\n\\nanswer``) answer; bad rows are refused *before* the model is loaded,
  each named with the reason.
* :class:`AnnealingTrainer`: ``SFTTrainer`` whose optimizer gives the vision tower and the projector their own
  learning rates (the paper anneals ViT and MLP at 4e-6 against the LLM's 4e-5) when fully fine-tuning.
* auto-resume from the last ``checkpoint-*`` in ``output_dir``.

Where things live: ``config`` (options), ``data`` (loading and target validation), ``trainer``
(:class:`AnnealingTrainer`, per-module learning rates), ``run`` (the training entry point).

Prompt/completion data makes TRL's ``completion_only_loss`` cover the whole assistant turn — the think block,
empty or not, included — so the model learns the mode decision (``tests/test_sft_mask.py`` checks it). On any
chat template (Qwen3.5's and R1-distill's pre-fills, templates that drop reasoning from assistant turns) SFT
tokenizes with ``r4b_trl.templates.sft_template`` and saves the model with ``inference_template``
(:func:`adapt_sft_templates`; ``tests/test_templates_sft.py`` decodes the trained tokens per template).
"""

from __future__ import annotations

from ..checkpoints import resolve_resume
from .config import DEFAULT_PROJECTOR_MODULES, DEFAULT_VISION_MODULES, SFTScriptArguments
from .data import check_target, load_sft_datasets, validate_sft_rows
from .run import adapt_sft_templates, run, save_merged
from .trainer import module_of, param_groups

__all__ = [
    "SFTScriptArguments",
    "DEFAULT_VISION_MODULES",
    "DEFAULT_PROJECTOR_MODULES",
    "check_target",
    "validate_sft_rows",
    "load_sft_datasets",
    "module_of",
    "param_groups",
    "resolve_resume",
    "run",
]


def __getattr__(name):  # AnnealingTrainer is built lazily so that importing r4b_trl.sft does not import trl
    if name == "AnnealingTrainer":
        from .trainer import _trainer_cls

        return _trainer_cls()
    raise AttributeError(name)
