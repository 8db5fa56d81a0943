"""The SFT run (:func:`run`): data validated, the chat template adapted (:func:`adapt_sft_templates`), the model
loaded, trained (resuming when there is a checkpoint) and saved, with the merged model when it is a LoRA."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..checkpoints import resolve_resume
from ..data.io import DataError
from ..errors import UsageError
from ..modes import ModePrefixes, chat_template_of, get_prefixes, parse_response
from .config import SFTScriptArguments
from .data import _text_of, load_sft_datasets
from .trainer import _trainer_cls

logger = logging.getLogger(__name__)


def adapt_sft_templates(pc, prefixes: ModePrefixes, training_args, train_ds, eval_ds=None):
    """Check the chat template (one line naming its family on failure, before any model loads) and set up SFT's
    adapted template (``r4b_trl.templates.sft_template``: the conversation as the model sees it at inference, the
    generation prompt cut to the assistant header, the target turn verbatim — think block, decision token and
    reasoning all trained). ``chat_template_path`` (TRL's option) is applied here first. Rows get per-mode
    ``chat_template_kwargs`` where the template's switch changes the conversation (Qwen3.8). Returns the datasets
    and the template the model is saved with (``inference_template``)."""
    from ..templates import check_template, inference_template, set_chat_template, sft_row_kwargs, sft_template

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
    from ..templates import template_family

    return template_family(chat_template_of(pc))


def run(script_args: SFTScriptArguments, training_args, model_args):
    """Validate the data, build the model and :class:`AnnealingTrainer`, train (resuming if there is a checkpoint)
    and save. Returns the trainer."""
    from ..model_card import card_from_training, use_r4b_model_card
    from ..models import check_model_path, is_vision_config, load_config, load_for_training, load_processing_class
    from ..modes import add_think_tokens, check_think_tokens

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
