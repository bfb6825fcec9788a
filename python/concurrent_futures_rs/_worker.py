"""A process pool worker: ``python -c "from concurrent_futures_rs._worker
import main; main()"``, started by the pool with its pipes.

The first message prepares the process as CPython's ``spawn`` does
(``sys.path``, the working directory, the parent's ``__main__`` as
``__mp_main__``), then runs the pool's initializer; each call is a
pickled ``(fn, args, kwargs)``. Imports stay light until the first call
needs more.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

from . import _remote

PROTOCOL = pickle.HIGHEST_PROTOCOL


def proof() -> bytes:
    """What a worker of this package on this interpreter says first."""
    from . import __version__

    return f"concurrent_futures_rs {__version__} {sys.version}".encode()


def _die(code: int) -> None:
    """Ends the worker as CPython's does when it cannot read a call: the
    pool sees the process gone."""
    import os

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


class Handler:
    """The worker's half of the pool's pickle codec, called by the Rust loop."""

    def __init__(self) -> None:
        self._loads = pickle.loads
        self._dumps = pickle.dumps

    def proof(self) -> bytes:
        return proof()

    def _failure(self, exc: BaseException) -> bytes:
        return _remote.failure_payload(exc, lambda obj: self._dumps(obj, PROTOCOL))

    def init(self, prelude: bytes, payload: bytes) -> bytes:
        """Prepares the process and runs the initializer; a failure
        payload (the pool breaks with it), or empty bytes."""
        import multiprocessing.process
        import multiprocessing.spawn

        try:
            data = self._loads(prelude)
            process = multiprocessing.process.current_process()
            # As spawn_main: a pool made while importing the parent's main
            # module (no `if __name__ == "__main__":` guard) is refused
            # with CPython's explanation, not started recursively.
            process._inheriting = True  # type: ignore[attr-defined]
            try:
                multiprocessing.spawn.prepare(data)
            finally:
                process._inheriting = False  # type: ignore[attr-defined]
            initializer, initargs = self._loads(payload)
        except BaseException as e:
            return self._failure(e)
        return self._run_initializer(initializer, initargs)

    def _run_initializer(self, initializer: Any, initargs: tuple[Any, ...]) -> bytes:
        """Runs the pool's initializer: a failure payload, or empty bytes."""
        if initializer is None:
            return b""
        try:
            initializer(*initargs)
        except BaseException as e:
            import logging

            logging.getLogger("concurrent.futures").critical(
                "Exception in initializer:", exc_info=True
            )
            failure = self._failure(e)
            # The pool breaks, and may stop this process, as soon as the
            # failure arrives. A CPython worker exits first, and its exit
            # flushes multiprocessing's queues (feeder threads): what the
            # initializer logged through one (a QueueHandler) must not be
            # lost in that race.
            try:
                import multiprocessing.util

                multiprocessing.util._exit_function()  # type: ignore[attr-defined]
            except BaseException:  # the failure report matters more
                pass
            return failure
        return b""

    def call(self, function: bytes, arg: bytes) -> tuple[bool, bytes]:
        """Runs one pickled call: ``(True, pickled result)`` or ``(False,
        failure payload)``. A call that cannot be unpickled ends the
        worker, as in CPython (the pool reports the worker's death)."""
        try:
            fn, args, kwargs = self._loads(arg)
        except BaseException:
            import traceback

            traceback.print_exc()
            _die(1)
            raise
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            return False, self._failure(e)
        finally:
            del fn, args, kwargs
        try:
            return True, self._dumps(result, PROTOCOL)
        except BaseException as e:
            return False, self._failure(e)

    def failure(self, kind: str, message: str) -> bytes:
        """A failure of the loop itself (an argument too large for memory)."""
        error = MemoryError(message) if kind == "deserialize" else RuntimeError(message)
        return self._failure(error)


class ForkedHandler(Handler):
    """A forked worker's handler: the process is already the parent's copy,
    so there is nothing to prepare, and the initializer and its arguments
    are the parent's very objects (a fork context's queue among them),
    never pickled."""

    def __init__(self, initializer: Any, initargs: tuple[Any, ...]) -> None:
        super().__init__()
        self._initializer = initializer
        self._initargs = initargs

    def init(self, prelude: bytes, payload: bytes) -> bytes:
        return self._run_initializer(self._initializer, self._initargs)


def serve_forked(spec: Any, initializer: Any, initargs: tuple[Any, ...]) -> None:
    """A forked worker's ``run()``: serves the pool until it closes our
    input, then exits with the loop's code."""
    from . import _core

    sys.exit(_core.serve_forked_worker(spec, ForkedHandler(initializer, initargs)))


def main() -> None:
    """The worker's entry: serves the pool until it closes our input."""
    from . import _core

    code = _core.serve_worker(Handler())
    sys.exit(code)
