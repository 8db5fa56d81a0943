"""The auto-mode gate: how likely a model is to think when it chooses the mode itself.

In auto mode the assistant turn is pre-filled with the auto prefix (``<think>``) and the model's next token chooses
the mode. The **gate** of a model on a prompt is

    gate = P(thinking decision token) / (P(thinking decision token) + P(non-thinking decision token))

at that position: for Qwen-style tokenizers and the demo's, P(``\\n``) / (P(``\\n``) + P(``\\n\\n``)) right after
``<think>``. Greedy decoding thinks iff gate > 0.5 (when the two tokens hold the mass), so a greedy think-rate hides
where the gate sits; a T = 1 sample thinks with probability ≈ gate.

The decision tokens are found per tokenizer from the rendered prompts themselves (the auto, thinking and
non-thinking renderings of the same conversation): the gate is **exact** when the auto prompt's token ids are a
prefix of both forced prompts' ids and the two forced prompts differ at the very next token (one decision token per
mode, at the first generated position). Otherwise the gate is **not defined** and reported as ``None`` with the
reason in :attr:`DecisionSite.note` — e.g. a tokenizer that splits ``\\n\\n`` into two ``\\n`` makes the decision
span two generated tokens. ``other_mass`` is the probability of neither decision token at that position (a model
that puts mass elsewhere, or a non-canonical tokenization of a prefix, shows up there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .modes import Mode, ModePrefixes
from .templates import render_prompt

__all__ = ["DecisionSite", "decision_site", "gates_from_logits", "model_gates", "vllm_gates", "backend_gates",
           "auto_gate_rows", "gate_metrics", "mean_or_none", "AUTO_GATE_FILE"]


@dataclass(frozen=True)
class DecisionSite:
    """Where the auto-mode decision falls for a tokenizer: the two decision token ids, or why there is no gate."""

    thinking_id: int | None
    non_thinking_id: int | None
    note: str

    @property
    def defined(self) -> bool:
        return self.thinking_id is not None and self.non_thinking_id is not None


def _tok(processing_class):
    return getattr(processing_class, "tokenizer", processing_class)


def decision_site(processing_class, messages: list[dict], prefixes: ModePrefixes, **template_kwargs) -> DecisionSite:
    """The decision tokens for ``messages`` rendered with ``processing_class``'s chat template (see module doc)."""
    tok = _tok(processing_class)

    def ids(mode):
        text = render_prompt(processing_class, messages, mode, prefixes, **template_kwargs)
        return tok.encode(text, add_special_tokens=False)

    auto, think, plain = ids(Mode.AUTO), ids(Mode.THINKING), ids(Mode.NON_THINKING)
    n = len(auto)
    if think[:n] != auto or plain[:n] != auto:
        return DecisionSite(None, None, "gate not defined: the auto pre-fill tokenizes differently from the forced "
                                        "pre-fills (the tokenizer merges it with what follows)")
    if len(think) <= n or len(plain) <= n:
        return DecisionSite(None, None, "gate not defined: a forced pre-fill adds no token after the auto pre-fill")
    if think[n] == plain[n]:
        k = n
        while k < min(len(think), len(plain)) and think[k] == plain[k]:
            k += 1
        return DecisionSite(None, None, f"gate not defined: the decision spans {k - n + 1} generated tokens (the "
                                        f"forced pre-fills share {k - n} token(s) after the auto pre-fill)")
    names = tok.convert_ids_to_tokens([think[n], plain[n]])
    return DecisionSite(think[n], plain[n], f"exact: P({names[0]!r}) / (P({names[0]!r}) + P({names[1]!r})) at the "
                                            "first generated token")


def gates_from_logits(last_logits, site: DecisionSite) -> list[tuple[float, float]]:
    """``(gate, other_mass)`` per row of next-token logits (``[batch, vocab]``)."""
    import torch

    probs = torch.softmax(last_logits.float(), dim=-1)
    p_t, p_n = probs[:, site.thinking_id], probs[:, site.non_thinking_id]
    gate = p_t / (p_t + p_n).clamp_min(1e-30)
    other = (1.0 - p_t - p_n).clamp_min(0.0)
    return [(float(g), float(o)) for g, o in zip(gate.tolist(), other.tolist())]


def model_gates(model, processing_class, prompts: Sequence[str], site: DecisionSite,
                images: Sequence[list] | None = None, batch_size: int = 32) -> list[tuple[float, float] | None]:
    """Gate and other-mass of a transformers model on rendered auto-mode prompts (one forward per batch, the
    next-token distribution after the last prompt token). ``None`` per prompt when the gate is not defined."""
    import torch

    if not site.defined:
        return [None] * len(prompts)
    tok = _tok(processing_class)
    side = tok.padding_side
    tok.padding_side = "left"  # the last position is then the decision position of every row
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    out: list = []
    try:
        for s in range(0, len(prompts), batch_size):
            chunk = list(prompts[s:s + batch_size])
            imgs = [im for row in (images[s:s + batch_size] if images else []) for im in (row or [])]
            if imgs:
                enc = processing_class(text=chunk, images=imgs, padding=True, return_tensors="pt")
            else:
                enc = tok(chunk, padding=True, return_tensors="pt", add_special_tokens=False)
            enc = enc.to(model.device)
            with torch.no_grad():
                try:
                    logits = model(**enc, logits_to_keep=1).logits
                except TypeError:  # models without logits_to_keep
                    logits = model(**enc).logits
            out += gates_from_logits(logits[:, -1, :], site)
    finally:
        tok.padding_side = side
    return out


