"""``BPOTrainer``: Bi-mode Policy Optimization (R-4B) as a subclass of TRL's ``GRPOTrainer``.

How the forced modes are composed (no TRL code is copied; four small overrides):

1. ``_generate_and_score_completions``: TRL lays a generation batch out as groups of G consecutive copies of a
   prompt, concatenated across processes in rank order (it slices advantages with the same layout). Each
   rollout's position in its group is therefore ``(rank · local_batch + i) mod G``; the first ``G·f`` positions are
   forced to think and the rest not to. The forced pre-fill rides on the last prompt message as a marker key that
   a Jinja hook appended to the chat template renders after the generation prompt, so it lands in ``prompt_ids``
   (never trained: the paper's choice) for every backend, and TRL's second rendering for VLM features sees the same
   text. Reward functions receive ``forced_mode`` and ``forced_prefix`` columns.
2. ``_generate_single_turn``: vLLM *server* mode de-duplicates prompts with ``[::num_generations]`` and samples n
   per unique prompt, which would turn every rollout of a group into the first prompt's mode. We pass a sub-group
   size ``gcd(G·f, G·(1−f))`` instead, so each unique prompt is homogeneous in mode.
3. ``_calculate_rewards``: gathers per-rollout information for per-mode telemetry and the rollout dump.
4. ``_save``: checkpoints keep the model's own chat template (the hook is removed while saving).

Advantages are TRL's group-relative advantages over the *combined* group of G (BPO's mixed advantage).
"""

from __future__ import annotations

import copy
import logging
import math
from contextlib import contextmanager
from math import gcd

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from ..data.io import DataError
from ..rewards import assistant_turn
from ..modes import (
    PREFIX_MARKER,
    Mode,
    ModeError,
    ModePrefixes,
    add_prefix_hook,
    chat_template_of,
    check_think_tokens,
    decision_tokens,
    get_prefixes,
    parse_response,
    render_prompt,
    with_prefix,
)
from .config import BPOConfig
from .telemetry import (
    ProbeHistory,
    RolloutDump,
    RolloutRecord,
    collapse_state,
    probe_summary,
    step_metrics,
    thinking_cost_mask,
)

logger = logging.getLogger(__name__)


def prefixes_from_args(args: BPOConfig) -> ModePrefixes:
    return get_prefixes(args.mode_prefixes if args.mode_prefixes else args.prefix_family)


def validate_processing_class(processing_class, prefixes: ModePrefixes, chat_template_kwargs: dict | None = None) -> None:
    """Refuse, before training, a tokenizer that would strip the think tags, or a chat template whose generation
    prompt already pre-fills a think block (the forced prefix would double)."""
    check_think_tokens(processing_class, prefixes)
    probe = [{"role": "user", "content": "1+1?"}]
    kwargs = dict(chat_template_kwargs or {})
    text = processing_class.apply_chat_template(probe, tokenize=False, add_generation_prompt=True, **kwargs)
    tail = text[text.rfind(prefixes.open_tag):] if prefixes.open_tag in text else ""
    if tail and tail[len(prefixes.open_tag):].replace(prefixes.close_tag, "", 1).strip() == "":
        raise ModeError(
            f"BPO: the chat template (with chat_template_kwargs={kwargs}) already pre-fills the assistant turn with "
            f"{tail!r}; BPO's forced prefixes would double it. Remove enable_thinking/thinking_mode from "
            "chat_template_kwargs, or use a template whose generation prompt ends at the assistant header."
        )


