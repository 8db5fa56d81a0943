"""Bi-mode curation (R-4B §2.1): label every query *thinking* or *non-thinking* and build its SFT target.

    python data_prep/curate.py --config data_prep/configs/sample_fake.yaml

* **Performance heuristic** (objective queries, i.e. with a reference answer): an annotator samples
  ``n_samples`` (default 8) non-thinking answers; if all are wrong per the project's verifier the query is hard →
  ``thinking``, otherwise ``non_thinking``. The pass count is recorded.
* **Difficulty heuristic** (subjective queries): a judge is asked, with a prompt we ship
  (``r4b_trl/data/prompts/judge_difficulty.txt``, replaceable), whether the query needs step-by-step reasoning;
  its verdict (``VERDICT: REASONING`` / ``VERDICT: DIRECT``) is parsed robustly. No verdict → ``unparseable``
  (recorded, not guessed, left out of the output).
* **Targets**: thinking rows get a trace from a reasoner in forced thinking mode, kept only if it closes
  ``</think>`` and (with a reference) its answer verifies; non-thinking rows take the annotator's correct answer
  or the reference answer. Texts are built with :class:`~r4b_trl.modes.ModePrefixes`, so they are exactly the
  mode vocabulary's forms. Duplicates (same question + images) are dropped.
* **Resumable and lossless**: rows are processed in fixed chunks of the source; each finished chunk's records are
  appended to ``<output_dir>/curation.jsonl``. A restart with the same configuration skips finished chunks and
  re-runs a chunk it was killed in, so the final ``curated.jsonl`` (rebuilt from the records in source order) is
  the same as an uninterrupted run's — byte for byte when the backends are deterministic for a given batch and
  seed (python callables, greedy or seeded transformers generation).

Backends per role (``annotator``, ``judge``, ``reasoner``): ``transformers``, ``vllm``, ``openai`` (any
OpenAI-compatible endpoint) and ``python`` (a ``module:function`` or ``path/to/file.py:function`` callable that
takes a :class:`Request`; see :mod:`r4b_trl.data.fake_annotators`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..modes import ModePrefixes, get_prefixes, parse_response, render_prompt, resolve_mode
from .formats import QuestionColumns, row_id
from .io import DataError, images_of, load_table, read_jsonl, require_columns, user_prompt, write_jsonl

__all__ = [
    "CurationConfig",
    "RoleSpec",
    "Request",
    "OUTCOMES",
    "DEFAULT_JUDGE_PROMPT_FILE",
    "load_judge_prompt",
    "parse_verdict",
    "load_config",
    "curate",
    "store_image",
]

OUTCOMES = ("thinking", "non_thinking", "failed", "unparseable", "duplicate")
DEFAULT_JUDGE_PROMPT_FILE = Path(__file__).parent / "prompts" / "judge_difficulty.txt"
RECORDS_FILE = "curation.jsonl"
META_FILE = "curation_meta.json"
SUMMARY_FILE = "curation_summary.json"
FORMAT_VERSION = 1

# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------------------
# The judge prompt and its verdict
# --------------------------------------------------------------------------------------------------------------


def load_judge_prompt(path: str | os.PathLike | None = None) -> str:
    p = Path(path) if path else DEFAULT_JUDGE_PROMPT_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"judge_prompt_file {str(p)!r} cannot be read ({e}).") from e
    if "{question}" not in text:
        raise DataError(f"judge_prompt_file {str(p)!r} has no {{question}} placeholder for the query.")
    return text


_VERDICT_RE = re.compile(r"verdict\s*(?:is)?\s*[:=\-–—]?\s*(reasoning|direct)\b", re.I)
_BOXED_RE = re.compile(r"\\boxed\s*\{\s*(?:\\text\s*\{\s*)?([A-Za-z_ ]+?)\s*\}")
_BARE_RE = re.compile(r"^\s*(reasoning|direct)\s*[.!]?\s*$", re.I)


def parse_verdict(text: str | None) -> str | None:
    """``"REASONING"``, ``"DIRECT"`` or None from a judge's reply. Markdown emphasis and code marks are ignored,
    ``\\boxed{...}`` is unwrapped, case does not matter, and when several verdicts appear the last one wins. A reply
    that is only the word counts too. Anything else is None (unparseable), never a guess."""
    if not text:
        return None
    t = re.sub(r"[*_`#]", "", text)
    found: list[tuple[int, str]] = [(m.start(), m.group(1)) for m in _VERDICT_RE.finditer(t)]
    for m in _BOXED_RE.finditer(t):
        word = m.group(1).strip().lower()
        if word in ("reasoning", "direct"):
            found.append((m.start(), word))
    if not found:
        m = _BARE_RE.match(t)
        return m.group(1).upper() if m else None
    return max(found)[1].upper()


# --------------------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Request:
    """What a ``type: python`` callable receives (one per row and role).

    ``role``: annotator | judge | reasoner. ``messages``: the conversation the role answers (for the judge: the
    judge prompt); ``images``: PIL images; ``mode``: the mode the answer must be in; ``n``: answers wanted. The
    callable returns a string or a list of strings: a whole assistant turn (starting with ``<think>``) or the text
    that follows the mode's pre-fill; a reasoner may also return ``{"reasoning": ..., "answer": ...}``.
    """

    role: str
    id: str
    question: str
    solution: str | None
    kind: str
    answer_kind: str | None
    messages: list
    images: list
    mode: str
    n: int
    row: dict


def _import_callable(spec: str | Callable) -> Callable:
    if callable(spec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise DataError(f"callable {spec!r}: use 'package.module:function' or 'path/to/file.py:function'.")
    target, _, name = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target).resolve()
            mod_name = "r4b_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or not path.exists():
                raise DataError(f"callable {spec!r}: file {str(path)!r} not found.")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as e:
        raise DataError(f"callable {spec!r}: cannot import {target!r} ({e}).") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise DataError(f"callable {spec!r}: {target!r} has no function {name!r}.")
    return fn


class _ModelRole:
    """A loaded generation backend plus the processing class that renders its prompts."""

    def __init__(self, spec: dict, prefixes: ModePrefixes | None = None):
        from ..generation import OpenAIBackend, TransformersBackend, VLLMBackend
        from ..models import load_processing_class
        from ..templates import check_model_template

        t = spec["type"]
        model = spec["model"]
        common = {"trust_remote_code": bool(spec.get("trust_remote_code", False))}
        if spec.get("revision"):
            common["revision"] = spec["revision"]
        # The chat template is checked (one line, naming its family) before any weights load.
        from ..modes import ModeError

        try:
            check_model_template(spec.get("tokenizer") or model, prefixes, stage="curate", **common)
        except ModeError as err:
            raise DataError(str(err)) from err
        if t == "transformers":
            load = dict(common, dtype=spec.get("dtype", "auto"), device_map=spec.get("device_map"),
                        adapter=spec.get("adapter"))
            self.backend = TransformersBackend.from_pretrained(model, batch_size=int(spec.get("batch_size", 16)), **load)
            self.processing_class = self.backend.processing_class
        elif t == "vllm":
            self.processing_class = load_processing_class(model, **common)
            self.backend = VLLMBackend(model, trust_remote_code=common["trust_remote_code"],
                                       adapter=spec.get("adapter"), **(spec.get("engine_kwargs") or {}))
        elif t == "openai":
            self.processing_class = load_processing_class(spec.get("tokenizer") or model, **common)
            key_env = spec.get("api_key_env", "OPENAI_API_KEY")
            self.backend = OpenAIBackend(
                spec["base_url"], model, api_key=os.environ.get(key_env) if key_env else None,
                timeout=float(spec.get("timeout", 600)), max_retries=int(spec.get("max_retries", 4)),
                concurrency=int(spec.get("concurrency", 8)), batch_size=int(spec.get("batch_size", 16)),
                tokenizer=self.processing_class, extra_body=spec.get("extra_body"))
        else:  # pragma: no cover - guarded by RoleSpec
            raise DataError(f"unknown backend type {t!r}")
        self.sees_images = hasattr(self.processing_class, "image_processor")


class _Roles:
    """Loads each distinct backend once (roles with ``same_as`` share it) and answers requests."""

    def __init__(self, cfg: CurationConfig, prefixes: ModePrefixes):
        self.cfg = cfg
        self.prefixes = prefixes
        self._cache: dict[str, Any] = {}

    def _backend(self, spec: RoleSpec):
        key = json.dumps(spec.backend, sort_keys=True, default=str)
        if key not in self._cache:
            if spec.backend["type"] == "python":
                fn = _import_callable(spec.backend["callable"])
                kwargs = spec.backend.get("kwargs") or {}
                self._cache[key] = (lambda req, fn=fn, kw=kwargs: fn(req, **kw))
            else:
                self._cache[key] = _ModelRole(spec.backend, self.prefixes)
        return self._cache[key]

    def sees_images(self, spec: RoleSpec) -> bool:
        b = self._backend(spec)
        return True if callable(b) else b.sees_images

    def ask(self, spec: RoleSpec, requests: list[Request], *, temperature: float,
            seed: int) -> list[list[tuple[str, bool]]]:
        """Per request, up to ``request.n`` ``(full assistant text, finished)`` pairs: the mode's pre-fill followed
        by the answer, and False when generation stopped at ``max_new_tokens``."""
        if not requests:
            return []
        b = self._backend(spec)
        if callable(b):
            return [self._normalize(r, b(r)) for r in requests]
        from ..generation import OpenAIBackend, chat_prompt_in_mode

        groups: dict[tuple[str, int], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.mode, r.n), []).append(i)
        out: list = [None] * len(requests)
        for (mode, n), idx in groups.items():
            prompts = []
            for i in idx:
                r = requests[i]
                if isinstance(b.backend, OpenAIBackend) and r.images:
                    prompts.append(chat_prompt_in_mode(b.processing_class, r.messages, mode, self.prefixes))
                else:
                    prompts.append(render_prompt(b.processing_class, r.messages, mode, self.prefixes))
            imgs = [requests[i].images for i in idx]
            gens = b.backend.generate(prompts, imgs if any(imgs) else None, max_new_tokens=spec.max_new_tokens,
                                      temperature=temperature, top_p=spec.top_p, n=n, seed=seed)
            pre = self.prefixes.prefix(mode)
            for i, row in zip(idx, gens):
                out[i] = [(pre + g.text, bool(g.finished)) for g in row]
        return out

    def _normalize(self, req: Request, value) -> list[tuple[str, bool]]:
        if value is None:
            return []
        values = value if isinstance(value, (list, tuple)) else [value]
        pre = self.prefixes.prefix(req.mode)
        out = []
        for v in values:
            if isinstance(v, dict):
                if req.mode == "thinking":
                    v = self.prefixes.thinking_answer(str(v.get("reasoning") or ""), str(v.get("answer") or ""))
                else:
                    v = self.prefixes.non_thinking_answer(str(v.get("answer") or ""))
            elif v is None:
                continue
            v = str(v)
            out.append((v if v.lstrip().startswith(self.prefixes.open_tag) else pre + v, True))
        return out


# --------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    index: int
    id: str
    row: dict
    question: str = ""
    solution: str | None = None
    kind: str = "objective"
    answer_kind: str | None = None
    images: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    record: dict | None = None  # the row's result, once settled
    pending: dict = field(default_factory=dict)  # evidence gathered before the target is written


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _classify(kind_value, has_answer: bool, default_answer_kind: str) -> tuple[str, str | None] | str:
    v = "" if kind_value is None else str(kind_value).strip().lower()
    if v in ("subjective", "open", "open-ended", "open_ended", "creative"):
        return "subjective", None
    if v in ("math", "choice", "exact"):
        return "objective", v
    if v in ("objective", "auto", "verifiable"):
        return "objective", default_answer_kind
    if v == "":
        return ("objective", default_answer_kind) if has_answer else ("subjective", None)
    return f"unknown kind {kind_value!r} (use objective, subjective, math, choice, exact or auto)"


def _evidence(**kw) -> dict:
    ev = {"heuristic": None, "kind": None, "answer_kind": None, "pass_count": None, "n_samples": None,
          "verdict": None, "judge_raw": None, "target_source": None, "attempts": None, "reason": None}
    ev.update(kw)
    return ev


def _record(item: _Item, outcome: str, completion: str | None = None, reason: str | None = None, **evidence) -> dict:
    mode = outcome if outcome in ("thinking", "non_thinking") else None
    ev = _evidence(kind=item.kind, answer_kind=item.answer_kind, reason=reason, **evidence)
    return {"id": item.id, "index": item.index, "outcome": outcome, "mode": mode, "completion": completion,
            "reason": reason, "evidence": ev}


def _raw_image_bytes(value, base_dir) -> tuple[bytes, str]:
    """The stored bytes of an image value and a file extension (no decoding, no re-encoding)."""
    from PIL import Image

    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if isinstance(value, dict):
        if value.get("bytes"):
            ext = Path(value.get("path") or "").suffix.lower() or _sniff_ext(value["bytes"])
            return bytes(value["bytes"]), ext
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), _sniff_ext(value)
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        return p.read_bytes(), (p.suffix.lower() or ".png")
    raise DataError(f"expected an image (PIL image, path, bytes or {{'bytes','path'}}), got {type(value).__name__}")


def _sniff_ext(data: bytes) -> str:
    from PIL import Image

    try:
        fmt = Image.open(io.BytesIO(data)).format or "PNG"
    except Exception:
        fmt = "PNG"
    return "." + {"JPEG": "jpg"}.get(fmt, fmt.lower())


def _image_values(row: dict, column: str | None) -> list:
    if not column or row.get(column) is None:
        return []
    v = row[column]
    return [x for x in (v if isinstance(v, (list, tuple)) else [v]) if x is not None]


def store_image(value, base_dir, out_dir: str | os.PathLike) -> str:
    """Copy an image's bytes into ``<out_dir>/images/<sha256[:16]><ext>`` (content-addressed, so repeated runs and
    shared images write one file) and return its path relative to ``out_dir``."""
    data, ext = _raw_image_bytes(value, base_dir)
    name = hashlib.sha256(data).hexdigest()[:16] + ext
    rel = Path("images") / name
    dest = Path(out_dir) / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return rel.as_posix()


def _dedup_key(question: str, row: dict, cols: QuestionColumns, base_dir) -> str:
    h = hashlib.sha256(" ".join(question.split()).encode("utf-8"))
    for v in _image_values(row, cols.image):
        try:
            h.update(hashlib.sha256(_raw_image_bytes(v, base_dir)[0]).digest())
        except Exception:
            h.update(repr(v).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------


class Curator:
    def __init__(self, cfg: CurationConfig, verify: Callable | None = None, progress: bool = True):
        self.cfg = cfg
        self.cols = cfg.question_columns
        self.prefixes = get_prefixes(cfg.prefix_family)
        self.judge_prompt = load_judge_prompt(cfg.judge_prompt_file)
        self.verify = verify or _import_callable(cfg.verifier)
        self.roles = _Roles(cfg, self.prefixes)
        self.progress = progress
        self.out = Path(cfg.output_dir)
        src = Path(cfg.dataset)
        self.base_dir = self.cols.image_base_dir or (str(src.parent if src.is_file() else src) if src.exists() else None)
        self.source_name = cfg.source or (src.stem if src.exists() else str(cfg.dataset))

    # -- data -------------------------------------------------------------------------------------------------
    def load_rows(self) -> tuple[list[dict], str]:
        """The rows to curate (the first ``limit``) and a fingerprint of the whole dataset."""
        ds = load_table(self.cfg.dataset, split=self.cfg.split, name=self.cfg.name)
        require_columns(ds.column_names, {k: v for k, v in self.cols.required().items() if k != "group"},
                        source=str(self.cfg.dataset))
        ds = _undecoded_images(ds, self.cols.image)
        n = len(ds) if self.cfg.limit is None else min(len(ds), int(self.cfg.limit))
        return [ds[i] for i in range(n)], self._data_fingerprint(ds)

    def _prepare(self, rows: list[dict]) -> list[_Item]:
        items, seen_ids, seen_keys = [], {}, {}
        for i, row in enumerate(rows):
            rid = row_id(row, i, self.cols)
            if rid in seen_ids:
                raise DataError(f"{self.cfg.dataset}: rows {seen_ids[rid]} and {i} share the id {rid!r} (column "
                                f"{self.cols.id!r}); ids must be unique.")
            seen_ids[rid] = i
            item = _Item(index=i, id=rid, row=row)
            items.append(item)
            q = row.get(self.cols.question)
            if _blank(q):
                item.record = _record(item, "failed", reason=f"row {i}: the question column {self.cols.question!r} is empty")
                continue
            item.question = str(q)
            ans = row.get(self.cols.answer) if self.cols.answer else None
            item.solution = None if _blank(ans) else str(ans).strip()
            kind = _classify(row.get(self.cols.kind) if self.cols.kind else None, item.solution is not None,
                             self.cfg.default_answer_kind)
            if isinstance(kind, str):
                item.record = _record(item, "failed", reason=f"row {i}: column {self.cols.kind!r}: {kind}")
                continue
            item.kind, item.answer_kind = kind
            if item.kind == "objective" and item.solution is None:
                item.record = _record(item, "failed", reason=(
                    f"row {i}: the answer column {self.cols.answer!r} is empty; the performance heuristic needs a "
                    "reference answer for an objective query (give one, or set its kind to subjective)"))
                continue
            if self.cfg.dedup:
                key = _dedup_key(item.question, row, self.cols, self.base_dir)
                if key in seen_keys:
                    item.record = _record(item, "duplicate", reason=f"duplicate of row id {seen_keys[key]!r} "
                                          "(same question and images)")
                    continue
                seen_keys[key] = rid
        return items

    def _load_images(self, item: _Item) -> bool:
        try:
            item.images = images_of(item.row, self.cols.image, self.base_dir, where=f"row {item.index} (id {item.id!r})")
        except DataError as e:
            item.record = _record(item, "failed", reason=str(e))
            return False
        item.messages = user_prompt(item.question, len(item.images), self.cols.system_prompt)
        return True

    def _request(self, item: _Item, role: str, mode: str, n: int, messages=None) -> Request:
        return Request(role=role, id=item.id, question=item.question, solution=item.solution, kind=item.kind,
                       answer_kind=item.answer_kind, messages=messages or item.messages, images=item.images,
                       mode=mode, n=n, row=item.row)

    def _verify(self, answer: str, item: _Item) -> bool | None:
        return self.verify(answer, item.solution, kind=item.answer_kind or "auto")

    # -- one chunk --------------------------------------------------------------------------------------------
    def process_chunk(self, items: list[_Item], chunk_index: int) -> list[dict]:
        cfg, P = self.cfg, self.prefixes
        seed = cfg.seed + 1000 * chunk_index
        live = [it for it in items if it.record is None and self._load_images(it)]
        ann, judge, reas = cfg.annotator_spec, cfg.judge_spec, cfg.reasoner_spec
        thinking: list[_Item] = []
        direct_needs_answer: list[_Item] = []
        results: dict[str, dict] = {}

        def blind(it: _Item, spec: RoleSpec) -> bool:
            if it.images and not self.roles.sees_images(spec):
                it.record = _record(it, "failed", reason=f"row {it.index}: the row has images but the {spec.role} "
                                    f"({spec.backend.get('model')}) is a text-only model")
                return True
            return False

        # 1. performance heuristic
        objective = [it for it in live if it.kind == "objective" and not blind(it, ann)]
        answers = self.roles.ask(ann, [self._request(it, "annotator", "non_thinking", cfg.n_samples) for it in objective],
                                 temperature=ann.temperature, seed=seed + 1)
        for it, samples in zip(objective, answers):
            texts = [text for text, _ in samples]
            if not texts or all(not parse_response(t, P).answer.strip() for t in texts):
                it.record = _record(it, "failed", reason=f"row {it.index}: the annotator returned no answer",
                                    heuristic="performance", n_samples=len(texts))
                continue
            verdicts = [self._verify(parse_response(t, P).answer, it) for t in texts]
            if any(v is None for v in verdicts):
                it.record = _record(it, "failed", heuristic="performance", n_samples=len(texts), reason=(
                    f"row {it.index}: the reference answer {it.solution!r} cannot be parsed as a "
                    f"{it.answer_kind or 'auto'} answer by the verifier"))
                continue
            passed = sum(bool(v) for v in verdicts)
            ev = dict(heuristic="performance", pass_count=passed, n_samples=len(texts))
            if passed == 0:
                it.pending = ev
                thinking.append(it)
            else:
                # the first correct answer that was not cut off at max_new_tokens, else the reference answer
                usable = [k for k, v in enumerate(verdicts) if v and samples[k][1]]
                if cfg.non_thinking_target == "annotator" and usable:
                    answer, source = parse_response(texts[usable[0]], P).answer, "annotator"
                else:
                    answer, source = it.solution, "reference"
                it.record = _record(it, "non_thinking", P.non_thinking_answer(answer), target_source=source, **ev)

        # 2. difficulty heuristic
        subjective = [it for it in live if it.kind == "subjective" and it.record is None and not blind(it, judge)]
        reqs = []
        for it in subjective:
            text = self.judge_prompt.replace("{question}", it.question)
            msgs = user_prompt(text, len(it.images), self.cols.system_prompt)
            reqs.append(self._request(it, "judge", judge.mode, 1, messages=msgs))
        replies = self.roles.ask(judge, reqs, temperature=judge.temperature, seed=seed + 2)
        for it, reply in zip(subjective, replies):
            raw = reply[0][0] if reply else ""
            parsed = parse_response(raw, P)
            verdict = parse_verdict(parsed.answer) if parsed.mode != "truncated" else None
            ev = dict(heuristic="difficulty", verdict=verdict, judge_raw=raw)
            if verdict is None:
                it.record = _record(it, "unparseable", reason=f"row {it.index}: no VERDICT: REASONING / DIRECT in the "
                                    "judge's reply", **ev)
            elif verdict == "REASONING":
                it.pending = ev
                thinking.append(it)
            elif it.solution is not None:
                it.record = _record(it, "non_thinking", P.non_thinking_answer(it.solution), target_source="reference",
                                    **ev)
            else:
                it.pending = ev
                direct_needs_answer.append(it)

        # 3. direct answers for subjective rows without a reference
        todo = [it for it in direct_needs_answer if not blind(it, ann)]
        outs = self.roles.ask(ann, [self._request(it, "annotator", "non_thinking", 1) for it in todo],
                              temperature=ann.answer_temperature, seed=seed + 3)
        for it, out in zip(todo, outs):
            text, finished = out[0] if out else ("", False)
            parsed = parse_response(text, P)
            if not out or not parsed.answer.strip():
                it.record = _record(it, "failed", reason=f"row {it.index}: the annotator returned no answer", **it.pending)
            elif not finished:
                it.record = _record(it, "failed", reason=f"row {it.index}: the annotator's answer hit max_new_tokens "
                                    f"({ann.max_new_tokens})", **it.pending)
            else:
                it.record = _record(it, "non_thinking", P.non_thinking_answer(parsed.answer),
                                    target_source="annotator", **it.pending)

        # 4. reasoning traces
        todo = [it for it in thinking if not blind(it, reas)]
        traces = self.roles.ask(reas, [self._request(it, "reasoner", "thinking", reas.attempts) for it in todo],
                                temperature=reas.temperature, seed=seed + 4)
        for it, samples in zip(todo, traces):
            reasons = []
            for k, s in enumerate(samples):
                text, finished = s
                parsed = parse_response(text, P)
                if parsed.mode == "truncated":
                    reasons.append("the trace never closes </think>")
                elif parsed.mode != "thinking":
                    reasons.append("the trace has an empty think block")
                elif not finished:
                    reasons.append(f"the trace hit max_new_tokens ({reas.max_new_tokens})")
                elif not parsed.answer.strip():
                    reasons.append("the trace has no answer after </think>")
                elif it.solution is not None and it.kind == "objective" and not self._verify(parsed.answer, it):
                    reasons.append("the trace's final answer disagrees with the reference answer")
                else:
                    it.record = _record(it, "thinking", P.thinking_answer(parsed.reasoning, parsed.answer),
                                        target_source="reasoner", attempts=k + 1, **it.pending)
                    break
            if it.record is None:
                why = "; ".join(dict.fromkeys(reasons)) or "the reasoner returned nothing"
                it.record = _record(it, "failed", reason=f"row {it.index}: {why}", attempts=len(samples), **it.pending)
        for it in items:
            results[it.id] = it.record
        return [results[it.id] for it in items]

    # -- resume bookkeeping -----------------------------------------------------------------------------------
    def _data_fingerprint(self, ds) -> str:
        h = hashlib.sha256()
        for i, row in enumerate(ds):
            vals = [row_id(row, i, self.cols), row.get(self.cols.question),
                    row.get(self.cols.answer) if self.cols.answer else None,
                    row.get(self.cols.kind) if self.cols.kind else None]
            for v in _image_values(row, self.cols.image):
                vals.append(v if isinstance(v, str) else len(_raw_image_bytes(v, self.base_dir)[0]))
            h.update(json.dumps(vals, default=str).encode())
        return h.hexdigest()

    def _check_meta(self, rows_all_fp: str, overwrite: bool) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        meta_path = self.out / META_FILE
        meta = {"format_version": FORMAT_VERSION, "config": self.cfg.fingerprint_dict(), "data": rows_all_fp}
        meta["fingerprint"] = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
        if overwrite:
            for name in (RECORDS_FILE, META_FILE, SUMMARY_FILE):
                (self.out / name).unlink(missing_ok=True)
        elif meta_path.exists():
            old = json.loads(meta_path.read_text(encoding="utf-8"))
            if old.get("fingerprint") != meta["fingerprint"]:
                diff = sorted(k for k in set(old.get("config", {})) | set(meta["config"])
                              if old.get("config", {}).get(k) != meta["config"].get(k))
                if old.get("data") != meta["data"]:
                    diff.append("<the dataset's rows>")
                raise DataError(
                    f"{self.out}: it holds a curation run with a different configuration (differs in: {diff}). "
                    "Resume with the same config, pick another output_dir, or pass --overwrite to start over.")
        elif (self.out / RECORDS_FILE).exists():
            raise DataError(f"{self.out}: {RECORDS_FILE} exists without {META_FILE}; pass --overwrite to start over.")
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")

    def run(self, overwrite: bool = False) -> dict:
        from tqdm.auto import tqdm

        rows, data_fp = self.load_rows()
        self._check_meta(data_fp, overwrite)
        items = self._prepare(rows)
        rec_path = self.out / RECORDS_FILE
        done = {r["id"]: r for r in read_jsonl(rec_path)}
        B = self.cfg.chunk_size
        chunks = [items[s:s + B] for s in range(0, len(items), B)]
        counts = {o: 0 for o in OUTCOMES}
        finished_chunks = set()
        for k, chunk in enumerate(chunks):
            if all(it.id in done for it in chunk):
                finished_chunks.add(k)
                for it in chunk:
                    counts[done[it.id]["outcome"]] += 1
        bar = tqdm(total=len(items), initial=sum(counts.values()), desc="curating", unit="row",
                   disable=not self.progress, dynamic_ncols=True)
        bar.set_postfix({k: v for k, v in counts.items() if k != "duplicate" or v})
        for k, chunk in enumerate(chunks):
            if k in finished_chunks:
                continue
            recs = self.process_chunk(chunk, k)
            write_jsonl(rec_path, recs, append=True)
            for r in recs:
                done[r["id"]] = r
                counts[r["outcome"]] += 1
            bar.update(len(chunk))
            bar.set_postfix({k2: v for k2, v in counts.items() if k2 != "duplicate" or v})
        bar.close()
        return self.finalize(rows, items, done)

    # -- final output -----------------------------------------------------------------------------------------
    def finalize(self, rows: list[dict], items: list[_Item], done: dict[str, dict]) -> dict:
        out_rows = []
        for it in items:
            rec = done[it.id]
            if rec["outcome"] not in ("thinking", "non_thinking"):
                continue
            vals = _image_values(it.row, self.cols.image)
            images = [store_image(v, self.base_dir, self.out) for v in vals]
            prompt = user_prompt(str(it.row[self.cols.question]), len(images), self.cols.system_prompt)
            out_rows.append({
                "id": it.id, "source": self.source_name, "mode": rec["mode"], "prompt": prompt,
                "completion": [{"role": "assistant", "content": rec["completion"]}], "images": images,
                "solution": it.solution if it.solution is not None else "", "evidence": rec["evidence"],
            })
        out_rows = normalize_rows(out_rows)
        write_outputs(out_rows, self.out, "curated", self.cfg.output_format)
        summary = {
            "dataset": str(self.cfg.dataset), "source": self.source_name, "rows": len(items),
            "counts": {o: sum(1 for it in items if done[it.id]["outcome"] == o) for o in OUTCOMES},
            "output_rows": len(out_rows),
            "not_kept": [{"id": it.id, "outcome": done[it.id]["outcome"], "reason": done[it.id]["reason"]}
                       for it in items if done[it.id]["outcome"] in ("failed", "unparseable", "duplicate")],
        }
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        from .mixing import build_data_card, write_data_card

        card = build_data_card(out_rows, tokenizer=self.cfg.tokenizer, title=f"Curated: {self.source_name}",
                               extra={"curation": {k: summary[k] for k in ("dataset", "rows", "counts")}})
        write_data_card(card, self.out)
        return summary


def _undecoded_images(ds, column: str | None):
    """Keep image columns as stored bytes/paths (``datasets`` would decode them to PIL images)."""
    if not column or column not in ds.column_names:
        return ds
    import datasets

    feat = ds.features[column]
    if isinstance(feat, datasets.Image):
        return ds.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feat, "feature", None)
    if isinstance(inner, datasets.Image):
        cls = type(feat)
        return ds.cast_column(column, cls(datasets.Image(decode=False)))
    return ds


def normalize_rows(rows: list[dict]) -> list[dict]:
    """Make the rows Arrow-friendly as one table: when any row has images, every message's content becomes a list
    of blocks (``{"type": "text", "text": ...}``) and every row gets an ``images`` list; otherwise content stays a
    string and the ``images`` column is dropped."""
    any_images = any(r.get("images") for r in rows)
    out = []
    for r in rows:
        r = dict(r)
        if any_images:
            r["prompt"] = [_blocks(m) for m in r["prompt"]]
            r["images"] = list(r.get("images") or [])
        else:
            r.pop("images", None)
        out.append(r)
    return out


def _blocks(message: dict) -> dict:
    c = message.get("content")
    if isinstance(c, list):
        content = [{"type": b.get("type", "text"), "text": b.get("text") if b.get("type", "text") == "text" else None}
                   for b in c]
    else:
        content = [{"type": "text", "text": "" if c is None else str(c)}]
    return {"role": message["role"], "content": content}


def write_outputs(rows: list[dict], out_dir: Path, stem: str, fmt: str) -> list[Path]:
    """Write ``<stem>.jsonl`` and/or ``<stem>.parquet`` (images embedded as bytes in the Parquet file)."""
    written = []
    out_dir = Path(out_dir)
    if fmt in ("jsonl", "both"):
        p = out_dir / f"{stem}.jsonl"
        tmp = p.with_suffix(".jsonl.tmp")
        write_jsonl(tmp, rows)
        os.replace(tmp, p)
        written.append(p)
    if fmt in ("parquet", "both"):
        import datasets

        p = out_dir / f"{stem}.parquet"
        embedded = []
        for r in rows:
            r = dict(r)
            if "images" in r:
                r["images"] = [{"bytes": (out_dir / x).read_bytes(), "path": Path(x).name} for x in r["images"]]
            embedded.append(r)
        ds = datasets.Dataset.from_list(embedded) if embedded else datasets.Dataset.from_dict({})
        if "images" in ds.column_names:
            ds = ds.cast_column("images", datasets.List(datasets.Image()))
        ds.to_parquet(str(p))
        written.append(p)
    return written


def curate(config: CurationConfig | str | os.PathLike, overwrite: bool = False, progress: bool = True,
           verify: Callable | None = None, **overrides) -> dict:
    """Run (or resume) a curation; returns the summary (counts per outcome, failed rows with reasons)."""
    cfg = config if isinstance(config, CurationConfig) else load_config(config, **overrides)
    return Curator(cfg, verify=verify, progress=progress).run(overwrite=overwrite)


