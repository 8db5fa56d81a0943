"""The small curation sample shipped in ``r4b_trl/data/samples/`` (built here, from code, so it can be rebuilt).

    python -m r4b_trl.data.sample_set --out r4b_trl/data/samples

It writes ``curation_sample.jsonl`` (27 rows) and the PNGs it refers to under ``images/``:

* arithmetic questions with answers (single operations a weak annotator gets right → non-thinking, and word
  problems it gets wrong → thinking),
* multiple-choice questions (``kind: choice``),
* open-ended questions without answers (``kind: subjective``), judged by the difficulty heuristic,
* questions about images of coloured squares (counts as answers) and one description request,
* bad rows on purpose: an objective row with an empty answer, a duplicate question, and an image that cannot be
  decoded. Curation records the first and last as failed (with the reason) and drops the duplicate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SQUARE = 12


def squares_image(n: int, color: tuple[int, int, int], size: tuple[int, int] = (56, 56)):
    """A white image with ``n`` non-overlapping ``color`` squares on a grid."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    per_row = size[0] // (SQUARE + 4)
    for k in range(n):
        x = 2 + (k % per_row) * (SQUARE + 4)
        y = 2 + (k // per_row) * (SQUARE + 4)
        draw.rectangle([x, y, x + SQUARE - 1, y + SQUARE - 1], fill=color)
    return img


RED, BLUE, GREEN = (220, 30, 30), (30, 60, 220), (30, 170, 60)

IMAGES = {
    "red_3.png": (3, RED),
    "blue_5.png": (5, BLUE),
    "green_2.png": (2, GREEN),
    "red_6.png": (6, RED),
}

ROWS = [
    # objective: single operations (the arithmetic fake annotator answers these right)
    {"id": "m01", "question": "What is 17 + 25?", "answer": "42", "kind": "math"},
    {"id": "m02", "question": "What is 9 * 8?", "answer": "72", "kind": "math"},
    {"id": "m03", "question": "What is 100 - 37?", "answer": "63", "kind": "math"},
    {"id": "m04", "question": "What is 144 / 12?", "answer": "12", "kind": "math"},
    {"id": "m05", "question": "Compute 3^4.", "answer": "81", "kind": "math"},
    # objective: word problems (the fake annotator cannot solve them)
    {"id": "m06", "question": "A train travels at 60 km per hour for 2.5 hours. How many kilometres does it travel?",
     "answer": "150", "kind": "math"},
    {"id": "m07", "question": "Tom has 3 boxes with 12 apples each. He gives away 7 apples. How many apples are left?",
     "answer": "29", "kind": "math"},
    {"id": "m08", "question": "The sum of two consecutive integers is 41. What is the larger one?", "answer": "21",
     "kind": "math"},
    {"id": "m09", "question": "A rectangle has perimeter 30 and width 5. What is its area?", "answer": "50",
     "kind": "math"},
    {"id": "m10", "question": "How many positive divisors does 36 have?", "answer": "9", "kind": "math"},
    # objective without a kind column value: "objective" is the default when an answer exists
    {"id": "m11", "question": "What is 250 + 250?", "answer": "500", "kind": None},
    # multiple choice
    {"id": "c01", "question": "Which of these is a prime number?\nA. 29\nB. 21\nC. 27\nD. 33", "answer": "A",
     "kind": "choice"},
    {"id": "c02", "question": "Which planet is closest to the Sun?\nA. Venus\nB. Mercury\nC. Earth\nD. Mars",
     "answer": "B", "kind": "choice"},
    {"id": "c03", "question": "What is 15% of 80?\nA. 10\nB. 15\nC. 12\nD. 8", "answer": "C", "kind": "choice"},
    # subjective (open-ended, no reference answer)
    {"id": "s01", "question": "Write a haiku about autumn leaves.", "answer": None, "kind": "subjective"},
    {"id": "s02", "question": "Translate 'good morning' into French.", "answer": None, "kind": "subjective"},
    {"id": "s03", "question": "Prove that the sum of two odd numbers is even.", "answer": None, "kind": "subjective"},
    {"id": "s04", "question": "Plan a three-day study schedule for an algebra exam, step by step.", "answer": None,
     "kind": "subjective"},
    {"id": "s05", "question": "Give a one-sentence summary of what photosynthesis is.", "answer": None,
     "kind": "subjective"},
    {"id": "s06", "question": "Tell me about your favourite colour.", "answer": None, "kind": "subjective"},
    # images
    {"id": "v01", "question": "How many red squares are in the image?", "answer": "3", "kind": "math",
     "image": "images/red_3.png"},
    {"id": "v02", "question": "How many blue squares are in the image?", "answer": "5", "kind": "math",
     "image": "images/blue_5.png"},
    {"id": "v03", "question": "How many green squares are in the image?", "answer": "2", "kind": "math",
     "image": "images/green_2.png"},
    {"id": "v04", "question": "Describe the image briefly.", "answer": None, "kind": "subjective",
     "image": "images/red_6.png"},
    # bad rows, on purpose
    {"id": "b01", "question": "What is 7 + 6?", "answer": "", "kind": "math"},
    {"id": "b02", "question": "What is 17 + 25?", "answer": "42", "kind": "math"},  # duplicate of m01
    {"id": "b03", "question": "How many squares are in the image?", "answer": "4", "kind": "math",
     "image": "images/broken.png"},
]


def write_sample(out: str | Path) -> Path:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name, (n, color) in IMAGES.items():
        squares_image(n, color).save(out / "images" / name, format="PNG", optimize=False)
    (out / "images" / "broken.png").write_bytes(b"this is not a PNG file\n")
    with open(out / "curation_sample.jsonl", "w", encoding="utf-8") as f:
        for row in ROWS:
            f.write(json.dumps({**row, "image": row.get("image")}, ensure_ascii=False) + "\n")
    return out / "curation_sample.jsonl"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the curation sample set (JSONL + PNGs).")
    parser.add_argument("--out", default=str(Path(__file__).parent / "samples"))
    args = parser.parse_args(argv)
    print(f"wrote {write_sample(args.out)}")


if __name__ == "__main__":
    from ..errors import cli

    raise SystemExit(cli(main))
