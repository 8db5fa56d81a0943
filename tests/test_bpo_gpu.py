"""BPO with real vLLM (colocate and server) on a GPU machine: `make test-gpu` (needs requirements-gpu.txt).
Skipped on CPU machines. Same independent checks as the CPU tests: the rollout dump's groups hold exactly
G/2 thinking + G/2 non-thinking rollouts, and the non-thinking completions never re-open the forced block."""

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.gpu


def _check_dump(out, G=4):
    groups = defaultdict(list)
    for p in Path(out, "rollouts").glob("step_*.jsonl"):
        for line in p.read_text().splitlines():
            r = json.loads(line)
            groups[(r["step"], r["group_id"])].append(r)
    assert groups
    for rows in groups.values():
        assert Counter(r["forced_mode"] for r in rows) == {"thinking": G // 2, "non_thinking": G // 2}


def _bpo(model, out, *extra, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "recipes/bpo.py", "--config", "recipes/tiny/bpo/tiny.yaml", "--model_name_or_path", model,
           "--output_dir", str(out), "--use_cpu", "false", "--max_steps", "3", "--dump_first_steps", "3",
           "--save_strategy", "no", "--per_device_train_batch_size", "8", *extra]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, res.stderr[-4000:]


def test_bpo_vllm_colocate(tiny_text_model, tmp_path):
    pytest.importorskip("vllm")
    _bpo(tiny_text_model, tmp_path / "colocate", "--use_vllm", "true", "--vllm_mode", "colocate",
         "--vllm_gpu_memory_utilization", "0.2")
    _check_dump(tmp_path / "colocate")


def test_bpo_vllm_colocate_vision(tiny_vision_model, tmp_path):
    pytest.importorskip("vllm")
    data = tmp_path / "vis.jsonl"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "red.png")
    data.write_text("".join(json.dumps({"id": f"v{i}", "question": f"How many? {i}", "answer": str(i),
                                        "image": str(tmp_path / "red.png"), "difficulty": "easy"}) + "\n"
                            for i in range(8)))
    _bpo(tiny_vision_model, tmp_path / "vis", "--use_vllm", "true", "--vllm_mode", "colocate",
         "--vllm_gpu_memory_utilization", "0.2", "--dataset_name", str(data), "--image_column", "image",
         "--probe_split", "train", "--probe_size", "4")
    _check_dump(tmp_path / "vis")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bpo_vllm_server(tiny_text_model, tmp_path):
    """`trl vllm-serve` on the same GPU, then BPO in server mode: TRL's server path de-duplicates prompts per group,
    which without BPO's override turns every rollout into one mode."""
    pytest.importorskip("vllm")
    port, group_port = _free_port(), _free_port()
    server = subprocess.Popen([sys.executable, "-m", "trl.scripts.vllm_serve", "--model", tiny_text_model, "--port",
                               str(port), "--gpu_memory_utilization", "0.2"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        import urllib.request

        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=2)
                break
            except Exception:
                assert server.poll() is None, server.stdout.read()[-3000:]
                time.sleep(2)
        _bpo(tiny_text_model, tmp_path / "server", "--use_vllm", "true", "--vllm_mode", "server",
             "--vllm_server_host", "127.0.0.1", "--vllm_server_port", str(port), "--vllm_group_port", str(group_port))
        _check_dump(tmp_path / "server")
    finally:
        server.terminate()
        server.wait(timeout=60)
