//! A pool's life, as every pool lives it: accepting work, then shut down
//! or broken (for good), and its workers until the last is gone.
//!
//! | state | `admit` | how it is left |
//! |---|---|---|
//! | open | `Ok` | `shut_down`, `break_with` |
//! | shut down | `Err(ShutDown)` | `break_with` (a worker's end can still break it) |
//! | broken | `Err(Broken)` | never |
//!
//! Both flags live in one atomic byte, so admission costs one load; the
//! reason a pool broke is set once, before the flag that announces it.
//! The worker count is what `shutdown(wait = true)` and the exit hook wait
//! on; a wait that runs on one of the pool's own workers (a task shutting
//! its pool down) leaves that worker out, or it would wait for itself.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::{BrokenExecutor, BrokenKind, Error};

const SHUT_DOWN: u8 = 1;
const BROKEN: u8 = 2;

pub(crate) struct Lifecycle {
    kind: BrokenKind,
    flags: AtomicU8,
    broken: OnceLock<BrokenExecutor>,
    workers: Mutex<Workers>,
    worker_gone: Condvar,
}

#[derive(Default)]
struct Workers {
    /// Started (or asked for) and not yet gone.
    live: usize,
    /// Of those, how many wait in `wait_for_workers` from inside.
    waiting_inside: usize,
}

impl Lifecycle {
    pub(crate) fn new(kind: BrokenKind) -> Self {
        Lifecycle {
            kind,
            flags: AtomicU8::new(0),
            broken: OnceLock::new(),
            workers: Mutex::new(Workers::default()),
            worker_gone: Condvar::new(),
        }
    }

    /// Whether new work is accepted.
    ///
    /// # Errors
    ///
    /// [`Error::Broken`] once broken, else [`Error::ShutDown`] once shut down.
    // Inlined: every submit asks, and its callers are generic, compiled in
    // the crates that submit; the refusal stays out of line.
    #[inline]
    pub(crate) fn admit(&self) -> Result<(), Error> {
        // ORDERING: Acquire pairs with the Release in `break_with`, so a
        // reader of BROKEN sees the reason.
        let flags = self.flags.load(Acquire);
        if flags & (BROKEN | SHUT_DOWN) == 0 {
            return Ok(());
        }
        Err(self.refusal(flags))
    }

    /// Why [`admit`](Self::admit) refuses, given its `flags`.
    #[cold]
    fn refusal(&self, flags: u8) -> Error {
        if flags & BROKEN != 0 {
            return Error::Broken(
                self.broken()
                    .unwrap_or_else(|| BrokenExecutor::new(self.kind, "the pool is broken")),
            );
        }
        Error::ShutDown
    }

    /// Stops accepting work; true for the call that did it.
    pub(crate) fn shut_down(&self) -> bool {
        let first = self.flags.fetch_or(SHUT_DOWN, Release) & SHUT_DOWN == 0;
        if first {
            self.wake_stop_waiters();
        }
        first
    }

    /// Wakes [`wait_stopped`](Self::wait_stopped), which looks at the
    /// flags under the workers' lock: taking it orders this after a waiter
    /// that looked and is about to wait.
    fn wake_stop_waiters(&self) {
        drop(self.workers.lock());
        self.worker_gone.notify_all();
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.flags.load(Acquire) & SHUT_DOWN != 0
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.flags.load(Acquire) & BROKEN != 0
    }

    /// Breaks the pool for good; the first reason stays.
    pub(crate) fn break_with(&self, reason: impl Into<String>) -> BrokenExecutor {
        let broken = self
            .broken
            .get_or_init(|| BrokenExecutor::new(self.kind, reason.into()))
            .clone();
        if self.flags.fetch_or(BROKEN, Release) & BROKEN == 0 {
            self.wake_stop_waiters();
        }
        broken
    }

    /// Why the pool broke, if it did.
    pub(crate) fn broken(&self) -> Option<BrokenExecutor> {
        self.broken.get().cloned()
    }

    /// One more worker to wait for (counted before it starts, so a wait
    /// cannot miss it).
    pub(crate) fn worker_started(&self) {
        self.workers.lock().live += 1;
    }

    /// A worker is gone (or its start failed).
    pub(crate) fn worker_gone(&self) {
        let mut workers = self.workers.lock();
        workers.live -= 1;
        drop(workers);
        self.worker_gone.notify_all();
    }

    /// Workers not yet gone.
    #[cfg(test)]
    pub(crate) fn live_workers(&self) -> usize {
        self.workers.lock().live
    }

    /// Waits until the pool is shut down or broken and every worker is
    /// gone, or `deadline` passes; true in the first case.
    pub(crate) fn wait_stopped(&self, deadline: Option<Instant>) -> bool {
        let mut workers = self.workers.lock();
        loop {
            if (self.is_shut_down() || self.is_broken()) && workers.live == 0 {
                return true;
            }
            match deadline {
                Some(d) => {
                    if self.worker_gone.wait_until(&mut workers, d).timed_out() {
                        return (self.is_shut_down() || self.is_broken()) && workers.live == 0;
                    }
                }
                None => self.worker_gone.wait(&mut workers),
            }
        }
    }

    /// Waits until every worker is gone. `inside`: the caller is one of
    /// them, and waits for the others only; several such callers all count
    /// themselves out, so that none waits for another.
    pub(crate) fn wait_for_workers(&self, inside: bool) {
        let mut workers = self.workers.lock();
        if inside {
            workers.waiting_inside += 1;
        }
        while workers.live > workers.waiting_inside {
            self.worker_gone.wait(&mut workers);
        }
        if inside {
            workers.waiting_inside -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_is_open_then_shut_down_then_broken_for_good() {
        let life = Lifecycle::new(BrokenKind::ProcessPool);
        assert!(life.admit().is_ok());
        assert!(life.shut_down());
        assert!(!life.shut_down(), "only the first call shuts it down");
        assert!(matches!(life.admit(), Err(Error::ShutDown)));
        life.break_with("first");
        life.break_with("second");
        match life.admit() {
            Err(Error::Broken(b)) => assert_eq!(b.reason(), "first"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn waiting_inside_leaves_the_caller_out() {
        let life = Lifecycle::new(BrokenKind::ThreadPool);
        life.worker_started();
        life.wait_for_workers(true);
        life.worker_gone();
        life.wait_for_workers(false);
        assert_eq!(life.live_workers(), 0);
    }
}
