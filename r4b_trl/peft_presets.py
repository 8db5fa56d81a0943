"""LoRA / QLoRA presets for bi-mode annealing (SFT) and BPO.

Presets (``get_preset(name, model)`` returns a ``peft.LoraConfig``):

============== ================================================================ =============================
name           adapters on                                                      base weights
============== ================================================================ =============================
``lora_lm``    language model attention + MLP (q/k/v/o, gate/up/down proj)      bf16, frozen; vision frozen
``lora_lm_vision`` the above + every linear layer of the vision tower and the   bf16, frozen
               projector (Qwen-VL ``visual.blocks.*.attn.qkv/proj``, ``mlp.*``,
               ``merger``; LLaVA ``vision_tower`` + ``multi_modal_projector``)
``qlora_lm``   same modules as ``lora_lm``                                      4-bit NF4 (bitsandbytes)
============== ================================================================ =============================

Target modules are resolved by **inspecting module names**, because a plain suffix list is wrong for VLMs: Qwen2.5-VL's
vision blocks also have ``mlp.gate_proj/up_proj/down_proj`` and LLaVA's SigLIP tower has ``q_proj/k_proj/v_proj``, so
``target_modules=["q_proj", ..., "down_proj"]`` would silently put adapters on the vision tower. With a model (an
``nn.Module``, a ``PretrainedConfig`` or a path / Hub id, built on the meta device without loading weights) the preset
is an exact regex over that architecture's module names (``^(?:model\\.language_model\\.layers\\.\\d+\\.self_attn\\.q_proj|
...)$``), checked to select exactly the intended layers. Without a model, ``lora_lm`` / ``qlora_lm`` use a generic regex
that excludes any module under a vision tower or projector (``visual``, ``vision_tower``, ``vision_model``, ``merger``,
``multi_modal_projector``, ``connector``, ...); ``lora_lm_vision`` needs the model.

Stage defaults (``stage="sft"`` or ``"bpo"``; any ``LoraConfig`` field can be overridden by keyword):

* ``sft``: r=64, lora_alpha=128, dropout 0.05: annealing data is large; more adapter capacity.
* ``bpo``: r=16, lora_alpha=32, dropout 0.0: RL needs little capacity ("LoRA Without Regret", Schulman et al. 2025,
  also in TRL's docs), and dropout would make the training-time policy differ from the sampling policy.
  LoRA wants a learning rate roughly 10x the full fine-tuning one.

Adapters and vLLM weight sync (TRL 1.16, ``trl/generation/vllm_generation.py``, ``VLLMGeneration._iter_named_params``):
vLLM never sees the adapter. Before each sync TRL gathers the parameters (a no-op without ZeRO-3), calls
``model.merge_adapter()``, streams the *merged* base weights to vLLM under their original names (``base_model.model.``
and ``.base_layer`` stripped, ``lora_*`` tensors skipped), then ``model.unmerge_adapter()``. So vLLM runs the plain base
architecture (colocate: loaded from ``model.name_or_path``; server: ``trl vllm-serve --model <base>``) and the sync
costs a full-weight transfer, the same as full fine-tuning; adapter-only sync is not in TRL 1.16 (huggingface/trl#5975).
Consequences:

* ``lora_lm`` / ``lora_lm_vision``: work with vLLM colocate and server (merge into bf16 weights is exact up to bf16
  rounding).
* ``qlora_lm``: merging into 4-bit weights is lossy, and the merged (dequantized) tensors do not match a 4-bit vLLM
  engine (huggingface/trl#3466, #4973, open). Use QLoRA with ``use_vllm: false`` (transformers generation);
  :func:`check_vllm_compatible` refuses the combination.

``get_quantization_config("qlora_lm", model)`` builds the ``BitsAndBytesConfig`` (NF4, double quantization, bf16
compute and bf16 storage so ZeRO-3 / FSDP can shard it; the vision tower, projector and output head stay in bf16).
bitsandbytes itself is imported only when a CUDA device is present (or ``check_runtime=True``), so configs can be built
and inspected on a CPU machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Leaf names of the language model's attention and MLP projections (Qwen2/3, Llama, Mistral, R-4B's Qwen3 LM).
LM_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Module-path components that root a vision tower / a vision-language projector.
VISION_ROOTS = ("visual", "vision_tower", "vision_model", "vision_encoder", "image_encoder", "vpm")
PROJECTOR_ROOTS = (
    "merger",
    "deepstack_merger_list",
    "multi_modal_projector",
    "mm_projector",
    "connector",
    "projector",
    "aligner",
)
STAGE_DEFAULTS = {
    "sft": {"r": 64, "lora_alpha": 128, "lora_dropout": 0.05},
    "bpo": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0},
}


@dataclass(frozen=True)
class Preset:
    name: str
    vision: bool  # adapters on the vision tower and projector too
    quantize_4bit: bool
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("lora_lm", False, False, "LoRA on the language model's attention + MLP; vision tower frozen"),
        Preset("lora_lm_vision", True, False, "LoRA on the language model, the vision tower and the projector"),
        Preset("qlora_lm", False, True, "lora_lm on a 4-bit NF4 base model (bitsandbytes)"),
    )
}

_ROOTS_ALT = "|".join(VISION_ROOTS + PROJECTOR_ROOTS)
# Any LM projection that is not under a vision tower or projector (PEFT full-matches a string target_modules).
GENERIC_LM_REGEX = rf"^(?!(?:.*\.)?(?:{_ROOTS_ALT})\.).*\.(?:{'|'.join(LM_LEAVES)})$"


def list_presets() -> list[str]:
    return sorted(PRESETS)


def _preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown PEFT preset {name!r}; choose one of {', '.join(list_presets())}") from None


def _component(name: str) -> str | None:
    """'projector', 'vision' or None (language model / other) for a dotted module name."""
    parts = name.split(".")
    if any(p in PROJECTOR_ROOTS for p in parts):
        return "projector"
    if any(p in VISION_ROOTS for p in parts):
        return "vision"
    return None


def _as_module(model):
    """An ``nn.Module`` for ``model``: itself, or a weightless meta-device skeleton built from a config / path."""
    import torch

    if isinstance(model, torch.nn.Module):
        return model
    from transformers import AutoConfig, PretrainedConfig

    config = model if isinstance(model, PretrainedConfig) else AutoConfig.from_pretrained(str(model))
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    auto = AutoModelForImageTextToText if getattr(config, "vision_config", None) is not None else AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)


def classify_linear_modules(model) -> dict[str, list[str]]:
    """Full names of the ``nn.Linear`` modules of ``model`` grouped as ``language`` (LM projections that LoRA
    targets), ``vision`` (vision tower), ``projector`` and ``other`` (e.g. the output head)."""
    import torch

    module = _as_module(model)
    out_emb = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    groups: dict[str, list[str]] = {"language": [], "vision": [], "projector": [], "other": []}
    for name, mod in module.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        comp = _component(name)
        if comp is not None:
            groups[comp].append(name)
        elif mod is not out_emb and name.rsplit(".", 1)[-1] in LM_LEAVES:
            groups["language"].append(name)
        else:
            groups["other"].append(name)
    return groups


def _exact_regex(names: list[str]) -> str:
    """A regex that full-matches ``names``: layer indices are generalised to ``\\d+`` when that selects nothing more."""
    patterns = sorted({re.sub(r"\\\.\d+\\\.", r"\\.\\d+\\.", re.escape(n)) for n in names})
    return "^(?:" + "|".join(patterns) + ")$"


def resolve_target_modules(name: str, model=None) -> str:
    """The ``target_modules`` regex of preset ``name`` (for ``model`` when given)."""
    preset = _preset(name)
    if model is None:
        if preset.vision:
            raise ValueError(
                f"preset {name!r} adapts the vision tower, whose module names differ per architecture: pass the model "
                "(an nn.Module, a PretrainedConfig or a path/Hub id) to get_preset"
            )
        return GENERIC_LM_REGEX
    module = _as_module(model)
    groups = classify_linear_modules(module)
    if not groups["language"]:
        found = sorted({n.rsplit(".", 1)[-1] for n in groups["other"]})
        raise ValueError(
            f"no language-model projections named {', '.join(LM_LEAVES)} found in {type(module).__name__}; "
            f"linear layers found: {', '.join(found) or 'none'}"
        )
    wanted = list(groups["language"])
    if preset.vision:
        if not (groups["vision"] or groups["projector"]):
            raise ValueError(
                f"preset {name!r} needs a vision tower, but {type(module).__name__} has none (no module under "
                f"{', '.join(VISION_ROOTS)}); use 'lora_lm'"
            )
        wanted += groups["vision"] + groups["projector"]
    regex = _exact_regex(wanted)
    # The generalised pattern must select exactly the wanted layers (every Linear, whatever its group).
    all_linear = [n for names in groups.values() for n in names]
    if sorted(n for n in all_linear if re.fullmatch(regex, n)) != sorted(wanted):
        regex = "^(?:" + "|".join(re.escape(n) for n in sorted(wanted)) + ")$"
    return regex


def get_preset(name: str, model=None, *, stage: str = "bpo", **overrides):
    """The ``peft.LoraConfig`` of preset ``name``.

    Args:
        name: ``lora_lm``, ``lora_lm_vision`` or ``qlora_lm``.
        model: optional ``nn.Module``, ``PretrainedConfig`` or path / Hub id; target modules are then resolved exactly
            for that architecture (required for ``lora_lm_vision``).
        stage: ``"sft"`` or ``"bpo"``: rank / alpha / dropout defaults (see the module docstring).
        overrides: any other ``LoraConfig`` field (``r=32``, ``lora_alpha=64``, ``use_rslora=True``, ...).
    """
    from peft import LoraConfig

    _preset(name)
    if stage not in STAGE_DEFAULTS:
        raise ValueError(f"stage must be one of {', '.join(STAGE_DEFAULTS)}, not {stage!r}")
    kwargs = {
        **STAGE_DEFAULTS[stage],
        "bias": "none",
        "task_type": "CAUSAL_LM",
        "target_modules": resolve_target_modules(name, model),
    }
    kwargs.update(overrides)
    return LoraConfig(**kwargs)


def _require_bitsandbytes():
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "4-bit QLoRA needs bitsandbytes and a CUDA GPU: pip install -r requirements-gpu.txt "
            "(or pip install 'bitsandbytes>=0.45.1')"
        ) from err
    return bitsandbytes


def quantization_skip_modules(model) -> list[str]:
    """Module prefixes kept out of 4-bit quantization: the output head and the vision tower / projector roots."""
    module = _as_module(model)
    out_emb = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    skip = []
    for name, mod in module.named_modules():
        if out_emb is not None and mod is out_emb:
            skip.append(name)
        elif name:
            parent, _, leaf = name.rpartition(".")
            if leaf in VISION_ROOTS + PROJECTOR_ROOTS and _component(parent) is None:
                skip.append(name)  # a root, not something nested in another root
    return skip


def get_quantization_config(name: str, model=None, *, check_runtime: bool | None = None):
    """``transformers.BitsAndBytesConfig`` for a QLoRA preset, ``None`` for the others.

    ``check_runtime`` (default: whether CUDA is available) imports bitsandbytes to fail early with an install hint;
    on a CPU machine the config is built without importing it. With ``model`` the vision tower, projector and output
    head are listed in ``llm_int8_skip_modules`` (kept in bf16); without it transformers' default applies (output
    head only).
    """
    import torch

    preset = _preset(name)
    if not preset.quantize_4bit:
        return None
    if check_runtime is None:
        check_runtime = torch.cuda.is_available()
    if check_runtime:
        _require_bitsandbytes()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_quant_storage=torch.bfloat16,
        llm_int8_skip_modules=quantization_skip_modules(model) if model is not None else None,
    )


def check_vllm_compatible(name: str, use_vllm: bool) -> None:
    """Refuse presets whose adapters TRL 1.16 cannot sync into vLLM (see the module docstring)."""
    if use_vllm and _preset(name).quantize_4bit:
        raise ValueError(
            f"preset {name!r} (4-bit QLoRA) cannot be used with use_vllm=true in TRL 1.16: the adapter is merged into "
            "4-bit weights before each sync, which is lossy and does not match a 4-bit vLLM engine "
            "(huggingface/trl#3466, #4973). Set use_vllm: false, or use 'lora_lm' (bf16 base) with vLLM."
        )
