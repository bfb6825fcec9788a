//! [`Future<T>`]: a handle to one call's outcome (SPEC F1-F10): the
//! public API. The state machine behind it, its transitions and who may
//! touch what, is in `state.rs`.

mod state;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

use crate::error::{Error, InvalidStateError, TaskError};
use crate::pool_id::{NO_POOL, PoolId};
use crate::task_context;
use crate::waiter::{AsyncWaiter, SetWaiter, ThreadWaiter};

pub use self::state::State;
use self::state::{
    Entry, Inner, Outcome, OutcomeRef, Phase, complete, run_callback, set_running_or_notify_cancel,
};
pub(crate) use self::state::{Job, Promise, contain_panic as drop_user_value};

/// A handle to the outcome of one call: a value, a failure, or a
/// cancellation (Python `concurrent.futures.Future`).
///
/// Cloning is cheap and every clone sees the same outcome. Futures compare
/// and hash by identity, so they can key a map, as in the seed's
/// `future_to_url` dictionary. (Clippy's `mutable_key_type` lint cannot see
/// that the hash ignores the future's state; add
/// `ignore-interior-mutability = ["concurrent_futures::Future"]` to your
/// `clippy.toml`, as this repository does.)
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::new(1).unwrap();
/// let future = pool.submit(|| 323u64.pow(3)).unwrap();
/// assert_eq!(future.result().copied().unwrap(), 33_698_267);
/// assert!(future.done());
/// ```
pub struct Future<T> {
    inner: Arc<Inner<T>>,
}

/// Converts a timeout to a deadline; one too far to represent is none.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

impl<T> Future<T> {
    /// A stand-alone pending future, for tests and custom executors (SPEC
    /// F9). Complete it with [`set_result`](Self::set_result) or
    /// [`set_exception`](Self::set_exception). `T: 'static` because every
    /// future's storage is type-erased behind one trait object, as a pool
    /// task's (which holds its closure) must be.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::Future;
    ///
    /// let f = Future::new();
    /// assert!(!f.done());
    /// f.set_result("ready").unwrap();
    /// assert_eq!(*f.result().unwrap(), "ready");
    /// ```
    pub fn new() -> Self
    where
        T: 'static,
    {
        // A future without a task carries one that is never run: it only
        // fills the storage's Pending member, and costs nothing (zero-sized).
        Future::adopt(Arc::new(Inner::new(NO_POOL, || Err(Error::Cancelled))))
    }

    /// A pending future that carries `task`, runnable by a worker of `pool`,
    /// and the queue's reference to it. One allocation holds both the
    /// future's state and the task.
    pub(crate) fn with_task<F>(pool: u16, task: F) -> (Self, Arc<dyn Job>)
    where
        F: FnOnce() -> Result<T, Error> + Send + 'static,
        T: Send + Sync + 'static,
    {
        let inner = Arc::new(Inner::new(pool, task));
        let job: Arc<dyn Job> = inner.clone();
        (Future::adopt(inner), job)
    }

    /// Wraps a reference already counted in `handles`.
    fn adopt(inner: Arc<Inner<T>>) -> Self {
        Future { inner }
    }

    /// The current state (SPEC F1). Never blocks.
    pub fn state(&self) -> State {
        self.inner.phase().state()
    }

    /// Tries to cancel the call (SPEC F2).
    ///
    /// Returns false if it is running or finished, true if it is (now or
    /// already) cancelled. A successful cancel wakes every waiter at once
    /// (including `wait` and `as_completed`) and runs the callbacks.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::Future;
    ///
    /// let f: Future<()> = Future::new();
    /// assert!(f.cancel());
    /// assert!(f.cancel());
    /// assert!(f.cancelled() && f.done());
    /// ```
    pub fn cancel(&self) -> bool {
        Self::cancel_inner(&self.inner)
    }

    fn cancel_inner(inner: &Arc<Inner<T>>) -> bool {
        inner.cancel()
    }

    /// True if the call was cancelled (SPEC F3). Never blocks.
    pub fn cancelled(&self) -> bool {
        self.inner.phase().is_cancelled()
    }

