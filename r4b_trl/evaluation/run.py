"""The evaluation run: every benchmark × mode generated in batches (appended to ``generations.jsonl``, so an
interrupted run resumes), each answer scored, the auto-mode gate pass, then the results, report and plot."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from ..data.io import DataError, read_jsonl, write_jsonl
from ..gate import AUTO_GATE_FILE, auto_gate_rows
from ..modes import Mode, ModePrefixes, parse_response
from ..templates import render_prompt
from .backends import _check_tags_survive_decoding, load_backend
from .benchmarks import EvalItem, PreparedBenchmark, prepare_benchmarks
from .config import (GENERATIONS_FILE, GOLD_UNPARSEABLE, IMAGE_ERROR, PARETO_FILE, REPORT_FILE, RESULTS_FILE,
                     STATE_FILE, VERIFIER_ERROR, BenchmarkSpec, EvalConfig, EvalError)
from .metrics import compute_results
from .report import plot_pareto, render_report


def default_verifier() -> Callable:
    try:
        from ..rewards import verify
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


def finalize(config: EvalConfig, benches: Sequence[PreparedBenchmark], modes: Sequence[Mode]) -> dict:
    out = Path(config.output_dir)
    results = compute_results(read_jsonl(out / GENERATIONS_FILE), benches, modes, config,
                              read_jsonl(out / AUTO_GATE_FILE) if config.auto_gate else None)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (out / REPORT_FILE).write_text(render_report(results))
    plot_pareto(results, out / PARETO_FILE)
    _log(f"wrote {out / RESULTS_FILE}, {out / REPORT_FILE}, {out / PARETO_FILE}")
    return results
