//! `wait` and `as_completed` over the package's futures, on the crate's
//! removable waiters: O(1) per completion, nothing left registered on a
//! future once the call returns or the iterator is dropped. The package
//! bridges other futures (the stdlib's) to ours before calling here.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::Instant;

use concurrent_futures as cf;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PySet;

use crate::future::{FutureBase, Inner, SIGNAL_CHECK, block_until, deadline, on_main_thread};
use crate::names::{names, raise};

fn parse_return_when(name: &str) -> PyResult<cf::ReturnWhen> {
    match name {
        "FIRST_COMPLETED" => Ok(cf::FIRST_COMPLETED),
        "FIRST_EXCEPTION" => Ok(cf::FIRST_EXCEPTION),
        "ALL_COMPLETED" => Ok(cf::ALL_COMPLETED),
        other => Err(PyValueError::new_err(format!(
            "Invalid return condition: {other:?}"
        ))),
    }
}

/// True when a done future holds an exception (not a cancellation).
fn raised(f: &Inner) -> bool {
    f.done() && matches!(f.result(), Err(cf::Error::Failed(_)))
}

/// Whether `wait` may return now.
fn satisfied(fs: &[Inner], when: cf::ReturnWhen) -> bool {
    match when {
        cf::ReturnWhen::FirstCompleted => fs.iter().any(Inner::done),
        cf::ReturnWhen::FirstException => fs.iter().any(raised) || fs.iter().all(Inner::done),
        _ => fs.iter().all(Inner::done),
    }
}

/// `wait(fs, timeout, return_when)` over the package's futures: the sets
/// `(done, not_done)`.
#[pyfunction]
#[pyo3(signature = (fs, timeout=None, return_when="ALL_COMPLETED"))]
pub(crate) fn wait<'py>(
    py: Python<'py>,
    fs: Vec<Bound<'py, FutureBase>>,
    timeout: Option<&Bound<'py, PyAny>>,
    return_when: &str,
) -> PyResult<(Bound<'py, PySet>, Bound<'py, PySet>)> {
    let when = parse_return_when(return_when)?;
    let limit = deadline(timeout)?;
    let inners: Vec<Inner> = fs.iter().map(|f| f.get().inner.clone()).collect();
    block_until(
        py,
        limit,
        || satisfied(&inners, when),
        |until| {
            let _ = match until {
                Some(d) => cf::wait_deadline(&inners, d, when),
                None => cf::wait(&inners, when),
            };
        },
    )?;
    let done = PySet::empty(py)?;
    let not_done = PySet::empty(py)?;
    for f in &fs {
        if f.get().inner.done() {
            done.add(f)?;
        } else {
            not_done.add(f)?;
        }
    }
    Ok((done, not_done))
}

/// The iterator under `as_completed`: yields each future once, as it
/// completes; holds no future it yielded.
#[pyclass(module = "concurrent_futures_rs._core")]
pub struct AsCompleted {
    completions: cf::AsCompleted<Py<PyAny>>,
    objects: HashMap<Inner, Py<FutureBase>, BuildHasherDefault<cf::FutureHasher>>,
    deadline: Option<Instant>,
    total: usize,
    ended: bool,
}

#[pymethods]
impl AsCompleted {
    /// Over `fs` (each once), until `deadline` (a `time.monotonic()`
    /// value; `None` for none).
    #[new]
    #[pyo3(signature = (fs, timeout=None))]
    fn new(fs: Vec<Bound<'_, FutureBase>>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let deadline = deadline(timeout)?;
        let mut objects = HashMap::with_capacity_and_hasher(fs.len(), Default::default());
        for f in &fs {
            objects.insert(f.get().inner.clone(), f.clone().unbind());
        }
        let completions = cf::as_completed(objects.keys());
        Ok(AsCompleted {
            completions,
            total: objects.len(),
            objects,
            deadline,
            ended: false,
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<FutureBase>>> {
        if self.ended {
            return Ok(None);
        }
        // Looked up only once a call has to block: a future already done
        // costs no system call.
        let mut main = None;
        loop {
            if let Some(f) = self.completions.try_next() {
                return Ok(self.objects.remove(&f));
            }
            let main = *main.get_or_insert_with(on_main_thread);
            let remaining = self.completions.remaining();
            if remaining == 0 {
                self.ended = true;
                return Ok(None);
            }
            let now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                self.end();
                let message = format!("{remaining} (of {}) futures unfinished", self.total);
                return Err(raise(py, &names(py)?.timeout_error, message));
            }
            let slice = match (main, self.deadline) {
                (true, Some(d)) => d.min(now + SIGNAL_CHECK),
                (true, None) => now + SIGNAL_CHECK,
                (false, Some(d)) => d,
                (false, None) => now + std::time::Duration::from_secs(3600),
            };
            let completions = &mut self.completions;
            let next = py.detach(|| completions.next_before(slice));
            match next {
                Ok(Some(f)) => return Ok(self.objects.remove(&f)),
                Ok(None) => {
                    self.ended = true;
                    return Ok(None);
                }
                Err(cf::Error::Timeout) => {}
                Err(e) => return Err(PyRuntimeError::new_err(e.to_string())),
            }
            if main {
                py.check_signals()?;
            }
        }
    }

    /// Lets go of every future (the generator was closed).
    fn close(&mut self) {
        self.end();
    }
}

impl AsCompleted {
    fn end(&mut self) {
        self.ended = true;
        self.objects.clear();
        self.completions = cf::as_completed(std::iter::empty::<cf::Future<_>>());
    }
}
