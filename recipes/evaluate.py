"""Evaluate an auto-thinking model in every mode: accuracy, think-rate, tokens, truncation, oracle gap.

    python recipes/evaluate.py --config recipes/tiny/eval/tiny.yaml
    python recipes/evaluate.py --config recipes/r4b/eval/mathvista.yaml --limit 50 --modes auto long

Every config key can be overridden on the command line (``--key value``). The logic lives in
``r4b_trl.evaluation``; see that module for the outputs and the metric definitions.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from r4b_trl.evaluation import main  # noqa: E402

if __name__ == "__main__":
    main()
