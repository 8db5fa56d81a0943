#!/usr/bin/env python
"""Check that the GPU requirement set (requirements-gpu.txt) resolves, without downloading the multi-GB wheels.

Two checks:

* **offline** (default): the pins are checked against the *declared* requirements (wheel METADATA
  ``Requires-Dist``) of every package in requirements-gpu.txt, recorded in ``scripts/gpu_requirements_metadata.json``.
  For each package that the requirements pin or that two or more of them constrain (torch, torchvision,
  transformers, vllm, huggingface-hub, numpy, ...), the specifier in requirements-gpu.txt and every declared
  specifier on it (vllm 0.31.0: ``torch==2.13.0``, ``transformers>=5.10.4,<5.18.0``; trl 1.16.0's ``vllm`` extra:
  ``vllm>=0.22.0,<=0.31.0``; ...) must admit a common release. Also: pyproject's ``[gpu]`` extra and
  requirements-gpu.txt agree, and requirements.txt (CPU) and requirements-gpu.txt pin the same versions of the
  shared packages except transformers.
* **live** (``--resolve``): pip resolves requirements-gpu.txt against the index for CPython 3.11 / Linux
  (``pip install --dry-run --ignore-installed --report``), fetching only the wheels' METADATA through HTTP range
  requests (``--use-feature fast-deps``, pip >= 26.3 in a throwaway venv: older pips download every wheel in full
  even in a dry run, about 4 GB here), then runs the offline checks on the fresh metadata.
  ``--refresh`` does that and rewrites the JSON.

Exit status: 0 consistent, 1 conflict or stale snapshot, 3 index unreachable (live modes only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements-gpu.txt"
CPU_REQUIREMENTS = ROOT / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
SNAPSHOT = Path(__file__).resolve().with_name("gpu_requirements_metadata.json")
INDEX_URL = "https://pypi.org/simple"
PIP_SPEC = "pip>=26.3"
TARGET_PYTHON = "3.11"
# Extras of a requirement whose dependencies r4b-trl relies on although requirements-gpu.txt names the package
# without them: trl's vllm / peft / deepspeed / quantization integrations (trl[vllm] pins the vLLM range it supports).
IMPLIED_EXTRAS = {"trl": ("vllm", "peft", "deepspeed", "quantization")}
# Packages that ship no wheel (deepspeed: sdist only; its metadata builds without CUDA).
SDIST_ONLY = ("deepspeed",)
# The one intended difference between the CPU and GPU sets (vLLM 0.31.0 needs transformers<5.18).
CPU_GPU_DIFFER = {"transformers"}

EXIT_OK, EXIT_CONFLICT, EXIT_NETWORK = 0, 1, 3
NETWORK_ERRORS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Could not fetch URL",
    "ConnectionError",
    "ReadTimeoutError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "No matching distribution found for pip",
)


# ---------------------------------------------------------------------------------------------------------------------
# requirement files


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


# ---------------------------------------------------------------------------------------------------------------------
# consistency of pins and declared requirements


def _applies(req: Requirement, env: dict, extras: tuple[str, ...]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in ("",) + tuple(extras))


def declared_constraints(packages: dict, env: dict) -> dict[str, list[tuple[str, SpecifierSet]]]:
    """name -> [(who, specifier)] from every recorded package's applicable Requires-Dist."""
    out: dict[str, list[tuple[str, SpecifierSet]]] = {}
    for name, info in packages.items():
        extras = tuple(info.get("extras", ()))
        for line in info["requires_dist"]:
            req = Requirement(line)
            if _applies(req, env, extras):
                who = f"{name} {info['version']}" + (f" [{req.marker}]" if req.marker else "")
                out.setdefault(canonicalize_name(req.name), []).append((who, req.specifier))
    return out


def checked_names(requirements: list[Requirement], packages: dict, env: dict) -> list[str]:
    """Packages whose pins are checked: those named in the requirements, and those that two or more recorded
    packages constrain with a non-empty specifier."""
    names = {canonicalize_name(r.name) for r in requirements}
    for name, specs in declared_constraints(packages, env).items():
        if sum(1 for _, s in specs if str(s)) >= 2:
            names.add(name)
    return sorted(names)


