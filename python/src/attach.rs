//! Attaching to the interpreter from threads Python did not start (the
//! process engine's reader and supervisor threads), cheaply and never
//! after the interpreter began to exit.
//!
//! On CPython 3.11+ a thread without a thread state of its own gets one
//! made and freed on every attach, with its frame stack: about 10 µs,
//! as slow as CPython's own pool. So such a thread makes one state on
//! its first attach and keeps it, detached, until it ends.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};

use pyo3::ffi;
use pyo3::prelude::*;

/// Set by the package's exit hook once its pools are joined: from then
/// on no thread of ours may attach (the interpreter is finalizing, and
/// an attach there would hang the thread).
static EXITING: AtomicBool = AtomicBool::new(false);

/// Called by the package's exit hook, after it joined its pools.
#[pyfunction]
pub(crate) fn interpreter_exiting() {
    EXITING.store(true, Release);
}

/// True once the interpreter is exiting.
pub(crate) fn exiting() -> bool {
    EXITING.load(Acquire)
}

/// The thread state this thread made for itself and keeps.
struct Kept {
    gilstate: Cell<Option<ffi::PyGILState_STATE>>,
    tstate: Cell<*mut ffi::PyThreadState>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        let (Some(gilstate), tstate) = (self.gilstate.get(), self.tstate.get()) else {
            return;
        };
        // After the exit hook the interpreter may be gone: leaking the
        // state is the only safe thing then.
        if exiting() || tstate.is_null() {
            return;
        }
        // SAFETY: `tstate` is this thread's own state, saved by
        // `PyEval_SaveThread` in `keep` and not restored since; restoring
        // it and releasing the matching `PyGILState_Ensure` frees it.
        unsafe {
            ffi::PyEval_RestoreThread(tstate);
            ffi::PyGILState_Release(gilstate);
        }
    }
}

thread_local! {
    static KEPT: Kept = const {
        Kept {
            gilstate: Cell::new(None),
            tstate: Cell::new(ptr::null_mut()),
        }
    };
}

/// Gives this thread a thread state it keeps, if it has none.
fn keep() {
    let _ = KEPT.try_with(|kept| {
        if kept.gilstate.get().is_some() {
            return;
        }
        // SAFETY: only reads this thread's own slot.
        if !unsafe { ffi::PyGILState_GetThisThreadState() }.is_null() {
            return; // A Python thread, or one attached right now.
        }
        // SAFETY: this thread has no thread state, so `PyGILState_Ensure`
        // makes one and takes the GIL; `PyEval_SaveThread` then releases
        // the GIL and keeps the state, whose count stays 1 so that later
        // attaches reuse it.
        unsafe {
            let gilstate = ffi::PyGILState_Ensure();
            let tstate = ffi::PyEval_SaveThread();
            kept.gilstate.set(Some(gilstate));
            kept.tstate.set(tstate);
        }
    });
}

/// Runs `f` attached to the interpreter; `None`, without running it,
/// once the interpreter is exiting.
pub(crate) fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    if exiting() {
        return None;
    }
    keep();
    Some(Python::attach(f))
}

/// Drops `value` (which holds Python objects) attached to the interpreter,
/// so that their references go at once instead of through pyo3's pool of
/// deferred ones: a thread that is in that pool's lock when the pool's
/// process forks leaves the lock held in the fork for good, and a forked
/// worker that then drops an object unattached hangs. Once the
/// interpreter is exiting it is leaked instead: nothing may attach then,
/// and the process is ending.
pub(crate) fn drop_attached<T>(value: T) {
    let mut value = Some(value);
    if attach(|_| drop(value.take())).is_none() {
        std::mem::forget(value);
    }
}

/// A Python object that threads of ours may drop unattached (the
/// engine's, a worker's loop ending): dropped with [`drop_attached`].
pub(crate) struct Attached<T>(Option<T>);

impl<T> Attached<T> {
    pub(crate) fn new(value: T) -> Self {
        Attached(Some(value))
    }
}

impl<T> std::ops::Deref for Attached<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("taken only by drop")
    }
}

impl<T> Drop for Attached<T> {
    fn drop(&mut self) {
        drop_attached(self.0.take());
    }
}
