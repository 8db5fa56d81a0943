#!/usr/bin/env python
"""Memory per GPU and optimizer-step time of every shipped GPU recipe, computed from the recipe YAMLs themselves
(reproducible arithmetic, not measurements).

    python scripts/hardware_estimates.py            # the table (markdown) and its footer
    python scripts/hardware_estimates.py --details  # every term of every row
    python scripts/hardware_estimates.py --root DIR # the recipes of another checkout

Rows: every ``recipes/<model>/{sft,bpo}/*.yaml`` except ``recipes/tiny`` and ``recipes/demo`` (CPU configs), so a new
config gets a row by existing, plus the multi-node row of ``slurm/bpo_multinode.slurm`` (a shipped BPO YAML with the
overrides that script applies, see ``SLURM_ROWS``). Each row reads from its YAML: per_device_train_batch_size,
gradient_accumulation_steps, num_generations, thinking_fraction, max_completion_length, beta, steps_per_generation,
num_iterations, use_peft / lora_r / lora_target_modules / peft_preset, load_in_4bit, dtype, gradient_checkpointing,
use_vllm, vllm_mode, vllm_gpu_memory_utilization, vllm_enable_sleep_mode, vllm_max_model_length,
vllm_tensor_parallel_size, vllm_importance_sampling_correction, max_length and packing (SFT), image_column; a key the
YAML leaves out takes the default of the config class the recipe parses (``BPOConfig`` / TRL's ``SFTConfig`` and
``ModelConfig``). The number of training GPUs and the parallelism come from the launch command in the YAML's header
comment (``--config_file accelerate_configs/X.yaml`` read with accelerate's own config loader, ``--num_processes``
if given; no ``--config_file``: 1 process). The card is the one the header or file name names ("24 GB" -> a 24 GB
card), else an H100 80 GB. The architecture comes from the config's directory (``MODEL_FOR_DIR``): the BPO configs
start from local SFT outputs (``outputs/qwen3-vl-8b-sft``) that cannot be read offline.

Method (all sizes in GiB = 2**30 bytes; P parameters, n training GPUs, b = per_device_train_batch_size):

* **Parameters** are counted exactly by building each architecture on the meta device from its published config
  (no weights are loaded). ``N_c`` (parameters doing matmuls per token) excludes the input embedding.
* **Model states.** DeepSpeed (bf16) keeps bf16 weights (2 B) + bf16 grads (2 B) + fp32 master weights and Adam
  moments (12 B) = 16 B/param: ZeRO-3 shards all of it (16 P / n) plus up to 1e9 live gathered bf16 parameters
  (``stage3_max_live_parameters``), ZeRO-2 shards grads and optimizer (2 P + 14 P / n). Without DeepSpeed the model
  trains in the dtype it was loaded in (``dtype: bfloat16``) and torch's AdamW keeps its moments in that dtype:
  8 B/param (16 with float32), sharded / n under FSDP. LoRA: the frozen base in its dtype (NF4 at 0.52 B/param for
  4-bit-quantized linear layers) + fp32 adapters with grads and Adam (16 B each); the adapters are counted on the
  modules the YAML's ``lora_target_modules`` select the way PEFT matches them (suffixes: also vision-tower layers
  with those names), or the preset's modules.
* **Reference model** (``beta > 0``): a full fine-tune gets a second bf16 copy from TRL, 2 P (/ n under ZeRO-3 /
  FSDP, which shard it like the policy; ZeRO-2 and DDP replicate it), and one more forward pass per sequence. With
  LoRA the reference is the base with the adapter disabled: no memory, the same extra forward.
* **Activations** with gradient checkpointing for one micro-batch of ``T`` tokens: the checkpointed layer inputs
  ``2 h T L`` bytes plus one layer being recomputed, ``(15 h + 4.75 I) T`` bytes (Korthikanti et al. 2022's 34 h per
  token per layer with the MLP term scaled to the intermediate size I; without checkpointing every layer keeps it).
  BPO: ``T = b (prompt + max_completion_length)``: TRL pads a whole generation batch to its longest completion,
  taken as the cap (a thinking rollout). SFT: ``T = b * max_length`` (packing: exactly; without packing the longest
  row of the batch; ``max_length: null`` leaves it to the data, assumed below). The LM head is TRL 1.16's fused
  chunked log-softmax (no ``(T, vocab)`` logits): a 4096 x 32768 bf16 tile, the fp32 gradient of the hidden states
  ``4 h N`` (N scored tokens) and, when the head is trained, its fp32 weight gradient ``4 V h``. The vision tower's
  activations are ignored (a few hundred image tokens).
* **Generation memory.** vLLM colocate reserves ``vllm_gpu_memory_utilization`` of the card: its bf16 weights
  (2 P / TP), 1.5 GiB (CUDA graphs, ``max_num_batched_tokens = 4096``) and the KV cache,
  ``2 * layers * kv_heads * head_dim * 2 bytes`` per token (Qwen3.5: only its full-attention layers, plus a fixed bf16
  recurrent state per sequence for its Gated DeltaNet layers); the row says how many of the rollouts it generates fit
  at once (prompt + mean completion each) and checks vLLM's start-up condition (one ``max_model_len`` sequence
  fits). With ``vllm_enable_sleep_mode`` vLLM frees its memory while training (TRL: sleep level 2), so the peak is
  the larger phase, else the sum. ``use_vllm: false`` (transformers ``generate``): the KV cache of the generation
  batch (b x steps_per_generation sequences, prompt + max_completion each) and the prefill's transient
  ``(4 h + 6 I)`` bytes per prompt token, the larger phase again. A vLLM server (``trl vllm-serve``) uses 0.9 of each
  of its GPUs (at most 1024 sequences at once, ``vllm serve``'s default on 80 GB-class cards).
* **Overhead**: 2 GiB per training process (CUDA context, NCCL buffers, allocator fragmentation). "Fits" means
  at most 95 % of the card.
* **Step time** of one optimizer step, stages one after the other:
  - training: ``(2 forward + 4 backward, or 2 with a frozen base, + 2 recompute) * N_c * tokens`` plus
    ``2 * N_c * tokens`` for each extra no-grad forward: the reference model (``beta > 0``) and the old-policy
    log-probs TRL computes for vLLM's importance-sampling correction (on by default with vLLM); tokens are the padded
    ones above; at 35 % MFU. SFT: ``6 * N_c * tokens`` (4 with LoRA) ``+ 2 * N_c * tokens`` recompute.
  - generation, once per ``steps_per_generation x num_iterations`` micro-steps: vLLM: the larger of compute
    (``2 * N_c`` per prompt or generated token, mean completion, 30 % MFU) and memory bandwidth (every decode step
    reads the weights and the resident KV cache at 60 % of HBM bandwidth; ``max_completion`` steps per wave of
    rollouts that fit the KV cache at once); transformers ``generate``: ``max_completion`` decode steps for the
    padded batch, each at least 30 ms (eager PyTorch, no CUDA graphs).
  - weight sync to vLLM (TRL merges LoRA, gathers ZeRO-3 shards and pushes 2 P bytes): over NVLink (~150 GB/s
    effective) in colocate mode, over InfiniBand (25 GB/s, 200 Gb/s) to a server on another node.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from dataclasses import MISSING, dataclass, fields
from functools import lru_cache
from pathlib import Path

GiB = 2**30
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class GPU:
    name: str
    mem_gib: float
    bf16_tflops: float  # dense
    hbm_tb_s: float


RTX_24GB = GPU("24 GB card (RTX 4090-class)", 24.0, 165.0, 1.0)
H100_80GB = GPU("H100 SXM 80 GB", 80.0, 989.0, 3.35)
GPUS_BY_GB = {24: RTX_24GB, 80: H100_80GB}
DEFAULT_GPU = H100_80GB

MFU_TRAIN = 0.35
MFU_GEN = 0.30
HBM_EFFICIENCY = 0.60
NVLINK_GB_S = 150.0
IB_GB_S = 25.0
RUNTIME_OVERHEAD_GIB = 2.0
VLLM_OVERHEAD_GIB = 1.5
VLLM_SERVER_UTILIZATION = 0.9  # trl vllm-serve --gpu_memory_utilization default
VLLM_SERVER_MAX_NUM_SEQS = 1024  # vllm serve's default on 80 GB-class GPUs (colocate: TRL sets the generation batch)
ZERO3_LIVE_PARAMS = 1e9
FIT_FRACTION = 0.95
NF4_BYTES = 4.127 / 8  # NF4 + double-quantized absmax (blocks of 64)
HF_DECODE_STEP_S = 0.030  # transformers generate: eager decode step floor (kernel launches, no CUDA graphs)
FUSED_HEAD_TILE = (4096, 32768)  # trl.kernels.chunked_logprob: TOKEN_CHUNK_SIZE x vocab chunk

# Data assumptions (the YAMLs bound completions, not prompts, and max_length: null bounds nothing).
PROMPT_TOKENS = {"vision": 1024, "text": 512}  # chat template + question (+ image tokens)
THINK_FILL = 0.8  # a thinking rollout uses this share of max_completion_length on average
NONTHINK_TOKENS = 256  # a non-thinking answer
SFT_UNBOUNDED_LENGTH = 4096  # tokens per row when an SFT config sets max_length: null

# Published configs (config.json on the Hub) of the models the recipes target.
ARCH = {
    "Qwen2.5-VL-3B-Instruct": dict(
        kind="qwen2_5_vl", max_position=128000,
        text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                    patch_size=14, window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
        tie=True,
    ),
    "Qwen3-VL-8B-Instruct": dict(
        kind="qwen3_vl", max_position=262144,
        text=dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                   "mrope_interleaved": True}),
        vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                    patch_size=16, num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24]),
        tie=False,
    ),
    # Qwen3.5 (hybrid: 3 of every 4 layers Gated DeltaNet, every 4th full attention; natively image-text). Text
    # shapes from the models' config.json as quoted in public repositories (2B: 24 layers, hidden 2048, FFN 6144,
    # 8 / 2 heads, 16 DeltaNet value heads; 4B: 32 layers, hidden 2560, FFN 9216, 16 / 4 heads, 32 value heads);
    # the 4B's vision tower (depth 24, width 1024) is taken for the 2B too, projected to its width.
    "Qwen3.5-2B": dict(
        kind="qwen3_5", max_position=262144,
        text=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=24, num_attention_heads=8,
                  num_key_value_heads=2, head_dim=256, linear_num_key_heads=16, linear_num_value_heads=16,
                  linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4, vocab_size=248320,
                  tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                                   "mrope_section": [11, 11, 10], "mrope_interleaved": True}),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                    patch_size=16, num_position_embeddings=2304),
        tie=True,
    ),
    "Qwen3.5-4B": dict(
        kind="qwen3_5", max_position=262144,
        text=dict(hidden_size=2560, intermediate_size=9216, num_hidden_layers=32, num_attention_heads=16,
                  num_key_value_heads=4, head_dim=256, linear_num_key_heads=16, linear_num_value_heads=32,
                  linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4, vocab_size=248320,
                  tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                                   "mrope_section": [11, 11, 10], "mrope_interleaved": True}),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2560,
                    patch_size=16, num_position_embeddings=2304),
        tie=True,
    ),
    "Qwen3-4B": dict(
        kind="qwen3", max_position=40960,
        text=dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True),
        tie=True,
    ),
}

# recipes/<dir>/... -> the architecture above. The SFT configs name the Hub model, the BPO configs the SFT output
# (outputs/<dir>-sft), so the directory is the one name both share.
MODEL_FOR_DIR = {
    "qwen2.5-vl-3b": "Qwen2.5-VL-3B-Instruct",
    "qwen3-vl-8b": "Qwen3-VL-8B-Instruct",
    "qwen3-4b": "Qwen3-4B",
    "qwen3.5-2b": "Qwen3.5-2B",
    "qwen3.5-4b": "Qwen3.5-4B",
}
SHORT_NAME = {"Qwen2.5-VL-3B-Instruct": "Qwen2.5-VL-3B", "Qwen3-VL-8B-Instruct": "Qwen3-VL-8B", "Qwen3-4B": "Qwen3-4B",
              "Qwen3.5-2B": "Qwen3.5-2B", "Qwen3.5-4B": "Qwen3.5-4B"}
CPU_RECIPE_DIRS = {"tiny", "demo"}
STAGES = ("sft", "bpo")

# Rows for slurm/bpo_multinode.slurm: (BPO YAML, sbatch --nodes, --tp, --dp). The script's own defaults (accelerate
# config, GPUS_PER_NODE) and the trainer overrides it passes are read from the script.
SLURM_SCRIPT = "slurm/bpo_multinode.slurm"
SLURM_ROWS = [("recipes/qwen3-vl-8b/bpo/full_zero3_colocate.yaml", 3, 8, 1)]


@dataclass(frozen=True)
class ModelStats:
    name: str
    model_type: str
    params: int
    vision_params: int
    compute_params: int  # N_c: everything but the input embedding
    linears: tuple  # (name, in_features, out_features, group) of every nn.Linear; group as classify_linear_modules
    hidden: int
    intermediate: int
    layers: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_position: int
    kv_layers: int = 0  # layers with a KV cache (full attention); 0: all layers
    state_bytes: int = 0  # per-sequence recurrent state of the linear-attention layers (Qwen3.5), bf16

    @property
    def lm_linear_shapes(self) -> tuple:
        return tuple((i, o) for _, i, o, g in self.linears if g == "language")


@lru_cache(maxsize=None)
def model_stats(name: str) -> ModelStats:
    """Exact parameter counts from the architecture built on the meta device."""
    import torch

    from r4b_trl.peft_presets import classify_linear_modules

    spec = ARCH[name]
    with torch.device("meta"):
        if spec["kind"] == "qwen3":
            from transformers import Qwen3Config, Qwen3ForCausalLM

            model = Qwen3ForCausalLM(Qwen3Config(**spec["text"]))
        elif spec["kind"] == "qwen2_5_vl":
            from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

            model = Qwen2_5_VLForConditionalGeneration(
                Qwen2_5_VLConfig(text_config=spec["text"], vision_config=spec["vision"], tie_word_embeddings=spec["tie"]))
        elif spec["kind"] == "qwen3_5":
            from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

            model = Qwen3_5ForConditionalGeneration(
                Qwen3_5Config(text_config=spec["text"], vision_config=spec["vision"], tie_word_embeddings=spec["tie"]))
        else:
            from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

            model = Qwen3VLForConditionalGeneration(
                Qwen3VLConfig(text_config=spec["text"], vision_config=spec["vision"], tie_word_embeddings=spec["tie"]))
    params = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    embed = model.get_input_embeddings().weight.numel()
    modules = dict(model.named_modules())
    group_of = {n: g for g, names in classify_linear_modules(model).items() for n in names}
    linears = tuple((n, modules[n].in_features, modules[n].out_features, group_of[n]) for n in group_of)
    t = spec["text"]
    head_dim = t.get("head_dim", t["hidden_size"] // t["num_attention_heads"])
    kv_layers, state = t["num_hidden_layers"], 0
    layer_types = getattr(getattr(model.config, "text_config", model.config), "layer_types", None)
    if layer_types and "linear_attention" in layer_types:
        kv_layers = layer_types.count("full_attention")
        k, v = t["linear_key_head_dim"], t["linear_value_head_dim"]
        conv_dim = 2 * t["linear_num_key_heads"] * k + t["linear_num_value_heads"] * v
        per_layer = t["linear_num_value_heads"] * k * v + conv_dim * (t["linear_conv_kernel_dim"] - 1)
        state = 2 * per_layer * layer_types.count("linear_attention")
    return ModelStats(
        name=name, model_type=spec["kind"], params=params, vision_params=vision,
        compute_params=params - embed if not spec["tie"] else params, linears=linears,
        hidden=t["hidden_size"], intermediate=t["intermediate_size"], layers=t["num_hidden_layers"],
        kv_heads=t["num_key_value_heads"], head_dim=head_dim, vocab=t["vocab_size"],
        max_position=spec["max_position"], kv_layers=kv_layers, state_bytes=state,
    )


def kv_cache_bytes(stats: ModelStats, tokens: float, bytes_per_value: int = 2, sequences: float = 0) -> float:
    """K and V for every attention layer: 2 x layers x kv_heads x head_dim x bytes x tokens; for hybrid models
    (Qwen3.5) only the full-attention layers, plus each sequence's fixed recurrent state of the linear layers."""
    layers = stats.kv_layers or stats.layers
    return 2 * layers * stats.kv_heads * stats.head_dim * bytes_per_value * tokens + stats.state_bytes * sequences


