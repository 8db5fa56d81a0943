"""Verification workers: a *zygote* process imports math-verify once, then forks a worker per request of the pool
(``[in_fifo, out_fifo]`` on its stdin, answered with ``[pid]``), so a killed worker is replaced in milliseconds.

A worker reads JSON requests ``[id, answer, solution, kind]`` line by line from its input FIFO and answers
``[id, "gold", ok]`` once the reference is prepared and ``[id, "done", result]`` at the end. It may be killed at any
moment: that is how a check is stopped, whatever C code it is in.

Started by :mod:`r4b_trl.rewards.pool` as a plain script (``python _worker.py``), so it imports neither the
``r4b_trl`` package nor transformers.
"""

import json
import os
import signal
import sys


def serve(inp, out) -> None:
    out.write(b'"ready"\n')
    import check  # noqa: E402 - this script's folder is sys.path[0]

    for line in inp:
        try:
            rid, answer, solution, kind = json.loads(line)
        except ValueError:
            continue

        def on_gold(ok, rid=rid):
            out.write(json.dumps([rid, "gold", ok]).encode() + b"\n")

        try:
            result = check.verify_text(answer, solution, kind, on_gold)
        except Exception as e:  # noqa: BLE001 - reported to the caller, who scores the row 0
            result = f"error: {type(e).__name__}: {e}"[:300]
        out.write(json.dumps([rid, "done", result]).encode() + b"\n")


def main() -> None:
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything else printed (by Python or C code) goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    try:
        import resource

        limit = int(os.environ.get("R4B_REWARD_WORKER_MEM", str(4 << 30)))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # a huge number fails fast with MemoryError
    except (ImportError, ValueError, OSError):
        pass
    import check  # noqa: E402

    check.warm_up()  # the parser's lazy imports, regexes and caches, shared by every forked worker
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped automatically
    proto.write(b'"ready"\n')
    for line in sys.stdin.buffer:  # EOF: the pool is gone
        in_path, out_path = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                out = os.fdopen(os.open(out_path, os.O_WRONLY), "wb", buffering=0)
                inp = os.fdopen(os.open(in_path, os.O_RDONLY), "rb")  # waits for the pool to open its end
                serve(inp, out)
            finally:
                os._exit(0)
        proto.write(json.dumps([pid]).encode() + b"\n")


if __name__ == "__main__":
    main()
