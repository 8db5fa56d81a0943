"""Which checkpoint a run resumes from (SFT and BPO), decided — and refused, by name — before any model loads."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

__all__ = ["resolve_resume", "last_checkpoint"]

_TRUE = ("true", "1", "yes", "last")
_FALSE = ("false", "0", "no", "none")


def last_checkpoint(folder: str | os.PathLike) -> str | None:
    """The ``checkpoint-<N>`` folder with the highest N in ``folder`` (transformers' rule), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if os.path.isdir(folder) else None


def resolve_resume(training_args, auto_resume: bool = True) -> str | None:
    """What to pass as ``trainer.train(resume_from_checkpoint=...)``.

    ``resume_from_checkpoint``: a checkpoint folder (one holding ``trainer_state.json``); a run folder holding
    ``checkpoint-*`` folders (its last one); ``true`` (the last checkpoint in ``output_dir``); ``false`` (none).
    Unset: with ``auto_resume``, the last ``checkpoint-*`` in ``output_dir``, else None. Anything else — an empty
    value, a missing path, a folder with neither ``trainer_state.json`` nor ``checkpoint-*`` (e.g. a finished
    output folder, which keeps only the final model) — raises :class:`UsageError` naming the option.
    """
    value = training_args.resume_from_checkpoint
    output_dir = training_args.output_dir
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        value = True
    elif isinstance(value, str) and value.strip().lower() in _FALSE:
        return None
    if value is True:
        last = last_checkpoint(output_dir)
        if last is None:
            raise UsageError(f"resume_from_checkpoint=true but output_dir {output_dir!r} holds no checkpoint-* "
                             "folder. Give a checkpoint folder, or leave resume_from_checkpoint unset to start fresh.")
        return last
    if value is False or value is None:
        return last_checkpoint(output_dir) if auto_resume else None
    value = str(value)
    if not value.strip():
        raise UsageError("resume_from_checkpoint is empty. Give a checkpoint folder (…/checkpoint-N), true for the "
                         "last checkpoint in output_dir, or leave it unset.")
    path = Path(value)
    if not path.exists():
        raise UsageError(f"resume_from_checkpoint={value!r} does not exist. Give a checkpoint folder "
                         "(…/checkpoint-N), or leave it unset to start fresh.")
    if path.is_dir() and (path / "trainer_state.json").is_file():
        return value
    last = last_checkpoint(path) if path.is_dir() else None
    if last is not None:
        return last
    what = "is a file" if not path.is_dir() else "holds neither trainer_state.json nor checkpoint-* folders"
    raise UsageError(f"resume_from_checkpoint={value!r} is not a checkpoint: it {what} (a finished run's "
                     "output_dir keeps only the final model). Give one of its checkpoint-N folders, or leave "
                     "resume_from_checkpoint unset to start fresh.")
