//! The state machine behind [`Future<T>`](super::Future) (SPEC F1).
//!
//! # States
//!
//! One atomic byte holds the phase and a flag, `HAS_ENTRIES`, that says
//! the entry list (waiters and callbacks) is non-empty:
//!
//! | from | to | method | who |
//! |---|---|---|---|
//! | PENDING | RUNNING | `try_start` | a worker, an inline runner (B7), `set_running_or_notify_cancel` |
//! | PENDING | CANCELLED | `try_cancel` | `cancel`, shutdown with `cancel_futures` |
//! | PENDING, RUNNING | COMPLETING | `try_begin_complete` | the runner, `set_result`, `set_exception`, a broken pool |
//! | COMPLETING | FINISHED | `publish` | whoever won COMPLETING |
//! | CANCELLED | CANCELLED_NOTIFIED | `set_running_or_notify_cancel` | an executor acknowledging a cancel |
//!
//! Every race (cancel vs. start, two `set_result`s, a timeout vs. the
//! completion) is settled by one compare-and-swap on that byte.
//!
//! # Who may touch what
//!
//! * `slot` holds the task while PENDING and the outcome once FINISHED.
//!   Only the thread whose CAS moved the future out of PENDING (to RUNNING,
//!   COMPLETING or CANCELLED) may take the task; only the thread that won
//!   COMPLETING may write the outcome. Anyone may read the outcome after an
//!   Acquire load saw FINISHED; nobody writes it again, except
//!   `take_outcome`, which requires the last handle.
//! * `entries` is behind a lock. Registration pushes under the lock after
//!   setting `HAS_ENTRIES` with a CAS that fails once the future is done.
//!   The transition to a done phase clears the flag and takes the list
//!   under the same lock (still by CAS: moves that notify nobody, like
//!   PENDING -> RUNNING, never take the lock and may land meanwhile), so
//!   an entry is either notified or never pushed. With the flag clear,
//!   transitions skip the lock entirely: a future nobody waits on is
//!   completed with atomics only.
//! * `handles` counts the `Future` values in existence (the executor's own
//!   reference is not one), so the last handle may move the value out.

use std::hash::Hash;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use crate::error::{Error, InvalidStateError, TaskError};

use super::Future;
use crate::sync::{AtomicU8, AtomicU32, Mutex, UnsafeCell};
use crate::task_context::{self, TaskContext};
use crate::waiter::{AsyncWaiter, SetWaiter, ThreadWaiter};

pub(super) const PENDING: u8 = 0;
pub(super) const RUNNING: u8 = 1;
pub(super) const COMPLETING: u8 = 2;
pub(super) const FINISHED: u8 = 3;
pub(super) const CANCELLED: u8 = 4;
pub(super) const CANCELLED_NOTIFIED: u8 = 5;
pub(super) const PHASE: u8 = 0b0111;
pub(super) const HAS_ENTRIES: u8 = 0b1000;

pub(super) fn is_done(phase: u8) -> bool {
    matches!(phase, FINISHED | CANCELLED | CANCELLED_NOTIFIED)
}

/// The state of a future (SPEC F1), as `Future::state` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started; can still be cancelled.
    Pending,
    /// Started; can no longer be cancelled.
    Running,
    /// Done with a value or a failure.
    Finished,
    /// Cancelled before it started.
    Cancelled,
}

impl State {
    pub(super) fn from_phase(phase: u8) -> State {
        match phase {
            PENDING => State::Pending,
            RUNNING | COMPLETING => State::Running,
            FINISHED => State::Finished,
            _ => State::Cancelled,
        }
    }
}

/// The work a pool future carries until someone starts it.
pub(crate) type Task<T> = Box<dyn FnOnce() -> Result<T, Error> + Send>;

pub(super) enum Slot<T> {
    Empty,
    Task(Task<T>),
    Value(T),
    Failed(Error),
}

pub(super) type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send>;

pub(super) enum Entry<T> {
    Thread(Arc<ThreadWaiter>),
    Set(Arc<SetWaiter>, usize),
    Async(Arc<AsyncWaiter>),
    Callback(Callback<T>),
}

impl<T> Entry<T> {
    fn is_closed(&self) -> bool {
        match self {
            Entry::Thread(w) => w.is_closed(),
            Entry::Set(w, _) => w.is_closed(),
            Entry::Async(w) => w.is_closed(),
            Entry::Callback(_) => false,
        }
    }
}

