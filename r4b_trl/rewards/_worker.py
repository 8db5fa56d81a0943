"""Verification worker: reads JSON requests ``[id, answer, solution, kind]`` line by line on stdin, answers
``[id, "gold", ok]`` once the reference is prepared and ``[id, "done", result]`` at the end.

Started by :mod:`r4b_trl.rewards.pool` as a plain script (``python _worker.py``), so it imports neither the
``r4b_trl`` package nor transformers: a replacement worker is ready in about a second. It may be killed at any
moment; that is how a check is stopped, whatever C code it is in.
"""

import json
import os
import sys


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
    import check  # noqa: E402 - this script's folder is sys.path[0]

    check.verify_text(r"\boxed{\frac{1}{2}}", "0.5", "math")  # warm the parser's lazy imports and regexes
    proto.write(b'"ready"\n')
    for line in sys.stdin.buffer:
        try:
            rid, answer, solution, kind = json.loads(line)
        except ValueError:
            continue

        def on_gold(ok, rid=rid):
            proto.write(json.dumps([rid, "gold", ok]).encode() + b"\n")

        try:
            result = check.verify_text(answer, solution, kind, on_gold)
        except Exception as e:  # noqa: BLE001 - reported to the caller, who scores the row 0
            result = f"error: {type(e).__name__}: {e}"[:300]
        proto.write(json.dumps([rid, "done", result]).encode() + b"\n")


if __name__ == "__main__":
    main()
