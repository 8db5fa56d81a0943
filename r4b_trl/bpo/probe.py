"""The auto-mode probe of :class:`~r4b_trl.bpo.trainer.BPOTrainer` (a mixin): every ``probe_steps`` steps, the
policy answers the probe set in auto mode; the gate, greedy and sampled think-rates, accuracy and tokens are logged
as ``probe/*`` and appended to ``probe_history.jsonl``; a think-rate stuck at one end raises the collapse alarm."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch

from ..modes import Mode, parse_response, with_prefix
from ..templates import render_prompt
from .telemetry import collapse_state, probe_summary

logger = logging.getLogger(__name__)


class ProbeMixin:
    """``_maybe_probe`` (called by the trainer's callback at train begin and after every step), ``run_probe`` and the
    vLLM path of the probe. Needs the trainer's ``probe_dataset``, ``probe_history``, ``prefixes`` and
    ``_eos_ids``."""

    def _maybe_probe(self, step: int) -> bool:
        """Run the probe when due; return True when training should stop (collapse alarm with stop_on_collapse)."""
        if not self.args.probe_steps or self.probe_dataset is None or step % self.args.probe_steps:
            return False
        if step in self.probe_history.steps():
            return False
        self.run_probe(step)
        rates = [r["think_rate"] for r in sorted(self.probe_history.rows, key=lambda r: r["step"])]
        state = collapse_state(rates, self.args.collapse_low, self.args.collapse_high, self.args.collapse_patience)
        if state is not None:
            logger.warning(
                "BPO collapse alarm at step %d: the auto-mode think-rate has been %s for the last %d probes "
                "(think-rates %s; thresholds low=%s high=%s). The model is collapsing to %s.",
                step, "<= collapse_low" if state == "never_thinks" else ">= collapse_high",
                self.args.collapse_patience, [round(r, 3) for r in rates[-self.args.collapse_patience:]],
                self.args.collapse_low, self.args.collapse_high,
                "never thinking" if state == "never_thinks" else "always thinking")
            self._metrics["train"]["probe/collapse_alarm"].append(1.0)
            return bool(self.args.stop_on_collapse)
        return False

    def run_probe(self, step: int) -> dict | None:
        """The auto-mode probe on the probe set, in auto mode (pre-fill ``<think>`` only): per item the **gate**
        (P(thinking decision token), normalised over the two decision tokens: one forward of the policy,
        ``r4b_trl.gate``), a greedy answer and one answer sampled at T = 1, up to ``probe_max_new_tokens``. With
        ``use_vllm`` the answers come from the trainer's own vLLM engine (colocate or server), after the weight sync;
        otherwise from transformers ``generate``. The sampled pass does not disturb the training RNG. Logs
        ``probe/*`` (think-rate, gate, sampled think-rate, accuracy, tokens, seconds; overall and per group) and
        appends a row to ``probe_history.jsonl``."""
        import time

        from accelerate.utils import gather_object
        from trl.models.utils import unwrap_model_for_generation

        from ..gate import decision_site, model_gates
        from ..generation import TransformersBackend
        from ..rewards import score_response

        t0 = time.time()
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        n_all = len(self.probe_dataset)
        rows = [self.probe_dataset[i] for i in range(rank, n_all, world)]
        n_local = len(rows)
        if self.use_vllm:  # TRL's vLLM paths slice by equal per-rank counts: pad, then drop the padding
            rows += [rows[-1] if rows else self.probe_dataset[0]] * (-(-n_all // world) - n_local)
        group_col = self.args.probe_group_column
        max_new = self.args.probe_max_new_tokens or self.args.max_completion_length
        ctk = self.chat_template_kwargs or {}
        msgs = [r["prompt"] for r in rows]
        prompts = [render_prompt(self.processing_class, m, Mode.AUTO, self.prefixes, **ctk) for m in msgs]
        images = [r.get("images") or ([r["image"]] if r.get("image") is not None else []) for r in rows]
        images = images if any(images) else None
        site = decision_site(self.processing_class, msgs[0], self.prefixes, **ctk) if rows else None
        gates, greedy, sampled = [], [], []  # gates for this rank's own rows only (not the padding)
        was_training = self.model.training
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                         gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                         gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs) as unwrapped:
            unwrapped.eval()
            if n_local:
                gates = model_gates(unwrapped, self.processing_class, prompts[:n_local], site,
                                    images[:n_local] if images else None, self.args.probe_batch_size)
            if not self.use_vllm and n_local:
                backend = TransformersBackend(unwrapped, self.processing_class, batch_size=self.args.probe_batch_size)
                greedy = backend.generate(prompts, images, max_new_tokens=max_new, temperature=0.0)
                with self._forked_rng():
                    sampled = backend.generate(prompts, images, max_new_tokens=max_new, temperature=1.0,
                                               seed=self.args.seed + step)
            if was_training:
                unwrapped.train()
        if self.use_vllm:  # every rank takes part (the engine's collectives), even with no probe rows of its own
            greedy = self._probe_vllm(msgs, images, 0.0, max_new)
            with self._forked_rng():
                sampled = self._probe_vllm(msgs, images, 1.0, max_new)
        items = []
        for r, gate, g, s in zip(rows[:n_local], gates, greedy, sampled):
            full, full_s = self.prefixes.auto + g[0].text, self.prefixes.auto + s[0].text
            answer_kind = r.get("answer_kind") or "auto"
            items.append({"mode": parse_response(full, self.prefixes).mode, "num_tokens": g[0].num_tokens,
                          "correct": score_response(full, r.get("solution", ""), answer_kind),
                          "gate": None if gate is None else gate[0], "other_mass": None if gate is None else gate[1],
                          "sampled_mode": parse_response(full_s, self.prefixes).mode,
                          "sampled_correct": score_response(full_s, r.get("solution", ""), answer_kind),
                          "group": r.get(group_col) if group_col else None})
        items = gather_object(items)
        row = probe_summary(step, items, group_col)
        row["seconds"] = round(time.time() - t0, 3)
        row["engine"] = f"vllm-{self.vllm_generation.mode}" if self.use_vllm else "transformers"
        row["max_new_tokens"] = max_new
        row["gate_note"] = site.note if site is not None else None
        self.probe_history.rows = [x for x in self.probe_history.rows if x["step"] != step] + [row]
        if self.accelerator.is_main_process:
            self.probe_history.append(row)
        m = self._metrics["train"]
        for key in ("think_rate", "accuracy", "mean_tokens", "gate", "sampled_think_rate", "sampled_accuracy",
                    "seconds"):
            if row.get(key) is not None:
                m[f"probe/{key}"].append(row[key])
        for g, v in row.get("groups", {}).items():
            for key in ("think_rate", "accuracy", "gate", "sampled_think_rate"):
                if v.get(key) is not None:
                    m[f"probe/{g}/{key}"].append(v[key])
        return row

    @contextmanager
    def _forked_rng(self):
        """Sample without moving the training RNG streams (CPU and, on GPU, this device)."""
        devices = [self.accelerator.device.index or 0] if self.accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            yield

    def _probe_vllm(self, messages: list, images, temperature: float, max_new_tokens: int) -> list:
        """Generate one auto-mode answer per probe prompt through the trainer's vLLM engine (TRL's
        ``VLLMGeneration``: colocate or server), after syncing the weights if this step has not; sampling settings
        are the probe's own for the call (temperature, no top-p/top-k/min-p, no extra generation kwargs)."""
        from ..generation import Generation

        prompts = [with_prefix(m, self.prefixes.auto) for m in messages]  # the prefix hook renders the pre-fill
        if images is not None:
            from trl.data_utils import prepare_multimodal_messages

            prompts = [prepare_multimodal_messages(p, images=im) for p, im in zip(prompts, images)]
        prompt_ids, imgs, _ = self._tokenize_prompts(prompts) if prompts else ([], None, {})
        gen = self.vllm_generation
        if self.state.global_step != self._last_loaded_step:
            gen.sync_weights()
            self._last_loaded_step = self.state.global_step
        keys = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_completion_length",
                "generation_kwargs")
        saved = {k: getattr(gen, k) for k in keys}
        try:
            gen.temperature, gen.top_p, gen.top_k, gen.min_p, gen.repetition_penalty = temperature, 1.0, 0, None, 1.0
            gen.max_completion_length, gen.generation_kwargs = max_new_tokens, {}
            _, completion_ids, _, _ = gen.generate(prompts=prompt_ids, images=imgs, num_generations=1)
        finally:
            for k, v in saved.items():
                setattr(gen, k, v)
        out = []
        for ids in completion_ids:
            ids = list(ids)
            end = next((k for k, t in enumerate(ids) if t in self._eos_ids), None)
            kept = ids if end is None else ids[:end]
            out.append([Generation(self._tokenizer.decode(kept, skip_special_tokens=True),
                                   len(kept) + (end is not None), end is not None)])
        return out