def mean_or_none(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def vllm_gates(llm, processing_class, prompts: Sequence[str], site: DecisionSite,
               images: Sequence[list] | None = None) -> list[tuple[float, float] | None]:
    """The same gate from a vLLM engine (``vllm.LLM``): each prompt is scored with each decision token appended
    (``prompt_logprobs=0`` returns the log-probability of every prompt token), so both probabilities are exact;
    ``other_mass`` = 1 − their sum."""
    import math

    if not site.defined:
        return [None] * len(prompts)
    from vllm import SamplingParams

    tok = _tok(processing_class)
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    requests = []
    for i, p in enumerate(prompts):
        ids = tok.encode(p, add_special_tokens=False)
        for d in (site.thinking_id, site.non_thinking_id):
            req = {"prompt_token_ids": ids + [d]}
            if images and images[i]:
                req["multi_modal_data"] = {"image": images[i] if len(images[i]) > 1 else images[i][0]}
            requests.append(req)
    outs = llm.generate(requests, params, use_tqdm=False)
    res = []
    for k in range(0, len(outs), 2):
        lp = []
        for o, d in ((outs[k], site.thinking_id), (outs[k + 1], site.non_thinking_id)):
            entry = o.prompt_logprobs[-1][d]
            lp.append(entry.logprob if hasattr(entry, "logprob") else float(entry))
        p_t, p_n = math.exp(lp[0]), math.exp(lp[1])
        res.append((p_t / (p_t + p_n) if p_t + p_n > 0 else 0.5, max(0.0, 1.0 - p_t - p_n)))
    return res


def backend_gates(backend, processing_class, prompts, site: DecisionSite, images=None, batch_size: int = 32):
    """Gates through whichever engine ``backend`` wraps (transformers model or vLLM engine); ``(None, note)``
    when it wraps neither."""
    if getattr(backend, "model", None) is not None:
        return model_gates(backend.model, processing_class, prompts, site, images, batch_size), site.note
    if getattr(backend, "llm", None) is not None:
        return vllm_gates(backend.llm, processing_class, prompts, site, images), site.note
    return [None] * len(prompts), "gate not measured: the backend exposes neither a transformers model nor a vLLM engine"


AUTO_GATE_FILE = "auto_gate.jsonl"


def auto_gate_rows(bench: str, chunk, backend, processing_class, prefixes: ModePrefixes, score, *,
                   max_new_tokens: int, temperature: float = 1.0, seed: int | None = 0,
                   batch_size: int = 32) -> list[dict]:
    """One row per evaluation item of ``chunk`` (``EvalItem`` s): its auto-mode gate and one auto-mode sample at
    ``temperature``. ``score(item, answer) -> (correct, unscorable_reason)`` scores the sample."""
    from .data.io import DataError
    from .modes import parse_response

    rows, ready = {}, []
    for item in chunk:
        try:
            ready.append((item, item.load_images(bench)))
        except DataError as e:
            rows[item.item_id] = {"benchmark": bench, "item_id": item.item_id, "group": item.group, "gate": None,
                                  "other_mass": None, "gate_note": f"image_error: {e}", "sampled_mode": None,
                                  "sampled_correct": None, "sampled_tokens": None, "temperature": temperature}
    if ready:
        msgs = [it.messages(len(imgs)) for it, imgs in ready]
        prompts = [render_prompt(processing_class, m, Mode.AUTO, prefixes) for m in msgs]
        images = [imgs for _, imgs in ready]
        site = decision_site(processing_class, msgs[0], prefixes)
        gates, note = backend_gates(backend, processing_class, prompts, site, images if any(images) else None,
                                    batch_size)
        outs = backend.generate(prompts, images if any(images) else None, max_new_tokens=max_new_tokens,
                                temperature=temperature, top_p=1.0, n=1, seed=seed)
        for (item, _), g, gens in zip(ready, gates, outs):
            full = prefixes.auto + gens[0].text
            parsed = parse_response(full, prefixes)
            correct, _ = score(item, parsed.answer)
            rows[item.item_id] = {"benchmark": bench, "item_id": item.item_id, "group": item.group,
                                  "gate": None if g is None else g[0], "other_mass": None if g is None else g[1],
                                  "gate_note": note, "sampled_mode": parsed.mode, "sampled_correct": correct,
                                  "sampled_tokens": gens[0].num_tokens, "temperature": temperature}
    return [rows[it.item_id] for it in chunk]


def gate_metrics(rows: Sequence[dict]) -> dict:
    """Mean gate, mean other-mass, and the sampled auto think-rate / accuracy / tokens over ``rows``."""
    gen = [r for r in rows if r.get("sampled_mode") is not None]
    scored = [r for r in gen if r.get("sampled_correct") is not None]
    notes = sorted({r["gate_note"] for r in rows if r.get("gate_note")})
    return {
        "gate": mean_or_none([r.get("gate") for r in rows]),
        "gate_n": sum(r.get("gate") is not None for r in rows),
        "gate_other_mass": mean_or_none([r.get("other_mass") for r in rows]),
        "gate_note": "; ".join(notes) if notes else None,
        "sampled_think_rate": mean_or_none([1.0 if r["sampled_mode"] == "thinking" else 0.0 for r in gen]),
        "sampled_accuracy": mean_or_none([1.0 if r["sampled_correct"] else 0.0 for r in scored]),
        "sampled_mean_tokens": mean_or_none([r.get("sampled_tokens") for r in gen]),
        "sampled_n": len(gen),
        "sampled_temperature": gen[0].get("temperature") if gen else None,
    }
