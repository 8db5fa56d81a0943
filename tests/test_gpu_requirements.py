"""The GPU requirement set (requirements-gpu.txt) is consistent with what its packages declare.

* offline: pins vs. the declared requirements (wheel METADATA) recorded in scripts/gpu_requirements_metadata.json
  (vllm 0.31.0 pins torch==2.13.0, torchvision==0.28.0, transformers<5.18; trl 1.16's vllm extra admits
  vllm<=0.31.0; ...), including negative controls showing that a conflicting pin is caught;
* live (slow, network): pip resolves the whole set against PyPI from metadata alone (skipped when PyPI is
  unreachable, or with R4B_SKIP_NETWORK_TESTS=1).
"""

import importlib.util
import os
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


@pytest.fixture(scope="module")
def snapshot():
    return cgr.load_snapshot()


def _reqs(**replace):
    """requirements-gpu.txt with some lines replaced: _reqs(transformers="transformers==5.23.0")."""
    out = []
    for r in cgr.read_requirements(cgr.REQUIREMENTS):
        key = r.name.replace("-", "_")
        out.append(Requirement(replace.pop(key)) if key in replace else r)
    out += [Requirement(v) for v in replace.values()]
    return out


def test_offline_pins_are_consistent():
    assert cgr.offline_check() == []


def test_script_cli_offline():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok:")


def test_snapshot_records_declared_vllm_and_trl_requirements(snapshot):
    pk = snapshot["packages"]
    assert pk["vllm"]["version"] == "0.31.0"
    vllm = {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in pk["vllm"]["requires_dist"]}
    assert vllm["torch"] == "==2.13.0"
    assert vllm["torchvision"] == "==0.28.0"
    assert Requirement(f"transformers{vllm['transformers']}").specifier.contains("5.17.0")
    assert not Requirement(f"transformers{vllm['transformers']}").specifier.contains("5.18.0")
    # trl's vllm extra (the vLLM range TRL 1.16 supports) takes part in the check
    assert "vllm" in pk["trl"]["extras"]
    trl_vllm = [Requirement(r) for r in pk["trl"]["requires_dist"] if Requirement(r).name == "vllm"]
    assert trl_vllm and trl_vllm[0].specifier.contains("0.31.0") and not trl_vllm[0].specifier.contains("0.32.0")
    assert snapshot["environment"]["python_version"] == "3.11"
    # not a lock file: only the packages named in requirements-gpu.txt carry metadata
    assert sorted(pk) == sorted(r.name.lower() for r in cgr.read_requirements(cgr.REQUIREMENTS))


@pytest.mark.parametrize(
    "line, culprit",
    [
        ("transformers==5.23.0", "vllm 0.31.0"),  # the CPU pin: vLLM 0.31.0 needs transformers<5.18
        ("torch==2.14.0", "vllm 0.31.0"),  # vllm and torchvision pin torch==2.13.0
        ("torchvision==0.29.0", "vllm 0.31.0"),
        ("vllm==0.33.0", "trl 1.16.0"),  # trl[vllm] admits vllm<=0.31.0
        ("accelerate==1.9.0", "trl 1.16.0"),  # trl needs accelerate>=1.10.1
        ("bitsandbytes==0.44.0", "trl 1.16.0"),  # trl[quantization] needs bitsandbytes>=0.45.1
    ],
)
def test_conflicting_pin_is_reported(snapshot, line, culprit):
    name = Requirement(line).name.replace("-", "_")
    problems = cgr.check_consistency(_reqs(**{name: line}), snapshot)
    assert problems, line
    assert any(p.startswith(Requirement(line).name) and "no release satisfies" in p and culprit in p
               for p in problems), problems


def test_compatible_change_is_accepted(snapshot):
    # a narrower pin inside what every package declares is fine offline
    assert cgr.check_consistency(_reqs(transformers="transformers==5.17.0"), snapshot) == []


def test_new_requirement_needs_refresh(snapshot):
    problems = cgr.check_consistency(_reqs(flash_attn="flash-attn==2.8.3"), snapshot)
    assert any("not in the metadata snapshot" in p for p in problems)


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


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_live_resolution_against_pypi():
    """pip resolves requirements-gpu.txt for Python 3.11 / Linux from wheel metadata only (fast-deps: HTTP range
    requests; about 40-60 s and ~110 MB here, versus ~4 GB for a plain dry run)."""
    if os.environ.get("R4B_SKIP_NETWORK_TESTS") == "1":
        pytest.skip("R4B_SKIP_NETWORK_TESTS=1")
    if not sys.platform.startswith("linux"):
        pytest.skip("the GPU stack is resolved for Linux")
    if not _pypi_reachable():
        pytest.skip("PyPI is unreachable")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--resolve"], capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    if proc.returncode == cgr.EXIT_NETWORK:
        pytest.skip(f"PyPI became unreachable during the check:\n{out[-1000:]}")
    assert proc.returncode == 0, out
    assert "vllm==0.31.0" in out and "torch==2.13.0" in out and "transformers==5.17" in out
