"""Reading datasets and images: local JSONL / JSON / Parquet files (or folders of them) and Hub datasets.

Never unpickles anything. Errors name the source, the row and the column.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Iterable

from ..errors import UsageError

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class DataError(UsageError):
    """Bad input data: the message names the source, row and field, and says what to do."""


def load_table(source: str | os.PathLike, split: str = "train", name: str | None = None, streaming: bool = False):
    """Load a :class:`datasets.Dataset` from a local file/folder (JSONL, JSON, Parquet) or a Hub dataset id."""
    import datasets

    path = Path(source)
    if path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES)
        if not files:
            raise DataError(f"{source}: no .jsonl/.json/.parquet files found.")
        kinds = {LOCAL_SUFFIXES.get(p.suffix) for p in files}
        if None in kinds or len(kinds) != 1:
            raise DataError(f"{source}: use .jsonl, .json or .parquet files of one kind (got {sorted(p.suffix for p in files)}).")
        return datasets.load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train", streaming=streaming)
    if str(source).startswith((".", "/")) or str(source).endswith(tuple(LOCAL_SUFFIXES)):
        raise DataError(f"{source}: file not found.")
    return datasets.load_dataset(str(source), name, split=split, streaming=streaming)


def require_columns(column_names: Iterable[str], required: dict[str, str | None], source: str = "dataset") -> None:
    """Raise if a configured column is missing. ``required`` maps a role (e.g. 'question') to a column name."""
    present = set(column_names)
    for role, column in required.items():
        if column is not None and column not in present:
            raise DataError(
                f"{source}: the {role} column {column!r} is not in the data (columns: {sorted(present)}). "
                f"Set the {role} column option to one of those."
            )


def load_image(value: Any, base_dir: str | os.PathLike | None = None, where: str = "image"):
    """A PIL image from a PIL image, a path (relative to ``base_dir``), raw bytes, or a ``{"bytes", "path"}`` dict
    (the form ``datasets`` uses). Raises :class:`DataError` naming ``where`` if it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(value, Image.Image):
            return value.convert("RGB")
        if isinstance(value, dict):
            if value.get("bytes"):
                return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
            value = value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return Image.open(io.BytesIO(value)).convert("RGB")
        if isinstance(value, (str, os.PathLike)):
            p = Path(value)
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            img = Image.open(p)
            img.load()
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"{where}: the image cannot be decoded ({type(e).__name__}: {e}).") from e
    raise DataError(f"{where}: expected an image (PIL image, path, bytes or {{'bytes','path'}}), got {type(value).__name__}.")


def images_of(row: dict, image_column: str | None, base_dir=None, where: str = "row") -> list:
    """All images of a row as a list of PIL images ([] when the row has none)."""
    if not image_column or row.get(image_column) is None:
        return []
    value = row[image_column]
    values = value if isinstance(value, (list, tuple)) else [value]
    return [load_image(v, base_dir, where=f"{where}, column {image_column!r}[{i}]") for i, v in enumerate(values)
            if v is not None]


def user_prompt(question: str, num_images: int = 0, system: str | None = None) -> list[dict]:
    """A conversational prompt: an optional system message and one user turn with ``num_images`` image blocks
    before the question text (the layout TRL and Qwen-VL use)."""
    msgs = [{"role": "system", "content": system}] if system else []
    if num_images:
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": question}]
        msgs.append({"role": "user", "content": content})
    else:
        msgs.append({"role": "user", "content": question})
    return msgs


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict], append: bool = False) -> int:
    """Write rows as JSON lines (flushing each line, so a killed writer loses at most the line in flight)."""
    import json

    n = 0
    if append:
        repair_jsonl(path)
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines, ignoring a truncated last line (a writer killed mid-line)."""
    import json

    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    with open(p, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # only the last, unterminated line may be partial
                break
            raise DataError(f"{path}: line {i + 1} is not valid JSON.")
    return rows


def repair_jsonl(path: str | os.PathLike) -> None:
    """Drop a partial last line (left by a writer that was killed mid-line) so appending stays valid JSONL."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return
    data = p.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n")
    with open(p, "r+b") as f:
        f.truncate(cut + 1 if cut >= 0 else 0)
