"""Hub model cards for auto-thinking models trained with r4b-trl (SFT annealing or BPO).

* :func:`render_model_card` returns the card (markdown with YAML front matter): how to run each mode with
  transformers and with vLLM, the training stage and data, and — given an evaluation's ``results.json`` — the
  results table and the Pareto plot.
* :func:`write_model_card` writes it as ``README.md`` in a model folder (copying the plot next to it).
* :func:`card_from_training` builds it from a recipe's ``script_args`` / ``training_args`` / ``model_args``;
  :func:`use_r4b_model_card` makes a TRL trainer's ``push_to_hub`` upload this card instead of TRL's generic one
  (TRL's ``push_to_hub`` rewrites ``README.md`` through ``trainer.create_model_card``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .modes import Mode, ModePrefixes, get_prefixes

__all__ = ["render_model_card", "write_model_card", "card_from_training", "use_r4b_model_card",
           "training_summary", "base_model_id"]

STAGES = {
    "sft": ("bi-mode annealing (SFT)",
            "supervised fine-tuning on a mix of reasoning answers (`<think>\\n…\\n</think>\\n\\nanswer`) and direct "
            "answers (`<think>\\n\\n</think>\\n\\nanswer`), so the model learns both modes and to choose between "
            "them (R-4B §3.1)"),
    "bpo": ("Bi-mode Policy Optimization (BPO)",
            "GRPO in which every prompt's group is forced to hold half thinking and half non-thinking rollouts, so "
            "the policy keeps both modes while learning when thinking pays off (R-4B §3.2)"),
}

#: training_args / script_args / model_args fields worth showing on a card, in this order.
SUMMARY_FIELDS = [
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "max_length", "max_prompt_length", "max_completion_length", "num_generations", "num_thinking_per_group",
    "beta", "loss_type", "epsilon", "temperature", "lr_scheduler_type", "warmup_ratio", "bf16",
    "gradient_checkpointing", "use_vllm", "vllm_mode", "seed", "use_peft", "lora_r", "lora_alpha",
    "lora_target_modules", "load_in_4bit", "dataset_name", "dataset_mixture",
]


def _yaml(front: dict) -> str:
    import yaml

    return yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=False).strip()


def _transformers_snippet(model_id: str, is_vision: bool, template_style: str | None, p: ModePrefixes) -> str:
    load = ("from transformers import AutoModelForImageTextToText, AutoProcessor\n"
            f"model = AutoModelForImageTextToText.from_pretrained({json.dumps(model_id)}, dtype=\"auto\", device_map=\"auto\")\n"
            f"processor = AutoProcessor.from_pretrained({json.dumps(model_id)})\n"
            if is_vision else
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"model = AutoModelForCausalLM.from_pretrained({json.dumps(model_id)}, dtype=\"auto\", device_map=\"auto\")\n"
            f"processor = AutoTokenizer.from_pretrained({json.dumps(model_id)})\n")
    if is_vision:
        msgs = ("from PIL import Image\nimage = Image.open(\"question.png\")\n"
                "messages = [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}, "
                "{\"type\": \"text\", \"text\": \"How many red squares are there?\"}]}]\n")
        enc = "inputs = processor(text=[text], images=[image], return_tensors=\"pt\").to(model.device)\n"
    else:
        msgs = "messages = [{\"role\": \"user\", \"content\": \"What is 17 * 23?\"}]\n"
        enc = "inputs = processor(text=[text], return_tensors=\"pt\", add_special_tokens=False).to(model.device)\n"
    gen = ("out = model.generate(**inputs, max_new_tokens=8192, do_sample=False)\n"
           "print(processor.decode(out[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))\n")
    if template_style == "r4b":
        render = ("# thinking_mode: \"auto\" (the model decides) | \"long\" (always think) | \"short\" (answer directly)\n"
                  "prompts = {mode: processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,\n"
                  "                                               thinking_mode=mode)\n"
                  "           for mode in (\"auto\", \"long\", \"short\")}\n")
    elif template_style == "qwen3":
        render = ("# auto / thinking: append the pre-fill after the generation prompt; non-thinking: enable_thinking=False\n"
                  "def chat(**kw):\n"
                  "    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kw)\n"
                  f"prompts = {{\"auto\": chat(enable_thinking=True) + {p.auto!r},\n"
                  f"           \"thinking\": chat(enable_thinking=True) + {p.thinking!r},\n"
                  "           \"non_thinking\": chat(enable_thinking=False)}\n")
    else:
        render = ("# the mode is the assistant pre-fill appended after the generation prompt\n"
                  "base = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)\n"
                  f"prompts = {{\"auto\": base + {p.auto!r}, \"thinking\": base + {p.thinking!r},\n"
                  f"           \"non_thinking\": base + {p.non_thinking!r}}}\n")
    render += "text = prompts[\"auto\"]\n"
    r4b = ("With r4b-trl installed, `render_prompt` does the same for any chat template and `parse_response` splits "
           "the reply into mode, reasoning and answer:\n\n```python\n"
           "from r4b_trl import render_prompt, parse_response\n"
           "text = render_prompt(processor, messages, \"long\")   # auto | thinking/long | non_thinking/short\n"
           f"reply = {p.thinking!r} + processor.decode(...)      # prepend the pre-fill to what was generated\n"
           "parsed = parse_response(reply)                      # parsed.mode, parsed.reasoning, parsed.answer\n"
           "```\n")
    return "```python\n" + load + msgs + render + enc + gen + "```\n\n" + r4b


def _py(d: dict) -> str:
    """A dict as a Python literal with double-quoted keys (True/False, not JSON's true/false)."""
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v) if isinstance(v, str) else repr(v)}"
                           for k, v in d.items()) + "}"