def check_consistency(requirements: list[Requirement], snapshot: dict) -> list[str]:
    """Problems (empty when consistent) of ``requirements`` against the recorded metadata ``snapshot``."""
    env = snapshot["environment"]
    packages = snapshot["packages"]
    resolved = snapshot["resolved"]
    candidates = snapshot["candidates"]
    declared = declared_constraints(packages, env)
    problems = []
    req_by_name = {canonicalize_name(r.name): r for r in requirements}
    for name, req in req_by_name.items():
        if name not in packages:
            problems.append(f"{name}: not in the metadata snapshot; run scripts/check_gpu_requirements.py --refresh")
            continue
        rp = packages[name].get("requires_python")
        if rp and not SpecifierSet(rp).contains(env["python_full_version"]):
            problems.append(f"{name} {packages[name]['version']}: Requires-Python {rp} excludes "
                            f"{env['python_full_version']}")
    for name in snapshot["checked"]:
        specs = list(declared.get(name, []))
        if name in req_by_name:
            specs.insert(0, ("requirements-gpu.txt", req_by_name[name].specifier))
        versions = [Version(v) for v in candidates.get(name, [resolved[name]] if name in resolved else [])]
        ok = [v for v in versions if all(s.contains(v, prereleases=True) for _, s in specs)]
        constraint_text = "; ".join(f"{who}: {s or 'any'}" for who, s in specs)
        if not ok:
            problems.append(f"{name}: no release satisfies all of  {constraint_text}  (releases considered: "
                            f"{', '.join(map(str, versions)) or 'none'}; if a requirement changed on purpose, run "
                            "--refresh)")
            continue
        if name in resolved:
            v = Version(resolved[name])
            bad = [f"{who}: {s}" for who, s in specs if not s.contains(v, prereleases=True)]
            if bad:
                problems.append(f"{name}: the snapshot resolved {v}, which no longer satisfies {'; '.join(bad)}: "
                                "the snapshot is stale, run --refresh")
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# live resolution


def _pip_env() -> dict:
    # Ignore this machine's pip configuration (local wheel folders, CPU torch, constraint files): resolve against
    # the index alone, as a GPU machine would.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _network_failure(output: str) -> bool:
    return any(s in output for s in NETWORK_ERRORS)


class NetworkUnavailable(RuntimeError):
    pass


class ResolutionFailed(RuntimeError):
    pass


