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
use std::sync::atomic::Ordering::Relaxed;
use std::task::Waker;
use std::time::Instant;

use crate::sync::{AtomicBool, AtomicU64, Mutex, Thread, current, park_until};
use std::sync::atomic::Ordering::{Acquire, Release};

#[cfg(not(concurrent_futures_loom))]
thread_local! {
    static CACHED: Cell<Option<Arc<ThreadWaiter>>> = const { Cell::new(None) };
}

/// Wakes one blocked thread (`result`, `exception`).
///
/// A thread keeps one waiter and reuses it for wait after wait, even while
/// entries of its earlier waits are still registered on futures (a wait
/// that timed out, or one whose notifier has not yet dropped its entry):
/// each wait has a number of its own, an entry carries the number of the
/// wait it was made for, and a notification counts only if its number is
/// the current one. So a stale entry can never wake a later wait, and a
/// blocking `result()` allocates nothing, however its notifier is
/// scheduled.
#[derive(Debug)]
pub(crate) struct ThreadWaiter {
    /// The current wait's number times [`WAIT_STEP`], plus [`NOTIFIED`]
    /// once its notification came. Only the owning thread moves to the
    /// next number.
    state: AtomicU64,
    thread: Thread,
}

/// Set on the current wait's number by its notification.
const NOTIFIED: u64 = 1;
/// From one wait's number to the next: 2^63 waits before a number comes
/// back, so an entry cannot outlive its number's reuse.
const WAIT_STEP: u64 = 2;

impl ThreadWaiter {
    /// A waiter for the calling thread.
    pub(crate) fn for_current_thread() -> Self {
        ThreadWaiter {
            state: AtomicU64::new(0),
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
            return w;
        }
        Arc::new(ThreadWaiter::for_current_thread())
    }

    /// The number of the wait in progress, for the entries registered for
    /// it. Called by the owning thread only.
    pub(crate) fn wait_number(&self) -> u64 {
        // Relaxed: only this thread changes the number.
        self.state.load(Relaxed) & !NOTIFIED
    }

    /// Ends the wait in progress and hands the waiter back for reuse:
    /// from now on, notifications for the wait that ended do nothing.
    pub(crate) fn release(this: Arc<ThreadWaiter>) {
        this.end_wait();
        #[cfg(not(concurrent_futures_loom))]
        let _ = CACHED.try_with(|c| c.set(Some(this)));
        #[cfg(concurrent_futures_loom)]
        drop(this);
    }

    /// Moves to the next wait's number: notifications for the one that
    /// ended do nothing from now on. Called by the owning thread only.
    pub(crate) fn end_wait(&self) {
        let next = self.wait_number().wrapping_add(WAIT_STEP);
        // Relaxed: the entries that may still notify the ended wait only
        // compare the number, in a read-modify-write that sees this store
        // or precedes it; a late notification's wake-up is a spurious one,
        // which `park_until`'s loop absorbs.
        self.state.store(next, Relaxed);
    }

    /// Notifies wait `number`, if it is still the one in progress.
    pub(crate) fn notify(&self, number: u64) {
        // ORDERING: Release pairs with the Acquire in `park_until`, so the
        // woken thread sees the state the notifier published before.
        if self
            .state
            .compare_exchange(number, number | NOTIFIED, Release, Relaxed)
            .is_ok()
        {
            self.thread.unpark();
        }
    }

    fn notified(&self) -> bool {
        self.state.load(Acquire) & NOTIFIED != 0
    }

    /// Parks until notified or `deadline`; true when notified.
    ///
    /// Spins briefly first (a few microseconds, yielding), as crossbeam's
    /// blocking operations do, when the caller says the result may be
    /// near (`soon`: its task already runs) and this thread's spins
    /// have been paying (see [`SpinHistory`]): a result that arrives
    /// that soon costs no sleep and no wake-up. Then parks, and loops on
    /// wake-up: `park` may return spuriously or for an unpark meant for an
    /// earlier wait of the same thread.
    pub(crate) fn park_until(&self, deadline: Option<Instant>, soon: bool) -> bool {
        #[cfg(not(concurrent_futures_loom))]
        if soon && SpinHistory::advises_spinning() {
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                if self.notified() {
                    SpinHistory::record(true);
                    return true;
                }
                backoff.snooze();
            }
            SpinHistory::record(false);
        }
        #[cfg(concurrent_futures_loom)]
        let _ = soon;
        loop {
            if self.notified() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            park_until(deadline);
        }
    }

    /// Whether wait `number` is over (notified, or given up): its entry
    /// may be dropped.
    pub(crate) fn is_over(&self, number: u64) -> bool {
        self.state.load(Relaxed) != number
    }
}

