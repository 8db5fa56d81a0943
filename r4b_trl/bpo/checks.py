"""Checks BPO runs before any model loads: the tokenizer and chat template, the training rows, the reward columns;
and the stable prompt id used when rows carry none."""

from __future__ import annotations

import hashlib
import json

from ..data.io import DataError
from ..errors import problems, row_label
from ..modes import ModeError, ModePrefixes, check_think_tokens, decision_tokens, get_prefixes
from ..templates import check_template, template_shape


def prefixes_from_args(args) -> ModePrefixes:
    return get_prefixes(args.mode_prefixes if args.mode_prefixes else args.prefix_family)


def validate_processing_class(processing_class, prefixes: ModePrefixes, chat_template_kwargs: dict | None = None,
                              train_mode_token: bool = False) -> None:
    """Refuse, before any model loads, a tokenizer that would strip the think tags, or a chat template that cannot
    be adapted so that every forced mode's prompt ends with exactly its pre-fill (``r4b_trl.templates``: the
    template's own switch, the rest appended, or its pre-fill cut to the assistant header; one line naming the
    template family and what to pass instead); with ``train_mode_token``, a tokenizer whose forced prefixes do not
    both contain the decision token (the forcing probability would be wrong)."""
    check_think_tokens(processing_class, prefixes)
    kwargs = dict(chat_template_kwargs or {})
    check_template(processing_class, prefixes, stage="bpo", **kwargs)
    if train_mode_token:
        header = template_shape(processing_class, prefixes, **kwargs).header
        d = decision_tokens(processing_class, prefixes, context=header)
        if not (d.thinking_in_prefix and d.non_thinking_in_prefix):
            raise ModeError(
                "BPO: train_mode_token needs the mode-decision token inside both forced prefixes, but this tokenizer "
                f"generates it on one side ({d.describe()}); there the decision is already trained by plain BPO. "
                "Set train_mode_token=false.")


#: Reward-function arguments the trainer supplies itself (TRL's, plus BPO's forced-mode columns and prompt_id).
_TRAINER_REWARD_KWARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
                          "environments", "forced_mode", "forced_prefix", "prompt_id"}


def reward_columns(reward_funcs) -> list[str]:
    """The dataset columns the reward functions require: their parameters without a default that the trainer does
    not supply (``accuracy_reward`` needs ``solution``). Model-based rewards need none."""
    import inspect

    funcs = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    needed: list[str] = []
    for fn in funcs:
        if isinstance(fn, str) or not callable(fn) or hasattr(fn, "forward"):
            continue
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            continue
        for prm in params:
            if (prm.default is inspect.Parameter.empty and prm.name not in _TRAINER_REWARD_KWARGS
                    and prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY) and prm.name not in needed):
                needed.append(prm.name)
    return needed


def validate_train_rows(dataset, answer_column: str | list[str] | None = "solution", max_errors: int = 5,
                        conversational: bool = False) -> None:
    """Every row needs a non-empty ``prompt`` and non-empty answer column(s) (``answer_column``: one name, a list,
    or None for none). Problems name the row (1-based, with its ``prompt_id`` / ``id``) and the column. With
    ``conversational`` (``train_mode_token``), prompts must be message lists, not strings (checked on the first row)."""
    if dataset is None:
        return
    answers = [answer_column] if isinstance(answer_column, str) else list(answer_column or [])
    cols = set(getattr(dataset, "column_names", None) or [])
    if cols and "prompt" not in cols:
        raise DataError(f"BPO: the training data has no 'prompt' column (columns: {sorted(cols)}). Give each row a "
                        "conversational prompt (r4b_trl.data.formats.to_prompt_row builds one from a question).")
    if conversational:
        first = next(iter(dataset), None)
        if first is not None and isinstance(first.get("prompt"), str):
            raise DataError("BPO: train_mode_token needs conversational prompts (a list of messages); row 1 has a "
                            "string prompt, whose forced prefix cannot be split at the decision token.")
    for column in answers:
        if cols and column not in cols:
            raise DataError(f"BPO: the training data has no {column!r} column, which the reward function needs "
                            f"(columns: {sorted(cols)}). Add the reference answers as {column!r}, or rename the "
                            "answer column to it.")
    if not hasattr(dataset, "__len__"):
        return
    if hasattr(dataset, "select_columns"):  # no image decoding
        dataset = dataset.select_columns([c for c in ("prompt", "prompt_id", "id", *answers) if c in cols])
    errors = []
    for i, row in enumerate(dataset):
        where = row_label(i, row.get("prompt_id", row.get("id")))
        if not row.get("prompt"):
            errors.append(f"{where}: column 'prompt' is empty")
        for column in answers:
            if row.get(column) is None or not str(row.get(column)).strip():
                errors.append(f"{where}: column {column!r} is empty")
        if len(errors) >= max_errors:
            break
    if errors:
        raise DataError(problems("BPO: the training data", errors, "Fill in or drop these rows."))


def stable_prompt_id(prompt) -> str:
    """A prompt id that is the same in every process and run (``hash()`` is salted per process)."""
    text = json.dumps(prompt, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
