"""The chat CLI: thinking shown apart from the answer while streaming, every mode (R-4B names too), interactive."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r4b_trl.chat import ChatSession, StreamDisplay, main
from r4b_trl.generation import Generation
from r4b_trl.modes import ModePrefixes

ROOT = Path(__file__).resolve().parent.parent
P = ModePrefixes()


def shown(prefix, pieces):
    out = io.StringIO()
    d = StreamDisplay(prefix, P, out)
    for piece in pieces:
        d.feed(piece)
    d.close()
    return out.getvalue()


@pytest.mark.parametrize("split", [1, 3, 100])
def test_stream_display_separates_thinking_and_answer(split):
    text = "\nFirst 2+3.\nThat is 5.\n</think>\n\nThe answer is 5."
    pieces = [text[i:i + split] for i in range(0, len(text), split)]  # tags split across pieces too
    assert shown("<think>", pieces) == "[thinking]\nFirst 2+3.\nThat is 5.\n[answer]\nThe answer is 5.\n"
    assert shown("<think>\n", pieces) == "[thinking]\nFirst 2+3.\nThat is 5.\n[answer]\nThe answer is 5.\n"
    direct = "\n\n</think>\n\nJust 5."
    assert shown("<think>", [direct[i:i + split] for i in range(0, len(direct), split)]) == "[answer]\nJust 5.\n"
    assert shown(P.non_thinking, ["Just", " 5."]) == "[answer]\nJust 5.\n"
    assert shown("<think>\n", ["still thinking </thi"]) == "[thinking]\nstill thinking </thi\n"  # never closed


class FakeStreamingBackend:
    def __init__(self, processing_class, replies):
        self.processing_class = processing_class
        self.replies = list(replies)
        self.prompts = []

    def stream(self, prompt, images=None, *, max_new_tokens, temperature, top_p, result=None):
        self.prompts.append((prompt, images))
        pieces, n, finished = self.replies.pop(0)
        yield from pieces
        result["generation"] = Generation("".join(pieces), n, finished)


def test_chat_session_reports_mode_and_tokens_and_keeps_answer_only_history(text_tokenizer):
    backend = FakeStreamingBackend(text_tokenizer, [
        (["Let me add.", "\n</think>\n\n", "5"], 9, True),
        (["6"], 2, True),
        (["never closed"], 4, False),
    ])
    s = ChatSession(backend, max_new_tokens=4)
    out = io.StringIO()
    r = s.ask("What is 2+3?", "long", out=out)
    assert out.getvalue() == ("[thinking]\nLet me add.\n[answer]\n5\n"
                              "[mode: thinking | 9 tokens | finished | requested thinking]\n")
    assert r["text"] == "<think>\nLet me add.\n</think>\n\n5" and r["answer"] == "5"
    assert backend.prompts[0][0].endswith("<|im_start|>assistant\n<think>\n")
    out = io.StringIO()
    r = s.ask("And 3+3?", "short", out=out)
    assert out.getvalue() == "[answer]\n6\n[mode: non_thinking | 2 tokens | finished | requested non_thinking]\n"
    prompt = backend.prompts[1][0]
    assert "What is 2+3?" in prompt and "And 3+3?" in prompt and "Let me add." not in prompt  # no old reasoning
    assert prompt.endswith(P.non_thinking)
    out = io.StringIO()
    s.ask("Hard one", "auto", out=out)
    assert out.getvalue().endswith("[answer]\n(no answer: the think block was never closed)\n"
                                   "[mode: truncated | 4 tokens | stopped at max_new_tokens=4 | requested auto]\n")


@pytest.mark.parametrize("mode,canonical,prefix", [
    ("auto", "auto", "<think>"), ("thinking", "thinking", "<think>\n"), ("long", "thinking", "<think>\n"),
    ("non_thinking", "non_thinking", P.non_thinking), ("short", "non_thinking", P.non_thinking)])
def test_chat_main_in_each_mode_on_tiny_model(tiny_text_model, mode, canonical, prefix, monkeypatch):
    import r4b_trl.chat as chat

    seen = []
    real_ask = chat.ChatSession.ask

    def spy(self, question, mode, images=None, out=sys.stdout):
        r = real_ask(self, question, mode, images, out)
        seen.append(r)
        return r

    monkeypatch.setattr(chat.ChatSession, "ask", spy)
    out = io.StringIO()
    assert main(["--model", tiny_text_model, "--mode", mode, "--max_new_tokens", "5", "What is 2+3?"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert "[answer]" in lines
    assert lines[-1].startswith("[mode: ") and lines[-1].endswith(f"| requested {canonical}]")
    (r,) = seen
    assert r["requested"] == canonical and r["text"].startswith(prefix) and 1 <= r["num_tokens"] <= 5


def run_chat(args, stdin=""):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "r4b_trl.chat", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=180)


def test_chat_cli_one_shot_and_interactive(tiny_vision_model, tmp_path, red_image):
    red_image.save(tmp_path / "red.png")
    proc = run_chat(["--model", tiny_vision_model, "--image", str(tmp_path / "red.png"), "--mode", "short",
                     "--max_new_tokens", "4", "How many red squares?"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[answer]" in proc.stdout and proc.stdout.rstrip().endswith("| requested non_thinking]")

    stdin = "first question\n/mode long\nsecond question\n/mode medium\n/reset\n/mode short\nthird\nexit\nnot asked\n"
    proc = run_chat(["--model", tiny_vision_model, "--max_new_tokens", "3"], stdin)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("[mode: ")]
    assert [s.rsplit("requested ", 1)[1] for s in summaries] == ["auto]", "thinking]", "non_thinking]"]
    assert "[mode set to thinking]" in proc.stdout and "[conversation cleared]" in proc.stdout
    assert "[error] Unknown thinking mode 'medium'" in proc.stdout



def test_chat_rejects_unknown_mode_before_loading(capsys):
    assert main(["--model", "/nonexistent/model", "--mode", "medium", "q"]) == 2
    assert "Unknown thinking mode 'medium'" in capsys.readouterr().err


def test_stream_reports_the_same_generation_as_generate(tiny_text_model, text_tokenizer):
    from r4b_trl.data.io import user_prompt
    from r4b_trl.generation import TransformersBackend
    from r4b_trl.templates import render_prompt

    backend = TransformersBackend.from_pretrained(tiny_text_model, batch_size=1)
    prompt = render_prompt(text_tokenizer, user_prompt("What is 2+3?"), "thinking")
    result = {}
    streamed = "".join(backend.stream(prompt, max_new_tokens=7, result=result))
    (g,) = backend.generate([prompt], max_new_tokens=7)[0]
    assert result["generation"] == g and streamed == g.text
