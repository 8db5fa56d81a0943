"""The demo's synthetic task: the running sum mod 10 of k single digits, in a fixed-width prompt.

A question is k digits, ``+``-separated and right-padded with ``_`` to a fixed width, followed by ``=``
(``8+6+5+2+3______=``, width 8); the answer is their sum mod 10 (``4``); the step-by-step reasoning ("trace")
restates each operand and writes the running sum mod 10 after it (``8864592134``). Difficulty is the number of
digits: ``easy`` k=2, ``med`` k=4, ``hard`` k=6..8. The probes' original form (``style="sum"``: ``86523_______=``
with trace ``84914``, hard k=8..12) is kept as an option.

Why this task (measured in ``shared/reference/toy-probe-2.md`` and ``docs/demo_feasibility.md``): sum mod 10 is
parity-like, so a tiny model answering in one shot stays at chance (10 %) for k >= 4 while the trace solves every
k; two-digit items are answered directly. The fixed width keeps operand i and its restatement in the trace at a
constant distance. Restating the operand makes the trace learnable in ~300-600 SFT steps instead of the sum style's
1,100 to >2,000 (a seed-dependent jump); hard k=6..8 instead of 8..12 keeps sequences short (<= 47 tokens).

What this module gives the pipeline:

* :func:`build_splits` — seeded question rows (``id``, ``question``, ``answer``, ``difficulty``, ``k``, ``trace``,
  ``kind``) for named training pools (``pretrain``, ``curation``, ``rl``) and a ``test`` split whose med and hard
  items never appear in any pool. Easy (k=2) has only 100 distinct items: by default the easy test set is all of
  them and they are trained on too (``held_out: false``), see :class:`TaskSpec`;
* :func:`solve_trace` / :func:`reasoner` — the programmatic step-by-step solver (the "reasoning model" of R-4B's
  curation): ``reasoner(row) -> str`` gives a row's reasoning text; :func:`curation_reasoner` wraps it for
  curation's ``module:function`` hook (request in, ``{"reasoning", "answer"}`` out);
* :func:`sft_row` / :func:`bimodal_rows` — prompt/completion conversational SFT rows in either mode, written with
  :class:`r4b_trl.modes.ModePrefixes` (``<think>\\n8864592134\\n</think>\\n\\n4`` / ``<think>\\n\\n</think>\\n\\n4``).

CLI::

    python -m r4b_trl.data.synthetic --out DIR --seed 0 [--pretrain 1000 --pretrain-easy 3000 --curation 1000 ...]

writes ``test.jsonl``, ``pretrain.jsonl``, ``curation.jsonl``, ``rl.jsonl`` (question rows),
``bimodal_sft.jsonl`` (the pre-training set from the ``pretrain`` pool, prompt/completion) and ``task.json``.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from ..modes import Mode, ModePrefixes, resolve_mode
from .io import write_jsonl

__all__ = [
    "TaskSpec",
    "DEFAULT_LEVELS",
    "DEFAULT_POOLS",
    "make_question",
    "parse_question",
    "answer_of",
    "solve_trace",
    "reasoner",
    "curation_reasoner",
    "question_row",
    "test_split",
    "train_pool",
    "build_splits",
    "sft_row",
    "bimodal_rows",
    "write_task",
    "main",
]

PAD = "_"
EQ = "="
SEP = "+"
#: ``sum``: ``86523_______=`` with trace ``84914`` (one running sum per step). ``copy``: ``8+6+5+2+3______________=``
#: with trace ``8864592134`` (each step restates the operand, then the running sum; the operands are ``+``-separated
#: so that operand i and its restatement stay at a constant distance).
STYLES = ("sum", "copy")
#: difficulty -> (min k, max k), inclusive.
DEFAULT_LEVELS: dict[str, tuple[int, int]] = {"easy": (2, 2), "med": (4, 4), "hard": (6, 8)}
#: Pool sizes (items per difficulty). Easy is over-sampled 3x in pre-training: the direct answers to the 100 easy
#: items (which the annotator needs) are otherwise memorised too late (docs/demo_feasibility.md).
DEFAULT_POOLS: dict[str, int | dict[str, int]] = {"pretrain": {"easy": 3000, "med": 1000, "hard": 1000},
                                                  "curation": 1000, "rl": 1000}


@dataclass
class TaskSpec:
    """The task's parameters. ``width`` is the number of operand slots (the prompt is ``width + 1`` characters);
    ``levels`` maps a difficulty to its inclusive range of digit counts; ``style`` is the question/trace form
    (:data:`STYLES`).

    ``easy_holdout``: how many ``easy`` items to hold out of training. The default, 0, makes the easy test set
    *every* easy item (100 for k=2), all of them also in the training pools (``held_out: false`` in the rows):
    a two-digit item has nowhere to hide, and the measured direct mode *memorises* the pairs it saw (100 %) while
    staying at chance on unseen pairs (docs/demo_feasibility.md), so held-out easy items would not be "easy" for
    a direct answer. med and hard test items are always held out of every pool."""

    width: int = 8
    levels: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    easy_holdout: int = 0
    style: str = "copy"

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, not {self.style!r}")
        self.levels = {name: (int(lo), int(hi)) for name, (lo, hi) in self.levels.items()}
        for name, (lo, hi) in self.levels.items():
            if not 1 <= lo <= hi <= self.width:
                raise ValueError(f"level {name!r}: need 1 <= min k <= max k <= width={self.width}, got {(lo, hi)}")

    def space(self, difficulty: str) -> int:
        """How many distinct questions a difficulty has."""
        lo, hi = self.levels[difficulty]
        return sum(10 ** k for k in range(lo, hi + 1))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = {k: list(v) for k, v in self.levels.items()}
        return d


# ----------------------------------------------------------------------------------------------------------------
# The task itself
# ----------------------------------------------------------------------------------------------------------------


def make_question(digits: Iterable[int], width: int = 8, style: str = "copy") -> str:
    """``[8, 6, 5, 2, 3]`` -> ``'8+6+5+2+3______='`` (``style="sum"``, width 12: ``'86523_______='``)."""
    s = "".join(str(int(d)) for d in digits)
    if not s or len(s) > width or any(not c.isdigit() for c in s):
        raise ValueError(f"need 1..{width} single digits, got {s!r}")
    if style == "copy":
        return SEP.join(s).ljust(2 * width - 1, PAD) + EQ
    if style != "sum":
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    return s.ljust(width, PAD) + EQ


def _style_of(question: str) -> str:
    return "copy" if SEP in question else "sum"


def parse_question(question: str) -> list[int]:
    """The digits of a question (``'86523_______='`` or ``'8+6+5+2+3___…='`` -> ``[8, 6, 5, 2, 3]``). Raises
    ValueError on anything else."""
    q = question.strip()
    if not q.endswith(EQ):
        raise ValueError(f"not a running-sum question (no trailing {EQ!r}): {question!r}")
    body = q[:-1].rstrip(PAD)
    if _style_of(q) == "copy":
        parts = body.split(SEP)
        if not all(len(x) == 1 and x.isdigit() for x in parts):
            raise ValueError(f"not a running-sum question: {question!r}")
        return [int(x) for x in parts]
    if not body or not body.isdigit() or PAD in body:
        raise ValueError(f"not a running-sum question: {question!r}")
    return [int(c) for c in body]


def answer_of(digits: Iterable[int]) -> str:
    return str(sum(int(d) for d in digits) % 10)


def solve_trace(question: str) -> str:
    """The step-by-step reasoning: the running sums mod 10, one digit per operand (``'86523_______='`` ->
    ``'84914'``); for a ``copy``-style question each step restates the operand first (``'8864592134'``). Its last
    digit is the answer."""
    copy = _style_of(question) == "copy"
    total, out = 0, []
    for d in parse_question(question):
        total = (total + d) % 10
        out.append(f"{d}{total}" if copy else str(total))
    return "".join(out)


def reasoner(row: dict) -> str:
    """The reasoning text (the trace) for a question row: ``reasoner({"question": "86523_______=", ...})`` ->
    ``'84914'``."""
    return solve_trace(row["question"])


def curation_reasoner(req) -> dict:
    """The "reasoning model" for ``data_prep/curate.py`` as a ``type: python`` callable
    (``callable: r4b_trl.data.synthetic:curation_reasoner``). Takes the curation request (an object with a
    ``question`` attribute, or a row dict) and returns ``{"reasoning": trace, "answer": answer}``."""
    question = req["question"] if isinstance(req, dict) else req.question
    trace = solve_trace(question)
    return {"reasoning": trace, "answer": trace[-1]}


def question_row(digits: list[int], difficulty: str, id: str, width: int = 8, style: str = "copy") -> dict:
    q = make_question(digits, width, style)
    return {"id": id, "question": q, "answer": answer_of(digits), "difficulty": difficulty, "k": len(digits),
            "trace": solve_trace(q), "kind": "exact"}


# ----------------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------------


def _level_seed(seed: int, split: str, difficulty: str) -> int:
    # A stable per-(split, level) seed (not Python's salted hash()).
    return (seed * 1_000_003 + sum(ord(c) * 131 ** i for i, c in enumerate(f"{split}/{difficulty}"))) % (2 ** 63)


def _random_digits(rng: random.Random, lo: int, hi: int) -> tuple[int, ...]:
    # Uniform over the level's question space would put ~90 % of a k=8..12 level on k=12; uniform over k is what
    # the probes used and what keeps every trace length trained.
    k = rng.randint(lo, hi)
    return tuple(rng.randrange(10) for _ in range(k))


def _sample_unique(rng: random.Random, lo: int, hi: int, n: int, exclude: set, space: int) -> list[tuple[int, ...]]:
    available = space - len(exclude)
    if n > available:
        raise ValueError(f"asked for {n} distinct items but only {available} exist outside the excluded set")
    if space <= 20_000:  # small level: enumerate and shuffle (exact, no rejection loop)
        import itertools

        items = [t for k in range(lo, hi + 1) for t in itertools.product(range(10), repeat=k) if t not in exclude]
        rng.shuffle(items)
        return items[:n]
    out, seen = [], set(exclude)
    while len(out) < n:
        t = _random_digits(rng, lo, hi)
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def test_split(spec: TaskSpec, n_per_level: int, seed: int = 0) -> list[dict]:
    """The test rows: ``n_per_level`` distinct held-out items per difficulty (``held_out: true``), except ``easy``:
    ``spec.easy_holdout`` held-out items, or, when that is 0, up to ``n_per_level`` easy items that the training
    pools may contain too (``held_out: false``; all 100 for k=2)."""
    rows = []
    for difficulty, (lo, hi) in spec.levels.items():
        space = spec.space(difficulty)
        held_out = not (difficulty == "easy" and spec.easy_holdout == 0)
        if difficulty == "easy":
            n = spec.easy_holdout or min(n_per_level, space)
        else:
            n = n_per_level
        if held_out and n > space // 2:
            raise ValueError(f"level {difficulty!r} has {space} items: holding out {n} leaves too few to train on")
        rng = random.Random(_level_seed(seed, "test", difficulty))
        for i, t in enumerate(_sample_unique(rng, lo, hi, n, set(), space)):
            row = question_row(list(t), difficulty, f"test-{difficulty}-{i:05d}", spec.width, spec.style)
            row["held_out"] = held_out
            rows.append(row)
    return rows


def train_pool(spec: TaskSpec, name: str, n_per_level: int | dict[str, int], test_rows: list[dict], seed: int = 0,
               unique: bool = True) -> list[dict]:
    """A training pool of ``n_per_level`` items per difficulty, none of them a held-out test row. Items are distinct
    within the pool while the level has enough of them (``unique``); small levels (easy: 100 items) then repeat.
    ``n_per_level`` may be a dict per difficulty (e.g. more easy rows). Rows are interleaved (shuffled) across
    difficulties."""
    excluded = {tuple(parse_question(r["question"])) for r in test_rows if r.get("held_out", True)}
    rows = []
    for difficulty, (lo, hi) in spec.levels.items():
        n_level = n_per_level.get(difficulty, 0) if isinstance(n_per_level, dict) else n_per_level
        rng = random.Random(_level_seed(seed, name, difficulty))
        exclude = {t for t in excluded if lo <= len(t) <= hi}
        space = spec.space(difficulty)
        available = space - len(exclude)
        items: list[tuple[int, ...]] = []
        if unique and n_level <= available:
            items = _sample_unique(rng, lo, hi, n_level, exclude, space)
        else:  # repeat the whole (small) level as often as needed
            while len(items) < n_level:
                items += _sample_unique(rng, lo, hi, min(available, n_level - len(items)), exclude, space)
        for i, t in enumerate(items):
            rows.append(question_row(list(t), difficulty, f"{name}-{difficulty}-{i:06d}", spec.width, spec.style))
    random.Random(_level_seed(seed, name, "*shuffle*")).shuffle(rows)
    return rows


def build_splits(spec: TaskSpec | None = None, seed: int = 0, n_test: int = 300,
                 pools: dict[str, int | dict[str, int]] | None = None) -> dict[str, list[dict]]:
    """``{"test": [...], <pool name>: [...]}``; pools default to :data:`DEFAULT_POOLS` (a pool's size is items per
    difficulty, or a dict per difficulty)."""
    spec = spec or TaskSpec()
    pools = pools if pools is not None else dict(DEFAULT_POOLS)
    test = test_split(spec, n_test, seed)
    out = {"test": test}
    for name, n in pools.items():
        if name == "test":
            raise ValueError("'test' is reserved for the held-out split")
        out[name] = train_pool(spec, name, n, test, seed)
    return out


# ----------------------------------------------------------------------------------------------------------------
# SFT rows
# ----------------------------------------------------------------------------------------------------------------


def sft_row(row: dict, mode: str | Mode, prefixes: ModePrefixes | None = None, trace: str | None = None) -> dict:
    """A prompt/completion conversational SFT row answering ``row`` in ``mode`` (``thinking``: the trace in the
    think block; ``non_thinking``: an empty think block)."""
    p = prefixes or ModePrefixes()
    mode = resolve_mode(mode)
    if mode is Mode.THINKING:
        text = p.thinking_answer(trace or row.get("trace") or solve_trace(row["question"]), row["answer"])
    else:
        text = p.answer_in_mode(mode, row["answer"])
    return {"prompt": [{"role": "user", "content": row["question"]}],
            "completion": [{"role": "assistant", "content": text}],
            "id": row["id"], "difficulty": row["difficulty"], "mode": mode.value}


def bimodal_rows(rows: list[dict], mix: str = "both", seed: int = 0, prefixes: ModePrefixes | None = None) -> list[dict]:
    """The bimodal pre-training set. ``mix="both"``: every item in both modes (2 rows per item); ``"half"``: each
    item in one mode, thinking for a random half (exactly half per difficulty, seeded). Rows are shuffled."""
    if mix not in ("both", "half"):
        raise ValueError(f"mix must be 'both' or 'half', not {mix!r}")
    rng = random.Random(seed)
    out = []
    if mix == "both":
        for r in rows:
            out += [sft_row(r, Mode.THINKING, prefixes), sft_row(r, Mode.NON_THINKING, prefixes)]
    else:
        by_level: dict[str, list[dict]] = {}
        for r in rows:
            by_level.setdefault(r["difficulty"], []).append(r)
        for level_rows in by_level.values():
            order = list(range(len(level_rows)))
            rng.shuffle(order)
            half = set(order[: len(order) // 2])
            out += [sft_row(r, Mode.THINKING if i in half else Mode.NON_THINKING, prefixes)
                    for i, r in enumerate(level_rows)]
    rng.shuffle(out)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------


def write_task(out: str | Path, spec: TaskSpec | None = None, seed: int = 0, n_test: int = 300,
               pools: dict[str, int] | None = None, bimodal: str = "both") -> dict[str, Path]:
    """Write every split as JSONL under ``out`` plus ``bimodal_sft.jsonl`` (from the ``pretrain`` pool) and
    ``task.json``. Returns the written paths by name."""
    spec = spec or TaskSpec()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = build_splits(spec, seed, n_test, pools)
    paths = {}
    for name, rows in splits.items():
        paths[name] = out / f"{name}.jsonl"
        write_jsonl(paths[name], rows)
    if "pretrain" in splits and bimodal != "none":
        paths["bimodal_sft"] = out / "bimodal_sft.jsonl"
        write_jsonl(paths["bimodal_sft"], bimodal_rows(splits["pretrain"], bimodal, seed))
    meta = {"task": "running sum mod 10", "seed": seed, "spec": spec.to_dict(), "bimodal": bimodal,
            "counts": {name: len(rows) for name, rows in splits.items()}}
    paths["task"] = out / "task.json"
    paths["task"].write_text(json.dumps(meta, indent=2) + "\n")
    return paths


def _levels_arg(text: str) -> dict[str, tuple[int, int]]:
    """``easy=2,med=4,hard=8-12`` -> ``{"easy": (2, 2), "med": (4, 4), "hard": (8, 12)}``."""
    levels = {}
    for part in text.split(","):
        name, _, rng = part.partition("=")
        lo, _, hi = rng.partition("-")
        levels[name.strip()] = (int(lo), int(hi or lo))
    return levels


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write the demo's synthetic running-sum task (question rows, held-out "
                                             "test split, bimodal pre-training set).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--style", choices=STYLES, default="copy", help="question/trace form (see STYLES)")
    ap.add_argument("--levels", type=_levels_arg, default=dict(DEFAULT_LEVELS),
                    help="difficulty=k or difficulty=kmin-kmax, comma-separated (default easy=2,med=4,hard=6-8)")
    ap.add_argument("--easy-holdout", type=int, default=0,
                    help="easy items held out of training (default 0: the easy test set is every easy item, "
                         "also trained on)")
    ap.add_argument("--test", type=int, default=300, help="held-out items per difficulty")
    ap.add_argument("--pretrain", type=int, default=1000, help="pre-training pool items per difficulty")
    ap.add_argument("--pretrain-easy", type=int, default=3000, help="pre-training pool easy items")
    ap.add_argument("--curation", type=int, default=1000, help="curation pool items per difficulty")
    ap.add_argument("--rl", type=int, default=1000, help="RL prompt pool items per difficulty")
    ap.add_argument("--bimodal", choices=["both", "half", "none"], default="both",
                    help="pre-training set: every item in both modes, a random half thinking, or none")
    a = ap.parse_args(argv)
    spec = TaskSpec(width=a.width, levels=a.levels, easy_holdout=a.easy_holdout, style=a.style)
    pretrain = {lv: (a.pretrain_easy if lv == "easy" else a.pretrain) for lv in spec.levels}
    paths = write_task(a.out, spec, a.seed, a.test, {"pretrain": pretrain, "curation": a.curation, "rl": a.rl},
                       a.bimodal)
    for name, p in paths.items():
        print(f"{name}: {p}")


if __name__ == "__main__":
    from ..errors import cli

    raise SystemExit(cli(main))
