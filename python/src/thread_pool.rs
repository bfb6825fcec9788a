//! The thread pool: a Rust queue, and workers that are Python threads
//! running a Rust loop.
//!
//! Workers are `threading.Thread`s so that they keep a Python thread
//! state (attaching per task from a Rust thread costs ~10 µs on 3.11+),
//! have CPython's names, show in `threading.enumerate()`, see
//! `settrace`/`setprofile`, and are joined at exit like CPython's.
//! Admission mirrors CPython's `ThreadPoolExecutor` exactly: an idle count
//! that each finished task raises and each submit tries to take, a new
//! thread only when none is idle.

use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicUsize};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::{Mutex, MutexGuard};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::future::FutureBase;
use crate::names::{names, raise};

/// CPython's `_global_shutdown_lock` and `_shutdown`: set once the
/// interpreter began to exit; no pool takes work after that.
static GLOBAL_SHUTDOWN: Mutex<bool> = Mutex::new(false);

/// Takes `mutex`, letting other Python threads run while it waits (its
/// holder may need the GIL to let go).
pub(crate) fn lock<'a, T: Send>(py: Python<'_>, mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
    match mutex.try_lock() {
        Some(guard) => guard,
        None => py.detach(|| mutex.lock()),
    }
}

/// From the package's exit hook: refuse work from now on.
#[pyfunction]
pub(crate) fn global_shutdown(py: Python<'_>) {
    *lock(py, &GLOBAL_SHUTDOWN) = true;
}

/// `os.register_at_fork(before=...)`: holds the global lock across a fork
/// so that no thread holds it in the child.
#[pyfunction]
pub(crate) fn before_fork(py: Python<'_>) {
    std::mem::forget(lock(py, &GLOBAL_SHUTDOWN));
}

/// `os.register_at_fork(after_in_parent=..., after_in_child=...)`.
#[pyfunction]
pub(crate) fn after_fork() {
    // SAFETY: `before_fork` took the lock on this thread and forgot the
    // guard; this is its release (in the parent, and in the child, where
    // this thread is the only one).
    unsafe { GLOBAL_SHUTDOWN.force_unlock() };
}

/// One submitted call.
struct Job {
    future: Py<FutureBase>,
    function: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
}

enum Message {
    Job(Job),
    /// CPython's `None` on the queue: look whether to exit.
    Wake,
}

/// What the pool and its workers share; the workers hold no reference to
/// the executor object, so that dropping it stops them (CPython's
/// `weakref_cb`).
struct Shared {
    sender: Sender<Message>,
    receiver: Receiver<Message>,
    /// CPython's `_idle_semaphore`.
    idle: AtomicUsize,
    shut_down: AtomicBool,
    /// The executor object was collected.
    gone: AtomicBool,
}

