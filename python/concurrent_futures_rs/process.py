"""``ProcessPoolExecutor``, as ``concurrent.futures.process``'s, on the
crate's process engine: Python worker processes started like
``multiprocessing``'s ``spawn`` (so functions from ``__main__`` cross by
reference), or forked from this process with a ``fork`` context, pickle
payloads, a worker's death seen at once through its pidfd.

Beyond CPython, each off by default:

- ``task_timeout=``: a call running longer fails with ``TimeoutError``
  and its worker is killed and replaced;
- ``executor.cancel(future)``: stops a call that is already running;
- ``self_healing=True``: a worker's death fails only its call (with
  ``WorkerDied``, which carries ``pid`` and ``exitcode``) and the pool
  goes on;
- ``pickler="cloudpickle"`` (or ``CONCURRENT_FUTURES_RS_PICKLER``): for
  lambdas and closures;
- ``get_reusable_executor()``: one process-wide pool, made anew when it
  broke or other arguments are asked for;
- ``terminate_workers()``/``kill_workers()`` (Python 3.14's) on every
  version.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import process as _std_process
from functools import partial
from typing import Any

# Every name of the stdlib's module, so that this module can stand in for
# it (``concurrent.futures.process``) under ``install()``; workers unpickle
# ``_process_chunk`` from there.
globals().update(
    {k: v for k, v in vars(_std_process).items() if not (k.startswith("__") and k.endswith("__"))}
)

from . import _base, _core, _worker  # noqa: E402 - after the stdlib's names

BrokenProcessPool = _std_process.BrokenProcessPool
_RemoteTraceback = _std_process._RemoteTraceback
_check_system_limits = _std_process._check_system_limits
_process_chunk = _std_process._process_chunk
_get_chunks = _std_process._get_chunks
_chain_from_iterable_of_lists = _std_process._chain_from_iterable_of_lists

__all__ = ["BrokenProcessPool", "ProcessPoolExecutor", "WorkerDied", "get_reusable_executor"]

PICKLER_ENV = "CONCURRENT_FUTURES_RS_PICKLER"


class WorkerDied(BrokenProcessPool):
    """The worker process running this future's call died (killed, or
    exited). With ``self_healing=True`` only that call fails and the pool
    replaces the worker. ``pid`` and ``exitcode`` say which and how
    (``-9`` for ``SIGKILL``, as ``multiprocessing`` shows it)."""

    def __init__(self, message: str, pid: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.pid, self.exitcode))


class _WorkerProcess:
    """A worker as ``executor._processes`` shows it: its pid and the
    ``multiprocessing.Process`` methods code calls on one."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __repr__(self) -> str:
        return f"<_WorkerProcess pid={self.pid}>"

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _pidfd(self) -> int | None:
        try:
            return os.pidfd_open(self.pid)
        except ProcessLookupError:
            return None

    def join(self, timeout: float | None = None) -> None:
        fd = self._pidfd()
        if fd is None:
            return
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)

    def is_alive(self) -> bool:
        fd = self._pidfd()
        if fd is None:
            return False
        try:
            ready, _, _ = select.select([fd], [], [], 0)
            return not ready
        finally:
            os.close(fd)


class _SpawningPopen:
    """What ``multiprocessing`` objects see while the initializer's
    arguments are pickled: a spawning process, as CPython's ``spawn``
    pickles them, collecting the descriptors each worker is then given
    under the same numbers."""

    def __init__(self) -> None:
        from multiprocessing import popen_spawn_posix

        self.DupFd = popen_spawn_posix._DupFd
        self.fds: list[int] = []

    def duplicate_for_child(self, fd: int) -> int:
        self.fds.append(fd)
        return fd


def _dumps_spawning(obj: Any) -> tuple[bytes, list[int]]:
    from multiprocessing import context, reduction

    popen = _SpawningPopen()
    context.set_spawning_popen(popen)
    try:
        data = bytes(reduction.ForkingPickler.dumps(obj, pickle.HIGHEST_PROTOCOL))
    finally:
        context.set_spawning_popen(None)
    return data, popen.fds


def _preparation() -> bytes:
    """What ``spawn`` gives a child: paths, argv, the working directory,
    the main module to import as ``__mp_main__``."""
    from multiprocessing import spawn

    data = spawn.get_preparation_data("ConcurrentFuturesWorker")
    # An AuthenticationString refuses pickling outside a spawn.
    data["authkey"] = bytes(data["authkey"])
    return pickle.dumps(data, pickle.HIGHEST_PROTOCOL)


