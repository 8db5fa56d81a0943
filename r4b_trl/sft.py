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

Prompt/completion data makes TRL's ``completion_only_loss`` cover the whole assistant turn — the think block,
empty or not, included — so the model learns the mode decision (``tests/test_sft_mask.py`` checks it). On any
chat template (Qwen3.5's and R1-distill's pre-fills, templates that drop reasoning from assistant turns) SFT
tokenizes with ``r4b_trl.templates.sft_template`` and saves the model with ``inference_template``
(:func:`adapt_sft_templates`; ``tests/test_templates_sft.py`` decodes the trained tokens per template).
"""

from __future__ import annotations

import json
import logging
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoints import resolve_resume
from .data.io import DataError, load_table
from .errors import UsageError, problems, row_label
from .modes import ModePrefixes, chat_template_of, get_prefixes, parse_response

logger = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------------------------
# Target validation
# --------------------------------------------------------------------------------------------------------------


def _text_of(content) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join((b.get("text") or "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return None


def check_target(text: Any, prefixes: ModePrefixes | None = None) -> str | None:
    """None if ``text`` is a valid annealing target, else why not.

    Valid: one think block, opened at the very start, in the vocabulary's exact forms — thinking
    ``<think>\\n{reasoning}…</think>…{answer}`` or non-thinking ``<think>\\n\\n</think>\\n\\n{answer}`` — with a
    non-empty answer after ``</think>``.
    """
    p = prefixes or ModePrefixes()
    if not isinstance(text, str) or not text.strip():
        return "the target is empty"
    parsed = parse_response(text, p)
    if parsed.mode == "truncated":
        return f"the think block is never closed with {p.close_tag!r}"
    if parsed.mode == "non_thinking" and not text.startswith(p.non_thinking):
        return f"a non-thinking target must start with exactly {p.non_thinking!r} (got {text[:24]!r})"
    if parsed.mode == "thinking" and not text.startswith(p.thinking):
        return f"a thinking target must start with exactly {p.thinking!r} (got {text[:24]!r})"
    n_open, n_close = text.count(p.open_tag), text.count(p.close_tag)
    if (n_open, n_close) != (1, 1):
        return (f"it has {n_open} {p.open_tag!r} and {n_close} {p.close_tag!r} tags; a target has exactly one think "
                "block")
    if not parsed.answer:
        return f"there is no answer after {p.close_tag!r}"
    return None


def validate_sft_rows(ds, prefixes: ModePrefixes | None = None, source: str = "dataset", max_report: int = 10,
                      images_column: str = "images") -> dict[str, int]:
    """Check every row (prompt, target, image count); raise :class:`DataError` naming the bad rows. Returns the
    counts of thinking / non-thinking targets."""
    p = prefixes or ModePrefixes()
    cols = [c for c in ("prompt", "completion", images_column, "id") if c in ds.column_names]
    view = ds.select_columns(cols)
    if images_column in cols:
        import datasets

        feat = view.features[images_column]
        inner = getattr(feat, "feature", None)
        if isinstance(inner, datasets.Image):
            view = view.cast_column(images_column, type(feat)(datasets.Image(decode=False)))
    errors, counts = [], {"thinking": 0, "non_thinking": 0}
    for i, row in enumerate(view):
        name = row_label(i, row.get("id"))
        completion = row.get("completion")
        if isinstance(completion, list):
            if not completion or not isinstance(completion[-1], dict) or completion[-1].get("role") != "assistant":
                errors.append(f"{name}: the completion must be one assistant message")
                continue
            text = _text_of(completion[-1].get("content"))
        else:
            text = completion
        why = check_target(text, p)
        if why is not None:
            errors.append(f"{name}: {why}")
        else:
            counts[parse_response(text, p).mode] += 1
        prompt = row.get("prompt")
        if not prompt:
            errors.append(f"{name}: the prompt is empty")
        elif isinstance(prompt, list):
            n_blocks = sum(1 for m in prompt if isinstance(m.get("content"), list)
                           for b in m["content"] if isinstance(b, dict) and b.get("type") == "image")
            n_images = len(row.get(images_column) or []) if images_column in cols else 0
            if n_blocks != n_images:
                errors.append(f"{name}: the prompt has {n_blocks} image block(s) but the row has {n_images} image(s)")
    if errors:
        raise DataError(problems(
            f"{source}: {len(errors)} problem(s) in {len(view)} rows; annealing targets must be valid thinking "
            f"({p.thinking!r}…{p.close_tag!r}…answer) or non-thinking ({p.non_thinking!r}answer) answers",
            errors[:max_report], "Curate the data with data_prep/curate.py, or build targets with "
            "r4b_trl.modes.ModePrefixes().thinking_answer(reasoning, answer) / non_thinking_answer(answer).",
            total=len(errors)))
    return counts


# --------------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------------


def _resolve_source(path: str) -> tuple[str, Path | None]:
    """A loadable source and the folder its relative image paths are relative to (None for Hub datasets)."""
    p = Path(path)
    if p.is_dir():
        for name in ("curated.jsonl", "mix.jsonl", "curated.parquet", "mix.parquet"):
            if (p / name).exists():
                return str(p / name), p
        return str(p), p
    if p.exists():
        return str(p), p.parent
    return path, None


def _load_one(path: str, split: str, name: str | None, script_args: SFTScriptArguments):
    import datasets

    src, base = _resolve_source(path)
    ds = load_table(src, split=split, name=name)
    cols = ds.column_names
    if script_args.prompt_column in cols:
        if script_args.completion_column not in cols:
            raise DataError(f"{path}: no completion column {script_args.completion_column!r} (columns: {cols}).")
        rename = {script_args.prompt_column: "prompt", script_args.completion_column: "completion"}
    elif script_args.messages_column in cols:
        mc = script_args.messages_column

        def split_messages(row, idx):
            msgs = row[mc]
            if not msgs or msgs[-1].get("role") != "assistant":
                raise DataError(f"{path}: {row_label(idx, row.get('id'))}: the last message of {mc!r} must be the "
                                "assistant's target. Fix or drop this row.")
            return {"prompt": msgs[:-1], "completion": [msgs[-1]]}

        ds = ds.map(split_messages, with_indices=True, remove_columns=[mc])
        rename = {}
    else:
        raise DataError(f"{path}: needs a {script_args.prompt_column!r} + {script_args.completion_column!r} or a "
                        f"{script_args.messages_column!r} column (columns: {cols}).")
    if script_args.images_column in ds.column_names:
        rename[script_args.images_column] = "images"
    ds = ds.rename_columns({k: v for k, v in rename.items() if k != v})
    keep = [c for c in ("prompt", "completion", "images", "id") if c in ds.column_names]
    ds = ds.select_columns(keep)
    if "images" in ds.column_names:
        feat = ds.features["images"]
        if not isinstance(getattr(feat, "feature", None), datasets.Image) and not isinstance(feat, datasets.Image):
            def absolute(row):
                imgs = row["images"] or []
                imgs = imgs if isinstance(imgs, list) else [imgs]
                out = []
                for x in imgs:
                    if isinstance(x, str) and base is not None and not os.path.isabs(x):
                        x = str((base / x).resolve())
                    out.append(x)
                return {"images": out}

            ds = ds.map(absolute)
        elif isinstance(feat, datasets.Image):
            ds = ds.map(lambda r: {"images": [r["images"]] if r["images"] is not None else []})
    return ds


def _as_text(messages):
    return [{"role": m["role"], "content": _text_of(m.get("content")) or ""} for m in messages]


def _as_blocks(messages):
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, list):
            out.append({"role": m["role"], "content": [
                {"type": b.get("type", "text"), "text": b.get("text") if b.get("type", "text") == "text" else None}
                for b in c]})
        else:
            out.append({"role": m["role"], "content": [{"type": "text", "text": c or ""}]})
    return out


def _weighted_indices(n: int, weight: float, rng: random.Random) -> list[int]:
    whole, frac = int(weight), weight - int(weight)
    idx = [i for _ in range(whole) for i in range(n)]
    k = round(frac * n)
    return idx + (sorted(rng.sample(range(n), k)) if k else [])


def load_sft_datasets(script_args: SFTScriptArguments, vision: bool, seed: int = 0,
                      prefixes: ModePrefixes | None = None, eval_split: bool = False):
    """The train (and eval) datasets as TRL prompt/completion rows, validated; images cast to ``datasets.Image``."""
    import datasets

    p = prefixes or get_prefixes(script_args.prefix_family)
    if script_args.dataset_mixture:
        sources = script_args.dataset_mixture
    elif script_args.dataset_name:
        sources = [{"path": script_args.dataset_name}]
    else:
        raise DataError("Set dataset_name (a curated file/folder or Hub id) or dataset_mixture.")
    rng = random.Random(seed)
    parts = []
    for s in sources:
        if float(s.get("weight", 1.0)) == 0.0:
            continue
        ds = _load_one(s["path"], s.get("split", script_args.dataset_train_split), s.get("name", script_args.dataset_config),
                       script_args)
        w = float(s.get("weight", 1.0))
        if w != 1.0:
            ds = ds.select(_weighted_indices(len(ds), w, rng))
        parts.append((s["path"], ds))
    if not parts:
        raise DataError("dataset_mixture: every source has weight 0.")
    train = _finish(parts, script_args, vision, p)
    eval_ds = None
    if eval_split and script_args.dataset_test_split:
        t = script_args.dataset_test_split
        if Path(t).exists():
            e = _load_one(t, "train", None, script_args)
        else:
            e = _load_one(sources[0]["path"], t, sources[0].get("name", script_args.dataset_config), script_args)
        eval_ds = _finish([(t, e)], script_args, vision, p)
    return train, eval_ds


def _finish(parts, script_args: SFTScriptArguments, vision: bool, p: ModePrefixes):
    import datasets

    checked = []
    for path, ds in parts:
        if "images" in ds.column_names:
            has = [bool(x) for x in ds["images"]]
            if script_args.skip_image_rows and any(has):
                ds = ds.select([i for i, h in enumerate(has) if not h])
                has = [False] * len(ds)
            if not any(has):
                ds = ds.remove_columns("images")
        if len(ds) == 0:
            raise DataError(f"{path}: no rows to train on" + (" after skip_image_rows" if script_args.skip_image_rows
                                                               else "") + ".")
        if script_args.validate_targets:
            validate_sft_rows(ds, p, source=str(path))
        checked.append((path, ds))
    n_image_rows = sum(1 for _, ds in checked if "images" in ds.column_names for x in ds["images"] if x)
    if n_image_rows and not vision:
        raise DataError(f"{n_image_rows} row(s) have images but the model is a text-only model. Set "
                        "skip_image_rows: true to train on the text rows only, or use a vision-language model.")
    fixed = []
    for _, ds in checked:
        if n_image_rows:  # one Arrow schema for all parts: block contents and an images list everywhere
            ds = ds.map(lambda r: {"prompt": _as_blocks(r["prompt"])})
            if "images" not in ds.column_names:
                ds = ds.add_column("images", [[] for _ in range(len(ds))])
            ds = ds.cast_column("images", datasets.List(datasets.Image()))
        elif isinstance(ds[0]["prompt"], list):  # text rows: plain-string contents (text chat templates want them)
            ds = ds.map(lambda r: {"prompt": _as_text(r["prompt"])})
        if isinstance(ds[0]["completion"], list):
            ds = ds.map(lambda r: {"completion": _as_text(r["completion"])})
        if "id" in ds.column_names:
            ds = ds.remove_columns("id")
        fixed.append(ds)
    return datasets.concatenate_datasets(fixed) if len(fixed) > 1 else fixed[0]


# --------------------------------------------------------------------------------------------------------------
# Per-module learning rates
# --------------------------------------------------------------------------------------------------------------


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

        @contextmanager
        def saving_template(self):
            """While saving: the template the model is used with (every mode reachable), not the SFT one."""
            from .templates import set_chat_template

            pc = self.processing_class
            if self.saved_chat_template is None or pc is None:
                yield
                return
            training = chat_template_of(pc)
            set_chat_template(pc, self.saved_chat_template)
            try:
                yield
            finally:
                set_chat_template(pc, training)

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


def __getattr__(name):  # AnnealingTrainer is built lazily so that importing r4b_trl.sft does not import trl
    if name == "AnnealingTrainer":
        return _trainer_cls()
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------


def adapt_sft_templates(pc, prefixes: ModePrefixes, training_args, train_ds, eval_ds=None):
    """Check the chat template (one line naming its family on failure, before any model loads) and set up SFT's
    adapted template (``r4b_trl.templates.sft_template``: the conversation as the model sees it at inference, the
    generation prompt cut to the assistant header, the target turn verbatim — think block, decision token and
    reasoning all trained). ``chat_template_path`` (TRL's option) is applied here first. Rows get per-mode
    ``chat_template_kwargs`` where the template's switch changes the conversation (Qwen3.8). Returns the datasets
    and the template the model is saved with (``inference_template``)."""
    from .templates import check_template, inference_template, set_chat_template, sft_row_kwargs, sft_template

    path = getattr(training_args, "chat_template_path", None)
    if path:
        if not (os.path.isfile(path) and path.endswith((".jinja", ".j2"))):
            raise ValueError(f"chat_template_path={path!r}: r4b-trl SFT takes a .jinja file here.")
        set_chat_template(pc, Path(path).read_text(encoding="utf-8"))
        training_args.chat_template_path = None  # applied; TRL must not re-apply it over the SFT template
    plan = check_template(pc, prefixes, stage="sft")
    logger.info("chat template %s: modes rendered as %s", _family(pc), {m: pl.how for m, pl in plan.items()})
    saved = inference_template(pc, prefixes)
    row_kwargs = sft_row_kwargs(pc, prefixes)
    set_chat_template(pc, sft_template(pc, prefixes))
    if row_kwargs:
        logger.info("the template's switch changes the prompt: SFT rows carry chat_template_kwargs %s", row_kwargs)

        def add(row):
            completion = row["completion"]
            text = _text_of(completion[-1]["content"]) if isinstance(completion, list) else completion
            return {"chat_template_kwargs": row_kwargs[parse_response(text, prefixes).mode]}

        train_ds = train_ds.map(add)
        eval_ds = eval_ds.map(add) if eval_ds is not None else None
    return train_ds, eval_ds, saved


def _family(pc) -> str:
    from .templates import template_family

    return template_family(chat_template_of(pc))


def run(script_args: SFTScriptArguments, training_args, model_args):
    """Validate the data, build the model and :class:`AnnealingTrainer`, train (resuming if there is a checkpoint)
    and save. Returns the trainer."""
    from .model_card import card_from_training, use_r4b_model_card
    from .models import check_model_path, is_vision_config, load_config, load_for_training, load_processing_class
    from .modes import add_think_tokens, check_think_tokens

    check_model_path(model_args.model_name_or_path)
    resume = resolve_resume(training_args, script_args.auto_resume)  # a bad resume path fails before any loading
    prefixes = get_prefixes(script_args.prefix_family)
    trust = bool(training_args.trust_remote_code)
    revision = model_args.model_revision
    vision = is_vision_config(load_config(model_args.model_name_or_path, trust, revision))

    # 1. data, validated before any model weights are loaded
    want_eval = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"
    train_ds, eval_ds = load_sft_datasets(script_args, vision=vision, seed=training_args.seed, prefixes=prefixes,
                                          eval_split=want_eval)
    if "images" in train_ds.column_names and training_args.packing:
        raise DataError("packing is not supported for data with images (TRL); set packing: false for VLM data.")

    # 2. processing class (the model's chat template, or r4b-trl's default when it has none) with the think tags
    pc = load_processing_class(model_args.model_name_or_path, trust_remote_code=trust, revision=revision,
                               vision=vision, padding_side="right")
    if script_args.add_think_tokens:
        added = add_think_tokens(pc, prefixes)
    else:
        check_think_tokens(pc, prefixes)
        added = []
    # The same template check as BPO's, before the model loads; SFT then tokenizes with the adapted template.
    train_ds, eval_ds, saved_template = adapt_sft_templates(pc, prefixes, training_args, train_ds, eval_ds)

    # 3. the model (TRL ModelConfig flags or an r4b-trl PEFT preset)
    if (model_args.load_in_4bit or model_args.load_in_8bit) and not (model_args.use_peft or script_args.peft_preset):
        raise UsageError("4/8-bit loading (QLoRA) trains adapters only: set use_peft: true or peft_preset: qlora_lm.")
    model, peft_config = load_for_training(model_args, training_args, script_args.peft_preset, stage="sft")
    if added:
        tok = getattr(pc, "tokenizer", pc)
        rows = model.get_input_embeddings().weight.shape[0]
        logger.info("added think tokens %s to the tokenizer (%d tokens; the embeddings have %d rows)", added,
                    len(tok), rows)
        if len(tok) > rows:  # grow only: padded vocabularies (Qwen: 151936 rows) already have room
            model.resize_token_embeddings(len(tok), pad_to_multiple_of=64)
        if peft_config is not None:  # LoRA: the new rows must be trainable too
            peft_config.trainable_token_indices = list(added)

    if resume:
        logger.info("resuming from %s", resume)
    multipliers = {"vision": script_args.vision_lr_multiplier, "projector": script_args.projector_lr_multiplier}
    trainer = _trainer_cls()(
        model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=pc, peft_config=peft_config,
        lr_multipliers=multipliers, vision_modules=script_args.vision_modules,
        projector_modules=script_args.projector_modules, saved_chat_template=saved_template,
    )
    use_r4b_model_card(trainer, script_args, model_args, stage="sft")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        card_from_training(training_args.output_dir, script_args, training_args, model_args, stage="sft")
        Path(training_args.output_dir, "r4b_sft.json").write_text(json.dumps({
            "dataset": script_args.dataset_name, "dataset_mixture": script_args.dataset_mixture,
            "rows": len(train_ds), "resumed_from": resume, "lr_multipliers": multipliers,
            "global_step": trainer.state.global_step}, indent=2, default=str) + "\n")
    if peft_config is not None and script_args.save_merged:
        with trainer.saving_template():
            save_merged(trainer, pc, Path(training_args.output_dir) / "merged")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return trainer


def save_merged(trainer, processing_class, out: Path) -> Path | None:
    """Save the LoRA adapter merged into its base model (safetensors) with the processing class."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        logger.warning("not saving a merged model: the base is quantized (merging into 4/8-bit weights is lossy)")
        return None
    if not hasattr(model, "merge_and_unload") or not trainer.accelerator.is_main_process:
        return None
    import copy

    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    processing_class.save_pretrained(out)
    logger.info("saved the merged model to %s", out)
    return out
