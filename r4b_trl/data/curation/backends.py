"""Where each role's answers come from: a loaded model (transformers, vLLM, an OpenAI-compatible endpoint) or a
python callable, asked in a forced mode."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...modes import ModePrefixes
from ...templates import render_prompt
from ..io import DataError
from .config import CurationConfig, RoleSpec


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
        from ...generation import OpenAIBackend, TransformersBackend, VLLMBackend
        from ...models import load_processing_class
        from ...modes import ModeError
        from ...templates import check_model_template

        t = spec["type"]
        model = spec["model"]
        common = {"trust_remote_code": bool(spec.get("trust_remote_code", False))}
        if spec.get("revision"):
            common["revision"] = spec["revision"]
        # The chat template is checked (one line, naming its family) before any weights load.
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
        from ...generation import OpenAIBackend, chat_prompt_in_mode

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
