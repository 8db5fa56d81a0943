"""The GPU requirement set (requirements-gpu.txt) resolves for Linux x86_64 / CPython 3.11, by uv's resolver from
package metadata alone, and the requirement files agree.

uv comes from PyPI into a throwaway folder (or is taken from PATH); nothing is installed into the environment. The
resolver tests skip when PyPI is unreachable, or with R4B_SKIP_NETWORK_TESTS=1.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_gpu_requirements.py"


def _load():
    spec = importlib.util.spec_from_file_location("check_gpu_requirements", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


cgr = _load()


def test_requirement_files_agree():
    gpu = cgr.read_requirements(cgr.REQUIREMENTS)
    cpu = cgr.read_requirements(cgr.CPU_REQUIREMENTS)
    extra = cgr.pyproject_gpu_extra()
    assert cgr.check_files_agree(gpu, cpu, extra) == []
    bad_extra = [Requirement("vllm==0.32.0") if r.name == "vllm" else r for r in extra]
    assert any("pyproject [gpu] extra has vllm==0.32.0" in p for p in cgr.check_files_agree(gpu, cpu, bad_extra))
    bad_cpu = [Requirement("peft==0.20.0") if r.name == "peft" else r for r in cpu]
    assert any("requirements.txt has peft==0.20.0" in p for p in cgr.check_files_agree(gpu, bad_cpu, extra))
    # transformers is the one intended difference (5.23.0 on CPU, <5.18 on GPU)
    assert {str(r) for r in cpu if r.name == "transformers"} == {"transformers==5.23.0"}


def test_script_cli_offline():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--offline"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok:")


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def uv(tmp_path_factory):
    """uv from PATH, else from PyPI into a throwaway folder (test-only: not a dependency of the project)."""
    if os.environ.get("R4B_SKIP_NETWORK_TESTS") == "1":
        pytest.skip("R4B_SKIP_NETWORK_TESTS=1")
    if not _pypi_reachable():
        pytest.skip("PyPI is unreachable")
    found = shutil.which("uv")
    if found:
        return found
    target = tmp_path_factory.mktemp("uv")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "uv"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"uv could not be installed from PyPI:\n{proc.stderr[-1000:]}")
    return str(target / "bin" / "uv")


def _resolve(uv, tmp_path, **replace):
    """Resolve requirements-gpu.txt with some lines replaced, e.g. _resolve(uv, tmp, transformers="...==5.23.0")."""
    lines = []
    for line in cgr.REQUIREMENTS.read_text().splitlines():
        body = line.split("#", 1)[0].strip()
        name = Requirement(body).name.replace("-", "_") if body else None
        lines.append(replace.pop(name) if name in replace else line)
    path = tmp_path / "requirements-gpu.txt"
    path.write_text("\n".join(lines) + "\n")
    status, out = cgr.resolve(path, uv)
    if status == cgr.EXIT_NETWORK:
        pytest.skip(f"PyPI became unreachable during the check:\n{out[-1000:]}")
    return status, out


@pytest.mark.slow
def test_gpu_set_resolves(uv, tmp_path):
    status, out = _resolve(uv, tmp_path)
    assert status == cgr.EXIT_OK, out
    pins = {Requirement(x).name: str(Requirement(x).specifier) for x in out.splitlines() if "==" in x and
            not x.startswith((" ", "#"))}
    assert pins["vllm"] == "==0.31.0" and pins["torch"] == "==2.13.0" and pins["torchvision"] == "==0.28.0"
    assert pins["transformers"].startswith("==5.17") and pins["trl"] == "==1.16.0"
    assert "deepspeed" in pins and "bitsandbytes" in pins


@pytest.mark.slow
@pytest.mark.parametrize("line, culprit", [
    ("transformers==5.23.0", "vllm==0.31.0 depends on transformers"),  # the CPU pin: vLLM 0.31.0 needs <5.18
    ("bitsandbytes==0.44.0", "trl[quantization]"),  # an implied extra: trl[quantization] needs bitsandbytes>=0.45.1
])
def test_conflicting_pin_is_reported(uv, tmp_path, line, culprit):
    status, out = _resolve(uv, tmp_path, **{Requirement(line).name.replace("-", "_"): line})
    assert status == cgr.EXIT_CONFLICT, out
    assert "No solution found" in out and culprit in out, out
