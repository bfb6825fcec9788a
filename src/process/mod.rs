//! [`ProcessPoolExecutor`]: real worker processes with crash isolation,
//! per-task timeouts and self-healing (SPEC P1-P10, B1-B3).
//!
//! ```text
//!  submit(f, arg) ── encode (codec) ──> queue ──────> idle worker's link ──> worker process
//!                     │ bad arg: that       │ cancel() wins       │ pool.cancel(&f): kill,
//!                     │ future fails        │ here (still         │ replace (B2); timeout:
//!                     │                     │ PENDING)            │ kill, replace (B1)
//!  future <── decode (sink) <── transport's thread <────────────────── answers
//!                                └─ worker ends: crash -> broken pool (P6) or
//!                                   the one future fails and a new worker starts (B3)
//! ```
//!
//! Three layers, one seam each (DESIGN): the codec (`codec.rs`: functions
//! by reference, values by serde + postcard, keeping the user's error text
//! through `serde_messages.rs`) is this front end's; the [`engine`]
//! dispatches opaque payloads and decides what a worker's end means; the
//! transport (`transport/`: pipes to child processes) has the workers.
//! [`worker`] is a worker's side, [`Launcher`] what program it is; another
//! front end brings its own codec, worker program and handler to the same
//! engine.
//!
//! Functions cross by reference: a plain `fn(A) -> R` (a closure that
//! captures nothing coerces to one). Arguments and results cross by value
//! and must implement serde's `Serialize` and `Deserialize`.

#[cfg(feature = "cluster")]
pub mod cluster;
mod codec;
pub mod engine;
mod entry;
mod launcher;
mod serde_messages;
mod transport;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::codec::{ChunkSink, OneSink, RustCodec};
use self::engine::{Engine, EngineOptions};
pub use self::launcher::{ForkPipes, Launcher};
use crate::error::{BuildError, Error, SubmitError};
use crate::executor::{Executor, FnExecutor, Shutdown};
use crate::future::Future;
use crate::map::{Batch, Map, MapOptions};

/// Runs the worker loop if this process was started as a pool worker, and
/// never returns then; otherwise returns at once.
///
/// Workers normally enter their loop before `main` by themselves (the
/// `worker-entry` feature, on by default). Call this first thing in `main`
/// when that feature is off (a program that hosts the library and wants
/// no constructor), or if your build drops the library's constructor
/// (some unusual linker setups do); it is harmless otherwise.
///
/// # Examples
///
/// ```
/// concurrent_futures::process::run_worker_if_child();
/// // ... the rest of `main` ...
/// ```
pub fn run_worker_if_child() {
    entry::run_worker_if_marked();
}

/// Collects a few items (a call's lengths, its parts, a frame's body) by
/// pushing them: `SmallVec`'s `collect` and `extend` are generic loops
/// that cost about 100 instructions even for the one item a `submit` has,
/// several times per call.
pub(crate) fn small_vec_of<A: smallvec::Array>(
    items: impl ExactSizeIterator<Item = A::Item>,
) -> smallvec::SmallVec<A> {
    let mut collected = smallvec::SmallVec::with_capacity(items.len());
    for item in items {
        collected.push(item);
    }
    collected
}

/// What the Rust front end tells a user whose worker never started.
fn startup_advice(launcher: &Launcher) -> String {
    match &launcher.unusual {
        None => "is the concurrent-futures worker entry linked? Call \
                 concurrent_futures::process::run_worker_if_child() at the top of main"
            .to_owned(),
        Some(how) => format!(
            "{how}, which did not reach the worker entry. Start the program directly rather \
             than through a loader or wrapper, or call \
             concurrent_futures::process::run_worker_if_child() at the top of main"
        ),
    }
}

/// How workers are started (Python's `mp_context`, SPEC P4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartMethod {
    /// A fresh process of this same executable (Python's "spawn", without
    /// re-running `main`). `fork` is not offered: forking a process that
    /// has other threads is unsafe.
    #[default]
    Exec,
}

