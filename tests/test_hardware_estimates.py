"""scripts/hardware_estimates.py: parameter counts match the published model sizes, the memory / time terms follow
the stated formulas, and every shipped setup fits its GPUs."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "hardware_estimates.py"
spec = importlib.util.spec_from_file_location("hardware_estimates", SCRIPT)
he = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = he
spec.loader.exec_module(he)

GiB = 2**30


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
    assert he.lora_params(vl3, 16) == 36 * per_layer == 29_933_568


def test_zero3_shards_sixteen_bytes_per_parameter():
    s = next(s for s in he.SCENARIOS if s.key == "vl8b_full_8x80")
    mem = he.memory(s)
    P = he.model_stats(s.model).params
    assert (mem["weights"] + mem["optimizer_states"]) * GiB == pytest.approx(16 * P / 8)
    two_nodes = he.memory(next(s for s in he.SCENARIOS if s.key == "vl8b_full_2x8_server"))
    assert two_nodes["optimizer_states"] == pytest.approx(mem["optimizer_states"] / 2)


@pytest.mark.parametrize("scenario", he.SCENARIOS, ids=lambda s: s.key)
def test_shipped_setups_fit_and_batches_divide(scenario):
    assert scenario.grad_accum * scenario.micro_batch * scenario.train_gpus == scenario.sequences
    assert scenario.num_generations % 2 == 0  # BPO: half thinking, half non-thinking
    mem = he.memory(scenario)
    assert mem["fits"], mem
    t = he.step_time(scenario)
    assert t["total_s"] == pytest.approx(t["train_s"] + t["generation_s"] + t["sync_s"])
    assert t["train_s"] > 0 and t["generation_s"] > 0


def test_sleep_mode_peak_is_the_larger_phase():
    s = next(s for s in he.SCENARIOS if s.key == "vl3b_lora_1x24")
    sleep, awake = he.memory(s), he.memory(dataclasses.replace(s, vllm_sleep=False))
    assert sleep["fits"]
    # without sleep mode the training phase's activations and logits stack on top of vLLM's memory:
    # 22.6 GiB of 24, under 1 GiB of headroom
    assert awake["total"] - sleep["total"] == pytest.approx(sleep["activations"] + sleep["logits"])
    assert 0.9 * 24 < awake["total"] < 24
    # a full fine-tune of the same model cannot fit one 24 GB card
    assert not he.memory(dataclasses.replace(s, method="full"))["fits"]


def test_training_flops_follow_the_stated_method():
    s = next(s for s in he.SCENARIOS if s.key == "vl8b_full_8x80")
    m = he.model_stats(s.model)
    tokens = s.sequences * (s.prompt + s.mean_completion)
    # 2 forward + 4 backward + 2 recompute + 2 importance-sampling forward
    expected = 10 * m.compute_params * tokens / (8 * he.H100_80GB.bf16_tflops * 1e12 * he.MFU_TRAIN)
    assert he.step_time(s)["train_s"] == pytest.approx(expected)
    lora = dataclasses.replace(s, method="lora")
    assert he.step_time(lora)["train_s"] == pytest.approx(expected * 8 / 10)


def test_cli_prints_table(capsys):
    assert he.main([]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| Qwen")]
    assert len(rows) == len(he.SCENARIOS) == 4
    assert all("| yes |" in r and " s** |" in r for r in rows)
    assert "Assumed: training MFU 35%" in out
