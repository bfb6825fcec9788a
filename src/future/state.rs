//! The state machine behind [`Future<T>`](super::Future) (SPEC F1).
//!
//! # Phases
//!
//! One atomic byte holds the [`Phase`] and three flags: `HAS_ENTRIES`
//! (the entry list of waiters and callbacks is non-empty), and, once
//! Finished, `FAILED` (the outcome is a failure, not a value) and `TAKEN`
//! (the last handle moved it out). The phase
//! moves only through the transitions below; each is a method here, and
//! the ones that grant access to the future's storage return a token, the
//! only way to reach that access:
//!
//! | from | to | method | token: what it grants | who |
//! |---|---|---|---|---|
//! | Pending | Starting | `try_start` | [`Starting`]: the task | a worker, an inline runner (B7), `set_running_or_notify_cancel` |
//! | Starting | Running | `Starting::run` / drop | | the `Starting` holder |
//! | Pending, Running | Completing | `try_complete` | [`Completing`]: the outcome's write | the runner, `set_result`, `set_exception`, a broken pool |
//! | Completing | Finished | `Completing::publish` | | the `Completing` holder |
//! | Pending | Cancelled | `try_cancel` | the task (dropped unrun) | `cancel`, shutdown with `cancel_futures` |
//! | Cancelled | CancelledNotified | `acknowledge_cancel` | | an executor acknowledging a cancel |
//! | Finished | Finished + `TAKEN` | `take_outcome` | the outcome, moved out | the last handle |
//!
//! Every race (cancel vs. start, two `set_result`s, a timeout vs. the
//! completion) is settled by one compare-and-swap on that byte.
//!
//! # Who may touch what
//!
//! * The storage is one untagged union: the task while Pending, then the
//!   value or the (boxed) failure, as `FAILED` says (one allocation per
//!   future, sized for the largest of the three: a word for a small task
//!   and value, so that a pool's future is 40 bytes with `Arc`'s counts).
//!   Only a `Starting` token reads the task out, only a `Completing`
//!   token writes the outcome, and `FAILED` is stored with Finished, in
//!   the same Release store; only a transition out of Pending drops an
//!   unrun task. Anyone may read the outcome after an Acquire load saw
//!   Finished; nobody writes it again, except `take_outcome`, which needs
//!   the last handle and sets `TAKEN`, so the drop skips what it moved.
//! * Starting and Completing are *owned* phases: they last a copy of the
//!   task or a write of the outcome, never user code, and while one lasts
//!   nobody else changes the state byte (a completer or a registration
//!   that finds one waits for it to pass). So their owner leaves them with
//!   a plain store, and the task's bytes are never read while an outcome
//!   is written over them.
//! * `entries` is behind `lock`. Registration pushes under the lock after
//!   setting `HAS_ENTRIES`, which fails once the future is done. The move
//!   to a done phase clears the flag and takes the list under the same
//!   lock, so an entry is either notified or never pushed. With the flag
//!   clear, transitions skip the lock entirely: a future nobody waits on
//!   is run and completed with two compare-and-swaps and two stores.
//! * `handles` counts the `Future` values in existence (the executor's own
//!   reference is not one), so the last handle may move the value out.

use std::any::Any;
use std::hash::Hash;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use smallvec::SmallVec;

use crate::error::{Error, InvalidStateError, TaskError};

use super::Future;
use crate::sync::{AtomicU8, AtomicU32, RawLock, UnsafeCell, yield_now};
use crate::task_context::{self, TaskContext};
use crate::waiter::{AsyncWaiter, SetWaiter, ThreadWaiter};

/// Where a future is in its life. `Starting` and `Completing` are owned
/// by one thread for the length of a copy (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    Pending = 0,
    Starting = 1,
    Running = 2,
    Completing = 3,
    Finished = 4,
    Cancelled = 5,
    CancelledNotified = 6,
}

const PHASE_BITS: u8 = 0b0111;
const HAS_ENTRIES: u8 = 0b1000;
/// Set with Finished when the outcome is a failure: the storage holds no
/// tag of its own, so a small value and a failure share its bytes.
const FAILED: u8 = 0b1_0000;
/// Set on a Finished future whose outcome the last handle moved out.
const TAKEN: u8 = 0b10_0000;

impl Phase {
    fn of(word: u8) -> Phase {
        match word & PHASE_BITS {
            0 => Phase::Pending,
            1 => Phase::Starting,
            2 => Phase::Running,
            3 => Phase::Completing,
            4 => Phase::Finished,
            5 => Phase::Cancelled,
            // Only this module writes the byte, and 7 is never written.
            _ => Phase::CancelledNotified,
        }
    }

