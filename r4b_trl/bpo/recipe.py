"""What ``recipes/bpo.py`` runs: script arguments, dataset preparation and the training entry point."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ..data.formats import QuestionColumnOptions, to_prompt_row, validate_question_rows
from ..data.io import load_table
from ..errors import UsageError

logger = logging.getLogger(__name__)


@dataclass
class BPOScriptArguments(QuestionColumnOptions):
    """Dataset options for BPO. Rows are *question rows*: a question, optional image(s), a reference answer; the
    column options come from :class:`~r4b_trl.data.formats.QuestionColumnOptions`."""

    dataset_name: str = field(default=None, metadata={"help": "Hub dataset id or local JSONL/Parquet file or folder."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Training split."})
    dataset_test_split: str | None = field(default=None, metadata={"help": "Eval split (optional)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    probe_dataset_name: str | None = field(default=None, metadata={"help": "Probe data (default: dataset_name)."})
    probe_split: str | None = field(default=None, metadata={"help": "Probe split; unset = no auto-mode probe."})
    probe_size: int = field(default=64, metadata={"help": "Probe rows: N rows of the probe split, taking the "
                                                                  "values of group_column in turn when it is set."})
    peft_preset: str | None = field(default=None, metadata={"help": "LoRA/QLoRA preset from r4b_trl.peft_presets "
                                                                    "(lora_lm | lora_lm_vision | qlora_lm); "
                                                                    "overrides use_peft / load_in_4bit."})


def _split(script_args: BPOScriptArguments, name: str | None, split: str):
    source = name or script_args.dataset_name
    if source is None:
        raise UsageError("dataset_name is not set. Set it to a Hub dataset id or a local JSONL/Parquet path.")
    if os.path.exists(source) and os.path.isdir(source) and os.path.exists(os.path.join(source, split)):
        return load_table(os.path.join(source, split)), f"{source}/{split}"
    if os.path.exists(source) and not os.path.isdir(source) and split != script_args.dataset_train_split:
        # A single local file serves one split; a second split must be another file.
        raise UsageError(f"{source} is a single file, so it cannot also hold the {split!r} split; give that split "
                         "as its own file (probe_dataset_name) or a folder with one subfolder per split.")
    return load_table(source, split=split, name=script_args.dataset_config), f"{source}[{split}]"


def prepare_split(script_args: BPOScriptArguments, name: str | None, split: str, limit: int | None = None):
    """Load a split, validate every row (naming bad rows) and convert to TRL's conversational prompt form."""
    ds, label = _split(script_args, name, split)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    cols = script_args.columns()
    validate_question_rows(ds, cols, source=label, need_answer=True, check_images=cols.image is not None)
    return ds.map(lambda row, idx: to_prompt_row(row, idx, cols), with_indices=True, remove_columns=ds.column_names)


def balanced_subset(ds, column: str | None, n: int):
    """Up to ``n`` rows taking the groups of ``column`` in turn (round-robin, in source order), so a probe drawn
    from data sorted by difficulty still covers every difficulty; without a column, the first ``n`` rows."""
    if column is None or column not in ds.column_names:
        return ds.select(range(min(n, len(ds))))
    by_group: dict = {}
    for i, g in enumerate(ds[column]):
        by_group.setdefault(g, []).append(i)
    queues = list(by_group.values())
    picked, k = [], 0
    while len(picked) < min(n, len(ds)):
        for q in queues:
            if k < len(q) and len(picked) < n:
                picked.append(q[k])
        k += 1
    return ds.select(sorted(picked))


def prepare_datasets(script_args: BPOScriptArguments):
    train = prepare_split(script_args, None, script_args.dataset_train_split, script_args.max_train_samples)
    evald = prepare_split(script_args, None, script_args.dataset_test_split) if script_args.dataset_test_split else None
    probe = None
    if script_args.probe_split:
        probe = prepare_split(script_args, script_args.probe_dataset_name, script_args.probe_split)
        probe = balanced_subset(probe, "group" if script_args.group_column else None, script_args.probe_size)
    return train, evald, probe


def setup_logging(training_args) -> None:
    """INFO logs from r4b-trl on the main process (TRL's scripts do the same for transformers)."""
    import sys

    level = training_args.get_process_log_level()
    lib = logging.getLogger("r4b_trl")
    if not lib.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        lib.addHandler(handler)
    lib.setLevel(min(level, logging.INFO) if training_args.should_log else level)


def main(script_args: BPOScriptArguments, training_args, model_args) -> None:
    """Validate everything cheap first (resume path, tokenizer, template, data), then load the model and train."""
    from ..checkpoints import resolve_resume
    from ..models import check_model_path, load_for_training, load_processing_class
    from ..rewards import accuracy_reward
    from .trainer import BPOTrainer, prefixes_from_args, validate_processing_class

    setup_logging(training_args)
    name = model_args.model_name_or_path
    check_model_path(name)
    resume = resolve_resume(training_args)
    processing_class = load_processing_class(name, trust_remote_code=training_args.trust_remote_code,
                                             revision=model_args.model_revision)
    validate_processing_class(processing_class, prefixes_from_args(training_args), training_args.chat_template_kwargs,
                              training_args.train_mode_token)
    train, evald, probe = prepare_datasets(script_args)

    model, peft_config = load_for_training(model_args, training_args, script_args.peft_preset, stage="bpo")
    trainer = BPOTrainer(model=model, reward_funcs=[accuracy_reward], args=training_args, train_dataset=train,
                         eval_dataset=evald, processing_class=processing_class, probe_dataset=probe,
                         peft_config=peft_config)
    if resume and training_args.resume_from_checkpoint is None:
        logger.info("Resuming from the last checkpoint in output_dir: %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    _write_card(trainer, script_args, training_args, model_args)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


def _write_card(trainer, script_args, training_args, model_args) -> None:
    """The r4b-trl model card (how to run each mode) in output_dir, also used by push_to_hub."""
    from ..model_card import card_from_training, use_r4b_model_card

    use_r4b_model_card(trainer, script_args, model_args, stage="bpo")
    if trainer.accelerator.is_main_process:
        card_from_training(training_args.output_dir, script_args, training_args, model_args, stage="bpo")
