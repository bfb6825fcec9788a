//! Work a live pool has accepted finishes before a normal process exit
//! (SPEC E3), as CPython's exit hook joins its executors' workers.
//!
//! A pool that is dropped waits for its work anyway. This is for pools
//! that never are: one in a `static`, one leaked, one owned by a thread
//! still running when `main` returns, or one shut down with `wait(false)`.
//! When `main` returns or `std::process::exit` is called, the C runtime
//! runs its exit handlers while every thread still runs; ours shuts each
//! registered pool down and waits for the work it accepted (not what was
//! cancelled). A pool built with `join_at_exit(false)` is not registered,
//! and `std::process::abort` or a signal skips the handlers altogether.
//!
//! The handler runs on the thread that exits. If that thread is one of a
//! pool's own (a task calling `exit`), the pool's usual rules for a
//! shutdown from inside apply: a thread pool waits for every worker but
//! that one, a process pool does not wait.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Once, Weak};

use parking_lot::Mutex;

/// A pool that can finish its accepted work at exit.
pub(crate) trait FinishAtExit: Send + Sync {
    /// Stops accepting work and waits for what was accepted.
    fn finish_at_exit(&self);
}

static POOLS: Mutex<Vec<Weak<dyn FinishAtExit>>> = Mutex::new(Vec::new());

/// Has `pool` finished at exit, for as long as it lives.
pub(crate) fn register(pool: Weak<dyn FinishAtExit>) {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(install_handler);
    let mut pools = POOLS.lock();
    if pools.len() == pools.capacity() {
        // Dropped pools leave dead entries: clear them before growing, so
        // a program that makes pools in a loop stays small.
        pools.retain(|p| p.strong_count() > 0);
    }
    pools.push(pool);
}

#[cfg(not(miri))]
fn install_handler() {
    // SAFETY: `finish_all` is an `extern "C" fn()` that never unwinds
    // (every pool's work is run under `catch_unwind`).
    let refused = unsafe { libc::atexit(finish_all) } != 0;
    if refused {
        tracing::warn!("could not register the exit handler: pools will not be joined at exit");
    }
}

/// Miri runs no exit handlers; tests under it never rely on them.
#[cfg(miri)]
fn install_handler() {}

#[cfg_attr(miri, allow(dead_code))]
extern "C" fn finish_all() {
    // A pool's work may make new pools (a task building one): repeat
    // until none is left.
    loop {
        let pools = std::mem::take(&mut *POOLS.lock());
        if pools.is_empty() {
            return;
        }
        for pool in pools.iter().filter_map(Weak::upgrade) {
            if catch_unwind(AssertUnwindSafe(|| pool.finish_at_exit())).is_err() {
                // Nothing to report to: the program is exiting.
            }
        }
    }
}
