//! `concurrent_futures_rs._core`: the Rust half of the Python package.
//!
//! The package's Python modules define the classes users see (each a
//! subclass of the standard library's, with a base class from here first
//! in its MRO) and hand this module the standard library's objects at
//! import ([`names::configure`]). This module holds the hot paths: the
//! future's state and waits, the thread pool's queue and worker loop,
//! `wait` and `as_completed`, and the process pool on the crate's engine.

use pyo3::prelude::*;

mod attach;
mod future;
mod names;
mod process_pool;
mod thread_pool;
mod wait;
mod worker;

/// The module object, `concurrent_futures_rs._core`.
#[pymodule(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<future::FutureBase>()?;
    m.add_class::<thread_pool::ThreadPoolBase>()?;
    m.add_class::<thread_pool::WorkQueue>()?;
    m.add_class::<process_pool::ProcessEngine>()?;
    m.add_class::<process_pool::EngineJoin>()?;
    m.add_class::<wait::AsCompleted>()?;
    m.add_function(wrap_pyfunction!(names::configure, m)?)?;
    m.add_function(wrap_pyfunction!(attach::interpreter_exiting, m)?)?;
    m.add_function(wrap_pyfunction!(thread_pool::global_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(thread_pool::before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(thread_pool::after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(wait::wait, m)?)?;
    m.add_function(wrap_pyfunction!(worker::serve_worker, m)?)?;
    m.add_class::<worker::ForkSpec>()?;
    m.add_function(wrap_pyfunction!(worker::serve_forked_worker, m)?)?;
    Ok(())
}
