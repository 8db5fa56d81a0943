"""OpenAIBackend against a deterministic OpenAI-compatible server on 127.0.0.1, and curation through it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r4b_trl.generation import ChatPrompt, OpenAIBackend, chat_prompt_in_mode


class FakeServer:
    """Answers /v1/completions and /v1/chat/completions deterministically; records every request body.

    Completions: "The answer is \\boxed{42}." when the prompt asks 17 + 25, else "\\boxed{0}"-style, with the
    prompt index and sample index appended so ordering can be checked. Chat: a thinking answer counting squares
    when thinking is switched on, else a short direct answer. ``fail_first`` requests get HTTP 503.
    """

    def __init__(self, fail_first=0):
        self.requests = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append((self.path, body, self.headers.get("Authorization")))
                    fail = server.fail_first > 0
                    server.fail_first -= 1 if fail else 0
                if fail:
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"busy")
                    return
                if body.get("model") == "bad":
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b'{"error": "unknown model"}')
                    return
                if self.path == "/v1/completions":
                    resp = server.completions(body)
                elif self.path == "/v1/chat/completions":
                    resp = server.chat(body)
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(resp).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def completions(self, body):
        choices = []
        for i, prompt in enumerate(body["prompt"]):
            for k in range(body.get("n", 1)):
                if "17 + 25" in prompt:
                    text = "The answer is \\boxed{42}."
                elif prompt.endswith("<think>\n"):  # thinking pre-fill: a trace for the reasoner
                    text = "Working step by step.\n</think>\n\nThe answer is \\boxed{150}."
                else:
                    text = f"The answer is \\boxed{{0}}. [{i}.{k}]"
                choices.append({"index": i * body.get("n", 1) + k, "text": text, "finish_reason": "stop"})
        choices.reverse()  # servers may answer in any order: the backend sorts by index
        return {"choices": choices, "usage": {"completion_tokens": 7 * len(choices)}}

    def chat(self, body):
        kw = body.get("chat_template_kwargs") or {}
        thinking = kw.get("thinking_mode") == "long" or kw.get("enable_thinking") is True
        n_images = sum(1 for m in body["messages"] if isinstance(m["content"], list)
                       for p in m["content"] if p.get("type") == "image_url")
        choices = []
        for k in range(body.get("n", 1)):
            if thinking:
                msg = {"content": f"I see {n_images} image(s) with 3 squares.\n</think>\n\nThe answer is \\boxed{{3}}."}
            else:
                msg = {"content": "The image is mostly red."}
            choices.append({"index": k, "message": {"role": "assistant", **msg}, "finish_reason": "stop"})
        return {"choices": choices, "usage": {"completion_tokens": 5}}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_completions_are_batched_ordered_and_retried():
    with FakeServer(fail_first=2) as srv:
        b = OpenAIBackend(srv.url, "m", batch_size=2, concurrency=3, backoff=0.01, timeout=10, api_key="sk-test")
        prompts = ["q0", "What is 17 + 25?", "q2", "q3", "q4"]
        out = b.generate(prompts, max_new_tokens=8, temperature=1.0, n=2, seed=3)
    assert [len(r) for r in out] == [2] * 5
    assert out[1][0].text == "The answer is \\boxed{42}."
    assert out[0][1].text.endswith("[0.1]") and out[3][0].text.endswith("[1.0]")  # order within each batch
    assert all(g.finished and g.num_tokens == 7 for r in out for g in r)
    posts = [r for r in srv.requests if r[0] == "/v1/completions"]
    assert len(posts) == 3 + 2  # 3 batches of <= 2 prompts, plus 2 answered 503 and retried
    assert all(body["n"] == 2 and body["seed"] == 3 and body["max_tokens"] == 8 for _, body, _ in posts)
    assert {auth for _, _, auth in posts} == {"Bearer sk-test"}


def test_http_errors_are_clear():
    with FakeServer(fail_first=100) as srv:
        b = OpenAIBackend(srv.url + "/v1", "m", max_retries=1, backoff=0.01, timeout=5)
        with pytest.raises(ConnectionError, match="no answer after 2 attempts.*HTTP 503"):
            b.generate(["x"])
    with FakeServer() as srv:
        with pytest.raises(RuntimeError, match="HTTP 400.*unknown model"):
            OpenAIBackend(srv.url, "bad", max_retries=3, backoff=0.01).generate(["x"])
    with pytest.raises(ConnectionError, match="Is the server up"):
        OpenAIBackend("http://127.0.0.1:9", "m", max_retries=0, timeout=2).generate(["x"])


def test_chat_prompt_with_images_and_modes(vision_processor, text_tokenizer, red_image):
    from r4b_trl.data.io import user_prompt

    msgs = user_prompt("How many squares?", 1)
    cp = chat_prompt_in_mode(vision_processor, msgs, "thinking")  # R-4B-style template
    assert cp.chat_template_kwargs == {"thinking_mode": "long"} and cp.prefix == "<think>\n" and cp.prefill is None
    assert chat_prompt_in_mode(text_tokenizer, msgs, "non_thinking").chat_template_kwargs == {"enable_thinking": False}
    with FakeServer() as srv:
        b = OpenAIBackend(srv.url, "m", tokenizer=text_tokenizer)
        out = b.generate([cp, chat_prompt_in_mode(vision_processor, msgs, "non_thinking")],
                         [[red_image], [red_image]], n=2)
        with pytest.raises(ValueError, match="pass it as a ChatPrompt"):
            b.generate(["rendered text"], [[red_image]])
    think, direct = out
    assert len(think) == 2 and ("<think>\n" + think[0].text).startswith("<think>\nI see 1 image(s)")
    assert direct[0].text == "The image is mostly red."
    assert think[0].num_tokens == len(text_tokenizer.encode(think[0].text, add_special_tokens=False)) + 1
    chat = [body for path, body, _ in srv.requests if path == "/v1/chat/completions"]
    part = chat[0]["messages"][0]["content"][0]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
    assert chat[0]["messages"][0]["content"][1] == {"type": "text", "text": "How many squares?"}


def test_plain_template_uses_continue_final_message(text_tokenizer):
    import copy

    plain = copy.deepcopy(text_tokenizer)
    plain.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    cp = chat_prompt_in_mode(plain, [{"role": "user", "content": "hi"}], "non_thinking")
    assert cp.prefill == "<think>\n\n</think>\n\n" and cp.chat_template_kwargs == {}
    with FakeServer() as srv:
        out = OpenAIBackend(srv.url, "m").generate([cp])
    body = srv.requests[0][1]
    assert body["messages"][-1] == {"role": "assistant", "content": "<think>\n\n</think>\n\n"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert out[0][0].text == "The image is mostly red."


def test_reasoning_field_is_folded_back():
    class Srv(FakeServer):
        def chat(self, body):
            return {"choices": [{"index": 0, "finish_reason": "stop", "message": {
                "reasoning_content": "\nstep one\n", "content": "\n\nDone."}}]}

    with Srv() as srv:
        cp = ChatPrompt([{"role": "user", "content": "x"}], {"enable_thinking": True}, prefix="<think>\n")
        g = OpenAIBackend(srv.url, "m").generate([cp])[0][0]
    assert "<think>\n" + g.text == "<think>\nstep one\n</think>\n\nDone."


def test_curation_through_openai_endpoint(tmp_path, tiny_vision_model):
    """Text rows go to /v1/completions rendered with the local processor, image rows to chat completions."""
    from r4b_trl.data.curation import CurationConfig, curate
    from r4b_trl.data.io import read_jsonl, write_jsonl
    from r4b_trl.templates import render_prompt

    src = tmp_path / "d.jsonl"
    from r4b_trl.data.sample_set import squares_image

    squares_image(3, (220, 30, 30)).save(tmp_path / "r.png")
    write_jsonl(src, [
        {"id": "a", "question": "What is 17 + 25?", "answer": "42", "image": None},
        {"id": "b", "question": "A train travels 60 km/h for 2.5 hours. How far?", "answer": "150", "image": None},
        {"id": "c", "question": "How many squares?", "answer": "3", "image": "r.png"},
    ])
    with FakeServer() as srv:
        spec = {"type": "openai", "base_url": srv.url + "/v1", "model": tiny_vision_model, "batch_size": 8}
        cfg = CurationConfig(dataset=str(src), output_dir=str(tmp_path / "out"), n_samples=3,
                             columns={"id": "id", "image": "image"}, annotator=spec, chunk_size=8)
        summary = curate(cfg, progress=False)
    assert summary["counts"]["non_thinking"] == 1 and summary["counts"]["thinking"] == 2, summary
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "curated.jsonl")}
    assert rows["a"]["evidence"]["pass_count"] == 3
    assert rows["b"]["completion"][0]["content"] == "<think>\nWorking step by step.\n</think>\n\nThe answer is \\boxed{150}."
    assert rows["c"]["completion"][0]["content"].startswith("<think>\nI see 1 image(s)")
    comp = [b for p, b, _ in srv.requests if p == "/v1/completions"]
    import r4b_trl  # noqa: F401
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_vision_model)
    from r4b_trl.data.io import user_prompt

    assert comp[0]["prompt"] == [render_prompt(proc, user_prompt(q), "non_thinking") for q in
                                 ("What is 17 + 25?", "A train travels 60 km/h for 2.5 hours. How far?")]
    chat_modes = [b["chat_template_kwargs"] for p, b, _ in srv.requests if p == "/v1/chat/completions"]
    assert chat_modes == [{"thinking_mode": "short"}, {"thinking_mode": "long"}]


def test_cut_off_correct_answer_falls_back_to_reference(tmp_path, tiny_vision_model):
    """A correct annotator answer that hit max_new_tokens still counts as a pass, but the target is the reference."""
    from r4b_trl.data.curation import CurationConfig, curate
    from r4b_trl.data.io import read_jsonl, write_jsonl

    class Srv(FakeServer):
        def completions(self, body):
            resp = super().completions(body)
            for c in resp["choices"]:
                c["finish_reason"] = "length"
            return resp

    write_jsonl(tmp_path / "d.jsonl", [{"question": "What is 17 + 25?", "answer": "42"}])
    with Srv() as srv:
        cfg = CurationConfig(dataset=str(tmp_path / "d.jsonl"), output_dir=str(tmp_path / "out"), n_samples=2,
                             annotator={"type": "openai", "base_url": srv.url, "model": tiny_vision_model})
        curate(cfg, progress=False)
    row = read_jsonl(tmp_path / "out" / "curated.jsonl")[0]
    assert row["evidence"]["pass_count"] == 2 and row["evidence"]["target_source"] == "reference"
    assert row["completion"][0]["content"] == "<think>\n\n</think>\n\n42"
