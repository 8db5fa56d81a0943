"""Generation backends shared by evaluation, curation, chat and the BPO auto-mode probe.

Prompts reach a backend as *rendered text* (``templates.render_prompt``), so the mode switch is identical on every
backend; images travel alongside as PIL images. Each backend returns, per prompt, ``n`` :class:`Generation` s.

* :class:`TransformersBackend` — CPU or GPU, batched, left-padded ``generate``.
* :class:`VLLMBackend` — vLLM offline engine (GPU; ``vllm`` imported lazily).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from .modes import Mode, ModePrefixes, resolve_mode
from .templates import render_prompt


@dataclass
class Generation:
    """One generated continuation. ``num_tokens`` counts generated tokens including the end-of-turn token when
    one was produced; ``finished`` is False when generation stopped at the token limit (truncated)."""

    text: str
    num_tokens: int
    finished: bool


class TransformersBackend:
    """Batched ``generate`` with a transformers model (text or vision-language)."""

    def __init__(self, model, processing_class, batch_size: int = 16):
        self.model = model
        self.processing_class = processing_class
        self.tokenizer = getattr(processing_class, "tokenizer", processing_class)
        self.batch_size = batch_size
        self.tokenizer.padding_side = "left"
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(iter(self.eos_ids))

    @classmethod
    def from_pretrained(cls, name_or_path: str, batch_size: int = 16, **load_kwargs) -> "TransformersBackend":
        from .models import load_model_and_processing_class

        model, pc = load_model_and_processing_class(name_or_path, **load_kwargs)
        model.eval()
        return cls(model, pc, batch_size=batch_size)

    def _encode(self, prompts: Sequence[str], images: Sequence[list] | None):
        flat = [img for imgs in (images or []) for img in (imgs or [])]
        if flat:
            enc = self.processing_class(text=list(prompts), images=flat, padding=True, return_tensors="pt")
        else:
            enc = self.tokenizer(list(prompts), padding=True, return_tensors="pt", add_special_tokens=False)
        return enc.to(self.model.device)

    def _generation_kwargs(self, max_new_tokens, temperature, top_p, n):
        kw = dict(max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=self.pad_id,
                  eos_token_id=sorted(self.eos_ids))
        if temperature and temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    def generate(self, prompts: Sequence[str], images: Sequence[list] | None = None, *, max_new_tokens: int = 512,
                 temperature: float = 0.0, top_p: float = 1.0, n: int = 1, seed: int | None = None,
                 progress=None) -> list[list[Generation]]:
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        order = sorted(range(len(prompts)), key=lambda i: (bool(images and images[i]), len(prompts[i])))
        results: list[list[Generation] | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            # Keep text-only and image rows in separate batches (processors want images for every image row).
            groups = {}
            for i in idx:
                groups.setdefault(bool(images and images[i]), []).append(i)
            for has_img, rows in groups.items():
                enc = self._encode([prompts[i] for i in rows], [images[i] for i in rows] if has_img else None)
                with torch.no_grad():
                    out = self.model.generate(**enc, **self._generation_kwargs(max_new_tokens, temperature, top_p, n))
                gen = out[:, enc["input_ids"].shape[1]:]
                for j, i in enumerate(rows):
                    results[i] = [self._to_generation(gen[j * n + k]) for k in range(n)]
            if progress is not None:
                progress.update(len(idx))
        return results  # type: ignore[return-value]

    def _to_generation(self, ids) -> Generation:
        ids = ids.tolist()
        end = next((k for k, t in enumerate(ids) if t in self.eos_ids), None)
        finished = end is not None
        kept = ids[: end] if finished else [t for t in ids if t != self.pad_id]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Generation(text=text, num_tokens=len(kept) + (1 if finished else 0), finished=finished)

    def stream(self, prompt: str, images: list | None = None, *, max_new_tokens: int = 512,
               temperature: float = 0.0, top_p: float = 1.0, result: dict | None = None) -> Iterator[str]:
        """Yield text pieces as they are generated (for the chat CLI). When ``result`` is a dict, it receives
        ``result["generation"]``: the finished :class:`Generation` (exact token count, ``finished``)."""
        import threading

        import torch
        from transformers import TextIteratorStreamer

        enc = self._encode([prompt], [images] if images else None)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kw = self._generation_kwargs(max_new_tokens, temperature, top_p, 1)
        outputs: dict = {}

        def run():
            try:
                with torch.no_grad():
                    outputs["ids"] = self.model.generate(**enc, **kw, streamer=streamer)
            except BaseException as e:  # surface generation errors in the caller, not a silent thread
                outputs["error"] = e
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if "error" in outputs:
            raise outputs["error"]
        if result is not None:
            result["generation"] = self._to_generation(outputs["ids"][0, enc["input_ids"].shape[1]:])


class VLLMBackend:
    """vLLM's offline engine. Needs a GPU and ``pip install -r requirements-gpu.txt``."""

    def __init__(self, model: str, trust_remote_code: bool = False, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.9, tensor_parallel_size: int = 1, max_model_len: int | None = None,
                 limit_images: int = 4, adapter: str | None = None, seed: int = 0, **engine_kwargs):
        try:
            from vllm import LLM
        except ImportError as e:  # pragma: no cover - GPU only
            raise ImportError("The vLLM backend needs vllm: pip install -r requirements-gpu.txt (GPU machine).") from e
        self.adapter = adapter
        self.llm = LLM(model=model, trust_remote_code=trust_remote_code, dtype=dtype,
                       gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                       max_model_len=max_model_len, limit_mm_per_prompt={"image": limit_images},
                       enable_lora=adapter is not None, seed=seed, **engine_kwargs)

    def generate(self, prompts: Sequence[str], images: Sequence[list] | None = None, *, max_new_tokens: int = 512,
                 temperature: float = 0.0, top_p: float = 1.0, n: int = 1, seed: int | None = None,
                 progress=None) -> list[list[Generation]]:  # pragma: no cover - GPU only
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed)
        inputs = []
        for i, p in enumerate(prompts):
            imgs = images[i] if images else None
            inputs.append({"prompt": p, "multi_modal_data": {"image": imgs}} if imgs else {"prompt": p})
        lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, self.adapter)
        outs = self.llm.generate(inputs, params, lora_request=lora, use_tqdm=progress is not None)
        return [[Generation(c.text, len(c.token_ids), c.finish_reason == "stop") for c in o.outputs] for o in outs]


