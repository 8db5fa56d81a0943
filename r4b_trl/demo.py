"""``make demo``: the R-4B pipeline in miniature, stage by stage, through the project's real entry points.

    python -m r4b_trl.demo --config recipes/demo/default.yaml --output_dir demo_output [--redo STAGE ...]

The config lists stages; each stage is one command of the real tools (``recipes/sft.py``, ``data_prep/curate.py``,
``recipes/evaluate.py``, ``recipes/bpo.py``, ...) with its own config file under ``recipes/demo/``. This module
only runs them in order (two at a time where a stage names a ``parallel_with`` partner, one thread each), caches
finished stages, and writes the final report. It trains and evaluates nothing itself.

* Cached: a finished stage writes ``<output_dir>/stages/<name>.json`` (wall seconds and a fingerprint of its
  command and config files); a re-run skips it unless the fingerprint changed or ``--redo NAME`` (or ``all``).
* Resumable: a killed run restarts the unfinished stage, whose tool resumes itself (checkpoints, curation and
  evaluation files).
* Placeholders in commands and in the stage configs: ``{out}`` (the output dir), ``{python}`` (this interpreter),
  ``{root}`` (repo root); stage YAMLs are rendered into ``<output_dir>/configs/``.
* ``in_process: true`` (the smoke variant) runs the stages inside one interpreter, one after another.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    name: str
    cmd: list[str]
    description: str = ""
    parallel_with: str | None = None
    threads: int | None = None
    files: list[str] = field(default_factory=list)  # config files whose content is part of the fingerprint


def load_stages(config: dict) -> list[Stage]:
    stages = []
    for s in config["stages"]:
        cmd = s["cmd"] if isinstance(s["cmd"], list) else shlex.split(s["cmd"])
        files = [a for a in cmd if a.endswith((".yaml", ".yml"))] + list(s.get("files", []))
        stages.append(Stage(name=s["name"], cmd=cmd, description=s.get("description", ""),
                            parallel_with=s.get("parallel_with"), threads=s.get("threads"), files=files))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"demo config: duplicate stage names in {names}")
    for s in stages:
        if s.parallel_with and s.parallel_with not in names:
            raise ValueError(f"demo config: stage {s.name!r} runs in parallel with unknown stage {s.parallel_with!r}")
    return stages


def _subst(text: str, out: Path) -> str:
    return text.replace("{out}", str(out)).replace("{python}", sys.executable).replace("{root}", str(ROOT))


def _expand(cmd: list[str], out: Path) -> list[str]:
    """Placeholders in the arguments; a YAML argument is rendered (its placeholders filled) into
    ``<out>/configs/`` and the command points at the rendered copy."""
    args = []
    for a in cmd:
        a = _subst(a, out)
        if a.endswith((".yaml", ".yml")) and (ROOT / a).is_file() and not os.path.isabs(a):
            rendered = out / "configs" / a.replace("/", "__")
            rendered.parent.mkdir(parents=True, exist_ok=True)
            rendered.write_text(_subst((ROOT / a).read_text(), out))
            a = str(rendered)
        args.append(a)
    return args


def fingerprint(stage: Stage, out: Path) -> str:
    h = hashlib.sha256(json.dumps([_subst(a, out) for a in stage.cmd]).encode())
    for f in stage.files:
        p = ROOT / _subst(f, out)
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _done_path(out: Path, stage: Stage) -> Path:
    return out / "stages" / f"{stage.name}.json"


def is_done(out: Path, stage: Stage) -> bool:
    p = _done_path(out, stage)
    if not p.exists():
        return False
    return json.loads(p.read_text()).get("fingerprint") == fingerprint(stage, out)


def _run_in_process(stage: Stage, out: Path) -> float:
    """Run a ``{python} script.py ...`` / ``{python} -m module ...`` stage inside this interpreter (one import of
    torch/transformers/trl for the whole pipeline: the smoke variant's way to stay fast)."""
    import runpy

    cmd = _expand(stage.cmd, out)
    if cmd[0] != sys.executable:
        return _run_one(stage, out, stream=True)
    argv, old_argv, old_cwd = cmd[1:], sys.argv, os.getcwd()
    if stage.threads:
        import torch

        torch.set_num_threads(stage.threads)
    t0 = time.time()
    try:
        os.chdir(ROOT)
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            run = lambda: runpy.run_module(argv[1], run_name="__main__", alter_sys=True)  # noqa: E731
        else:
            sys.argv = argv
            run = lambda: runpy.run_path(argv[0], run_name="__main__")  # noqa: E731
        try:
            run()
        except SystemExit as e:  # the entry points exit 0 on success, 1/2 on an error they already printed
            if e.code not in (None, 0):
                raise RuntimeError(f"exit status {e.code}") from None
    except Exception as e:
        raise RuntimeError(f"demo stage {stage.name!r} failed: {type(e).__name__}: {e}") from e
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    seconds = time.time() - t0
    _done_path(out, stage).parent.mkdir(parents=True, exist_ok=True)
    _done_path(out, stage).write_text(json.dumps({"seconds": seconds, "fingerprint": fingerprint(stage, out),
                                                  "cmd": cmd, "in_process": True}))
    return seconds


def _run_one(stage: Stage, out: Path, stream: bool) -> float:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if stage.threads:
        env["OMP_NUM_THREADS"] = str(stage.threads)
        env["R4B_NUM_THREADS"] = str(stage.threads)
    log = out / "logs" / f"{stage.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = _expand(stage.cmd, out)
    t0 = time.time()
    with open(log, "w") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
        for line in proc.stdout:
            f.write(line)
            if stream:
                sys.stdout.write(line)
        rc = proc.wait()
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"demo stage {stage.name!r} failed (exit {rc}); log: {log}\n{tail}")
    seconds = time.time() - t0
    _done_path(out, stage).parent.mkdir(parents=True, exist_ok=True)
    _done_path(out, stage).write_text(json.dumps({"seconds": seconds, "fingerprint": fingerprint(stage, out),
                                                  "cmd": cmd}))
    return seconds