R4B_TEMPLATE_HINT = (
    "vllm serve {model} --chat-template \"$(python -c 'import r4b_trl.chat_templates as t, os; "
    "print(os.path.join(os.path.dirname(t.__file__), \"r4b_default.jinja\"))')\"")


def _vllm_snippet(model_id: str, is_vision: bool, template_style: str | None, p: ModePrefixes) -> str:
    mm = " --limit-mm-per-prompt '{\"image\": 4}'" if is_vision else ""
    if template_style == "r4b":
        kwargs = {m: {"thinking_mode": m.r4b_name} for m in Mode}
        serve = f"vllm serve {model_id} --max-model-len 16384{mm}"
        how = ("The mode is a per-request chat-template argument, `thinking_mode` = `auto` | `long` (thinking) | "
               "`short` (non-thinking):")
        after = ""
    elif template_style == "qwen3":
        kwargs = {Mode.AUTO: {"enable_thinking": True}, Mode.NON_THINKING: {"enable_thinking": False}}
        serve = f"vllm serve {model_id} --max-model-len 16384{mm}"
        how = ("This model's chat template takes Qwen3's `enable_thinking`: `false` pre-fills the empty think block "
               "(non-thinking); `true` leaves the assistant turn open and the model opens its think block itself and "
               "decides (auto):")
        after = ("\nTo force thinking per request, serve with r4b-trl's ChatML template, which adds R-4B's "
                 "`thinking_mode` switch (`auto` | `long` | `short`), and pass "
                 "`{\"chat_template_kwargs\": {\"thinking_mode\": \"long\"}}`:\n\n```bash\n"
                 + R4B_TEMPLATE_HINT.format(model=model_id) + mm + "\n```\n")
    else:
        kwargs = {m: {"thinking_mode": m.r4b_name} for m in Mode}
        serve = R4B_TEMPLATE_HINT.format(model=model_id) + mm
        how = ("This model's own chat template has no mode switch: serve it with r4b-trl's ChatML template, which "
               "adds R-4B's `thinking_mode` = `auto` | `long` (thinking) | `short` (non-thinking). That template is "
               "ChatML with Qwen-VL image tokens; for other markups, add the same switch to the model's template:")
        after = ""
    content = ('[{"type": "image_url", "image_url": {"url": "https://example.com/question.png"}},\n'
               '                 {"type": "text", "text": "How many red squares are there?"}]'
               if is_vision else '"What is 17 * 23?"')
    lines = ["```bash", serve, "```", "", how, "", "```python", "from openai import OpenAI",
             "client = OpenAI(base_url=\"http://localhost:8000/v1\", api_key=\"EMPTY\")",
             f"messages = [{{\"role\": \"user\", \"content\": {content}}}]"]
    for mode, kw in kwargs.items():
        lines += [f"# {mode.value}",
                  f"r = client.chat.completions.create(model={json.dumps(model_id)}, messages=messages, "
                  "max_tokens=8192, temperature=0,",
                  f"                                   extra_body={{\"chat_template_kwargs\": {_py(kw)}}})"]
    lines += ["print(r.choices[0].message.content)", "```", after,
              "`temperature=0` with `max_tokens=8192` is the paper's evaluation protocol (greedy). Depending on the "
              "server's reasoning parser, the think block arrives in `message.content` or in "
              "`message.reasoning_content`. For offline batch inference, r4b-trl's `VLLMBackend` with "
              "`render_prompt` forces any mode on any template."]
    return "\n".join(lines) + "\n"