pub(crate) struct Inner<T> {
    pub(super) state: AtomicU8,
    /// 32 bits, so it shares a word with `state` and a pending future fits
    /// the allocator's next smaller size class.
    pub(super) handles: AtomicU32,
    /// Identity of the pool that may run this task inline (0: none).
    pub(super) origin: usize,
    entries: Mutex<Vec<Entry<T>>>,
    pub(super) slot: UnsafeCell<Slot<T>>,
}

// SAFETY: the slot is only mutated by the thread that won the transition
// that grants it (see the module docs), and the task inside is `Send`.
// Shared readers get `&T` after the outcome is published, hence `T: Sync`;
// the last handle moves `T` out on any thread, hence `T: Send`.
unsafe impl<T: Send + Sync> Sync for Inner<T> {}
// SAFETY: as above; sending the state sends the task (`Send`) and `T`.
unsafe impl<T: Send> Send for Inner<T> {}

/// A reference to a pool task as its queue holds it: type-erased, and not
/// counted as a handle.
pub(crate) trait Job: Send + Sync {
    /// Starts and runs the task unless it was cancelled or already started
    /// (B7 inline runs race with the queue). `about_to_finish` runs after
    /// the task, before the outcome is published; pools use it to count
    /// the worker as idle before anyone can react to the result.
    fn run(self: Arc<Self>, about_to_finish: &dyn Fn());
    /// Cancels the task if it has not started (shutdown `cancel_futures`).
    fn cancel(self: Arc<Self>) -> bool;
    /// Fails the task with `error` if it has not started (broken pool).
    fn fail(self: Arc<Self>, error: Error);
}

/// What a transition found instead of the phase it needed.
#[must_use]
pub(super) enum Transition<T> {
    Done(Vec<Entry<T>>),
    Refused(u8),
}

impl<T> Inner<T> {
    pub(super) fn new(origin: usize, slot: Slot<T>) -> Self {
        Inner {
            state: AtomicU8::new(PENDING),
            handles: AtomicU32::new(1),
            origin,
            entries: Mutex::new(Vec::new()),
            slot: UnsafeCell::new(slot),
        }
    }

    pub(super) fn phase(&self) -> u8 {
        self.state.load(Acquire) & PHASE
    }

    /// Counts one more handle. Like `Arc`, aborts rather than wrap: four
    /// billion handles to one future means a leak, and wrapping would let
    /// `take_outcome` move a value others still read.
    pub(super) fn add_handle(&self) {
        if self.handles.fetch_add(1, Relaxed) == u32::MAX {
            std::process::abort();
        }
    }

    pub(super) fn identity(&self) -> usize {
        self as *const Self as usize
    }

    /// Moves from a phase `allowed` accepts to `to`, keeping `HAS_ENTRIES`.
    /// For transitions that notify nobody.
    pub(super) fn try_move(&self, allowed: impl Fn(u8) -> bool, to: u8) -> Result<(), u8> {
        let mut s = self.state.load(Acquire);
        loop {
            if !allowed(s & PHASE) {
                return Err(s & PHASE);
            }
            // ORDERING: AcqRel: the winner takes ownership of the slot from
            // whoever moved the state before (Acquire) and hands its own
            // writes on (Release).
            match self
                .state
                .compare_exchange_weak(s, to | (s & HAS_ENTRIES), AcqRel, Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => s = actual,
            }
        }
    }

    /// Moves to a done phase and takes the entries to notify.
    pub(super) fn try_finish(&self, allowed: impl Fn(u8) -> bool, to: u8) -> Transition<T> {
        let mut s = self.state.load(Acquire);
        loop {
            if !allowed(s & PHASE) {
                return Transition::Refused(s & PHASE);
            }
            if s & HAS_ENTRIES != 0 {
                return self.try_finish_locked(allowed, to);
            }
            match self.state.compare_exchange_weak(s, to, AcqRel, Acquire) {
                Ok(_) => return Transition::Done(Vec::new()),
                Err(actual) => s = actual,
            }
        }
    }

    /// `try_finish` when entries exist: the flag and the list change only
    /// under the lock, but lock-free moves (start, begin-complete) may
    /// still change the phase, so the final move is a CAS here too.
    pub(super) fn try_finish_locked(&self, allowed: impl Fn(u8) -> bool, to: u8) -> Transition<T> {
        let mut entries = self.entries.lock();
        // The callbacks' handle must exist before the done state is
        // visible, so a woken last handle does not move the value out from
        // under them (`take_outcome`).
        let callback_handle = entries.iter().any(|e| matches!(e, Entry::Callback(_)));
        let mut s = self.state.load(Acquire);
        loop {
            if !allowed(s & PHASE) {
                return Transition::Refused(s & PHASE);
            }
            if callback_handle {
                self.add_handle();
            }
            match self.state.compare_exchange_weak(s, to, AcqRel, Acquire) {
                Ok(_) => return Transition::Done(std::mem::take(&mut *entries)),
                Err(actual) => {
                    if callback_handle {
                        self.handles.fetch_sub(1, Relaxed);
                    }
                    s = actual;
                }
            }
        }
    }