def generate_in_mode(backend, processing_class, conversations: Sequence[list[dict]], mode: str | Mode,
                     images: Sequence[list] | None = None, prefixes: ModePrefixes | None = None, **gen_kwargs):
    """Render each conversation in ``mode``, generate, and return per conversation a list of
    ``(full_assistant_text, Generation)``: the forced pre-fill followed by what the model said."""
    mode = resolve_mode(mode)
    p = prefixes or ModePrefixes()
    prompts = [render_prompt(processing_class, c, mode, p) for c in conversations]
    pre = p.prefix(mode)
    outs = backend.generate(prompts, images, **gen_kwargs)
    return [[(pre + g.text, g) for g in row] for row in outs]


# --------------------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP endpoints (`vllm serve`, `trl vllm-serve`, any server speaking the OpenAI API)
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ChatPrompt:
    """A prompt in chat form, for endpoints that take messages (``/v1/chat/completions``).

    ``messages`` hold ``{"type": "image"}`` blocks where the row's images go; ``chat_template_kwargs`` switch the
    server's chat template into the mode (``thinking_mode`` for R-4B-style templates, ``enable_thinking`` for
    Qwen3-style ones); ``prefill`` is an assistant pre-fill the server continues (``continue_final_message``);
    ``chat_template`` (rare) is a template sent with the request, for modes the served template cannot reach
    with its kwargs (vLLM needs ``--trust-request-chat-template`` for it, or serve the model with its r4b-trl
    adapted template: ``r4b_trl.templates.inference_template``); ``prefix`` is the mode's pre-fill, stripped from
    what comes back so that, as with rendered prompts, a :class:`Generation` holds only what follows the pre-fill.
    """

    messages: list
    chat_template_kwargs: dict
    prefix: str = ""
    prefill: str | None = None
    chat_template: str | None = None

    def render(self, processing_class) -> str:
        """The text a server whose template is ``processing_class``'s renders for this request (as vLLM does:
        ``apply_chat_template`` with the request's kwargs, ``continue_final_message`` for a pre-fill)."""
        messages = list(self.messages)
        if self.prefill is not None:
            messages = messages + [{"role": "assistant", "content": self.prefill}]
        return processing_class.apply_chat_template(
            messages, tokenize=False, chat_template=self.chat_template, add_generation_prompt=self.prefill is None,
            continue_final_message=self.prefill is not None, **self.chat_template_kwargs)


