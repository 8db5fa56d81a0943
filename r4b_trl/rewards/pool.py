"""A small persistent pool of verification processes with a hard time bound per check.

Each check is sent to an idle worker (``_worker.py``); if its answer has not come back ``timeout`` seconds later,
the worker is killed (SIGKILL: it does not matter what Python or C code it is in) and replaced at once by a fork of
the zygote process (which has math-verify imported: milliseconds), while the other workers go on. The caller never
runs parser code itself, so the bound holds in any thread (TRL runs ``async`` reward functions on an event-loop
thread where ``signal.alarm`` cannot work). Requests and answers travel over FIFOs as JSON lines.
"""

from __future__ import annotations

import atexit
import collections
import errno
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORKER = str(Path(__file__).with_name("_worker.py"))
#: Result of a check cut short by the time bound: (did the reference parse before the cut?).
TIMEOUT = "timeout"
#: Seconds the zygote may take to import math-verify before the pool gives up on processes.
STARTUP_S = 120.0


class PoolUnavailable(RuntimeError):
    """Worker processes cannot be started here."""


def _read_line(fd: int, deadline: float, buf: bytearray) -> bytes | None:
    """One line from ``fd`` before ``deadline`` (monotonic), or None (EOF or time up)."""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        data = os.read(fd, 1 << 16)
        if not data:
            return None
        buf += data
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


class _Zygote:
    """The process that has imported math-verify and forks workers on request."""

    def __init__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, close_fds=True)
        self.buf = bytearray()
        self.ready = _read_line(self.proc.stdout.fileno(), time.monotonic() + STARTUP_S, self.buf) == b'"ready"'
        self.dir = tempfile.mkdtemp(prefix="r4b-reward-")
        self._n = itertools.count()

    def fork(self) -> tuple[int, int, int] | None:
        """A new worker: (pid, fd to write requests, fd to read answers), or None if the zygote is gone."""
        n = next(self._n)
        in_path, out_path = os.path.join(self.dir, f"in{n}"), os.path.join(self.dir, f"out{n}")
        os.mkfifo(in_path)
        os.mkfifo(out_path)
        rfd = os.open(out_path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self.proc.stdin.write(json.dumps([in_path, out_path]).encode() + b"\n")
            self.proc.stdin.flush()
            line = _read_line(self.proc.stdout.fileno(), time.monotonic() + 30, self.buf)
            if line is None:
                raise OSError("the reward zygote did not answer")
            pid = json.loads(line)[0]
            deadline = time.monotonic() + 30
            while True:  # the worker opens its answer end first, then waits for ours on the request end
                try:
                    wfd = os.open(in_path, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError as e:
                    if e.errno != errno.ENXIO or time.monotonic() > deadline:
                        raise
                    time.sleep(0.001)
            os.set_blocking(wfd, True)
            return pid, wfd, rfd
        except (OSError, ValueError):
            os.close(rfd)
            return None
        finally:
            for path in (in_path, out_path):
                os.unlink(path)

    def close(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


class _Worker:
    def __init__(self, pid: int, wfd: int, rfd: int):
        self.pid, self.wfd, self.rfd = pid, wfd, rfd
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
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass


class WorkerPool:
    """``run(requests, timeout)`` → one result per request, ``TIMEOUT`` for a check that ran out of time."""

    def __init__(self, size: int, spare: int = 1):
        self.size = max(1, size)  # checks running at once
        self.spare = max(0, spare)  # extra started workers, so that a kill does not leave the batch waiting
        self.workers: list[_Worker] = []
        self.zygote: _Zygote | None = None
        self.lock = threading.Lock()
        self.kills = 0  # checks cut short so far (observable in tests and the benchmark)
        self.crashes = 0
        self._ids = itertools.count()
        atexit.register(self.close)

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers = []
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    def _new_worker(self) -> _Worker:
        for _ in range(3):
            if self.zygote is None or not self.zygote.ready:
                if self.zygote is not None:
                    self.zygote.close()
                self.zygote = _Zygote()
                if not self.zygote.ready:
                    self.zygote.close()
                    self.zygote = None
                    raise PoolUnavailable(f"reward workers did not start ({sys.executable} {WORKER})")
            forked = self.zygote.fork()
            if forked is not None:
                return _Worker(*forked)
            self.zygote.ready = False  # the zygote died: start another
        raise PoolUnavailable("the reward zygote cannot fork workers")

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.workers[self.workers.index(w)] = self._new_worker()

    def run(self, requests: list[list], timeout: float) -> list:
        with self.lock:
            total = self.size + self.spare
            if len(self.workers) < total:
                self.workers += [self._new_worker() for _ in range(total - len(self.workers))]
            return self._run(requests, timeout)

    def _run(self, requests: list[list], timeout: float) -> list:
        results: list = [None] * len(requests)
        queue = collections.deque(range(len(requests)))
        while queue or any(w.task is not None for w in self.workers):
            now = time.monotonic()
            for w in list(self.workers):
                if w.ready and w.task is None and queue and sum(x.task is not None for x in self.workers) < self.size:
                    i, rid = queue.popleft(), next(self._ids)
                    if not w.send(rid, requests[i]):
                        queue.appendleft(i)
                        self.crashes += 1
                        self._replace(w)
                        continue
                    w.task, w.rid, w.deadline, w.gold_ok = i, rid, time.monotonic() + timeout, None
            busy = [w for w in self.workers if w.task is not None]
            starting = [w for w in self.workers if not w.ready]
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
            self._replace(w)
            return
        w.buf += data
        while b"\n" in w.buf:
            line, w.buf = w.buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg == "ready":
                w.ready = True
            elif w.task is not None and msg[0] == w.rid:
                if msg[1] == "gold":
                    w.gold_ok = bool(msg[2])
                else:
                    results[w.task], w.task = msg[2], None
