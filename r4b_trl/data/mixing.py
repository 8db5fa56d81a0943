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
import json
import os
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import DataError, read_jsonl

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
                raise DataError(f"{p}: row {i} has no {key!r} field; is this a curated file?")
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
    from .curation import normalize_rows, store_image, write_outputs

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


# --------------------------------------------------------------------------------------------------------------
# Data card
# --------------------------------------------------------------------------------------------------------------


def _completion_text(row: dict) -> str:
    c = row.get("completion")
    if isinstance(c, list) and c:
        content = c[-1].get("content")
        if isinstance(content, list):
            return "".join(b.get("text") or "" for b in content)
        return content or ""
    return c or ""


def _stats(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    s = sorted(values)
    return {"count": len(s), "min": s[0], "mean": round(statistics.fmean(s), 1), "median": statistics.median(s),
            "p90": s[min(len(s) - 1, int(0.9 * len(s)))], "max": s[-1]}


def build_data_card(rows: list[dict], tokenizer: Any = None, title: str = "Dataset", extra: dict | None = None) -> dict:
    if isinstance(tokenizer, (str, os.PathLike)):
        from ..models import load_processing_class

        tokenizer = load_processing_class(str(tokenizer))
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    by_source: dict[str, dict[str, int]] = {}
    hist: dict[str, int] = {}
    hist_n: set = set()
    verdicts: dict[str, int] = {}
    lengths: dict[str, list[int]] = {"thinking": [], "non_thinking": []}
    with_images = 0
    for r in rows:
        src = str(r.get("source") or "unknown")
        mode = r.get("mode") or "unknown"
        by_source.setdefault(src, {"thinking": 0, "non_thinking": 0})
        by_source[src][mode] = by_source[src].get(mode, 0) + 1
        ev = r.get("evidence") or {}
        if ev.get("pass_count") is not None:
            key = str(ev["pass_count"])
            hist[key] = hist.get(key, 0) + 1
            hist_n.add(ev.get("n_samples"))
        if ev.get("verdict"):
            verdicts[ev["verdict"]] = verdicts.get(ev["verdict"], 0) + 1
        text = _completion_text(r)
        n = len(tok.encode(text, add_special_tokens=False)) if tok is not None else len(text)
        lengths.setdefault(mode, []).append(n)
        with_images += bool(r.get("images"))
    total = len(rows)
    thinking = sum(v.get("thinking", 0) for v in by_source.values())
    card = {
        "title": title,
        "rows": total,
        "thinking": thinking,
        "non_thinking": total - thinking,
        "thinking_share": round(thinking / total, 4) if total else None,
        "rows_with_images": with_images,
        "by_source": {s: {**v, "total": sum(v.values()),
                          "thinking_share": round(v.get("thinking", 0) / max(1, sum(v.values())), 4)}
                      for s, v in sorted(by_source.items())},
        "pass_count_histogram": dict(sorted(hist.items(), key=lambda kv: int(kv[0]))),
        "pass_count_n_samples": sorted(x for x in hist_n if x is not None),
        "judge_verdicts": dict(sorted(verdicts.items())),
        "length_unit": "tokens" if tok is not None else "characters",
        "completion_length": {m: _stats(v) for m, v in lengths.items()},
    }
    if extra:
        card.update(extra)
    return card


def render_data_card(card: dict) -> str:
    lines = [f"# {card['title']}", "",
             f"{card['rows']} rows: {card['thinking']} thinking, {card['non_thinking']} non-thinking "
             f"(thinking share {card['thinking_share']}); {card['rows_with_images']} with images.", "",
             "Targets are `<think>\\n…\\n</think>\\n\\nanswer` (thinking) and `<think>\\n\\n</think>\\n\\nanswer` "
             "(non-thinking).", "", "## Rows per source and mode", "",
             "| source | thinking | non-thinking | total | thinking share |", "|---|---:|---:|---:|---:|"]
    for s, v in card["by_source"].items():
        lines.append(f"| {s} | {v.get('thinking', 0)} | {v.get('non_thinking', 0)} | {v['total']} | {v['thinking_share']} |")
    lines += ["", "## Annotator pass counts (performance heuristic)", ""]
    if card["pass_count_histogram"]:
        ns = card.get("pass_count_n_samples") or []
        lines.append(f"Correct non-thinking answers out of {', '.join(map(str, ns)) or '?'} samples; 0 → thinking.")
        lines += ["", "| pass count | rows |", "|---:|---:|"]
        lines += [f"| {k} | {v} |" for k, v in card["pass_count_histogram"].items()]
    else:
        lines.append("No rows labelled by the performance heuristic.")
    lines += ["", "## Judge verdicts (difficulty heuristic)", ""]
    if card["judge_verdicts"]:
        lines += ["| verdict | rows |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in card["judge_verdicts"].items()]
    else:
        lines.append("No rows labelled by the difficulty heuristic.")
    lines += ["", f"## Completion length per mode ({card['length_unit']})", "",
              "| mode | count | min | mean | median | p90 | max |", "|---|---:|---:|---:|---:|---:|---:|"]
    for m, s in card["completion_length"].items():
        if s.get("count"):
            lines.append(f"| {m} | {s['count']} | {s['min']} | {s['mean']} | {s['median']} | {s['p90']} | {s['max']} |")
        else:
            lines.append(f"| {m} | 0 | | | | | |")
    for key in ("curation", "mix"):
        if key in card:
            lines += ["", f"## {key.capitalize()}", "", "```json", json.dumps(card[key], indent=2, default=str), "```"]
    return "\n".join(lines) + "\n"


def write_data_card(card: dict, out_dir: str | os.PathLike) -> None:
    out = Path(out_dir)
    (out / "data_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False, default=str) + "\n",
                                        encoding="utf-8")
    (out / "data_card.md").write_text(render_data_card(card), encoding="utf-8")
