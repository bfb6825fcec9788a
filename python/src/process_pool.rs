//! The process pool: the crate's engine driving Python worker processes,
//! with pickle payloads.
//!
//! The package pickles each call in the submitting thread (so a call that
//! cannot be pickled fails its own future there, as in CPython), and the
//! engine's threads unpickle answers under the GIL and complete futures;
//! callbacks run there, as CPython runs them on its manager thread.
//!
//! A failure payload is a `u32` length and that many bytes of text (what
//! the engine shows without the GIL, such as an initializer's failure),
//! then the pickled exception.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use concurrent_futures as cf;
use concurrent_futures::process::engine::{AnswerBatch, Call, Codec, Engine, EngineOptions, Sink};
use concurrent_futures::process::{ForkPipes, Launcher};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::attach::{Attached, attach};
use crate::future::FutureBase;
use crate::names::names;
use crate::worker::ForkSpec;

/// The text and the pickle of a failure payload.
fn split_failure(failure: &[u8]) -> (String, &[u8]) {
    let Some((len, rest)) = failure.split_first_chunk::<4>() else {
        return (String::from_utf8_lossy(failure).into_owned(), &[]);
    };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (text, pickle) = rest.split_at(len);
    (String::from_utf8_lossy(text).into_owned(), pickle)
}

/// The pool side of the pickle codec: a worker proves it is this package
/// at this version on this interpreter.
struct PickleCodec {
    proof: Vec<u8>,
}

impl Codec for PickleCodec {
    fn check_worker(&self, proof: &[u8]) -> Result<(), String> {
        if proof == self.proof {
            Ok(())
        } else {
            Err(format!(
                "the worker is {:?}, this pool {:?}: it runs another version of the package \
                 or another interpreter",
                String::from_utf8_lossy(proof),
                String::from_utf8_lossy(&self.proof),
            ))
        }
    }

    fn failure_text(&self, failure: &[u8]) -> String {
        split_failure(failure).0
    }
}

/// Has the package's `fork(spec)` fork a worker with `pipes`; its pid.
/// Runs on the engine's supervisor thread, which the worker dies with.
fn fork_worker(fork: &Py<PyAny>, pipes: &ForkPipes) -> io::Result<u32> {
    let forked = attach(|py| {
        let spec = Py::new(py, ForkSpec(pipes.clone()))?;
        fork.call1(py, (spec,))?.extract::<u32>(py)
    });
    match forked {
        Some(Ok(pid)) => Ok(pid),
        Some(Err(e)) => Err(io::Error::other(format!("could not fork a worker: {e}"))),
        None => Err(io::Error::other("the interpreter is exiting")),
    }
}

/// The exit code `multiprocessing` shows: negative for a signal.
fn exit_code(cause: cf::ExitCause) -> Option<i32> {
    match cause {
        cf::ExitCause::Code(code) => Some(code),
        cf::ExitCause::Signal(signal) => Some(-signal),
        _ => None,
    }
}

/// The Python exception for an engine failure, by the package's
/// `engine_error(kind, message, pid, exitcode)`.
fn engine_error(py: Python<'_>, error: &cf::Error) -> Py<PyAny> {
    let (kind, pid, code) = match error {
        cf::Error::Broken(_) => ("broken", None, None),
        cf::Error::WorkerDied(death) => ("died", death.pid(), exit_code(death.cause())),
        cf::Error::TaskTimeout(_) => ("timeout", None, None),
        cf::Error::Cancelled => ("cancelled", None, None),
        cf::Error::ShutDown => ("shutdown", None, None),
        _ => ("other", None, None),
    };
    let made = names(py).and_then(|n| {
        n.engine_error
            .bind(py)
            .call1((kind, error.to_string(), pid, code))
            .map(Bound::unbind)
    });
    made.unwrap_or_else(|e| e.into_value(py).into_any())
}

/// Where one call's outcome goes: its future. The engine drops a sink on
/// its own threads, unattached; the future's reference must not wait in
/// pyo3's deferred pool while a worker forks (see `drop_attached`).
struct PySink {
    future: Attached<Py<FutureBase>>,
}

impl PySink {
    fn new(future: Py<FutureBase>) -> Self {
        PySink {
            future: Attached::new(future),
        }
    }

    fn future(&self) -> &Py<FutureBase> {
        &self.future
    }
}

impl PySink {
    /// Decodes an answer (in Python) and completes the future with it.
    fn answer_in_place(&self, worker: &cf::WorkerId, outcome: Result<&[u8], &[u8]>) {
        attach(|py| {
            let (ok, data) = match outcome {
                Ok(value) => (true, value),
                Err(failure) => (false, split_failure(failure).1),
            };
            let data = PyBytes::new(py, data);
            let decoded = names(py).and_then(|n| {
                n.decode_answer
                    .bind(py)
                    .call1((ok, data, worker.pid()))?
                    .extract::<(bool, Py<PyAny>)>()
            });
            let outcome = match decoded {
                Ok((true, value)) => Ok(value),
                Ok((false, exc)) => Err(exc),
                Err(e) => Err(e.into_value(py).into_any()),
            };
            self.future().get().complete(outcome);
        });
    }
}

