"""Evaluate an auto-thinking model in every mode: accuracy, think-rate, tokens, truncation, oracle gap.

    python recipes/evaluate.py --config recipes/tiny/eval/tiny.yaml
    python recipes/evaluate.py --config recipes/r4b/eval/mathvista.yaml --limit 50 --modes auto long

Every config key can be overridden on the command line (``--key value``). The logic lives in
``r4b_trl.evaluation``; see that module for the outputs and the metric definitions.
"""

from r4b_trl.evaluation import main

if __name__ == "__main__":
    main()
