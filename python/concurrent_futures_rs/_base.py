"""The future, ``wait`` and ``as_completed``, and every other name of the
standard library's ``concurrent.futures._base`` (its constants and
exception classes are the very same objects).

Our ``Future`` subclasses the stdlib's, with the Rust state first in the
MRO; ``wait`` and ``as_completed`` take ours and the stdlib's futures
mixed (a stdlib future is bridged through its own waiter protocol).
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import _base as _std
from typing import Any

# Every name of the stdlib's module, so that this module can stand in for
# it (``concurrent.futures._base``) under ``install()``.
globals().update(
    {k: v for k, v in vars(_std).items() if not (k.startswith("__") and k.endswith("__"))}
)

from . import _core  # noqa: E402 - after the stdlib's names

FIRST_COMPLETED = _std.FIRST_COMPLETED
FIRST_EXCEPTION = _std.FIRST_EXCEPTION
ALL_COMPLETED = _std.ALL_COMPLETED
PENDING = _std.PENDING
RUNNING = _std.RUNNING
CANCELLED = _std.CANCELLED
CANCELLED_AND_NOTIFIED = _std.CANCELLED_AND_NOTIFIED
FINISHED = _std.FINISHED
CancelledError = _std.CancelledError
TimeoutError = _std.TimeoutError  # noqa: A001 - the stdlib's name
InvalidStateError = _std.InvalidStateError
BrokenExecutor = _std.BrokenExecutor
Executor = _std.Executor
DoneAndNotDoneFutures = _std.DoneAndNotDoneFutures
LOGGER = _std.LOGGER
_STATE_TO_DESCRIPTION_MAP = _std._STATE_TO_DESCRIPTION_MAP


class Future(_core.FutureBase, _std.Future):
    """A call's eventual outcome, as ``concurrent.futures.Future``.

    >>> f = Future()
    >>> f.set_result(3)
    >>> f.result(), f.done(), f.cancelled()
    (3, True, False)
    """

    # The stdlib's __init__ builds a Condition and lists we do not use.
    __init__ = object.__init__

    def __repr__(self) -> str:
        state = self._state
        description = _STATE_TO_DESCRIPTION_MAP[state]
        name = self.__class__.__name__
        if state == FINISHED:
            exception = self._exception
            if exception is not None:
                return "<%s at %#x state=%s raised %s>" % (
                    name,
                    id(self),
                    description,
                    exception.__class__.__name__,
                )
            return "<%s at %#x state=%s returned %s>" % (
                name,
                id(self),
                description,
                self._result.__class__.__name__,
            )
        return "<%s at %#x state=%s>" % (name, id(self), description)

    # The stdlib's waiting machinery, made on first use, for code that
    # waits on our futures with the stdlib's own wait() or pokes them as
    # CPython's test fixtures do.
    @property
    def _condition(self) -> threading.Condition:
        condition = self.__dict__.get("_cf_condition")
        if condition is None:
            condition = self.__dict__.setdefault("_cf_condition", threading.Condition())
            self._watch()
        return condition

    @property
    def _waiters(self) -> list[Any]:
        waiters = self.__dict__.get("_cf_waiters")
        if waiters is None:
            waiters = self.__dict__.setdefault("_cf_waiters", [])
            self._watch()
        return waiters


def _invoke_callbacks(future: Future, callbacks: list[Callable[[Future], object]]) -> None:
    for callback in callbacks:
        try:
            callback(future)
        except Exception:
            LOGGER.exception("exception calling callback for %r", future)


def _on_done(future: Future, callbacks: list[Callable[[Future], object]]) -> None:
    """Runs in the completing thread: wakes stdlib waiters, then callbacks."""
    namespace = future.__dict__
    condition = namespace.get("_cf_condition")
    if condition is not None:
        with condition:
            for waiter in namespace.get("_cf_waiters", ()):
                if future.cancelled():
                    waiter.add_cancelled(future)
                elif future._exception is not None:
                    waiter.add_exception(future)
                else:
                    waiter.add_result(future)
            condition.notify_all()
    if callbacks:
        _invoke_callbacks(future, callbacks)


class _Bridge:
    """Stands in one of our futures for each foreign (stdlib) future,
    completed through the stdlib's waiter protocol (``_waiters``)."""

    def __init__(self, foreign: Iterable[Any]) -> None:
        self._originals: dict[int, Any] = {}
        self._proxies: dict[int, Future] = {}
        self.proxies: list[Future] = []
        for f in foreign:
            proxy = Future()
            self._originals[id(proxy)] = f
            self._proxies[id(f)] = proxy
            self.proxies.append(proxy)
            with f._condition:
                if f._state == CANCELLED_AND_NOTIFIED:
                    proxy.cancel()
                elif f._state == FINISHED:
                    self._complete(f, proxy)
                else:
                    f._waiters.append(self)

    @staticmethod
    def _complete(f: Any, proxy: Future) -> None:
        if f._exception is not None:
            proxy.set_exception(f._exception)
        else:
            proxy.set_result(None)

    def add_result(self, f: Any) -> None:
        self._proxies[id(f)].set_result(None)

    def add_exception(self, f: Any) -> None:
        self._proxies[id(f)].set_exception(f._exception)

    def add_cancelled(self, f: Any) -> None:
        self._proxies[id(f)].cancel()

    def release(self, f: Any) -> None:
        """Lets go of ``f``, which is done."""
        self._proxies.pop(id(f), None)
        with f._condition:
            try:
                f._waiters.remove(self)
            except ValueError:
                pass

    def close(self) -> None:
        for f in self._originals.values():
            with f._condition:
                try:
                    f._waiters.remove(self)
                except ValueError:
                    pass
        self._originals.clear()
        self._proxies.clear()
        self.proxies.clear()