impl Sink for PySink {
    fn start(&self) -> bool {
        matches!(self.future().get().start(), Ok(true))
    }

    fn answer(&self, _: usize, worker: &cf::WorkerId, outcome: Result<Bytes, Bytes>) {
        self.answer_in_place(worker, outcome.as_deref().map_err(|f| &f[..]));
    }

    fn answer_all(&self, worker: &cf::WorkerId, answers: AnswerBatch<'_>) {
        // Read where it lies: it is copied into a Python `bytes` anyway.
        for (_, delivered) in answers {
            self.answer_in_place(worker, delivered.outcome());
        }
    }

    fn fail(&self, _: usize, error: cf::Error) {
        attach(|py| {
            let exc = engine_error(py, &error);
            let future = self.future().get();
            if matches!(error, cf::Error::Cancelled) {
                future.complete_killed(exc);
            } else {
                future.complete(Err(exc));
            }
        });
    }

    fn cancel(&self, _: usize) {
        self.future().get().inner.cancel();
    }

    fn position(&self, key: usize) -> Option<usize> {
        (key == self.future().as_ptr() as usize).then_some(0)
    }
}

/// Pickles of calls from this size up are copied without the GIL.
const LARGE_PICKLE: usize = 1 << 20;

/// The engine's copy of a pickled call. A copy, not the `bytes` object
/// itself: the engine drops a call on its own threads, unattached, when
/// its answer comes (under its locks, where attaching could wait for a
/// thread that waits for them), and an object dropped unattached waits
/// in pyo3's deferred pool, whose lock a fork can inherit held (see
/// `drop_attached`). The copy is cheap next to the pickling.
fn pickled_call(py: Python<'_>, payload: &Bound<'_, PyBytes>) -> Bytes {
    let data = payload.as_bytes();
    if data.len() < LARGE_PICKLE {
        Bytes::copy_from_slice(data)
    } else {
        // A `bytes` object is immutable and `payload` keeps it alive, so
        // its buffer can be read while other threads run Python.
        py.detach(|| Bytes::copy_from_slice(data))
    }
}

/// Joins an engine's end (see [`ProcessEngine::manager`]).
#[pyclass(frozen, module = "concurrent_futures_rs._core")]
pub struct EngineJoin {
    engine: Arc<Engine>,
}

#[pymethods]
impl EngineJoin {
    /// Waits until the pool is shut down and its workers are gone.
    #[pyo3(signature = (timeout=None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> bool {
        let timeout =
            timeout.map(|t| Duration::try_from_secs_f64(t.max(0.0)).unwrap_or(Duration::MAX));
        let engine = &self.engine;
        py.detach(|| engine.join(timeout))
    }

    /// `join()`, under the name of `multiprocessing.Queue`'s.
    fn join_thread(&self, py: Python<'_>) {
        self.join(py, None);
    }

    /// True until the pool is shut down and its workers are gone.
    fn is_alive(&self, py: Python<'_>) -> bool {
        !self.join(py, Some(0.0))
    }
}

/// The engine under the package's `ProcessPoolExecutor`.
#[pyclass(frozen, module = "concurrent_futures_rs._core")]
pub struct ProcessEngine {
    engine: Arc<Engine>,
}

impl Drop for ProcessEngine {
    /// An executor nobody holds any more: no new work can come, so the
    /// engine finishes what it has and lets its workers go (CPython's
    /// manager thread does so when its executor is collected).
    fn drop(&mut self) {
        self.engine.shutdown(cf::Shutdown::default().wait(false));
    }
}

