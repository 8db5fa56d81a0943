"""Mixing curated sets into one annealing dataset, and the data card that describes it.

    python data_prep/mix.py --config data_prep/configs/mix_sample.yaml

* Each source (a curated ``.jsonl`` / ``.parquet`` file, or a curation output folder) has a ``weight``: a
  multiplier on its row count (0.5 keeps a seeded half, 2 takes every row twice, 1.5 every row once plus a seeded
  half again).
* ``thinking_share`` (optional) then down-samples the majority mode (seeded) so that thinking rows make up that
  share of the mix (R-4B's annealing mix is about 1/3 thinking).
* Images are copied into ``<output_dir>/images/`` (content-addressed) so the mix is self-contained.
* ``data_card.md`` / ``data_card.json``: rows per source x mode, the annotator's pass-count histogram, judge
  verdicts, and completion lengths per mode (tokens when a tokenizer is given, else characters).
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path

from .cards import build_data_card, render_data_card, write_data_card  # noqa: F401 (public here too)
from ..errors import row_label
from .io import DataError, read_jsonl
from .outputs import normalize_rows, store_image, write_outputs

__all__ = ["MixSource", "MixConfig", "load_curated", "mix", "build_data_card", "write_data_card", "render_data_card"]


@dataclass
class MixSource:
    path: str
    name: str | None = None  # overrides the rows' `source` value
    weight: float = 1.0


@dataclass
class MixConfig:
    sources: list
    output_dir: str
    thinking_share: float | None = None
    seed: int = 0
    tokenizer: str | None = None
    output_format: str = "jsonl"  # jsonl | parquet | both

    def __post_init__(self):
        if not self.sources:
            raise DataError("mix config: `sources` is empty.")
        srcs = []
        for i, s in enumerate(self.sources):
            if isinstance(s, str):
                s = {"path": s}
            if isinstance(s, dict):
                unknown = set(s) - {f.name for f in dataclasses.fields(MixSource)}
                if unknown:
                    raise DataError(f"mix config: sources[{i}] has unknown key(s) {sorted(unknown)} "
                                    "(known: path, name, weight).")
                s = MixSource(**s)
            if s.weight < 0:
                raise DataError(f"mix config: sources[{i}].weight must be >= 0.")
            srcs.append(s)
        self.sources = srcs
        if self.thinking_share is not None and not 0.0 < float(self.thinking_share) < 1.0:
            raise DataError("mix config: thinking_share must be strictly between 0 and 1 (or left out).")
        if self.output_format not in ("jsonl", "parquet", "both"):
            raise DataError("mix config: output_format must be jsonl, parquet or both.")


def load_mix_config(path: str | os.PathLike, **overrides) -> MixConfig:
    import yaml

    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(MixConfig)}
    unknown = set(raw) - known
    if unknown:
        raise DataError(f"{path}: unknown key(s) {sorted(unknown)}. Known: {sorted(known)}.")
    return MixConfig(**raw)


# --------------------------------------------------------------------------------------------------------------
# Loading curated rows
# --------------------------------------------------------------------------------------------------------------


def _resolve_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        for name in ("curated.jsonl", "mix.jsonl", "curated.parquet", "mix.parquet"):
            if (p / name).exists():
                return p / name
        raise DataError(f"{p}: no curated.jsonl / curated.parquet / mix.jsonl in this folder.")
    if not p.exists():
        raise DataError(f"{p}: file not found.")
    if p.suffix not in (".jsonl", ".parquet"):
        raise DataError(f"{p}: expected a .jsonl or .parquet file of curated rows.")
    return p


def load_curated(path: str | os.PathLike) -> list[dict]:
    """Rows of a curated file, with image paths made absolute (JSONL) or images as ``{"bytes", "path"}`` dicts
    (Parquet)."""
    p = _resolve_file(path)
    if p.suffix == ".jsonl":
        rows = read_jsonl(p)
        for r in rows:
            if r.get("images"):
                r["images"] = [str((p.parent / x).resolve()) if isinstance(x, str) else x for x in r["images"]]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(p).to_pylist()
    for i, r in enumerate(rows):
        for key in ("prompt", "completion", "mode"):
            if key not in r:
                raise DataError(f"{p}: {row_label(i, r.get('id'))} has no {key!r} field. Give mix sources written by "
                                "data_prep/curate.py (or rows with prompt, completion and mode).")
    return rows


# --------------------------------------------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------------------------------------------


def _weighted(rows: list[dict], weight: float, rng: random.Random) -> list[dict]:
    whole, frac = int(weight), weight - int(weight)
    picked = [r for _ in range(whole) for r in rows]
    k = round(frac * len(rows))
    if k:
        idx = sorted(rng.sample(range(len(rows)), k))
        picked += [rows[i] for i in idx]
    return picked


def _rebalance(rows: list[dict], share: float, rng: random.Random) -> list[dict]:
    t_idx = [i for i, r in enumerate(rows) if r["mode"] == "thinking"]
    n_idx = [i for i, r in enumerate(rows) if r["mode"] != "thinking"]
    T, N = len(t_idx), len(n_idx)
    if T == 0 or N == 0:
        raise DataError(f"thinking_share={share} needs both modes in the mix (thinking: {T}, non-thinking: {N}).")
    if T / (T + N) > share:  # too many thinking rows
        keep_t, keep_n = min(T, round(share * N / (1 - share))), N
    else:
        keep_t, keep_n = T, min(N, round(T * (1 - share) / share))
    keep = set(rng.sample(t_idx, keep_t)) | set(rng.sample(n_idx, keep_n))
    return [r for i, r in enumerate(rows) if i in keep]


def mix(cfg: MixConfig | str | os.PathLike, **overrides) -> dict:
    """Build ``<output_dir>/mix.jsonl`` (and/or ``.parquet``) and the data card; returns the card."""

    if not isinstance(cfg, MixConfig):
        cfg = load_mix_config(cfg, **overrides)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    rows, before = [], {}
    for s in cfg.sources:
        src_rows = load_curated(s.path)
        for r in src_rows:
            if s.name:
                r["source"] = s.name
            r.setdefault("source", Path(s.path).stem)
        before[s.name or str(s.path)] = len(src_rows)
        rows += _weighted(src_rows, float(s.weight), rng)
    weighted = len(rows)
    if cfg.thinking_share is not None:
        rows = _rebalance(rows, float(cfg.thinking_share), rng)
    final = []
    for r in rows:
        r = dict(r)
        if r.get("images"):
            r["images"] = [store_image(v, None, out) for v in r["images"]]
        final.append(r)
    final = normalize_rows(final)
    write_outputs(final, out, "mix", cfg.output_format)
    card = build_data_card(final, tokenizer=cfg.tokenizer, title="Annealing mix", extra={"mix": {
        "sources": [dataclasses.asdict(s) for s in cfg.sources], "rows_per_source_before": before,
        "rows_after_weights": weighted, "thinking_share_target": cfg.thinking_share, "seed": cfg.seed}})
    write_data_card(card, out)
    return card
