"""Data cards (``data_card.md`` / ``data_card.json``) for curated and mixed sets: rows per source x mode, the
annotator's pass-count histogram, judge verdicts, completion lengths per mode (tokens with a tokenizer)."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

__all__ = ["build_data_card", "render_data_card", "write_data_card"]


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
