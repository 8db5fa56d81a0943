"""A curation run's configuration: the YAML file's keys, and each role's backend and sampling settings."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field

from ...modes import get_prefixes, resolve_mode
from ..formats import QuestionColumns
from ..io import DataError
from .judge import load_judge_prompt


_BACKEND_KEYS = {
    "type", "model", "callable", "kwargs", "same_as",
    # transformers
    "batch_size", "dtype", "device_map", "trust_remote_code", "revision", "adapter",
    # vllm
    "engine_kwargs",
    # openai
    "base_url", "api_key_env", "tokenizer", "timeout", "max_retries", "concurrency", "extra_body",
}
_ROLE_DEFAULTS = {
    "annotator": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 1024, "answer_temperature": 0.0},
    "judge": {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 512, "mode": "non_thinking"},
    "reasoner": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 8192, "attempts": 1},
}
_GEN_KEYS = {"temperature", "top_p", "max_new_tokens", "answer_temperature", "mode", "attempts"}


@dataclass
class RoleSpec:
    """Where one role's answers come from, and how they are sampled.

    ``type``: ``transformers`` | ``vllm`` | ``openai`` | ``python``. ``same_as: annotator`` reuses another role's
    loaded backend (its model) with this role's sampling settings.
    """

    role: str
    backend: dict
    temperature: float
    top_p: float
    max_new_tokens: int
    answer_temperature: float = 0.0  # annotator: the one answer written for a subjective direct row
    mode: str = "non_thinking"  # judge: the mode the judge answers in
    attempts: int = 1  # reasoner: traces sampled per row; the first that passes is kept

    @classmethod
    def from_dict(cls, role: str, value: dict | str | None, fallback: dict | None = None) -> "RoleSpec":
        if value is None:
            value = {"same_as": "annotator"} if role != "annotator" else None
        if isinstance(value, str):
            value = {"same_as": value}
        if not isinstance(value, dict):
            raise DataError(f"config: `{role}` must be a mapping with a `type` (transformers | vllm | openai | python).")
        unknown = set(value) - _BACKEND_KEYS - _GEN_KEYS
        if unknown:
            raise DataError(f"config: unknown key(s) {sorted(unknown)} in `{role}`. Known: "
                            f"{sorted(_BACKEND_KEYS | _GEN_KEYS)}.")
        gen = {**_ROLE_DEFAULTS[role], **{k: v for k, v in value.items() if k in _GEN_KEYS}}
        backend = {k: v for k, v in value.items() if k in _BACKEND_KEYS}
        if "same_as" in backend:
            other = backend.pop("same_as")
            if other != "annotator" or role == "annotator":
                raise DataError(f"config: `{role}.same_as` can only be 'annotator'.")
            if backend:
                raise DataError(f"config: `{role}` has same_as and backend keys {sorted(backend)}; use one or the other.")
            backend = dict(fallback or {})
        btype = backend.get("type")
        if btype not in ("transformers", "vllm", "openai", "python"):
            raise DataError(f"config: `{role}.type` must be transformers, vllm, openai or python (got {btype!r}).")
        if btype == "python" and not backend.get("callable"):
            raise DataError(f"config: `{role}` has type python but no `callable` ('module:function' or 'file.py:function').")
        if btype != "python" and not backend.get("model"):
            raise DataError(f"config: `{role}` has type {btype} but no `model`.")
        if btype == "openai" and not backend.get("base_url"):
            raise DataError(f"config: `{role}` has type openai but no `base_url` (e.g. http://localhost:8000/v1).")
        try:
            gen["mode"] = resolve_mode(gen.get("mode", "non_thinking")).value
        except ValueError as e:
            raise DataError(f"config: `{role}.mode`: {e}") from e
        if gen.get("attempts", 1) < 1:
            raise DataError(f"config: `{role}.attempts` must be >= 1.")
        return cls(role=role, backend=backend, **gen)


@dataclass
class CurationConfig:
    """Everything a curation run reads from its YAML file (see ``data_prep/configs/*.yaml``)."""

    dataset: str
    output_dir: str
    annotator: dict
    judge: dict | str | None = None
    reasoner: dict | str | None = None
    split: str = "train"
    name: str | None = None  # dataset config name (Hub datasets)
    source: str | None = None  # value of the output's `source` column; default: the dataset's file stem / id
    columns: dict = field(default_factory=dict)
    n_samples: int = 8
    non_thinking_target: str = "annotator"  # annotator | reference
    default_answer_kind: str = "auto"  # verifier kind for objective rows whose kind column says only "objective"
    verifier: str = "r4b_trl.rewards:verify"
    judge_prompt_file: str | None = None
    prefix_family: str | dict | None = None
    chunk_size: int = 32
    seed: int = 0
    dedup: bool = True
    limit: int | None = None
    output_format: str = "jsonl"  # jsonl | parquet | both
    tokenizer: str | None = None  # optional: token lengths in the data card

    # keys that do not change any row's result: left out of the resume fingerprint
    NON_RESULT_KEYS = ("output_dir", "limit", "output_format", "tokenizer")

    def __post_init__(self):
        cols = dict(self.columns or {})
        unknown = set(cols) - {f.name for f in dataclasses.fields(QuestionColumns)}
        if unknown:
            raise DataError(f"config: unknown column option(s) {sorted(unknown)}; known: "
                            f"{[f.name for f in dataclasses.fields(QuestionColumns)]}.")
        self.columns = cols
        if self.n_samples < 1:
            raise DataError("config: n_samples must be >= 1.")
        if self.chunk_size < 1:
            raise DataError("config: chunk_size must be >= 1.")
        if self.non_thinking_target not in ("annotator", "reference"):
            raise DataError("config: non_thinking_target must be 'annotator' or 'reference'.")
        if self.output_format not in ("jsonl", "parquet", "both"):
            raise DataError("config: output_format must be jsonl, parquet or both.")
        self.annotator_spec = RoleSpec.from_dict("annotator", self.annotator)
        self.judge_spec = RoleSpec.from_dict("judge", self.judge, self.annotator_spec.backend)
        self.reasoner_spec = RoleSpec.from_dict("reasoner", self.reasoner, self.annotator_spec.backend)
        get_prefixes(self.prefix_family)  # validate

    @property
    def question_columns(self) -> QuestionColumns:
        cols = {"question": "question", "answer": "answer", **self.columns}
        return QuestionColumns(**cols)

    def to_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def fingerprint_dict(self) -> dict:
        d = self.to_dict()
        for k in self.NON_RESULT_KEYS:
            d.pop(k, None)
        d["columns"] = dataclasses.asdict(self.question_columns)
        d["roles"] = {r.role: dataclasses.asdict(r) for r in (self.annotator_spec, self.judge_spec, self.reasoner_spec)}
        for k in ("annotator", "judge", "reasoner"):
            d.pop(k)
        for role in d["roles"].values():
            fn = role["backend"].get("callable")
            if callable(fn):  # a function passed in code: identify it by name, not by address
                role["backend"]["callable"] = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
        d["judge_prompt"] = load_judge_prompt(self.judge_prompt_file)
        return json.loads(json.dumps(d, default=str))


def load_config(path: str | os.PathLike, **overrides) -> CurationConfig:
    import yaml

    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise DataError(f"{path}: the config must be a YAML mapping.")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(CurationConfig)}
    unknown = set(raw) - known
    if unknown:
        raise DataError(f"{path}: unknown key(s) {sorted(unknown)}. Known: {sorted(known)}.")
    missing = [k for k in ("dataset", "output_dir", "annotator") if k not in raw]
    if missing:
        raise DataError(f"{path}: missing required key(s) {missing}.")
    return CurationConfig(**raw)