def _adopt_main_thread() -> None:
    """In a child forked from a thread that ``threading`` only knows as a
    dummy (the engine's supervisor thread, if Python code ever asked it
    for its thread): makes that thread the child's main thread, as Python
    3.12 and later do themselves, so that the child's exit joins cleanly."""
    main = threading.main_thread()
    dummy = getattr(threading, "_DummyThread", None)
    if dummy is not None and isinstance(main, dummy) and hasattr(main, "_set_tstate_lock"):
        main.__class__ = threading._MainThread  # type: ignore[attr-defined]
        main._name = "MainThread"  # type: ignore[attr-defined]
        main._daemonic = False  # type: ignore[attr-defined]
        main._set_tstate_lock()  # type: ignore[attr-defined]


def _fork_worker(context: Any, initializer: Any, initargs: tuple[Any, ...], spec: Any) -> int:
    """Starts one worker as a fork of this process (the ``fork`` start
    method); its pid. Called by the engine for each worker. The child runs
    as ``multiprocessing``'s fork children do (``Process._bootstrap``:
    after-fork hooks, its own process object, queues flushed at the end)
    with the worker loop as its ``run()``, and never returns here."""
    process = context.Process(
        target=_worker.serve_forked, args=(spec, initializer, initargs), daemon=True
    )
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _adopt_main_thread()
            code = process._bootstrap()
        finally:
            os._exit(code)
    return pid


def _worker_command() -> tuple[str, list[str]]:
    import subprocess
    from multiprocessing import spawn

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import sys; sys.path.append(%r); "
        "from concurrent_futures_rs._worker import main; main()" % package_parent
    )
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return os.fsdecode(spawn.get_executable()), [*flags, "-c", code]


def _make_dumps(pickler: str | None) -> Callable[[Any], bytes]:
    name = pickler or os.environ.get(PICKLER_ENV) or "pickle"
    if name == "cloudpickle":
        import cloudpickle  # type: ignore[import-not-found]

        return partial(cloudpickle.dumps, protocol=pickle.HIGHEST_PROTOCOL)
    if name != "pickle":
        raise ValueError(f"pickler must be 'pickle' or 'cloudpickle', not {name!r}")
    from multiprocessing import reduction

    forking = reduction.ForkingPickler

    def dumps(obj: Any) -> bytes:
        return bytes(forking.dumps(obj, pickle.HIGHEST_PROTOCOL))

    return dumps