    pub(super) fn is_done(self) -> bool {
        matches!(
            self,
            Phase::Finished | Phase::Cancelled | Phase::CancelledNotified
        )
    }

    pub(super) fn is_cancelled(self) -> bool {
        matches!(self, Phase::Cancelled | Phase::CancelledNotified)
    }

    fn is_owned(self) -> bool {
        matches!(self, Phase::Starting | Phase::Completing)
    }

    pub(super) fn state(self) -> State {
        match self {
            Phase::Pending => State::Pending,
            Phase::Starting | Phase::Running | Phase::Completing => State::Running,
            Phase::Finished => State::Finished,
            Phase::Cancelled | Phase::CancelledNotified => State::Cancelled,
        }
    }
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

/// Waits for an owned phase to pass: it lasts a copy, so this spins a
/// little and then yields, in case its owner was preempted.
fn wait_for_owner(spins: &mut u32) {
    // Under loom only a yield tells the model checker to run the owner.
    if *spins < 16 && cfg!(not(concurrent_futures_loom)) {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        yield_now();
    }
}

/// What a finished future holds, on its way in or out of the storage.
pub(super) enum Outcome<T> {
    Value(T),
    /// Boxed: failures are rare, and a pointer keeps the union small.
    Failed(Box<Error>),
}

impl<T> Outcome<T> {
    fn from_result(result: Result<T, Error>) -> Self {
        match result {
            Ok(v) => Outcome::Value(v),
            Err(e) => Outcome::Failed(Box::new(e)),
        }
    }

    pub(super) fn into_result(self) -> Result<T, Error> {
        match self {
            Outcome::Value(v) => Ok(v),
            Outcome::Failed(e) => Err(*e),
        }
    }