/// Configures a [`ProcessPoolExecutor`] (Python's keyword arguments, plus
/// the options Python lacks).
///
/// # Examples
///
/// ```
/// use concurrent_futures::ProcessPoolExecutor;
/// use std::time::Duration;
///
/// fn setup(greeting: String) {
///     assert_eq!(greeting, "hello");
/// }
///
/// let pool = ProcessPoolExecutor::builder()
///     .max_workers(2)
///     .initializer(setup, String::from("hello"))
///     .max_tasks_per_child(100)
///     .self_healing(true)
///     .task_timeout(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// assert_eq!(*pool.submit(|x: u32| x + 1, 1).unwrap().result().unwrap(), 2);
/// ```
#[derive(Debug, Default)]
pub struct ProcessPoolBuilder {
    max_workers: Option<usize>,
    initializer: Option<Result<(Bytes, Bytes), String>>,
    max_tasks_per_child: Option<usize>,
    self_healing: bool,
    retries: u32,
    task_timeout: Option<Duration>,
    start_method: StartMethod,
    no_join_at_exit: bool,
    #[cfg(feature = "cluster")]
    cluster: Option<cluster::Cluster>,
}

impl ProcessPoolBuilder {
    /// At most this many worker processes; default: the number of CPUs.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Runs `f(arg)` at the start of every worker (SPEC P5). If it panics
    /// the pool breaks: pending and later work fails with
    /// [`BrokenKind::ProcessPool`](crate::BrokenKind::ProcessPool), with
    /// the panic message. `arg` is serialized here, once; if that fails
    /// (or its `Serialize` impl panics), [`build`](Self::build) says why.
    pub fn initializer<A>(mut self, f: fn(A), arg: A) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        self.initializer = Some(codec::encode_init(f, &arg));
        self
    }

    /// Replaces a worker after it ran this many tasks (SPEC P7).
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// A worker death fails only the task it was running, with
    /// [`Error::WorkerDied`], and a new worker takes its place (SPEC B3).
    /// Off by default: as in Python, a death breaks the pool.
    pub fn self_healing(mut self, on: bool) -> Self {
        self.self_healing = on;
        self
    }

    /// A task whose worker dies or is lost while it runs (a cluster agent
    /// or host gone, say) runs again, up to `n` times, before it fails
    /// with [`Error::WorkerDied`]: at-least-once, since it may have run, or
    /// may still run on a machine that was cut off. Off (0) by default. A
    /// death then never breaks the pool, as with
    /// [`self_healing`](Self::self_healing).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// A task running longer fails with [`Error::TaskTimeout`]; its worker
    /// is killed and replaced (SPEC B1).
    ///
    /// The limit is per task, also for the items `map` batches with
    /// `chunksize`: each item's time counts from when it starts, in its
    /// worker, after the worker's start-up and initializer. An item over
    /// its limit fails alone: the items of its chunk that finished keep
    /// their results, and those that had not started run on another
    /// worker. To know when each item ends, a pool with a time limit
    /// sends each item's result as soon as it is ready, which costs one
    /// write per item rather than per chunk.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Whether a normal exit of the program (returning from `main`, or
    /// `std::process::exit`) first waits for the work this pool accepted
    /// (SPEC E3), as CPython does; on by default. It matters only for a
    /// pool that is never dropped (one in a `static`, say), since dropping
    /// a pool waits anyway. Off, the work still running at exit is lost
    /// when the workers die with the program.
    pub fn join_at_exit(mut self, on: bool) -> Self {
        self.no_join_at_exit = !on;
        self
    }

    /// How workers start (SPEC P4).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = method;
        self
    }

    /// Places the workers on the agents of `cluster` instead of starting
    /// them here (SPEC B9; see [`cluster`]). Everything else is the same
    /// pool: `max_workers` is how many agent slots it claims at most.
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, cluster: cluster::Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Creates the pool. Workers start when work arrives.
    ///
    /// # Errors
    ///
    /// [`BuildError`] for zero `max_workers` or `max_tasks_per_child`, an
    /// initializer argument that cannot be serialized, a call from a
    /// worker process whose entry did not run, or a program that cannot
    /// start its own workers.
    pub fn build(self) -> Result<ProcessPoolExecutor, BuildError> {
        if worker::entry_missing() {
            return Err(BuildError::WorkerEntryNotRun);
        }
        let max_workers = self
            .max_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let mut options = EngineOptions::new(max_workers)
            .self_healing(self.self_healing)
            .retries(self.retries)
            .join_at_exit(!self.no_join_at_exit);
        if let Some(n) = self.max_tasks_per_child {
            options = options.max_tasks_per_child(n);
        }
        if let Some(limit) = self.task_timeout {
            options = options.task_timeout(limit);
        }
        if let Some(initializer) = self.initializer {
            let (function, arg) = initializer.map_err(BuildError::InitializerArgument)?;
            options = options.initializer(function, arg);
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.cluster {
            let transport =
                cluster::ClusterTransport::connect(cluster).map_err(BuildError::Cluster)?;
            let options = options.startup_advice(
                "the agents run this same executable, with the worker entry (see process::cluster)",
            );
            let engine = Engine::start_on(options, Arc::new(transport), Arc::new(RustCodec))?;
            return Ok(ProcessPoolExecutor { engine });
        }
        let launcher = Launcher::this_program().map_err(BuildError::NoWorkerProgram)?;
        let options = options.startup_advice(startup_advice(&launcher));
        let engine = Engine::start(options, launcher, Arc::new(RustCodec))?;
        Ok(ProcessPoolExecutor { engine })
    }
}

