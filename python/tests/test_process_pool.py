"""The process pool: CPython's behaviour, and what goes beyond it."""

from __future__ import annotations

import concurrent.futures as std
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import workloads

import concurrent_futures_rs as cf
from concurrent_futures_rs import process

TIMEOUT = 60


@pytest.fixture
def pool() -> Any:
    with cf.ProcessPoolExecutor(max_workers=2) as p:
        yield p


def test_submit_map_and_kwargs(pool: cf.ProcessPoolExecutor) -> None:
    assert pool.submit(workloads.add, 2, b=3).result(TIMEOUT) == 5
    assert list(pool.map(workloads.add, range(10), range(10), chunksize=3)) == list(range(0, 20, 2))
    assert isinstance(pool, std.ProcessPoolExecutor)


def test_remote_exception_keeps_its_traceback(pool: cf.ProcessPoolExecutor) -> None:
    f = pool.submit(workloads.raise_value_error, "bad input")
    error = f.exception(TIMEOUT)
    assert type(error) is ValueError and error.args == ("bad input",)
    assert type(error.__cause__) is std.process._RemoteTraceback
    assert "raise ValueError(message)" in error.__cause__.tb


def test_unpicklable_argument_fails_its_future_only(pool: cf.ProcessPoolExecutor) -> None:
    f = pool.submit(workloads.identity, lambda: 1)
    with pytest.raises((AttributeError, TypeError, pickle_error())):
        f.result(TIMEOUT)
    assert pool.submit(workloads.identity, 1).result(TIMEOUT) == 1


def pickle_error() -> type:
    import pickle

    return pickle.PicklingError


def test_unpicklable_result(pool: cf.ProcessPoolExecutor) -> None:
    with pytest.raises(TypeError, match="refuses pickling"):
        pool.submit(workloads.return_unpicklable).result(TIMEOUT)
    assert pool.submit(workloads.identity, 2).result(TIMEOUT) == 2


def test_result_that_fails_to_unpickle(pool: cf.ProcessPoolExecutor) -> None:
    with pytest.raises(cf.BrokenProcessPool) as info:
        pool.submit(workloads.return_fails_to_unpickle).result(TIMEOUT)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_system_exit_in_task_is_its_exception(pool: cf.ProcessPoolExecutor) -> None:
    with pytest.raises(SystemExit):
        pool.submit(workloads.exit_with, 3).result(TIMEOUT)


def test_dead_worker_breaks_the_pool_as_cpython() -> None:
    with cf.ProcessPoolExecutor(max_workers=1) as pool:
        f = pool.submit(workloads.kill_self)
        with pytest.raises(cf.BrokenProcessPool):
            f.result(TIMEOUT)
        with pytest.raises(cf.BrokenProcessPool):
            pool.submit(workloads.identity, 1)
        assert pool._broken


def test_self_healing_fails_only_the_call() -> None:
    with cf.ProcessPoolExecutor(max_workers=1, self_healing=True) as pool:
        first = pool.submit(workloads.pid).result(TIMEOUT)
        with pytest.raises(cf.WorkerDied) as info:
            pool.submit(workloads.kill_self).result(TIMEOUT)
        assert info.value.pid == first
        assert info.value.exitcode == -signal.SIGKILL
        assert isinstance(info.value, cf.BrokenProcessPool)
        assert pool.submit(workloads.pid).result(TIMEOUT) != first


def test_task_timeout_kills_and_replaces_the_worker() -> None:
    with cf.ProcessPoolExecutor(max_workers=1, task_timeout=0.5) as pool:
        slow = pool.submit(workloads.sleep_then, 60, "late")
        with pytest.raises(std.TimeoutError):
            slow.result(TIMEOUT)
        assert pool.submit(workloads.identity, "next").result(TIMEOUT) == "next"


def test_cancel_a_running_call(manager: Any) -> None:
    event = manager.Event()
    with cf.ProcessPoolExecutor(max_workers=1) as pool:
        f = pool.submit(workloads.set_then_sleep, event, 60)
        assert event.wait(TIMEOUT)
        assert not f.cancel()  # CPython's answer for a running future
        assert pool.cancel(f)
        with pytest.raises(cf.CancelledError):
            f.result(TIMEOUT)
        assert f.cancelled()
        assert pool.submit(workloads.identity, 1).result(TIMEOUT) == 1


def test_initializer_and_max_tasks_per_child() -> None:
    with cf.ProcessPoolExecutor(
        max_workers=1, initializer=workloads.init, initargs=("ready",), max_tasks_per_child=2
    ) as pool:
        pids = [pool.submit(workloads.pid).result(TIMEOUT) for _ in range(4)]
        assert pids[0] == pids[1] != pids[2] == pids[3]
        assert pool.submit(workloads.initialized).result(TIMEOUT) == ["ready"]
        assert pool._mp_context.get_start_method() == "spawn"