def lora_targets(stats: ModelStats, targets=None, preset: str | None = None) -> list:
    """The ``(name, in, out, group)`` linear layers LoRA adapts: a preset's groups, or PEFT's matching of
    ``target_modules`` (a list: exact name or ``.suffix``; ``"all-linear"``: every linear but the output head; another
    string: a full-match regex; None: PEFT's default for the model type, else q_proj / v_proj)."""
    if preset:
        groups = {"language"} | ({"vision", "projector"} if preset == "lora_lm_vision" else set())
        return [lin for lin in stats.linears if lin[3] in groups]
    if targets is None:
        try:
            from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping

            targets = mapping.get(stats.model_type) or ["q_proj", "v_proj"]
        except ImportError:  # pragma: no cover
            targets = ["q_proj", "v_proj"]
    if isinstance(targets, str):
        if targets == "all-linear":
            return [lin for lin in stats.linears if lin[3] != "other"]
        return [lin for lin in stats.linears if re.fullmatch(targets, lin[0])]
    return [lin for lin in stats.linears if any(lin[0] == t or lin[0].endswith("." + t) for t in targets)]


def lora_params(stats: ModelStats, rank: int, targets=None, preset: str | None = None) -> int:
    """r x (in + out) per adapted layer; without targets / preset: the language model's projections (``lora_lm``)."""
    if targets is None and preset is None:
        preset = "lora_lm"
    return sum(rank * (i + o) for _, i, o, _ in lora_targets(stats, targets, preset))