/// A pool of worker processes that runs `fn(A) -> R` calls and returns
/// [`Future`]s (Python's `ProcessPoolExecutor`).
///
/// Its futures are the same `Future<R>` as the thread pool's, so `wait`
/// and `as_completed` mix both. Dropping the pool is `shutdown(wait =
/// true)`.
///
/// Whatever a task does fails only its own future, or breaks the pool
/// cleanly as in Python: a panic (in the function or in a serde impl, on
/// either side) fails its future with the message; a worker that dies
/// breaks the pool, or with [`self_healing`](ProcessPoolBuilder::self_healing)
/// fails only its task. In a build with `panic = "abort"` a panic aborts
/// its worker, which counts as such a death.
///
/// Workers are this program started again with the same argv; they never
/// run `main`, but the program's other constructors (code that runs before
/// `main`) run in them too.
///
/// # Examples
///
/// ```
/// use concurrent_futures::ProcessPoolExecutor;
///
/// fn is_prime(n: u64) -> bool {
///     n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
/// }
///
/// let pool = ProcessPoolExecutor::new(2).unwrap();
/// let primes: Vec<bool> = pool
///     .map(is_prime, [2, 15, 97])
///     .collect::<Result<_, _>>()
///     .unwrap();
/// assert_eq!(primes, [true, false, true]);
/// ```
pub struct ProcessPoolExecutor {
    engine: Arc<Engine>,
}

impl ProcessPoolExecutor {
    /// A pool of at most `max_workers` processes.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`] when `max_workers` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{BuildError, ProcessPoolExecutor};
    ///
    /// assert!(matches!(ProcessPoolExecutor::new(0), Err(BuildError::ZeroWorkers)));
    /// ```
    pub fn new(max_workers: usize) -> Result<Self, BuildError> {
        ProcessPoolExecutor::builder()
            .max_workers(max_workers)
            .build()
    }

