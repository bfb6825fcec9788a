//! `FutureBase`: the state of the package's `Future`, a crate future
//! whose value is a Python object and whose failure is a Python exception.
//!
//! The package defines `class Future(FutureBase, concurrent.futures.Future)`
//! so that `isinstance` and asyncio accept it, while none of the stdlib's
//! per-future state (a `Condition`, lists) is built: its methods here come
//! first in the MRO.
//!
//! Callbacks live here, visible to Python's garbage collector; the crate
//! future gets one callback of its own, the first time one is added,
//! holding only a weak reference to the Python object. A future nobody
//! can complete any more (its object is gone) runs no callbacks, and a
//! pending future with callbacks is no uncollectable cycle.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

use concurrent_futures as cf;
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::attach;
use crate::names::{Names, names, raise};

/// A crate future holding a Python result.
pub(crate) type Inner = cf::Future<Py<PyAny>>;

/// A Python exception as a crate task failure, so that the crate's
/// `FIRST_EXCEPTION` and `failed` see it.
pub(crate) struct Raised(pub(crate) Py<PyAny>);

impl fmt::Debug for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Python exception")
    }
}

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Python exception")
    }
}

impl std::error::Error for Raised {}

/// How long the main thread waits between checks for signals (Ctrl-C)
/// while it blocks in `result()` and the like, since a wait without the
/// GIL cannot be interrupted. Other threads get no signals and wait in
/// one piece.
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// True on the process's main thread, where Python runs signal handlers.
pub(crate) fn on_main_thread() -> bool {
    // SAFETY: both calls only read the calling thread's and process's ids.
    unsafe { libc::gettid() == libc::getpid() }
}

/// A wait's limit from Python's `timeout` (seconds, `None` for none).
///
/// # Errors
///
/// `ValueError` for NaN; `TypeError` for what is no number.
pub(crate) fn deadline(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Instant>> {
    let Some(timeout) = timeout.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    let seconds: f64 = timeout.extract()?;
    if seconds.is_nan() {
        return Err(PyValueError::new_err("timeout must be a number, not NaN"));
    }
    // A limit past what an Instant holds is no limit.
    Ok(Duration::try_from_secs_f64(seconds.max(0.0))
        .ok()
        .and_then(|d| Instant::now().checked_add(d)))
}

/// Blocks until `done` holds or `deadline` passes, the GIL released;
/// false on timeout. `block` waits (released) until its deadline.
///
/// # Errors
///
/// What a signal handler raised (`KeyboardInterrupt`).
pub(crate) fn block_until(
    py: Python<'_>,
    deadline: Option<Instant>,
    done: impl Fn() -> bool,
    block: impl Fn(Option<Instant>) + Sync,
) -> PyResult<bool> {
    if done() {
        return Ok(true);
    }
    let main = on_main_thread();
    loop {
        let slice = if main {
            let next = Instant::now() + SIGNAL_CHECK;
            Some(deadline.map_or(next, |d| d.min(next)))
        } else {
            deadline
        };
        py.detach(|| block(slice));
        if done() {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        if main {
            py.check_signals()?;
        }
    }
}

/// Callbacks and the test-suite's state hooks.
#[derive(Default)]
struct Hooks {
    callbacks: Vec<Py<PyAny>>,
    /// The crate future has our callback.
    watched: bool,
    /// Our callback ran: the future is done and its callbacks taken.
    fired: bool,
    /// `_state = FINISHED` was written (CPython's test fixtures): the next
    /// `_exception` or `_result` written completes the future.
    finishing: bool,
}

/// The Rust half of the package's `Future`.
#[pyclass(subclass, frozen, module = "concurrent_futures_rs._core")]
pub struct FutureBase {
    pub(crate) inner: Inner,
    hooks: Mutex<Hooks>,
    /// Its cancellation was acknowledged (`CANCELLED_AND_NOTIFIED`).
    notified: AtomicBool,
    /// It was stopped while running (a process pool's `cancel`).
    killed: AtomicBool,
}

impl FutureBase {
    fn fresh() -> Self {
        FutureBase {
            inner: Inner::new(),
            hooks: Mutex::new(Hooks::default()),
            notified: AtomicBool::new(false),
            killed: AtomicBool::new(false),
        }
    }

    /// A new instance of the package's `Future` class.
    pub(crate) fn create(py: Python<'_>) -> PyResult<Bound<'_, FutureBase>> {
        let object = names(py)?.future_class.bind(py).call0()?;
        Ok(object.cast_into::<FutureBase>()?)
    }

    /// Completes it with a value (`Ok`) or an exception (`Err`); false
    /// when it was already done.
    pub(crate) fn complete(&self, outcome: Result<Py<PyAny>, Py<PyAny>>) -> bool {
        match outcome {
            Ok(value) => self.inner.set_result(value).is_ok(),
            Err(exc) => self
                .inner
                .set_exception(cf::TaskError::new(Raised(exc)))
                .is_ok(),
        }
    }

    /// Completes it with `CancelledError`, as stopped while running.
    pub(crate) fn complete_killed(&self, exc: Py<PyAny>) {
        self.killed.store(true, Release);
        self.complete(Err(exc));
    }

    /// Marks it running, or acknowledges its cancellation (false).
    pub(crate) fn start(&self) -> Result<bool, cf::InvalidStateError> {
        let started = self.inner.set_running_or_notify_cancel();
        if let Ok(false) = started {
            self.notified.store(true, Release);
        }
        started
    }

    /// The state name CPython's `_state` shows.
    fn state_object<'a>(&self, names: &'a Names) -> &'a Py<PyAny> {
        let states = &names.states;
        match self.inner.state() {
            cf::State::Pending => &states.pending,
            cf::State::Running => &states.running,
            cf::State::Finished if self.killed.load(Acquire) => &states.cancelled_and_notified,
            cf::State::Finished => &states.finished,
            cf::State::Cancelled if self.notified.load(Acquire) => &states.cancelled_and_notified,
            cf::State::Cancelled => &states.cancelled,
        }
    }

    /// The outcome of a done future, as Python sees it.
    fn outcome(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.inner.result() {
            Ok(value) => Ok(value.clone_ref(py)),
            Err(error) => Err(to_pyerr(py, &error)),
        }
    }

    /// The exception of a done future, `None` for a value.
    fn outcome_exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.inner.result() {
            Ok(_) => Ok(None),
            Err(cf::Error::Failed(e)) if e.downcast_ref::<Raised>().is_some() => {
                Ok(e.downcast_ref::<Raised>().map(|r| r.0.clone_ref(py)))
            }
            Err(error) if self.killed.load(Acquire) => Err(to_pyerr(py, &error)),
            Err(cf::Error::Cancelled) => Err(to_pyerr(py, &cf::Error::Cancelled)),
            Err(error) => Ok(Some(to_pyerr(py, &error).into_value(py).into_any())),
        }
    }

    /// Blocks until done or `timeout`; `TimeoutError` then.
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let deadline = deadline(timeout)?;
        let inner = &self.inner;
        let done = block_until(
            py,
            deadline,
            || inner.done(),
            |until| {
                let _ = match until {
                    Some(d) => inner.result_deadline(d).map(|_| ()),
                    None => inner.result().map(|_| ()),
                };
            },
        )?;
        if done {
            Ok(())
        } else {
            Err(raise(py, &names(py)?.timeout_error, String::new()))
        }
    }

    /// Registers our crate callback, once.
    fn watch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        {
            let mut hooks = me.hooks.lock();
            if hooks.watched {
                return Ok(());
            }
            hooks.watched = true;
        }
        let weak = PyWeakrefReference::new(slf)?.unbind();
        me.inner.add_done_callback(move |_| fire(weak));
        Ok(())
    }
}

