//! [`ThreadPoolExecutor`] (SPEC T1-T4, E1-E6).
//!
//! One FIFO queue (a crossbeam channel) feeds the workers. Each queue
//! entry is the future's own shared state, so whoever moves a future from
//! PENDING to RUNNING runs it: a worker popping it, or a worker of the same
//! pool that blocks on it (SPEC B7), or nobody once it was cancelled.
//!
//! ```text
//!  submit ──> [control lock: shut down? broken? spawn a worker?]
//!         ──> queue ──> worker: try_start ──> task ──> publish ──> waiters
//!              │  cancel() / shutdown(cancel_futures) wins here
//!              └─ a worker blocked on it may claim it inline (B7)
//! ```
//!
//! Workers start lazily: a submit claims an idle worker's token or, finding
//! none, starts a worker, up to `max_workers` (SPEC T4). A worker offers
//! its token *before* publishing its result, so a caller that saw the
//! result and submits again finds it idle and reuses it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::at_exit::{self, FinishAtExit};
use crate::error::{
    BrokenExecutor, BrokenKind, BuildError, Error, SubmitError, TaskError, panic_message,
};
use crate::executor::{ClosureExecutor, Executor, FnExecutor, Shutdown};
use crate::future::{Future, Job, drop_user_value};
use crate::lifecycle::Lifecycle;
use crate::map::{Map, MapOptions};
use crate::pool_id::PoolId;
use crate::task_context;

/// A task the pool accepted: its future and, when asked for, the queue's
/// reference to it (a scope runs its own tasks inline from it).
pub(crate) struct Queued<T> {
    pub(crate) future: Future<T>,
    pub(crate) job: Option<Arc<dyn Job>>,
}

/// Numbers pools for their default thread names, as CPython does.
static POOL_COUNTER: AtomicUsize = AtomicUsize::new(0);

type Initializer = Arc<dyn Fn() + Send + Sync>;

/// A pool of threads that runs closures and returns [`Future`]s (Python's
/// `ThreadPoolExecutor`).
///
/// Dropping the pool is `shutdown(wait = true)`: it waits for every
/// submitted task, like leaving a Python `with` block (SPEC E4). A pool
/// that is never dropped (in a `static`, say) still finishes its accepted
/// work before the program exits (see [`ThreadPoolBuilder::join_at_exit`]).
///
/// A task's panic fails its future, not the worker; in a build with
/// `panic = "abort"` it aborts the program, as any panic there does.
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::new(1).unwrap();
/// let future = pool.submit(|| 323u128.pow(12)).unwrap();
/// println!("{}", future.result().unwrap());
/// ```
pub struct ThreadPoolExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    /// What its futures and workers know it by (SPEC B7).
    id: PoolId,
    max_workers: usize,
    name_prefix: String,
    initializer: Option<Initializer>,
    jobs: Receiver<Arc<dyn Job>>,
    control: Mutex<Control>,
    /// Tokens of idle workers: a worker offers one as it finishes a task
    /// (it is about to wait for a job); a submit claims one instead of
    /// starting a thread (CPython's idle semaphore).
    idle: AtomicUsize,
    /// Workers started; only written under `control`.
    spawned: AtomicUsize,
    /// Shut down, broken, and the workers to wait for.
    life: Lifecycle,
}

struct Control {
    /// `None` once shut down: dropping the only sender lets the workers
    /// drain the queue and exit.
    sender: Option<Sender<Arc<dyn Job>>>,
    threads: Vec<JoinHandle<()>>,
}

/// Configures a [`ThreadPoolExecutor`] (Python's keyword arguments).
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::builder()
///     .max_workers(3)
///     .thread_name_prefix("loader")
///     .build()
///     .unwrap();
/// let name = pool.submit(|| std::thread::current().name().unwrap().to_owned()).unwrap();
/// assert_eq!(name.result().unwrap(), "loader_0");
/// ```
#[derive(Default)]
pub struct ThreadPoolBuilder {
    max_workers: Option<usize>,
    thread_name_prefix: Option<String>,
    initializer: Option<Initializer>,
    no_join_at_exit: bool,
}

impl ThreadPoolBuilder {
    /// At most this many worker threads; default `min(32, cpus + 4)`.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Workers are named `{prefix}_{n}` (SPEC T2); default
    /// `ThreadPoolExecutor-{pool number}`.
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// Runs at the start of every worker, with whatever it captured (Python
    /// `initargs`). If it panics the pool breaks (SPEC T3): pending and
    /// later work fails with [`BrokenKind::ThreadPool`].
    pub fn initializer(mut self, initializer: impl Fn() + Send + Sync + 'static) -> Self {
        self.initializer = Some(Arc::new(initializer));
        self
    }