def make_pip(workdir: Path, python: str, index_url: str, timeout: float) -> str:
    """A throwaway venv with a recent pip (the project's environment is left alone)."""
    venv = workdir / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=timeout)
    pip = str(venv / "bin" / "pip")
    proc = subprocess.run([pip, "install", "--quiet", "--index-url", index_url, PIP_SPEC], env=_pip_env(),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        if _network_failure(out):
            raise NetworkUnavailable(out[-2000:])
        raise RuntimeError(f"could not install {PIP_SPEC}:\n{out[-4000:]}")
    return pip


def resolve(requirements: Path, index_url: str, timeout: float, pip: str | None = None,
            python: str = sys.executable) -> tuple[dict, float]:
    """Run pip's resolver in dry-run mode; return (report, seconds)."""
    with tempfile.TemporaryDirectory(prefix="r4b-gpu-resolve-") as tmp:
        tmp = Path(tmp)
        if pip is None:
            pip = make_pip(tmp, python, index_url, timeout)
        report = tmp / "report.json"
        cmd = [pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--no-cache-dir",
               "--report", str(report), "--only-binary", ":all:", "--no-binary", ",".join(SDIST_ONLY),
               "--use-feature", "fast-deps", "--index-url", index_url, "-r", str(requirements)]
        start = time.monotonic()
        proc = subprocess.run(cmd, env=_pip_env(), capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - start
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            if "ResolutionImpossible" not in out and _network_failure(out):
                raise NetworkUnavailable(out[-2000:])
            raise ResolutionFailed(out[-6000:])
        return json.loads(report.read_text()), seconds


def _index_versions(name: str, index_url: str, timeout: float) -> list[str]:
    req = urllib.request.Request(f"{index_url.rstrip('/')}/{name}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data = json.load(resp)
    out = []
    for v in data.get("versions", []):
        try:
            out.append(Version(v))
        except InvalidVersion:
            pass
    return [str(v) for v in sorted(set(out)) if not (v.is_prerelease or v.is_devrelease)]


def snapshot_from_report(report: dict, requirements: list[Requirement], index_url: str, timeout: float) -> dict:
    """The small JSON recorded for the offline check: declared requirements of the packages named in
    requirements-gpu.txt, resolved versions of the checked packages, and for each checked package the releases
    that every *declared* constraint admits (so that a changed pin can be judged offline)."""
    env = report["environment"]
    by_name = {canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in report["install"]}
    direct = sorted(canonicalize_name(r.name) for r in requirements)
    packages = {}
    requested_extras = {canonicalize_name(r.name): set(r.extras) for r in requirements}
    for name in direct:
        meta = by_name[name]
        extras = sorted(requested_extras[name] | set(IMPLIED_EXTRAS.get(name, ())))
        kept = [d for d in meta.get("requires_dist", []) if _applies(Requirement(d), env, tuple(extras))]
        packages[name] = {"version": meta["version"], "requires_python": meta.get("requires_python"),
                          "extras": extras, "requires_dist": kept}
    snap = {"environment": env, "packages": packages}
    checked = checked_names(requirements, packages, env)
    declared = declared_constraints(packages, env)
    candidates = {}
    for name in checked:
        specs = [s for _, s in declared.get(name, [])]
        if specs:  # unconstrained packages are judged by their resolved version alone
            candidates[name] = [v for v in _index_versions(name, index_url, timeout)
                                if all(s.contains(v, prereleases=True) for s in specs)]
    return {
        "about": "Declared requirements (wheel METADATA) of the packages in requirements-gpu.txt, for the offline "
                 "check in scripts/check_gpu_requirements.py. Regenerate with: python scripts/"
                 "check_gpu_requirements.py --refresh",
        "generated_with": {"pip": report.get("pip_version"), "index_url": index_url,
                           "date": time.strftime("%Y-%m-%d")},
        "environment": {k: env[k] for k in ("python_full_version", "python_version", "platform_machine",
                                             "sys_platform", "platform_system", "os_name", "implementation_name",
                                             "platform_python_implementation")},
        "packages": packages,
        "checked": checked,
        "resolved": {n: by_name[n]["version"] for n in checked if n in by_name},
        "candidates": candidates,
    }


# ---------------------------------------------------------------------------------------------------------------------
# CLI


def load_snapshot(path: Path = SNAPSHOT) -> dict:
    return json.loads(Path(path).read_text())


def offline_check(requirements: Path = REQUIREMENTS, snapshot: Path = SNAPSHOT) -> list[str]:
    reqs = read_requirements(requirements)
    problems = check_files_agree(reqs, read_requirements(CPU_REQUIREMENTS), pyproject_gpu_extra())
    return problems + check_consistency(reqs, load_snapshot(snapshot))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    parser.add_argument("--resolve", action="store_true", help="resolve live against the index (network)")
    parser.add_argument("--refresh", action="store_true", help="--resolve, then rewrite the metadata snapshot")
    parser.add_argument("--index-url", default=INDEX_URL)
    parser.add_argument("--pip", help="pip executable to use (default: a throwaway venv with a recent pip)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for each pip call")
    args = parser.parse_args(argv)

    reqs = read_requirements(args.requirements)
    if not (args.resolve or args.refresh):
        problems = check_files_agree(reqs, read_requirements(CPU_REQUIREMENTS), pyproject_gpu_extra())
        snap = load_snapshot(args.snapshot)
        problems += check_consistency(reqs, snap)
        for p in problems:
            print(f"CONFLICT {p}")
        if not problems:
            print(f"ok: {len(reqs)} requirements consistent with the declared requirements of "
                  f"{len(snap['packages'])} packages (snapshot from pip {snap['generated_with']['pip']}, "
                  f"{snap['generated_with']['date']}); checked: {', '.join(snap['checked'])}")
        return EXIT_CONFLICT if problems else EXIT_OK

    if sys.version_info[:2] != tuple(map(int, TARGET_PYTHON.split("."))):
        print(f"note: resolving for Python {sys.version_info[0]}.{sys.version_info[1]}, not {TARGET_PYTHON}")
    try:
        report, seconds = resolve(args.requirements, args.index_url, args.timeout, pip=args.pip)
        snap = snapshot_from_report(report, reqs, args.index_url, timeout=60)
    except NetworkUnavailable as err:
        print(f"SKIP: the index {args.index_url} is unreachable:\n{err}")
        return EXIT_NETWORK
    except ResolutionFailed as err:
        print(f"CONFLICT: pip could not resolve {args.requirements}:\n{err}")
        return EXIT_CONFLICT
    versions = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    print(f"resolved {len(versions)} packages in {seconds:.0f} s with pip {report.get('pip_version')} "
          f"(fast-deps: METADATA through HTTP range requests, no full wheel downloads)")
    print("  " + " ".join(f"{n}=={versions[n]}" for n in sorted(snap["packages"])))
    problems = check_files_agree(reqs, read_requirements(CPU_REQUIREMENTS), pyproject_gpu_extra())
    problems += check_consistency(reqs, snap)
    for p in problems:
        print(f"CONFLICT {p}")
    if args.refresh and not problems:
        args.snapshot.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.snapshot}")
    return EXIT_CONFLICT if problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
