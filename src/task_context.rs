//! What the current thread is running, and which running task waits on
//! which future (SPEC B7).
//!
//! Two things make the seeds' deadlock examples finish instead of hanging:
//!
//! * A worker that blocks on a *pending* future of its own pool claims it
//!   and runs it inline (see `Future::wait_done`). That needs to know which
//!   pool the current thread works for.
//! * A running task that blocks without a deadline on a *running* future
//!   records the edge "my task waits for that future". Before adding an
//!   edge the chain of edges from the awaited future is followed; reaching
//!   the waiting task again means a cycle, which no amount of waiting can
//!   break, so the wait fails with `Error::Deadlock` instead. One global
//!   lock orders the edge insertions, so of two tasks closing a cycle at the
//!   same moment exactly one sees it. The lock is only taken on this slow
//!   path (a task blocking), never when submitting or completing.
//!
//! Identities are the addresses of the futures' shared state: a running
//! task's address is alive while it runs, an awaited future's while someone
//! waits on it, and every edge is removed before its wait returns.

use std::cell::Cell;

use parking_lot::Mutex;

use crate::error::Error;
use crate::pool_id::NO_POOL;

/// The task a thread is running and the pool it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskContext {
    /// The pool whose queue the task came from ([`NO_POOL`]: none).
    pub(crate) pool: u16,
    /// Identity of the running task's future.
    pub(crate) task: usize,
}

#[cfg(not(concurrent_futures_loom))]
thread_local! {
    static WORKER_POOL: Cell<WorkerOf> = const { Cell::new(WorkerOf::NONE) };
    static CURRENT_TASK: Cell<Option<TaskContext>> = const { Cell::new(None) };
}

// loom runs its threads on one OS thread: each needs loom's own locals.
#[cfg(concurrent_futures_loom)]
loom::thread_local! {
    static WORKER_POOL: Cell<WorkerOf> = Cell::new(WorkerOf::NONE);
    static CURRENT_TASK: Cell<Option<TaskContext>> = Cell::new(None);
}

/// The pool a thread works for: its 16-bit id, which its futures carry
/// (and pools may share, see `pool_id`), and its exact identity.
#[derive(Clone, Copy)]
struct WorkerOf {
    id: u16,
    key: usize,
}

impl WorkerOf {
    const NONE: WorkerOf = WorkerOf {
        id: NO_POOL,
        key: 0,
    };
}

/// Marks the current thread as a worker, for its whole life, of the pool
/// with 16-bit id `id` and identity `key` (never 0).
pub(crate) fn set_worker_pool(id: u16, key: usize) {
    WORKER_POOL.with(|p| p.set(WorkerOf { id, key }));
}

/// The 16-bit id of the pool the current thread works for, [`NO_POOL`]
/// if none.
pub(crate) fn worker_pool() -> u16 {
    WORKER_POOL.with(|p| p.get().id)
}

/// True on a worker of the pool whose identity is `key`.
pub(crate) fn works_for(key: usize) -> bool {
    WORKER_POOL.with(|p| p.get().key) == key
}

/// The task the current thread is running, if any.
pub(crate) fn current_task() -> Option<TaskContext> {
    CURRENT_TASK.with(Cell::get)
}

/// Runs `f` as task `context`; nested inline runs restore the outer task.
pub(crate) fn run_as<R>(context: TaskContext, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<TaskContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT_TASK.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT_TASK.with(|c| c.replace(Some(context))));
    f()
}

/// Stack left below which an inline run moves to a fresh stack segment:
/// more than any one task's frames are expected to need before their own
/// next wait.
const STACK_RED_ZONE: usize = 256 * 1024;

/// The size of each fresh stack segment: room for a few thousand more
/// inline runs before the next one.
const STACK_SEGMENT: usize = 8 * 1024 * 1024;

/// Runs `f` with room on the stack: an inline run (SPEC B7) nests the
/// task it runs inside the task that waits, so a chain of tasks each
/// waiting on the next would otherwise overflow the thread's stack and
/// abort the program. With a segment per few thousand links, a chain of
/// any length completes, memory permitting.
pub(crate) fn on_enough_stack<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(not(miri))]
    return stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, f);
    // Miri cannot switch stacks; its tests build no deep chains.
    #[cfg(miri)]
    f()
}

/// Edges `(waiting task, awaited future)`. A task blocks on at most one
/// future at a time, and only running tasks block, so the list is never
/// longer than the number of threads blocked inside tasks.
static WAITS_FOR: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// An edge of the wait-for graph, removed when dropped.
#[must_use = "the edge is removed when this guard is dropped"]
pub(crate) struct WaitEdge {
    waiter: usize,
}

impl Drop for WaitEdge {
    fn drop(&mut self) {
        WAITS_FOR.lock().retain(|&(w, _)| w != self.waiter);
    }
}

/// Records that `waiter` blocks on `awaited`, unless that closes a cycle.
///
/// # Errors
///
/// [`Error::Deadlock`] when `awaited` waits, directly or through other
/// tasks, on `waiter`.
pub(crate) fn enter_wait(waiter: usize, awaited: usize) -> Result<WaitEdge, Error> {
    let mut edges = WAITS_FOR.lock();
    let mut cursor = awaited;
    // The graph is a set of chains (one out-edge per task) and every cycle
    // is refused before it closes, so this walk ends.
    loop {
        if cursor == waiter {
            return Err(Error::Deadlock);
        }
        match edges.iter().find(|&&(w, _)| w == cursor) {
            Some(&(_, next)) => cursor = next,
            None => break,
        }
    }
    edges.push((waiter, awaited));
    Ok(WaitEdge { waiter })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_is_refused_and_a_chain_is_not() {
        // SPEC B7: two tasks waiting on each other.
        let a = enter_wait(0x10, 0x20).unwrap();
        let b = enter_wait(0x30, 0x10).unwrap();
        assert!(matches!(enter_wait(0x20, 0x30), Err(Error::Deadlock)));
        drop(b);
        let c = enter_wait(0x20, 0x30).unwrap();
        drop((a, c));
        assert!(
            WAITS_FOR
                .lock()
                .iter()
                .all(|&(w, _)| !(0x10..=0x30).contains(&w))
        );
    }

    #[test]
    fn run_as_restores_the_outer_task() {
        let outer = TaskContext { pool: 1, task: 2 };
        let inner = TaskContext { pool: 1, task: 3 };
        run_as(outer, || {
            run_as(inner, || assert_eq!(current_task(), Some(inner)));
            assert_eq!(current_task(), Some(outer));
        });
        assert_eq!(current_task(), None);
    }
}
