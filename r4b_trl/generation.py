"""Generation backends shared by evaluation, curation, chat and the BPO auto-mode probe.

Prompts reach a backend as *rendered text* (``modes.render_prompt``), so the mode switch is identical on every
backend; images travel alongside as PIL images. Each backend returns, per prompt, ``n`` :class:`Generation` s.

* :class:`TransformersBackend` — CPU or GPU, batched, left-padded ``generate``.
* :class:`VLLMBackend` — vLLM offline engine (GPU; ``vllm`` imported lazily).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from .modes import Mode, ModePrefixes, render_prompt, resolve_mode


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