    /// The state byte's flag that says which member holds it.
    fn flag(&self) -> u8 {
        match self {
            Outcome::Value(_) => 0,
            Outcome::Failed(_) => FAILED,
        }
    }
}

/// The published outcome, as a handle reads it.
pub(super) enum OutcomeRef<'a, T> {
    Value(&'a T),
    Failed(&'a Error),
    /// Moved out by the last handle.
    Taken,
}

/// The task, then the outcome, in one place. Untagged: the phase says
/// whether the task is live, the `FAILED` flag which outcome member is.
union Slot<T, F> {
    task: ManuallyDrop<F>,
    value: ManuallyDrop<T>,
    failure: ManuallyDrop<Box<Error>>,
}

/// A future's storage for a task of type `F`.
pub(crate) struct TaskCell<T, F> {
    slot: UnsafeCell<Slot<T, F>>,
}

impl<T, F: FnOnce() -> Result<T, Error> + Send> TaskCell<T, F> {
    pub(super) fn new(task: F) -> Self {
        TaskCell {
            slot: UnsafeCell::new(Slot {
                task: ManuallyDrop::new(task),
            }),
        }
    }
}

/// The storage with the task's type erased. Each method states which
/// token its caller must hold; `Inner` calls them only from the token.
pub(crate) trait Storage<T> {
    /// Moves the task out, calls `started`, then runs the task (a panic
    /// becomes its failure).
    ///
    /// # Safety
    ///
    /// The caller holds `Starting`.
    unsafe fn run_task(&self, started: &mut dyn FnMut()) -> Result<T, Error>;

    /// Drops the task unrun.
    ///
    /// # Safety
    ///
    /// The caller's transition moved the future out of Pending and nobody
    /// read the task out yet.
    unsafe fn drop_task(&self);

    /// Moves the task out, writes `outcome` in its place, calls
    /// `published`, then drops the task: it is user code, so it runs after
    /// the waiters were woken.
    ///
    /// # Safety
    ///
    /// The caller holds `Completing` taken from Pending.
    unsafe fn replace_task(&self, outcome: Outcome<T>, published: &mut dyn FnMut());

    /// # Safety
    ///
    /// The caller holds `Completing` taken from Running (the task is gone).
    unsafe fn write_outcome(&self, outcome: Outcome<T>);

    /// The outcome: the failure if `failed`, else the value.
    ///
    /// # Safety
    ///
    /// An Acquire load saw Finished, with `FAILED` as `failed` and without
    /// `TAKEN`, and no `take_outcome` can run while the reference lives.
    unsafe fn outcome(&self, failed: bool) -> Result<&T, &Error>;

    /// Moves the outcome out; the caller marks it `TAKEN`.
    ///
    /// # Safety
    ///
    /// As for `outcome`, and the caller is the last handle (or the drop).
    unsafe fn take_outcome(&self, failed: bool) -> Outcome<T>;
}

/// Writes `outcome` into its union member.
///
/// # Safety
///
/// The caller may write the outcome, and the union holds nothing live.
unsafe fn write_member<T, F>(slot: *mut Slot<T, F>, outcome: Outcome<T>) {
    // SAFETY: forwarded to the caller; assigning a `ManuallyDrop` member
    // drops nothing.
    unsafe {
        match outcome {
            Outcome::Value(v) => (*slot).value = ManuallyDrop::new(v),
            Outcome::Failed(e) => (*slot).failure = ManuallyDrop::new(e),
        }
    }
}

impl<T, F: FnOnce() -> Result<T, Error> + Send> Storage<T> for TaskCell<T, F> {
    unsafe fn run_task(&self, started: &mut dyn FnMut()) -> Result<T, Error> {
        // SAFETY: `Starting` grants the task, which is still there.
        let task = self
            .slot
            .with_mut(|slot| unsafe { ManuallyDrop::take(&mut (*slot).task) });
        started();
        catch_unwind(AssertUnwindSafe(task))
            .unwrap_or_else(|payload| Err(Error::Failed(TaskError::from_panic(payload))))
    }

    unsafe fn drop_task(&self) {
        // SAFETY: forwarded to the caller.
        let task = self
            .slot
            .with_mut(|slot| unsafe { ManuallyDrop::take(&mut (*slot).task) });
        contain_panic(move || drop(task));
    }

    unsafe fn replace_task(&self, outcome: Outcome<T>, published: &mut dyn FnMut()) {
        // SAFETY: `Completing` from Pending grants the task and the
        // outcome's write; the task is moved out before its bytes are
        // written over.
        let task = self.slot.with_mut(|slot| unsafe {
            let task = ManuallyDrop::take(&mut (*slot).task);
            write_member(slot, outcome);
            task
        });
        published();
        contain_panic(move || drop(task));
    }

    unsafe fn write_outcome(&self, outcome: Outcome<T>) {
        // SAFETY: forwarded to the caller; the union holds nothing live.
        self.slot
            .with_mut(|slot| unsafe { write_member(slot, outcome) });
    }

    unsafe fn outcome(&self, failed: bool) -> Result<&T, &Error> {
        // SAFETY: forwarded to the caller: Finished and `failed` say which
        // member is live, and nobody writes it while the reference lives.
        self.slot.with(|slot| unsafe {
            if failed {
                Err(&**(*slot).failure)
            } else {
                Ok(&*(*slot).value)
            }
        })
    }

    unsafe fn take_outcome(&self, failed: bool) -> Outcome<T> {
        // SAFETY: forwarded to the caller; the caller's `TAKEN` keeps the
        // moved-out member from being read or dropped again.
        self.slot.with_mut(|slot| unsafe {
            if failed {
                Outcome::Failed(ManuallyDrop::take(&mut (*slot).failure))
            } else {
                Outcome::Value(ManuallyDrop::take(&mut (*slot).value))
            }
        })
    }
}

pub(super) type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send>;

pub(super) enum Entry<T> {
    /// The waiter and the number of the wait the entry was made for.
    Thread(Arc<ThreadWaiter>, u64),
    Set(Arc<SetWaiter>, usize),
    Async(Arc<AsyncWaiter>),
    Callback(Callback<T>),
}

impl<T> Entry<T> {
    fn is_closed(&self) -> bool {
        match self {
            Entry::Thread(w, number) => w.is_over(*number),
            Entry::Set(w, _) => w.is_closed(),
            Entry::Async(w) => w.is_closed(),
            Entry::Callback(_) => false,
        }
    }
}

/// The entries of one future; the first is stored inline, so the usual
/// single waiter costs one allocation.
pub(super) type EntryList<T> = SmallVec<[Entry<T>; 1]>;

/// The entry list, boxed: one pointer in a future nobody waits on.
type Entries<T> = Option<Box<EntryList<T>>>;

/// A future's shared state, with its storage `S` last so that a pool's
/// future is one allocation: `Inner<T, TaskCell<T, F>>`, seen by handles
/// as `Inner<T>` (the task's type erased).
pub(crate) struct Inner<T, S: ?Sized + Storage<T> = dyn Storage<T>> {
    state: AtomicU8,
    lock: RawLock,
    /// The pool that may run this task inline (SPEC B7; `NO_POOL`: none).
    /// 16 bits, so that it, `state`, `lock` and `handles` share a word.
    pub(super) origin: u16,
    pub(super) handles: AtomicU32,
    entries: UnsafeCell<Entries<T>>,
    storage: S,
}

// SAFETY: the storage is reached only through the tokens that grant it
// (module docs), the entries only under `lock`. The task inside is `Send`
// (`TaskCell` is built only from `Send` tasks); shared readers get `&T`
// after the outcome is published, hence `T: Sync`; the last handle moves
// `T` out on any thread, hence `T: Send`.
unsafe impl<T: Send + Sync, S: ?Sized + Storage<T>> Sync for Inner<T, S> {}
// SAFETY: as above; sending the state sends the task (`Send`) and `T`.
unsafe impl<T: Send, S: ?Sized + Storage<T>> Send for Inner<T, S> {}

impl<T, S: ?Sized + Storage<T>> Drop for Inner<T, S> {
    fn drop(&mut self) {
        self.model_arc_acquire();
        // The phase says which member of the union is live.
        let word = self.state.load(Acquire);
        match Phase::of(word) {
            // SAFETY: nobody left Pending, so the task was never taken;
            // `&mut self` is the only access left.
            Phase::Pending => unsafe { self.storage.drop_task() },
            Phase::Finished if word & TAKEN == 0 => {
                // SAFETY: Finished was seen, not taken, and nobody else is
                // left.
                let outcome = unsafe { self.storage.take_outcome(word & FAILED != 0) };
                contain_panic(move || drop(outcome));
            }
            // Cancelled and started futures gave their task up already;
            // Completing cannot outlive its owner's reference.
            _ => {}
        }
    }
}

impl<T, S: ?Sized + Storage<T>> Inner<T, S> {
    /// See [`Inner::model_arc_release`].
    fn model_arc_acquire(&self) {
        #[cfg(concurrent_futures_loom)]
        self.handles.fetch_add(0, Acquire);
    }
}

impl<T, F: FnOnce() -> Result<T, Error> + Send> Inner<T, TaskCell<T, F>> {
    pub(super) fn new(origin: u16, task: F) -> Self {
        Inner {
            state: AtomicU8::new(Phase::Pending as u8),
            lock: RawLock::new(),
            handles: AtomicU32::new(1),
            origin,
            entries: UnsafeCell::new(None),
            storage: TaskCell::new(task),
        }
    }
}

/// A reference to a pool task as its queue holds it: type-erased, and not
/// counted as a handle.
pub(crate) trait Job: Send + Sync {
    /// Starts and runs the task unless it was cancelled or already started
    /// (B7 inline runs race with the queue). `about_to_finish` runs after
    /// the task, before the outcome is published; pools use it to count
    /// the worker as idle before anyone can react to the result.
    fn run(self: Arc<Self>, about_to_finish: &dyn Fn());
    /// Cancels the task if it has not started (shutdown `cancel_futures`),
    /// leaving the waking of its waiters and its callbacks to the drop of
    /// what it returns (`None`: not cancelled now), so that a pool
    /// cancelling many finishes them all before any callback runs.
    fn cancel_quietly(self: Arc<Self>) -> Option<Box<dyn Any>>;
    /// Fails the task with `error` if it has not started (broken pool),
    /// quietly as [`cancel_quietly`](Self::cancel_quietly).
    fn fail_quietly(self: Arc<Self>, error: Error) -> Option<Box<dyn Any>>;
}

impl<T, F> Job for Inner<T, TaskCell<T, F>>
where
    T: Send + Sync + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    fn run(self: Arc<Self>, about_to_finish: &dyn Fn()) {
        let this: Arc<Inner<T>> = self;
        this.run_task(about_to_finish);
    }

    fn cancel_quietly(self: Arc<Self>) -> Option<Box<dyn Any>> {
        let this: Arc<Inner<T>> = self;
        let wake = this.cancel_quietly();
        this.model_arc_release();
        wake.map(|w| Box::new(w) as Box<dyn Any>)
    }

    fn fail_quietly(self: Arc<Self>, error: Error) -> Option<Box<dyn Any>> {
        let this: Arc<Inner<T>> = self;
        let wake = match this.try_complete(|p| p == Phase::Pending) {
            Ok(completing) => Some(completing.publish_quietly(Err(error))),
            Err(_) => None,
        };
        this.model_arc_release();
        wake.map(|w| Box::new(w) as Box<dyn Any>)
    }
}

/// The right to the task: held by the thread whose compare-and-swap moved
/// the future from Pending to Starting. Consumed by [`run`](Self::run);
/// dropped, it drops the task unrun. Either way the future is Running
/// afterwards.
#[must_use]
pub(super) struct Starting<'a, T> {
    inner: &'a Inner<T>,
    /// `HAS_ENTRIES` as the transition found it; stable while Starting.
    entries: u8,
}

