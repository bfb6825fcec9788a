"""The exceptions the Rust core raises for what its engines report, and
the decoding of a process pool worker's answers."""

from __future__ import annotations

import pickle
from concurrent.futures import _base as _std
from concurrent.futures.thread import BrokenThreadPool
from typing import Any

__all__ = ["BrokenThreadPool", "decode_answer", "engine_error"]

# CPython's words for a worker that died under a pool that cannot heal.
_TERMINATED = (
    "A process in the process pool was terminated abruptly while the future was running or pending."
)


def engine_error(kind: str, message: str, pid: int | None, exitcode: int | None) -> BaseException:
    """The exception a future gets for a failure of the process engine."""
    from . import process

    if kind == "broken":
        return process.BrokenProcessPool(f"{_TERMINATED} ({message})")
    if kind == "died":
        return process.WorkerDied(message, pid=pid, exitcode=exitcode)
    if kind == "timeout":
        return _std.TimeoutError(message)
    if kind == "cancelled":
        return _std.CancelledError()
    if kind == "shutdown":
        return RuntimeError("cannot schedule new futures after shutdown")
    return RuntimeError(message)


def decode_answer(ok: bool, data: bytes, pid: int | None) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, exception)`` from a worker's answer;
    an answer that cannot be unpickled fails its future with
    ``BrokenProcessPool`` (as in CPython), the unpickling error its cause."""
    try:
        return ok, pickle.loads(data)
    except BaseException as e:
        from . import process

        error = process.BrokenProcessPool(
            f"the result from worker {pid} could not be unpickled: {e!r}"
        )
        error.__cause__ = e
        return False, error