def _split(fs: set[Any]) -> tuple[list[Future], list[Any]]:
    ours = []
    foreign = []
    for f in fs:
        (ours if isinstance(f, _core.FutureBase) else foreign).append(f)
    return ours, foreign


def wait(
    fs: Iterable[Any], timeout: float | None = None, return_when: str = ALL_COMPLETED
) -> DoneAndNotDoneFutures:
    """Waits for the futures, as ``concurrent.futures.wait``: returns the
    named tuple ``(done, not_done)`` of sets.

    >>> f = Future(); f.set_result(1)
    >>> wait([f]).done == {f}
    True
    """
    fs = set(fs)
    ours, foreign = _split(fs)
    if not foreign:
        done, not_done = _core.wait(ours, timeout, return_when)
        return DoneAndNotDoneFutures(done, not_done)
    bridge = _Bridge(foreign)
    try:
        done, not_done = _core.wait(ours + bridge.proxies, timeout, return_when)
        originals = bridge._originals
        back = {originals.get(id(f), f) for f in done}
        rest = {originals.get(id(f), f) for f in not_done}
    finally:
        bridge.close()
    return DoneAndNotDoneFutures(back, rest)


def as_completed(fs: Iterable[Any], timeout: float | None = None) -> Iterator[Any]:
    """Yields the futures as they complete, as
    ``concurrent.futures.as_completed``; raises ``TimeoutError`` when
    ``timeout`` seconds pass (counted from the first ``next``) first.

    >>> f = Future(); f.set_result(1)
    >>> list(as_completed([f])) == [f]
    True
    """
    fs = set(fs)
    ours, foreign = _split(fs)
    # Only the iterator holds the futures from here: each is let go as it
    # is yielded (bpo-27144).
    del fs
    if not foreign:
        iterator = _core.AsCompleted(ours, timeout)
        del ours
        try:
            yield from iterator
        finally:
            iterator.close()
        return
    bridge = _Bridge(foreign)
    del foreign
    iterator = _core.AsCompleted(ours + bridge.proxies, timeout)
    del ours
    bridge.proxies.clear()
    originals = bridge._originals
    try:
        for f in iterator:
            original = originals.pop(id(f), None)
            if original is None:
                yield f
            else:
                del f
                bridge.release(original)
                yield original
                del original
    finally:
        iterator.close()
        bridge.close()