/// Our crate callback: wakes the stdlib's waiters of the future, if any,
/// and runs its callbacks, in the completing thread.
fn fire(weak: Py<PyWeakrefReference>) {
    attach::attach(|py| {
        let Some(object) = weak.bind(py).upgrade() else {
            return;
        };
        let Ok(future) = object.cast::<FutureBase>() else {
            return;
        };
        let callbacks = {
            let mut hooks = future.get().hooks.lock();
            hooks.fired = true;
            std::mem::take(&mut hooks.callbacks)
        };
        let result = names(py).and_then(|n| {
            let callbacks = PyList::new(py, callbacks)?;
            n.on_done.bind(py).call1((&object, callbacks)).map(drop)
        });
        if let Err(e) = result {
            e.write_unraisable(py, Some(&object));
        }
    });
    // Attached, or leaked once the interpreter is exiting.
    attach::drop_attached(weak);
}

/// A crate error as the Python exception CPython would raise.
pub(crate) fn to_pyerr(py: Python<'_>, error: &cf::Error) -> PyErr {
    let names = match names(py) {
        Ok(n) => n,
        Err(e) => return e,
    };
    match error {
        cf::Error::Cancelled => raise(py, &names.cancelled_error, String::new()),
        cf::Error::Timeout => raise(py, &names.timeout_error, String::new()),
        cf::Error::Failed(e) => match e.downcast_ref::<Raised>() {
            Some(raised) => PyErr::from_value(raised.0.bind(py).clone()),
            None => PyRuntimeError::new_err(e.to_string()),
        },
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

#[pymethods]
impl FutureBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        FutureBase::fresh()
    }

    /// Cancels the future if it has not started; true if it is cancelled.
    fn cancel(&self) -> bool {
        self.inner.cancel()
    }

    /// True if it was cancelled.
    fn cancelled(&self) -> bool {
        self.inner.cancelled() || self.killed.load(Acquire)
    }

    /// True while it runs.
    fn running(&self) -> bool {
        self.inner.running()
    }

    /// True once it finished or was cancelled.
    fn done(&self) -> bool {
        self.inner.done()
    }

    /// Its value, waiting up to `timeout` seconds; raises its exception.
    #[pyo3(signature = (timeout=None))]
    fn result(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        if !self.inner.done() {
            self.wait(py, timeout)?;
        }
        self.outcome(py)
    }

    /// Its exception (`None` for a value), waiting up to `timeout`.
    #[pyo3(signature = (timeout=None))]
    fn exception(
        &self,
        py: Python<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        if !self.inner.done() {
            self.wait(py, timeout)?;
        }
        self.outcome_exception(py)
    }

    /// Calls `fn(future)` once it is done (at once if it is).
    fn add_done_callback(slf: &Bound<'_, Self>, r#fn: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let now = {
            let mut hooks = me.hooks.lock();
            if hooks.fired {
                Some(r#fn)
            } else {
                hooks.callbacks.push(r#fn);
                None
            }
        };
        match now {
            Some(callback) => {
                let callbacks = PyList::new(py, [callback])?;
                names(py)?
                    .invoke_callbacks
                    .bind(py)
                    .call1((slf, callbacks))?;
                Ok(())
            }
            None => FutureBase::watch(slf),
        }
    }

    /// Has the stdlib's waiters (`_waiters`, `_condition`) told when it is
    /// done, with no callback of its own.
    fn _watch(slf: &Bound<'_, Self>) -> PyResult<()> {
        FutureBase::watch(slf)
    }

    /// For executors: marks it running (true), or acknowledges that it was
    /// cancelled (false).
    fn set_running_or_notify_cancel(&self) -> PyResult<bool> {
        self.start()
            .map_err(|_| PyRuntimeError::new_err("Future in unexpected state"))
    }

    /// Completes it with `result`.
    fn set_result(slf: &Bound<'_, Self>, result: Py<PyAny>) -> PyResult<()> {
        if slf.get().complete(Ok(result)) {
            Ok(())
        } else {
            Err(invalid_state(slf))
        }
    }

    /// Completes it with `exception`.
    fn set_exception(slf: &Bound<'_, Self>, exception: Py<PyAny>) -> PyResult<()> {
        if slf.get().complete(Err(exception)) {
            Ok(())
        } else {
            Err(invalid_state(slf))
        }
    }

    /// CPython's state name: `PENDING`, `RUNNING`, `CANCELLED`,
    /// `CANCELLED_AND_NOTIFIED` or `FINISHED`.
    #[getter]
    fn _state(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.state_object(names(py)?).clone_ref(py))
    }

    /// Moves it to a state the way CPython's test fixtures do, by writing
    /// the attribute.
    #[setter(_state)]
    fn set_state(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let states = &names(py)?.states;
        if state.eq(&states.running)? {
            self.set_running_or_notify_cancel()?;
        } else if state.eq(&states.cancelled)? {
            self.inner.cancel();
        } else if state.eq(&states.cancelled_and_notified)? {
            self.inner.cancel();
            self.notified.store(true, Release);
        } else if state.eq(&states.finished)? {
            self.hooks.lock().finishing = true;
        } else if !state.eq(&states.pending)? {
            return Err(PyValueError::new_err(format!(
                "not a future state: {state}"
            )));
        }
        Ok(())
    }

    /// Its value once finished, else `None`.
    #[getter]
    fn _result(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match self.inner.done().then(|| self.inner.result()) {
            Some(Ok(value)) => Some(value.clone_ref(py)),
            _ => None,
        }
    }

    #[setter(_result)]
    fn set_result_attr(&self, value: Py<PyAny>) {
        if std::mem::take(&mut self.hooks.lock().finishing) {
            self.complete(Ok(value));
        }
    }

    /// Its exception once finished, else `None`.
    #[getter]
    fn _exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        if !self.inner.done() {
            return None;
        }
        self.outcome_exception(py).ok().flatten()
    }

    #[setter(_exception)]
    fn set_exception_attr(&self, py: Python<'_>, value: Py<PyAny>) {
        if value.is_none(py) {
            return;
        }
        if std::mem::take(&mut self.hooks.lock().finishing) {
            self.complete(Err(value));
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(hooks) = self.hooks.try_lock() {
            for callback in &hooks.callbacks {
                visit.call(callback)?;
            }
        }
        if self.inner.done() {
            match self.inner.result() {
                Ok(value) => visit.call(value)?,
                Err(cf::Error::Failed(e)) => {
                    if let Some(raised) = e.downcast_ref::<Raised>() {
                        visit.call(&raised.0)?;
                    }
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}

/// CPython's `InvalidStateError('FINISHED: <Future ...>')`.
fn invalid_state(slf: &Bound<'_, FutureBase>) -> PyErr {
    let py = slf.py();
    let names = match names(py) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let state = slf.get().state_object(names).bind(py).to_string();
    let repr = slf
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<Future>".into());
    raise(py, &names.invalid_state_error, format!("{state}: {repr}"))
}