def quantized_params(stats: ModelStats, preset: str | None) -> int:
    """Weights bitsandbytes stores in 4 bit: every linear layer but the output head (and, for the r4b-trl preset,
    but the vision tower and projector)."""
    keep = {"other"} | ({"vision", "projector"} if preset else set())
    return sum(i * o for _, i, o, g in stats.linears if g not in keep)


# --------------------------------------------------------------------------------------------- reading the configs


def shipped_configs(root: Path = ROOT) -> list[Path]:
    """Every GPU recipe YAML: recipes/<model>/{sft,bpo}/*.yaml outside the CPU-only directories."""
    found = [p for stage in STAGES for p in (root / "recipes").glob(f"*/{stage}/*.yaml")
             if p.parent.parent.name not in CPU_RECIPE_DIRS]
    # per model, in pipeline order: annealing (SFT) then BPO
    return sorted(found, key=lambda p: (p.parent.parent.name, STAGES.index(p.parent.name), p.name))


def header_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def launch_command(header: str) -> str | None:
    """The ``accelerate launch ...`` (or ``python ...``) command of a YAML header, continuation lines joined."""
    lines = header.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("accelerate launch", "python ", "torchrun")):
            cmd = line
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1].rstrip() + " " + lines[i].strip()
            return cmd
    return None


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