    /// Adds an entry unless the future is already done, in which case the
    /// entry comes back.
    pub(super) fn register(&self, entry: Entry<T>) -> Result<(), Entry<T>> {
        let mut entries = self.entries.lock();
        let mut s = self.state.load(Acquire);
        while s & HAS_ENTRIES == 0 {
            if is_done(s & PHASE) {
                return Err(entry);
            }
            match self
                .state
                .compare_exchange_weak(s, s | HAS_ENTRIES, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        if entries.len() == entries.capacity() {
            // Drop waiters that gave up before the list grows, so a future
            // polled with timeouts forever stays small.
            entries.retain(|e| !e.is_closed());
        }
        entries.push(entry);
        Ok(())
    }

    /// Takes the task out of a future this thread just moved out of PENDING.
    ///
    /// # Safety
    ///
    /// The caller's CAS moved the state out of PENDING.
    pub(super) unsafe fn take_task(&self) -> Option<Task<T>> {
        // SAFETY: leaving PENDING grants exclusive access to the slot until
        // the next transition (module docs, "Who may touch what").
        self.slot.with_mut(
            |slot| match std::mem::replace(unsafe { &mut *slot }, Slot::Empty) {
                Slot::Task(task) => Some(task),
                other => {
                    // SAFETY: as above.
                    unsafe { *slot = other };
                    None
                }
            },
        )
    }

    /// The published outcome.
    ///
    /// # Safety
    ///
    /// An Acquire load saw FINISHED, and no `take_outcome` can run while
    /// the returned reference lives.
    pub(super) unsafe fn outcome(&self) -> Result<&T, Error> {
        // SAFETY: the outcome is immutable once FINISHED was published; the
        // caller keeps `take_outcome` out by holding a handle.
        self.slot.with(|slot| match unsafe { &*slot } {
            Slot::Value(v) => Ok(v),
            Slot::Failed(e) => Err(e.clone()),
            Slot::Empty | Slot::Task(_) => Err(Error::Cancelled),
        })
    }

    /// Writes the outcome and publishes it: COMPLETING -> FINISHED.
    pub(super) fn publish(self: &Arc<Self>, outcome: Result<T, Error>) {
        let slot = match outcome {
            Ok(v) => Slot::Value(v),
            Err(e) => Slot::Failed(e),
        };
        // SAFETY: the caller won COMPLETING, which grants the slot.
        let replaced = self
            .slot
            .with_mut(|s| std::mem::replace(unsafe { &mut *s }, slot));
        // Only the COMPLETING winner gets here, so this cannot be refused.
        if let Transition::Done(entries) = self.try_finish(|p| p == COMPLETING, FINISHED) {
            Inner::notify(self, entries);
        }
        // A task replaced by `set_result` before it started is user code:
        // it is dropped after the waiters were woken, outside every lock.
        contain_panic(move || drop(replaced));
    }

    /// Wakes waiters, then runs callbacks in the order they were added.
    pub(super) fn notify(this: &Arc<Self>, entries: Vec<Entry<T>>) {
        let mut callbacks = Vec::new();
        for entry in entries {
            match entry {
                Entry::Thread(w) => w.notify(),
                Entry::Set(w, index) => {
                    if !w.is_closed() {
                        w.notify(index);
                    }
                }
                Entry::Async(w) => {
                    if !w.is_closed() {
                        w.notify();
                    }
                }
                Entry::Callback(cb) => callbacks.push(cb),
            }
        }
        if !callbacks.is_empty() {
            // `try_finish` already counted this handle.
            let handle = Future {
                inner: Arc::clone(this),
            };
            for cb in callbacks {
                run_callback(cb, &handle);
            }
        }
    }

    /// Runs the task if this thread can claim it.
    pub(super) fn run_task(self: Arc<Self>, about_to_finish: &dyn Fn()) {
        if self.try_move(|p| p == PENDING, RUNNING).is_err() {
            return;
        }
        // SAFETY: our CAS just moved the state out of PENDING.
        let Some(task) = (unsafe { self.take_task() }) else {
            return;
        };
        let context = TaskContext {
            pool: self.origin,
            task: self.identity(),
        };
        let outcome = task_context::run_as(context, || {
            catch_unwind(AssertUnwindSafe(task))
                .unwrap_or_else(|payload| Err(Error::Failed(TaskError::from_panic(payload))))
        });
        about_to_finish();
        if self.try_move(|p| p == RUNNING, COMPLETING).is_ok() {
            self.publish(outcome);
        } else {
            // `set_result` on the running future won; as in CPython the
            // executor's outcome is dropped (its `Drop` is user code).
            contain_panic(move || drop(outcome));
        }
        // The queue's reference may be the last one (nobody kept the
        // future): dropping it drops the value, whose `Drop` is user code.
        contain_panic(move || drop(self));
    }
}

impl<T: Send + Sync + 'static> Job for Inner<T> {
    fn run(self: Arc<Self>, about_to_finish: &dyn Fn()) {
        self.run_task(about_to_finish);
    }

    fn cancel(self: Arc<Self>) -> bool {
        Future::cancel_inner(&self)
    }

    fn fail(self: Arc<Self>, error: Error) {
        if self.try_move(|p| p == PENDING, COMPLETING).is_ok() {
            self.publish(Err(error));
        }
    }
}

/// Runs `f`, which runs user code on a thread that may be ours (a value's
/// or a task's `Drop`, mostly): a panic is logged and goes no further, so
/// it can neither kill a pool's thread nor leave other futures unsettled.
pub(crate) fn contain_panic(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        tracing::error!(
            panic = %crate::error::panic_message(payload.as_ref()),
            "a value's or a task's Drop panicked; ignored"
        );
    }
}

