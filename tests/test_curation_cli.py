"""Curation end to end: the CLI killed with SIGKILL and restarted, and a real tiny model in every role."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r4b_trl.data.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "r4b_trl" / "data" / "samples" / "curation_sample.jsonl"

CURATE = str(ROOT / "data_prep" / "curate.py")
FAKE_ANNOTATOR = "r4b_trl.data.fake_annotators:arithmetic_annotator"


def _cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location("r4b_curate_cli", CURATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

SLOW_FAKE = '''
import time
from r4b_trl.data.fake_annotators import arithmetic_annotator

def annotate(req):
    time.sleep(0.05)
    return arithmetic_annotator(req)
'''


def _config(tmp_path, name, out, annotator):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(json.dumps({
        "dataset": str(SAMPLE), "source": "sample", "output_dir": str(out), "chunk_size": 3, "n_samples": 8,
        "columns": {"id": "id", "kind": "kind", "image": "image"},
        "annotator": {"type": "python", "callable": annotator},
        "judge": {"type": "python", "callable": "r4b_trl.data.fake_annotators:keyword_judge"},
        "reasoner": {"type": "python", "callable": "r4b_trl.data.fake_annotators:oracle_reasoner"},
    }))
    return cfg


def _run(cfg, *extra, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, CURATE, "--config", str(cfg), "--no_progress", *extra], env=env,
                          capture_output=True, text=True, timeout=120, **kw)


def test_cli_killed_and_restarted_equals_clean_run(tmp_path, capsys):
    fake = tmp_path / "slow_fake.py"
    fake.write_text(SLOW_FAKE)
    cli = _cli()
    assert cli.main(["--config", str(_config(tmp_path, "clean", tmp_path / "clean", FAKE_ANNOTATOR)),
                     "--no_progress"]) == 0

    cfg = _config(tmp_path, "killed", tmp_path / "killed", f"{fake}:annotate")
    records = tmp_path / "killed" / "curation.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, CURATE, "--config", str(cfg), "--no_progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while time.time() < deadline and (not records.exists() or len(read_jsonl(records)) < 6):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = len(read_jsonl(records))
    assert 6 <= done < 27, f"kill landed after {done} records"
    assert not (tmp_path / "killed" / "curated.jsonl").exists()

    again = _run(cfg)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "killed" / "curated.jsonl").read_bytes() == (tmp_path / "clean" / "curated.jsonl").read_bytes()
    ids = [r["id"] for r in read_jsonl(records)]
    assert len(set(ids)) == 27

    # same output_dir, different config: refused with exit code 2 and a message
    other = _config(tmp_path, "other", tmp_path / "killed", FAKE_ANNOTATOR)
    assert cli.main(["--config", str(other), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "--overwrite" in err


def test_tiny_model_end_to_end_and_resume(tmp_path, tiny_vision_model, monkeypatch):
    """sample_tiny.yaml with the real tiny VLM in every role (text and image rows); an interrupted run resumed
    gives byte-identical output (seeded generation per fixed chunk)."""
    import torch

    from r4b_trl.data.curation import CurationConfig, curate, load_config
    from r4b_trl.generation import TransformersBackend
    from r4b_trl.sft import check_target

    torch.set_num_threads(1)
    base = load_config(ROOT / "data_prep" / "configs" / "sample_tiny.yaml").to_dict()
    base["dataset"] = str(SAMPLE)
    base["annotator"] = dict(base["annotator"], model=tiny_vision_model)
    base["chunk_size"] = 9  # 27 rows: 3 chunks

    def cfg(name):
        return CurationConfig(**dict(base, output_dir=str(tmp_path / name)))

    t0 = time.time()
    summary = curate(cfg("clean"), progress=False)
    clean_s = time.time() - t0
    assert sum(summary["counts"].values()) == 27
    records = read_jsonl(tmp_path / "clean" / "curation.jsonl")
    by_id = {r["id"]: r for r in records}
    assert by_id["v01"]["evidence"]["n_samples"] == 4  # image rows went through the model (4 samples each)
    assert by_id["s01"]["evidence"]["heuristic"] == "difficulty" and by_id["s01"]["evidence"]["judge_raw"] is not None
    assert by_id["b02"]["outcome"] == "duplicate" and by_id["b03"]["outcome"] == "failed"
    for r in read_jsonl(tmp_path / "clean" / "curated.jsonl"):
        assert check_target(r["completion"][0]["content"]) is None

    calls = {"n": 0}
    real = TransformersBackend.generate

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:  # inside the second chunk (the first makes up to 4 calls: annotate, judge, answer, trace)
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(TransformersBackend, "generate", flaky)
    with pytest.raises(KeyboardInterrupt):
        curate(cfg("resumed"), progress=False)
    assert len(read_jsonl(tmp_path / "resumed" / "curation.jsonl")) == 9
    curate(cfg("resumed"), progress=False)
    assert (tmp_path / "resumed" / "curated.jsonl").read_bytes() == (tmp_path / "clean" / "curated.jsonl").read_bytes()
    assert read_jsonl(tmp_path / "resumed" / "curation.jsonl")[9:] == records[9:]
    print(f"tiny-model curation of 27 rows: {clean_s:.1f}s")


def test_text_only_model_fails_image_rows_by_name(tmp_path, tiny_text_model):
    from r4b_trl.data.curation import CurationConfig, curate
    from r4b_trl.data.io import write_jsonl
    from r4b_trl.data.sample_set import squares_image

    squares_image(2, (30, 170, 60)).save(tmp_path / "g.png")
    write_jsonl(tmp_path / "d.jsonl", [{"question": "How many squares?", "answer": "2", "image": "g.png"},
                                       {"question": "What is 1 + 1?", "answer": "2", "image": None}])
    cfg = CurationConfig(dataset=str(tmp_path / "d.jsonl"), output_dir=str(tmp_path / "out"), n_samples=2,
                         columns={"image": "image"},
                         annotator={"type": "transformers", "model": tiny_text_model, "max_new_tokens": 4},
                         reasoner={"same_as": "annotator", "max_new_tokens": 4})
    s = curate(cfg, progress=False)
    assert s["rows"] == 2
    assert s["not_kept"][0]["id"] == "0" and "is a text-only model" in s["not_kept"][0]["reason"]