def chat_prompt_in_mode(processing_class, messages: list[dict], mode: str | Mode,
                        prefixes: ModePrefixes | None = None, **template_kwargs) -> ChatPrompt:
    """The :class:`ChatPrompt` that makes a server whose chat template matches ``processing_class`` render exactly
    what :func:`~r4b_trl.templates.render_prompt` renders for ``mode`` (checked here, by rendering it locally): the
    template's own switch where it pre-fills the mode exactly; else the switch plus the rest as an assistant
    pre-fill, where the template renders that pre-fill verbatim; else the adapted template
    (:func:`~r4b_trl.templates.inference_template`, ``thinking_mode``) sent with the request."""
    from .modes import ModeError
    from .templates import SWITCH_KEYS, inference_template, mode_plan

    mode = resolve_mode(mode)
    p = prefixes or ModePrefixes()
    kw = {k: v for k, v in template_kwargs.items() if k not in SWITCH_KEYS}
    want = render_prompt(processing_class, messages, mode, p, **kw)
    plan = mode_plan(processing_class, p, **kw)[mode.value]
    tries = []
    if plan.how == "switch":
        tries.append(ChatPrompt(list(messages), {**kw, **plan.kwargs}, p.prefix(mode)))
    if plan.how == "append":
        tries.append(ChatPrompt(list(messages), {**kw, **plan.kwargs}, p.prefix(mode), prefill=plan.rest))
    tries.append(lambda: ChatPrompt(list(messages), {**kw, "thinking_mode": mode.r4b_name}, p.prefix(mode),
                                    chat_template=inference_template(processing_class, p, **kw)))
    for cp in tries:
        try:
            cp = cp() if callable(cp) else cp
            if cp.render(processing_class) == want:
                return cp
        except Exception:  # e.g. continue_final_message finds its pre-fill rewritten by the template
            continue
    raise ModeError(f"No chat request renders the {mode.value} prompt exactly on this chat template; use rendered "
                    "prompts (/v1/completions) instead.")


def _image_data_url(image) -> str:
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _openai_messages(messages: list[dict], images: list | None) -> list[dict]:
    """Messages with ``{"type": "image"}`` blocks replaced, in order, by base64 ``image_url`` parts."""
    images = list(images or [])
    used = 0
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for block in content:
                if block.get("type") == "image" or "image" in block:
                    if used >= len(images):
                        raise ValueError(f"The prompt has more image blocks than the {len(images)} image(s) given.")
                    parts.append({"type": "image_url", "image_url": {"url": _image_data_url(images[used])}})
                    used += 1
                elif block.get("type") == "text":
                    parts.append({"type": "text", "text": block.get("text") or ""})
            content = parts
        out.append({"role": m["role"], "content": content})
    if used != len(images):
        raise ValueError(f"The prompt has {used} image block(s) but {len(images)} image(s) were given.")
    return out


class EndpointError(ConnectionError, RuntimeError):
    """An OpenAI-compatible endpoint gave up: ``status`` is the last HTTP status (None: no connection / timeout)."""

    def __init__(self, message: str, url: str, status: int | None = None):
        super().__init__(message)
        self.url, self.status = url, status