def validate_train_rows(dataset, answer_column: str | None = "solution", max_errors: int = 5) -> None:
    """Every row needs a non-empty ``prompt`` (and answer column when one is configured)."""
    if dataset is None:
        return
    cols = set(getattr(dataset, "column_names", None) or [])
    if cols and "prompt" not in cols:
        raise DataError(f"BPO: the training data has no 'prompt' column (columns: {sorted(cols)}).")
    if answer_column and cols and answer_column not in cols:
        raise DataError(f"BPO: the training data has no {answer_column!r} answer column (columns: {sorted(cols)}).")
    if not hasattr(dataset, "__len__"):
        return
    errors = []
    for i, row in enumerate(dataset):
        if not row.get("prompt"):
            errors.append(f"row {i}: column 'prompt' is empty")
        if answer_column and (row.get(answer_column) is None or not str(row.get(answer_column)).strip()):
            errors.append(f"row {i}: column {answer_column!r} is empty")
        if len(errors) >= max_errors:
            break
    if errors:
        raise DataError("BPO: " + "; ".join(errors) + ".")


def subgroup_size(args: BPOConfig, num_generations: int) -> int:
    """Largest block size in which every rollout of a group shares the same forced pre-fill."""
    if not args.force_modes:
        return num_generations
    k = round(num_generations * args.thinking_fraction)
    return gcd(k, num_generations - k)


def forced_mode_at(position: int, num_generations: int, args: BPOConfig) -> Mode:
    """The forced mode of the rollout at ``position`` (0-based) within its group."""
    if not args.force_modes:
        return Mode.AUTO
    return Mode.THINKING if position < round(num_generations * args.thinking_fraction) else Mode.NON_THINKING


class _BPOCallback(TrainerCallback):
    def __init__(self, trainer: "BPOTrainer"):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._on_train_begin(state.global_step)
        if self.trainer._maybe_probe(state.global_step):
            control.should_training_stop = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer._maybe_probe(state.global_step):
            control.should_training_stop = True


