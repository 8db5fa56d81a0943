"""One error convention for every entry point (``recipes/*.py``, ``data_prep/*.py``, ``python -m r4b_trl.*``).

* :class:`UsageError` — bad input the user can fix (an option, a config key, a path, a data row). Its message is
  one line: what is wrong, where (option; row number *and* id; column) and what to do. The entry point prints
  ``error: <message>`` on stderr and exits **2**, before any model weights are loaded.
* :class:`ServiceError` — an outside service gave up (e.g. an OpenAI-compatible endpoint that is down or answers
  HTTP 5xx). Same one line, exit **1**; whatever work finished is saved first.
* ``--debug`` on the command line, or ``R4B_DEBUG=1`` in the environment, re-raises instead, with the traceback.

Library code raises these (``DataError``, ``ModeError`` and ``EvalError`` are :class:`UsageError` s); entry points
call :func:`cli` (or wrap their body in :func:`handled_errors`). :func:`row_label` names a row the same way
everywhere: ``row 8 (id 'q7')``, 1-based, with the id when the row has one.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Sequence

__all__ = ["UsageError", "ServiceError", "row_label", "problems", "one_line", "config_errors", "split_debug",
           "handled_errors", "cli"]

DEBUG_FLAG = "--debug"
DEBUG_ENV = "R4B_DEBUG"


class UsageError(ValueError):
    """Bad input the user can fix; the message names the option / row / column and says what to do."""


class ServiceError(RuntimeError):
    """An outside service (model server, endpoint) gave up; the message says what happened and what to do."""


def row_label(index: int, row_id: Any = None) -> str:
    """``row 8`` for the 0-based ``index`` 7 (the 8th row, the 8th line of a JSONL file), with `` (id 'q7')`` when
    the row has an id."""
    label = f"row {index + 1}"
    if row_id is not None and str(row_id) != "":
        label += f" (id {str(row_id)!r})"
    return label


def problems(source: str, found: Sequence[str], fix: str, total: int | None = None) -> str:
    """One line listing problems: ``<source>: <p1>; <p2>. <fix>`` (each problem's own final period dropped, so
    the sentence never ends in ``..``)."""
    shown = "; ".join(p.strip().rstrip(".") for p in found)
    more = f" ({total} in all)" if total is not None and total > len(found) else ""
    return f"{source}: {shown}{more}. {fix.strip()}"


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (line breaks become spaces)."""
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__


@contextmanager
def config_errors(what: str = "config"):
    """Turn the ``ValueError`` / ``TypeError`` s raised while parsing options (dataclass ``__post_init__`` checks,
    TRL's and transformers' argument validation) into :class:`UsageError` s."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError) as e:
        raise UsageError(f"{what}: {one_line(e)}") from e


def _debug_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def split_debug(argv: Iterable[str] | None = None) -> tuple[list[str], bool]:
    """``(argv without --debug, debug?)``; ``argv=None`` reads ``sys.argv[1:]``. ``R4B_DEBUG=1`` also turns
    debugging on."""
    args = list(sys.argv[1:] if argv is None else argv)
    keep, debug = [], _debug_env()
    for i, a in enumerate(args):
        # a bare --debug is ours; ``--debug underflow_overflow`` is transformers' TrainingArguments.debug
        if a == DEBUG_FLAG and (i + 1 == len(args) or args[i + 1].startswith("-")):
            debug = True
        else:
            keep.append(a)
    return keep, debug


@contextmanager
def handled_errors(debug: bool | None = None):
    """Print a :class:`UsageError` / :class:`ServiceError` as one ``error:`` line and exit 2 / 1 (re-raise with the
    traceback when debugging)."""
    debug = _debug_env() if debug is None else debug
    try:
        yield
    except (UsageError, ServiceError) as e:
        if debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
        raise SystemExit(2 if isinstance(e, UsageError) else 1) from None


def cli(main: Callable[[list[str]], Any], argv: Iterable[str] | None = None) -> int:
    """Run ``main(argv)`` under the convention and return the exit status: ``main``'s int result (else 0), or 2 /
    1 after printing a :class:`UsageError` / :class:`ServiceError` as one line. Use as ``sys.exit(cli(main))``."""
    args, debug = split_debug(argv)
    try:
        with handled_errors(debug):
            result = main(args)
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            return e.code or 0
        raise
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