    /// Whether a normal exit of the program (returning from `main`, or
    /// `std::process::exit`) first waits for the work this pool accepted
    /// (SPEC E3), as CPython's exit hook joins its workers; on by default.
    /// It matters only for a pool that is never dropped (one in a
    /// `static`, say), since dropping a pool waits anyway. Off, work still
    /// queued or running at exit is lost.
    pub fn join_at_exit(mut self, on: bool) -> Self {
        self.no_join_at_exit = !on;
        self
    }

    /// Creates the pool. No thread starts until work is submitted.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`] when `max_workers` is 0.
    pub fn build(self) -> Result<ThreadPoolExecutor, BuildError> {
        let max_workers = match self.max_workers {
            Some(0) => return Err(BuildError::ZeroWorkers),
            Some(n) => n,
            None => default_max_workers(),
        };
        Ok(self.build_with(max_workers))
    }

    fn build_with(self, max_workers: usize) -> ThreadPoolExecutor {
        // CPython treats an empty prefix as none.
        let name_prefix = match self.thread_name_prefix {
            Some(prefix) if !prefix.is_empty() => prefix,
            _ => format!("ThreadPoolExecutor-{}", POOL_COUNTER.fetch_add(1, Relaxed)),
        };
        let (sender, jobs) = crossbeam_channel::unbounded();
        let pool = ThreadPoolExecutor {
            shared: Arc::new(Shared {
                id: PoolId::new(),
                max_workers,
                name_prefix,
                initializer: self.initializer,
                jobs,
                control: Mutex::new(Control {
                    sender: Some(sender),
                    threads: Vec::new(),
                }),
                idle: AtomicUsize::new(0),
                spawned: AtomicUsize::new(0),
                life: Lifecycle::new(BrokenKind::ThreadPool),
            }),
        };
        if !self.no_join_at_exit {
            let weak = Arc::downgrade(&pool.shared);
            at_exit::register(weak);
        }
        pool
    }
}

/// Python's default: `min(32, os.cpu_count() + 4)` (SPEC T1).
fn default_max_workers() -> usize {
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    32.min(cpus + 4)
}

impl ThreadPoolExecutor {
    /// A pool of at most `max_workers` threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`] when `max_workers` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// assert_eq!(ThreadPoolExecutor::new(5).unwrap().max_workers(), 5);
    /// ```
    pub fn new(max_workers: usize) -> Result<Self, BuildError> {
        ThreadPoolExecutor::builder()
            .max_workers(max_workers)
            .build()
    }

    /// A builder for the other options.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// The most threads this pool will start.
    pub fn max_workers(&self) -> usize {
        self.shared.max_workers
    }

    /// Identity of this pool (see `Shared::key`).
    pub(crate) fn key(&self) -> usize {
        self.shared.key()
    }

    /// Schedules `task` and returns its future at once (SPEC E1). A panic
    /// in the task becomes its future's [`Error::Failed`]; the worker goes
    /// on (SPEC E5).
    ///
    /// # Errors
    ///
    /// [`SubmitError`], giving the task back, when the pool is shut down
    /// ([`Error::ShutDown`]) or broken ([`Error::Broken`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(2).unwrap();
    /// let f = pool.submit(|| 2 + 2).unwrap();
    /// assert_eq!(*f.result().unwrap(), 4);
    /// ```
    ///
    /// The task runs on another thread, so what it captures must be `Send`:
    ///
    /// ```compile_fail
    /// use concurrent_futures::ThreadPoolExecutor;
    /// use std::rc::Rc;
    ///
    /// let pool = ThreadPoolExecutor::new(1).unwrap();
    /// let shared = Rc::new(1);
    /// pool.submit(move || *shared + 1).unwrap();
    /// ```
    ///
    /// and it may outlive the caller's stack frame, so it may not borrow
    /// from it (use [`scope`](Self::scope) for that):
    ///
    /// ```compile_fail
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(1).unwrap();
    /// let local = vec![1, 2, 3];
    /// pool.submit(|| local.len()).unwrap();
    /// ```
    pub fn submit<F, T>(&self, task: F) -> Result<Future<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + Sync + 'static,
    {
        self.submit_task(task, |f| move || Ok(f()))
    }