class ProcessPoolExecutor(_std_process.ProcessPoolExecutor):
    """A pool of worker processes, as ``concurrent.futures.ProcessPoolExecutor``.

    >>> with ProcessPoolExecutor(max_workers=1) as pool:  # doctest: +SKIP
    ...     pool.submit(pow, 2, 10).result()
    1024
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        task_timeout: float | None = None,
        self_healing: bool = False,
        pickler: str | None = None,
    ) -> None:
        _check_system_limits()
        if max_workers is None:
            self._max_workers = _base._cpu_count()
        else:
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
            self._max_workers = max_workers
        if mp_context is None:
            if max_tasks_per_child is not None:
                mp_context = multiprocessing.get_context("spawn")
            else:
                mp_context = multiprocessing.get_context()
        self._mp_context = mp_context
        start_method = mp_context.get_start_method(allow_none=False)
        # A `fork` context's workers are forks of this process (they
        # inherit what it built in memory, its fork-context queues
        # included), all started at the first submit, as CPython's; any
        # other context's start afresh, as with `spawn`.
        self._safe_to_dynamically_spawn_children = start_method != "fork"
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._initializer = initializer
        self._initargs = initargs
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if start_method == "fork":
                raise ValueError(
                    "max_tasks_per_child is incompatible with the 'fork' "
                    "multiprocessing start method; supply a different mp_context."
                )
        self._max_tasks_per_child = max_tasks_per_child
        if task_timeout is not None and not task_timeout > 0:
            raise ValueError("task_timeout must be a positive number of seconds")
        self._task_timeout = task_timeout
        self._self_healing = bool(self_healing)
        self._dumps = _make_dumps(pickler)
        self._shutdown_thread = False
        self._launch_all_at_first_submit = start_method == "fork"
        fork = None
        if start_method == "fork":
            init, fds = b"", []
            fork = partial(_fork_worker, mp_context, initializer, initargs)
        else:
            init, fds = _dumps_spawning((initializer, initargs))
        program, args = _worker_command()
        self._engine = _core.ProcessEngine(
            max_workers=self._max_workers,
            program=program,
            args=args,
            env=[],
            proof=_worker.proof(),
            prelude=_preparation(),
            initializer=init,
            max_tasks_per_child=max_tasks_per_child,
            self_healing=self._self_healing,
            task_timeout=task_timeout,
            passed_fds=[(os.dup(fd), fd) for fd in fds],
            fork=fork,
        )
        _base._process_pools.add(self)

    @property
    def _broken(self) -> str | bool:
        return self._engine.broken or False

    @property
    def _executor_manager_thread(self) -> Any:
        """Joins until the pool is shut down and its workers are gone (what
        joining CPython's manager thread means)."""
        return self._engine.manager()

    @property
    def _call_queue(self) -> Any:
        """``join_thread()`` waits as ``_executor_manager_thread.join()``."""
        return self._engine.manager()

    @property
    def _processes(self) -> dict[int, _WorkerProcess]:
        return {pid: _WorkerProcess(pid) for pid in self._engine.worker_pids()}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> _base.Future:
        """Schedules ``fn(*args, **kwargs)`` in a worker and returns its future."""
        broken = self._engine.broken
        if broken:
            raise BrokenProcessPool(broken)
        if self._shutdown_thread:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _base._global_shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        future = _base.Future()
        if self._launch_all_at_first_submit:
            self._launch_all_at_first_submit = False
            self._engine.start_workers(self._max_workers)
        try:
            payload = self._dumps((fn, args, kwargs))
        except BaseException as e:
            # As CPython: the call's own future fails, with the traceback.
            import traceback

            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            e.__cause__ = _RemoteTraceback(f'\n"""\n{tb}"""')
            future.set_exception(e)
            self._engine.reserve_worker()
            return future
        self._engine.submit(future, payload)
        return future

    submit.__doc__ = _base.Executor.submit.__doc__

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[Any]:
        """``fn`` over the iterables in the workers, results in order;
        ``chunksize`` items travel together; with ``buffersize``, at most
        that many chunks run ahead (Python 3.14)."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        results = _base._map(
            self,
            partial(_process_chunk, fn),
            (_get_chunks(*iterables, chunksize=chunksize),),
            timeout,
            buffersize,
        )
        return _chain_from_iterable_of_lists(results)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Takes no more work; with ``cancel_futures``, cancels what has not
        started; with ``wait``, returns once every worker has exited."""
        self._shutdown_thread = True
        self._engine.shutdown(wait, cancel_futures)

    def cancel(self, future: _base.Future) -> bool:
        """Cancels ``future`` even if it is running: a running call's worker
        is killed (and replaced) and the future raises ``CancelledError``.
        False when it already finished."""
        if future.cancel():
            return True
        return self._engine.cancel_running(future)

    def terminate_workers(self) -> None:
        """Stops every worker with SIGTERM (killing those that linger) and
        shuts the pool down; what they were running fails."""
        self._shutdown_thread = True
        self._engine.terminate_workers()

    def kill_workers(self) -> None:
        """Kills every worker with SIGKILL and shuts the pool down."""
        self._shutdown_thread = True
        self._engine.kill_workers()

    def __repr__(self) -> str:
        return "<%s at %#x max_workers=%d>" % (type(self).__name__, id(self), self._max_workers)


_reusable_lock = threading.Lock()
_reusable: ProcessPoolExecutor | None = None
_reusable_args: Any = None


def get_reusable_executor(
    max_workers: int | None = None,
    *,
    kill_workers: bool = False,
    reuse: bool | str = "auto",
    **kwargs: Any,
) -> ProcessPoolExecutor:
    """The process-wide pool (as loky's), for code that wants one pool
    without passing it around.

    It returns the pool it returned last unless that pool broke or was
    shut down, or ``reuse="auto"`` (the default) and ``max_workers`` or
    another argument differs from last time, or ``reuse=False``; then it
    makes a new one, first shutting the old one down (without waiting; its
    pending calls still run), or with ``kill_workers=True`` killing its
    workers. ``kwargs`` are ``ProcessPoolExecutor``'s.
    """
    global _reusable, _reusable_args
    if reuse not in (True, False, "auto"):
        raise ValueError("reuse must be True, False or 'auto'")
    args = (max_workers or _base._cpu_count(), sorted(kwargs.items(), key=lambda kv: kv[0]))
    with _reusable_lock:
        current = _reusable
        usable = current is not None and not current._broken and not current._shutdown_thread
        if usable and (reuse is True or (reuse == "auto" and args == _reusable_args)):
            assert current is not None
            return current
        if current is not None:
            if kill_workers:
                current.kill_workers()
            else:
                current.shutdown(wait=False)
        _reusable = ProcessPoolExecutor(max_workers, **kwargs)
        _reusable_args = args
        return _reusable
