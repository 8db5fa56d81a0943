"""scripts/hardware_estimates.py: every shipped GPU recipe YAML gets a row computed from its own values and launch
command, parameter counts match the published model sizes, the memory / time terms follow the stated formulas
(reference model for beta > 0, SFT without generation), and every shipped setup fits its GPUs."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "hardware_estimates.py"
spec = importlib.util.spec_from_file_location("hardware_estimates", SCRIPT)
he = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = he
spec.loader.exec_module(he)

GiB = 2**30
VL8B_BPO = "recipes/qwen3-vl-8b/bpo/full_zero3_colocate.yaml"
VL3B_BPO = "recipes/qwen2.5-vl-3b/bpo/lora_24gb.yaml"

SFT_FULL = """\
# Annealing, full fine-tune with ZeRO-3 on 8 GPUs:
#   accelerate launch --config_file accelerate_configs/zero3.yaml recipes/sft.py \\
#       --config recipes/qwen3-vl-8b/sft/x.yaml
model_name_or_path: Qwen/Qwen3-VL-8B-Instruct
dtype: bfloat16
max_length: 8192
per_device_train_batch_size: 2
gradient_accumulation_steps: 4
gradient_checkpointing: true
"""
SFT_LORA = """\
# LoRA annealing on one 24 GB GPU:
#   accelerate launch recipes/sft.py --config recipes/qwen2.5-vl-3b/sft/x.yaml
model_name_or_path: Qwen/Qwen2.5-VL-3B-Instruct
dtype: bfloat16
use_peft: true
lora_r: 64
lora_target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
packing: false
max_length: null
per_device_train_batch_size: 2
gradient_accumulation_steps: 16
"""


def _shipped(stage=None):
    return [p for p in sorted((ROOT / "recipes").glob("*/*/*.yaml"))
            if p.parent.name in ("sft", "bpo") and p.parent.parent.name not in ("tiny", "demo")
            and (stage is None or p.parent.name == stage)]


def _rel(p):
    return str(p.relative_to(ROOT))


def _edited(tmp_path, config, **changes):
    """A copy of a shipped YAML (same model directory and stage, same header) with some keys changed."""
    src = ROOT / config
    dst = tmp_path / "recipes" / src.parent.parent.name / src.parent.name / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    text = src.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    cfg = {**yaml.safe_load(text), **changes}
    dst.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return dst


def _write(tmp_path, rel, text):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------- rows from the YAMLs


def test_every_shipped_gpu_yaml_has_a_row():
    shipped = _shipped()
    assert shipped, "no GPU recipes found"
    sources = [s.source for s in he.setups()]
    for p in shipped:
        assert _rel(p) in sources, f"{_rel(p)} has no row"
    assert {s.source for s in he.setups()} <= {_rel(p) for p in shipped}
    assert not any("/tiny/" in s or "/demo/" in s for s in sources)


def test_every_recipe_directory_maps_to_an_architecture():
    for p in _shipped():
        model_dir = p.parent.parent.name
        assert model_dir in he.MODEL_FOR_DIR, f"add recipes/{model_dir} to MODEL_FOR_DIR"
        arch = he.MODEL_FOR_DIR[model_dir]
        name = str(yaml.safe_load(p.read_text())["model_name_or_path"])
        # a Hub id names the mapped architecture; a local path is the SFT output of the same directory
        if name.startswith("outputs/"):
            assert model_dir in name, (p, name)
        else:
            assert name.split("/")[-1].lower() == arch.lower(), (p, name, arch)


@pytest.mark.parametrize("path", _shipped(), ids=_rel)
def test_row_reads_its_yaml_and_launch_command(path):
    from accelerate.commands.config.config_args import load_config_from_file

    s = he.setup_from_yaml(path)
    cfg = yaml.safe_load(path.read_text())
    assert s.source == _rel(path) and s.stage == path.parent.name
    assert s.micro_batch == cfg["per_device_train_batch_size"]
    assert s.grad_accum == cfg.get("gradient_accumulation_steps", 1)
    header = he.header_comment(path.read_text())
    cmd = he.launch_command(header)
    assert cmd and str(path.name) in cmd
    if "--config_file" in cmd:
        config_file = cmd.split("--config_file")[1].split()[0]
        acc = load_config_from_file(str(ROOT / config_file))
        assert s.train_gpus == acc.num_processes and s.strategy == config_file
    else:
        assert s.train_gpus == 1
    if s.stage == "bpo":
        assert s.num_generations == cfg["num_generations"]
        assert s.max_completion == cfg["max_completion_length"]
        assert s.beta == cfg.get("beta", 0.001)  # BPOConfig's default
        assert s.use_vllm == cfg.get("use_vllm", False)
        if s.use_vllm:
            assert s.vllm_util == cfg.get("vllm_gpu_memory_utilization", 0.3)
            assert s.vllm_sleep == cfg.get("vllm_enable_sleep_mode", False)
    if cfg.get("use_peft"):
        assert s.method == "lora" and s.lora_rank == cfg.get("lora_r", 16)


def test_shipped_bpo_configs_carry_the_kl_term():
    for p in _shipped("bpo"):
        s = he.setup_from_yaml(p)
        assert s.beta > 0
        mem = he.memory(s)
        assert ("reference_model" in mem) == (s.method == "full")
        assert he.step_time(s)["extra_forwards"] >= 1


def test_changing_a_yaml_value_changes_the_row(tmp_path):
    base = he.setup_from_yaml(ROOT / VL8B_BPO)
    row = he.table([base])
    less_vllm = he.setup_from_yaml(_edited(tmp_path, VL8B_BPO, vllm_gpu_memory_utilization=0.35))
    assert he.table([less_vllm]) != row
    assert he.memory(less_vllm)["vllm_concurrent"] < he.memory(base)["vllm_concurrent"]
    assert he.step_time(less_vllm)["generation_s"] > he.step_time(base)["generation_s"]

    smaller = he.setup_from_yaml(_edited(tmp_path, VL8B_BPO, per_device_train_batch_size=4))
    assert he.memory(smaller)["activations"] == pytest.approx(he.memory(base)["activations"] / 2)
    assert he.step_time(smaller)["tokens_per_step"] == he.step_time(base)["tokens_per_step"] / 2

    longer = he.setup_from_yaml(_edited(tmp_path, VL8B_BPO, max_completion_length=8192))
    assert he.memory(longer)["activations"] > he.memory(base)["activations"]
    assert he.table([longer]) != row


def test_launch_command_sets_the_gpus(tmp_path):
    text = (ROOT / VL8B_BPO).read_text()
    on_four = _write(tmp_path, "recipes/qwen3-vl-8b/bpo/four.yaml",
                     text.replace("--config_file accelerate_configs/zero3.yaml",
                                  "--config_file accelerate_configs/zero3.yaml --num_processes 4"))
    s4, s8 = he.setup_from_yaml(on_four), he.setup_from_yaml(ROOT / VL8B_BPO)
    assert (s4.train_gpus, s8.train_gpus) == (4, 8)
    assert he.memory(s4)["optimizer_states"] == pytest.approx(2 * he.memory(s8)["optimizer_states"])
    zero2 = _write(tmp_path, "recipes/qwen3-vl-8b/bpo/z2.yaml", text.replace("zero3.yaml", "zero2.yaml"))
    s2 = he.setup_from_yaml(zero2)
    assert (s2.distributed, s2.zero_stage) == ("DEEPSPEED", 2)
    P = he.model_stats(s2.model).params
    assert he.memory(s2)["weights"] * GiB == pytest.approx(2 * P)  # ZeRO-2 replicates the weights
    assert he.memory(s2)["reference_model"] * GiB == pytest.approx(2 * P)  # and TRL's reference model


def test_new_configs_are_picked_up(tmp_path):
    for p in _shipped():
        _write(tmp_path, _rel(p), p.read_text())
    _write(tmp_path, "recipes/tiny/sft/tiny.yaml", "per_device_train_batch_size: 1\n")
    _write(tmp_path, "recipes/qwen3-4b/sft/new.yaml", SFT_FULL.replace("qwen3-vl-8b", "qwen3-4b"))
    found = [str(p.relative_to(tmp_path)) for p in he.shipped_configs(tmp_path)]
    assert "recipes/qwen3-4b/sft/new.yaml" in found and not any("tiny" in f for f in found)
    assert found.index("recipes/qwen3-4b/sft/new.yaml") < found.index("recipes/qwen3-4b/bpo/full.yaml")
    _write(tmp_path, "recipes/llama-9b/bpo/x.yaml", "per_device_train_batch_size: 1\n")
    with pytest.raises(KeyError, match="MODEL_FOR_DIR"):
        he.setup_from_yaml(tmp_path / "recipes/llama-9b/bpo/x.yaml")


# ------------------------------------------------------------------------------------------- the arithmetic


@pytest.mark.parametrize(
    "name, published_b, vision_b",
    [("Qwen2.5-VL-3B-Instruct", 3.75, 0.67), ("Qwen3-VL-8B-Instruct", 8.77, 0.58), ("Qwen3-4B", 4.02, 0.0)],
)
def test_parameter_counts_match_published_sizes(name, published_b, vision_b):
    m = he.model_stats(name)
    assert m.params / 1e9 == pytest.approx(published_b, rel=0.01)
    assert m.vision_params / 1e9 == pytest.approx(vision_b, abs=0.01)
    assert len(m.lm_linear_shapes) == 7 * m.layers


def test_kv_cache_and_lora_formulas():
    vl8 = he.model_stats("Qwen3-VL-8B-Instruct")
    # 2 (K and V) x 36 layers x 8 kv heads x 128 head_dim x 2 bytes
    assert he.kv_cache_bytes(vl8, 1) == 2 * 36 * 8 * 128 * 2 == 147456
    vl3 = he.model_stats("Qwen2.5-VL-3B-Instruct")
    assert he.kv_cache_bytes(vl3, 1000) == 2 * 36 * 2 * 128 * 2 * 1000
    # r=16 on q,k,v,o (2048->2048, 2048->256 x2, 2048->2048) and gate/up/down (2048<->11008), 36 layers
    per_layer = 16 * ((2048 + 2048) * 2 + (2048 + 256) * 2 + (2048 + 11008) * 3)
    assert he.lora_params(vl3, 16) == he.lora_params(vl3, 16, preset="lora_lm") == 36 * per_layer == 29_933_568
    # PEFT matches a suffix list anywhere: Qwen2.5-VL's vision blocks also have mlp.gate/up/down_proj (1280<->3420)
    suffixes = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    targets = he.lora_targets(vl3, suffixes)
    assert len(targets) == 7 * 36 + 3 * 32
    assert he.lora_params(vl3, 16, suffixes) == 36 * per_layer + 32 * 16 * (1280 + 3420) * 3
    assert len(he.lora_targets(vl3, ["q_proj", "v_proj"])) == 2 * 36


def test_zero3_shards_sixteen_bytes_per_parameter():
    s = he.setup_from_yaml(ROOT / VL8B_BPO)
    mem = he.memory(s)
    P = he.model_stats(s.model).params
    states = mem["weights"] + mem["gradients"] + mem["optimizer_states"]
    assert states * GiB == pytest.approx(16 * P / 8)
    two_nodes = he.memory(he.slurm_setup(VL8B_BPO, nodes=3, tp=8))
    assert two_nodes["optimizer_states"] == pytest.approx(mem["optimizer_states"] / 2)


def test_reference_model_for_full_fine_tuning_only(tmp_path):
    full = he.setup_from_yaml(ROOT / VL8B_BPO)
    full0 = he.setup_from_yaml(_edited(tmp_path, VL8B_BPO, beta=0.0))
    P = he.model_stats(full.model).params
    m1, m0 = he.memory(full), he.memory(full0)
    assert "reference_model" not in m0
    assert m1["reference_model"] * GiB == pytest.approx(2 * P / 8)  # bf16, sharded by ZeRO-3
    assert m1["train_phase"] - m0["train_phase"] == pytest.approx(m1["reference_model"])
    # one more forward pass per sequence: (2 fwd + 4 bwd + 2 recompute + 2 IS + 2 ref) vs (... + 2 IS)
    assert he.step_time(full)["train_s"] / he.step_time(full0)["train_s"] == pytest.approx(12 / 10)

    lora = he.setup_from_yaml(_edited(tmp_path, VL3B_BPO, use_vllm=False))
    lora0 = he.setup_from_yaml(_edited(tmp_path, VL3B_BPO, use_vllm=False, beta=0.0))
    assert lora.method == "lora" and lora.beta > 0
    l1, l0 = he.memory(lora), he.memory(lora0)
    assert "reference_model" not in l1 and l1["total"] == pytest.approx(l0["total"])  # adapter disabled = reference
    # LoRA without vLLM: (2 fwd + 2 bwd + 2 recompute + 2 ref) vs 6 (no importance-sampling forward)
    assert he.step_time(lora0)["extra_forwards"] == 0
    assert he.step_time(lora)["train_s"] / he.step_time(lora0)["train_s"] == pytest.approx(8 / 6)


@pytest.mark.parametrize("setup", he.setups(), ids=lambda s: s.key)
def test_shipped_setups_fit_and_batches_divide(setup):
    if setup.stage == "bpo":
        assert setup.sequences % setup.num_generations == 0
        assert setup.num_generations * setup.thinking_fraction == round(setup.num_generations * setup.thinking_fraction)
    mem = he.memory(setup)
    assert mem["fits"], mem
    t = he.step_time(setup)
    assert t["total_s"] == pytest.approx(t["train_s"] + t["generation_s"] + t["sync_s"])
    assert t["train_s"] > 0 and (t["generation_s"] > 0) == (setup.stage == "bpo")


def test_sleep_mode_peak_is_the_larger_phase():
    s = he.setup_from_yaml(ROOT / VL8B_BPO)
    u = yaml.safe_load((ROOT / VL8B_BPO).read_text())["vllm_gpu_memory_utilization"]
    assert s.vllm_sleep and s.vllm_util == u
    sleep, awake = he.memory(s), he.memory(dataclasses.replace(s, vllm_sleep=False))
    assert sleep["total"] == pytest.approx(max(sleep["train_phase"], sleep["generation_phase"]))
    assert awake["total"] == pytest.approx(sleep["train_phase"] + u * 80)
    # vLLM's own budget: bf16 weights + overhead + KV cache = vllm_gpu_memory_utilization x card
    assert sleep["vllm_weights"] + he.VLLM_OVERHEAD_GIB + sleep["vllm_kv_capacity"] == pytest.approx(u * 80)
    assert 0 < sleep["vllm_concurrent"] <= sleep["vllm_rollouts"] == s.micro_batch * s.grad_accum


def test_vllm_must_fit_one_max_model_len_sequence(tmp_path):
    s = he.setup_from_yaml(_edited(tmp_path, VL8B_BPO, vllm_max_model_length=None))
    mem = he.memory(s)  # Qwen3-VL's 262144-token context does not fit a 10 GiB KV cache
    assert not mem["vllm_starts"] and not mem["fits"]


def test_training_flops_follow_the_stated_method():
    s = he.setup_from_yaml(ROOT / VL8B_BPO)
    m = he.model_stats(s.model)
    tokens = s.sequences * (s.prompt + s.max_completion)  # padded to the longest completion
    # 2 forward + 4 backward + 2 recompute + 2 importance-sampling forward + 2 reference forward
    expected = 12 * m.compute_params * tokens / (8 * he.H100_80GB.bf16_tflops * 1e12 * he.MFU_TRAIN)
    assert he.step_time(s)["train_s"] == pytest.approx(expected)
    assert s.sequences == 8 * 8 * 8 and s.prompts_per_step == 64


def test_sft_rows_have_no_generation(tmp_path):
    full = he.setup_from_yaml(_write(tmp_path, "recipes/qwen3-vl-8b/sft/x.yaml", SFT_FULL))
    assert (full.stage, full.method, full.train_gpus, full.zero_stage) == ("sft", "full", 8, 3)
    m = he.model_stats(full.model)
    t = he.step_time(full)
    tokens = 2 * 4 * 8 * 8192
    assert t["tokens_per_step"] == tokens
    # 6 N tokens + 2 N tokens of recompute, no generation, no sync
    assert t["train_s"] == pytest.approx(8 * m.compute_params * tokens / (8 * 989e12 * he.MFU_TRAIN))
    assert t["generation_s"] == t["sync_s"] == 0
    mem = he.memory(full)
    assert "reference_model" not in mem and not any(k.startswith(("vllm", "server", "generate")) for k in mem)
    assert mem["total"] == pytest.approx(mem["train_phase"])

    lora = he.setup_from_yaml(_write(tmp_path, "recipes/qwen2.5-vl-3b/sft/x.yaml", SFT_LORA))
    assert (lora.method, lora.train_gpus, lora.gpu, lora.lora_rank) == ("lora", 1, he.RTX_24GB, 64)
    assert lora.seq_len == he.SFT_UNBOUNDED_LENGTH and lora.seq_len_assumed
    assert "assumed" in he.tokens_text(lora, he.step_time(lora))
    ml = he.model_stats(lora.model)
    assert he.step_time(lora)["train_s"] == pytest.approx(
        6 * ml.compute_params * 2 * 16 * 4096 / (he.RTX_24GB.bf16_tflops * 1e12 * he.MFU_TRAIN))
    assert he.memory(lora)["fits"]


def test_bf16_full_fine_tune_without_deepspeed_keeps_eight_bytes(tmp_path):
    text = SFT_FULL.replace("--config_file accelerate_configs/zero3.yaml ", "")
    s = he.setup_from_yaml(_write(tmp_path, "recipes/qwen3-4b/sft/one.yaml", text))
    assert (s.train_gpus, s.distributed) == (1, "NO")
    mem = he.memory(s)
    P = he.model_stats(s.model).params
    assert (mem["weights"] + mem["gradients"] + mem["optimizer_states"]) * GiB == pytest.approx(8 * P)


def test_multinode_row_comes_from_the_slurm_script():
    d = he.slurm_defaults()
    assert d == {"accelerate_config": "accelerate_configs/multi_node.yaml", "gpus_per_node": 8,
                 "overrides": {"use_vllm": "true", "vllm_mode": "server"}}
    s = next(s for s in he.setups() if "slurm" in s.key)
    assert s.source == VL8B_BPO and s.launch.startswith("sbatch --nodes=3 slurm/bpo_multinode.slurm")
    assert (s.train_gpus, s.server_gpus, s.vllm_mode, s.use_vllm) == (16, 8, "server", True)
    mem = he.memory(s)
    assert mem["server_budget"] == pytest.approx(0.9 * 80)
    assert he.step_time(s)["sync_s"] == pytest.approx(2 * he.model_stats(s.model).params / (he.IB_GB_S * 1e9))


def test_cli_prints_table(capsys):
    assert he.main([]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| `recipes/")]
    assert len(rows) == len(he.setups()) == len(_shipped()) + len(he.SLURM_ROWS)
    assert all("| yes |" in r and " s** |" in r for r in rows)
    assert "Assumed: training MFU 35%" in out and "beta > 0 adds TRL's reference model" in out
    for p in _shipped():
        assert f"`{_rel(p)}`" in out