class OpenAIBackend:
    """Any OpenAI-compatible endpoint (``vllm serve MODEL``, ``trl vllm-serve``, hosted APIs).

    * Rendered text prompts (``str``) go to ``/v1/completions``, ``batch_size`` prompts per request, so the mode's
      pre-fill is exactly what :func:`~r4b_trl.templates.render_prompt` wrote.
    * :class:`ChatPrompt` s (needed for rows with images) go to ``/v1/chat/completions``, one request per row, with
      the images as base64 ``image_url`` parts and the mode as ``chat_template_kwargs``.
    * Requests run on ``concurrency`` threads; connection errors, timeouts, 408/429 and 5xx answers are retried
      ``max_retries`` times with exponential backoff; other HTTP errors raise at once with the server's message.

    Uses only the standard library (``urllib``). ``tokenizer`` (optional) counts generated tokens; without it the
    server's ``usage`` is split evenly over the choices of a request.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 600.0,
                 max_retries: int = 4, backoff: float = 1.0, concurrency: int = 8, batch_size: int = 16,
                 tokenizer=None, extra_body: dict | None = None, prefixes: ModePrefixes | None = None):
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = max(1, int(concurrency))
        self.batch_size = max(1, int(batch_size))
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.extra_body = dict(extra_body or {})
        self.prefixes = prefixes or ModePrefixes()

    # -- HTTP -------------------------------------------------------------------------------------------------
    def _post(self, route: str, body: dict) -> dict:
        import json
        import time
        import urllib.error
        import urllib.request

        url = f"{self.base_url}/{route}"
        data = json.dumps({**self.extra_body, **body}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last, status = None, None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 60.0))
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                detail = e.read().decode("utf-8", "replace")[:500]
                if e.code in (408, 429) or e.code >= 500:
                    last, status = f"HTTP {e.code}: {detail}", e.code
                    continue
                raise EndpointError(f"{url} answered HTTP {e.code}: {detail}", url, e.code) from e
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last, status = f"{type(e).__name__}: {getattr(e, 'reason', e)}", None
        hint = ("Is the server up, and is base_url right?" if status is None else
                f"The server is up but answers HTTP {status}: see its log.")
        raise EndpointError(f"{url}: no answer after {self.max_retries + 1} attempts (last error: {last}). {hint}",
                            url, status)

    # -- results ----------------------------------------------------------------------------------------------
    def _count(self, text: str, finished: bool, fallback: int) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text, add_special_tokens=False)) + (1 if finished else 0)
        return fallback

    @staticmethod
    def _split_usage(resp: dict, n_choices: int) -> int:
        usage = resp.get("usage") or {}
        total = usage.get("completion_tokens") or 0
        return int(total) // max(1, n_choices)

    def _complete(self, prompts: list[str], max_new_tokens, temperature, top_p, n, seed) -> list[list[Generation]]:
        body = {"model": self.model, "prompt": prompts, "max_tokens": max_new_tokens, "temperature": temperature,
                "top_p": top_p, "n": n}
        if seed is not None:
            body["seed"] = seed
        resp = self._post("completions", body)
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts) * n:
            raise RuntimeError(f"{self.base_url}/completions returned {len(choices)} choices for {len(prompts)} "
                               f"prompt(s) x n={n}.")
        per = self._split_usage(resp, len(choices))
        out = []
        for i in range(len(prompts)):
            row = []
            for c in choices[i * n:(i + 1) * n]:
                text = c.get("text") or ""
                finished = c.get("finish_reason") == "stop"
                row.append(Generation(text, self._count(text, finished, per), finished))
            out.append(row)
        return out

    def _chat(self, prompt: ChatPrompt, images, max_new_tokens, temperature, top_p, n, seed) -> list[Generation]:
        messages = _openai_messages(prompt.messages, images)
        body = {"model": self.model, "messages": messages, "max_tokens": max_new_tokens, "temperature": temperature,
                "top_p": top_p, "n": n}
        if prompt.chat_template_kwargs:
            body["chat_template_kwargs"] = dict(prompt.chat_template_kwargs)
        if prompt.chat_template is not None:
            body["chat_template"] = prompt.chat_template
        if prompt.prefill is not None:
            body["messages"] = messages + [{"role": "assistant", "content": prompt.prefill}]
            body.update(add_generation_prompt=False, continue_final_message=True)
        if seed is not None:
            body["seed"] = seed
        resp = self._post("chat/completions", body)
        choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise RuntimeError(f"{self.base_url}/chat/completions returned {len(choices)} choices for n={n}.")
        per = self._split_usage(resp, len(choices))
        out = []
        for c in choices:
            msg = c.get("message") or {}
            content = msg.get("content") or ""
            reasoning = msg.get("reasoning_content") or msg.get("reasoning") or ""
            p = self.prefixes
            if reasoning:  # a server-side reasoning parser split the think block off
                full = f"{p.open_tag}\n{reasoning.strip(chr(10))}\n{p.close_tag}\n\n{content.lstrip()}"
            elif content.lstrip().startswith((p.open_tag, p.close_tag)) or prompt.prefill is not None:
                full = content if prompt.prefill is None else prompt.prefill + content
            else:  # the template pre-filled the mode's prefix and the server did not echo it
                full = prompt.prefix + content
            text = full[len(prompt.prefix):] if prompt.prefix and full.startswith(prompt.prefix) else full
            finished = c.get("finish_reason") == "stop"
            out.append(Generation(text, self._count(text, finished, per), finished))
        return out

    def generate(self, prompts: Sequence, images: Sequence[list] | None = None, *, max_new_tokens: int = 512,
                 temperature: float = 0.0, top_p: float = 1.0, n: int = 1, seed: int | None = None,
                 progress=None) -> list[list[Generation]]:
        from concurrent.futures import ThreadPoolExecutor

        results: list = [None] * len(prompts)
        text_rows = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        for i in text_rows:
            if images and images[i]:
                raise ValueError(f"prompt {i} has images: pass it as a ChatPrompt (chat_prompt_in_mode), not as "
                                 "rendered text; /v1/completions takes no images.")
        chat_rows = [i for i, p in enumerate(prompts) if isinstance(p, ChatPrompt)]
        if len(text_rows) + len(chat_rows) != len(prompts):
            raise TypeError("OpenAIBackend prompts must be rendered strings or ChatPrompt objects.")
        jobs = []
        for s in range(0, len(text_rows), self.batch_size):
            idx = text_rows[s:s + self.batch_size]
            jobs.append((idx, lambda idx=idx: self._complete([prompts[i] for i in idx], max_new_tokens, temperature,
                                                             top_p, n, seed)))
        for i in chat_rows:
            jobs.append(([i], lambda i=i: [self._chat(prompts[i], images[i] if images else None, max_new_tokens,
                                                      temperature, top_p, n, seed)]))
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [(idx, pool.submit(fn)) for idx, fn in jobs]
            for idx, fut in futures:
                for i, row in zip(idx, fut.result()):
                    results[i] = row
                if progress is not None:
                    progress.update(len(idx))
        return results
