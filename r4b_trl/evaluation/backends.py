"""Loading the model to evaluate: its template checked before any weights load, then the transformers or the vLLM
backend."""

from __future__ import annotations

from ..modes import ModePrefixes
from .config import EvalConfig, EvalError


def _check_tags_survive_decoding(processing_class, prefixes: ModePrefixes) -> None:
    tok = getattr(processing_class, "tokenizer", processing_class)
    for tag in (prefixes.open_tag, prefixes.close_tag):
        ids = tok.encode(tag, add_special_tokens=False)
        if tag not in tok.decode(ids, skip_special_tokens=True):
            raise EvalError(f"The tokenizer's {tag!r} is a special token: decoding strips it, so modes could not be "
                            "parsed. Re-register the think tags as normal (non-special) tokens.")


def load_backend(config: EvalConfig):
    """``(backend, processing_class, is_vision)`` for the configured model."""
    from ..models import check_model_path, is_vision_config, load_config, load_processing_class

    check_model_path(config.model, "model")
    mcfg = load_config(config.model, config.trust_remote_code, config.revision)
    vision = is_vision_config(mcfg)
    from ..modes import ModeError
    from ..templates import check_template

    pc = load_processing_class(config.model, config.trust_remote_code, config.revision, vision=vision)
    try:
        check_template(pc, config.resolved_prefixes(), stage="evaluate")  # before any weights load
    except ModeError as err:
        raise EvalError(str(err)) from err
    if config.backend == "vllm":
        from ..generation import VLLMBackend

        backend = VLLMBackend(config.model, trust_remote_code=config.trust_remote_code, dtype=config.dtype,
                              gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                              tensor_parallel_size=config.vllm_tensor_parallel_size,
                              max_model_len=config.vllm_max_model_len, adapter=config.adapter, seed=config.seed)
        return backend, pc, vision
    import torch

    from ..generation import TransformersBackend

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = TransformersBackend.from_pretrained(
        config.model, batch_size=config.batch_size, trust_remote_code=config.trust_remote_code,
        revision=config.revision, dtype=config.dtype, adapter=config.adapter,
        device_map=None if device == "cpu" else device)
    return backend, backend.processing_class, vision