@dataclass(frozen=True)
class Parallelism:
    config_file: str | None
    num_processes: int
    distributed: str  # NO | MULTI_GPU | DEEPSPEED | FSDP
    zero_stage: int


def parallelism(config_file: str | None, num_processes: int | None = None, root: Path = ROOT) -> Parallelism:
    """Processes and sharding from an accelerate config file (accelerate's loader); no file: one plain process."""
    if config_file is None:
        return Parallelism(None, num_processes or 1, "NO", 0)
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(root / config_file))
    dist = getattr(cfg.distributed_type, "value", str(cfg.distributed_type))
    zero = int((cfg.deepspeed_config or {}).get("zero_stage", 0)) if dist == "DEEPSPEED" else 0
    return Parallelism(config_file, int(num_processes or cfg.num_processes or 1), dist, zero)


def gpu_for(path: Path, header: str) -> GPU:
    """The card the config is written for: "<N> GB" in its header or "<N>gb" in its file name, else the default."""
    for text in (path.stem, header):
        for gb in re.findall(r"(\d+)\s*gb\b", text, flags=re.IGNORECASE):
            if int(gb) in GPUS_BY_GB:
                return GPUS_BY_GB[int(gb)]
    return DEFAULT_GPU


@lru_cache(maxsize=None)
def config_defaults(stage: str) -> dict:
    """Defaults of the dataclasses the recipe parses: (BPOConfig or SFTConfig) + ModelConfig."""
    from trl import ModelConfig

    if stage == "bpo":
        from r4b_trl.bpo import BPOConfig as TrainConfig
    else:
        from trl import SFTConfig as TrainConfig
    out = {}
    for cls in (ModelConfig, TrainConfig):
        for f in fields(cls):
            if f.default is not MISSING:
                out.setdefault(f.name, f.default)
    return out


@dataclass(frozen=True)
class Setup:
    key: str  # the YAML's path (+ the slurm launch for derived rows)
    source: str  # the YAML's path relative to the repository
    stage: str  # "bpo" | "sft"
    model: str  # ARCH key
    gpu: GPU
    launch: str
    strategy: str  # accelerate config file or "no --config_file"
    distributed: str = "NO"
    train_gpus: int = 1
    zero_stage: int = 0
    dtype_bytes: int = 2
    use_peft: bool = False
    lora_r: int = 16
    lora_target_modules: object = None
    peft_preset: str | None = None
    load_in_4bit: bool = False
    micro_batch: int = 8
    grad_accum: int = 1
    gradient_checkpointing: bool = True
    # BPO
    num_generations: int = 8
    thinking_fraction: float = 0.5
    max_completion: int = 512
    prompt: int = 512
    beta: float = 0.0
    steps_per_generation: int | None = None
    num_iterations: int = 1
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_util: float = 0.3
    vllm_sleep: bool = False
    vllm_max_model_len: int | None = None
    vllm_tp: int = 1
    importance_sampling: bool = True
    server_gpus: int = 0  # all GPUs of the vLLM server (tp x dp)
    server_tp: int = 0
    # SFT
    seq_len: int = 0
    seq_len_assumed: bool = False
    packing: bool = False

    @property
    def method(self) -> str:
        if self.peft_preset:
            return "qlora" if self.peft_preset.startswith("qlora") else "lora"
        if self.use_peft:
            return "qlora" if self.load_in_4bit else "lora"
        return "full"

    @property
    def lora_rank(self) -> int:
        if self.peft_preset:  # load_for_training builds the preset's LoraConfig with the stage's rank
            from r4b_trl.peft_presets import STAGE_DEFAULTS

            return STAGE_DEFAULTS[self.stage]["r"]
        return self.lora_r

    @property
    def spg(self) -> int:
        return self.steps_per_generation or self.grad_accum

    @property
    def sequences(self) -> int:
        """Sequences (BPO: rollouts) per optimizer step over all training GPUs."""
        return self.micro_batch * self.grad_accum * self.train_gpus

    @property
    def prompts_per_step(self) -> float:
        return self.sequences / self.num_generations

    @property
    def generations_per_step(self) -> float:
        return self.grad_accum / (self.spg * self.num_iterations)

    @property
    def mean_completion(self) -> float:
        think, answer = THINK_FILL * self.max_completion, min(NONTHINK_TOKENS, self.max_completion)
        return self.thinking_fraction * think + (1 - self.thinking_fraction) * answer

    @property
    def padded_len(self) -> int:
        """Tokens per training sequence, padding included."""
        return self.prompt + self.max_completion if self.stage == "bpo" else self.seq_len

    @property
    def sharded(self) -> bool:
        return self.zero_stage == 3 or self.distributed == "FSDP"

    @property
    def ref_model_copy(self) -> bool:
        """TRL loads a separate reference model (beta > 0 on a full fine-tune)."""
        return self.stage == "bpo" and self.beta > 0 and self.method == "full"


def _as_bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")