def test_failing_initializer_breaks_the_pool() -> None:
    with cf.ProcessPoolExecutor(max_workers=1, initializer=workloads.init_fail) as pool:
        with pytest.raises(cf.BrokenProcessPool):
            pool.submit(workloads.identity, 1).result(TIMEOUT)
        assert "error in initializer" in pool._broken


def test_processes_and_terminate() -> None:
    import multiprocessing

    # Workers start on demand (CPython's spawn); `fork` starts them all.
    pool = cf.ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(workloads.identity, 1).result(TIMEOUT)
    processes = pool._processes
    assert len(processes) == 1
    (worker,) = processes.values()
    assert worker.is_alive()
    pool.terminate_workers()
    worker.join(TIMEOUT)
    assert not worker.is_alive()
    with pytest.raises(RuntimeError):
        pool.submit(workloads.identity, 1)


def test_fork_context_starts_every_worker_at_first_submit() -> None:
    import multiprocessing

    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(workloads.identity, 1).result(TIMEOUT)
        assert len(pool._processes) == 2
    with pytest.raises(ValueError):
        cf.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("fork"), max_tasks_per_child=1
        )


def test_reusable_executor() -> None:
    a = cf.get_reusable_executor(max_workers=1)
    assert cf.get_reusable_executor(max_workers=1) is a
    b = cf.get_reusable_executor(max_workers=2)
    assert b is not a and a._shutdown_thread
    b.shutdown()
    c = cf.get_reusable_executor(max_workers=2)
    assert c is not b
    c.shutdown()


def test_cloudpickle_opt_in() -> None:
    pytest.importorskip("cloudpickle")
    with cf.ProcessPoolExecutor(max_workers=1, pickler="cloudpickle") as pool:
        assert pool.submit(lambda x: x * 3, 5).result(TIMEOUT) == 15
    with pytest.raises(ValueError):
        cf.ProcessPoolExecutor(pickler="marshal")


def run_script(source: str, cwd: str) -> subprocess.CompletedProcess[str]:
    path = os.path.join(cwd, "script.py")
    with open(path, "w") as f:
        f.write(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, path], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT
    )


def test_main_module_functions_cross(tmp_path: Any) -> None:
    out = run_script(
        """
        import concurrent_futures_rs as cf

        def square(x):
            return x * x

        class Point:
            def __init__(self, x):
                self.x = x

        if __name__ == "__main__":
            with cf.ProcessPoolExecutor(max_workers=1) as pool:
                print(pool.submit(square, 7).result(), pool.submit(Point, 2).result().x)
        """,
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["49", "2"]


def test_pending_work_completes_at_exit(tmp_path: Any) -> None:
    out = run_script(
        """
        import os
        import time
        import concurrent_futures_rs as cf

        def late(x):
            time.sleep(0.2)
            # One write: the worker and the main process share stdout, and
            # `print` writes its pieces apart when unbuffered
            # (PYTHONUNBUFFERED), so two lines could interleave.
            os.write(1, f"done {x}\\n".encode())

        if __name__ == "__main__":
            pool = cf.ProcessPoolExecutor(max_workers=1)
            pool.submit(late, 1)
            threads = cf.ThreadPoolExecutor(max_workers=1)
            threads.submit(late, 2)
        """,
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == ["1", "2", "done", "done"]
    assert out.stderr == ""


def test_submit_after_interpreter_shutdown(tmp_path: Any) -> None:
    out = run_script(
        """
        import atexit
        import concurrent_futures_rs as cf

        @atexit.register
        def late():
            try:
                pool.submit(abs, 1)
            except RuntimeError as e:
                print(e)

        if __name__ == "__main__":
            pool = cf.ProcessPoolExecutor(max_workers=1)
            pool.submit(abs, -1).result()
        """,
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert "cannot schedule new futures after interpreter shutdown" in out.stdout


def test_worker_entry_rejects_a_plain_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from concurrent_futures_rs._worker import main; main()"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode != 0
    assert "not a process pool's worker" in out.stderr


def test_module_names_for_the_alias() -> None:
    assert process._process_chunk is std.process._process_chunk
    assert process.BrokenProcessPool is std.process.BrokenProcessPool


def test_shutdown_returns_while_a_forked_process_holds_the_pipes(tmp_path: Any) -> None:
    # A fork (multiprocessing's default on Linux before 3.14) inherits the
    # pool's ends of its workers' pipes; shutdown must not wait for it.
    out = run_script(
        """
        import os, signal, time
        import concurrent_futures_rs as cf
        if __name__ == "__main__":
            pool = cf.ProcessPoolExecutor(max_workers=1)
            print(pool.submit(pow, 2, 10).result())
            child = os.fork()
            if child == 0:
                time.sleep(60)
                os._exit(0)
            start = time.monotonic()
            pool.shutdown()
            took = time.monotonic() - start
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            print("waited for the fork" if took > 30 else "returned")
        """,
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1024", "returned"]
