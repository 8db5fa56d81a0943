"""SFT data: prompt/completion rows loaded from a file, folder, Hub id or weighted mixture (:func:`load_sft_datasets`)
and every target checked to be a valid thinking or non-thinking answer before the model loads
(:func:`validate_sft_rows`)."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

from ..data.io import DataError, load_table
from ..errors import problems, row_label
from ..modes import ModePrefixes, get_prefixes, parse_response
from .config import SFTScriptArguments

logger = logging.getLogger(__name__)


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
