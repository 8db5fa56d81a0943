"""Auto-thinking evaluation: accuracy × think-rate × tokens, per benchmark, per mode, per group.

    python recipes/evaluate.py --config recipes/tiny/eval/tiny.yaml [--limit 5] [--modes auto long]

For every benchmark (a local JSONL/Parquet file or a Hub dataset) and every mode (``auto``, ``thinking``,
``non_thinking``; R-4B's ``long`` / ``short`` accepted) the model answers every item with the mode's assistant
pre-fill (``modes.render_prompt``), on the transformers or the vLLM backend. What it said is parsed
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

Bad input fails before the model is loaded (unknown columns, empty questions/answers, unknown answer kinds,
duplicated ids), naming the benchmark, row and column. An image that cannot be decoded, or a gold answer the
verifier cannot parse, makes the item *unscorable*: it is recorded with its reason and counted separately
(``n_unscorable``), never counted as wrong.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from .data.formats import QuestionColumns, row_id, validate_question_rows
from .data.io import DataError, images_of, load_table, read_jsonl, require_columns, user_prompt, write_jsonl
from .errors import UsageError, config_errors, handled_errors, problems, row_label, split_debug
from .gate import AUTO_GATE_FILE, auto_gate_rows, gate_metrics
from .modes import Mode, ModePrefixes, get_prefixes, parse_response, render_prompt, resolve_mode

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

GENERATIONS_FILE = "generations.jsonl"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PARETO_FILE = "pareto.png"
STATE_FILE = "eval_state.json"

VALID_KINDS = ("math", "choice", "exact", "auto")
MODE_ORDER = [m.value for m in Mode]  # auto, thinking, non_thinking

#: Reason codes of unscorable items (the text after the colon says what exactly went wrong).
IMAGE_ERROR = "image_error"
GOLD_UNPARSEABLE = "gold_unparseable"
VERIFIER_ERROR = "verifier_error"


class EvalError(UsageError):
    """A configuration that cannot be evaluated (the message says what to change)."""


# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkSpec:
    """One benchmark: where its rows are and which columns mean what."""

    name: str
    path: str
    split: str = "test"
    subset: str | None = None
    question_column: str = "question"
    answer_column: str = "answer"
    image_column: str | None = None
    kind_column: str | None = None
    kind: str = "auto"
    group_column: str | None = None
    id_column: str | None = None
    choices_column: str | None = None
    image_base_dir: str | None = None
    system_prompt: str | None = None
    question_template: str | None = None
    limit: int | None = None

    @classmethod
    def from_dict(cls, d: Any, position: int = 0) -> "BenchmarkSpec":
        if not isinstance(d, dict):
            raise EvalError(f"benchmarks[{position}] must be a mapping with at least 'name' and 'path', got {d!r}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        label = d.get("name", f"benchmarks[{position}]")
        if unknown:
            raise EvalError(f"benchmark {label!r}: unknown key(s) {unknown}; valid keys: {sorted(known)}.")
        missing = [k for k in ("name", "path") if not d.get(k)]
        if missing:
            raise EvalError(f"benchmark {label!r}: missing required key(s) {missing}.")
        spec = cls(**d)
        if spec.kind not in VALID_KINDS:
            raise EvalError(f"benchmark {spec.name!r}: kind={spec.kind!r} is not one of {list(VALID_KINDS)}.")
        if spec.limit is not None and int(spec.limit) < 0:
            raise EvalError(f"benchmark {spec.name!r}: limit must be >= 0.")
        return spec

    def columns(self) -> QuestionColumns:
        return QuestionColumns(question=self.question_column, answer=self.answer_column, image=self.image_column,
                               kind=self.kind_column, id=self.id_column, group=self.group_column,
                               system_prompt=self.system_prompt, image_base_dir=self.resolved_image_base_dir(),
                               extra=[self.choices_column] if self.choices_column else [])

    def resolved_image_base_dir(self) -> str | None:
        """Relative image paths resolve against ``image_base_dir``, else the local data file's folder."""
        if self.image_base_dir:
            return self.image_base_dir
        p = Path(self.path)
        if p.exists():
            return str(p if p.is_dir() else p.parent)
        return None

    def fingerprint(self) -> dict:
        """Everything that changes what is generated or how it is scored (not ``limit``)."""
        d = asdict(self)
        d.pop("limit")
        d.pop("name")
        return d


