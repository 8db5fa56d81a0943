"""What an evaluation is told: output file names, answer kinds, :class:`BenchmarkSpec` (one benchmark's rows and
columns) and :class:`EvalConfig` (``recipes/evaluate.py``'s options)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..data.formats import QuestionColumnOptions, QuestionColumns
from ..errors import UsageError
from ..modes import Mode, ModePrefixes, get_prefixes, resolve_mode


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


@dataclass
class BenchmarkSpec(QuestionColumnOptions):
    """One benchmark: where its rows are and which columns mean what (the column keys of
    :class:`~r4b_trl.data.formats.QuestionColumnOptions`, plus the answer ``kind``, multiple-choice options, a
    question template and a row limit)."""

    name: str
    path: str
    split: str = "test"
    subset: str | None = None
    kind: str = "auto"
    choices_column: str | None = None
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
        return super().columns(image_base_dir=self.resolved_image_base_dir(),
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