def _results_section(results: dict, pareto_name: str | None) -> str:
    from .evaluation import group_table, results_table

    out = ["## Evaluation", ""]
    s = results.get("settings") or {}
    if s:
        out += [f"Evaluated with `recipes/evaluate.py` (r4b-trl): backend {s.get('backend')}, "
                f"max_new_tokens {s.get('max_new_tokens')}, temperature {s.get('temperature')}"
                + (" (greedy)" if not s.get("temperature") else "") + ". Accuracy is over scorable items; think "
                "rate is the share of answers that took the thinking path; the oracle gap is the share of items "
                "where auto mode's choice was wrong but the other forced mode was right.", ""]
    info = results.get("benchmark_info", {})
    for name, bench in results.get("benchmarks", {}).items():
        n = info.get(name, {}).get("num_items")
        out += [f"### {name}" + (f" ({n} items)" if n is not None else ""), "", results_table(bench), ""]
        gt = group_table(bench)
        if gt:
            out += [f"By {info.get(name, {}).get('group_column') or 'group'}:", "", gt, ""]
    if pareto_name:
        out += [f"![Accuracy vs output tokens per mode]({pareto_name})", ""]
    return "\n".join(out)


def render_model_card(model_id: str, base_model: str | None, stage: str, dataset: str | list[str] | None = None,
                      is_vision: bool = True, prefixes: ModePrefixes | dict | str | None = None,
                      results: dict | None = None, pareto_path: str | None = None,
                      training_args: dict | None = None, license: str = "apache-2.0",
                      template_style: str | None = None, extra_tags: list[str] | None = None,
                      adapted_from: str | None = None) -> str:
    """The model card markdown (YAML front matter + body) of an r4b-trl auto-thinking model.

    ``stage`` is ``"sft"`` or ``"bpo"``; ``results`` is an evaluation's ``results.json`` dict; ``pareto_path`` is
    shown as an image (its file name: :func:`write_model_card` copies the file next to the card);
    ``template_style`` (``r4b`` | ``qwen3`` | ``plain``, ``None`` = ``r4b``) picks the mode-switch instructions;
    ``adapted_from`` (the family of the base model's template) says that the saved template is that template with
    r4b-trl's ``thinking_mode`` switch added (``r4b_trl.templates.inference_template``).
    ``base_model`` may be a Hub id or a local checkpoint: the card names the Hub id it stems from
    (:func:`base_model_id`) or no base model; local paths never appear in the card.
    """
    stage = stage.lower()
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, not {stage!r}.")
    p = get_prefixes(prefixes)
    style = template_style or "r4b"
    if style not in ("r4b", "qwen3", "plain"):
        raise ValueError(f"template_style must be r4b, qwen3 or plain, not {template_style!r}.")
    base_model = base_model_id(base_model)
    datasets = [dataset] if isinstance(dataset, str) else list(dataset or [])
    tags = ["r4b-trl", "auto-thinking", "trl", stage] + [t for t in (extra_tags or []) if t]
    front: dict[str, Any] = {"library_name": "transformers",
                             "pipeline_tag": "image-text-to-text" if is_vision else "text-generation",
                             "license": license}
    if base_model:
        front["base_model"] = base_model
    front["tags"] = list(dict.fromkeys(tags))
    hub_datasets = [d for d in datasets if _looks_like_hub_id(d)]
    if hub_datasets:
        front["datasets"] = hub_datasets
    stage_name, stage_text = STAGES[stage]
    kind = "vision-language" if is_vision else "language"
    body = [
        f"# {model_id.split('/')[-1]}", "",
        f"An **auto-thinking** {kind} model: for each query it decides whether to reason first (a `<think>` block) "
        "or to answer directly, and it can also be forced into either mode. Trained with "
        "r4b-trl — an open implementation of the "
        "[R-4B](https://arxiv.org/abs/2508.21113) recipe on Hugging Face TRL"
        + (f", starting from [{base_model}](https://huggingface.co/{base_model})." if base_model else "."), "",
        "## Modes", "",
        "| mode | R-4B name | assistant pre-fill | what the answer looks like |", "|---|---|---|---|",
        f"| auto | `auto` | `{_md(p.auto)}` | the model chooses |",
        f"| thinking | `long` | `{_md(p.thinking)}` | `{_md(p.thinking)}…reasoning…\\n{p.close_tag}\\n\\nanswer` |",
        f"| non-thinking | `short` | `{_md(p.non_thinking)}` | `{_md(p.non_thinking)}answer` |", "",
        "The final answer is what follows the last `" + p.close_tag + "`.", "",
        "## How to run each mode", "",
        *([f"The chat template saved with this model is its base model's template (`{adapted_from}`) with r4b-trl's "
           "`thinking_mode` switch added: with `thinking_mode` = `auto` | `long` | `short` the generation prompt ends "
           "with exactly that mode's pre-fill (`auto` included, which the original template cannot express); without "
           "it the template renders exactly as the original, its own switches (e.g. `enable_thinking`) included. "
           "`thinking_mode` works the same through `apply_chat_template` and vLLM's `chat_template_kwargs`.", ""]
          if adapted_from else []),
        "### transformers", "",
        _transformers_snippet(model_id, is_vision, style, p),
        "### vLLM", "", _vllm_snippet(model_id, is_vision, style, p),
        "### Command line (r4b-trl)", "",
        "```bash", f"python -m r4b_trl.chat --model {model_id} --mode auto " + ("--image question.png " if is_vision
                                                                              else "") + "\"your question\"",
        "```", "",
        "## Training", "",
        f"Stage: **{stage_name}** — {stage_text}.", "",
    ]
    if datasets:
        body += ["Data: " + ", ".join(f"[{d}](https://huggingface.co/datasets/{d})" if _looks_like_hub_id(d)
                                      else f"`{_public(d)}` (local)" for d in datasets) + ".", ""]
    if training_args:
        body += ["| setting | value |", "|---|---|"]
        body += [f"| {k} | `{_md(_short(_public(v)))}` |" for k, v in training_args.items()]
        body.append("")
    if results:
        body.append(_results_section(results, Path(pareto_path).name if pareto_path else None))
    elif pareto_path:
        body += [f"![Accuracy vs output tokens per mode]({Path(pareto_path).name})", ""]
    body += ["## Citation", "", "```bibtex",
             "@article{r4b2025,", "  title={R-4B: Incentivizing General-Purpose Auto-Thinking Capability in MLLMs "
             "via Bi-Mode Annealing and Reinforce Learning},", "  journal={arXiv preprint arXiv:2508.21113},",
             "  year={2025}", "}", "```", ""]
    return f"---\n{_yaml(front)}\n---\n\n" + "\n".join(body)


