//! The one waiting mechanism behind `result`, `exception`, `wait`,
//! `as_completed` and `.await` (DESIGN: "ONE waiting mechanism").
//!
//! A waiter is registered on each future it waits for and is notified when
//! that future finishes *or is cancelled*. Notification never touches the
//! future, so the thread that completes a future can let go of it before
//! waking anyone. A waiter that gives up (timeout, dropped iterator) only
//! marks itself closed: futures drop closed waiters lazily, which keeps
//! giving up O(1) instead of O(futures).

#[cfg(not(concurrent_futures_loom))]
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;
#[cfg(not(concurrent_futures_loom))]
use std::sync::atomic::Ordering::Relaxed;
use std::task::Waker;
use std::time::Instant;

use crate::sync::{AtomicBool, Mutex, Thread, current, park_until};
use std::sync::atomic::Ordering::{Acquire, Release};

#[cfg(not(concurrent_futures_loom))]
thread_local! {
    static CACHED: Cell<Option<Arc<ThreadWaiter>>> = const { Cell::new(None) };
}

/// Wakes one blocked thread (`result`, `exception`).
#[derive(Debug)]
pub(crate) struct ThreadWaiter {
    notified: AtomicBool,
    closed: AtomicBool,
    thread: Thread,
}

impl ThreadWaiter {
    /// A waiter for the calling thread.
    pub(crate) fn for_current_thread() -> Self {
        ThreadWaiter {
            notified: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            thread: current(),
        }
    }

    /// The calling thread's waiter, reused between waits: a blocking
    /// `result()` then allocates nothing.
    pub(crate) fn acquire() -> Arc<ThreadWaiter> {
        // `try_with`: a wait in a thread-local's destructor or an exit
        // handler, after this one was destroyed, just allocates.
        #[cfg(not(concurrent_futures_loom))]
        if let Some(w) = CACHED.try_with(Cell::take).ok().flatten() {
            w.notified.store(false, Relaxed);
            return w;
        }
        Arc::new(ThreadWaiter::for_current_thread())
    }

    /// Hands the waiter back for reuse. Only a waiter nobody else refers
    /// to is kept: one left registered on a future (a wait that timed out)
    /// could still be notified for that future, so it is dropped instead.
    pub(crate) fn release(this: Arc<ThreadWaiter>) {
        #[cfg(not(concurrent_futures_loom))]
        if Arc::strong_count(&this) == 1 && !this.is_closed() {
            let _ = CACHED.try_with(|c| c.set(Some(this)));
        }
        #[cfg(concurrent_futures_loom)]
        drop(this);
    }

    pub(crate) fn notify(&self) {
        // ORDERING: Release pairs with the Acquire in `park_until`, so the
        // woken thread sees the state the notifier published before.
        self.notified.store(true, Release);
        self.thread.unpark();
    }

    /// Parks until notified or `deadline`; true when notified.
    ///
    /// Spins briefly first (a few microseconds, yielding), as crossbeam's
    /// blocking operations do: a result that arrives that soon costs no
    /// sleep and no wake-up, which are most of a round trip's latency; but
    /// not in a process confined to one CPU, where the spin would hold the
    /// CPU the notifier needs. Then parks, and loops on wake-up: `park`
    /// may return spuriously or for an unpark meant for an earlier wait of
    /// the same thread.
    pub(crate) fn park_until(&self, deadline: Option<Instant>) -> bool {
        #[cfg(not(concurrent_futures_loom))]
        if spinning_can_help() {
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                if self.notified.load(Acquire) {
                    return true;
                }
                backoff.snooze();
            }
        }
        loop {
            if self.notified.load(Acquire) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            park_until(deadline);
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }
}

/// Whether this process may run on more than one CPU. On one, a waiter
/// that spins only delays the thread it waits for: the notifier needs the
/// very CPU the spinner holds. Read once: a process pinned later keeps
/// spinning (harmless, only slower), one unpinned later parks at once.
#[cfg(not(concurrent_futures_loom))]
fn spinning_can_help() -> bool {
    use std::sync::atomic::AtomicU8;
    // 0: not known yet, 1: one CPU, 2: more.
    static CPUS: AtomicU8 = AtomicU8::new(0);
    match CPUS.load(Relaxed) {
        0 => {
            let many = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
            CPUS.store(if many { 2 } else { 1 }, Relaxed);
            many
        }
        known => known == 2,
    }
}

/// Collects completions of many futures for `wait` and `as_completed`:
/// each registered future pushes its index, so a completion costs O(1).
#[derive(Debug)]
pub(crate) struct SetWaiter {
    state: Mutex<SetState>,
    closed: AtomicBool,
}

#[derive(Debug)]
struct SetState {
    ready: VecDeque<usize>,
    /// The thread to wake; updated on every wait since an `as_completed`
    /// iterator may move between threads.
    thread: Option<Thread>,
}

impl SetWaiter {
    pub(crate) fn new() -> Self {
        SetWaiter {
            state: Mutex::new(SetState {
                ready: VecDeque::new(),
                thread: None,
            }),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn notify(&self, index: usize) {
        let thread = {
            let mut state = self.state.lock();
            state.ready.push_back(index);
            state.thread.clone()
        };
        if let Some(t) = thread {
            t.unpark();
        }
    }

    /// The next completed index, parking until one arrives or `deadline`.
    pub(crate) fn next_until(&self, deadline: Option<Instant>) -> Option<usize> {
        loop {
            {
                let mut state = self.state.lock();
                if let Some(i) = state.ready.pop_front() {
                    return Some(i);
                }
                state.thread = Some(current());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            park_until(deadline);
        }
    }

    /// True when no completion is waiting to be taken.
    pub(crate) fn is_empty(&self) -> bool {
        self.state.lock().ready.is_empty()
    }

    /// The next completed index, if one is already there.
    pub(crate) fn try_next(&self) -> Option<usize> {
        self.state.lock().ready.pop_front()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }
}

/// Wakes an async task that awaits a future (SPEC B4).
#[derive(Debug)]
pub(crate) struct AsyncWaiter {
    waker: Mutex<Option<Waker>>,
    closed: AtomicBool,
}

impl AsyncWaiter {
    pub(crate) fn new(waker: Waker) -> Self {
        AsyncWaiter {
            waker: Mutex::new(Some(waker)),
            closed: AtomicBool::new(false),
        }
    }

    /// Replaces the waker when the task was polled with a different one.
    pub(crate) fn update(&self, waker: &Waker) {
        let mut slot = self.waker.lock();
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    pub(crate) fn notify(&self) {
        let waker = self.waker.lock().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The awaiting task went away: its waker is released now rather
    /// than when the future completes.
    pub(crate) fn close(&self) {
        self.closed.store(true, Release);
        drop(self.waker.lock().take());
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }
}
