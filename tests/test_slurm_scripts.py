"""Slurm scripts: `bash -n`, and a dry run of each against stub `scontrol` / `srun` / `trl` / `vllm` / `curl` /
`accelerate` / `python` executables that record what they were asked to run (no Slurm, no GPU)."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "slurm"
SCRIPTS = ["bpo_multinode.slurm", "evaluate.slurm", "curate_served.slurm"]

STUBS = {
    # scontrol show hostnames a,b,c -> one per line
    "scontrol": '[ "$1 $2" = "show hostnames" ] && echo "$3" | tr "," "\\n"',
    # srun [--opts] cmd...: log, then run the command; `bash -c CMD` runs as task 0 of the step
    "srun": (
        'echo "srun $*" >> "$STUB_LOG"; while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do shift; done; '
        'export SLURM_PROCID=0; exec "$@"'
    ),
    "trl": 'echo "trl $*" >> "$STUB_LOG"; exec sleep 20',
    "vllm": 'echo "vllm $*" >> "$STUB_LOG"; exec sleep 20',
    # healthy once the server stub has started (it logs first), as a real /health would be
    "curl": (
        'for _ in $(seq 100); do grep -qE "^(trl|vllm) " "$STUB_LOG" && break; sleep 0.05; done; '
        'echo "curl $*" >> "$STUB_LOG"; exit 0'
    ),
    "accelerate": 'echo "accelerate $* [ACCELERATE_LOG_LEVEL=$ACCELERATE_LOG_LEVEL]" >> "$STUB_LOG"',
    "python": (
        'echo "python $* [OPENAI_BASE_URL=$OPENAI_BASE_URL R4B_ANNOTATOR_MODEL=$R4B_ANNOTATOR_MODEL]" >> "$STUB_LOG"'
    ),
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_bash_syntax(name):
    subprocess.run(["bash", "-n", str(SLURM / name)], check=True)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    out = subprocess.run(["bash", str(SLURM / name), "--help"], capture_output=True, text=True, check=True).stdout
    assert "sbatch" in out and "--config" in out


@pytest.fixture
def stub_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    log.touch()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        "VENV": str(tmp_path / "no-venv"),  # never activate a real environment over the stubs
    }
    return env, log, tmp_path


def _run(script, args, env, cwd, extra_env=None):
    return subprocess.run(["bash", str(SLURM / script), *args], cwd=cwd, env={**env, **(extra_env or {})},
                          capture_output=True, text=True, timeout=60)


def _config(tmp_path, text):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text)
    return str(cfg)


def test_bpo_multinode_dry_run(stub_env):
    env, log, tmp = stub_env
    cfg = _config(tmp, "model_name_or_path: Qwen/Qwen3-VL-8B-Instruct\ntrust_remote_code: true\n")
    proc = _run("bpo_multinode.slurm", ["--config", cfg, "--tp", "2", "--args", "--max_steps 5"], env, tmp,
                {"SLURM_JOB_NODELIST": "node1,node2,node3"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    serve = [c for c in calls if c.startswith("trl vllm-serve")]
    assert serve == [
        "trl vllm-serve --model Qwen/Qwen3-VL-8B-Instruct --tensor_parallel_size 2 --data_parallel_size 1 "
        "--host 0.0.0.0 --port 8000 --trust_remote_code true"
    ]
    assert any(c.startswith("srun --nodes=1 --ntasks=1 --nodelist=node3 trl vllm-serve") for c in calls)
    assert any("curl -sf http://node3:8000/health" in c for c in calls)
    train_srun = [c for c in calls if c.startswith("srun --wait=60")]
    assert len(train_srun) == 1 and "--nodes=2 --ntasks=2 --nodelist=node1,node2 bash -c" in train_srun[0]
    (launch,) = [c for c in calls if c.startswith("accelerate launch")]
    tokens = launch.split()
    opt = {tokens[i]: tokens[i + 1] for i in range(len(tokens) - 1) if tokens[i].startswith("--")}
    assert opt["--config_file"] == "accelerate_configs/multi_node.yaml"
    assert opt["--num_machines"] == "2" and opt["--num_processes"] == "16"
    assert opt["--main_process_ip"] == "node1" and opt["--main_process_port"] == "29500"
    assert opt["--machine_rank"] == "0"  # $SLURM_PROCID, expanded inside each srun task
    script_args = launch[launch.index("recipes/bpo.py"):]
    assert script_args.startswith(f"recipes/bpo.py --config {cfg} --use_vllm true --vllm_mode server "
                                  "--vllm_server_host node3 --vllm_server_port 8000 --max_steps 5")
    assert "[ACCELERATE_LOG_LEVEL=info]" in launch
    # order: server, health check, then training
    assert calls.index(next(c for c in calls if c.startswith("curl"))) < calls.index(launch)


def test_bpo_multinode_scales_with_nodes_and_gpus(stub_env):
    env, log, tmp = stub_env
    cfg = _config(tmp, "model_name_or_path: Qwen/Qwen3-4B\n")
    proc = _run("bpo_multinode.slurm", ["--config", cfg], env, tmp,
                {"SLURM_JOB_NODELIST": "a,b,c,d,e", "GPUS_PER_NODE": "4"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = log.read_text()
    assert "--num_machines 4 --num_processes 16 --main_process_ip a" in " ".join(text.split())
    assert "--nodelist=e trl vllm-serve --model Qwen/Qwen3-4B" in text
    assert "--trust_remote_code" not in text


def test_bpo_multinode_refuses_one_node_and_missing_config(stub_env):
    env, _, tmp = stub_env
    cfg = _config(tmp, "model_name_or_path: m\n")
    proc = _run("bpo_multinode.slurm", ["--config", cfg], env, tmp, {"SLURM_JOB_NODELIST": "solo"})
    assert proc.returncode != 0 and "at least 2 nodes" in proc.stderr
    proc = _run("bpo_multinode.slurm", ["--config", str(tmp / "missing.yaml")], env, tmp,
                {"SLURM_JOB_NODELIST": "a,b"})
    assert proc.returncode != 0 and "--config" in proc.stderr


def test_evaluate_dry_run(stub_env):
    env, log, tmp = stub_env
    cfg = _config(tmp, "model_name_or_path: m\n")
    proc = _run("evaluate.slurm", ["--config", cfg, "--args", "--output_dir out/eval"], env, tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == f"srun --nodes=1 --ntasks=1 python recipes/evaluate.py --config {cfg} --output_dir out/eval"
    assert calls[1].startswith(f"python recipes/evaluate.py --config {cfg} --output_dir out/eval")


def test_curate_served_dry_run(stub_env):
    env, log, tmp = stub_env
    cfg = _config(tmp, "annotator: served\n")
    proc = _run("curate_served.slurm", ["--annotator", "Qwen/Qwen2.5-VL-72B-Instruct", "--tp", "8", "--config", cfg,
                                        "--args", "--base_url {BASE_URL} --annotator_model {ANNOTATOR}"], env, tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    assert calls[:2] == [
        "vllm serve Qwen/Qwen2.5-VL-72B-Instruct --host 127.0.0.1 --port 8000 --tensor-parallel-size 8",
        "curl -sf http://127.0.0.1:8000/health",
    ]
    assert calls[2] == (
        f"python data_prep/curate.py --config {cfg} --base_url http://127.0.0.1:8000/v1 "
        "--annotator_model Qwen/Qwen2.5-VL-72B-Instruct "
        "[OPENAI_BASE_URL=http://127.0.0.1:8000/v1 R4B_ANNOTATOR_MODEL=Qwen/Qwen2.5-VL-72B-Instruct]"
    )


def test_curate_served_requires_annotator(stub_env):
    env, _, tmp = stub_env
    proc = _run("curate_served.slurm", ["--config", _config(tmp, "x: 1\n")], env, tmp)
    assert proc.returncode != 0 and "--annotator" in proc.stderr


def test_shellcheck_if_available():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    subprocess.run(["shellcheck", "-S", "warning", *[str(SLURM / s) for s in SCRIPTS]], check=True)
