"""Mix curated sets into one annealing dataset (per-source weights, optional thinking share) + a data card.

    python data_prep/mix.py --config data_prep/configs/mix_sample.yaml

All logic lives in ``r4b_trl/data/mixing.py`` (data cards: ``r4b_trl/data/cards.py``).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from r4b_trl.data.mixing import mix  # noqa: E402
from r4b_trl.errors import cli  # noqa: E402


def main(argv=None) -> int:
    """The command line; returns the exit status (bad input: one ``error:`` line and 2)."""
    return cli(_run, argv)


def _run(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML mix config")
    parser.add_argument("--output_dir", help="override the config's output_dir")
    args = parser.parse_args(argv)
    card = mix(args.config, output_dir=args.output_dir)
    print(json.dumps({k: card[k] for k in ("rows", "thinking", "non_thinking", "thinking_share")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