def _md(s: str) -> str:
    """A string shown inside backticks: newlines as \\n, pipes escaped for tables."""
    return s.replace("\n", "\\n").replace("|", "\\|")


def _short(v: Any, limit: int = 120) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _looks_like_hub_id(s: str | None) -> bool:
    if not s or os.path.exists(s) or s.startswith((".", "/", "~")):
        return False
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and " " not in s and not s.endswith((".jsonl", ".json", ".parquet"))


def _is_local(s: str) -> bool:
    return os.path.exists(s) or s.startswith((".", "/", "~")) or os.sep in s and not _looks_like_hub_id(s)


def _public(value: Any) -> Any:
    """``value`` with local paths cut to their last part (a card names no folder of the machine it was written on)."""
    if isinstance(value, str):
        return Path(value.rstrip("/")).name if _is_local(value) and not _looks_like_hub_id(value) else value
    if isinstance(value, list):
        return [_public(v) for v in value]
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    return value


def _front_matter(readme: Path) -> dict:
    try:
        text = readme.read_text(encoding="utf-8")
        if not text.startswith("---"):
            return {}
        import yaml

        meta = yaml.safe_load(text.split("---", 2)[1])
        return meta if isinstance(meta, dict) else {}
    except Exception:  # an unreadable card names no base model
        return {}