    /// Schedules a task that may fail: its `Err` becomes the future's
    /// [`Error::Failed`], as a raised exception does in Python.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Error, ThreadPoolExecutor};
    ///
    /// let pool = ThreadPoolExecutor::new(1).unwrap();
    /// let f = pool.submit_fallible(|| "x1".parse::<u32>()).unwrap();
    /// let Err(Error::Failed(e)) = f.result() else { panic!() };
    /// assert!(e.downcast_ref::<std::num::ParseIntError>().is_some());
    /// ```
    pub fn submit_fallible<F, T, E>(&self, task: F) -> Result<Future<T>, SubmitError<F>>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.submit_task(task, |f| {
            move || f().map_err(|e| Error::Failed(TaskError::new(e)))
        })
    }

    /// Queues the task `make` builds from `task`, once the pool accepts it.
    pub(crate) fn submit_task<F, T, G>(
        &self,
        task: F,
        make: impl FnOnce(F) -> G,
    ) -> Result<Future<T>, SubmitError<F>>
    where
        T: Send + Sync + 'static,
        G: FnOnce() -> Result<T, Error> + Send + 'static,
    {
        self.enqueue(task, make, false).map(|queued| queued.future)
    }

    /// [`submit_task`](Self::submit_task), also giving the queue's
    /// reference to the task when `keep_job` asks for it.
    pub(crate) fn enqueue<F, T, G>(
        &self,
        task: F,
        make: impl FnOnce(F) -> G,
        keep_job: bool,
    ) -> Result<Queued<T>, SubmitError<F>>
    where
        T: Send + Sync + 'static,
        G: FnOnce() -> Result<T, Error> + Send + 'static,
    {
        let shared = &self.shared;
        let mut control = shared.control.lock();
        // Shut down and broken change under `control`, like the sender.
        if let Err(refused) = shared.life.admit() {
            return Err(SubmitError::new(task, refused));
        }
        if let Err(e) = shared.start_worker_if_needed(&mut control) {
            if shared.spawned.load(Relaxed) == 0 {
                let reason = format!("could not start a worker thread: {e}");
                let broken = BrokenExecutor::new(BrokenKind::ThreadPool, reason);
                return Err(SubmitError::new(task, Error::Broken(broken)));
            }
            // Otherwise the running workers will get to it.
        }
        let (future, job) = Future::with_task(shared.id(), make(task));
        let kept = keep_job.then(|| Arc::clone(&job));
        if let Some(sender) = &control.sender {
            // Cannot fail: the receiver lives in `shared`, which we hold.
            let _ = sender.send(job);
        }
        Ok(Queued { future, job: kept })
    }

    /// Stops the pool (SPEC E3): later submits fail with
    /// [`Error::ShutDown`]. Idempotent and safe from any thread, including
    /// from inside one of its own tasks or their done-callbacks (which then
    /// wait for every worker but their own). Without `wait` the work still
    /// finishes, also if `main` returns meanwhile (see
    /// [`ThreadPoolBuilder::join_at_exit`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Shutdown, ThreadPoolExecutor};
    ///
    /// let pool = ThreadPoolExecutor::new(1).unwrap();
    /// let f = pool.submit(|| 1).unwrap();
    /// pool.shutdown_with(Shutdown::default().wait(true));
    /// assert!(f.done());
    /// ```
    pub fn shutdown_with(&self, options: Shutdown) {
        self.shared.shutdown(options);
    }

    /// Runs `f` over `items` on the pool; results come back in input order
    /// (SPEC E2). See [`ClosureExecutor::map`].
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(4).unwrap();
    /// let lens: Vec<usize> = pool
    ///     .map(|s: &str| s.len(), ["a", "bb", "ccc"])
    ///     .collect::<Result<_, _>>()
    ///     .unwrap();
    /// assert_eq!(lens, [1, 2, 3]);
    /// ```
    pub fn map<'a, F, I, T>(&'a self, f: F, items: I) -> Map<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: 'a,
        I::Item: Send + 'static,
        T: Send + Sync + 'static,
    {
        ClosureExecutor::map(self, f, items)
    }

    /// [`map`](Self::map) with `timeout` and `buffersize`
    /// ([`MapOptions`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{MapOptions, ThreadPoolExecutor};
    ///
    /// let pool = ThreadPoolExecutor::new(2).unwrap();
    /// // An endless input in bounded memory: at most 8 items in flight.
    /// let first: Vec<u64> = pool
    ///     .map_with(|x: u64| x + 1, 0.., MapOptions::new().buffersize(8))
    ///     .take(3)
    ///     .map(Result::unwrap)
    ///     .collect();
    /// assert_eq!(first, [1, 2, 3]);
    /// ```
    pub fn map_with<'a, F, I, T>(&'a self, f: F, items: I, options: MapOptions) -> Map<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: 'a,
        I::Item: Send + 'static,
        T: Send + Sync + 'static,
    {
        ClosureExecutor::map_with(self, f, items, options)
    }

    /// `shutdown(wait = true, cancel_futures = false)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(1).unwrap();
    /// pool.shutdown();
    /// pool.shutdown();
    /// assert!(pool.submit(|| ()).is_err());
    /// ```
    pub fn shutdown(&self) {
        self.shutdown_with(Shutdown::default());
    }
}