impl Shared {
    fn take_idle(&self) -> bool {
        self.idle
            .fetch_update(AcqRel, Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn wake(&self) {
        let _ = self.sender.send(Message::Wake);
    }

    /// The queued jobs, taken out.
    fn drain(&self) -> Vec<Job> {
        self.receiver
            .try_iter()
            .filter_map(|m| match m {
                Message::Job(job) => Some(job),
                Message::Wake => None,
            })
            .collect()
    }
}

/// The pool's queue, as its workers see it (CPython's `_work_queue`).
#[pyclass(frozen, module = "concurrent_futures_rs._core")]
pub struct WorkQueue {
    shared: Arc<Shared>,
}

/// Where a worker's next job comes from.
enum Next {
    Job(Job),
    Exit,
}

impl WorkQueue {
    /// The next job that starts (one cancelled while queued is only
    /// acknowledged), or the time to exit.
    fn next(&self, py: Python<'_>) -> Next {
        let shared = &self.shared;
        loop {
            // A job that is already queued is taken while holding the GIL,
            // so that a shutdown in another thread sees it either queued
            // or running, as CPython's does.
            let message = match shared.receiver.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Disconnected) => return Next::Exit,
                Err(TryRecvError::Empty) => {
                    // Taken without the GIL, so started there: out of the
                    // queue, a job is running or acknowledged, never lost.
                    let taken = py.detach(|| match shared.receiver.recv() {
                        Ok(Message::Job(job)) => {
                            let started = job.future.get().start();
                            Some(Ok((job, started)))
                        }
                        Ok(Message::Wake) => Some(Err(())),
                        Err(_) => None,
                    });
                    match taken {
                        None => return Next::Exit,
                        Some(Err(())) => Message::Wake,
                        Some(Ok((job, started))) => {
                            if matches!(started, Ok(true)) {
                                return Next::Job(job);
                            }
                            shared.idle.fetch_add(1, Release);
                            continue;
                        }
                    }
                }
            };
            match message {
                Message::Job(job) => {
                    if matches!(job.future.get().start(), Ok(true)) {
                        return Next::Job(job);
                    }
                    shared.idle.fetch_add(1, Release);
                }
                Message::Wake => {
                    let exit = *lock(py, &GLOBAL_SHUTDOWN)
                        || shared.gone.load(Acquire)
                        || shared.shut_down.load(Acquire);
                    if exit {
                        shared.shut_down.store(true, Release);
                        shared.wake(); // The next worker.
                        return Next::Exit;
                    }
                }
            }
        }
    }
}

/// Calls the job's function and completes its future.
fn run(py: Python<'_>, job: Job) {
    let args = job.args.bind(py);
    let kwargs = job.kwargs.as_ref().map(|k| k.bind(py));
    let outcome = match job.function.bind(py).call(args, kwargs) {
        Ok(value) => Ok(value.unbind()),
        Err(e) => Err(e.into_value(py).into_any()),
    };
    let future = job.future;
    drop((job.function, job.args, job.kwargs));
    future.get().complete(outcome);
}

#[pymethods]
impl WorkQueue {
    /// The worker loop: runs jobs until the pool shuts down or is
    /// collected, or the interpreter exits.
    fn serve(&self, py: Python<'_>) {
        while let Next::Job(job) = self.next(py) {
            run(py, job);
            self.shared.idle.fetch_add(1, Release);
        }
    }

    /// Puts a wake-up on the queue (CPython's `put(None)`).
    fn wake(&self) {
        self.shared.wake();
    }
}

/// The pool's state under CPython's `_shutdown_lock`.
struct PoolState {
    shut_down: bool,
    broken: Option<String>,
    threads: usize,
    max_workers: usize,
}

/// The Rust half of the package's `ThreadPoolExecutor`.
#[pyclass(subclass, frozen, module = "concurrent_futures_rs._core")]
pub struct ThreadPoolBase {
    queue: Py<WorkQueue>,
    state: Mutex<PoolState>,
}

const BROKEN_BY_INITIALIZER: &str =
    "A thread initializer failed, the thread pool is not usable anymore";

impl Drop for ThreadPoolBase {
    fn drop(&mut self) {
        let shared = &self.queue.get().shared;
        shared.gone.store(true, Release);
        shared.wake();
    }
}

