"""``python -m r4b_trl.evaluation --config …``: the same as ``recipes/evaluate.py``."""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
