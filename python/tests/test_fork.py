"""The ``fork`` start method: workers that are forks of the pool's process."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
import workloads

import concurrent_futures_rs as cf

TIMEOUT = 60


@pytest.fixture
def fork() -> Any:
    return multiprocessing.get_context("fork")


def test_workers_are_forks_and_see_what_the_parent_built_at_run_time(fork: Any) -> None:
    workloads.RUNTIME_STATE.append("made after import")
    try:
        with cf.ProcessPoolExecutor(2, mp_context=fork) as pool:
            assert pool.submit(workloads.runtime_state).result(TIMEOUT) == ["made after import"]
            assert pool.submit(workloads.parent_pid).result(TIMEOUT) == os.getpid()
            # As CPython's fork pools: every worker starts at the first submit.
            assert len(pool._processes) == 2
            assert list(pool.map(workloads.add, range(5), range(5), chunksize=2)) == [0, 2, 4, 6, 8]
    finally:
        workloads.RUNTIME_STATE.clear()


def test_a_fork_context_queue_in_initargs_reaches_the_workers(fork: Any) -> None:
    # Its semaphores exist only in forked children (the reason a spawned
    # worker could not use it).
    queue = fork.Queue()
    with cf.ProcessPoolExecutor(
        1, mp_context=fork, initializer=workloads.put_on, initargs=(queue, "hi")
    ) as pool:
        assert pool.submit(workloads.identity, 1).result(TIMEOUT) == 1
        assert queue.get(timeout=TIMEOUT) == "hi"


def test_a_failing_initializer_breaks_the_pool(fork: Any) -> None:
    pool = cf.ProcessPoolExecutor(1, mp_context=fork, initializer=workloads.init_fail)
    with pytest.raises(cf.process.BrokenProcessPool):
        pool.submit(workloads.identity, 1).result(TIMEOUT)
    pool.shutdown()


def test_a_dead_forked_worker_is_replaced_with_self_healing(fork: Any) -> None:
    with cf.ProcessPoolExecutor(1, mp_context=fork, self_healing=True) as pool:
        with pytest.raises(cf.process.WorkerDied):
            pool.submit(workloads.kill_self).result(TIMEOUT)
        assert pool.submit(workloads.add, 1, 2).result(TIMEOUT) == 3


def test_pools_shut_down_in_any_order_while_forks_of_the_other_live(fork: Any) -> None:
    # Each later fork inherited the earlier pool's pipes and closed them:
    # otherwise the first pool's workers would never read the end of their
    # input while the second pool's live, and its shutdown would hang.
    first = cf.ProcessPoolExecutor(2, mp_context=fork)
    assert first.submit(workloads.identity, 1).result(TIMEOUT) == 1
    second = cf.ProcessPoolExecutor(2, mp_context=fork)
    assert second.submit(workloads.identity, 2).result(TIMEOUT) == 2
    first.shutdown(wait=True)
    assert first._executor_manager_thread.join(TIMEOUT)
    second.shutdown(wait=True)


def test_max_tasks_per_child_is_refused_with_fork_as_in_cpython(fork: Any) -> None:
    with pytest.raises(ValueError, match="fork"):
        cf.ProcessPoolExecutor(1, mp_context=fork, max_tasks_per_child=1)


@pytest.mark.parametrize("size", [10, 3 << 20], ids=["small", "over-1-MiB"])
def test_a_forked_workers_calls_round_trip_at_any_size(fork: Any, size: int) -> None:
    # The engine keeps its own copy of each pickled call (a large one is
    # copied without the GIL), so no Python object is left for its threads
    # to drop unattached (scripts/python-audit aborts on such a drop).
    data = os.urandom(size)
    with cf.ProcessPoolExecutor(2, mp_context=fork) as pool:
        futures = [pool.submit(workloads.identity, data) for _ in range(4)]
        assert all(f.result(TIMEOUT) == data for f in futures)