def run_stages(stages: list[Stage], out: Path, redo: set[str] = frozenset(), in_process: bool = False) -> dict[str, float]:
    """Run the stages (skipping cached ones); return wall seconds per stage actually run. ``in_process`` runs them
    one after another inside this interpreter instead of as subprocesses (pairs run sequentially)."""
    out.mkdir(parents=True, exist_ok=True)
    by_name = {s.name: s for s in stages}
    ran: dict[str, float] = {}
    skip: set[str] = set()
    for i, stage in enumerate(stages, 1):
        if stage.name in skip:
            continue
        group = [stage]
        if stage.parallel_with and stage.parallel_with not in skip:
            group.append(by_name[stage.parallel_with])
            skip.add(stage.parallel_with)
        todo = [s for s in group if "all" in redo or s.name in redo or not is_done(out, s)]
        for s in group:
            if s not in todo:
                print(f"[{i}/{len(stages)}] {s.name}: cached ({_done_path(out, s)})", flush=True)
        if not todo:
            continue
        names = " + ".join(s.name for s in todo)
        print(f"[{i}/{len(stages)}] {names}: {' / '.join(s.description or s.name for s in todo)}", flush=True)
        if in_process:
            for s in todo:
                ran[s.name] = _run_in_process(s, out)
        elif len(todo) == 1:
            ran[todo[0].name] = _run_one(todo[0], out, stream=True)
        else:
            errors, threads = [], []
            t0 = time.time()

            def work(s):
                try:
                    ran[s.name] = _run_one(s, out, stream=False)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            for s in todo:
                threads.append(threading.Thread(target=work, args=(s,)))
                threads[-1].start()
            while any(t.is_alive() for t in threads):
                time.sleep(5)
                print(f"    ... {names} running, {time.time() - t0:.0f} s (logs in {out / 'logs'})", flush=True)
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
        for s in todo:
            print(f"    {s.name} done in {ran[s.name]:.0f} s", flush=True)
    return ran


def wall_seconds(stages: list[Stage], seconds: dict[str, float]) -> float:
    """Pipeline wall time from per-stage seconds: paired stages overlap, so each pair counts its longer stage."""
    total, seen = 0.0, set()
    for s in stages:
        if s.name in seen or s.name not in seconds:
            continue
        group = [s.name] + ([s.parallel_with] if s.parallel_with and s.parallel_with in seconds else [])
        seen.update(group)
        total += max(seconds[n] for n in group)
    return total


def stage_seconds(out: Path, stages: list[Stage]) -> dict[str, float]:
    secs = {}
    for s in stages:
        p = _done_path(out, s)
        if p.exists():
            secs[s.name] = json.loads(p.read_text())["seconds"]
    return secs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Run the R-4B pipeline in miniature (see recipes/demo/).")
    p.add_argument("--config", default="recipes/demo/default.yaml")
    p.add_argument("--output_dir", default=None)
    p.add_argument("--redo", nargs="*", default=[], help="stage names to run again (or 'all')")
    args = p.parse_args(argv)
    config = yaml.safe_load((ROOT / args.config).read_text() if not os.path.isabs(args.config)
                            else Path(args.config).read_text())
    out = Path(args.output_dir or config.get("output_dir", "demo_output")).resolve()
    stages = load_stages(config)
    t0 = time.time()
    run_stages(stages, out, set(args.redo), in_process=bool(config.get("in_process", False)))
    wall = time.time() - t0
    report_fn = config.get("report")
    if report_fn:
        module, _, fn = report_fn.partition(":")
        import importlib

        secs = stage_seconds(out, stages)
        getattr(importlib.import_module(module), fn)(out, secs, {**config, "wall_seconds": wall_seconds(stages, secs)})
    print(f"\nDemo finished in {wall:.0f} s this run; outputs in {out}")


if __name__ == "__main__":
    from .errors import cli

    raise SystemExit(cli(main))
