//! A process pool worker's loop, in a Python process started by the
//! package's process pool (`python -c ... concurrent_futures_rs._worker`):
//! the crate's frame loop, with a Python handler that unpickles, calls and
//! pickles.

use concurrent_futures::TaskErrorKind;
use concurrent_futures::process::ForkPipes;
use concurrent_futures::process::worker::{CallHandler, serve_forked, serve_if_worker};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::attach::Attached;

/// The package's `_worker.Handler`, called for each message. The loop
/// ends unattached; a forked worker must not leave the handler to pyo3's
/// deferred references (see `drop_attached`).
struct PyHandler {
    handler: Attached<Py<PyAny>>,
}

impl PyHandler {
    fn new(handler: Py<PyAny>) -> Self {
        PyHandler {
            handler: Attached::new(handler),
        }
    }

    fn handler<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.handler.bind(py)
    }
}

/// A handler method that raised: the worker cannot go on. The traceback
/// goes to stderr, as CPython's worker prints it when it dies.
fn fatal(py: Python<'_>, error: PyErr) -> ! {
    let code = if error.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
        error
            .value(py)
            .getattr("code")
            .ok()
            .and_then(|c| c.extract::<i32>().ok())
            .unwrap_or(1)
    } else {
        error.print(py);
        1
    };
    let _ = py.run(
        c"import sys; sys.stdout.flush(); sys.stderr.flush()",
        None,
        None,
    );
    std::process::exit(code)
}

impl PyHandler {
    fn bytes(
        &self,
        method: &str,
        args: impl for<'py> FnOnce(Python<'py>) -> Vec<Bound<'py, PyAny>>,
    ) -> Vec<u8> {
        Python::attach(|py| {
            let args = pyo3::types::PyTuple::new(py, args(py)).unwrap_or_else(|e| fatal(py, e));
            match self.handler(py).call_method1(method, args) {
                Ok(value) => value
                    .cast_into::<PyBytes>()
                    .map(|b| b.as_bytes().to_vec())
                    .unwrap_or_else(|e| fatal(py, e.into())),
                Err(e) => fatal(py, e),
            }
        })
    }
}

impl CallHandler for PyHandler {
    fn proof(&mut self) -> Vec<u8> {
        self.bytes("proof", |_| Vec::new())
    }

    fn init(&mut self, function: &[u8], arg: &[u8]) -> Result<(), Vec<u8>> {
        let failure = self.bytes("init", |py| {
            vec![
                PyBytes::new(py, function).into_any(),
                PyBytes::new(py, arg).into_any(),
            ]
        });
        if failure.is_empty() {
            Ok(())
        } else {
            Err(failure)
        }
    }

    fn call(&mut self, function: &[u8], arg: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
        Python::attach(|py| {
            let answer = self
                .handler(py)
                .call_method1("call", (PyBytes::new(py, function), PyBytes::new(py, arg)));
            let (ok, data): (bool, Bound<'_, PyBytes>) = match answer.and_then(|a| a.extract()) {
                Ok(pair) => pair,
                Err(e) => fatal(py, e),
            };
            if ok {
                out.extend_from_slice(data.as_bytes());
                Ok(())
            } else {
                Err(data.as_bytes().to_vec())
            }
        })
    }

    fn failure(&mut self, kind: TaskErrorKind, message: &str) -> Vec<u8> {
        let kind = match kind {
            TaskErrorKind::Serialize => "serialize",
            TaskErrorKind::Deserialize => "deserialize",
            _ => "other",
        };
        self.bytes("failure", |py| {
            vec![
                pyo3::types::PyString::new(py, kind).into_any(),
                pyo3::types::PyString::new(py, message).into_any(),
            ]
        })
    }
}

/// Serves the pool that started this process with `handler`, until the
/// pool closes its input; returns the exit code.
///
/// # Errors
///
/// `RuntimeError` when this process was not started as a worker.
#[pyfunction]
pub(crate) fn serve_worker(py: Python<'_>, handler: Py<PyAny>) -> PyResult<i32> {
    let handler = PyHandler::new(handler);
    py.detach(|| serve_if_worker(handler))
        .ok_or_else(|| PyRuntimeError::new_err("this process is not a process pool's worker"))
}

/// A forked worker's pipes, as the pool's start function hands them to
/// the package's `_fork_worker` (the `fork` start method).
#[pyclass(frozen, module = "concurrent_futures_rs._core")]
pub struct ForkSpec(pub(crate) ForkPipes);

/// In a worker forked by the pool (`_fork_worker`'s child): serves the
/// pool with `handler` until it closes our input; returns the exit code,
/// with which the child must `os._exit` at once.
#[pyfunction]
pub(crate) fn serve_forked_worker(py: Python<'_>, spec: &ForkSpec, handler: Py<PyAny>) -> i32 {
    let handler = PyHandler::new(handler);
    py.detach(|| serve_forked(&spec.0, handler))
}