impl<T> Starting<'_, T> {
    /// Runs the task: the future is Running from the moment the task is
    /// out of the storage until the runner completes it.
    pub(super) fn run(self) -> Result<T, Error> {
        let this = ManuallyDrop::new(self);
        let (inner, entries) = (this.inner, this.entries);
        // SAFETY: this token is the `Starting` the method requires.
        unsafe {
            inner
                .storage
                .run_task(&mut || inner.leave_owned(Phase::Running, entries))
        }
    }
}

impl<T> Drop for Starting<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the token grants the task, which nobody read out.
        unsafe { self.inner.storage.drop_task() };
        self.inner.leave_owned(Phase::Running, self.entries);
    }
}

/// The right to write the outcome: held by the thread whose
/// compare-and-swap moved the future to Completing. Consumed by
/// [`publish`](Self::publish); dropped unpublished (an unwinding caller),
/// it publishes a failure, so no waiter is left behind.
#[must_use]
pub(super) struct Completing<'a, T> {
    inner: &'a Arc<Inner<T>>,
    /// Taken from Pending: the task is still in the storage.
    had_task: bool,
    entries: u8,
}

impl<T> Completing<'_, T> {
    /// Writes the outcome and publishes it: Completing -> Finished, then
    /// wakes the waiters and runs the callbacks.
    pub(super) fn publish(self, outcome: Result<T, Error>) {
        let this = ManuallyDrop::new(self);
        this.write_and_finish(Outcome::from_result(outcome), false);
    }

    /// Writes the outcome and publishes it (Completing -> Finished), but
    /// leaves the waiters and callbacks to the returned [`Wake`]: so that
    /// an executor failing many futures at once finishes them all before
    /// any callback runs, and a callback that waits for another of them
    /// finds it done.
    pub(super) fn publish_quietly(self, outcome: Result<T, Error>) -> Wake<T> {
        let this = ManuallyDrop::new(self);
        let entries = this.write_and_finish(Outcome::from_result(outcome), true);
        Wake::new(Arc::clone(this.inner), entries.unwrap_or_default())
    }

    /// Writes `outcome`, moves to Finished and wakes the waiters, or with
    /// `quiet` returns them, to be woken later (`None`: there are none).
    fn write_and_finish(&self, outcome: Outcome<T>, quiet: bool) -> Option<EntryList<T>> {
        let inner = self.inner;
        let entries = self.entries;
        let flag = outcome.flag();
        let mut taken = None;
        let mut finish = || {
            if entries == 0 {
                // Nobody waits (the usual pool task): no list to take, and
                // none to drop.
                inner.leave_owned(Phase::Finished, flag);
                return;
            }
            let finished = inner.finish_owned(entries, flag);
            if quiet {
                taken = Some(finished);
            } else {
                Inner::notify(inner, finished);
            }
        };
        if self.had_task {
            // SAFETY: this token, taken from Pending, is what it requires.
            unsafe { inner.storage.replace_task(outcome, &mut finish) };
        } else {
            // SAFETY: this token, taken from Running, is what it requires.
            unsafe { inner.storage.write_outcome(outcome) };
            finish();
        }
        taken
    }
}