    /// A builder for the other options.
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::default()
    }

    /// The most worker processes this pool runs at once.
    pub fn max_workers(&self) -> usize {
        self.engine.max_workers()
    }

    /// Schedules `f(arg)` in a worker process (SPEC E1, P2).
    ///
    /// An argument that cannot be serialized fails this future at once; the
    /// pool is not affected. A panic in the worker fails the future with
    /// the panic message and the worker's backtrace (SPEC F10); the worker
    /// goes on.
    ///
    /// # Errors
    ///
    /// [`SubmitError`], giving `arg` back, when the pool is shut down or
    /// broken.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ProcessPoolExecutor;
    ///
    /// let pool = ProcessPoolExecutor::new(1).unwrap();
    /// let f = pool.submit(|s: String| s.len(), "four".to_owned()).unwrap();
    /// assert_eq!(*f.result().unwrap(), 4);
    /// ```
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<Future<R>, SubmitError<A>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let future = Future::new();
        let (call, refused) = codec::encode_call(f, [&arg].into_iter());
        let Some(call) = call else {
            if let Some((_, error)) = refused.into_iter().next() {
                let _ = future.complete_failed(error);
            }
            return Ok(future);
        };
        let sink = Arc::new(OneSink {
            promise: future.promise(),
        });
        match self.engine.submit(call, sink) {
            Ok(()) => Ok(future),
            Err(refused) => Err(SubmitError::new(arg, refused.error)),
        }
    }

    /// Submits `args` as one call, whose future holds every item's
    /// outcome in order. An argument that cannot be serialized fails its
    /// own item only.
    fn submit_chunk<A, R>(
        &self,
        f: fn(A) -> R,
        args: Vec<A>,
    ) -> Result<Future<Vec<Result<R, Error>>>, Error>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let future = Future::new();
        let (call, refused) = codec::encode_call(f, args.iter());
        let mut outcomes: Vec<Option<Result<R, Error>>> = args.iter().map(|_| None).collect();
        for (index, error) in refused {
            outcomes[index] = Some(Err(error));
        }
        let Some(call) = call else {
            let _ = future.set_result(outcomes.into_iter().flatten().collect());
            return Ok(future);
        };
        let sink = Arc::new(ChunkSink::new(future.promise(), outcomes));
        self.engine
            .submit(call, sink)
            .map_err(|refused| refused.error)?;
        Ok(future)
    }

    /// Runs `f` over `items` in the workers; results come back in input
    /// order (SPEC E2, P8). See [`map_with`](Self::map_with) for
    /// `chunksize`, `buffersize` and `timeout`.
    pub fn map<'a, A, R, I>(&'a self, f: fn(A) -> R, items: I) -> Map<'a, R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.map_with(f, items, MapOptions::new())
    }

    /// [`map`](Self::map) with Python's options. `chunksize` sends that
    /// many items per message: far less overhead for many small items.
    ///
    /// As in CPython, a chunk is one call with one future: its items come
    /// back together once the last of them is done, so a `timeout` or a
    /// slow item holds back the whole chunk, and a chunk not yet sent when
    /// the map is dropped (or the pool shut down with `cancel_futures`)
    /// is cancelled whole. Each item still has its own outcome: an
    /// argument that cannot be serialized, a panic, or an item over the
    /// pool's [`task_timeout`](ProcessPoolBuilder::task_timeout) fails that
    /// item alone, and the iteration goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{MapOptions, ProcessPoolExecutor};
    ///
    /// let pool = ProcessPoolExecutor::new(2).unwrap();
    /// let total: u64 = pool
    ///     .map_with(|x: u64| x * x, 0..1000, MapOptions::new().chunksize(100))
    ///     .map(Result::unwrap)
    ///     .sum();
    /// assert_eq!(total, 332_833_500);
    /// ```
    pub fn map_with<'a, A, R, I>(
        &'a self,
        f: fn(A) -> R,
        items: I,
        options: MapOptions,
    ) -> Map<'a, R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        if let Err(refused) = options.check_chunksize() {
            return Map::refused(refused);
        }
        let chunk_size = options.chunk_size();
        let mut items = items.into_iter();
        let submit_next = move || {
            if chunk_size == 1 {
                let arg = items.next()?;
                return Some(self.submit(f, arg).map(Batch::One).map_err(Error::from));
            }
            let chunk: Vec<A> = items.by_ref().take(chunk_size).collect();
            if chunk.is_empty() {
                return None;
            }
            let len = chunk.len();
            Some(
                self.submit_chunk(f, chunk)
                    .map(|future| Batch::Chunk { future, len }),
            )
        };
        Map::batched(submit_next, options)
    }

    /// Cancels `future`: a pending one like [`Future::cancel`]; a running
    /// one by killing its worker, which is replaced (SPEC B2). The running
    /// future then finishes with [`Error::Cancelled`] (its state is
    /// `Finished`, since it had started). For an item of a `map` chunk
    /// that has not answered, the chunk's worker is killed and the
    /// chunk's other unanswered items are sent to another worker (an item
    /// whose result was not yet sent may then run twice). Returns false if
    /// it already finished, or if its call waits behind another one in a
    /// busy worker (it cannot be stopped without stopping that one).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Error, Future, ProcessPoolExecutor};
    ///
    /// fn forever(_: ()) {
    ///     loop {
    ///         std::thread::park();
    ///     }
    /// }
    ///
    /// let pool = ProcessPoolExecutor::new(1).unwrap();
    /// let f = pool.submit(forever, ()).unwrap();
    /// while !f.running() {
    ///     std::thread::yield_now();
    /// }
    /// assert!(pool.cancel(&f));
    /// assert!(matches!(f.result(), Err(Error::Cancelled)));
    /// ```
    pub fn cancel<R>(&self, future: &Future<R>) -> bool {
        future.cancel() || (!future.done() && self.engine.cancel_running(future.id()))
    }

    /// Stops the pool (SPEC E3): later submits fail with
    /// [`Error::ShutDown`]. With `wait`, blocks until pending work is done
    /// and every worker has exited and been reaped. Without, it returns at
    /// once and the work still finishes, also if `main` returns meanwhile
    /// (see [`ProcessPoolBuilder::join_at_exit`]).
    ///
    /// Safe from any thread and from a done-callback. A done-callback of a
    /// process pool's future may run on one of the pool's own threads (the
    /// one that read the result); there it cannot wait for the workers that
    /// thread serves, so it returns at once and the work still finishes
    /// (CPython raises `RuntimeError` there instead). The same holds for
    /// dropping the last handle to the pool in such a callback.
    pub fn shutdown_with(&self, options: Shutdown) {
        self.engine.shutdown(options);
    }

    /// `shutdown(wait = true, cancel_futures = false)`.
    pub fn shutdown(&self) {
        self.shutdown_with(Shutdown::default());
    }

    /// Sends `SIGTERM` to every worker now and shuts the pool down
    /// (Python 3.14, SPEC P9): queued futures are cancelled, running ones
    /// fail at once with [`Error::Broken`]. Returns without waiting for
    /// the workers, as CPython does: a worker that handles or ignores
    /// `SIGTERM` gets `SIGKILL` a moment later, and is reaped in the
    /// background (a later `shutdown()` or drop waits for that).
    pub fn terminate_workers(&self) {
        self.engine.terminate_workers();
    }

    /// [`terminate_workers`](Self::terminate_workers) with `SIGKILL`.
    pub fn kill_workers(&self) {
        self.engine.kill_workers();
    }
}

