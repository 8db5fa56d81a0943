#!/usr/bin/env python
"""Memory per GPU and BPO step time for the shipped scaling setups, from first principles (reproducible arithmetic,
not measurements).

    python scripts/hardware_estimates.py            # the table (markdown)
    python scripts/hardware_estimates.py --details  # every term of every row

Method (all sizes in GiB = 2**30 bytes):

* **Parameters** are counted exactly by building each architecture on the meta device from its published config
  (no weights are loaded). ``N_c`` (parameters doing matmuls per token) excludes the input embedding.
* **Model states** (mixed-precision AdamW): full fine-tuning keeps bf16 weights (2 B) + bf16 grads (2 B) + fp32 master
  weights and Adam moments (12 B) = 16 B/param; ZeRO-3 shards all of it over the data-parallel GPUs (16 P / n),
  ZeRO-2 shards grads and optimizer (2 P + 14 P / n), DDP none. ZeRO-3 adds up to 1e9 live gathered bf16 parameters
  (``stage3_max_live_parameters``). LoRA: frozen bf16 base (2 P) + fp32 adapters with grads and Adam (16 B each).
  A reference model (only when ``beta > 0`` on a full fine-tune) would add 2 P (/ n with ZeRO-3); the rows assume
  TRL's default ``beta = 0``.
* **Activations** with gradient checkpointing and flash attention, for one micro-batch of ``T = b * (prompt +
  max_completion)`` tokens: the checkpointed layer inputs ``2 * h * T * L`` bytes, plus one layer being recomputed,
  ``(15 h + 4.75 I) * T`` bytes (Korthikanti et al. 2022's 34 h per token per layer with the MLP term scaled from 4 h
  to the model's intermediate size I), plus the logits of the completion tokens: bf16 logits, their gradient and
  TRL's fp32 log-softmax, ``8 * V * b * max_completion`` bytes. The vision tower's activations are ignored (a few
  hundred image tokens).
* **vLLM**: its own bf16 copy of the weights (2 P / TP) + the KV cache of every sequence it generates at once,
  ``2 * layers * kv_heads * head_dim * 2 bytes * tokens`` (tokens = sequences x (prompt + max_completion)) + 1.5 GiB
  (CUDA graphs, activations for ``max_num_batched_tokens = 4096``). With ``vllm_enable_sleep_mode`` vLLM's memory is
  released during the training phase, so the peak is the larger phase instead of the sum.
* **Overhead**: 2 GiB per training process (CUDA context, NCCL buffers, allocator fragmentation). "Fits" means
  at most 95 % of the card.
* **Step time** of one optimizer step (one generation per step, TRL's default ``steps_per_generation =
  gradient_accumulation_steps``), stages run one after the other:
  - training: ``(2 forward + 4 backward, or 2 with a frozen LoRA base, + 2 recompute) * N_c * tokens`` plus
    ``2 * N_c * tokens`` for the extra no-grad forward that TRL runs for vLLM's importance-sampling correction
    (default on), at the assumed MFU (35 % of dense bf16 peak); tokens = sequences x (prompt + mean completion);
  - generation: the larger of compute (``2 * N_c`` per prefilled or generated token at 30 % MFU) and memory
    bandwidth (each of ``max_completion`` decode steps reads the weights and the average KV cache, at 60 % of HBM
    bandwidth): the longest rollout sets the wall time;
  - weight sync (TRL merges LoRA, gathers ZeRO-3 shards, and pushes 2 P bytes to vLLM): over NVLink (~150 GB/s
    effective) in colocate mode, over InfiniBand (25 GB/s, 200 Gb/s) to a server on another node.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from functools import lru_cache

GiB = 2**30


@dataclass(frozen=True)
class GPU:
    name: str
    mem_gib: float
    bf16_tflops: float  # dense
    hbm_tb_s: float


RTX_24GB = GPU("24 GB card (RTX 4090-class)", 24.0, 165.0, 1.0)
H100_80GB = GPU("H100 SXM 80 GB", 80.0, 989.0, 3.35)

MFU_TRAIN = 0.35
MFU_GEN = 0.30
HBM_EFFICIENCY = 0.60
NVLINK_GB_S = 150.0
IB_GB_S = 25.0
RUNTIME_OVERHEAD_GIB = 2.0
VLLM_OVERHEAD_GIB = 1.5
ZERO3_LIVE_PARAMS = 1e9
FIT_FRACTION = 0.95

# Published configs (config.json on the Hub) of the models the recipes target.
ARCH = {
    "Qwen2.5-VL-3B-Instruct": dict(
        kind="qwen2_5_vl",
        text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                    patch_size=14, window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
        tie=True,
    ),
    "Qwen3-VL-8B-Instruct": dict(
        kind="qwen3_vl",
        text=dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                   "mrope_interleaved": True}),
        vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                    patch_size=16, num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24]),
        tie=False,
    ),
    "Qwen3-4B": dict(
        kind="qwen3",
        text=dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True),
        tie=True,
    ),
}


@dataclass(frozen=True)
class ModelStats:
    name: str
    params: int
    vision_params: int
    compute_params: int  # N_c: everything but the input embedding
    lm_linear_shapes: tuple  # (in, out) of the LM projections LoRA targets
    hidden: int
    intermediate: int
    layers: int
    kv_heads: int
    head_dim: int
    vocab: int


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
        else:
            from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

            model = Qwen3VLForConditionalGeneration(
                Qwen3VLConfig(text_config=spec["text"], vision_config=spec["vision"], tie_word_embeddings=spec["tie"]))
    params = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    embed = model.get_input_embeddings().weight.numel()
    modules = dict(model.named_modules())
    shapes = tuple((modules[n].in_features, modules[n].out_features)
                   for n in classify_linear_modules(model)["language"])
    t = spec["text"]
    head_dim = t.get("head_dim", t["hidden_size"] // t["num_attention_heads"])
    return ModelStats(
        name=name, params=params, vision_params=vision,
        compute_params=params - embed if not spec["tie"] else params,
        lm_linear_shapes=shapes, hidden=t["hidden_size"], intermediate=t["intermediate_size"],
        layers=t["num_hidden_layers"], kv_heads=t["num_key_value_heads"], head_dim=head_dim, vocab=t["vocab_size"],
    )


def kv_cache_bytes(stats: ModelStats, tokens: float, bytes_per_value: int = 2) -> float:
    """K and V for every layer: 2 x layers x kv_heads x head_dim x bytes x tokens."""
    return 2 * stats.layers * stats.kv_heads * stats.head_dim * bytes_per_value * tokens


def lora_params(stats: ModelStats, rank: int) -> int:
    return sum(rank * (i + o) for i, o in stats.lm_linear_shapes)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    model: str
    method: str  # "lora" or "full"
    gpu: GPU
    train_gpus: int
    strategy: str  # accelerate config
    vllm_mode: str  # "colocate" or "server"
    prompt: int  # prompt tokens (image tokens included)
    max_completion: int
    mean_completion: int  # BPO: half thinking (long), half non-thinking (short)
    num_generations: int
    prompts_per_step: int
    micro_batch: int  # per_device_train_batch_size
    lora_rank: int = 16
    zero_stage: int = 0
    vllm_sleep: bool = False
    server_gpus: int = 0  # GPUs of the vLLM server (tensor parallel)
    server_gpu: GPU | None = None
    ref_model: bool = False
    launch: str = ""
    notes: tuple = field(default_factory=tuple)

    @property
    def sequences(self) -> int:
        return self.prompts_per_step * self.num_generations

    @property
    def seqs_per_gpu(self) -> int:
        return self.sequences // self.train_gpus

    @property
    def grad_accum(self) -> int:
        return self.seqs_per_gpu // self.micro_batch


SCENARIOS = [
    Scenario(
        key="vl3b_lora_1x24",
        title="Qwen2.5-VL-3B, LoRA (lora_lm, r=16), 1 GPU, vLLM colocate + sleep mode",
        model="Qwen2.5-VL-3B-Instruct", method="lora", gpu=RTX_24GB, train_gpus=1, strategy="single_gpu",
        vllm_mode="colocate", vllm_sleep=True, prompt=1024, max_completion=2048, mean_completion=1024,
        num_generations=8, prompts_per_step=2, micro_batch=1, lora_rank=16,
        launch="accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/bpo.py --config ... "
               "--use_vllm true --vllm_mode colocate --vllm_enable_sleep_mode true",
    ),
    Scenario(
        key="vl8b_full_8x80",
        title="Qwen3-VL-8B, full fine-tune, ZeRO-3, 8 GPUs, vLLM colocate",
        model="Qwen3-VL-8B-Instruct", method="full", gpu=H100_80GB, train_gpus=8, strategy="zero3", zero_stage=3,
        vllm_mode="colocate", prompt=1024, max_completion=4096, mean_completion=2048,
        num_generations=8, prompts_per_step=8, micro_batch=2,
        launch="accelerate launch --config_file accelerate_configs/zero3.yaml recipes/bpo.py --config ... "
               "--use_vllm true --vllm_mode colocate",
    ),
    Scenario(
        key="q4b_full_8x80",
        title="Qwen3-4B (text), full fine-tune, ZeRO-3, 8 GPUs, vLLM colocate",
        model="Qwen3-4B", method="full", gpu=H100_80GB, train_gpus=8, strategy="zero3", zero_stage=3,
        vllm_mode="colocate", prompt=512, max_completion=8192, mean_completion=3072,
        num_generations=16, prompts_per_step=8, micro_batch=2,
        launch="accelerate launch --config_file accelerate_configs/zero3.yaml recipes/bpo.py --config ... "
               "--use_vllm true --vllm_mode colocate",
    ),
    Scenario(
        key="vl8b_full_2x8_server",
        title="Qwen3-VL-8B, full fine-tune, ZeRO-3, 2 nodes x 8 GPUs + 1 vLLM server node (TP=8)",
        model="Qwen3-VL-8B-Instruct", method="full", gpu=H100_80GB, train_gpus=16, strategy="multi_node",
        zero_stage=3, vllm_mode="server", server_gpus=8, server_gpu=H100_80GB, prompt=1024, max_completion=4096,
        mean_completion=2048, num_generations=8, prompts_per_step=16, micro_batch=2,
        launch="sbatch --nodes=3 slurm/bpo_multinode.slurm --config ... --tp 8",
    ),
]


def memory(s: Scenario) -> dict:
    """Per-GPU memory terms in GiB for a training GPU (and the server GPUs when there are any)."""
    m = model_stats(s.model)
    P = m.params
    n = s.train_gpus if s.zero_stage else 1
    out = {}
    if s.method == "lora":
        out["weights"] = 2 * P / GiB
        out["optimizer_states"] = 16 * lora_params(m, s.lora_rank) / GiB
    else:
        if s.zero_stage == 3:
            out["weights"] = 2 * P / n / GiB
            out["optimizer_states"] = 14 * P / n / GiB
            out["zero3_live_params"] = 2 * min(ZERO3_LIVE_PARAMS, P) / GiB
        elif s.zero_stage == 2:
            out["weights"] = 2 * P / GiB
            out["optimizer_states"] = 14 * P / n / GiB
        else:
            out["weights"] = 2 * P / GiB
            out["optimizer_states"] = 14 * P / GiB
        if s.ref_model:
            out["reference_model"] = 2 * P / (n if s.zero_stage == 3 else 1) / GiB
    tokens = s.micro_batch * (s.prompt + s.max_completion)
    out["activations"] = (2 * m.hidden * tokens * m.layers + (15 * m.hidden + 4.75 * m.intermediate) * tokens) / GiB
    out["logits"] = 8 * m.vocab * s.micro_batch * s.max_completion / GiB
    out["runtime_overhead"] = RUNTIME_OVERHEAD_GIB
    train_phase = sum(out.values())
    static = train_phase - out["activations"] - out["logits"]
    if s.vllm_mode == "colocate":
        kv = kv_cache_bytes(m, s.seqs_per_gpu * (s.prompt + s.max_completion)) / GiB
        out["vllm_weights"] = 2 * P / GiB
        out["vllm_kv_cache"] = kv
        out["vllm_overhead"] = VLLM_OVERHEAD_GIB
        vllm_total = out["vllm_weights"] + kv + VLLM_OVERHEAD_GIB
        out["vllm_gpu_memory_utilization"] = math.ceil(vllm_total / s.gpu.mem_gib * 20) / 20
        total = max(train_phase, static + vllm_total) if s.vllm_sleep else train_phase + vllm_total
    else:
        total = train_phase
        tp = s.server_gpus
        out["server_weights"] = 2 * P / tp / GiB
        out["server_kv_cache"] = kv_cache_bytes(m, s.sequences * (s.prompt + s.max_completion)) / tp / GiB
        out["server_total"] = out["server_weights"] + out["server_kv_cache"] + VLLM_OVERHEAD_GIB
    out["total"] = total
    out["fits"] = total <= FIT_FRACTION * s.gpu.mem_gib and (
        s.vllm_mode != "server" or out["server_total"] <= FIT_FRACTION * s.server_gpu.mem_gib)
    return out


def step_time(s: Scenario) -> dict:
    """Seconds per optimizer step: training, generation, weight sync."""
    m = model_stats(s.model)
    Nc = m.compute_params
    tokens = s.sequences * (s.prompt + s.mean_completion)
    backward = 2 if s.method == "lora" else 4
    extra_forwards = 1 + (1 if s.ref_model else 0)  # IS-correction logps (+ reference model)
    train_flops = (2 + backward + 2 + 2 * extra_forwards) * Nc * tokens
    t_train = train_flops / (s.train_gpus * s.gpu.bf16_tflops * 1e12 * MFU_TRAIN)

    if s.vllm_mode == "colocate":
        gen_gpu, gen_gpus, seqs = s.gpu, 1, s.seqs_per_gpu  # every GPU generates its own share in parallel
    else:
        gen_gpu, gen_gpus, seqs = s.server_gpu, s.server_gpus, s.sequences  # one TP group generates everything
    gen_flops = 2 * Nc * seqs * (s.prompt + s.mean_completion)
    t_gen_compute = gen_flops / (gen_gpus * gen_gpu.bf16_tflops * 1e12 * MFU_GEN)
    bytes_per_decode_step = (2 * m.params + kv_cache_bytes(m, seqs * (s.prompt + s.max_completion / 2))) / gen_gpus
    t_gen_memory = s.max_completion * bytes_per_decode_step / (gen_gpu.hbm_tb_s * 1e12 * HBM_EFFICIENCY)
    t_gen = max(t_gen_compute, t_gen_memory)

    link = NVLINK_GB_S if s.vllm_mode == "colocate" else IB_GB_S
    t_sync = 2 * m.params / (link * 1e9)
    return {
        "tokens_per_step": tokens,
        "train_s": t_train,
        "generation_s": t_gen,
        "generation_bound": "memory" if t_gen_memory >= t_gen_compute else "compute",
        "sync_s": t_sync,
        "total_s": t_train + t_gen + t_sync,
    }


def _gpus(s: Scenario) -> str:
    g = f"{s.train_gpus} x {s.gpu.name}"
    if s.vllm_mode == "server":
        g += f" + {s.server_gpus} x {s.server_gpu.name} (vLLM server)"
    return g


def table() -> str:
    rows = [
        "| setup | GPUs | params (vision) | memory per training GPU: model states + activations & logits + vLLM "
        "= peak | fits | tokens / step | step time: train + generation + weight sync |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in SCENARIOS:
        m, mem, t = model_stats(s.model), memory(s), step_time(s)
        states = sum(mem.get(k, 0) for k in ("weights", "optimizer_states", "zero3_live_params", "reference_model",
                                               "runtime_overhead"))
        act = mem["activations"] + mem["logits"]
        if s.vllm_mode == "colocate":
            vllm = mem["vllm_weights"] + mem["vllm_kv_cache"] + mem["vllm_overhead"]
            mem_text = (f"{states:.1f} + {act:.1f} + {vllm:.1f} = **{mem['total']:.1f} GiB**"
                        + (" (sleep mode: the larger phase)" if s.vllm_sleep else "")
                        + f"; vllm_gpu_memory_utilization {mem['vllm_gpu_memory_utilization']:.2f}")
        else:
            mem_text = (f"{states:.1f} + {act:.1f} + 0 = **{mem['total']:.1f} GiB**; vLLM server GPUs "
                        f"{mem['server_total']:.1f} GiB")
        vision = f"{m.vision_params / 1e9:.2f} B" if m.vision_params else "text"
        rows.append(
            f"| {s.title} | {_gpus(s)} | {m.params / 1e9:.2f} B ({vision}) | {mem_text} | "
            f"{'yes' if mem['fits'] else 'NO'} | {t['tokens_per_step'] / 1e3:.0f} k "
            f"({s.prompts_per_step} prompts x {s.num_generations}) | {t['train_s']:.0f} + {t['generation_s']:.0f} "
            f"({t['generation_bound']}-bound) + {t['sync_s']:.1f} = **{t['total_s']:.0f} s** |"
        )
    return "\n".join(rows)


def assumptions() -> str:
    lines = ["Per-row settings (per_device_train_batch_size b, gradient accumulation, prompt / max / mean completion):"]
    for s in SCENARIOS:
        lines.append(
            f"- {s.key}: b={s.micro_batch}, grad_accum={s.grad_accum}, num_generations={s.num_generations}, "
            f"prompt {s.prompt}, max_completion {s.max_completion}, mean completion {s.mean_completion}"
            + (f", LoRA r={s.lora_rank}" if s.method == "lora" else "") + f"; `{s.launch}`"
        )
    lines.append(
        f"Assumed: training MFU {MFU_TRAIN:.0%} and generation MFU {MFU_GEN:.0%} of dense bf16 peak "
        f"({RTX_24GB.name}: {RTX_24GB.bf16_tflops:.0f} TFLOPS, {RTX_24GB.hbm_tb_s} TB/s; {H100_80GB.name}: "
        f"{H100_80GB.bf16_tflops:.0f} TFLOPS, {H100_80GB.hbm_tb_s} TB/s), decode at {HBM_EFFICIENCY:.0%} of HBM "
        f"bandwidth, weight sync at {NVLINK_GB_S:.0f} GB/s (NVLink) / {IB_GB_S:.0f} GB/s (InfiniBand), "
        f"beta = 0 (no reference model), gradient checkpointing on, flash attention."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--details", action="store_true", help="print every memory and time term")
    args = parser.parse_args(argv)
    print(table())
    print()
    print(assumptions())
    if args.details:
        for s in SCENARIOS:
            print(f"\n{s.key}")
            for k, v in {**memory(s), **step_time(s)}.items():
                print(f"  {k:<28} {v:.3f}" if isinstance(v, float) else f"  {k:<28} {v}")
    return 0


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