/// How the calling thread's recent spins went, to decide whether the next
/// wait spins at all.
///
/// A spin pays when results tend to come within it (answers streaming
/// back while the caller collects them: a process pool's chunksize-1
/// `submit`s ran about 1.5x faster with it). When they come later, it
/// holds a CPU for nothing, and on a machine with few CPUs the threads
/// that would produce the result (the engine's reader, the worker it
/// wakes) wait for that CPU: a process round trip measured about 1.2x
/// slower with it. So a thread spins while at least one spin in five
/// finds its result, and otherwise parks at once, spinning again every
/// [`RETRY_EVERY`](Self::RETRY_EVERY)th wait to notice when results come
/// quickly again.
#[cfg(not(concurrent_futures_loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SpinHistory {
    /// Raised by [`HIT`](Self::HIT) for a spin that found its result,
    /// lowered by one for one that did not; spinning stops at zero.
    score: u8,
    /// Waits that parked at once since the last spin.
    skipped: u8,
}

#[cfg(not(concurrent_futures_loom))]
thread_local! {
    static SPINS: Cell<SpinHistory> = const { Cell::new(SpinHistory::NEW) };
}

#[cfg(not(concurrent_futures_loom))]
impl SpinHistory {
    const HIT: u8 = 4;
    const MAX_SCORE: u8 = 4 * Self::HIT;
    const RETRY_EVERY: u8 = 16;
    /// A thread's first waits spin, as if its last spin had paid.
    const NEW: SpinHistory = SpinHistory {
        score: Self::HIT,
        skipped: 0,
    };

    /// Whether a wait with this history should spin, and the history
    /// after the decision.
    fn decide(self) -> (bool, SpinHistory) {
        if self.score > 0 || self.skipped + 1 >= Self::RETRY_EVERY {
            (true, SpinHistory { skipped: 0, ..self })
        } else {
            let skipped = self.skipped + 1;
            (false, SpinHistory { skipped, ..self })
        }
    }

    /// The history after a spin that found its result (`hit`) or not.
    fn after(self, hit: bool) -> SpinHistory {
        let score = if hit {
            (self.score + Self::HIT).min(Self::MAX_SCORE)
        } else {
            self.score.saturating_sub(1)
        };
        SpinHistory { score, skipped: 0 }
    }

    /// Whether the calling thread's next wait should spin: never in a
    /// process confined to one CPU, where the spin would hold the CPU the
    /// notifier needs; else as its history says. A thread whose
    /// thread-locals are gone (a wait in a destructor) parks at once.
    fn advises_spinning() -> bool {
        spinning_can_help()
            && SPINS
                .try_with(|spins| {
                    let (spin, next) = spins.get().decide();
                    spins.set(next);
                    spin
                })
                .unwrap_or(false)
    }

    fn record(hit: bool) {
        let _ = SPINS.try_with(|spins| spins.set(spins.get().after(hit)));
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

#[cfg(all(test, not(concurrent_futures_loom)))]
mod tests {
    use super::{SpinHistory, ThreadWaiter};
    use std::sync::Arc;

    /// Runs `outcomes` (true: the spin found its result) through a fresh
    /// history; how many of `waits` waits spun, the outcomes consumed by
    /// the waits that did.
    fn spins(outcomes: impl Fn(usize) -> bool, waits: usize) -> usize {
        let mut history = SpinHistory::NEW;
        let mut spun = 0;
        for _ in 0..waits {
            let (spin, next) = history.decide();
            history = next;
            if spin {
                history = history.after(outcomes(spun));
                spun += 1;
            }
        }
        spun
    }

    #[test]
    fn miri_spins_that_keep_failing_stop_but_are_retried_now_and_then() {
        // Four misses use up a new thread's credit; then one wait in
        // `RETRY_EVERY` spins.
        let spun = spins(|_| false, 4 + 16 * 10);
        assert_eq!(spun, 4 + 10);
    }

    #[test]
    fn miri_spins_that_pay_often_enough_go_on() {
        // One hit in three keeps every wait spinning; one in ten does not.
        assert_eq!(spins(|n| n % 3 == 0, 1_000), 1_000);
        assert!(spins(|n| n % 10 == 9, 1_000) < 1_000);
    }

    #[test]
    fn miri_a_retry_that_pays_brings_spinning_back() {
        // Misses until the thread parks at once, then hits from the first
        // retry on: every wait after it spins again.
        let spun = spins(|n| n >= 4, 4 + 16 + 100);
        assert_eq!(spun, 4 + 1 + 100);
    }

    #[test]
    fn miri_a_wait_that_ended_cannot_be_notified_and_the_waiter_is_reused() {
        let first = ThreadWaiter::acquire();
        let first_number = first.wait_number();
        // An entry of the first wait, still held where it was registered.
        let stale = Arc::clone(&first);
        ThreadWaiter::release(first);

        let second = ThreadWaiter::acquire();
        assert!(
            Arc::ptr_eq(&second, &stale),
            "the thread's waiter is reused"
        );
        let second_number = second.wait_number();
        assert_ne!(second_number, first_number);
        assert!(stale.is_over(first_number));
        assert!(!second.is_over(second_number));

        stale.notify(first_number);
        assert!(!second.notified(), "a stale entry woke a later wait");
        second.notify(second_number);
        assert!(second.park_until(None, false));
        assert!(second.is_over(second_number));
        ThreadWaiter::release(second);
    }
}