#[pymethods]
impl ThreadPoolBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            sender,
            receiver,
            idle: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        });
        Ok(ThreadPoolBase {
            queue: Py::new(py, WorkQueue { shared })?,
            state: Mutex::new(PoolState {
                shut_down: false,
                broken: None,
                threads: 0,
                max_workers: 1,
            }),
        })
    }

    /// Sets the most threads it starts (from `__init__`, once validated).
    fn _configure(&self, py: Python<'_>, max_workers: usize) {
        lock(py, &self.state).max_workers = max_workers.max(1);
    }

    /// CPython's `_work_queue`: what the workers serve.
    #[getter]
    fn _work_queue(&self, py: Python<'_>) -> Py<WorkQueue> {
        self.queue.clone_ref(py)
    }

    /// False, or why the pool broke (CPython's `_broken`).
    #[getter]
    fn _broken(&self, py: Python<'_>) -> Py<PyAny> {
        match &lock(py, &self.state).broken {
            Some(reason) => reason
                .into_pyobject(py)
                .map_or_else(|_| py.None(), |s| s.into_any().unbind()),
            None => false
                .into_pyobject(py)
                .map_or_else(|_| py.None(), |b| b.to_owned().into_any().unbind()),
        }
    }

    /// True once shut down (CPython's `_shutdown`).
    #[getter]
    fn _shutdown(&self, py: Python<'_>) -> bool {
        lock(py, &self.state).shut_down
    }

    /// Schedules `fn(*args, **kwargs)` and returns its future.
    #[pyo3(signature = (r#fn, /, *args, **kwargs))]
    fn submit(
        slf: &Bound<'_, Self>,
        r#fn: Py<PyAny>,
        args: Bound<'_, PyTuple>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Py<FutureBase>> {
        let py = slf.py();
        let me = slf.get();
        let future = FutureBase::create(py)?.unbind();
        let mut state = lock(py, &me.state);
        if let Some(reason) = &state.broken {
            return Err(raise(py, &names(py)?.broken_thread_pool, reason.clone()));
        }
        if state.shut_down {
            return Err(PyRuntimeError::new_err(
                "cannot schedule new futures after shutdown",
            ));
        }
        let global = lock(py, &GLOBAL_SHUTDOWN);
        if *global {
            return Err(PyRuntimeError::new_err(
                "cannot schedule new futures after interpreter shutdown",
            ));
        }
        let shared = &me.queue.get().shared;
        let job = Job {
            future: future.clone_ref(py),
            function: r#fn,
            args: args.unbind(),
            kwargs: kwargs.map(Bound::unbind),
        };
        let _ = shared.sender.send(Message::Job(job));
        // CPython's `_adjust_thread_count`, under the same locks.
        if !shared.take_idle() && state.threads < state.max_workers {
            let number = state.threads;
            slf.call_method1("_start_worker", (number,))?;
            state.threads += 1;
        }
        drop(global);
        drop(state);
        Ok(future)
    }

    /// From a worker whose initializer raised: the pool breaks, and what
    /// is queued fails with `BrokenThreadPool`.
    fn _initializer_failed(&self, py: Python<'_>) -> PyResult<()> {
        let jobs = {
            let mut state = lock(py, &self.state);
            state.broken = Some(BROKEN_BY_INITIALIZER.to_owned());
            self.queue.get().shared.drain()
        };
        let class = &names(py)?.broken_thread_pool;
        for job in jobs {
            let exc = raise(py, class, BROKEN_BY_INITIALIZER.to_owned());
            job.future
                .get()
                .complete(Err(exc.into_value(py).into_any()));
        }
        Ok(())
    }

    /// Stops taking work; with `cancel_futures`, cancels what has not
    /// started. The waiting (`wait`) is the Python method's.
    #[pyo3(signature = (cancel_futures=false))]
    fn _shutdown_core(&self, py: Python<'_>, cancel_futures: bool) {
        let shared = &self.queue.get().shared;
        let jobs = {
            let mut state = lock(py, &self.state);
            state.shut_down = true;
            shared.shut_down.store(true, Release);
            let jobs = if cancel_futures {
                shared.drain()
            } else {
                Vec::new()
            };
            shared.wake();
            jobs
        };
        for job in jobs {
            job.future.get().inner.cancel();
        }
    }

    /// How many tasks are queued and not yet taken (for `repr` and tests).
    fn _queued(&self) -> usize {
        self.queue.get().shared.receiver.len()
    }

    /// How many workers are idle.
    fn _idle(&self) -> usize {
        self.queue.get().shared.idle.load(Relaxed)
    }
}