impl Shared {
    fn id(&self) -> u16 {
        self.id.get()
    }

    /// Its exact identity, for what must not mistake another pool for it
    /// (pools may share an id).
    fn key(&self) -> usize {
        self as *const Shared as usize
    }

    fn shutdown(&self, options: Shutdown) {
        let cancelled: Vec<Arc<dyn Job>> = {
            let mut control = self.control.lock();
            self.life.shut_down();
            let sender = control.sender.take();
            let drained = if options.cancels_futures() {
                self.jobs.try_iter().collect()
            } else {
                Vec::new()
            };
            drop(sender);
            drained
        };
        // Cancelling runs callbacks and drops tasks: user code, so outside
        // the lock, and each on its own, so one that panics leaves no other
        // future pending. Every one is cancelled before any callback runs,
        // so a callback that waits for another of them finds it cancelled.
        for wake in quietly(cancelled, Job::cancel_quietly) {
            drop_user_value(move || drop(wake));
        }
        if options.waits() {
            self.wait_for_workers();
        }
    }

    /// Whether every worker has started. From then on tokens cannot start
    /// a thread, so nobody takes or offers them: two contended atomic
    /// operations per task saved (threads never exit before shutdown).
    #[inline]
    fn full(&self) -> bool {
        self.spawned.load(Relaxed) >= self.max_workers
    }

    /// Takes an idle worker's token, if one is offered.
    fn claim_idle_worker(&self) -> bool {
        self.idle
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Offers the calling worker's token: it is about to wait for a job.
    /// Tokens never outnumber the workers started.
    fn offer_idle_worker(&self) {
        let spawned = self.spawned.load(Relaxed);
        if spawned >= self.max_workers {
            return;
        }
        let _ = self
            .idle
            .fetch_update(SeqCst, SeqCst, |n| (n < spawned).then_some(n + 1));
    }

    /// Makes sure a worker will take the job being submitted: an idle one
    /// (its token claimed), or a new one, unless `max_workers` run.
    ///
    /// Claiming, rather than reading a count of idle workers, is what keeps
    /// a job from waiting behind a busy worker below `max_workers`: a worker
    /// that has just taken a job may not have updated any count yet, but it
    /// can no longer be claimed twice.
    // Inlined up to the common answer (every worker runs), since every
    // submit asks; starting one stays out of line.
    #[inline]
    fn start_worker_if_needed(self: &Arc<Self>, control: &mut Control) -> std::io::Result<()> {
        if self.full() || self.claim_idle_worker() {
            return Ok(());
        }
        self.start_worker(control)
    }

    /// [`start_worker_if_needed`](Self::start_worker_if_needed) past an
    /// idle worker's token: a new worker, unless `max_workers` run.
    #[cold]
    fn start_worker(self: &Arc<Self>, control: &mut Control) -> std::io::Result<()> {
        let spawned = self.spawned.load(Relaxed);
        if spawned >= self.max_workers || control.sender.is_none() {
            return Ok(());
        }
        let name = format!("{}_{spawned}", self.name_prefix);
        let shared = Arc::clone(self);
        self.life.worker_started();
        // Counted before it starts, so its first offer is accepted.
        self.spawned.store(spawned + 1, Relaxed);
        match thread::Builder::new()
            .name(name)
            .spawn(move || shared.worker_main())
        {
            Ok(handle) => {
                control.threads.push(handle);
                Ok(())
            }
            Err(e) => {
                self.spawned.store(spawned, Relaxed);
                self.life.worker_gone();
                Err(e)
            }
        }
    }

    fn worker_main(self: Arc<Self>) {
        struct Exit<'a>(&'a Shared);
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                self.0.life.worker_gone();
            }
        }
        let _exit = Exit(&self);
        task_context::set_worker_pool(self.id(), self.key());
        if let Some(init) = &self.initializer {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| init())) {
                self.initializer_failed(&panic_message(payload.as_ref()));
                return;
            }
        }
        // A new worker was started for a job already queued: it offers no
        // token until it has run one.
        while let Ok(job) = self.jobs.recv() {
            let ran = std::cell::Cell::new(false);
            job.run(&|| {
                ran.set(true);
                self.offer_idle_worker();
            });
            if !ran.get() {
                self.offer_idle_worker();
            }
        }
    }

    /// SPEC T3: the pool is broken; fail everything queued.
    fn initializer_failed(&self, message: &str) {
        let reason = format!(
            "a thread initializer failed, the thread pool is not usable anymore: {message}"
        );
        let (broken, queued) = {
            let _control = self.control.lock();
            let broken = self.life.break_with(reason);
            (broken, self.jobs.try_iter().collect::<Vec<_>>())
        };
        tracing::error!(%message, "thread pool initializer panicked; the pool is broken");
        // As in `shutdown`: all fail before any callback runs.
        let fail = |job: Arc<dyn Job>| job.fail_quietly(Error::Broken(broken.clone()));
        for wake in quietly(queued, fail) {
            drop_user_value(move || drop(wake));
        }
    }

    fn wait_for_workers(&self) {
        let inside = task_context::works_for(self.key());
        let me = thread::current().id();
        let threads = std::mem::take(&mut self.control.lock().threads);
        for handle in threads {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
        // Another caller may have taken the handles: wait on the count too.
        self.life.wait_for_workers(inside);
    }
}

