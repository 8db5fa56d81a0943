"""Curation when things go wrong: an endpoint that gives up (HTTP 500, nothing listening) is recorded per row, the
summary is written, the command stops with one line, and a rerun retries; a kill mid-chunk never duplicates
records."""

import importlib.util
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from r4b_trl.data.curation import curate
from r4b_trl.data.io import read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


class Server:
    """A /v1/completions endpoint that answers sums right (``status`` = 200) or fails with ``status``."""

    def __init__(self):
        self.status, self.posts = 500, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.posts += 1
                if server.status != 200:
                    self.send_response(server.status)
                    self.end_headers()
                    self.wfile.write(b"internal error")
                    return
                choices = []
                for i, prompt in enumerate(body["prompt"]):
                    a, b = map(int, re.findall(r"What is (\d+) \+ (\d+)\?", prompt)[-1])
                    for k in range(body.get("n", 1)):
                        choices.append({"index": i * body.get("n", 1) + k, "finish_reason": "stop",
                                        "text": f"The answer is \\boxed{{{a + b}}}."})
                data = json.dumps({"choices": choices}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _cli():
    spec = importlib.util.spec_from_file_location("curate_cli", ROOT / "data_prep" / "curate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _config(tmp_path, name, url, model):
    data = tmp_path / "sums.jsonl"
    write_jsonl(data, [{"id": f"s{i}", "question": f"What is {i} + {2 * i}?", "answer": str(3 * i)}
                       for i in range(6)])
    cfg = {"dataset": str(data), "output_dir": str(tmp_path / name), "columns": {"id": "id"}, "n_samples": 2,
           "chunk_size": 2, "annotator": {"type": "openai", "base_url": url, "model": model, "max_retries": 1,
                                          "batch_size": 8, "timeout": 10}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_endpoint_http_500_is_recorded_then_retried(tmp_path, tiny_text_model, capsys):
    srv = Server()
    try:
        srv.status = 200
        assert _cli().main(["--config", str(_config(tmp_path, "clean", srv.url, tiny_text_model)),
                            "--no_progress"]) == 0
        srv.status = 500
        cfg = _config(tmp_path, "down", srv.url, tiny_text_model)
        rc = _cli().main(["--config", str(cfg), "--no_progress"])
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.startswith("error: ")]
        assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
        assert "HTTP 500" in lines[0] and "Is the server up" not in lines[0] and "rerun" in lines[0]
        out = tmp_path / "down"
        summary = json.loads((out / "curation_summary.json").read_text())
        assert summary["incomplete"] is True and summary["counts"]["failed"] == 2 and summary["not_reached"] == 4
        assert [r["id"] for r in summary["not_kept"]] == ["s0", "s1"]
        assert summary["not_kept"][0]["reason"] == "row 1 (id 's0'): the annotator endpoint gave up (HTTP 500)"
        records = read_jsonl(out / "curation.jsonl")
        assert [r["id"] for r in records] == ["s0", "s1"] and all("HTTP 500" in r["evidence"]["endpoint_error"]
                                                                  for r in records)
        assert not (out / "curated.jsonl").exists()

        srv.status = 200  # the server is back: the rerun retries the failed rows, and writes each row once
        assert _cli().main(["--config", str(cfg), "--no_progress"]) == 0
    finally:
        srv.close()
    ids = [r["id"] for r in read_jsonl(out / "curation.jsonl")]
    assert sorted(ids) == [f"s{i}" for i in range(6)] and len(ids) == 6
    assert (out / "curated.jsonl").read_bytes() == (tmp_path / "clean" / "curated.jsonl").read_bytes()
    assert json.loads((out / "curation_summary.json").read_text())["counts"]["non_thinking"] == 6


def test_no_server_says_is_it_up(tmp_path, tiny_text_model, capsys):
    cfg = _config(tmp_path, "nobody", "http://127.0.0.1:9/v1", tiny_text_model)
    assert _cli().main(["--config", str(cfg), "--no_progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Is the server up" in err and "no connection" in json.dumps(
        json.loads((tmp_path / "nobody" / "curation_summary.json").read_text())["not_kept"])


def test_kill_mid_chunk_never_duplicates_records(tmp_path):
    """A kill while a chunk's records were being appended leaves some of them (the last maybe cut mid-line); the
    resumed run rewrites that chunk once."""
    from tests.test_curation import _cfg

    clean = _cfg(tmp_path / "clean", chunk_size=4)
    curate(clean, progress=False)
    clean_out = Path(clean.output_dir)
    records_file = (clean_out / "curation.jsonl").read_bytes()
    lines = records_file.split(b"\n")
    killed = tmp_path / "killed" / "out"
    shutil.copytree(clean_out, killed)
    for name in ("curated.jsonl", "curation_summary.json", "README.md", "data_card.json"):
        (killed / name).unlink(missing_ok=True)
    # chunks 1-2 written, then 2 whole records of chunk 3 and half of the third
    (killed / "curation.jsonl").write_bytes(b"\n".join(lines[:10]) + b"\n" + lines[10][:15])
    resumed = _cfg(tmp_path / "killed", chunk_size=4)
    curate(resumed, progress=False)
    ids = [r["id"] for r in read_jsonl(killed / "curation.jsonl")]
    assert len(ids) == len(set(ids)) == len([x for x in lines if x.strip()])
    assert (killed / "curated.jsonl").read_bytes() == (clean_out / "curated.jsonl").read_bytes()
    assert sorted((killed / "curation.jsonl").read_bytes().split(b"\n")) == sorted(records_file.split(b"\n"))


@pytest.mark.parametrize("bad", ["unknown_key", "missing_file"])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, bad):
    from tests.test_curation import FAKE_CFG

    cfg = yaml.safe_load(FAKE_CFG.read_text())
    if bad == "unknown_key":
        cfg["n_sample"] = 3
    else:
        cfg["dataset"] = str(tmp_path / "nope.jsonl")
    cfg["output_dir"] = str(tmp_path / "o")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert _cli().main(["--config", str(tmp_path / "c.yaml"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([x for x in err.splitlines() if x.startswith("error: ")]) == 1
    assert ("n_sample" in err) if bad == "unknown_key" else ("nope.jsonl: file not found" in err)
