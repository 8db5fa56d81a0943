"""Build r4b-trl's small offline sample benchmarks (deterministic; the outputs are committed).

    python data_prep/make_sample_benchmarks.py [--out r4b_trl/data/samples]

* ``bench_text_math.jsonl`` — 30 arithmetic / algebra questions, ``kind`` = math, ``difficulty`` = easy | hard.
* ``bench_image.jsonl`` — 20 questions about small generated PNGs (``images/``): counting red squares among blue
  circles (``kind`` = math) and multiple-choice questions about colour and shape (``kind`` = choice);
  ``category`` = counting | choice, ``difficulty`` = easy | hard.

Image paths in ``bench_image.jsonl`` are relative to the file's folder (the evaluator resolves them there).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from r4b_trl.errors import cli  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "r4b_trl" / "data" / "samples"

COLORS = {"red": (220, 30, 30), "blue": (30, 70, 220), "green": (30, 160, 60), "yellow": (235, 200, 20)}


def text_math_items() -> list[dict]:
    rng = random.Random(1234)
    items = []
    # 15 easy: one-step arithmetic.
    for i in range(15):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        op = ["+", "-", "*"][i % 3]
        if op == "-" and b > a:
            a, b = b, a
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        symbol = {"+": "+", "-": "-", "*": "\\times"}[op]
        items.append({"question": f"What is ${a} {symbol} {b}$? Put the final answer in \\boxed{{}}.",
                      "answer": str(value), "difficulty": "easy"})
    # 15 hard: linear equations, multi-step arithmetic, fractions.
    for i in range(5):
        x, a, b = rng.randint(2, 12), rng.randint(2, 9), rng.randint(1, 30)
        items.append({"question": f"Solve for $x$: ${a}x + {b} = {a * x + b}$. Put the final answer in \\boxed{{}}.",
                      "answer": str(x), "difficulty": "hard"})
    for i in range(5):
        a, b, c = rng.randint(11, 49), rng.randint(11, 49), rng.randint(2, 9)
        items.append({"question": f"Compute $({a} + {b}) \\times {c} - {a}$. Put the final answer in \\boxed{{}}.",
                      "answer": str((a + b) * c - a), "difficulty": "hard"})
    fractions = [(6, 8, "\\frac{3}{4}"), (10, 4, "\\frac{5}{2}"), (9, 12, "\\frac{3}{4}"), (14, 21, "\\frac{2}{3}"),
                 (15, 6, "\\frac{5}{2}")]
    for num, den, gold in fractions:
        items.append({"question": f"Write $\\frac{{{num}}}{{{den}}}$ in lowest terms. Put the final answer in "
                                  "\\boxed{}.", "answer": gold, "difficulty": "hard"})
    # Interleave easy and hard items, so that any `limit` keeps both difficulties.
    easy = [it for it in items if it["difficulty"] == "easy"]
    hard = [it for it in items if it["difficulty"] == "hard"]
    items = [it for pair in zip(easy, hard) for it in pair]
    for i, item in enumerate(items):
        item.update(id=f"math-{i:02d}", kind="math")
    return [{k: it[k] for k in ("id", "question", "answer", "kind", "difficulty")} for it in items]


def _draw_counting(path: Path, n_red: int, n_blue: int, seed: int, size: int = 96) -> None:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    cell = size // 4  # a 4x4 grid: shapes never overlap
    cells = rng.sample([(r, c) for r in range(4) for c in range(4)], n_red + n_blue)
    for k, (r, c) in enumerate(cells):
        x0, y0 = c * cell + 4, r * cell + 4
        box = (x0, y0, x0 + cell - 8, y0 + cell - 8)
        if k < n_red:
            draw.rectangle(box, fill=COLORS["red"])
        else:
            draw.ellipse(box, fill=COLORS["blue"])
    img.save(path, format="PNG", optimize=True)


def _draw_shape(path: Path, shape: str, color: str, size: int = 96) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    box = (16, 16, size - 16, size - 16)
    if shape == "square":
        draw.rectangle(box, fill=COLORS[color])
    elif shape == "circle":
        draw.ellipse(box, fill=COLORS[color])
    else:
        draw.polygon([(size // 2, 12), (size - 12, size - 16), (12, size - 16)], fill=COLORS[color])
    img.save(path, format="PNG", optimize=True)


def image_items(out: Path) -> list[dict]:
    rng = random.Random(4321)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(12):
        n_red = rng.randint(1, 4) if i < 6 else rng.randint(4, 8)
        n_blue = rng.randint(0, 2) if i < 6 else rng.randint(3, 7)
        name = f"count_{i:02d}.png"
        _draw_counting(img_dir / name, n_red, n_blue, seed=i)
        items.append({"question": "How many red squares are in the image? Put the final answer in \\boxed{}.",
                      "answer": str(n_red), "kind": "math", "category": "counting",
                      "difficulty": "easy" if i < 6 else "hard", "image": f"images/{name}"})
    letters = "ABCD"
    for i in range(8):
        shape = ["square", "circle", "triangle"][i % 3]
        color = list(COLORS)[(i * 3) % 4]
        name = f"shape_{i:02d}.png"
        _draw_shape(img_dir / name, shape, color)
        if i % 2 == 0:
            options = list(COLORS)
            rng.shuffle(options)
            question = "What colour is the shape?"
            gold = letters[options.index(color)]
        else:
            options = ["square", "circle", "triangle", "star"]
            rng.shuffle(options)
            question = "Which shape is shown?"
            gold = letters[options.index(shape)]
        choices = "\n".join(f"{letters[k]}. {o}" for k, o in enumerate(options))
        items.append({"question": f"{question}\n{choices}\nAnswer with the option's letter.", "answer": gold,
                      "kind": "choice", "category": "choice", "difficulty": "easy", "image": f"images/{name}"})
    # Interleave counting and multiple-choice items, so that any `limit` keeps both categories.
    counting, choice = items[:12], items[12:]
    items = [it for k in range(12) for it in ([counting[k]] + ([choice[k]] if k < len(choice) else []))]
    for i, item in enumerate(items):
        item["id"] = f"img-{i:02d}"
    return [{k: it[k] for k in ("id", "question", "image", "answer", "kind", "category", "difficulty")}
            for it in items]


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = text_math_items()
    write(out / "bench_text_math.jsonl", text)
    images = image_items(out)
    write(out / "bench_image.jsonl", images)
    print(f"wrote {len(text)} text items and {len(images)} image items to {out}")


if __name__ == "__main__":
    sys.exit(cli(main))
