"""A small persistent pool of verification processes with a hard time bound per check.

Each check is sent to an idle worker (``_worker.py``); if its answer has not come back ``timeout`` seconds later,
the worker is killed (SIGKILL: it does not matter what Python or C code it is in) and a replacement is started at
once, while the other workers go on. The caller never runs parser code itself, so the bound holds in any thread
(TRL runs ``async`` reward functions on an event-loop thread where ``signal.alarm`` cannot work).
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

WORKER = str(Path(__file__).with_name("_worker.py"))
#: Result of a check cut short by the time bound: (did the reference parse before the cut?).
TIMEOUT = "timeout"
#: Seconds a new worker may take to import math-verify before the pool gives up on processes.
STARTUP_S = 120.0


class PoolUnavailable(RuntimeError):
    """Worker processes cannot be started here."""


class _Worker:
    def __init__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONNOUSERSITE=os.environ.get("PYTHONNOUSERSITE", ""))
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, close_fds=True)
        self.rfd, self.wfd = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        self.started = time.monotonic()
        self.buf, self.ready = b"", False
        self.task: int | None = None
        self.rid: int | None = None
        self.deadline = 0.0
        self.gold_ok: bool | None = None

    def send(self, rid: int, request: list) -> bool:
        data = memoryview(json.dumps([rid, *request]).encode() + b"\n")
        try:
            while data:
                data = data[os.write(self.wfd, data):]
            return True
        except OSError:  # the worker died
            return False

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass


class WorkerPool:
    """``run(requests, timeout)`` → one result per request, ``TIMEOUT`` for a check that ran out of time."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.kills = 0  # checks cut short so far (observable in tests and the benchmark)
        self.crashes = 0
        self._ids = itertools.count()
        self._failed_starts = 0
        atexit.register(self.close)

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers = []

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.workers[self.workers.index(w)] = _Worker()

    def run(self, requests: list[list], timeout: float) -> list:
        with self.lock:
            if len(self.workers) < self.size:
                self.workers += [_Worker() for _ in range(self.size - len(self.workers))]
            return self._run(requests, timeout)

    def _run(self, requests: list[list], timeout: float) -> list:
        results: list = [None] * len(requests)
        queue = collections.deque(range(len(requests)))
        while queue or any(w.task is not None for w in self.workers):
            now = time.monotonic()
            for w in list(self.workers):
                if w.ready and w.task is None and queue:
                    i, rid = queue.popleft(), next(self._ids)
                    if not w.send(rid, requests[i]):
                        queue.appendleft(i)
                        self.crashes += 1
                        self._replace(w)
                        continue
                    w.task, w.rid, w.deadline, w.gold_ok = i, rid, time.monotonic() + timeout, None
            busy = [w for w in self.workers if w.task is not None]
            starting = [w for w in self.workers if not w.ready]
            if starting and not any(w.ready for w in self.workers):
                if all(now - w.started > STARTUP_S for w in starting) or self._failed_starts >= 3:
                    raise PoolUnavailable(f"reward workers did not start ({sys.executable} {WORKER})")
            wait = min((w.deadline for w in busy), default=now + 0.5) - now
            readable, _, _ = select.select([w.rfd for w in busy + starting], [], [], max(0.0, min(wait, 0.5)))
            for fd in readable:
                w = next((x for x in self.workers if x.rfd == fd), None)
                if w is not None:
                    self._read(w, results)
            now = time.monotonic()
            for w in [x for x in self.workers if x.task is not None and now >= x.deadline]:
                results[w.task] = (TIMEOUT, w.gold_ok)
                self.kills += 1
                self._replace(w)
        return results

    def _read(self, w: _Worker, results: list) -> None:
        try:
            data = os.read(w.rfd, 1 << 16)
        except OSError:
            data = b""
        if not data:  # the worker died (a crash, or killed from outside)
            if w.task is not None:
                results[w.task] = "error: the verification worker died"
                self.crashes += 1
            elif not w.ready:
                self._failed_starts += 1
            self._replace(w)
            return
        w.buf += data
        while b"\n" in w.buf:
            line, w.buf = w.buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg == "ready":
                w.ready, self._failed_starts = True, 0
            elif w.task is not None and msg[0] == w.rid:
                if msg[1] == "gold":
                    w.gold_ok = bool(msg[2])
                else:
                    results[w.task], w.task = msg[2], None