/// The waiters and callbacks of a future that finished quietly
/// ([`Completing::publish_quietly`]): woken, and the callbacks run, when
/// this is dropped (user code: contained as any completion's callbacks).
#[must_use = "dropping it at once wakes the waiters at once"]
pub(crate) struct Wake<T> {
    inner: ManuallyDrop<Arc<Inner<T>>>,
    entries: EntryList<T>,
}

impl<T> Wake<T> {
    fn new(inner: Arc<Inner<T>>, entries: EntryList<T>) -> Self {
        Wake {
            inner: ManuallyDrop::new(inner),
            entries,
        }
    }
}

impl<T> Drop for Wake<T> {
    fn drop(&mut self) {
        Inner::notify(&self.inner, std::mem::take(&mut self.entries));
        // SAFETY: `inner` is taken once, here, and never used again.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        inner.model_arc_release();
        contain_panic(move || drop(inner));
    }
}

impl<T> Drop for Completing<'_, T> {
    fn drop(&mut self) {
        let failure = Error::Failed(TaskError::new("the future's completion was abandoned"));
        self.write_and_finish(Outcome::Failed(Box::new(failure)), false);
    }
}

impl<T> Inner<T> {
    fn word(&self) -> u8 {
        self.state.load(Acquire)
    }

    pub(super) fn phase(&self) -> Phase {
        Phase::of(self.word())
    }

