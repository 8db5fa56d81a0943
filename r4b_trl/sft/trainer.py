"""The annealing trainer: TRL's ``SFTTrainer`` whose optimizer gives the vision tower and the projector their own
learning rates (:func:`param_groups`), and which saves the model with the inference chat template."""

from __future__ import annotations

import logging
from contextlib import nullcontext

from .config import DEFAULT_PROJECTOR_MODULES, DEFAULT_VISION_MODULES

logger = logging.getLogger(__name__)


def module_of(param_name: str, vision_modules=DEFAULT_VISION_MODULES, projector_modules=DEFAULT_PROJECTOR_MODULES) -> str:
    """``projector``, ``vision`` or ``language`` for a parameter name (fragments match at a name boundary)."""
    name = "." + param_name
    if any("." + frag in name for frag in projector_modules):
        return "projector"
    if any("." + frag in name for frag in vision_modules):
        return "vision"
    return "language"


def param_groups(model, base_lr: float, weight_decay: float, decay_names, multipliers: dict[str, float],
                 vision_modules=DEFAULT_VISION_MODULES, projector_modules=DEFAULT_PROJECTOR_MODULES) -> list[dict]:
    """Optimizer parameter groups: (language, vision, projector) x (decay, no decay), each with its own ``lr``.
    Empty groups are left out; the language-model groups come first (the trainer logs the first group's LR)."""
    decay_names = set(decay_names)
    buckets: dict[tuple[str, bool], list] = {}
    for n, prm in model.named_parameters():
        if not prm.requires_grad:
            continue
        buckets.setdefault((module_of(n, vision_modules, projector_modules), n in decay_names), []).append(prm)
    groups = []
    for module in ("language", "vision", "projector"):
        for decay in (True, False):
            params = buckets.get((module, decay))
            if params:
                groups.append({"params": params, "weight_decay": weight_decay if decay else 0.0,
                               "lr": base_lr * multipliers.get(module, 1.0), "name": f"{module}{'' if decay else '_no_decay'}"})
    return groups


def _trainer_cls():
    from trl import SFTTrainer

    class AnnealingTrainer(SFTTrainer):
        """``SFTTrainer`` with per-module learning rates for vision tower / projector / language model."""

        def __init__(self, *args, lr_multipliers: dict[str, float] | None = None, vision_modules=None,
                     projector_modules=None, saved_chat_template: str | None = None, **kwargs):
            self.saved_chat_template = saved_chat_template
            self.lr_multipliers = dict(lr_multipliers or {})
            self.vision_modules = list(vision_modules or DEFAULT_VISION_MODULES)
            self.projector_modules = list(projector_modules or DEFAULT_PROJECTOR_MODULES)
            super().__init__(*args, **kwargs)

        def saving_template(self):
            """While saving: the template the model is used with (every mode reachable), not the SFT one."""
            from ..templates import chat_template_swapped

            if self.saved_chat_template is None or self.processing_class is None:
                return nullcontext()
            return chat_template_swapped(self.processing_class, self.saved_chat_template)

        def _save(self, output_dir=None, state_dict=None):
            with self.saving_template():
                super()._save(output_dir, state_dict)

        def _per_module(self) -> bool:
            if all(v == 1.0 for v in self.lr_multipliers.values()):
                return False
            try:
                from peft import PeftModel

                if isinstance(self.model, PeftModel):
                    logger.warning("vision/projector LR multipliers apply to full fine-tuning; ignored with LoRA.")
                    return False
            except ImportError:  # pragma: no cover
                pass
            return True

        def create_optimizer(self, model=None):
            if self.optimizer is not None or not self._per_module():
                return super().create_optimizer(model) if model is not None else super().create_optimizer()
            opt_model = self.model if model is None else model
            if self.optimizer_cls_and_kwargs is not None:
                cls, kwargs = self.optimizer_cls_and_kwargs
            else:
                cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs = dict(kwargs)
            if any(k in kwargs for k in ("params", "model", "optimizer_dict")) or _is_factory(cls):
                raise ValueError(f"Per-module learning rates need a standard optimizer (e.g. adamw_torch); "
                                 f"optim={self.args.optim!r} builds its own parameter groups. Set "
                                 "vision_lr_multiplier and projector_lr_multiplier to 1.0 to use it.")
            groups = param_groups(opt_model, self.args.learning_rate, self.args.weight_decay,
                                  self.get_decay_parameter_names(opt_model), self.lr_multipliers,
                                  self.vision_modules, self.projector_modules)
            summary = {g["name"]: (sum(p.numel() for p in g["params"]), g["lr"]) for g in groups}
            logger.info("per-module learning rates (params, lr): %s", summary)
            if not any(g["name"].startswith(("vision", "projector")) for g in groups):
                logger.warning("vision/projector LR multipliers are set but no parameter matched vision_modules / "
                               "projector_modules; every parameter uses learning_rate.")
            self.optimizer = cls(groups, **kwargs)
            return self.optimizer

    return AnnealingTrainer


def _is_factory(cls) -> bool:
    try:
        from transformers.trainer_optimizer import is_optimizer_factory
    except ImportError:  # pragma: no cover - older transformers: no optimizer factories
        return False
    return bool(is_optimizer_factory(cls))
