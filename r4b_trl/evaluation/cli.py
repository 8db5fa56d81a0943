"""``recipes/evaluate.py`` / ``python -m r4b_trl.evaluation``: parse the configuration, run, print a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import config_errors, handled_errors, split_debug
from .config import EvalConfig
from .report import summary_lines
from .run import evaluate


def parse_config(argv: Sequence[str] | None = None) -> EvalConfig:
    from trl import TrlParser

    parser = TrlParser([EvalConfig])
    (config,) = parser.parse_args_and_config(list(argv) if argv is not None else None)
    return config


def main(argv: Sequence[str] | None = None) -> dict:
    argv, debug = split_debug(argv)
    with handled_errors(debug):  # bad input: one "error:" line, exit 2 (--debug: the traceback)
        with config_errors():
            config = parse_config(argv)
        results = evaluate(config)
    print("\n".join(summary_lines(results)))
    print(f"outputs: {Path(config.output_dir).resolve()}")
    return results