def base_model_id(name_or_path: str | None) -> str | None:
    """The Hub id to put in a card's ``base_model``: ``name_or_path`` itself when it is a Hub id; for a local
    checkpoint, the Hub id its own card (``README.md`` front matter ``base_model``), PEFT adapter config
    (``base_model_name_or_path``) or ``config.json`` (``_name_or_path``) names; else None (no field)."""
    if not name_or_path:
        return None
    name_or_path = str(name_or_path)
    if _looks_like_hub_id(name_or_path):
        return name_or_path
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return None
    candidates = []
    base = _front_matter(folder / "README.md").get("base_model")
    candidates += base if isinstance(base, list) else [base]
    for name, key in (("adapter_config.json", "base_model_name_or_path"), ("config.json", "_name_or_path")):
        try:
            candidates.append(json.loads((folder / name).read_text(encoding="utf-8")).get(key))
        except (OSError, ValueError, AttributeError):
            pass
    return next((c for c in candidates if isinstance(c, str) and _looks_like_hub_id(c)), None)


def write_model_card(output_dir: str | os.PathLike, model_id: str, base_model: str | None, stage: str,
                     dataset=None, is_vision: bool = True, prefixes=None, results: dict | str | None = None,
                     pareto_path: str | None = None, training_args: dict | None = None, **kwargs) -> Path:
    """Write the card as ``output_dir/README.md`` (``results`` may be a path to ``results.json``); the Pareto plot
    is copied into ``output_dir`` so that it is uploaded with the model. Returns the README path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(results, (str, os.PathLike)):
        results = json.loads(Path(results).read_text())
    if pareto_path:
        src = Path(pareto_path)
        dst = out / src.name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    card = render_model_card(model_id, base_model, stage, dataset, is_vision, prefixes, results, pareto_path,
                             training_args, **kwargs)
    path = out / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


def training_summary(*arg_objects: Any) -> dict:
    """The card-worthy settings (:data:`SUMMARY_FIELDS`) found on any of the given argument objects or dicts."""
    out: dict[str, Any] = {}
    for obj in arg_objects:
        if obj is None:
            continue
        for k in SUMMARY_FIELDS:
            v = obj.get(k) if isinstance(obj, dict) else getattr(obj, k, None)
            if k in out or v is None or v == [] or v == {} or (k == "max_steps" and v == -1):
                continue
            out[k] = v
    if not out.get("use_peft"):
        for k in ("lora_r", "lora_alpha", "lora_target_modules", "use_peft"):
            out.pop(k, None)
    return {k: out[k] for k in SUMMARY_FIELDS if k in out}


def _detect(output_dir: Path, fallback_model: str | None) -> tuple[bool, str | None, str | None]:
    """(is_vision, template_style, adapted_from) of the saved model (or, failing that, of the base model);
    ``adapted_from`` is the family of the original template when the saved one is r4b-trl's adapted template."""
    from .modes import chat_template_of, template_style
    from .models import is_vision_config
    from .templates import WRAP_MARK, template_family

    is_vision, style = False, None
    for source in [str(output_dir), fallback_model]:
        if not source:
            continue
        try:
            from .models import load_config, load_processing_class

            is_vision = is_vision_config(load_config(source))
            pc = load_processing_class(source, vision=is_vision)
            template = chat_template_of(pc)
            style = template_style(template).value
            adapted = template_family(template) if WRAP_MARK in template else None
            return is_vision, style, adapted
        except Exception:
            continue
    return is_vision, style, None


