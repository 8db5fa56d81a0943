"""Auto-thinking evaluation: accuracy × think-rate × tokens, per benchmark, per mode, per group.

    python recipes/evaluate.py --config recipes/tiny/eval/tiny.yaml [--limit 5] [--modes auto long]

For every benchmark (a local JSONL/Parquet file or a Hub dataset) and every mode (``auto``, ``thinking``,
``non_thinking``; R-4B's ``long`` / ``short`` accepted) the model answers every item with the mode's assistant
pre-fill (``templates.render_prompt``), on the transformers or the vLLM backend. What it said is parsed
(``modes.parse_response``) and the final answer checked by ``r4b_trl.rewards.verify``.

Outputs in ``output_dir``:

* ``generations.jsonl`` — one row per benchmark × mode × item (written after every batch; re-running skips the
  rows already there, so an interrupted run resumes).
* ``results.json`` — per benchmark → mode: accuracy (over scorable items), n, n_unscorable, think_rate, mean and
  median output tokens, truncation_rate; for ``auto`` also accuracy and tokens relative to forced thinking and the
  oracle gap; the same per group value (e.g. ``difficulty``) under ``groups``.
* ``auto_gate.jsonl`` — for auto mode (``auto_gate: true``, the default): per item the **gate** (the probability of
  thinking at the mode decision, normalised over the two decision tokens; ``r4b_trl.gate``) and one auto-mode
  sample at ``sampled_temperature`` (1.0). ``results.json`` then carries, under ``auto`` and per group, ``gate``
  (mean), ``gate_other_mass``, ``gate_note`` (exact, or why the gate is not defined for this tokenizer) and
  ``sampled_think_rate`` / ``sampled_accuracy`` / ``sampled_mean_tokens`` next to the greedy ``think_rate``.
* ``report.md`` — a table per benchmark; ``pareto.png`` — accuracy vs mean output tokens per mode and benchmark.

Where things live: ``config`` (options, :class:`BenchmarkSpec`), ``benchmarks`` (loading and checking rows),
``backends`` (loading the model), ``run`` (generation, scoring, resume), ``metrics`` (``results.json``),
``report`` (``report.md``, ``pareto.png``), ``cli`` (``recipes/evaluate.py``).

Bad input fails before the model is loaded (unknown columns, empty questions/answers, unknown answer kinds,
duplicated ids), naming the benchmark, row and column. An image that cannot be decoded, or a gold answer the
verifier cannot parse, makes the item *unscorable*: it is recorded with its reason and counted separately
(``n_unscorable``), never counted as wrong.
"""

from __future__ import annotations

from .backends import load_backend
from .benchmarks import EvalItem, PreparedBenchmark, prepare_benchmark, prepare_benchmarks
from .cli import main, parse_config
from .config import (
    GENERATIONS_FILE,
    GOLD_UNPARSEABLE,
    IMAGE_ERROR,
    MODE_ORDER,
    PARETO_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    STATE_FILE,
    VALID_KINDS,
    VERIFIER_ERROR,
    BenchmarkSpec,
    EvalConfig,
    EvalError,
)
from .metrics import auto_metrics, compute_results, mode_metrics
from .report import (
    fmt_num,
    fmt_pct,
    gate_table,
    group_table,
    plot_pareto,
    render_report,
    results_table,
    summary_lines,
    table_row,
)
from .run import default_verifier, evaluate, finalize, score_answer

__all__ = [
    "BenchmarkSpec",
    "EvalConfig",
    "EvalError",
    "EvalItem",
    "prepare_benchmark",
    "prepare_benchmarks",
    "evaluate",
    "compute_results",
    "mode_metrics",
    "auto_metrics",
    "render_report",
    "results_table",
    "plot_pareto",
    "parse_config",
    "main",
    "GENERATIONS_FILE",
    "RESULTS_FILE",
    "REPORT_FILE",
    "PARETO_FILE",
]
