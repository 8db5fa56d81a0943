"""r4b-trl: auto-thinking training (bi-mode annealing + BPO) on Hugging Face TRL.

The names a user needs are importable from the top level, like TRL's (``from trl import GRPOConfig, GRPOTrainer``)::

    from r4b_trl import BPOConfig, BPOTrainer, accuracy_reward, render_prompt, parse_response, Mode

They are imported on first use: ``import r4b_trl`` does not import TRL.
"""

__version__ = "0.1.0"

from .modes import Mode, ModeError, ModePrefixes, get_prefixes, parse_response, resolve_mode  # noqa: E402,F401

#: Top-level name -> the module that defines it (imported on first access).
_LAZY = {
    # BPO (R-4B stage 2)
    "BPOConfig": ".bpo.config",
    "BPOTrainer": ".bpo.trainer",
    "BPOScriptArguments": ".bpo.recipe",
    # bi-mode annealing (R-4B stage 1)
    "AnnealingTrainer": ".sft",
    "SFTScriptArguments": ".sft",
    "load_sft_datasets": ".sft",
    "validate_sft_rows": ".sft",
    # rewards and answer checking
    "accuracy_reward": ".rewards",
    "score_response": ".rewards",
    "verify": ".rewards",
    "extract_answer": ".rewards",
    # generation in a forced mode
    "render_prompt": ".templates",
    "TransformersBackend": ".generation",
    "VLLMBackend": ".generation",
    "OpenAIBackend": ".generation",
    "generate_in_mode": ".generation",
    "chat_prompt_in_mode": ".generation",
    # data
    "QuestionColumns": ".data.formats",
    "to_prompt_row": ".data.formats",
    "validate_question_rows": ".data.formats",
    "CurationConfig": ".data.curation",
    "curate": ".data.curation",
    "MixConfig": ".data.mixing",
    "mix": ".data.mixing",
    # evaluation and model cards
    "EvalConfig": ".evaluation",
    "evaluate": ".evaluation",
    "write_model_card": ".model_card",
    "card_from_training": ".model_card",
    # errors
    "UsageError": ".errors",
    "DataError": ".data.io",
}

__all__ = ["Mode", "ModeError", "ModePrefixes", "get_prefixes", "parse_response", "resolve_mode", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'r4b_trl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def _register_processors() -> None:
    # Image-only Qwen-VL processors (no torchvision needed) must be known to AutoProcessor before loading a
    # tiny vision model; registering is cheap once transformers is imported.
    try:
        from .tiny_models import register_image_only_processors

        register_image_only_processors()
    except Exception:  # pragma: no cover - transformers missing or too old: loading will say so
        pass


_register_processors()