/// A `BuildError` as `ValueError`, CPython's for bad pool arguments.
fn build_error(e: cf::BuildError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pymethods]
impl ProcessEngine {
    /// Workers run `program args...` with `env` added and `passed_fds`
    /// (`(fd, number)` pairs, each fd a duplicate this engine now owns)
    /// given; they must prove `proof`, and run `prelude` and
    /// `initializer` (the package's payloads) before any call. With
    /// `fork`, workers are instead forks of this process: `fork(spec)`
    /// forks one and returns its pid, and its child serves with `spec`.
    #[new]
    #[pyo3(signature = (
        *, max_workers, program, args, env, proof, prelude, initializer,
        max_tasks_per_child=None, self_healing=false, task_timeout=None, passed_fds=Vec::new(),
        fork=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_workers: usize,
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        proof: &[u8],
        prelude: &[u8],
        initializer: &[u8],
        max_tasks_per_child: Option<usize>,
        self_healing: bool,
        task_timeout: Option<f64>,
        passed_fds: Vec<(RawFd, RawFd)>,
        fork: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let mut launcher = match fork {
            Some(fork) => {
                // Dropped with the engine, on one of its threads.
                let fork = Attached::new(fork);
                Launcher::forking(move |pipes| fork_worker(&fork, pipes))
            }
            None => Launcher::new(program).args(args),
        };
        for (key, value) in env {
            launcher = launcher.env(key, value);
        }
        for (fd, number) in passed_fds {
            // SAFETY: the package duplicated `fd` for this engine
            // (`os.dup`) and forgets it: nobody else owns or closes it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            launcher = launcher.pass_fd(owned, number);
        }
        // The package joins its pools at exit itself, before Python
        // finalizes; the crate's own exit-time join would come too late.
        let mut options = EngineOptions::new(max_workers)
            .join_at_exit(false)
            .self_healing(self_healing)
            .initializer(
                Bytes::copy_from_slice(prelude),
                Bytes::copy_from_slice(initializer),
            )
            .startup_advice(
                "the workers run `python -c` with the package's worker loop; \
                 is concurrent_futures_rs importable by the same interpreter?",
            );
        if let Some(n) = max_tasks_per_child {
            options = options.max_tasks_per_child(n);
        }
        if let Some(seconds) = task_timeout {
            let limit = Duration::try_from_secs_f64(seconds)
                .map_err(|_| PyValueError::new_err("task_timeout must be a positive number"))?;
            options = options.task_timeout(limit);
        }
        let codec = Arc::new(PickleCodec {
            proof: proof.to_vec(),
        });
        let engine = Engine::start(options, launcher, codec).map_err(build_error)?;
        Ok(ProcessEngine { engine })
    }

    /// Queues the pickled call `payload` for `future`.
    fn submit(
        &self,
        py: Python<'_>,
        future: Bound<'_, FutureBase>,
        payload: Bound<'_, PyBytes>,
    ) -> PyResult<()> {
        let arg = pickled_call(py, &payload);
        let sink = Arc::new(PySink::new(future.unbind()));
        match self.engine.submit(Call::single(Bytes::new(), arg), sink) {
            Ok(()) => Ok(()),
            Err(refused) => Err(PyErr::from_value(
                engine_error(py, &refused.error).into_bound(py),
            )),
        }
    }

    /// Stops `future`'s call if a worker is running it, by killing that
    /// worker (which is replaced); false if it is not running.
    fn cancel_running(&self, future: &Bound<'_, FutureBase>) -> bool {
        self.engine.cancel_running(future.as_ptr() as usize)
    }

    /// Stops taking work; with `wait`, returns once the workers are gone.
    #[pyo3(signature = (wait=true, cancel_futures=false))]
    fn shutdown(&self, py: Python<'_>, wait: bool, cancel_futures: bool) {
        let options = cf::Shutdown::default()
            .wait(wait)
            .cancel_futures(cancel_futures);
        let engine = &self.engine;
        py.detach(|| engine.shutdown(options));
    }

    /// Stops every worker gracefully (SIGTERM), then kills those that
    /// linger; what they ran fails.
    fn terminate_workers(&self, py: Python<'_>) {
        let engine = &self.engine;
        py.detach(|| engine.terminate_workers());
    }

    /// Kills every worker; what they ran fails.
    fn kill_workers(&self, py: Python<'_>) {
        let engine = &self.engine;
        py.detach(|| engine.kill_workers());
    }

    /// Something to join until the engine is shut down and its workers
    /// are gone, holding no reference to the executor (CPython's
    /// `_executor_manager_thread` and `_call_queue`, as tests join them).
    fn manager(&self) -> EngineJoin {
        EngineJoin {
            engine: Arc::clone(&self.engine),
        }
    }

    /// Why the pool broke, or `None`.
    #[getter]
    fn broken(&self) -> Option<String> {
        self.engine.broken().map(|b| b.reason().to_owned())
    }

    /// True once shut down.
    #[getter]
    fn shut_down(&self) -> bool {
        self.engine.is_shut_down()
    }

    /// The pids of the workers that take calls; waits up to `timeout`
    /// seconds for those still starting.
    #[pyo3(signature = (timeout=30.0))]
    fn worker_pids(&self, py: Python<'_>, timeout: f64) -> Vec<u32> {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let engine = &self.engine;
        py.detach(|| engine.workers(timeout))
            .iter()
            .filter_map(cf::WorkerId::pid)
            .collect()
    }

    /// Starts workers until `n` run or are starting.
    fn start_workers(&self, n: usize) {
        self.engine.start_workers(n);
    }

    /// Starts a worker if none is idle, as a submit would.
    fn reserve_worker(&self) {
        self.engine.reserve_worker();
    }

    /// The most workers it runs.
    #[getter]
    fn max_workers(&self) -> usize {
        self.engine.max_workers()
    }
}
