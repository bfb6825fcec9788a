"""The thread pool: CPython's behaviour on a Rust queue."""

from __future__ import annotations

import concurrent.futures as std
import threading

import pytest

import concurrent_futures_rs as cf


def test_submit_and_map() -> None:
    with cf.ThreadPoolExecutor(max_workers=3) as pool:
        assert pool.submit(pow, 2, 8).result() == 256
        assert list(pool.map(pow, [1, 2, 3], [2, 2, 2])) == [1, 4, 9]
        assert isinstance(pool, std.ThreadPoolExecutor)


def test_thread_names_and_threads() -> None:
    with cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="worker") as pool:
        name = pool.submit(lambda: threading.current_thread().name).result()
        assert name.startswith("worker_")
        assert all(t.name.startswith("worker_") for t in pool._threads)


def test_idle_threads_are_reused() -> None:
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(10):
            pool.submit(abs, -1).result()
        assert len(pool._threads) == 1


def test_exception_in_task() -> None:
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        f = pool.submit(int, "x")
        assert isinstance(f.exception(), ValueError)


def test_submit_after_shutdown() -> None:
    pool = cf.ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(abs, 1)


def test_shutdown_cancel_futures() -> None:
    pool = cf.ThreadPoolExecutor(max_workers=1)
    gate = threading.Event()
    started = threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait(30)

    first = pool.submit(hold)
    assert started.wait(30)
    rest = [pool.submit(abs, -i) for i in range(5)]
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    pool.shutdown(wait=True)
    assert first.result() is True
    assert all(f.cancelled() for f in rest)


def test_failing_initializer_breaks_the_pool() -> None:
    def init() -> None:
        raise ValueError("no")

    pool = cf.ThreadPoolExecutor(max_workers=1, initializer=init)
    try:
        f = pool.submit(abs, -1)
        with pytest.raises(cf.BrokenThreadPool):
            f.result(timeout=30)
        with pytest.raises(cf.BrokenThreadPool):
            pool.submit(abs, -1)
    finally:
        pool.shutdown()


def test_map_buffersize_submits_ahead_only_that_far() -> None:
    submitted: list[int] = []

    def source() -> object:
        for i in range(100):
            submitted.append(i)
            yield i

    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(abs, source(), buffersize=3)
        assert next(results) == 0
        assert len(submitted) <= 5
        assert list(results) == list(range(1, 100))
        with pytest.raises(ValueError):
            pool.map(abs, [1], buffersize=0)


def test_map_timeout() -> None:
    gate = threading.Event()
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        results = pool.map(gate.wait, [30])
        with pytest.raises(std.TimeoutError):
            next(iter(pool.map(gate.wait, [30], timeout=0.01)))
        gate.set()
        assert list(results) == [True]


def test_dropped_executor_lets_its_threads_exit() -> None:
    pool = cf.ThreadPoolExecutor(max_workers=2)
    pool.submit(abs, 1).result()
    threads = list(pool._threads)
    del pool
    for t in threads:
        t.join(30)
        assert not t.is_alive()