def _result_or_cancel(future: Any, timeout: float | None = None) -> Any:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        # Break a reference cycle with the exception in future._exception.
        del future


def _map(
    executor: Any,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    timeout: float | None,
    buffersize: int | None,
) -> Iterator[Any]:
    """``Executor.map`` as in Python 3.14, with its ``buffersize``: at most
    that many calls are submitted ahead of the one being waited for."""
    if buffersize is not None and not isinstance(buffersize, int):
        raise TypeError("buffersize must be an integer or None")
    if buffersize is not None and buffersize < 1:
        raise ValueError("buffersize must be None or > 0")
    end_time = None if timeout is None else timeout + time.monotonic()
    zipped = zip(*iterables)
    if buffersize:
        fs: Any = collections.deque(
            executor.submit(fn, *args) for args in itertools.islice(zipped, buffersize)
        )
    else:
        fs = [executor.submit(fn, *args) for args in zipped]
    executor_ref = weakref.ref(executor)

    def result_iterator() -> Iterator[Any]:
        try:
            fs.reverse()
            while fs:
                if buffersize:
                    owner = executor_ref()
                    args = next(zipped, None) if owner is not None else None
                    if args is not None:
                        fs.appendleft(owner.submit(fn, *args))
                    del owner
                # Careful not to keep a reference to the popped future.
                if end_time is None:
                    yield _result_or_cancel(fs.pop())
                else:
                    yield _result_or_cancel(fs.pop(), end_time - time.monotonic())
        finally:
            for future in fs:
                future.cancel()

    return result_iterator()


def _cpu_count() -> int:
    counter = getattr(os, "process_cpu_count", None) or os.cpu_count
    return counter() or 1


# --- interpreter exit ------------------------------------------------------

# Set once the interpreter began to exit: no pool takes work after that.
_global_shutdown = False
# The live process pools, shut down (their pending work done) at exit.
_process_pools: weakref.WeakSet[Any] = weakref.WeakSet()
# Each thread pool worker and its queue, woken and joined at exit.
_threads_queues: weakref.WeakKeyDictionary[threading.Thread, Any] = weakref.WeakKeyDictionary()


def _python_exit() -> None:
    """Joins every pool before the interpreter finalizes, as CPython's
    ``concurrent.futures`` does: pending work completes."""
    global _global_shutdown
    _core.global_shutdown()
    _global_shutdown = True
    for pool in list(_process_pools):
        pool._engine.shutdown(True, False)
    items = list(_threads_queues.items())
    for _, queue in items:
        queue.wake()
    for thread, _ in items:
        thread.join()
    _core.interpreter_exiting()


def _after_fork_in_child() -> None:
    _core.after_fork()
    # The parent's pools have no threads or workers here.
    _process_pools.clear()
    _threads_queues.clear()


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_core.before_fork,
        after_in_parent=_core.after_fork,
        after_in_child=_after_fork_in_child,
    )


def _configure() -> None:
    from . import _engine_errors

    _core.configure(
        {
            "future_class": Future,
            "cancelled_error": CancelledError,
            "timeout_error": TimeoutError,
            "invalid_state_error": InvalidStateError,
            "broken_thread_pool": _engine_errors.BrokenThreadPool,
            "on_done": _on_done,
            "invoke_callbacks": _invoke_callbacks,
            "engine_error": _engine_errors.engine_error,
            "decode_answer": _engine_errors.decode_answer,
            "PENDING": PENDING,
            "RUNNING": RUNNING,
            "CANCELLED": CANCELLED,
            "CANCELLED_AND_NOTIFIED": CANCELLED_AND_NOTIFIED,
            "FINISHED": FINISHED,
        }
    )


_configure()
