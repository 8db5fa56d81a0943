"""Sharded training on a CPU: the SFT and BPO recipes under `accelerate launch` with FSDP2 (fully_shard) on 2 CPU
processes (gloo). Checked from inside training (tests/scripts/fsdp_probe.py writes what each rank sees): every
parameter is a DTensor sharded on dim 0 with the two local shards adding up to the full tensor; BPO's forced groups
stay exact across ranks (the prompt ids each rank sent to generate, and the rollout dump); a checkpoint saved
sharded (SHARDED_STATE_DICT: one .distcp file per rank, no full weights file) resumes with exactly the weights it
saved.

TEST-SIDE SHIM: Accelerate 1.15 never selects FSDP on CPU processes (its FSDP branch is reserved for accelerator
devices): without help, this launch config silently trains full replicas (MULTI_CPU data parallel).
``test_accelerate_alone_does_not_shard_on_cpu`` pins that down; the other tests run with
``R4B_FSDP_CPU_SHIM=1`` (tests/scripts/fsdp_probe.py), which hands Accelerate's own FSDP plugin to the MULTI_CPU
state so that ``prepare`` calls ``fully_shard`` over gloo. Everything else (recipes, trainers, TRL, Accelerate's
FSDP2 preparation and sharded checkpointing) is unchanged.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_bpo import _check_dump, _check_groups, _mode_of_prompt, _recompute_advantages

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "fsdp_probe.py"
pytestmark = pytest.mark.slow

CONFIG = """compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_cpu_ram_efficient_loading: false
  fsdp_offload_params: false
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_activation_checkpointing: false
machine_rank: 0
main_process_port: {port}
mixed_precision: 'no'
num_machines: 1
num_processes: 2
rdzv_backend: static
same_network: true
use_cpu: true
"""


def _launch(tmp_path, kind, probe, recipe_args, timeout=600, shim=True):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / f"fsdp2_cpu_{port}.yaml"
    cfg.write_text(CONFIG.format(port=port))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               R4B_FSDP_CPU_SHIM="1" if shim else "0")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cfg), str(SCRIPT), kind,
           str(probe), "--", *recipe_args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-5000:]


def _read(probe, what):
    out = []
    for r in (0, 1):
        d = json.loads((Path(probe) / f"{what}_rank{r}.json").read_text())
        assert d["world_size"] == 2
        out.append(d)
    return out


def _assert_sharded(probe):
    ranks = _read(probe, "begin_params")
    names = list(ranks[0]["data"])
    assert names and names == list(ranks[1]["data"])
    for name in names:
        a, b = ranks[0]["data"][name], ranks[1]["data"][name]
        assert a["dtensor"] and b["dtensor"], name
        assert a["placements"] == b["placements"] == ["S(0)"], (name, a["placements"])
        assert a["shape"] == b["shape"]
        # the two local shards partition dim 0 (FSDP2 pads the last shard when dim 0 is odd)
        assert a["local_shape"][0] + b["local_shape"][0] == a["shape"][0], name
        assert a["local_shape"][1:] == a["shape"][1:]
        if a["shape"][0] >= 2:
            assert a["local_shape"][0] < a["shape"][0], name
    return names


def _close(f1, f2, rel=1e-9):
    return all(abs(x - y) <= rel * max(1.0, abs(x), abs(y)) for k in f1 for x, y in zip(f1[k], f2[k]))


def test_accelerate_alone_does_not_shard_on_cpu(tmp_path):
    """The limitation the shim works around: with this FSDP2 config on 2 CPU processes, Accelerate picks plain
    MULTI_CPU data parallelism. When this fails, Accelerate shards on CPUs by itself and the shim can go."""
    _launch(tmp_path, "state", tmp_path / "state", [], shim=False)
    for r in (0, 1):
        d = json.loads((tmp_path / "state" / f"state_rank{r}.json").read_text())
        assert d == {"distributed_type": "DistributedType.MULTI_CPU", "num_processes": 2}, d


def test_sft_fsdp2_two_cpu_processes_sharded_checkpoint_resumes(tiny_text_model, tmp_path):
    out = tmp_path / "sft"
    common = ["--config", "recipes/tiny/sft/tiny.yaml", "--model_name_or_path", tiny_text_model, "--output_dir",
              str(out), "--learning_rate", "1e-2", "--save_steps", "2", "--save_total_limit", "3",
              "--lr_scheduler_type", "constant"]
    _launch(tmp_path, "sft", tmp_path / "probe1", common + ["--max_steps", "2"])
    _assert_sharded(tmp_path / "probe1")
    ckpt = out / "checkpoint-2"
    shards = sorted(p.name for p in ckpt.rglob("*.distcp"))
    assert any(p.parent.name.startswith("pytorch_model_fsdp") for p in ckpt.rglob("*.distcp")), shards
    assert {"__0_0.distcp", "__1_0.distcp"} <= set(shards), shards  # one model shard per rank
    assert not list(ckpt.glob("*.safetensors")) and not list(ckpt.glob("pytorch_model.bin"))  # no full weights
    begin1 = _read(tmp_path / "probe1", "begin_fingerprint")[0]["data"]
    end1 = _read(tmp_path / "probe1", "end_fingerprint")[0]["data"]
    assert not _close(begin1, end1, rel=1e-6)  # training moved the weights

    _launch(tmp_path, "sft", tmp_path / "probe2", common + ["--max_steps", "3"])  # auto-resume from checkpoint-2
    begin2 = _read(tmp_path / "probe2", "begin_fingerprint")
    assert begin2[0]["global_step"] == 2
    assert _close(begin2[0]["data"], end1)  # the sharded checkpoint restored exactly the weights it saved
    meta = json.loads((out / "r4b_sft.json").read_text())
    assert meta["global_step"] == 3 and str(meta["resumed_from"]).endswith("checkpoint-2")


def test_bpo_fsdp2_two_cpu_processes_exact_groups(tiny_text_model, tmp_path):
    out = tmp_path / "bpo"
    _launch(tmp_path, "bpo", tmp_path / "probe", [
        "--config", "recipes/tiny/bpo/tiny.yaml", "--model_name_or_path", tiny_text_model, "--output_dir", str(out),
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--dump_first_steps", "2", "--save_strategy", "no",
        "--probe_steps", "0"])
    _assert_sharded(tmp_path / "probe")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_text_model)
    per_rank = [json.loads((tmp_path / "probe" / f"prompts_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 2  # one generate call per step per rank
    for step in range(2):  # the global batch is the rank-ordered concatenation of the local ones
        prompts = per_rank[0][step] + per_rank[1][step]
        assert len(prompts) == 8
        _check_groups([_mode_of_prompt(p, tok) for p in prompts], 4, 2)
    _recompute_advantages(_check_dump(out, 4, 2, 8))
