"""How an exception raised in a worker process reaches the parent: pickled
with its formatted traceback, rebuilt there with CPython's own
``_RemoteTraceback`` as its ``__cause__`` (so tracebacks show both
sides, and code that checks for the class finds it). Light: a worker
imports it."""

from __future__ import annotations

import struct
import traceback
from typing import Any


class _ExceptionWithTraceback:
    def __init__(self, exc: BaseException, tb: str) -> None:
        self.exc = exc
        self.tb = '\n"""\n%s"""' % tb

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _rebuild_exc, (self.exc, self.tb)


def _rebuild_exc(exc: BaseException, tb: str) -> BaseException:
    from concurrent.futures.process import _RemoteTraceback

    exc.__cause__ = _RemoteTraceback(tb)
    return exc


def failure_payload(exc: BaseException, dumps: Any) -> bytes:
    """The failure payload for ``exc``: its one-line text (what the pool
    shows without unpickling, e.g. for a failed initializer), then the
    pickled exception with its traceback. An exception that cannot be
    pickled is replaced by the error pickling it raised, as CPython does."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickled = dumps(_ExceptionWithTraceback(exc, text))
    except BaseException as e:
        detail = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        pickled = dumps(_ExceptionWithTraceback(e, detail))
        text = detail
    summary = text.encode("utf-8", "replace")
    return struct.pack("<I", len(summary)) + summary + pickled
