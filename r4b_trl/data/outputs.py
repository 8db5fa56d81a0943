"""What curation and mixing write: Arrow-friendly rows, ``<stem>.jsonl`` / ``.parquet`` files, and images copied
into the output folder (content-addressed, stored bytes kept as they are)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from .io import DataError, write_jsonl

__all__ = ["store_image", "normalize_rows", "write_outputs", "image_values", "raw_image_bytes"]


def raw_image_bytes(value, base_dir) -> tuple[bytes, str]:
    """The stored bytes of an image value and a file extension (no decoding, no re-encoding)."""
    from PIL import Image

    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if isinstance(value, dict):
        if value.get("bytes"):
            ext = Path(value.get("path") or "").suffix.lower() or _sniff_ext(value["bytes"])
            return bytes(value["bytes"]), ext
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), _sniff_ext(value)
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        return p.read_bytes(), (p.suffix.lower() or ".png")
    raise DataError(f"expected an image (PIL image, path, bytes or {{'bytes','path'}}), got {type(value).__name__}")


def _sniff_ext(data: bytes) -> str:
    from PIL import Image

    try:
        fmt = Image.open(io.BytesIO(data)).format or "PNG"
    except Exception:
        fmt = "PNG"
    return "." + {"JPEG": "jpg"}.get(fmt, fmt.lower())


def image_values(row: dict, column: str | None) -> list:
    if not column or row.get(column) is None:
        return []
    v = row[column]
    return [x for x in (v if isinstance(v, (list, tuple)) else [v]) if x is not None]


def store_image(value, base_dir, out_dir: str | os.PathLike) -> str:
    """Copy an image's bytes into ``<out_dir>/images/<sha256[:16]><ext>`` (content-addressed, so repeated runs and
    shared images write one file) and return its path relative to ``out_dir``."""
    data, ext = raw_image_bytes(value, base_dir)
    name = hashlib.sha256(data).hexdigest()[:16] + ext
    rel = Path("images") / name
    dest = Path(out_dir) / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return rel.as_posix()


def normalize_rows(rows: list[dict]) -> list[dict]:
    """Make the rows Arrow-friendly as one table: when any row has images, every message's content becomes a list
    of blocks (``{"type": "text", "text": ...}``) and every row gets an ``images`` list; otherwise content stays a
    string and the ``images`` column is dropped."""
    any_images = any(r.get("images") for r in rows)
    out = []
    for r in rows:
        r = dict(r)
        if any_images:
            r["prompt"] = [_blocks(m) for m in r["prompt"]]
            r["images"] = list(r.get("images") or [])
        else:
            r.pop("images", None)
        out.append(r)
    return out


def _blocks(message: dict) -> dict:
    c = message.get("content")
    if isinstance(c, list):
        content = [{"type": b.get("type", "text"), "text": b.get("text") if b.get("type", "text") == "text" else None}
                   for b in c]
    else:
        content = [{"type": "text", "text": "" if c is None else str(c)}]
    return {"role": message["role"], "content": content}


def write_outputs(rows: list[dict], out_dir: Path, stem: str, fmt: str) -> list[Path]:
    """Write ``<stem>.jsonl`` and/or ``<stem>.parquet`` (images embedded as bytes in the Parquet file)."""
    written = []
    out_dir = Path(out_dir)
    if fmt in ("jsonl", "both"):
        p = out_dir / f"{stem}.jsonl"
        tmp = p.with_suffix(".jsonl.tmp")
        write_jsonl(tmp, rows)
        os.replace(tmp, p)
        written.append(p)
    if fmt in ("parquet", "both"):
        import datasets

        p = out_dir / f"{stem}.parquet"
        embedded = []
        for r in rows:
            r = dict(r)
            if "images" in r:
                r["images"] = [{"bytes": (out_dir / x).read_bytes(), "path": Path(x).name} for x in r["images"]]
            embedded.append(r)
        ds = datasets.Dataset.from_list(embedded) if embedded else datasets.Dataset.from_dict({})
        if "images" in ds.column_names:
            ds = ds.cast_column("images", datasets.List(datasets.Image()))
        ds.to_parquet(str(p))
        written.append(p)
    return written
