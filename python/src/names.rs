//! The Python objects this module raises, builds and calls, handed over
//! once by the package at import so that they are the standard library's
//! own (`except concurrent.futures.CancelledError` must catch ours).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// Everything [`configure`] was given.
pub(crate) struct Names {
    /// The package's `Future` class (a subclass of ours and the stdlib's).
    pub(crate) future_class: Py<PyAny>,
    pub(crate) cancelled_error: Py<PyAny>,
    pub(crate) timeout_error: Py<PyAny>,
    pub(crate) invalid_state_error: Py<PyAny>,
    pub(crate) broken_thread_pool: Py<PyAny>,
    /// `on_done(future, callbacks)`: wakes the stdlib's waiters of a
    /// future, then runs its callbacks, logging what they raise.
    pub(crate) on_done: Py<PyAny>,
    /// `invoke_callbacks(future, callbacks)`: only the callbacks.
    pub(crate) invoke_callbacks: Py<PyAny>,
    /// `engine_error(kind, message, pid, exitcode)`: the exception for a
    /// failure the process engine reports.
    pub(crate) engine_error: Py<PyAny>,
    /// `decode_answer(ok, data, pid)`: a worker's answer back to
    /// `(True, value)` or `(False, exception)`.
    pub(crate) decode_answer: Py<PyAny>,
    /// The stdlib's future states, by name.
    pub(crate) states: States,
}

/// The strings `Future._state` takes, the stdlib's own objects.
pub(crate) struct States {
    pub(crate) pending: Py<PyAny>,
    pub(crate) running: Py<PyAny>,
    pub(crate) cancelled: Py<PyAny>,
    pub(crate) cancelled_and_notified: Py<PyAny>,
    pub(crate) finished: Py<PyAny>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

/// The configured objects.
///
/// # Errors
///
/// `RuntimeError` when the package has not called [`configure`] (the
/// extension imported on its own).
pub(crate) fn names(py: Python<'_>) -> PyResult<&'static Names> {
    NAMES.get(py).ok_or_else(|| {
        PyRuntimeError::new_err(
            "concurrent_futures_rs._core is used through the concurrent_futures_rs package",
        )
    })
}

fn item(ns: &Bound<'_, PyDict>, key: &str) -> PyResult<Py<PyAny>> {
    ns.get_item(key)?
        .map(Bound::unbind)
        .ok_or_else(|| PyRuntimeError::new_err(format!("configure: {key} is missing")))
}

/// Takes the package's objects: `ns` maps each field of [`Names`] (and
/// the five state names) to its object. Later calls are ignored, so a
/// reloaded package keeps the first set.
#[pyfunction]
pub(crate) fn configure(py: Python<'_>, ns: &Bound<'_, PyDict>) -> PyResult<()> {
    let names = Names {
        future_class: item(ns, "future_class")?,
        cancelled_error: item(ns, "cancelled_error")?,
        timeout_error: item(ns, "timeout_error")?,
        invalid_state_error: item(ns, "invalid_state_error")?,
        broken_thread_pool: item(ns, "broken_thread_pool")?,
        on_done: item(ns, "on_done")?,
        invoke_callbacks: item(ns, "invoke_callbacks")?,
        engine_error: item(ns, "engine_error")?,
        decode_answer: item(ns, "decode_answer")?,
        states: States {
            pending: item(ns, "PENDING")?,
            running: item(ns, "RUNNING")?,
            cancelled: item(ns, "CANCELLED")?,
            cancelled_and_notified: item(ns, "CANCELLED_AND_NOTIFIED")?,
            finished: item(ns, "FINISHED")?,
        },
    };
    let _ = NAMES.set(py, names);
    Ok(())
}

/// `error(message)` as a `PyErr`, `error` being one of the classes here.
pub(crate) fn raise(py: Python<'_>, class: &Py<PyAny>, message: String) -> PyErr {
    match class.bind(py).call1((message,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}