class BPOTrainer(GRPOTrainer):
    """GRPO with forced bi-mode groups (R-4B's BPO). See the module docstring.

    Args beyond ``GRPOTrainer``'s: ``probe_dataset`` — rows with a conversational ``prompt``, a ``solution``, and
    optionally ``images`` and the ``probe_group_column``, for the auto-mode probe. ``reward_funcs`` defaults to
    :func:`r4b_trl.rewards.accuracy_reward`.
    """

    _tag_names = ["trl", "grpo", "bpo", "r4b-trl"]
    _name = "BPO"

    def __init__(self, model, reward_funcs=None, args: BPOConfig | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, probe_dataset=None, **kwargs):
        if args is None:
            args = BPOConfig(output_dir="bpo-output")
        if not isinstance(args, BPOConfig):
            raise TypeError("BPOTrainer needs a BPOConfig (a GRPOConfig subclass).")
        if reward_funcs is None:
            from ..rewards import accuracy_reward

            reward_funcs = [accuracy_reward]
        prefixes = prefixes_from_args(args)
        if processing_class is not None:  # fail before the model is loaded where we can
            validate_processing_class(processing_class, prefixes, args.chat_template_kwargs)
            # The prefix hook is installed on our own copy: the caller's tokenizer/processor stays untouched.
            processing_class = copy.deepcopy(processing_class)
        validate_train_rows(train_dataset, answer_column=None)
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        self.prefixes = prefixes
        validate_processing_class(self.processing_class, prefixes, self.chat_template_kwargs)
        self._original_templates = self._install_prefix_hook()
        self.decision = decision_tokens(self.processing_class, prefixes)
        logger.info("BPO mode decision: %s", self.decision.describe())
        self._moved_ids = self._decision_split()
        tok = self._tokenizer
        eos = getattr(self, "eos_token_id", None) or tok.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        gc = getattr(self.model, "generation_config", None)
        if gc is not None and gc.eos_token_id is not None:
            self._eos_ids |= set(gc.eos_token_id if isinstance(gc.eos_token_id, (list, tuple)) else [gc.eos_token_id])
        self._records: list[RolloutRecord] | None = None
        self.rollout_dump = RolloutDump(args.output_dir, args.dump_first_steps, args.dump_steps, args.dump_rollouts)
        self.probe_dataset = probe_dataset
        self.probe_history = ProbeHistory.open(args.output_dir)
        self.add_callback(_BPOCallback(self))

    # ---------------------------------------------------------------------------------------------- templates

    def _install_prefix_hook(self) -> dict:
        pc = self.processing_class
        originals = {"pc": getattr(pc, "chat_template", None)}
        inner = getattr(pc, "tokenizer", None)
        if inner is not None and inner is not pc:
            originals["inner"] = inner.chat_template
        template = chat_template_of(pc)
        hooked = add_prefix_hook(template)
        pc.chat_template = hooked
        if "inner" in originals:
            inner.chat_template = hooked
        if self.chat_template is not None:  # TRL's tool template, when tools are used
            self.chat_template = add_prefix_hook(self.chat_template)
        return originals

    @contextmanager
    def _without_prefix_hook(self):
        pc = self.processing_class
        inner = getattr(pc, "tokenizer", None)
        hooked = pc.chat_template
        pc.chat_template = self._original_templates["pc"]
        if "inner" in self._original_templates:
            inner.chat_template = self._original_templates["inner"]
        try:
            yield
        finally:
            pc.chat_template = hooked
            if "inner" in self._original_templates:
                inner.chat_template = hooked

    def _save(self, output_dir=None, state_dict=None):
        with self._without_prefix_hook():
            super()._save(output_dir, state_dict)

    # ---------------------------------------------------------------------------------------------- forcing

    def _group_size(self) -> int:
        return self.num_generations if self.model.training else self.num_generations_eval

    def _generate_and_score_completions(self, inputs):
        G = self._group_size()
        offset = self.accelerator.process_index * len(inputs)
        forced = []
        for i, x in enumerate(inputs):
            mode = forced_mode_at((offset + i) % G, G, self.args)
            prefix = self.prefixes.prefix(mode)
            x = dict(x)
            if isinstance(x["prompt"], str):
                x["prompt"] = x["prompt"] + prefix
            else:
                x["prompt"] = with_prefix(x["prompt"], prefix)
            x["forced_mode"] = mode.value
            x["forced_prefix"] = prefix
            x["completions_parsed"] = self._completions_parsed()
            if "prompt_id" not in x:
                x["prompt_id"] = str(abs(hash(str(inputs[i]["prompt"]))))
            forced.append(x)
        output = super()._generate_and_score_completions(forced)
        self._set_forced_token_logps(output)
        self._finish_records(output, G)
        return output

    def _completions_parsed(self) -> bool:
        """Does TRL hand rewards messages parsed by a response template (reasoning_content + content)?"""
        tok = self._tokenizer
        return getattr(tok, "response_template", None) is not None or getattr(tok, "response_schema", None) is not None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if num_generations == self._group_size():
            num_generations = subgroup_size(self.args, num_generations)
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    # ---------------------------------------------------------------------------------------------- mode token

    def _decision_split(self) -> dict:
        """For ``train_mode_token``: per forced mode, the prefix ids from the decision token on (moved from the prompt
        to the completion) and the prompt-side prefix text left in the prompt."""
        if not self.args.train_mode_token:
            return {}
        d = self.decision
        tok = self._tokenizer
        split = {}
        for mode, ids in ((Mode.THINKING, d.thinking_ids), (Mode.NON_THINKING, d.non_thinking_ids)):
            moved = list(ids[d.position:])
            split[self.prefixes.prefix(mode)] = {
                "mode": mode, "moved": moved, "prompt_side": tok.decode(list(ids[:d.position])),
                "log_share": math.log(self.args.thinking_fraction if mode is Mode.THINKING
                                      else 1.0 - self.args.thinking_fraction),
            }
        logger.info("train_mode_token: tokens moved into the completion per mode: %s",
                    {v["mode"].value: tok.convert_ids_to_tokens(v["moved"]) for v in split.values()})
        return split

    def _generate(self, prompts):
        out = super()._generate(prompts)
        if not self._moved_ids:
            return out
        prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images = out
        tool_mask = tool_mask if tool_mask is not None else [[1] * len(c) for c in completion_ids]
        self._moved_rows = []
        for i, prompt in enumerate(prompts):
            info = self._moved_ids.get(prompt[-1].get(PREFIX_MARKER) if isinstance(prompt, list) else None)
            k = len(info["moved"]) if info else 0
            self._moved_rows.append(info["log_share"] if k else None)
            if not k:
                continue
            if list(prompt_ids[i][-k:]) != info["moved"]:
                raise RuntimeError(
                    f"train_mode_token: the prompt does not end with the expected decision tokens {info['moved']} "
                    f"(got {list(prompt_ids[i][-k:])}); the tokenizer merges the prefix with its context.")
            prompt_ids[i] = list(prompt_ids[i][:-k])
            completion_ids[i] = info["moved"] + list(completion_ids[i])
            # Train the decision token; keep forced tokens after it in the sequence but out of the loss.
            tool_mask[i] = [1] + [0] * (k - 1) + list(tool_mask[i])
            if logprobs is not None:  # no vLLM importance correction for forced tokens (NaN is neutral in TRL)
                logprobs[i] = [None] * k + list(logprobs[i])
            # TRL re-renders the prompt for vision features: it must now end with the prompt-side prefix only.
            prompt[-1][PREFIX_MARKER] = info["prompt_side"]
        return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images

    def _set_forced_token_logps(self, output) -> None:
        """Old log-probability of each moved decision token := log(share of its mode in the group)."""
        rows = getattr(self, "_moved_rows", None)
        self._moved_rows = None
        if not rows or not any(r is not None for r in rows):
            return
        if output.get("old_per_token_logps") is None:
            from trl.models.utils import disable_gradient_checkpointing

            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            keys = ("pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes", "token_type_ids",
                    "mm_token_type_ids", "spatial_shapes", "image_position_ids", "num_images", "num_tiles")
            fk = {k: output[k] for k in keys if k in output}
            bs = self.args.per_device_train_batch_size if self.model.training else self.args.per_device_eval_batch_size
            with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
                old, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, mask, output["completion_ids"].size(1), batch_size=bs, **fk)
            output["old_per_token_logps"] = old
        for i, log_share in enumerate(rows):
            if log_share is not None:
                output["old_per_token_logps"][i, 0] = log_share

    # ---------------------------------------------------------------------------------------------- telemetry

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        from accelerate.utils import gather_object

        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        local = []
        for x, c, ids in zip(inputs, completions, completion_ids_list):
            prefix = x.get("forced_prefix", "")  # the completion as text, rebuilt from parsed messages if need be
            text = assistant_turn(c, prefix, self.prefixes, x.get("completions_parsed"))[len(prefix):]
            ids = list(ids)
            local.append((str(x.get("prompt_id")), x.get("forced_mode", "auto"), x.get("forced_prefix", ""), text,
                          len(ids), not (ids and ids[-1] in self._eos_ids)))
        gathered = gather_object(local)
        modes = [parse_response(prefix + text, self.prefixes).mode for (_, _, prefix, text, _, _) in gathered]
        names = self.reward_func_names
        acc_col = names.index("accuracy_reward") if "accuracy_reward" in names else None
        if self.args.thinking_cost > 0:
            col = 0 if acc_col is None else acc_col
            correct = [bool(v >= 1.0 - 1e-6) for v in rewards_per_func[:, col].tolist()]
            pay = thinking_cost_mask(modes, correct, self._group_size())
            if any(pay):
                rewards_per_func[torch.tensor(pay, device=rewards_per_func.device), col] -= self.args.thinking_cost
            mode_key = "train" if self.model.training else "eval"
            self._metrics[mode_key]["bpo/thinking_cost_applied"].append(sum(pay) / max(len(pay), 1))
        weights = self.reward_weights.to(rewards_per_func.device)
        total = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(rewards_per_func).all(dim=1)] = float("nan")
        records = []
        for j, (pid, fmode, prefix, text, ntok, trunc) in enumerate(gathered):
            acc = None
            if acc_col is not None:
                v = rewards_per_func[j, acc_col].item()
                acc = None if math.isnan(v) else float(v >= 1.0 - 1e-6 - self.args.thinking_cost)
            records.append(RolloutRecord(pid, fmode, modes[j], total[j].item(), acc, ntok, trunc, text))
        self._records = records
        return rewards_per_func

    def _finish_records(self, output, G: int) -> None:
        records, self._records = self._records, None
        if records is None:
            return
        advantages = self.accelerator.gather(output["advantages"].detach()).tolist()
        for r, a in zip(records, advantages):
            r.advantage = a
        mode = "train" if self.model.training else "eval"
        for k, v in step_metrics(records, G).items():
            self._metrics[mode][k].append(v)
        step = self.state.global_step + 1
        if mode == "train" and self.accelerator.is_main_process and self.rollout_dump.wanted(step):
            self.rollout_dump.write(step, records, G)

    # ---------------------------------------------------------------------------------------------- probe

    def _on_train_begin(self, global_step: int) -> None:
        if self.accelerator.is_main_process:
            self.rollout_dump.truncate_after(global_step)
            self.probe_history.truncate_after(global_step)
        else:
            self.probe_history.rows = [r for r in self.probe_history.rows if r["step"] <= global_step]

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
        """Greedy generation in auto mode (pre-fill ``<think>`` only) on the probe set; logs think-rate and accuracy
        overall and per group, appends a row to ``probe_history.jsonl``."""
        from accelerate.utils import gather_object
        from trl.models.utils import unwrap_model_for_generation

        from ..generation import TransformersBackend
        from ..rewards import score_response

        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        rows = [self.probe_dataset[i] for i in range(rank, len(self.probe_dataset), world)]
        group_col = self.args.probe_group_column
        max_new = self.args.probe_max_new_tokens or self.args.max_completion_length
        items = []
        was_training = self.model.training
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                         gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                         gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs) as unwrapped:
            unwrapped.eval()
            backend = TransformersBackend(unwrapped, self.processing_class, batch_size=self.args.probe_batch_size)
            prompts = [render_prompt(self.processing_class, r["prompt"], Mode.AUTO, self.prefixes,
                                     **(self.chat_template_kwargs or {})) for r in rows]
            images = [r.get("images") or ([r["image"]] if r.get("image") is not None else []) for r in rows]
            outs = backend.generate(prompts, images if any(images) else None, max_new_tokens=max_new, temperature=0.0)
            if was_training:
                unwrapped.train()
        for r, out in zip(rows, outs):
            g = out[0]
            full = self.prefixes.auto + g.text
            items.append({"mode": parse_response(full, self.prefixes).mode, "num_tokens": g.num_tokens,
                          "correct": score_response(full, r.get("solution", ""), r.get("answer_kind") or "auto"),
                          "group": r.get(group_col) if group_col else None})
        items = gather_object(items)
        row = probe_summary(step, items, group_col)
        self.probe_history.rows = [x for x in self.probe_history.rows if x["step"] != step] + [row]
        if self.accelerator.is_main_process:
            self.probe_history.append(row)
        m = self._metrics["train"]
        m["probe/think_rate"].append(row["think_rate"])
        m["probe/accuracy"].append(row["accuracy"])
        m["probe/mean_tokens"].append(row["mean_tokens"])
        for g, v in row.get("groups", {}).items():
            m[f"probe/{g}/think_rate"].append(v["think_rate"])
            m[f"probe/{g}/accuracy"].append(v["accuracy"])
        return row