def setup_from_yaml(path, root: Path = ROOT, overrides: dict | None = None, launch: str | None = None,
                    config_file: str | None = None, num_processes: int | None = None, server_gpus: int = 0,
                    server_tp: int = 0, key: str | None = None) -> Setup:
    """A row from a recipe YAML. ``overrides`` act like command-line flags; ``launch`` / ``config_file`` /
    ``num_processes`` replace what the YAML's header says (derived launches such as the slurm script)."""
    import yaml

    path = Path(path)
    text = path.read_text()
    cfg = yaml.safe_load(text) or {}
    cfg.update(overrides or {})
    stage = path.parent.name
    if stage not in STAGES:
        raise ValueError(f"{path}: expected recipes/<model>/<sft|bpo>/<name>.yaml")
    model_dir = path.parent.parent.name
    if model_dir not in MODEL_FOR_DIR:
        raise KeyError(f"{path}: no architecture for recipes/{model_dir}/; add it to MODEL_FOR_DIR and ARCH")
    c = {**config_defaults(stage), **cfg}
    header = header_comment(text)
    if launch is None:
        launch = launch_command(header) or f"accelerate launch recipes/{stage}.py --config {path.name}"
        argv = shlex.split(launch)
        config_file = config_file or _option(argv, "--config_file")
        num_processes = num_processes or (int(_option(argv, "--num_processes") or 0) or None)
    par = parallelism(config_file, num_processes, root)
    try:
        source = str(path.resolve().relative_to(Path(root).resolve()))
    except ValueError:
        source = str(path)
    dtype = str(c.get("dtype") or "auto").replace("torch.", "")
    prompt = PROMPT_TOKENS["vision" if c.get("image_column") else "text"]
    seq_len, assumed = 0, False
    if stage == "sft":
        seq_len = c.get("max_length")
        if seq_len is None:
            seq_len, assumed = SFT_UNBOUNDED_LENGTH, True
    use_vllm = _as_bool(c.get("use_vllm", False))
    vllm_mode = str(c.get("vllm_mode", "colocate"))
    if use_vllm and vllm_mode == "server" and not server_gpus:
        server_gpus = int(c.get("vllm_tensor_parallel_size") or 1)
    server_tp = server_tp or server_gpus
    return Setup(
        key=key or source, source=source, stage=stage, model=MODEL_FOR_DIR[model_dir], gpu=gpu_for(path, header),
        launch=launch, strategy=par.config_file or "no --config_file", distributed=par.distributed,
        train_gpus=par.num_processes, zero_stage=par.zero_stage, dtype_bytes=4 if dtype == "float32" else 2,
        use_peft=_as_bool(c.get("use_peft", False)), lora_r=int(c.get("lora_r") or 16),
        lora_target_modules=(tuple(c["lora_target_modules"]) if isinstance(c.get("lora_target_modules"), list)
                             else c.get("lora_target_modules")),
        peft_preset=c.get("peft_preset"), load_in_4bit=_as_bool(c.get("load_in_4bit", False)),
        micro_batch=int(c["per_device_train_batch_size"]), grad_accum=int(c.get("gradient_accumulation_steps") or 1),
        gradient_checkpointing=_as_bool(c.get("gradient_checkpointing", True)),
        num_generations=int(c.get("num_generations") or 1), thinking_fraction=float(c.get("thinking_fraction", 0.5))
        if _as_bool(c.get("force_modes", True)) else 0.5,
        max_completion=int(c.get("max_completion_length") or 0), prompt=prompt, beta=float(c.get("beta") or 0.0),
        steps_per_generation=c.get("steps_per_generation"), num_iterations=int(c.get("num_iterations") or 1),
        use_vllm=use_vllm, vllm_mode=vllm_mode, vllm_util=float(c.get("vllm_gpu_memory_utilization") or 0.3),
        vllm_sleep=_as_bool(c.get("vllm_enable_sleep_mode", False)), vllm_max_model_len=c.get("vllm_max_model_length"),
        vllm_tp=int(c.get("vllm_tensor_parallel_size") or 1),
        importance_sampling=_as_bool(c.get("vllm_importance_sampling_correction", True)), server_gpus=server_gpus,
        server_tp=server_tp,
        seq_len=int(seq_len), seq_len_assumed=assumed, packing=_as_bool(c.get("packing", False)),
    )


def slurm_defaults(root: Path = ROOT) -> dict:
    """What slurm/bpo_multinode.slurm does unless told otherwise: its accelerate config, GPUs per node, and the
    trainer flags it appends to every run."""
    text = (root / SLURM_SCRIPT).read_text()
    accel = re.search(r'^ACCELERATE_CONFIG="([^"]+)"', text, re.M).group(1)
    gpus = int(re.search(r"GPUS_PER_NODE=\$\{GPUS_PER_NODE:-(\d+)\}", text).group(1))
    cmd = re.search(r'^CMD="recipes/bpo\.py (.*?)"', text, re.M | re.S).group(1)
    argv = shlex.split(cmd.replace("\\\n", " "))
    overrides = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith(("--", "$")):
            overrides[arg[2:]] = argv[i + 1]
    overrides = {k: v for k, v in overrides.items() if k in ("use_vllm", "vllm_mode")}
    return {"accelerate_config": accel, "gpus_per_node": gpus, "overrides": overrides}


def slurm_setup(config: str, nodes: int, tp: int, dp: int = 1, root: Path = ROOT) -> Setup:
    """A BPO YAML launched by slurm/bpo_multinode.slurm on ``nodes`` nodes: nodes - 1 train, the last serves vLLM."""
    d = slurm_defaults(root)
    launch = f"sbatch --nodes={nodes} {SLURM_SCRIPT} --config {config} --tp {tp}" + (f" --dp {dp}" if dp > 1 else "")
    return setup_from_yaml(root / config, root, overrides=d["overrides"], launch=launch,
                           config_file=d["accelerate_config"], num_processes=(nodes - 1) * d["gpus_per_node"],
                           server_gpus=tp * dp, server_tp=tp, key=f"{config} via {SLURM_SCRIPT}")


def setups(root: Path = ROOT) -> list[Setup]:
    rows = [setup_from_yaml(p, root) for p in shipped_configs(root)]
    rows += [slurm_setup(cfg, nodes, tp, dp, root) for cfg, nodes, tp, dp in SLURM_ROWS if (root / cfg).exists()]
    return rows


