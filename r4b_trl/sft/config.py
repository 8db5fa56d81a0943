"""``recipes/sft.py``'s own options (:class:`SFTScriptArguments`, next to TRL's ``SFTConfig`` and ``ModelConfig``)
and the parameter-name fragments that mark a vision tower and a projector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.io import DataError


#: Parameter-name fragments of vision towers: Qwen2.5-VL / Qwen3-VL (``visual.``), LLaVA-style (``vision_tower.``),
#: Idefics3 / SmolVLM (``vision_model.``).
DEFAULT_VISION_MODULES = ["visual.", "vision_tower.", "vision_model.", "vision_encoder."]


#: Parameter-name fragments of projectors (checked before the vision tower, since Qwen's merger sits inside
#: ``visual.``): Qwen2.5-VL ``visual.merger``, Qwen3-VL ``visual.merger`` / ``visual.deepstack_merger_list``,
#: LLaVA ``multi_modal_projector``, Idefics3 ``connector``.
DEFAULT_PROJECTOR_MODULES = ["visual.merger.", "visual.deepstack_merger_list.", "multi_modal_projector.",
                             "connector.", "mm_projector."]


@dataclass
class SFTScriptArguments:
    """Script arguments of ``recipes/sft.py`` (next to TRL's ``SFTConfig`` and ``ModelConfig``)."""

    dataset_name: str | None = field(default=None, metadata={
        "help": "Curated data: a .jsonl/.parquet file, a folder (a curation or mix output folder, or a folder of "
                "files), or a Hub dataset id."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on (Hub datasets)."})
    dataset_test_split: str | None = field(default=None, metadata={
        "help": "Split to evaluate on (Hub datasets), or a path to an eval file. Used when eval_strategy != 'no'."})
    dataset_mixture: list[dict[str, Any]] | str | None = field(default=None, metadata={
        "help": "Instead of dataset_name: a list of {path, weight} (weight multiplies the row count, seeded), as "
                "YAML or a JSON string."})
    prompt_column: str = field(default="prompt", metadata={"help": "Column with the prompt (messages)."})
    completion_column: str = field(default="completion", metadata={"help": "Column with the target."})
    messages_column: str = field(default="messages", metadata={
        "help": "Used when there is no prompt column: whole conversations, split at the last assistant turn."})
    images_column: str = field(default="images", metadata={"help": "Column with the images (paths or images)."})
    skip_image_rows: bool = field(default=False, metadata={
        "help": "Drop rows with images (train a text model on the text part of a multimodal mix)."})
    prefix_family: str = field(default="qwen3", metadata={
        "help": "Think-tag strings the targets are checked against (r4b_trl.modes.PREFIX_FAMILIES)."})
    validate_targets: bool = field(default=True, metadata={
        "help": "Refuse rows whose target is not a valid thinking / non-thinking answer (recommended)."})
    vision_lr_multiplier: float = field(default=1.0, metadata={
        "help": "Vision-tower learning rate = learning_rate x this (full fine-tuning). R-4B: 0.1 (4e-6 vs 4e-5)."})
    projector_lr_multiplier: float = field(default=1.0, metadata={
        "help": "Projector learning rate = learning_rate x this (full fine-tuning). R-4B: 0.1."})
    vision_modules: list[str] = field(default_factory=lambda: list(DEFAULT_VISION_MODULES), metadata={
        "help": "Parameter-name fragments that mark the vision tower."})
    projector_modules: list[str] = field(default_factory=lambda: list(DEFAULT_PROJECTOR_MODULES), metadata={
        "help": "Parameter-name fragments that mark the projector (checked first)."})
    peft_preset: str | None = field(default=None, metadata={
        "help": "LoRA/QLoRA preset from r4b_trl.peft_presets (lora_lm | lora_lm_vision | qlora_lm); overrides "
                "use_peft / load_in_4bit."})
    add_think_tokens: bool = field(default=True, metadata={
        "help": "Add <think>/</think> as non-special tokens (and resize the embeddings) when the tokenizer lacks "
                "them, e.g. Qwen2.5-VL. False: refuse such a tokenizer."})
    save_merged: bool = field(default=True, metadata={
        "help": "With LoRA, also save the adapter merged into the base model to <output_dir>/merged (what the BPO "
                "stage and vLLM load). Skipped for 4/8-bit bases (merging into quantized weights is lossy)."})
    auto_resume: bool = field(default=True, metadata={
        "help": "Resume from the last checkpoint-* in output_dir when resume_from_checkpoint is not set."})

    def __post_init__(self):
        if isinstance(self.dataset_mixture, str):
            import yaml

            self.dataset_mixture = yaml.safe_load(self.dataset_mixture)
        if self.dataset_mixture is not None:
            if not isinstance(self.dataset_mixture, list) or not all(
                    isinstance(s, (dict, str)) for s in self.dataset_mixture):
                raise DataError("dataset_mixture must be a list of {path, weight} entries.")
            self.dataset_mixture = [{"path": s} if isinstance(s, str) else dict(s) for s in self.dataset_mixture]
            for i, s in enumerate(self.dataset_mixture):
                if "path" not in s or set(s) - {"path", "weight", "split", "name"}:
                    raise DataError(f"dataset_mixture[{i}] = {s}: use keys path, weight (and split, name for Hub "
                                    "datasets).")
        for name in ("vision_lr_multiplier", "projector_lr_multiplier"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0.")