/// Settles each of `jobs` with `settle`, each step contained on its own
/// (a task's `Drop` is user code); what is left to wake, in order.
fn quietly(
    jobs: Vec<Arc<dyn Job>>,
    settle: impl Fn(Arc<dyn Job>) -> Option<Box<dyn std::any::Any>>,
) -> Vec<Box<dyn std::any::Any>> {
    let mut wakes = Vec::with_capacity(jobs.len());
    for job in jobs {
        drop_user_value(|| wakes.extend(settle(job)));
    }
    wakes
}

impl Default for ThreadPoolExecutor {
    /// A pool with Python's default size (SPEC T1).
    fn default() -> Self {
        ThreadPoolBuilder::default().build_with(default_max_workers())
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let control = self.shared.control.lock();
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.shared.max_workers)
            .field("name_prefix", &self.shared.name_prefix)
            .field("workers", &self.shared.spawned.load(Relaxed))
            .field("shut_down", &control.sender.is_none())
            .field("broken", &self.shared.life.is_broken())
            .finish()
    }
}

impl FinishAtExit for Shared {
    fn finish_at_exit(&self) {
        self.shutdown(Shutdown::default());
    }
}

impl Executor for ThreadPoolExecutor {
    fn shutdown_with(&self, options: Shutdown) {
        ThreadPoolExecutor::shutdown_with(self, options);
    }

    fn max_workers(&self) -> usize {
        self.shared.max_workers
    }

    fn is_shut_down(&self) -> bool {
        self.shared.life.is_shut_down()
    }

    fn is_broken(&self) -> bool {
        self.shared.life.is_broken()
    }
}

impl ClosureExecutor for ThreadPoolExecutor {
    fn submit<F, T>(&self, task: F) -> Result<Future<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + Sync + 'static,
    {
        ThreadPoolExecutor::submit(self, task)
    }
}

impl<A, R> FnExecutor<A, R> for ThreadPoolExecutor
where
    A: Send + 'static,
    R: Send + Sync + 'static,
{
    fn submit_fn(&self, f: fn(A) -> R, arg: A) -> Result<Future<R>, SubmitError<A>> {
        self.submit_task((f, arg), |(f, arg)| move || Ok(f(arg)))
            .map_err(|refused| {
                let reason = refused.reason().clone();
                SubmitError::new(refused.into_task().1, reason)
            })
    }

    fn map_fn<'a, I>(&'a self, f: fn(A) -> R, items: I, options: MapOptions) -> Map<'a, R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: 'a,
    {
        ClosureExecutor::map_with(self, f, items, options)
    }
}
