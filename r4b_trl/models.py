"""Loading models and their tokenizer / processor the same way in every stage.

* ``trust_remote_code`` is off unless the caller (a config) turns it on.
* Vision-language models are detected from their config (a ``vision_config``) and loaded with
  ``AutoModelForImageTextToText`` + ``AutoProcessor``; text models with ``AutoModelForCausalLM`` + ``AutoTokenizer``.
* A model without a chat template gets r4b-trl's default (ChatML + R-4B ``thinking_mode``).
* An optional LoRA adapter is loaded on top (peft).
"""

from __future__ import annotations

import os
from typing import Any

from .chat_templates import DEFAULT_CHAT_TEMPLATE
from .modes import chat_template_of


def is_vision_config(config) -> bool:
    return getattr(config, "vision_config", None) is not None


def load_config(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoConfig

    import r4b_trl  # noqa: F401  (registers the image-only processors)

    return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)


def load_processing_class(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None,
                          vision: bool | None = None, padding_side: str = "left"):
    """The tokenizer (text models) or processor (VLMs), with a chat template and left padding for generation."""
    from transformers import AutoProcessor, AutoTokenizer

    if vision is None:
        vision = is_vision_config(load_config(name_or_path, trust_remote_code, revision))
    cls = AutoProcessor if vision else AutoTokenizer
    pc = cls.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    tok = getattr(pc, "tokenizer", pc)
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not chat_template_of(pc):
        pc.chat_template = DEFAULT_CHAT_TEMPLATE
        if tok is not pc:
            tok.chat_template = DEFAULT_CHAT_TEMPLATE
    return pc


def resolve_dtype(dtype: Any):
    import torch

    if dtype in (None, "auto"):
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, str(dtype))


def load_model(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None,
               dtype: Any = "auto", device_map: Any = None, adapter: str | None = None,
               attn_implementation: str | None = None, **kwargs):
    """Load a causal LM or an image-text-to-text model (by its config), optionally with a LoRA adapter."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    config = load_config(name_or_path, trust_remote_code, revision)
    cls = AutoModelForImageTextToText if is_vision_config(config) else AutoModelForCausalLM
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = cls.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision,
                                dtype=resolve_dtype(dtype), device_map=device_map, **kwargs)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model


def load_model_and_processing_class(name_or_path: str, **kwargs):
    pc_kwargs = {k: kwargs[k] for k in ("trust_remote_code", "revision") if k in kwargs}
    model = load_model(name_or_path, **kwargs)
    pc = load_processing_class(name_or_path, vision=is_vision_config(model.config), **pc_kwargs)
    return model, pc


def is_local_path(name_or_path: str) -> bool:
    return os.path.isdir(name_or_path)


def check_model_path(name_or_path: str | None, option: str = "model_name_or_path") -> None:
    """Refuse, naming the option, an unset model or a local path that does not exist (before anything loads);
    a missing ``.tiny_models/*`` folder comes with the command that builds it."""
    from .errors import UsageError

    name = str(name_or_path or "")
    if not name:
        raise UsageError(f"{option} is not set. Set it to a Hub model id or a local model folder.")
    looks_local = name.startswith((".", "/", "~")) or len(name.strip("/").split("/")) > 2
    if looks_local and not os.path.exists(os.path.expanduser(name)):
        hint = " Give a local model folder or a Hub model id."
        if ".tiny_models" in name:
            kind = "vision" if "vision" in name else ("demo" if "demo" in name else "text")
            hint = f" Build it with: python -m r4b_trl.tiny_models --out {name} --kind {kind}"
        raise UsageError(f"{option}: model path {name!r} does not exist.{hint}")


def kbit_device_map() -> dict:
    """Quantized (4/8-bit) models must sit whole on this process's device."""
    from accelerate import PartialState

    return {"": PartialState().local_process_index}


def load_for_training(model_args, training_args, peft_preset: str | None = None, stage: str = "bpo"):
    """Load the model to train and its PEFT config, from TRL's ``ModelConfig`` flags or an r4b-trl preset.

    ``peft_preset`` (``lora_lm`` | ``lora_lm_vision`` | ``qlora_lm``, see :mod:`r4b_trl.peft_presets`) takes
    precedence over ``use_peft`` / ``load_in_4bit``. Returns ``(model, peft_config_or_None)``.
    """
    from trl import get_peft_config, get_quantization_config

    name = model_args.model_name_or_path
    trust = getattr(training_args, "trust_remote_code", False)
    if peft_preset:
        from . import peft_presets

        peft_presets.check_vllm_compatible(peft_preset, getattr(training_args, "use_vllm", False))
        config = load_config(name, trust, model_args.model_revision)
        quantization_config = peft_presets.get_quantization_config(peft_preset, config)
    else:
        quantization_config = get_quantization_config(model_args)
    model = load_model(name, trust_remote_code=trust, revision=model_args.model_revision, dtype=model_args.dtype,
                       attn_implementation=model_args.attn_implementation,
                       device_map=kbit_device_map() if quantization_config is not None else None,
                       quantization_config=quantization_config)
    if peft_preset:
        from . import peft_presets

        return model, peft_presets.get_preset(peft_preset, model, stage=stage)
    return model, get_peft_config(model_args)