@dataclass
class EvalConfig:
    """``recipes/evaluate.py`` configuration (YAML via ``--config``; every key can be overridden on the command
    line, e.g. ``--limit 5 --modes auto long``)."""

    model: str | None = field(default=None, metadata={"help": "Model to evaluate: a local path or a Hub id."})
    adapter: str | None = field(default=None, metadata={"help": "Optional LoRA adapter (path or Hub id)."})
    revision: str | None = field(default=None, metadata={"help": "Model revision (Hub)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the model's own code (off by default)."})
    dtype: str = field(default="auto", metadata={"help": "auto | bfloat16 | float16 | float32."})
    device: str = field(default="auto", metadata={"help": "transformers backend: auto (cuda if available) | cpu | cuda."})
    benchmarks: list[dict] = field(
        default_factory=list,
        metadata={"help": "List of benchmarks (YAML): name, path, split, subset, question_column, answer_column, "
                          "image_column, kind_column, kind, group_column, id_column, choices_column, image_base_dir, "
                          "system_prompt, question_template, limit."},
    )
    modes: list[str] = field(default_factory=lambda: list(MODE_ORDER),
                             metadata={"help": "Modes to run: auto thinking non_thinking (aliases long/short)."})
    backend: str = field(default="transformers", metadata={"help": "transformers | vllm."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call (and per write to "
                                                          "generations.jsonl). Use hundreds with vLLM."})
    max_new_tokens: int = field(default=8192, metadata={"help": "Generation budget per answer (paper: 8192)."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy (the paper's protocol)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling when temperature > 0."})
    seed: int = field(default=0, metadata={"help": "Sampling seed (used when temperature > 0, and for the sampled "
                                                    "auto pass)."})
    auto_gate: bool = field(default=True, metadata={"help": "With auto mode: also measure each item's gate "
        "(P(thinking decision token), normalised over the two decision tokens) and one auto sample at "
        "sampled_temperature (auto_gate.jsonl; gate and sampled_think_rate in results)."})
    sampled_temperature: float = field(default=1.0, metadata={"help": "Temperature of the sampled auto pass."})
    limit: int | None = field(default=None, metadata={"help": "Cap on items per benchmark (on top of each "
                                                                "benchmark's own limit)."})
    output_dir: str = field(default="eval_output", metadata={"help": "Where the outputs go."})
    overwrite: bool = field(default=False, metadata={"help": "Discard generations already in output_dir instead of "
                                                              "resuming."})
    prefix_family: str | None = field(default=None, metadata={"help": "Mode prefix family (qwen3 | r4b | default)."})
    prefixes: dict | None = field(default=None, metadata={"help": "ModePrefixes overrides (YAML mapping: open_tag, "
                                                                  "close_tag, auto, thinking, non_thinking)."})
    vllm_gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vLLM gpu_memory_utilization."})
    vllm_max_model_len: int | None = field(default=None, metadata={"help": "vLLM max_model_len."})
    vllm_tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor_parallel_size."})

    def resolved_modes(self) -> list[Mode]:
        if not self.modes:
            raise EvalError("modes is empty: give at least one of auto, thinking, non_thinking.")
        out: list[Mode] = []
        for m in self.modes:
            mode = resolve_mode(m)
            if mode not in out:
                out.append(mode)
        return sorted(out, key=lambda m: MODE_ORDER.index(m.value))

    def resolved_prefixes(self) -> ModePrefixes:
        if self.prefixes:
            base = asdict(get_prefixes(self.prefix_family))
            base.update(self.prefixes)
            return ModePrefixes(**base)
        return get_prefixes(self.prefix_family)

    def specs(self) -> list[BenchmarkSpec]:
        if not self.benchmarks:
            raise EvalError("No benchmarks configured: add a `benchmarks:` list (name, path, columns) to the config.")
        specs = [BenchmarkSpec.from_dict(b, i) for i, b in enumerate(self.benchmarks)]
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise EvalError(f"Benchmark names must be unique; repeated: {dup}.")
        return specs

    def validate(self) -> None:
        if not self.model:
            raise EvalError("Set `model` (a local path or Hub id).")
        if self.backend not in ("transformers", "vllm"):
            raise EvalError(f"backend={self.backend!r}: use 'transformers' or 'vllm'.")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise EvalError("batch_size and max_new_tokens must be >= 1.")
        if self.temperature < 0:
            raise EvalError("temperature must be >= 0 (0 = greedy).")
        self.resolved_modes()
        self.resolved_prefixes()
        self.specs()

    def fingerprint(self) -> dict:
        """Settings that change what the model generates (resuming with different ones is refused)."""
        return {"model": self.model, "adapter": self.adapter, "revision": self.revision, "backend": self.backend,
                "dtype": self.dtype, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p if self.temperature > 0 else None,
                "seed": self.seed if self.temperature > 0 else None, "prefixes": asdict(self.resolved_prefixes())}


# --------------------------------------------------------------------------------------------------------------
# Benchmarks: load and validate everything before the model is loaded
# --------------------------------------------------------------------------------------------------------------


@dataclass
class EvalItem:
    item_id: str
    index: int
    question: str
    gold: str | list[str]
    kind: str
    group: str | None
    row: dict
    image_column: str | None = None
    image_base_dir: str | None = None
    system_prompt: str | None = None
    gold_error: str | None = None  # the gold answer is unusable: the item is generated but unscorable

    def load_images(self, benchmark: str) -> list:
        return images_of(self.row, self.image_column, self.image_base_dir,
                         where=f"benchmark {benchmark!r}, item {self.item_id!r} ({row_label(self.index)})")

    def messages(self, num_images: int) -> list[dict]:
        return user_prompt(self.question, num_images, self.system_prompt)


@dataclass
class PreparedBenchmark:
    spec: BenchmarkSpec
    items: list[EvalItem]

    @property
    def name(self) -> str:
        return self.spec.name


def _gold_of(value: Any, where: str) -> str | list[str]:
    if isinstance(value, (list, tuple)):  # several acceptable answers (OCRBench-style): any one counts
        golds = [str(v) for v in value if v is not None and str(v).strip()]
        if not golds:
            raise DataError(f"{where}: the answer list is empty.")
        return golds
    return str(value).strip()


def _lazy_images(ds, column: str | None):
    """Keep image columns undecoded (``{"bytes", "path"}``) so that a broken image fails on its own item, later."""
    features = getattr(ds, "features", None) or {}
    if not column or column not in features:
        return ds
    import datasets

    feat = features[column]
    if isinstance(feat, datasets.Image) and feat.decode:
        return ds.cast_column(column, datasets.Image(decode=False))
    if isinstance(feat, datasets.List) and isinstance(feat.feature, datasets.Image) and feat.feature.decode:
        return ds.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return ds


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _gold_from_choices(gold, kind: str, choices) -> tuple[Any, str, str | None]:
    """Multiple choice with the options in a column (MathVista-style): a gold answer given as the text of an option
    becomes that option's letter, scored as ``choice``. Rows without options are left as they are."""
    if not isinstance(choices, (list, tuple)) or not choices:
        return gold, kind, None
    options = [str(c).strip() for c in choices][: len(LETTERS)]
    if isinstance(gold, str):
        if gold.strip() in options:
            return LETTERS[options.index(gold.strip())], "choice", None
        if len(gold.strip()) == 1 and gold.strip().upper() in LETTERS[: len(options)]:
            return gold.strip().upper(), "choice", None
    return gold, kind, f"the answer {gold!r} is neither one of the choices {options} nor an option letter"


def prepare_benchmark(spec: BenchmarkSpec, global_limit: int | None = None) -> PreparedBenchmark:
    """Load a benchmark's rows and check every one of them (raises :class:`DataError` naming benchmark, row and
    column). Images are *not* decoded here: an image that fails to decode makes its item unscorable later."""
    source = f"benchmark {spec.name!r} ({spec.path})"
    try:
        ds = load_table(spec.path, split=spec.split, name=spec.subset)
    except DataError as e:
        raise DataError(f"benchmark {spec.name!r}: {e}") from e
    except Exception as e:  # datasets' own errors (unknown Hub id, split, subset)
        raise DataError(f"{source}: cannot be loaded (split={spec.split!r}, subset={spec.subset!r}): "
                        f"{type(e).__name__}: {e}") from e
    limits = [x for x in (spec.limit, global_limit) if x is not None]
    if limits and min(limits) < len(ds):
        ds = ds.select(range(min(limits)))
    ds = _lazy_images(ds, spec.image_column)
    cols = spec.columns()
    validate_question_rows(ds, cols, source=source, need_answer=True, check_images=False)
    if spec.choices_column:
        require_columns(ds.column_names, {"choices": spec.choices_column}, source)
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    errors: list[str] = []
    for i, row in enumerate(ds):
        iid = row_id(row, i, cols)
        label = row_label(i, iid if spec.id_column else None)
        where = f"{source}: {label}"
        if iid in seen:
            errors.append(f"{label}: its id (column {spec.id_column!r}) repeats {row_label(seen[iid])}")
        seen[iid] = i
        kind = spec.kind
        if spec.kind_column and row.get(spec.kind_column) not in (None, ""):
            kind = str(row[spec.kind_column]).strip().lower()
            if kind not in VALID_KINDS:
                errors.append(f"{label}: the kind column {spec.kind_column!r} has {row[spec.kind_column]!r}, not one "
                              f"of {list(VALID_KINDS)}")
        question = str(row[spec.question_column])
        if spec.question_template:
            try:
                question = spec.question_template.format_map({k: ("" if v is None else v) for k, v in row.items()})
            except (KeyError, IndexError, ValueError) as e:
                errors.append(f"{label}: question_template {spec.question_template!r} cannot be filled "
                              f"({type(e).__name__}: {e}); columns: {sorted(row)}")
        try:
            gold = _gold_of(row[spec.answer_column], where + f", column {spec.answer_column!r}")
        except DataError as e:
            errors.append(str(e).split(": ", 1)[-1])
            gold = ""
        gold_error = None
        if spec.choices_column:
            gold, kind, gold_error = _gold_from_choices(gold, kind, row.get(spec.choices_column))
        group = None
        if spec.group_column:
            group = "(missing)" if row.get(spec.group_column) is None else str(row[spec.group_column])
        items.append(EvalItem(item_id=iid, index=i, question=question, gold=gold, kind=kind, group=group, row=row,
                              image_column=spec.image_column, image_base_dir=cols.image_base_dir,
                              system_prompt=spec.system_prompt, gold_error=gold_error))
        if len(errors) >= 5:
            break
    if errors:
        raise DataError(problems(source, errors, "Fix or drop these rows."))
    return PreparedBenchmark(spec, items)


def prepare_benchmarks(config: EvalConfig) -> list[PreparedBenchmark]:
    return [prepare_benchmark(s, config.limit) for s in config.specs()]


# --------------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------------


def default_verifier() -> Callable:
    try:
        from .rewards import verify
    except ImportError as e:  # pragma: no cover - rewards ships with the package
        raise ImportError("r4b_trl.rewards (verify) is needed to score answers.") from e
    return verify


def score_answer(answer: str, gold: str | list[str], kind: str, verifier: Callable) -> tuple[bool | None, str | None]:
    """``(correct, unscorable_reason)``: True/False, or None with a reason when no gold answer can be parsed."""
    golds = gold if isinstance(gold, list) else [gold]
    verdicts = []
    for g in golds:
        try:
            v = verifier(answer, g, kind)
            verdicts.append(None if v is None else bool(v))
        except Exception as e:  # a verifier bug must not pass for a wrong answer
            return None, f"{VERIFIER_ERROR}: {type(e).__name__}: {e}"
    if any(v is True for v in verdicts):
        return True, None
    if all(v is None for v in verdicts):
        return None, f"{GOLD_UNPARSEABLE}: the verifier cannot parse the gold answer {gold!r} (kind={kind})"
    return False, None


# --------------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[r4b-eval] {msg}", file=sys.stderr, flush=True)


def _check_state(out: Path, config: EvalConfig, specs: Sequence[BenchmarkSpec]) -> None:
    """Refuse to resume generations made with other settings; record the current ones."""
    state_path = out / STATE_FILE
    current = {"settings": config.fingerprint(), "benchmarks": {s.name: s.fingerprint() for s in specs}}
    if state_path.exists() and (out / GENERATIONS_FILE).exists():
        saved = json.loads(state_path.read_text())
        diff = [k for k, v in current["settings"].items() if saved.get("settings", {}).get(k) != v]
        for s in specs:
            old = saved.get("benchmarks", {}).get(s.name)
            if old is not None and old != current["benchmarks"][s.name]:
                diff.append(f"benchmark {s.name!r} (" + ", ".join(
                    k for k in current["benchmarks"][s.name] if old.get(k) != current["benchmarks"][s.name][k]) + ")")
        if diff:
            raise EvalError(
                f"{out} holds generations made with different settings: {diff}. Use another output_dir, or set "
                "overwrite: true to discard them.")
        current["benchmarks"] = {**saved.get("benchmarks", {}), **current["benchmarks"]}
    state_path.write_text(json.dumps(current, indent=2))


def _check_tags_survive_decoding(processing_class, prefixes: ModePrefixes) -> None:
    tok = getattr(processing_class, "tokenizer", processing_class)
    for tag in (prefixes.open_tag, prefixes.close_tag):
        ids = tok.encode(tag, add_special_tokens=False)
        if tag not in tok.decode(ids, skip_special_tokens=True):
            raise EvalError(f"The tokenizer's {tag!r} is a special token: decoding strips it, so modes could not be "
                            "parsed. Re-register the think tags as normal (non-special) tokens.")


def load_backend(config: EvalConfig):
    """``(backend, processing_class, is_vision)`` for the configured model."""
    from .models import check_model_path, is_vision_config, load_config, load_processing_class

    check_model_path(config.model, "model")
    mcfg = load_config(config.model, config.trust_remote_code, config.revision)
    vision = is_vision_config(mcfg)
    from .modes import ModeError
    from .templates import check_template

    pc = load_processing_class(config.model, config.trust_remote_code, config.revision, vision=vision)
    try:
        check_template(pc, config.resolved_prefixes(), stage="evaluate")  # before any weights load
    except ModeError as err:
        raise EvalError(str(err)) from err
    if config.backend == "vllm":
        from .generation import VLLMBackend

        backend = VLLMBackend(config.model, trust_remote_code=config.trust_remote_code, dtype=config.dtype,
                              gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                              tensor_parallel_size=config.vllm_tensor_parallel_size,
                              max_model_len=config.vllm_max_model_len, adapter=config.adapter, seed=config.seed)
        return backend, pc, vision
    import torch

    from .generation import TransformersBackend

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = TransformersBackend.from_pretrained(
        config.model, batch_size=config.batch_size, trust_remote_code=config.trust_remote_code,
        revision=config.revision, dtype=config.dtype, adapter=config.adapter,
        device_map=None if device == "cpu" else device)
    return backend, backend.processing_class, vision


def _unscorable_row(bench: str, mode: Mode, item: EvalItem, reason: str) -> dict:
    return {"benchmark": bench, "mode": mode.value, "item_id": item.item_id, "group": item.group, "prompt": None,
            "response": None, "parsed_mode": None, "answer": None, "gold": item.gold, "kind": item.kind,
            "correct": None, "unscorable_reason": reason, "num_tokens": None, "finished": None}


def evaluate(config: EvalConfig, backend=None, processing_class=None, verifier: Callable | None = None,
             is_vision: bool | None = None) -> dict:
    """Run (or resume) the evaluation described by ``config`` and write every output; returns ``results``.

    ``backend`` / ``processing_class`` may be given (tests, notebooks); otherwise the model is loaded, but only
    after every benchmark has been validated and only if something is left to generate.
    """
    config.validate()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise EvalError("recipes/evaluate.py runs as one process (several would write the same generations). "
                        "Use backend: vllm with vllm_tensor_parallel_size for several GPUs.")
    modes = config.resolved_modes()
    prefixes = config.resolved_prefixes()
    verify = verifier or default_verifier()
    benches = prepare_benchmarks(config)  # all data errors surface here, before any model is loaded
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen_path = out / GENERATIONS_FILE
    if config.overwrite:
        for name in (GENERATIONS_FILE, STATE_FILE, AUTO_GATE_FILE):
            (out / name).unlink(missing_ok=True)
    _check_state(out, config, [b.spec for b in benches])

    done = {(r["benchmark"], r["mode"], str(r["item_id"])) for r in read_jsonl(gen_path)}
    todo = {(b.name, m): [it for it in b.items if (b.name, m.value, it.item_id) not in done]
            for b in benches for m in modes}
    n_todo = sum(len(v) for v in todo.values())
    n_total = sum(len(b.items) for b in benches) * len(modes)
    _log(f"{n_total - n_todo}/{n_total} generations already in {gen_path}; {n_todo} to go.")
    gate_todo = _gate_todo(config, benches, modes)

    if n_todo or any(gate_todo.values()):
        if backend is None:
            backend, processing_class, is_vision = load_backend(config)
        elif processing_class is None:
            processing_class = getattr(backend, "processing_class", None)
            if processing_class is None:
                raise EvalError("Pass processing_class together with a custom backend.")
        if is_vision is False:
            with_images = [b.name for b in benches if b.spec.image_column and any(todo[(b.name, m)] for m in modes)]
            if with_images:
                raise EvalError(f"{config.model!r} is a text-only model but benchmark(s) {with_images} have an "
                                "image_column. Evaluate them with a vision-language model, or drop image_column.")
        _check_tags_survive_decoding(processing_class, prefixes)
        gen_kwargs = dict(max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
                          n=1, seed=config.seed if config.temperature > 0 else None)
        for bench in benches:
            for mode in modes:
                pending = todo[(bench.name, mode)]
                for start in range(0, len(pending), config.batch_size):
                    chunk = pending[start:start + config.batch_size]
                    t0 = time.time()
                    rows = _run_batch(bench.name, mode, chunk, backend, processing_class, prefixes, verify,
                                      gen_kwargs)
                    write_jsonl(gen_path, rows, append=True)
                    _log(f"{bench.name} / {mode.value}: {start + len(chunk)}/{len(pending)} "
                         f"({time.time() - t0:.1f}s)")
        _run_gate_pass(config, benches, gate_todo, backend, processing_class, prefixes, verify)
    return finalize(config, benches, modes)


def _gate_todo(config: EvalConfig, benches: Sequence[PreparedBenchmark], modes: Sequence[Mode]) -> dict:
    if not config.auto_gate or Mode.AUTO not in modes:
        return {}
    done = {(r["benchmark"], str(r["item_id"])) for r in read_jsonl(Path(config.output_dir) / AUTO_GATE_FILE)}
    return {b.name: [it for it in b.items if (b.name, it.item_id) not in done] for b in benches}


def _run_gate_pass(config: EvalConfig, benches, gate_todo: dict, backend, processing_class, prefixes,
                   verify: Callable) -> None:
    """The auto-mode gate and one sampled auto answer per item (``r4b_trl.gate``), appended to auto_gate.jsonl."""
    def score(item, answer):
        if item.gold_error:
            return None, f"{GOLD_UNPARSEABLE}: {item.gold_error}"
        return score_answer(answer, item.gold, item.kind, verify)

    path = Path(config.output_dir) / AUTO_GATE_FILE
    for bench in benches:
        pending = gate_todo.get(bench.name) or []
        for start in range(0, len(pending), config.batch_size):
            chunk = pending[start:start + config.batch_size]
            t0 = time.time()
            rows = auto_gate_rows(bench.name, chunk, backend, processing_class, prefixes, score,
                                  max_new_tokens=config.max_new_tokens, temperature=config.sampled_temperature,
                                  seed=config.seed + start, batch_size=config.batch_size)
            write_jsonl(path, rows, append=True)
            _log(f"{bench.name} / auto gate + T={config.sampled_temperature} sample: "
                 f"{start + len(chunk)}/{len(pending)} ({time.time() - t0:.1f}s)")


def _run_batch(bench: str, mode: Mode, chunk: Sequence[EvalItem], backend, processing_class,
               prefixes: ModePrefixes, verify: Callable, gen_kwargs: dict) -> list[dict]:
    rows: dict[str, dict] = {}
    ready: list[tuple[EvalItem, list]] = []
    for item in chunk:
        try:
            ready.append((item, item.load_images(bench)))
        except DataError as e:
            rows[item.item_id] = _unscorable_row(bench, mode, item, f"{IMAGE_ERROR}: {e}")
    if ready:
        prompts = [render_prompt(processing_class, it.messages(len(imgs)), mode, prefixes) for it, imgs in ready]
        images = [imgs for _, imgs in ready]
        outs = backend.generate(prompts, images if any(images) else None, **gen_kwargs)
        pre = prefixes.prefix(mode)
        for (item, _), prompt, gens in zip(ready, prompts, outs):
            g = gens[0]
            full = pre + g.text
            parsed = parse_response(full, prefixes)
            if item.gold_error:
                correct, reason = None, f"{GOLD_UNPARSEABLE}: {item.gold_error}"
            else:
                correct, reason = score_answer(parsed.answer, item.gold, item.kind, verify)
            rows[item.item_id] = {
                "benchmark": bench, "mode": mode.value, "item_id": item.item_id, "group": item.group,
                "prompt": prompt, "response": full, "parsed_mode": parsed.mode, "answer": parsed.answer,
                "gold": item.gold, "kind": item.kind, "correct": correct, "unscorable_reason": reason,
                "num_tokens": g.num_tokens, "finished": g.finished,
            }
    return [rows[it.item_id] for it in chunk]


# --------------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------------


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def mode_metrics(rows: Sequence[dict]) -> dict:
    """Metrics of one benchmark × mode (× group) from its generation rows.

    * ``accuracy`` = n_correct / n_scored, where unscorable items (``correct`` is null) are left out;
    * ``think_rate``, ``truncation_rate``, ``mean_tokens``, ``median_tokens`` are over the items that were
      generated (an item whose image failed to load has no generation);
    * truncated = generation hit ``max_new_tokens`` (not finished) or the think block was never closed.
    """
    n = len(rows)
    scored = [r for r in rows if r["correct"] is not None]
    correct = sum(1 for r in scored if r["correct"] is True)
    gen = [r for r in rows if r["num_tokens"] is not None]
    tokens = [r["num_tokens"] for r in gen]
    reasons = Counter(str(r["unscorable_reason"]).split(":", 1)[0] for r in rows if r["correct"] is None)
    return {
        "n": n,
        "n_scored": len(scored),
        "n_unscorable": n - len(scored),
        "unscorable_reasons": dict(sorted(reasons.items())),
        "n_correct": correct,
        "accuracy": _ratio(correct, len(scored)),
        "n_generated": len(gen),
        "think_rate": _ratio(sum(1 for r in gen if r["parsed_mode"] == "thinking"), len(gen)),
        "truncation_rate": _ratio(
            sum(1 for r in gen if not r["finished"] or r["parsed_mode"] == "truncated"), len(gen)),
        "mean_tokens": statistics.fmean(tokens) if tokens else None,
        "median_tokens": float(statistics.median(tokens)) if tokens else None,
    }


def auto_metrics(auto_rows: Sequence[dict], thinking_rows: Sequence[dict] | None,
                 non_thinking_rows: Sequence[dict] | None, auto: dict | None = None,
                 thinking: dict | None = None) -> dict:
    """Auto mode against the forced modes on the same items.

    * ``accuracy_vs_thinking`` = auto accuracy / forced-thinking accuracy;
    * ``tokens_vs_thinking`` = auto mean tokens / forced-thinking mean tokens;
    * ``oracle_gap`` = share of the items scored in all three modes where auto's choice was wrong but the other
      forced mode was right: auto did not think (parsed ``non_thinking``), was wrong, and forced thinking was right;
      or auto thought (parsed ``thinking`` or ``truncated`` — it opened a think block), was wrong, and forced
      non-thinking was right. ``oracle_n`` is that number of items.
    """
    auto = auto or mode_metrics(auto_rows)
    out: dict[str, Any] = {"accuracy_vs_thinking": None, "tokens_vs_thinking": None, "oracle_gap": None,
                           "oracle_n": 0}
    if thinking_rows is not None:
        thinking = thinking or mode_metrics(thinking_rows)
        out["accuracy_vs_thinking"] = _ratio(auto["accuracy"], thinking["accuracy"])
        out["tokens_vs_thinking"] = _ratio(auto["mean_tokens"], thinking["mean_tokens"])
    if thinking_rows is not None and non_thinking_rows is not None:
        th = {r["item_id"]: r for r in thinking_rows if r["correct"] is not None}
        nt = {r["item_id"]: r for r in non_thinking_rows if r["correct"] is not None}
        common = [r for r in auto_rows if r["correct"] is not None and r["item_id"] in th and r["item_id"] in nt]
        gap = 0
        for r in common:
            if r["correct"]:
                continue
            other = th if r["parsed_mode"] == "non_thinking" else nt
            gap += bool(other[r["item_id"]]["correct"])
        out["oracle_n"] = len(common)
        out["oracle_gap"] = _ratio(gap, len(common))
    return out


def _metrics_for(rows_by_mode: dict[str, list[dict]]) -> dict[str, dict]:
    res = {mode: mode_metrics(rows) for mode, rows in rows_by_mode.items()}
    if "auto" in res:
        res["auto"].update(auto_metrics(rows_by_mode["auto"], rows_by_mode.get("thinking"),
                                        rows_by_mode.get("non_thinking"), res["auto"], res.get("thinking")))
    return res


def compute_results(rows: Sequence[dict], benches: Sequence[PreparedBenchmark], modes: Sequence[Mode],
                    config: EvalConfig | None = None, gate_rows: Sequence[dict] | None = None) -> dict:
    """``results.json`` from generation rows (and auto-gate rows), restricted to the configured benchmarks, modes
    and items."""
    gates: dict[tuple, dict] = {}
    for r in gate_rows or []:
        gates.setdefault((r["benchmark"], str(r["item_id"])), r)
    index: dict[tuple, dict] = {}
    for r in rows:
        index.setdefault((r["benchmark"], r["mode"], str(r["item_id"])), r)  # first copy wins
    results: dict[str, Any] = {"benchmarks": {}, "benchmark_info": {}}
    if config is not None:
        results["model"] = config.model
        results["adapter"] = config.adapter
        results["settings"] = {"backend": config.backend, "max_new_tokens": config.max_new_tokens,
                               "temperature": config.temperature, "top_p": config.top_p,
                               "modes": [m.value for m in modes], "prefixes": asdict(config.resolved_prefixes())}
    for b in benches:
        by_mode = {}
        missing = 0
        for m in modes:
            rs = [index.get((b.name, m.value, it.item_id)) for it in b.items]
            missing += sum(r is None for r in rs)
            by_mode[m.value] = [r for r in rs if r is not None]
        bench_res = _metrics_for(by_mode)
        b_gates = [gates[(b.name, it.item_id)] for it in b.items if (b.name, it.item_id) in gates]
        if b_gates and "auto" in bench_res:
            bench_res["auto"].update(gate_metrics(b_gates))
        if b.spec.group_column:
            groups = sorted({it.group for it in b.items}, key=str)
            for g in groups:
                sub = _metrics_for({m: [r for r in rs if r["group"] == g] for m, rs in by_mode.items()})
                if b_gates and "auto" in sub:
                    sub["auto"].update(gate_metrics([r for r in b_gates if r["group"] == g]))
                for m, met in sub.items():
                    bench_res[m].setdefault("groups", {})[g] = met
        results["benchmarks"][b.name] = bench_res
        results["benchmark_info"][b.name] = {"path": b.spec.path, "split": b.spec.split,
                                             "num_items": len(b.items), "group_column": b.spec.group_column,
                                             "missing_generations": missing}
    return results


def finalize(config: EvalConfig, benches: Sequence[PreparedBenchmark], modes: Sequence[Mode]) -> dict:
    out = Path(config.output_dir)
    results = compute_results(read_jsonl(out / GENERATIONS_FILE), benches, modes, config,
                              read_jsonl(out / AUTO_GATE_FILE) if config.auto_gate else None)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (out / REPORT_FILE).write_text(render_report(results))
    plot_pareto(results, out / PARETO_FILE)
    _log(f"wrote {out / RESULTS_FILE}, {out / REPORT_FILE}, {out / PARETO_FILE}")
    return results


# --------------------------------------------------------------------------------------------------------------
# Report, plot
# --------------------------------------------------------------------------------------------------------------


def fmt_pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def fmt_num(x, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


TABLE_HEADER = ("| mode | n | unscorable | accuracy % | think rate % | mean tokens | median tokens | truncated % "
                "| acc / thinking | tokens / thinking | oracle gap % |")


def table_row(label: str, m: dict) -> str:
    return (f"| {label} | {m['n']} | {m['n_unscorable']} | {fmt_pct(m['accuracy'])} | {fmt_pct(m['think_rate'])} "
            f"| {fmt_num(m['mean_tokens'])} | {fmt_num(m['median_tokens'])} | {fmt_pct(m['truncation_rate'])} "
            f"| {fmt_num(m.get('accuracy_vs_thinking'), 2)} | {fmt_num(m.get('tokens_vs_thinking'), 2)} "
            f"| {fmt_pct(m.get('oracle_gap'))} |")


def results_table(bench_results: dict[str, dict]) -> str:
    """A markdown table (one row per mode) for one benchmark's results."""
    lines = [TABLE_HEADER, "|" + "---|" * TABLE_HEADER.count(" | ") + "---|"]
    for mode in [m for m in MODE_ORDER if m in bench_results]:
        lines.append(table_row(mode, bench_results[mode]))
    return "\n".join(lines)


def group_table(bench_results: dict[str, dict]) -> str | None:
    modes = [m for m in MODE_ORDER if m in bench_results]
    groups = sorted({g for m in modes for g in bench_results[m].get("groups", {})}, key=str)
    if not groups:
        return None
    header = TABLE_HEADER.replace("| mode |", "| group | mode |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for g in groups:
        for m in modes:
            met = bench_results[m].get("groups", {}).get(g)
            if met is not None:
                lines.append(table_row(f"{g} | {m}", met))
    return "\n".join(lines)


def gate_table(bench_results: dict[str, dict]) -> str | None:
    """Auto mode's gate next to its greedy and sampled think-rates, overall and per group (None without a gate
    pass)."""
    auto = bench_results.get("auto") or {}
    if "sampled_think_rate" not in auto:
        return None
    lines = ["| group | n | gate (mean P(think) at the decision) | mass on neither token | greedy think % "
             "| sampled think % | sampled acc % |", "|---|---|---|---|---|---|---|"]
    for label, m in [("all", auto)] + sorted((auto.get("groups") or {}).items(), key=lambda kv: str(kv[0])):
        lines.append(f"| {label} | {m.get('gate_n', 0)} | {fmt_num(m.get('gate'), 3)} "
                     f"| {fmt_num(m.get('gate_other_mass'), 3)} | {fmt_pct(m.get('think_rate'))} "
                     f"| {fmt_pct(m.get('sampled_think_rate'))} | {fmt_pct(m.get('sampled_accuracy'))} |")
    return "\n".join(lines)


def render_report(results: dict) -> str:
    lines = ["# Auto-thinking evaluation", ""]
    if results.get("model"):
        lines.append(f"Model: `{results['model']}`" + (f" + adapter `{results['adapter']}`"
                                                        if results.get("adapter") else ""))
    s = results.get("settings")
    if s:
        lines.append(f"Backend {s['backend']}, max_new_tokens {s['max_new_tokens']}, temperature "
                     f"{s['temperature']}" + (" (greedy)" if not s["temperature"] else f", top_p {s['top_p']}") + ".")
    lines += ["", "accuracy is over scorable items (unscorable ones are counted in their own column); think rate = "
              "share of answers whose parsed mode is thinking; truncated = hit the token limit or never closed the "
              "think block; acc / thinking and tokens / thinking compare auto with forced thinking; oracle gap = "
              "share of items where auto's choice was wrong but the other forced mode was right.", ""]
    for name, bench in results["benchmarks"].items():
        info = results.get("benchmark_info", {}).get(name, {})
        lines += [f"## {name}", "", f"{info.get('num_items', '?')} items from `{info.get('path', '?')}`.", "",
                  results_table(bench), ""]
        gt = group_table(bench)
        if gt:
            lines += [f"By {info.get('group_column') or 'group'}:", "", gt, ""]
        gate = gate_table(bench)
        if gate:
            a = bench["auto"]
            lines += [f"Auto-mode gate (`r4b_trl.gate`: {a.get('gate_note') or 'not measured'}) and one auto sample "
                      f"per item at temperature {a.get('sampled_temperature')}:", "", gate, ""]
        reasons = Counter()
        for m in bench.values():
            reasons.update(m.get("unscorable_reasons", {}))
        if reasons:
            lines += ["Unscorable items by reason (all modes): "
                      + ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) + "; see `unscorable_reason` in "
                      "generations.jsonl.", ""]
    return "\n".join(lines)


def plot_pareto(results: dict, path: str | Path) -> Path:
    """Accuracy (%) against mean output tokens: one panel per benchmark, one labelled point per mode (auto's label
    carries its gate when measured), the modes of a benchmark joined by a line."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"auto": "o", "thinking": "^", "non_thinking": "s"}
    offsets = {"auto": ((7, 6), "left"), "thinking": ((-7, -13), "right"), "non_thinking": ((7, -13), "left")}
    benches = []
    for name, bench in results["benchmarks"].items():
        pts = [(m, bench[m]["mean_tokens"], bench[m]["accuracy"]) for m in MODE_ORDER
               if m in bench and bench[m]["mean_tokens"] is not None and bench[m]["accuracy"] is not None]
        benches.append((name, bench, pts))
    cols = max(1, min(3, len(benches)))
    rows = max(1, math.ceil(len(benches) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.8 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(benches):]:
        ax.axis("off")
    for ax, (name, bench, pts) in zip(axes.flat, benches):
        if not pts:
            ax.text(0.5, 0.5, "no scorable results", ha="center", va="center", transform=ax.transAxes, fontsize=11)
        line = sorted(pts, key=lambda p: p[1])
        ax.plot([p[1] for p in line], [100 * p[2] for p in line], color="#888888", lw=1, zorder=1)
        for m, x, y in pts:
            ax.scatter([x], [100 * y], marker=markers[m], s=70, color="#2471a3" if m == "auto" else "#555555",
                       zorder=3)
            label = m
            if m == "auto" and bench[m].get("gate") is not None:
                label += f" (gate {bench[m]['gate']:.2f})"
            (dx, dy), ha = offsets[m]
            ax.annotate(label, (x, 100 * y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=10)
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("mean output tokens", fontsize=10)
        ax.set_ylabel("accuracy (%)", fontsize=10)
        ax.set_ylim(-8, 112)
        ax.set_xlim(left=0, right=max([p[1] for p in pts] + [1]) * 1.35)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=9)
    fig.suptitle("Accuracy vs output tokens, per mode", fontsize=12)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def parse_config(argv: Sequence[str] | None = None) -> EvalConfig:
    from trl import TrlParser

    parser = TrlParser([EvalConfig])
    (config,) = parser.parse_args_and_config(list(argv) if argv is not None else None)
    return config


def summary_lines(results: dict) -> list[str]:
    lines = []
    for name, bench in results["benchmarks"].items():
        for mode in [m for m in MODE_ORDER if m in bench]:
            m = bench[mode]
            extra = ""
            if mode == "auto" and m.get("oracle_gap") is not None:
                extra = f"  oracle gap {fmt_pct(m['oracle_gap'])}%"
            if mode == "auto" and "sampled_think_rate" in m:
                extra += (f"  gate {fmt_num(m.get('gate'), 3)}  sampled (T={m.get('sampled_temperature')}) think "
                          f"{fmt_pct(m['sampled_think_rate'])}%")
            lines.append(f"{name:>20} {mode:>12}: acc {fmt_pct(m['accuracy'])}% (n={m['n_scored']}, "
                         f"unscorable {m['n_unscorable']})  think {fmt_pct(m['think_rate'])}%  "
                         f"tokens {fmt_num(m['mean_tokens'])}  truncated {fmt_pct(m['truncation_rate'])}%{extra}")
    return lines


def main(argv: Sequence[str] | None = None) -> dict:
    argv, debug = split_debug(argv)
    with handled_errors(debug):  # bad input: one "error:" line, exit 2 (--debug: the traceback)
        with config_errors():
            config = parse_config(argv)
        results = evaluate(config)
    print("\n".join(summary_lines(results)))
    print(f"outputs: {Path(config.output_dir).resolve()}")
    return results


if __name__ == "__main__":  # pragma: no cover
    main()