    #[cfg(test)]
    pub(super) fn has_entries(&self) -> bool {
        self.word() & HAS_ENTRIES != 0
    }

    /// Counts one more handle. Like `Arc`, aborts rather than wrap: four
    /// billion handles to one future means a leak, and wrapping would let
    /// `take_outcome` move a value others still read.
    pub(super) fn add_handle(&self) {
        if self.handles.fetch_add(1, Relaxed) == u32::MAX {
            std::process::abort();
        }
    }

    /// `Arc`'s own count orders every access to the state before its
    /// drop, but loom cannot see inside `std::sync::Arc`. Under loom, a
    /// reference that is not a handle releases through `handles` as it
    /// goes (handles do on their own), and the drop acquires from all of
    /// them; a read-modify-write reads the latest value, so it
    /// synchronizes with every release before it. No-ops otherwise.
    pub(super) fn model_arc_release(&self) {
        #[cfg(concurrent_futures_loom)]
        self.handles.fetch_add(0, Release);
    }

    pub(super) fn identity(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// Runs `f` on the entry list, under the lock.
    fn with_entries<R>(&self, f: impl FnOnce(&mut Entries<T>) -> R) -> R {
        struct Unlock<'a>(&'a RawLock);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                // SAFETY: locked just below, on this thread.
                unsafe { self.0.unlock() };
            }
        }
        self.lock.lock();
        let _unlock = Unlock(&self.lock);
        // SAFETY: the lock is held for as long as `f` has the list.
        self.entries.with_mut(|entries| f(unsafe { &mut *entries }))
    }

    /// Takes the list at a done transition made under the lock, counting
    /// the callbacks' handle first: it must exist before the done phase is
    /// visible, so a woken last handle does not move the value out from
    /// under them (`take_outcome`).
    fn take_entries(&self, entries: &mut Entries<T>) -> EntryList<T> {
        let taken = entries.take().map_or_else(EntryList::new, |list| *list);
        if taken.iter().any(|e| matches!(e, Entry::Callback(_))) {
            self.add_handle();
        }
        taken
    }

    /// Pending -> Starting: the right to the task.
    pub(super) fn try_start(&self) -> Result<Starting<'_, T>, Phase> {
        let mut word = self.word();
        loop {
            if Phase::of(word) != Phase::Pending {
                return Err(Phase::of(word));
            }
            let entries = word & HAS_ENTRIES;
            // ORDERING: AcqRel: the winner takes the task from whoever
            // stored it (Acquire) and hands its move on (Release).
            match self.state.compare_exchange_weak(
                word,
                Phase::Starting as u8 | entries,
                AcqRel,
                Acquire,
            ) {
                Ok(_) => {
                    return Ok(Starting {
                        inner: self,
                        entries,
                    });
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// A phase `allowed` accepts (Pending and/or Running) -> Completing:
    /// the right to write the outcome. Waits out a Starting.
    pub(super) fn try_complete(
        self: &Arc<Self>,
        allowed: impl Fn(Phase) -> bool,
    ) -> Result<Completing<'_, T>, Phase> {
        let mut word = self.word();
        let mut spins = 0;
        loop {
            let phase = Phase::of(word);
            if phase == Phase::Starting && allowed(Phase::Running) {
                wait_for_owner(&mut spins);
                word = self.word();
                continue;
            }
            if !allowed(phase) {
                return Err(phase);
            }
            let entries = word & HAS_ENTRIES;
            match self.state.compare_exchange_weak(
                word,
                Phase::Completing as u8 | entries,
                AcqRel,
                Acquire,
            ) {
                Ok(_) => {
                    return Ok(Completing {
                        inner: self,
                        had_task: phase == Phase::Pending,
                        entries,
                    });
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Leaves an owned phase, with `flags` (`HAS_ENTRIES`, `FAILED`):
    /// nobody else changed the byte meanwhile.
    fn leave_owned(&self, to: Phase, flags: u8) {
        // ORDERING: Release publishes what the owner did.
        self.state.store(to as u8 | flags, Release);
    }

    /// Completing -> Finished with the outcome's `flag`, taking the
    /// entries if there are any.
    fn finish_owned(&self, entries: u8, flag: u8) -> EntryList<T> {
        if entries == 0 {
            self.leave_owned(Phase::Finished, flag);
            return EntryList::new();
        }
        self.with_entries(|list| {
            let taken = self.take_entries(list);
            self.leave_owned(Phase::Finished, flag);
            taken
        })
    }

    /// Pending -> Cancelled, taking the entries. The task stays in the
    /// storage for the caller to drop once the waiters are woken.
    fn try_cancel(&self) -> Result<EntryList<T>, Phase> {
        let mut word = self.word();
        loop {
            if Phase::of(word) != Phase::Pending {
                return Err(Phase::of(word));
            }
            if word & HAS_ENTRIES != 0 {
                return self.try_cancel_locked();
            }
            match self
                .state
                .compare_exchange_weak(word, Phase::Cancelled as u8, AcqRel, Acquire)
            {
                Ok(_) => return Ok(EntryList::new()),
                Err(actual) => word = actual,
            }
        }
    }

    /// `try_cancel` when entries exist: the list changes only under the
    /// lock, but lock-free moves (start, complete) may still change the
    /// phase, so the move is a compare-and-swap here too.
    fn try_cancel_locked(&self) -> Result<EntryList<T>, Phase> {
        self.with_entries(|list| {
            let mut word = self.word();
            loop {
                if Phase::of(word) != Phase::Pending {
                    return Err(Phase::of(word));
                }
                match self.state.compare_exchange_weak(
                    word,
                    Phase::Cancelled as u8,
                    AcqRel,
                    Acquire,
                ) {
                    Ok(_) => {
                        // The list was taken after the move, so a
                        // callback handle may briefly lag the phase; a
                        // cancelled future has no value to take.
                        return Ok(self.take_entries(list));
                    }
                    Err(actual) => word = actual,
                }
            }
        })
    }

    /// Cancelled -> CancelledNotified: an executor saw the cancel.
    fn acknowledge_cancel(&self) -> bool {
        self.state
            .compare_exchange(
                Phase::Cancelled as u8,
                Phase::CancelledNotified as u8,
                AcqRel,
                Acquire,
            )
            .is_ok()
    }

    /// Adds an entry unless the future is already done, in which case the
    /// entry comes back.
    pub(super) fn register(&self, entry: Entry<T>) -> Result<(), Entry<T>> {
        let mut spins = 0;
        let mut entry = Some(entry);
        loop {
            let pushed = self.with_entries(|list| {
                let mut word = self.word();
                while word & HAS_ENTRIES == 0 {
                    let phase = Phase::of(word);
                    if phase.is_done() {
                        return Some(false);
                    }
                    if phase.is_owned() {
                        // Its owner leaves it with a store that would
                        // clear the flag: wait for that first.
                        return None;
                    }
                    match self.state.compare_exchange_weak(
                        word,
                        word | HAS_ENTRIES,
                        AcqRel,
                        Acquire,
                    ) {
                        Ok(_) => break,
                        Err(actual) => word = actual,
                    }
                }
                let list = list.get_or_insert_with(Default::default);
                if list.len() == list.capacity() {
                    // Drop waiters that gave up before the list grows, so a
                    // future polled with timeouts forever stays small.
                    list.retain(|e| !e.is_closed());
                }
                // Pushed, not `extend`ed: SmallVec's generic extend costs
                // about 50 instructions for the one entry.
                if let Some(entry) = entry.take() {
                    list.push(entry);
                }
                Some(true)
            });
            match pushed {
                Some(true) => return Ok(()),
                Some(false) => return Err(entry.take().expect("not pushed")),
                None => wait_for_owner(&mut spins),
            }
        }
    }

    /// The published outcome.
    ///
    /// # Safety
    ///
    /// An Acquire load saw Finished, and no `take_outcome` can run while
    /// the returned reference lives.
    pub(super) unsafe fn outcome(&self) -> OutcomeRef<'_, T> {
        // Relaxed: the caller's Acquire load saw Finished, and the flags
        // were stored with it (only `TAKEN` comes later, by the last
        // handle, which the caller's contract rules out).
        let word = self.state.load(Relaxed);
        if word & TAKEN != 0 {
            return OutcomeRef::Taken;
        }
        // SAFETY: forwarded to the caller; `FAILED` came with Finished.
        match unsafe { self.storage.outcome(word & FAILED != 0) } {
            Ok(value) => OutcomeRef::Value(value),
            Err(failure) => OutcomeRef::Failed(failure),
        }
    }

    /// Moves the outcome out, leaving `TAKEN`; `None` if already taken.
    ///
    /// # Safety
    ///
    /// Finished was seen, and the caller is the last handle.
    pub(super) unsafe fn take_outcome(&self) -> Option<Outcome<T>> {
        // Relaxed: as in `outcome`; the last handle is the only writer of
        // `TAKEN`, and the drop acquires through `Arc`'s count.
        let word = self.state.fetch_or(TAKEN, Relaxed);
        if word & TAKEN != 0 {
            return None;
        }
        // SAFETY: forwarded to the caller; `TAKEN` was clear and is now set.
        Some(unsafe { self.storage.take_outcome(word & FAILED != 0) })
    }

    /// Wakes waiters, then runs callbacks in the order they were added.
    pub(super) fn notify(this: &Arc<Self>, entries: EntryList<T>) {
        if entries.is_empty() {
            return;
        }
        let mut callbacks = Vec::new();
        for entry in entries {
            match entry {
                Entry::Thread(w, number) => w.notify(number),
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
            // `take_entries` already counted this handle.
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
        let Ok(starting) = self.try_start() else {
            self.model_arc_release();
            return;
        };
        let context = TaskContext {
            pool: self.origin,
            task: self.identity(),
        };
        let outcome = task_context::run_as(context, || starting.run());
        about_to_finish();
        match self.try_complete(|p| p == Phase::Running) {
            Ok(completing) => completing.publish(outcome),
            // `set_result` on the running future won; as in CPython the
            // executor's outcome is dropped (its `Drop` is user code).
            Err(_) => contain_panic(move || drop(outcome)),
        }
        // The queue's reference may be the last one (nobody kept the
        // future): dropping it drops the value, whose `Drop` is user code.
        self.model_arc_release();
        contain_panic(move || drop(self));
    }

    /// [`cancel`](Self::cancel), but the waiters are woken (and the
    /// callbacks run) when the returned [`Wake`] drops; the task is dropped
    /// now. `None` when it was not pending.
    pub(super) fn cancel_quietly(self: &Arc<Self>) -> Option<Wake<T>> {
        let entries = self.try_cancel().ok()?;
        // SAFETY: our transition moved the future out of Pending.
        unsafe { self.storage.drop_task() };
        Some(Wake::new(Arc::clone(self), entries))
    }

    /// Cancels a pending future: wakes its waiters, then drops its task.
    pub(super) fn cancel(self: &Arc<Self>) -> bool {
        match self.try_cancel() {
            Ok(entries) => {
                Inner::notify(self, entries);
                // SAFETY: our transition moved the future out of Pending,
                // and the task is user code: dropped after the waiters woke.
                unsafe { self.storage.drop_task() };
                true
            }
            Err(phase) => phase.is_cancelled(),
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
        match inner.try_start() {
            // Dropping the token drops the task unrun (an executor driving
            // the future by hand runs its own work) and leaves it Running.
            Ok(starting) => {
                drop(starting);
                return Ok(true);
            }
            Err(Phase::Cancelled) => {
                if inner.acknowledge_cancel() {
                    return Ok(false);
                }
                // Someone else acknowledged it first: report that.
            }
            Err(phase) => return Err(InvalidStateError::new(phase.state(), ())),
        }
    }
}

pub(super) fn complete<T, V>(
    inner: &Arc<Inner<T>>,
    given: V,
    outcome: impl FnOnce(V) -> Result<T, Error>,
) -> Result<(), InvalidStateError<V>> {
    match inner.try_complete(|p| matches!(p, Phase::Pending | Phase::Running)) {
        Ok(completing) => {
            completing.publish(outcome(given));
            Ok(())
        }
        Err(phase) => Err(InvalidStateError::new(phase.state(), given)),
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

    /// Completes with `outcome`, leaving the waking of its waiters and its
    /// callbacks to the returned [`Wake`]; `None` when already done.
    pub(crate) fn complete_quietly(&self, outcome: Result<T, Error>) -> Option<Wake<T>> {
        match self
            .inner
            .try_complete(|p| matches!(p, Phase::Pending | Phase::Running))
        {
            Ok(completing) => Some(completing.publish_quietly(outcome)),
            Err(_) => {
                contain_panic(move || drop(outcome));
                None
            }
        }
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
        self.inner.cancel()
    }

    /// Cancels it if pending, leaving the waking to the returned [`Wake`].
    pub(crate) fn cancel_quietly(&self) -> Option<Wake<T>> {
        self.inner.cancel_quietly()
    }

    pub(crate) fn id(&self) -> usize {
        self.inner.identity()
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        // SAFETY: `inner` is taken once, here, and never used again.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        inner.model_arc_release();
        contain_panic(move || drop(inner));
    }
}
