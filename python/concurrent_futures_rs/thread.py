"""``ThreadPoolExecutor``, as ``concurrent.futures.thread``'s, on a Rust
queue. Its workers are ``threading.Thread``s running a Rust loop; it
subclasses the stdlib's class, so ``loop.set_default_executor`` and
``isinstance`` accept it."""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import thread as _std_thread
from typing import Any

from . import _base, _core

BrokenThreadPool = _std_thread.BrokenThreadPool

__all__ = ["BrokenThreadPool", "ThreadPoolExecutor"]


def _worker(
    executor_ref: weakref.ReferenceType[Any],
    work_queue: Any,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> None:
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            _base.LOGGER.critical("Exception in initializer:", exc_info=True)
            executor = executor_ref()
            if executor is not None:
                executor._initializer_failed()
            return
    try:
        work_queue.serve()
    except BaseException:
        _base.LOGGER.critical("Exception in worker", exc_info=True)


class ThreadPoolExecutor(_core.ThreadPoolBase, _std_thread.ThreadPoolExecutor):
    """A pool of threads, as ``concurrent.futures.ThreadPoolExecutor``.

    >>> with ThreadPoolExecutor(max_workers=2) as pool:
    ...     pool.submit(pow, 2, 10).result()
    1024
    """

    # Used to assign unique thread names when thread_name_prefix is not supplied.
    _counter = itertools.count().__next__

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is None:
            # As CPython: at least 5 for I/O bound work, at most 32.
            max_workers = min(32, _base._cpu_count() + 4)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        self._threads: set[threading.Thread] = set()
        self._thread_name_prefix = thread_name_prefix or ("ThreadPoolExecutor-%d" % self._counter())
        self._initializer = initializer
        self._initargs = initargs
        self._configure(max_workers)

    def _start_worker(self, number: int) -> None:
        """Called by ``submit`` (under the pool's lock) for each new thread."""
        name = "%s_%d" % (self._thread_name_prefix or self, number)
        thread = threading.Thread(
            name=name,
            target=_worker,
            args=(weakref.ref(self), self._work_queue, self._initializer, self._initargs),
        )
        thread.start()
        self._threads.add(thread)
        _base._threads_queues[thread] = self._work_queue

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[Any]:
        """``fn`` over the iterables, results in order; with
        ``buffersize``, at most that many calls run ahead (Python 3.14)."""
        return _base._map(self, fn, iterables, timeout, buffersize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Takes no more work; with ``cancel_futures``, cancels what has not
        started; with ``wait``, returns once every worker is done."""
        self._shutdown_core(cancel_futures)
        if wait:
            for thread in list(self._threads):
                thread.join()

    def __repr__(self) -> str:
        return "<%s at %#x max_workers=%d threads=%d queued=%d>" % (
            type(self).__name__,
            id(self),
            self._max_workers,
            len(self._threads),
            self._queued(),
        )