def card_from_training(output_dir: str | os.PathLike, script_args: Any = None, training_args: Any = None,
                       model_args: Any = None, stage: str = "sft", results: dict | str | None = None,
                       pareto_path: str | None = None, is_vision: bool | None = None) -> Path:
    """Write the model card of a finished SFT or BPO run into ``output_dir`` (call after ``trainer.save_model``).

    Reads what it can from TRL-style argument objects: ``model_args.model_name_or_path`` (base model),
    ``script_args.dataset_name`` (or ``dataset_path`` / ``dataset_mixture``), ``training_args.hub_model_id``,
    prefixes from ``script_args.prefix_family`` / ``prefixes``; is_vision and the template style from the saved
    model. Returns the README path.
    """
    out = Path(output_dir)
    base = getattr(model_args, "model_name_or_path", None)
    dataset = None
    for obj in (script_args, training_args):
        for name in ("dataset_name", "dataset_path", "dataset_mixture", "train_file"):
            value = getattr(obj, name, None) if obj is not None else None
            if value:
                dataset = value if isinstance(value, (str, list)) else None
                break
        if dataset:
            break
    model_id = getattr(training_args, "hub_model_id", None) or out.name
    prefixes = None
    for obj in (script_args, training_args):
        if obj is not None and getattr(obj, "prefixes", None):
            prefixes = getattr(obj, "prefixes")
            break
        if obj is not None and getattr(obj, "prefix_family", None):
            prefixes = getattr(obj, "prefix_family")
            break
    detected_vision, style, adapted = _detect(out, base)
    if is_vision is None:
        is_vision = detected_vision
    return write_model_card(out, model_id, base, stage, dataset, is_vision, prefixes, results, pareto_path,
                            training_summary(training_args, script_args, model_args), template_style=style,
                            adapted_from=adapted)


def use_r4b_model_card(trainer, script_args: Any = None, model_args: Any = None, stage: str = "sft",
                       results: dict | str | None = None, pareto_path: str | None = None) -> None:
    """Make ``trainer.create_model_card`` (which ``trainer.push_to_hub`` calls right before uploading
    ``output_dir``) write the r4b-trl card. Tags passed to ``push_to_hub(tags=...)`` are kept."""

    def create_model_card(model_name: str | None = None, dataset_name: str | None = None, tags=None, **_):
        if hasattr(trainer, "is_world_process_zero") and not trainer.is_world_process_zero():
            return
        path = card_from_training(trainer.args.output_dir, script_args, trainer.args, model_args, stage, results,
                                  pareto_path)
        extra = [tags] if isinstance(tags, str) else list(tags or [])
        if extra:
            text = path.read_text(encoding="utf-8")
            _, front, body = text.split("---\n", 2)
            import yaml

            meta = yaml.safe_load(front)
            meta["tags"] = list(dict.fromkeys(meta["tags"] + extra))
            path.write_text(f"---\n{_yaml(meta)}\n---\n{body}", encoding="utf-8")

    trainer.create_model_card = create_model_card