    /// True if the call is running and cannot be cancelled (SPEC F3).
    pub fn running(&self) -> bool {
        self.state() == State::Running
    }

    /// True if the call finished or was cancelled (SPEC F3). Never blocks.
    pub fn done(&self) -> bool {
        self.inner.phase().is_done()
    }

    /// Waits until done or `deadline`.
    ///
    /// A worker that waits on a pending future of its own pool runs it
    /// inline; a running task that would wait forever on a future that
    /// waits on it gets [`Error::Deadlock`] (SPEC B7).
    fn wait_done(&self, deadline: Option<Instant>) -> Result<(), Error> {
        if self.done() {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout);
        }
        if self.run_inline_if_own_pool() && self.done() {
            return Ok(());
        }
        let inner = &self.inner;
        let me = task_context::current_task();
        // Timed waits are checked too: a cycle never resolves, and a
        // timed wait in it would only sit out its timeout (SPEC B7).
        let _edge = match me {
            Some(me) => Some(task_context::enter_wait(me.task, inner.identity())?),
            None => None,
        };
        let waiter = ThreadWaiter::acquire();
        let entry = Entry::Thread(Arc::clone(&waiter), waiter.wait_number());
        if inner.register(entry).is_err() {
            ThreadWaiter::release(waiter);
            return Ok(());
        }
        // Notified means done: the future notifies only after its final
        // transition, and takes the entry out of its list as it does.
        // Spinning may pay only once the task runs: a pending one waits
        // for a worker, which may itself have to be woken first, or for
        // others ahead of it; spinning then only holds a CPU that worker
        // may need (a parked pool's round trip: 1.3x slower with it).
        let soon = inner.phase() == Phase::Running;
        let notified = waiter.park_until(deadline, soon);
        // Also what gives a timed-out wait up: its entry, still on the
        // future, is dropped there when the list would next grow, or at
        // the finish (`Entry::is_closed`).
        ThreadWaiter::release(waiter);
        if notified || self.done() {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    /// SPEC B7: on a worker of the pool this future's task belongs to, runs
    /// the task here if nobody has started it. True if it ran it.
    pub(crate) fn run_inline_if_own_pool(&self) -> bool {
        let inner = &self.inner;
        if inner.phase() != Phase::Pending
            || !PoolId::runs_inline(task_context::worker_pool(), inner.origin)
        {
            return false;
        }
        // While the inline task runs, this task is waiting on it: the edge
        // lets a wait on this task from inside it be seen as the cycle it
        // is, instead of parking the thread on itself. A pending task waits
        // on nothing, so this edge closes no cycle.
        let _edge = task_context::current_task()
            .and_then(|me| task_context::enter_wait(me.task, inner.identity()).ok());
        let ran = std::cell::Cell::new(false);
        // Claim the task; the queue entry will find it started. A chain of
        // such runs nests on this thread's stack, which grows as needed.
        task_context::on_enough_stack(|| Arc::clone(inner).run_task(&|| ran.set(true)));
        ran.get()
    }

    fn outcome(&self) -> Result<&T, Error> {
        if self.inner.phase() == Phase::Finished {
            // SAFETY: Finished was seen with Acquire, and `self` is a
            // handle, so no `take_outcome` runs while `&self` lives.
            match unsafe { self.inner.outcome() } {
                OutcomeRef::Value(v) => Ok(v),
                OutcomeRef::Failed(e) => Err(e.clone()),
                OutcomeRef::Taken => Err(Error::Cancelled),
            }
        } else {
            Err(Error::Cancelled)
        }
    }

    /// Waits for the call and returns its value (SPEC F4).
    ///
    /// Callable any number of times from any number of threads; the value
    /// stays in the future. Everything the task did happens-before this
    /// returns.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] if cancelled, the task's failure
    /// ([`Error::Failed`], [`Error::Broken`]), or [`Error::Deadlock`] when
    /// called from a task that the awaited future waits on.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(1).unwrap();
    /// let f = pool.submit(|| vec![1, 2, 3]).unwrap();
    /// assert_eq!(f.result().unwrap().len(), 3);
    /// assert_eq!(f.result().unwrap().len(), 3);
    /// ```
    pub fn result(&self) -> Result<&T, Error> {
        self.result_deadline_opt(None)
    }

    /// [`result`](Self::result) waiting at most `timeout`; zero polls.
    ///
    /// # Errors
    ///
    /// As `result`, plus [`Error::Timeout`] when not done in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Error, Future};
    /// use std::time::Duration;
    ///
    /// let f: Future<u8> = Future::new();
    /// assert!(matches!(f.result_timeout(Duration::from_millis(1)), Err(Error::Timeout)));
    /// ```
    pub fn result_timeout(&self, timeout: Duration) -> Result<&T, Error> {
        self.result_deadline_opt(deadline_after(timeout))
    }

    /// [`result`](Self::result) waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As `result_timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::Future;
    /// use std::time::Instant;
    ///
    /// let f = Future::new();
    /// f.set_result(5).unwrap();
    /// assert_eq!(*f.result_deadline(Instant::now()).unwrap(), 5);
    /// ```
    pub fn result_deadline(&self, deadline: Instant) -> Result<&T, Error> {
        self.result_deadline_opt(Some(deadline))
    }

    fn result_deadline_opt(&self, deadline: Option<Instant>) -> Result<&T, Error> {
        self.wait_done(deadline)?;
        self.outcome()
    }

    /// Waits for the call and returns its failure, or `None` when it
    /// finished with a value (SPEC F5).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] if cancelled, [`Error::Deadlock`] as for
    /// `result`.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Future, TaskError};
    ///
    /// let f: Future<()> = Future::new();
    /// f.set_exception(TaskError::new("disk full")).unwrap();
    /// assert_eq!(f.exception().unwrap().unwrap().to_string(), "the task failed: disk full");
    /// ```
    pub fn exception(&self) -> Result<Option<Error>, Error> {
        self.exception_deadline_opt(None)
    }

    /// [`exception`](Self::exception) waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As `exception`, plus [`Error::Timeout`] when not done in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Error, Future};
    /// use std::time::Duration;
    ///
    /// let f: Future<()> = Future::new();
    /// assert!(matches!(f.exception_timeout(Duration::ZERO), Err(Error::Timeout)));
    /// ```
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<Error>, Error> {
        self.exception_deadline_opt(deadline_after(timeout))
    }

    /// [`exception`](Self::exception) waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As `exception_timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::Future;
    /// use std::time::Instant;
    ///
    /// let f = Future::new();
    /// f.set_result(()).unwrap();
    /// assert!(f.exception_deadline(Instant::now()).unwrap().is_none());
    /// ```
    pub fn exception_deadline(&self, deadline: Instant) -> Result<Option<Error>, Error> {
        self.exception_deadline_opt(Some(deadline))
    }

    fn exception_deadline_opt(&self, deadline: Option<Instant>) -> Result<Option<Error>, Error> {
        self.wait_done(deadline)?;
        match self.outcome() {
            Ok(_) => Ok(None),
            Err(Error::Cancelled) => Err(Error::Cancelled),
            Err(e) => Ok(Some(e)),
        }
    }

    /// True when the future finished with a failure (not a cancel).
    pub(crate) fn failed(&self) -> bool {
        self.inner.phase() == Phase::Finished && self.outcome().is_err()
    }

    /// Waits for the call and returns its value by value: moved out when
    /// this is the last handle, cloned otherwise.
    ///
    /// # Errors
    ///
    /// As [`result`](Self::result).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(1).unwrap();
    /// let f = pool.submit(|| String::from("owned")).unwrap();
    /// let s: String = f.into_result().unwrap();
    /// assert_eq!(s, "owned");
    /// ```
    pub fn into_result(self) -> Result<T, Error>
    where
        T: Clone,
    {
        self.wait_done(None)?;
        match self.take_outcome() {
            Ok(outcome) => outcome,
            Err(shared) => shared.outcome().cloned(),
        }
    }

    /// Waits for the call, then moves its outcome out if this is the last
    /// handle; otherwise gives the handle back. Unlike
    /// [`into_result`](Self::into_result) it needs no `T: Clone`.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::Future;
    ///
    /// #[derive(Debug)]
    /// struct NotClone(u8);
    /// let f = Future::new();
    /// f.set_result(NotClone(1)).unwrap();
    /// let other = f.clone();
    /// let f = f.try_into_result().unwrap_err(); // `other` still shares it
    /// drop(other);
    /// assert_eq!(f.try_into_result().ok().unwrap().unwrap().0, 1);
    /// ```
    ///
    /// # Errors
    ///
    /// The handle back, when other handles exist.
    pub fn try_into_result(self) -> Result<Result<T, Error>, Self> {
        if let Err(e) = self.wait_done(None) {
            return Ok(Err(e));
        }
        self.take_outcome()
    }

    /// Moves the outcome out of a done future if this is the last handle.
    pub(crate) fn take_outcome(self) -> Result<Result<T, Error>, Self> {
        if self.inner.phase() != Phase::Finished {
            return Ok(Err(Error::Cancelled));
        }
        // ORDERING: Acquire pairs with the Release decrement in `drop`, so
        // every other handle's reads of the slot happen-before the move.
        if self.inner.handles.load(Acquire) != 1 {
            return Err(self);
        }
        // SAFETY: Finished is published and no other handle exists, and
        // none can appear: handles are made only from handles, and the
        // done transition counts its callbacks' handle before publishing.
        // Queue references never read the storage.
        Ok(
            unsafe { self.inner.take_outcome() }
                .map_or(Err(Error::Cancelled), Outcome::into_result),
        )
    }

    /// Attaches `callback`, called with the future when it finishes or is
    /// cancelled (SPEC F6).
    ///
    /// Callbacks run in the thread that completes or cancels the future, in
    /// the order added; if the future is already done, at once in this
    /// thread. A callback that panics is logged (`tracing`) and ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::Future;
    /// use std::sync::mpsc;
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let f = Future::new();
    /// f.add_done_callback(move |f| tx.send(*f.result().unwrap()).unwrap());
    /// f.set_result(9).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 9);
    /// ```
    pub fn add_done_callback<F>(&self, callback: F)
    where
        F: FnOnce(&Future<T>) + Send + 'static,
    {
        if let Err(Entry::Callback(cb)) = self.inner.register(Entry::Callback(Box::new(callback))) {
            run_callback(cb, self);
        }
    }

    /// Marks the future running, or acknowledges its cancellation (SPEC F7).
    ///
    /// For executors and tests. Returns `Ok(true)` when it moved from
    /// pending to running, `Ok(false)` when it was cancelled (waiters were
    /// already woken by the cancel itself).
    ///
    /// # Errors
    ///
    /// [`InvalidStateError`] in any other state, including a second call.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::Future;
    ///
    /// let f: Future<()> = Future::new();
    /// assert_eq!(f.set_running_or_notify_cancel().unwrap(), true);
    /// assert!(f.running());
    /// assert!(f.set_running_or_notify_cancel().is_err());
    /// ```
    pub fn set_running_or_notify_cancel(&self) -> Result<bool, InvalidStateError> {
        set_running_or_notify_cancel(&self.inner)
    }

    /// Completes the future with `value` and wakes everything waiting
    /// (SPEC F8). For executors and tests.
    ///
    /// # Errors
    ///
    /// [`InvalidStateError`] carrying `value` back when already done.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::Future;
    ///
    /// let f = Future::new();
    /// f.set_result(1).unwrap();
    /// assert!(f.set_result(2).is_err());
    /// assert_eq!(*f.result().unwrap(), 1);
    /// ```
    pub fn set_result(&self, value: T) -> Result<(), InvalidStateError<T>> {
        self.complete(value, Ok)
    }

    /// Completes the future with a failure (SPEC F8). For executors and
    /// tests.
    ///
    /// # Errors
    ///
    /// [`InvalidStateError`] carrying `error` back when already done.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Error, Future, TaskError};
    ///
    /// let f: Future<()> = Future::new();
    /// f.set_exception(TaskError::new("no route to host")).unwrap();
    /// assert!(matches!(f.result(), Err(Error::Failed(_))));
    /// ```
    pub fn set_exception(&self, error: TaskError) -> Result<(), InvalidStateError<TaskError>> {
        self.complete(error, |e| Err(Error::Failed(e)))
    }

    fn complete<V>(
        &self,
        given: V,
        outcome: impl FnOnce(V) -> Result<T, Error>,
    ) -> Result<(), InvalidStateError<V>> {
        complete(&self.inner, given, outcome)
    }

    /// Completes the future with an executor's failure (broken, shut down).
    pub(crate) fn complete_failed(&self, error: Error) -> Result<(), InvalidStateError<Error>> {
        self.complete(error, Err)
    }

    /// Registers a `wait`/`as_completed` waiter; false if already done.
    pub(crate) fn register_set(&self, waiter: &Arc<SetWaiter>, index: usize) -> bool {
        self.inner
            .register(Entry::Set(Arc::clone(waiter), index))
            .is_ok()
    }

    /// Registers an async waiter; false if already done.
    pub(crate) fn register_async(&self, waiter: &Arc<AsyncWaiter>) -> bool {
        self.inner
            .register(Entry::Async(Arc::clone(waiter)))
            .is_ok()
    }

    /// The same-pool-inline/deadlock-aware blocking wait, for `wait`-like
    /// helpers inside the crate.
    pub(crate) fn block_until_done(&self, deadline: Option<Instant>) -> Result<(), Error> {
        self.wait_done(deadline)
    }

    /// Identity, for deduplication: the shared state's address, read from
    /// the handle without touching the state. Two live futures' identities
    /// are at least [`MIN_IDENTITY_GAP`] apart.
    pub(crate) fn id(&self) -> usize {
        self.inner.identity()
    }
}

/// The least distance between two live futures' identities: each is the
/// address of a distinct allocation holding `Arc`'s two counts and an
/// `Inner` (the state word, the entry list's pointer and at least a
/// pointer's worth of storage), so a deduplication may map identities to
/// slots of this size without two futures sharing one.
pub(crate) const MIN_IDENTITY_GAP: usize = 32;

const _: () = assert!(
    2 * size_of::<usize>()
        + size_of::<state::Inner<(), state::TaskCell<(), fn() -> Result<(), Error>>>>()
        >= MIN_IDENTITY_GAP
);

impl<T> Future<T> {
    /// The completing side of this future.
    pub(crate) fn promise(&self) -> Promise<T> {
        Promise::new(Arc::clone(&self.inner))
    }
}

impl<T: 'static> Default for Future<T> {
    fn default() -> Self {
        Future::new()
    }
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        self.inner.add_handle();
        Future {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Drop for Future<T> {
    fn drop(&mut self) {
        // ORDERING: Release pairs with the Acquire in `take_outcome`.
        self.inner.handles.fetch_sub(1, Release);
    }
}

impl<T> PartialEq for Future<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<T> Eq for Future<T> {}

impl<T> Hash for Future<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Future({:#x}, {:?})", self.id(), self.state())
    }
}

/// Unit tests of the unsafe slot protocol; they also run under Miri
/// (`cargo +nightly miri test --lib miri_`).
#[cfg(all(test, not(concurrent_futures_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::mpsc;

    #[test]
    fn miri_value_is_shared_then_moved_by_the_last_handle() {
        // SPEC F4: many readers, then the last handle owns the value.
        let f = Future::new();
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || f.result().map(String::len))
            })
            .collect();
        f.set_result(String::from("shared")).unwrap();
        for r in readers {
            assert_eq!(r.join().unwrap().unwrap(), 6);
        }
        match f.take_outcome() {
            Ok(Ok(s)) => assert_eq!(s, "shared"),
            other => panic!("the last handle must move the value: {other:?}"),
        }
    }

    #[test]
    fn miri_a_shared_future_is_not_moved_out() {
        let f = Future::new();
        f.set_result(vec![1u8]).unwrap();
        let other = f.clone();
        let f = f.take_outcome().unwrap_err();
        assert_eq!(*other.result().unwrap(), [1]);
        assert_eq!(f.into_result().unwrap(), [1]);
    }

    #[test]
    fn miri_task_runs_once_and_cancel_drops_it() {
        // SPEC F1, F2: a task is either run or dropped unrun, never both.
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&ran);
        let (f, job) = Future::<u32>::with_task(1, move || {
            counted.fetch_add(1, Relaxed);
            Ok(3)
        });
        let (g, g_job) = Future::<u32>::with_task(1, || Ok(4));
        assert!(g.cancel());
        let runner = std::thread::spawn(move || job.run(&|| {}));
        runner.join().unwrap();
        g_job.run(&|| {});
        assert_eq!(*f.result().unwrap(), 3);
        assert_eq!(ran.load(Relaxed), 1);
        assert!(matches!(g.result(), Err(Error::Cancelled)));
    }

    #[test]
    fn miri_callbacks_see_the_value_while_the_last_handle_takes_it() {
        let (tx, rx) = mpsc::channel();
        let f = Future::new();
        f.add_done_callback(move |f| tx.send(f.result().cloned()).unwrap());
        let completer = {
            let f = f.clone();
            std::thread::spawn(move || f.set_result(String::from("v")).unwrap())
        };
        assert_eq!(f.into_result().unwrap(), "v");
        completer.join().unwrap();
        assert_eq!(rx.recv().unwrap().unwrap(), "v");
    }

    #[test]
    fn miri_set_result_replaces_an_unstarted_task() {
        // SPEC F8 on a pool future that never started: the task is dropped.
        let (f, job) = Future::<u8>::with_task(1, || Ok(1));
        f.set_result(2).unwrap();
        job.run(&|| {});
        assert_eq!(*f.result().unwrap(), 2);
    }

    #[test]
    fn miri_a_quiet_completion_is_done_at_once_and_wakes_when_its_wake_drops() {
        // Both storages: an unstarted task replaced, and a plain future.
        let (tasked, job) = Future::<String>::with_task(1, || Ok(String::from("ran")));
        let plain = Future::<String>::new();
        let (tx, rx) = mpsc::channel();
        for f in [&tasked, &plain] {
            let tx = tx.clone();
            f.add_done_callback(move |f| tx.send(f.done()).unwrap());
        }
        let waiter = {
            let plain = plain.clone();
            std::thread::spawn(move || plain.result().map(|v| v.len()))
        };
        let wakes: Vec<_> = [&tasked, &plain]
            .map(|f| f.promise().complete_quietly(Ok(String::from("quiet"))))
            .into_iter()
            .map(|w| w.expect("not done before"))
            .collect();
        assert!(tasked.done() && plain.done());
        assert!(rx.try_recv().is_err(), "no callback before the wakes drop");
        assert!(
            plain
                .promise()
                .complete_quietly(Ok(String::new()))
                .is_none()
        );
        drop(wakes);
        assert_eq!((rx.recv().unwrap(), rx.recv().unwrap()), (true, true));
        assert_eq!(waiter.join().unwrap().unwrap(), 5);
        job.run(&|| {});
        assert_eq!(*tasked.result().unwrap(), "quiet");
    }

    /// Counts its drops: a value whose storage must be dropped once.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn miri_a_value_and_a_failure_share_the_storage_and_each_drops_once() {
        // The storage has no tag of its own: the state byte says which
        // member is live, and whether the last handle moved it out.
        let drops = Arc::new(AtomicUsize::new(0));
        let failed = Future::<Counted>::new();
        failed.set_exception(TaskError::new("no")).unwrap();
        let shared = failed.clone();
        assert!(matches!(shared.result(), Err(Error::Failed(e)) if e.to_string().contains("no")));
        drop(shared);
        assert!(matches!(failed.take_outcome(), Ok(Err(Error::Failed(_)))));

        let kept = Future::new();
        kept.set_result(Counted(Arc::clone(&drops))).unwrap();
        let other = kept.clone();
        drop(kept);
        assert_eq!(drops.load(Relaxed), 0);
        drop(other);
        assert_eq!(drops.load(Relaxed), 1, "dropped with the last reference");

        let taken = Future::new();
        taken.set_result(Counted(Arc::clone(&drops))).unwrap();
        let Ok(Ok(value)) = taken.take_outcome() else {
            panic!("the last handle moves the value out");
        };
        assert_eq!(drops.load(Relaxed), 1, "moved out, not dropped");
        drop(value);
        assert_eq!(drops.load(Relaxed), 2);

        // A task's panic is written over the task's own bytes.
        let (panicked, job) = Future::<Counted>::with_task(1, || panic!("boom"));
        job.run(&|| {});
        assert!(matches!(panicked.result(), Err(Error::Failed(_))));
        let (ran, job) = Future::with_task(1, {
            let drops = Arc::clone(&drops);
            move || Ok(Counted(drops))
        });
        job.run(&|| {});
        assert!(ran.done());
        drop(ran);
        assert_eq!(drops.load(Relaxed), 3);
    }

    #[test]
    fn a_pool_future_of_a_word_sized_task_and_value_is_one_40_byte_allocation() {
        // Issue 10, row 6b: `Arc`'s two counts and the state; 40 bytes is
        // glibc's 48-byte chunk, where 48 or 56 would take a 64-byte one.
        fn allocation<T, F: FnOnce() -> Result<T, Error> + Send>(_: &F) -> usize {
            2 * size_of::<usize>() + size_of::<Inner<T, state::TaskCell<T, F>>>()
        }
        let captured = 7u64;
        let task = move || Ok(captured * 2);
        assert_eq!(allocation(&task), 40);
        assert_eq!(allocation(&|| Ok(0u64)), 40);
    }

    #[test]
    fn state_byte_keeps_the_entries_flag_out_of_done_states() {
        let f: Future<()> = Future::new();
        let waiter = Arc::new(SetWaiter::new());
        assert!(f.register_set(&waiter, 0));
        assert!(f.inner.has_entries());
        f.set_result(()).unwrap();
        assert_eq!(f.inner.phase(), Phase::Finished);
        assert!(!f.inner.has_entries());
        assert!(!f.register_set(&waiter, 0));
    }
}