impl Executor for ProcessPoolExecutor {
    fn shutdown_with(&self, options: Shutdown) {
        ProcessPoolExecutor::shutdown_with(self, options);
    }

    fn max_workers(&self) -> usize {
        self.engine.max_workers()
    }

    fn is_shut_down(&self) -> bool {
        self.engine.is_shut_down()
    }

    fn is_broken(&self) -> bool {
        self.engine.is_broken()
    }
}

impl<A, R> FnExecutor<A, R> for ProcessPoolExecutor
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn submit_fn(&self, f: fn(A) -> R, arg: A) -> Result<Future<R>, SubmitError<A>> {
        self.submit(f, arg)
    }

    fn map_fn<'a, I>(&'a self, f: fn(A) -> R, items: I, options: MapOptions) -> Map<'a, R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: 'a,
    {
        self.map_with(f, items, options)
    }
}

impl Default for ProcessPoolExecutor {
    /// A pool with one worker per CPU (SPEC P1). In a worker process whose
    /// entry did not run (see [`run_worker_if_child`]) the pool is broken
    /// from the start instead, refusing all work: never a fork bomb.
    fn default() -> Self {
        ProcessPoolExecutor::builder()
            .build()
            .unwrap_or_else(|e| ProcessPoolExecutor {
                engine: Engine::refusing(e.to_string()),
            })
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.engine.snapshot();
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.max_workers())
            .field("workers", &state.workers)
            .field("busy", &state.busy)
            .field("starting", &state.starting)
            .field("queued", &state.queued)
            .field("shut_down", &state.shut_down)
            .field("broken", &state.broken)
            .finish()
    }
}
