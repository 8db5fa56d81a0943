#!/usr/bin/env python
"""Check that the GPU requirement set resolves for the GPU machines, from package metadata alone (no wheels):

    uv pip compile requirements-gpu.txt --python-platform x86_64-manylinux_2_28 --python-version 3.11

with trl's integration extras added (``trl[vllm,peft,deepspeed,quantization]``: trl 1.16's ``vllm`` extra admits
vllm <= 0.31.0), so a pin that conflicts with what a package declares (vLLM 0.31.0 pins torch 2.13.0, torchvision
0.28.0 and transformers < 5.18) fails with the resolver's own explanation. Also checked (offline): pyproject's
``[gpu]`` extra names the same pins as requirements-gpu.txt, and requirements.txt (CPU) pins the same versions of
their shared packages, transformers excepted.

    pip install uv          # once, anywhere (or pass --uv PATH)
    python scripts/check_gpu_requirements.py [--requirements FILE] [--offline]

Exit status: 0 resolves, 1 conflict, 2 uv not found, 3 package index unreachable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements-gpu.txt"
CPU_REQUIREMENTS = ROOT / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
PLATFORM, PYTHON = "x86_64-manylinux_2_28", "3.11"
#: trl integrations r4b-trl relies on although requirements-gpu.txt names trl without extras.
IMPLIED = "trl[vllm,peft,deepspeed,quantization]"
#: The one intended difference between the CPU and GPU sets (vLLM 0.31.0 needs transformers<5.18).
CPU_GPU_DIFFER = {"transformers"}
EXIT_OK, EXIT_CONFLICT, EXIT_NO_UV, EXIT_NETWORK = 0, 1, 2, 3
NETWORK_ERRORS = ("Failed to fetch", "error sending request", "dns error", "Could not connect", "os error 101",
                  "Connection refused", "timed out")


def read_requirements(path: Path | str) -> list[Requirement]:
    reqs = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            reqs.append(Requirement(line))
    return reqs


def pyproject_gpu_extra(path: Path = PYPROJECT) -> list[Requirement]:
    data = tomllib.loads(Path(path).read_text())
    return [Requirement(r) for r in data["project"]["optional-dependencies"]["gpu"]]


def check_files_agree(gpu_reqs: list[Requirement], cpu_reqs: list[Requirement],
                      gpu_extra: list[Requirement]) -> list[str]:
    """pyproject's [gpu] extra == requirements-gpu.txt on the packages it names; CPU and GPU sets pin the same
    versions of their shared packages, transformers excepted."""
    problems = []
    gpu = {canonicalize_name(r.name): r for r in gpu_reqs}
    for r in gpu_extra:
        g = gpu.get(canonicalize_name(r.name))
        if g is None:
            problems.append(f"pyproject [gpu] extra has {r} but requirements-gpu.txt does not name {r.name}")
        elif g.specifier != r.specifier:
            problems.append(f"pyproject [gpu] extra has {r} but requirements-gpu.txt has {g}")
    for r in cpu_reqs:
        name = canonicalize_name(r.name)
        g = gpu.get(name)
        if g is not None and name not in CPU_GPU_DIFFER and g.specifier != r.specifier:
            problems.append(f"requirements.txt has {r} but requirements-gpu.txt has {g}")
    return problems


def find_uv(explicit: str | None = None) -> str | None:
    """``--uv``, else ``uv`` on PATH, else the one the ``uv`` package installed next to this Python."""
    if explicit:
        return explicit
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # the PyPI package ships the binary

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


def compile_command(uv: str, requirements: Path, extra: Path) -> list[str]:
    return [uv, "pip", "compile", str(requirements), str(extra), "--python-platform", PLATFORM, "--python-version",
            PYTHON, "--no-header", "--quiet"]


def resolve(requirements: Path = REQUIREMENTS, uv: str | None = None, timeout: float = 600) -> tuple[int, str]:
    """(exit status, resolver output): the pinned set on success, the resolver's explanation on a conflict."""
    uv = find_uv(uv)
    if uv is None:
        return EXIT_NO_UV, "uv not found: pip install uv (or pass --uv PATH)."
    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "implied.txt"
        extra.write_text(IMPLIED + "\n")
        proc = subprocess.run(compile_command(uv, Path(requirements), extra), capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, UV_NO_PROGRESS="1"))
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return EXIT_OK, out
    if any(s in out for s in NETWORK_ERRORS) and "No solution found" not in out:
        return EXIT_NETWORK, out
    return EXIT_CONFLICT, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", default=str(REQUIREMENTS))
    parser.add_argument("--uv", help="the uv binary (default: uv on PATH, or the uv Python package's)")
    parser.add_argument("--offline", action="store_true", help="only check that the requirement files agree")
    args = parser.parse_args(argv)
    problems = check_files_agree(read_requirements(args.requirements), read_requirements(CPU_REQUIREMENTS),
                                 pyproject_gpu_extra())
    for p in problems:
        print(f"conflict: {p}")
    if problems:
        return EXIT_CONFLICT
    if args.offline:
        print("ok: the requirement files agree")
        return EXIT_OK
    status, out = resolve(Path(args.requirements), args.uv)
    print(out.rstrip())
    if status == EXIT_OK:
        print(f"ok: {args.requirements} resolves for {PLATFORM}, Python {PYTHON}")
    return status


if __name__ == "__main__":
    sys.exit(main())