/// A pool task's future and its queue reference, for the model-checked
/// tests of the task transitions (`tests/loom.rs`); loom builds only.
#[cfg(concurrent_futures_loom)]
#[doc(hidden)]
pub mod loom_hooks {
    use super::{Future, Job};
    use std::sync::Arc;

    /// What a pool's queue holds for one task.
    pub struct QueuedTask(Arc<dyn Job>);

    impl QueuedTask {
        /// As a worker does: runs the task unless it was claimed.
        pub fn run(self) {
            self.0.run(&|| {});
        }
    }

    /// A thread's waiter, as `result()` uses it, for the model of its
    /// numbered waits.
    pub struct Waiter(Arc<crate::waiter::ThreadWaiter>);

    impl Waiter {
        /// A waiter for the calling thread.
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            Waiter(Arc::new(crate::waiter::ThreadWaiter::for_current_thread()))
        }

        /// Another reference, as an entry on a future holds one.
        pub fn entry(&self) -> Self {
            Waiter(Arc::clone(&self.0))
        }

        /// The number of the wait in progress.
        pub fn wait_number(&self) -> u64 {
            self.0.wait_number()
        }

        /// Notifies wait `number`, as a completing future does.
        pub fn notify(&self, number: u64) {
            self.0.notify(number)
        }

        /// Ends the wait in progress, as a timed-out `result()` does.
        pub fn end_wait(&self) {
            self.0.end_wait()
        }

        /// Parks until the wait in progress is notified.
        pub fn park(&self) -> bool {
            self.0.park_until(None, false)
        }
    }

    /// A future carrying `task`, as a pool makes one, and its queue entry.
    pub fn task_future<T, F>(task: F) -> (Future<T>, QueuedTask)
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (future, job) = Future::with_task(1, move || Ok(task()));
        (future, QueuedTask(job))
    }
}
