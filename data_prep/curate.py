"""Bi-mode curation: label queries thinking / non-thinking (R-4B's heuristics) and write SFT targets.

    python data_prep/curate.py --config data_prep/configs/sample_fake.yaml
    python data_prep/curate.py --config data_prep/configs/sample_tiny.yaml      # needs .tiny_models/vision:
        # python -m r4b_trl.tiny_models --out .tiny_models/vision --kind vision

Resumable: rerun the same command after an interruption; it skips finished work. ``--overwrite`` starts over.
Bad config or data: one ``error:`` line, exit 2. An endpoint that gives up: its rows are recorded as failed in
``curation_summary.json``, one ``error:`` line, exit 1; rerun to retry them. ``--debug`` shows the traceback.
All logic lives in ``r4b_trl/data/curation/``; see its docstring and the README section "Annealing".
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from r4b_trl.data.curation import curate  # noqa: E402
from r4b_trl.errors import cli  # noqa: E402


def main(argv=None) -> int:
    """The command line; returns the exit status (bad input: one ``error:`` line and 2)."""
    return cli(_run, argv)


def _run(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML curation config")
    parser.add_argument("--output_dir", help="override the config's output_dir")
    parser.add_argument("--limit", type=int, help="only the first N rows of the dataset")
    parser.add_argument("--overwrite", action="store_true", help="discard an earlier run in output_dir and start over")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    summary = curate(args.config, overwrite=args.overwrite, progress=not args.no_progress,
                     output_dir=args.output_dir, limit=args.limit)
    print(json.dumps({k: summary[k] for k in ("rows", "counts", "output_rows")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