pub(super) fn run_callback<T>(cb: Callback<T>, future: &Future<T>) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| cb(future))) {
        tracing::error!(
            panic = %crate::error::panic_message(payload.as_ref()),
            "a done-callback panicked; ignored"
        );
    }
}

pub(super) fn set_running_or_notify_cancel<T>(inner: &Inner<T>) -> Result<bool, InvalidStateError> {
    loop {
        match inner.try_move(|p| p == PENDING, RUNNING) {
            Ok(()) => return Ok(true),
            Err(CANCELLED) => {
                if inner
                    .try_move(|p| p == CANCELLED, CANCELLED_NOTIFIED)
                    .is_ok()
                {
                    return Ok(false);
                }
                // Someone else acknowledged it first: report that.
            }
            Err(phase) => {
                return Err(InvalidStateError::new(State::from_phase(phase), ()));
            }
        }
    }
}

pub(super) fn complete<T, V>(
    inner: &Arc<Inner<T>>,
    given: V,
    outcome: impl FnOnce(V) -> Result<T, Error>,
) -> Result<(), InvalidStateError<V>> {
    match inner.try_move(|p| p == PENDING || p == RUNNING, COMPLETING) {
        Ok(()) => {
            inner.publish(outcome(given));
            Ok(())
        }
        Err(phase) => Err(InvalidStateError::new(State::from_phase(phase), given)),
    }
}

/// The completing side of a future, for executors that complete futures
/// from elsewhere (the process pool's reader threads).
///
/// Not a handle: it never reads the value, so it does not keep the last
/// handle from moving the value out (`take_outcome`), which is how `map`
/// hands out results without `T: Clone`.
///
/// A promise lives on the executor's threads, and may hold the last
/// reference to the future: dropping it, or a value it could not deliver,
/// runs the value's `Drop` there, so both are contained
/// ([`contain_panic`]).
pub(crate) struct Promise<T> {
    pub(super) inner: ManuallyDrop<Arc<Inner<T>>>,
}

impl<T> Promise<T> {
    pub(super) fn new(inner: Arc<Inner<T>>) -> Self {
        Promise {
            inner: ManuallyDrop::new(inner),
        }
    }

    /// SPEC F7: true when it moved to running, false when cancelled.
    pub(crate) fn start(&self) -> bool {
        matches!(set_running_or_notify_cancel(&self.inner), Ok(true))
    }

    /// Completes with `outcome`; false when already done.
    pub(crate) fn complete(&self, outcome: Result<T, Error>) -> bool {
        match complete(&self.inner, outcome, |o| o) {
            Ok(()) => true,
            Err(refused) => {
                contain_panic(move || drop(refused));
                false
            }
        }
    }

    pub(crate) fn cancel(&self) -> bool {
        Future::cancel_inner(&self.inner)
    }

    pub(crate) fn id(&self) -> usize {
        self.inner.identity()
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        // SAFETY: `inner` is taken once, here, and never used again.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        contain_panic(move || drop(inner));
    }
}
