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
3. ``_calculate_rewards``: gathers per-rollout information for per-mode telemetry and the rollout dump (and makes
   truncated rollouts unscorable under ``mask_truncated_completions``).
4. ``_save``: checkpoints are saved with ``r4b_trl.templates.inference_template`` (the model's template, wrapped
   where needed so that ``thinking_mode`` = auto/long/short reaches every mode; the hook is removed).

``train_mode_token`` (``_generate``, ``_compute_loss``, ``_get_per_token_logps_and_entropies``) lives in the
``DecisionTokenEstimator`` mixin (``estimator.py``); the auto-mode probe in the ``ProbeMixin`` (``probe.py``).

Advantages are TRL's group-relative advantages over the *combined* group of G (BPO's mixed advantage). The options
beyond the paper (``thinking_margin``, ``advantage_grouping``, ``mode_credit``) recompute them from the gathered
rewards (``advantages.py``); ``train_mode_token`` trains the decision token with the estimator in ``estimator.py``.
"""

from __future__ import annotations

import copy
import logging
import math
from math import gcd

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from ..modes import (
    Mode,
    decision_tokens,
    parse_response,
    with_prefix,
)
from ..rewards import assistant_turn
from ..templates import (
    SWITCH_KEYS,
    chat_template_swapped,
    hook_template,
    inference_template,
    set_chat_template,
    template_shape,
)
from .advantages import AdvantageSpec, bpo_advantages, group_is_forced, parse_schedule
from .checks import (  # noqa: F401  (re-exported: recipe.py and users import them from here)
    prefixes_from_args,
    reward_columns,
    stable_prompt_id,
    validate_processing_class,
    validate_train_rows,
)
from .config import BPOConfig
from .estimator import DEC_ADV, DEC_LOG_SHARE, DEC_THINKING, DecisionTokenEstimator
from .probe import ProbeMixin
from .telemetry import ProbeHistory, RolloutDump, RolloutRecord, step_metrics

logger = logging.getLogger(__name__)


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


class BPOTrainer(DecisionTokenEstimator, ProbeMixin, GRPOTrainer):
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
            validate_processing_class(processing_class, prefixes, args.chat_template_kwargs, args.train_mode_token)
            # The prefix hook is installed on our own copy: the caller's tokenizer/processor stays untouched.
            processing_class = copy.deepcopy(processing_class)
        validate_train_rows(train_dataset, answer_column=reward_columns(reward_funcs),
                            conversational=args.train_mode_token)
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        self.prefixes = prefixes
        validate_processing_class(self.processing_class, prefixes, self.chat_template_kwargs, args.train_mode_token)
        self._advantage_spec = AdvantageSpec.from_args(args)
        self._schedule = parse_schedule(args.forced_schedule)
        self._original_templates = self._install_prefix_hook()
        header = template_shape(self.processing_class, prefixes, **(self.chat_template_kwargs or {})).header
        self.decision = decision_tokens(self.processing_class, prefixes, context=header)
        logger.info("BPO mode decision: %s", self.decision.describe())
        self._moved_ids = self._decision_split()
        tok = self._tokenizer
        eos = getattr(self, "eos_token_id", None) or tok.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        gc = getattr(self.model, "generation_config", None)
        if gc is not None and gc.eos_token_id is not None:
            self._eos_ids |= set(gc.eos_token_id if isinstance(gc.eos_token_id, (list, tuple)) else [gc.eos_token_id])
        if tok.pad_token_id is not None:  # TRL's truncation test counts EOS and pad as a finished completion
            self._eos_ids.add(tok.pad_token_id)
        self._records: list[RolloutRecord] | None = None
        self._moved_rows = None
        self.rollout_dump = RolloutDump(args.output_dir, args.dump_first_steps, args.dump_steps, args.dump_rollouts)
        self.probe_dataset = probe_dataset
        self.probe_history = ProbeHistory.open(args.output_dir)
        self.add_callback(_BPOCallback(self))

    # ---------------------------------------------------------------------------------------------- templates

    def _install_prefix_hook(self) -> dict:
        """Render rollouts with the adapted template (``r4b_trl.templates.hook_template``): a last message carrying
        the forced pre-fill renders exactly as ``render_prompt`` does in that mode. Checkpoints are saved with
        ``inference_template`` (every mode reachable with ``thinking_mode``)."""
        pc = self.processing_class
        kwargs = dict(self.chat_template_kwargs or {})
        dropped = {k: kwargs.pop(k) for k in list(kwargs) if k in SWITCH_KEYS}
        if dropped:
            logger.info("BPO: chat_template_kwargs %s ignored: each forced mode sets the template's switch", dropped)
        self.chat_template_kwargs = kwargs
        originals = {"saved": inference_template(pc, self.prefixes, **kwargs)}
        set_chat_template(pc, hook_template(pc, self.prefixes, **kwargs))
        if self.chat_template is not None:  # TRL's tool template, when tools are used
            self.chat_template = hook_template(pc, self.prefixes, self.chat_template, **kwargs)
        return originals

    def _without_prefix_hook(self):
        return chat_template_swapped(self.processing_class, self._original_templates["saved"])

    def _save(self, output_dir=None, state_dict=None):
        with self._without_prefix_hook():
            super()._save(output_dir, state_dict)

    # ---------------------------------------------------------------------------------------------- forcing

    def _group_size(self) -> int:
        return self.num_generations if self.model.training else self.num_generations_eval

    def _generate_and_score_completions(self, inputs):
        G = self._group_size()
        offset = self.accelerator.process_index * len(inputs)
        groups_per_batch = self.accelerator.num_processes * len(inputs) // G
        step = self.state.global_step
        forced = []
        for i, x in enumerate(inputs):
            pos = offset + i
            mode = forced_mode_at(pos % G, G, self.args)
            if (mode is not Mode.AUTO and self.model.training and self._schedule
                    and not group_is_forced(self._schedule, step, pos // G, groups_per_batch)):
                mode = Mode.AUTO  # a free group of the forced -> free schedule
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
                x["prompt_id"] = stable_prompt_id(inputs[i]["prompt"])
            forced.append(x)
        # TRL's completions table shows completions without the pre-fill: name each row's forced mode there.
        self._log_completion_extra("forced_mode", [x["forced_mode"] for x in forced])
        output = super()._generate_and_score_completions(forced)
        self._set_advantages(output, G)
        return output

    def _completions_parsed(self) -> bool:
        """Does TRL hand rewards messages parsed by a response template (reasoning_content + content)?"""
        tok = self._tokenizer
        return getattr(tok, "response_template", None) is not None or getattr(tok, "response_schema", None) is not None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if num_generations == self._group_size():
            num_generations = subgroup_size(self.args, num_generations)
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    # ---------------------------------------------------------------------------------------------- advantages

    def _set_advantages(self, output, G: int) -> None:
        """Recompute the advantages for the options beyond the paper, attach the decision-token estimator's inputs
        (``estimator.py``), and finish the rollout records (telemetry, dump)."""
        records, self._records = self._records, None
        moved, self._moved_rows = self._moved_rows, None
        spec = self._advantage_spec
        seq = dec = None
        if records is not None and not spec.is_paper:
            seq, dec, groups = bpo_advantages([r.reward for r in records], [r.forced_mode for r in records], G, spec)
            lo = self.accelerator.process_index * len(output["advantages"])
            sl = slice(lo, lo + len(output["advantages"]))
            dev, dt = output["advantages"].device, output["advantages"].dtype
            output["advantages"] = torch.tensor(seq[sl], device=dev, dtype=dt)
            logged = self._logs["advantages"]  # TRL's completions table: show the advantages that are trained
            for _ in range(min(len(seq), len(logged))):
                logged.pop()
            logged.extend(seq)
            if spec.credit == "decision_token":
                output[DEC_ADV] = torch.tensor(dec[sl], device=dev, dtype=dt)
            mode = "train" if self.model.training else "eval"
            forced_groups = [g for g in groups if g["raw_gap"] is not None]
            if spec.margin > 0 and forced_groups:  # groups where the margin, not the accuracy, decided against thinking
                self._metrics[mode]["bpo/margin_decided"].append(
                    sum(g["margin_decided"] for g in forced_groups) / len(forced_groups))
        if moved is not None and any(m is not None for m in moved):
            if DEC_ADV not in output:
                output[DEC_ADV] = output["advantages"].clone()
            dev = output["advantages"].device
            nan = float("nan")
            output[DEC_LOG_SHARE] = torch.tensor([m[0] if m else nan for m in moved], device=dev)
            output[DEC_THINKING] = torch.tensor([float(m[1]) if m else nan for m in moved], device=dev)
        if records is None:
            return
        advantages = self.accelerator.gather(output["advantages"].detach()).tolist() if seq is None else seq
        for j, r in enumerate(records):
            r.advantage = advantages[j]
            r.decision_advantage = advantages[j] if dec is None else dec[j]
        mode = "train" if self.model.training else "eval"
        for k, v in step_metrics(records, G).items():
            self._metrics[mode][k].append(v)
        step = self.state.global_step + 1
        if mode == "train" and self.accelerator.is_main_process and self.rollout_dump.wanted(step):
            self.rollout_dump.write(step, records, G)

    # ---------------------------------------------------------------------------------------------- telemetry

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards, with truncated rollouts made unscorable when ``mask_truncated_completions`` is on (a cut-off
        answer is not a wrong one: TRL then leaves it out of the group baseline), plus the per-rollout records for
        telemetry and the dump. Texts are gathered only on dump steps."""
        from accelerate.utils import gather_object

        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        training = self.model.training
        with_text = training and self.rollout_dump.wanted(self.state.global_step + 1)
        moved = self._moved_rows or [None] * len(inputs)
        local = []
        for x, c, ids, mv in zip(inputs, completions, completion_ids_list, moved):
            prefix = x.get("forced_prefix", "")  # the completion as text, rebuilt from parsed messages if need be
            text = assistant_turn(c, prefix, self.prefixes, x.get("completions_parsed"))[len(prefix):]
            mode = parse_response(x.get("forced_prefix", "") + text, self.prefixes).mode
            ntok = len(ids) - (mv[2] if mv else 0)  # generated tokens only (not the moved forced ones)
            trunc = not (len(ids) and ids[-1] in self._eos_ids)
            local.append((str(x.get("prompt_id")), x.get("forced_mode", "auto"), mode, ntok, trunc,
                          text if with_text else None))
        gathered = gather_object(local)
        if self.args.mask_truncated_completions:
            cut = torch.tensor([g[4] for g in gathered], device=rewards_per_func.device)
            if cut.any():
                rewards_per_func[cut] = float("nan")
        names = self.reward_func_names
        acc_col = names.index("accuracy_reward") if "accuracy_reward" in names else None
        weights = self.reward_weights.to(rewards_per_func.device)
        total = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(rewards_per_func).all(dim=1)] = float("nan")
        total = total.tolist()
        acc_vals = rewards_per_func[:, acc_col].tolist() if acc_col is not None else None
        records = []
        for j, (pid, fmode, mode, ntok, trunc, text) in enumerate(gathered):
            acc = None
            if acc_vals is not None and not math.isnan(acc_vals[j]):
                acc = float(acc_vals[j] >= 1.0 - 1e-6)
            records.append(RolloutRecord(pid, fmode, mode, total[j], acc, ntok, trunc, text))
        self._records = records
        return rewards_per_func

    # ---------------------------------------------------------------------------------------------- probe
    # (the probe itself: ProbeMixin, probe.py)

    def _on_train_begin(self, global_step: int) -> None:
        if self.accelerator.is_main_process:
            self.rollout_dump.truncate_after(global_step)
            self.probe_history.truncate_after(global_step)
        else:
            self.probe_history.rows = [r for r in self.probe_history.rows if r["step"] <= global_step]