# --------------------------------------------------------------------------------------------- the arithmetic


def _vllm_engine(s: Setup, m: ModelStats, gpu: GPU, util: float, tp: int, seqs: int, max_len: int,
                 max_num_seqs: int | None = None) -> dict:
    """One vLLM engine of ``tp`` GPUs generating ``seqs`` rollouts: per-GPU budget, KV capacity, rollouts at once."""
    budget = util * gpu.mem_gib
    weights = 2 * m.params / tp / GiB
    kv_capacity = budget - weights - VLLM_OVERHEAD_GIB
    per_rollout = kv_cache_bytes(m, s.prompt + s.mean_completion, sequences=1) / tp / GiB
    concurrent = max(0, min(seqs, max_num_seqs or seqs, int(kv_capacity / per_rollout))) if kv_capacity > 0 else 0
    return {
        "budget": budget, "weights": weights, "kv_capacity": kv_capacity, "rollouts": seqs, "concurrent": concurrent,
        "starts": kv_capacity >= kv_cache_bytes(m, max_len, sequences=1) / tp / GiB,  # vLLM's start-up check
        "max_model_len": max_len,
    }


def memory(s: Setup) -> dict:
    """Per-GPU memory terms in GiB for a training GPU (and the vLLM server GPUs when there are any)."""
    m = model_stats(s.model)
    P = m.params
    n = s.train_gpus
    out = {}
    if s.method == "full":
        if s.distributed == "DEEPSPEED":  # bf16 weights and grads, fp32 master weights + Adam moments
            w, g, o = 2, 2, 12
            sw, sg, so = (n if s.zero_stage >= 3 else 1), (n if s.zero_stage >= 2 else 1), (n if s.zero_stage else 1)
        else:  # weights as loaded; torch AdamW's moments in the same dtype
            d = s.dtype_bytes
            w, g, o = d, d, 2 * d
            sw = sg = so = n if s.distributed == "FSDP" else 1
        out["weights"] = w * P / sw / GiB
        out["gradients"] = g * P / sg / GiB
        out["optimizer_states"] = o * P / so / GiB
        if s.sharded:
            out["zero3_live_params"] = 2 * min(ZERO3_LIVE_PARAMS, P) / GiB
        if s.ref_model_copy:
            out["reference_model"] = 2 * P / (n if s.sharded else 1) / GiB
    else:
        q = quantized_params(m, s.peft_preset) if s.method == "qlora" else 0
        out["weights"] = (s.dtype_bytes * (P - q) + NF4_BYTES * q) / GiB
        out["adapters"] = 16 * lora_params(m, s.lora_rank, s.lora_target_modules, s.peft_preset) / GiB
    out["runtime_overhead"] = RUNTIME_OVERHEAD_GIB
    static = sum(out.values())

    tokens = s.micro_batch * s.padded_len
    per_layer = (15 * m.hidden + 4.75 * m.intermediate) * tokens
    if s.gradient_checkpointing:
        out["activations"] = (2 * m.hidden * tokens * m.layers + per_layer) / GiB
    else:
        out["activations"] = per_layer * m.layers / GiB
    scored = s.micro_batch * (s.max_completion if s.stage == "bpo" else s.seq_len)
    out["lm_head"] = (2 * min(scored, FUSED_HEAD_TILE[0]) * FUSED_HEAD_TILE[1] + 4 * m.hidden * scored
                      + (4 * m.vocab * m.hidden if s.method == "full" else 0)) / GiB
    train_phase = static + out["activations"] + out["lm_head"]
    out["train_phase"] = train_phase

    gen_phase = None
    if s.stage == "bpo" and s.use_vllm and s.vllm_mode == "colocate":
        e = _vllm_engine(s, m, s.gpu, s.vllm_util, s.vllm_tp, s.micro_batch * s.spg * s.vllm_tp,
                         s.vllm_max_model_len or m.max_position)
        out.update({f"vllm_{k}": v for k, v in e.items()})
        gen_phase = static + e["budget"]
        total = max(train_phase, gen_phase) if s.vllm_sleep else train_phase + e["budget"]
    elif s.stage == "bpo" and s.use_vllm:
        tp = s.server_tp or s.server_gpus
        engines = max(1, s.server_gpus // tp)  # data-parallel replicas share the rollouts
        e = _vllm_engine(s, m, s.gpu, VLLM_SERVER_UTILIZATION, tp,
                         math.ceil(s.micro_batch * s.spg * s.train_gpus / engines), m.max_position,
                         VLLM_SERVER_MAX_NUM_SEQS)
        out.update({f"server_{k}": v for k, v in e.items()})
        total = train_phase
    elif s.stage == "bpo":  # transformers generate on the training GPU
        seqs = s.micro_batch * s.spg
        out["generate_kv_cache"] = kv_cache_bytes(m, seqs * (s.prompt + s.max_completion), sequences=seqs) / GiB
        out["generate_prefill"] = seqs * s.prompt * (4 * m.hidden + 6 * m.intermediate) / GiB
        gathered = 2 * P * (1 - 1 / n) / GiB if s.sharded and s.method == "full" else 0.0
        out["generate_gathered_params"] = gathered
        gen_phase = static + out["generate_kv_cache"] + out["generate_prefill"] + gathered
        total = max(train_phase, gen_phase)
    else:
        total = train_phase
    if gen_phase is not None:
        out["generation_phase"] = gen_phase
    out["total"] = total
    fits = total <= FIT_FRACTION * s.gpu.mem_gib
    for prefix in ("vllm_", "server_"):
        if f"{prefix}starts" in out:
            fits = fits and out[f"{prefix}starts"] and out[f"{prefix}concurrent"] > 0
    out["fits"] = fits
    return out


def step_time(s: Setup) -> dict:
    """Seconds per optimizer step: training, generation, weight sync."""
    m = model_stats(s.model)
    Nc = m.compute_params
    tokens = s.sequences * s.padded_len
    backward = 4 if s.method == "full" else 2
    passes = 2 + backward + (2 if s.gradient_checkpointing else 0)
    extra = 0
    if s.stage == "bpo":
        old_logps = (s.use_vllm and s.importance_sampling) or s.grad_accum % (s.spg * s.num_iterations) != 0
        extra = (1 if old_logps else 0) + (1 if s.beta > 0 else 0)
    train_flops = passes * Nc * tokens + 2 * extra * Nc * tokens / s.num_iterations
    t_train = train_flops / (s.train_gpus * s.gpu.bf16_tflops * 1e12 * MFU_TRAIN)
    out = {"tokens_per_step": tokens, "extra_forwards": extra, "train_s": t_train, "generation_s": 0.0,
           "generation_bound": "", "waves": 0, "sync_s": 0.0}
    if s.stage == "bpo":
        mem = memory(s)
        per_step = s.generations_per_step
        if s.use_vllm:
            colocate = s.vllm_mode == "colocate"
            prefix, gpus = ("vllm_", s.vllm_tp) if colocate else ("server_", s.server_tp or s.server_gpus)
            seqs, concurrent = mem[f"{prefix}rollouts"], max(1, mem[f"{prefix}concurrent"])
            waves = math.ceil(seqs / concurrent)
            gen_flops = 2 * Nc * seqs * (s.prompt + s.mean_completion)
            t_compute = gen_flops / (gpus * s.gpu.bf16_tflops * 1e12 * MFU_GEN)
            per_decode = (2 * m.params + kv_cache_bytes(m, concurrent * (s.prompt + s.max_completion / 2),
                                                        sequences=concurrent)) / gpus
            t_memory = waves * s.max_completion * per_decode / (s.gpu.hbm_tb_s * 1e12 * HBM_EFFICIENCY)
            link = NVLINK_GB_S if s.vllm_mode == "colocate" else IB_GB_S
            out["sync_s"] = 2 * m.params / (link * 1e9) * math.ceil(per_step)
        else:
            seqs, waves = s.micro_batch * s.spg, 1
            t_compute = 2 * Nc * seqs * (s.prompt + s.max_completion) / (s.gpu.bf16_tflops * 1e12 * MFU_GEN)
            per_decode = 2 * m.params + kv_cache_bytes(m, seqs * (s.prompt + s.max_completion / 2), sequences=seqs)
            t_memory = s.max_completion * max(per_decode / (s.gpu.hbm_tb_s * 1e12 * HBM_EFFICIENCY), HF_DECODE_STEP_S)
        out["generation_s"] = max(t_compute, t_memory) * per_step
        out["generation_bound"] = "memory" if t_memory >= t_compute else "compute"
        if not s.use_vllm and t_memory >= t_compute and s.max_completion * HF_DECODE_STEP_S >= t_memory * 0.999:
            out["generation_bound"] = "latency"
        out["waves"] = waves
    out["total_s"] = out["train_s"] + out["generation_s"] + out["sync_s"]
    return out


# --------------------------------------------------------------------------------------------- the table


def _strategy_text(s: Setup) -> str:
    if s.distributed == "DEEPSPEED":
        return f"ZeRO-{s.zero_stage}"
    return {"FSDP": "FSDP", "MULTI_GPU": "DDP"}.get(s.distributed, "single process")


def _method_text(s: Setup) -> str:
    if s.method == "full":
        return "full FT"
    m = model_stats(s.model)
    targets = lora_targets(m, s.lora_target_modules, s.peft_preset)
    vision = sum(1 for t in targets if t[3] in ("vision", "projector"))
    what = f"preset {s.peft_preset}" if s.peft_preset else f"{len(targets)} layers"
    return (f"{'QLoRA' if s.method == 'qlora' else 'LoRA'} r={s.lora_rank} ({what}"
            + (f", {vision} in the vision tower" if vision and not s.peft_preset else "") + ")")


def _generation_text(s: Setup) -> str:
    if s.stage != "bpo":
        return ""
    if not s.use_vllm:
        return "transformers generate"
    if s.vllm_mode == "colocate":
        return f"vLLM colocate {s.vllm_util:.2f}" + (" + sleep" if s.vllm_sleep else "")
    return f"vLLM server TP={s.server_gpus}"


def title(s: Setup) -> str:
    parts = [f"{SHORT_NAME[s.model]} {s.stage.upper()}", _method_text(s), _strategy_text(s)]
    if s.stage == "bpo":
        parts.append(_generation_text(s))
        if s.beta > 0:
            parts.append(f"beta {s.beta:g} ({'reference model' if s.ref_model_copy else 'adapter-off reference'})")
    return ", ".join(parts)


def _gpus_text(s: Setup) -> str:
    g = f"{s.train_gpus} x {s.gpu.name}"
    if s.stage == "bpo" and s.use_vllm and s.vllm_mode == "server":
        g += f" + {s.server_gpus} x {s.gpu.name} (vLLM server)"
    return g


def _states(mem: dict) -> float:
    return sum(mem.get(k, 0.0) for k in ("weights", "gradients", "optimizer_states", "adapters", "zero3_live_params",
                                          "reference_model", "runtime_overhead"))


def memory_text(s: Setup, mem: dict) -> str:
    states, act = _states(mem), mem["activations"] + mem["lm_head"]
    ref = f" (incl. reference {mem['reference_model']:.1f})" if "reference_model" in mem else ""
    head = f"{states:.1f}{ref} + {act:.1f}"
    peak = f"**{mem['total']:.1f} GiB**"
    if "vllm_budget" in mem:
        txt = (f"{head} + vLLM {mem['vllm_budget']:.1f} = {peak}" + (" (sleep mode: the larger phase)"
                                                                     if s.vllm_sleep else ""))
        txt += (f"; KV cache {max(mem['vllm_kv_capacity'], 0):.1f} GiB holds {mem['vllm_concurrent']} of "
                f"{mem['vllm_rollouts']} rollouts")
        if not mem["vllm_starts"]:
            txt += f"; vLLM cannot start: max_model_len {mem['vllm_max_model_len']} does not fit its KV cache"
        return txt
    if "server_budget" in mem:
        return (f"{head} + 0 = {peak}; vLLM server GPUs {mem['server_budget']:.1f} GiB, KV cache "
                f"{mem['server_kv_capacity']:.1f} GiB holds {mem['server_concurrent']} of {mem['server_rollouts']} "
                f"rollouts")
    if "generate_kv_cache" in mem:
        gen = mem["generate_kv_cache"] + mem["generate_prefill"] + mem["generate_gathered_params"]
        return (f"{head}; generate: {states:.1f} + {gen:.1f} (KV cache, prefill) = {peak} (the larger phase)")
    return f"{head} = {peak}"


def tokens_text(s: Setup, t: dict) -> str:
    k = f"{t['tokens_per_step'] / 1e3:.0f} k"
    if s.stage == "bpo":
        return f"{k} ({s.prompts_per_step:g} prompts x {s.num_generations})"
    return f"{k} ({s.sequences} x {s.seq_len}{' assumed' if s.seq_len_assumed else ''})"


def time_text(s: Setup, t: dict) -> str:
    if s.stage == "sft":
        return f"**{t['total_s']:.0f} s**"
    waves = f", {t['waves']} waves" if t["waves"] > 1 else ""
    return (f"{t['train_s']:.0f} + {t['generation_s']:.0f} ({t['generation_bound']}-bound{waves}) + "
            f"{t['sync_s']:.1f} = **{t['total_s']:.0f} s**")


def table(rows: list[Setup] | None = None) -> str:
    rows = setups() if rows is None else rows
    out = [
        "| config | setup | GPUs | params (vision) | memory per training GPU: model states + activations "
        "(+ generation) = peak | fits | tokens / step | step time: train + generation + weight sync |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        m, mem, t = model_stats(s.model), memory(s), step_time(s)
        vision = f"{m.vision_params / 1e9:.2f} B" if m.vision_params else "text"
        out.append(
            f"| `{s.key}` | {title(s)} | {_gpus_text(s)} | {m.params / 1e9:.2f} B ({vision}) | {memory_text(s, mem)} | "
            f"{'yes' if mem['fits'] else 'NO'} | {tokens_text(s, t)} | {time_text(s, t)} |"
        )
    return "\n".join(out)


def row_settings(s: Setup) -> str:
    procs = f"{s.train_gpus} process{'es' if s.train_gpus > 1 else ''}"
    parts = [f"b={s.micro_batch}", f"grad_accum={s.grad_accum}", f"{procs} ({s.strategy})"]
    if s.stage == "bpo":
        parts += [f"num_generations={s.num_generations}", f"steps_per_generation={s.spg}",
                  f"prompt {s.prompt} (assumed)", f"max_completion {s.max_completion}",
                  f"mean completion {s.mean_completion:.0f} (assumed)", f"beta={s.beta:g}"]
        if s.use_vllm and s.vllm_mode == "colocate":
            parts.append(f"vllm_gpu_memory_utilization={s.vllm_util:g}"
                         + (f", vllm_max_model_length={s.vllm_max_model_len}" if s.vllm_max_model_len else ""))
    else:
        parts.append(f"max_length {'null (4096 assumed)' if s.seq_len_assumed else s.seq_len}"
                     + (", packing" if s.packing else ""))
    return f"- `{s.key}`: " + ", ".join(parts) + f"; `{s.launch}`"


def footer(rows: list[Setup] | None = None) -> str:
    rows = setups() if rows is None else rows
    lines = ["Per row, from its YAML (b = per_device_train_batch_size) and launch command:"]
    lines += [row_settings(s) for s in rows]
    lines.append(
        "Method: parameters counted exactly on the meta device; model states 16 B/param under DeepSpeed (bf16 + fp32 "
        "master and Adam, sharded by ZeRO), 8 B/param for a bf16 model without DeepSpeed (AdamW moments in bf16), "
        "LoRA adapters 16 B/param on a frozen bf16 base; beta > 0 adds TRL's reference model (2 B/param, sharded "
        "under ZeRO-3; none with LoRA, whose reference is the adapter-disabled base) and its forward pass; "
        "activations with gradient checkpointing (2 h T L + one recomputed layer), TRL 1.16's fused LM head (no "
        "full logits); BPO micro-batches padded to prompt + max_completion_length; vLLM colocate holds "
        f"vllm_gpu_memory_utilization of the card (weights + {VLLM_OVERHEAD_GIB} GiB + KV cache), a vLLM server "
        f"{VLLM_SERVER_UTILIZATION} of each GPU; {RUNTIME_OVERHEAD_GIB:.0f} GiB runtime overhead per process; fits = "
        f"at most {FIT_FRACTION:.0%} of the card.")
    lines.append(
        f"Assumed: training MFU {MFU_TRAIN:.0%} and generation MFU {MFU_GEN:.0%} of dense bf16 peak "
        f"({RTX_24GB.name}: {RTX_24GB.bf16_tflops:.0f} TFLOPS, {RTX_24GB.hbm_tb_s} TB/s; {H100_80GB.name}: "
        f"{H100_80GB.bf16_tflops:.0f} TFLOPS, {H100_80GB.hbm_tb_s} TB/s), decode at {HBM_EFFICIENCY:.0%} of HBM "
        f"bandwidth and at least {HF_DECODE_STEP_S * 1e3:.0f} ms per transformers decode step, weight sync at "
        f"{NVLINK_GB_S:.0f} GB/s (NVLink) / {IB_GB_S:.0f} GB/s (InfiniBand); prompts {PROMPT_TOKENS['vision']} tokens "
        f"with an image, {PROMPT_TOKENS['text']} without; thinking rollouts {THINK_FILL:.0%} of max_completion_length "
        f"and non-thinking ones {NONTHINK_TOKENS} tokens on average; SFT rows {SFT_UNBOUNDED_LENGTH} tokens when "
        f"max_length is null; the auto-mode probe, evaluation and checkpointing are not counted."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--details", action="store_true", help="print every memory and time term")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository whose recipes/ to read")
    args = parser.parse_args(argv)
    rows = setups(args.root)
    print(table(rows))
    print()
    print(footer(rows))
    if args.details:
        for s in rows:
            print(f"\n{s.key}: {title(s)}")
            for k, v in {**memory(s), **step_time(s)}.items():
                print(f"  {k:<28} {v:.3f}" if isinstance(v, float) else f"  {k:<28} {v}")
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    sys.exit(main())
