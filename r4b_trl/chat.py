"""Chat with an auto-thinking model in a chosen mode, streaming the thinking and the answer separately.

    python -m r4b_trl.chat --model PATH [--image FILE] [--mode auto|thinking|non_thinking|long|short] "question"
    python -m r4b_trl.chat --model PATH            # interactive: one question per line, until EOF or `exit`

Interactive commands: ``/mode NAME`` switches the mode, ``/image FILE`` attaches an image to the next question,
``/reset`` forgets the conversation, ``exit`` (or ``quit``, or end of input) leaves.

Output: a ``[thinking]`` block (only when the model reasons), an ``[answer]`` block, then one line with the mode the
model took and the number of generated tokens, e.g. ``[mode: thinking | 231 tokens | requested auto]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, Sequence

from .modes import Mode, ModePrefixes, get_prefixes, parse_response, resolve_mode
from .templates import render_prompt

THINKING_HEADER = "[thinking]"
ANSWER_HEADER = "[answer]"


class StreamDisplay:
    """Split a streamed assistant turn into a thinking block and an answer block as it arrives.

    ``prefix`` is the forced pre-fill (it is part of the turn, not shown). Pieces are written as soon as they
    cannot be the start of the closing tag; an empty think block (non-thinking) shows no ``[thinking]`` block.
    """

    def __init__(self, prefix: str, prefixes: ModePrefixes, out: IO[str]):
        self.p = prefixes
        self.out = out
        self.text = prefix
        self.pos = 0
        self.in_think = prefix.startswith(prefixes.open_tag)
        if self.in_think:
            self.pos = len(prefixes.open_tag)
        self.thinking_shown = False
        self.answer_shown = False
        self.last = "\n"

    def write(self, s: str) -> None:
        if s:
            self.out.write(s)
            self.last = s[-1]

    def newline(self) -> None:
        """End the current line, if one is open."""
        if self.last != "\n":
            self.write("\n")

    def feed(self, piece: str) -> None:
        self.text += piece
        self._drain(final=False)

    def close(self) -> None:
        self._drain(final=True)
        self.newline()
        self.out.flush()

    def _drain(self, final: bool) -> None:
        close = self.p.close_tag
        while True:
            pending = self.text[self.pos:]
            if not self.in_think:
                self._answer(pending)
                self.pos += len(pending)
                break
            idx = pending.find(close)
            if idx >= 0:
                self._thinking(pending[:idx])
                self.pos += idx + len(close)
                self.in_think = False
                continue
            keep = 0
            if not final:  # hold back what could be the beginning of the closing tag
                for k in range(min(len(close) - 1, len(pending)), 0, -1):
                    if close.startswith(pending[-k:]):
                        keep = k
                        break
            self._thinking(pending[:len(pending) - keep])
            self.pos += len(pending) - keep
            break
        self.out.flush()

    def _thinking(self, s: str) -> None:
        s = s.replace(self.p.open_tag, "")
        if not self.thinking_shown:
            s = s.lstrip()
            if not s:
                return
            self.write(THINKING_HEADER + "\n")
            self.thinking_shown = True
        self.write(s)

    def _answer(self, s: str) -> None:
        if not self.answer_shown:
            s = s.lstrip()
            if not s:
                return
            self.newline()
            self.write(ANSWER_HEADER + "\n")
            self.answer_shown = True
        self.write(s)


class ChatSession:
    """A conversation with one model. Assistant turns enter the history without their reasoning (as Qwen3's
    template does); images accumulate in order with their image blocks."""

    def __init__(self, backend, prefixes: ModePrefixes | None = None, system: str | None = None,
                 max_new_tokens: int = 8192, temperature: float = 0.0, top_p: float = 1.0,
                 history: bool = True):
        self.backend = backend
        self.processing_class = backend.processing_class
        self.prefixes = prefixes or get_prefixes()
        self.system = system
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.keep_history = history
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        self.images: list = []

    def ask(self, question: str, mode: str | Mode = "auto", images: Sequence | None = None,
            out: IO[str] = sys.stdout) -> dict:
        """Stream one answer to ``out``; returns ``{"mode", "requested", "num_tokens", "finished", "text",
        "answer", "reasoning"}`` where ``text`` is the full assistant turn (pre-fill + generation)."""
        mode = resolve_mode(mode)
        images = list(images or [])
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}] if images else question
        messages = self.messages + [{"role": "user", "content": content}]
        all_images = self.images + images
        prompt = render_prompt(self.processing_class, messages, mode, self.prefixes)
        prefix = self.prefixes.prefix(mode)
        display = StreamDisplay(prefix, self.prefixes, out)
        result: dict = {}
        for piece in self.backend.stream(prompt, all_images or None, max_new_tokens=self.max_new_tokens,
                                         temperature=self.temperature, top_p=self.top_p, result=result):
            display.feed(piece)
        gen = result["generation"]
        full = prefix + gen.text
        parsed = parse_response(full, self.prefixes)
        if not display.answer_shown:
            display.newline()
            display.write(ANSWER_HEADER + "\n(no answer"
                          + (": the think block was never closed" if parsed.mode == "truncated" else "") + ")")
        display.close()
        status = "finished" if gen.finished else f"stopped at max_new_tokens={self.max_new_tokens}"
        out.write(f"[mode: {parsed.mode} | {gen.num_tokens} tokens | {status} | requested {mode.value}]\n")
        out.flush()
        if self.keep_history:
            self.messages = messages + [{"role": "assistant", "content": parsed.answer}]
            self.images = all_images
        return {"mode": parsed.mode, "requested": mode.value, "num_tokens": gen.num_tokens,
                "finished": gen.finished, "text": full, "answer": parsed.answer, "reasoning": parsed.reasoning}


def _load_images(paths: Sequence[str]) -> list:
    from .data.io import load_image

    return [load_image(p, where=f"--image {p}") for p in paths]


def interactive(session: ChatSession, mode: Mode, images: list, stdin: IO[str], out: IO[str]) -> None:
    show_prompt = stdin.isatty()
    pending_images = list(images)
    while True:
        if show_prompt:
            out.write(f"({mode.value}) >>> ")
            out.flush()
        line = stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line.lower() in ("exit", "quit", "/exit", "/quit"):
            break
        if line.startswith("/mode"):
            try:
                mode = resolve_mode(line[len("/mode"):].strip())
                out.write(f"[mode set to {mode.value}]\n")
            except ValueError as e:
                out.write(f"[error] {e}\n")
            continue
        if line.startswith("/image"):
            try:
                pending_images += _load_images([line[len("/image"):].strip()])
                out.write(f"[{len(pending_images)} image(s) attached to the next question]\n")
            except ValueError as e:
                out.write(f"[error] {e}\n")
            continue
        if line == "/reset":
            session.reset()
            out.write("[conversation cleared]\n")
            continue
        session.ask(line, mode, pending_images, out)
        pending_images = []


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m r4b_trl.chat", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("question", nargs="?", help="the question; without it, read questions from stdin (interactive)")
    p.add_argument("--model", required=True, help="local path or Hub id")
    p.add_argument("--adapter", default=None, help="optional LoRA adapter")
    p.add_argument("--image", action="append", default=[], help="image file (repeat for several)")
    p.add_argument("--mode", default="auto", help="auto | thinking | non_thinking (R-4B: long | short)")
    p.add_argument("--max_new_tokens", type=int, default=8192)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top_p", type=float, default=1.0)
    p.add_argument("--system", default=None, help="optional system prompt")
    p.add_argument("--prefix_family", default=None, help="mode prefix family (default qwen3/R-4B strings)")
    p.add_argument("--trust_remote_code", action="store_true")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    p.add_argument("--no_history", action="store_true", help="interactive: answer each line independently")
    return p


def main(argv: Sequence[str] | None = None, stdin: IO[str] | None = None, out: IO[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    try:
        mode = resolve_mode(args.mode)
        prefixes = get_prefixes(args.prefix_family)
        images = _load_images(args.image)
        from .templates import check_model_template

        check_model_template(args.model, prefixes, trust_remote_code=args.trust_remote_code, stage="chat")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch

    from .generation import TransformersBackend

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = TransformersBackend.from_pretrained(
        args.model, batch_size=1, trust_remote_code=args.trust_remote_code, dtype=args.dtype, adapter=args.adapter,
        device_map=None if device == "cpu" else device)
    session = ChatSession(backend, prefixes, system=args.system, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_p=args.top_p, history=not args.no_history)
    if args.question:
        session.ask(args.question, mode, images, out)
    else:
        interactive(session, mode, images, stdin, out)
    return 0


if __name__ == "__main__":
    from .errors import cli

    raise SystemExit(cli(main))
