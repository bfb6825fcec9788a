//! The process engine, for front ends: it runs calls on workers that a
//! transport provides, and decides what happens when they end (SPEC P1-P10,
//! B1-B3). The Rust [`ProcessPoolExecutor`](crate::ProcessPoolExecutor) is
//! one front end; another (a Python package, say) brings its own codec and
//! its own worker program ([`Launcher`], [`worker`](super::worker)).
//!
//! The engine moves opaque payloads: a [`Call`] is a function reference
//! and arguments the front end encoded; answers go to the call's [`Sink`],
//! which decodes them into futures; a [`Codec`] checks each worker's proof
//! that it can run the pool's calls. How workers are had is the
//! transport's business (`transport`): starting them, carrying messages,
//! stopping them, and saying how they ended.
//!
//! # A call's life
//!
//! | state | where | how it leaves |
//! |---|---|---|
//! | queued | `State::queue`; futures pending | dispatched (futures marked running); cancelled (`Future::cancel`, `shutdown(cancel_futures)`); failed (broken pool) |
//! | sent | a worker's `in_flight`, behind the executing call (sent ahead) | becomes executing when the call before it answers; queued again if its worker ends first |
//! | executing | the head of `in_flight`, one item at a time | answered; timed out; cancelled; lost with its worker |
//! | answered | delivered to its sink (an item at a time) | done |
//! | timed out | settled with `TaskTimeout` (B1), worker killed | done; its unanswered items queued again |
//! | cancelled | settled with `Cancelled` by `pool.cancel` (B2), worker killed | done; its other unanswered items queued again |
//! | lost | its worker died | broken pool (P6), or with self-healing (B3) the executing item fails with `WorkerDied` and the rest is queued again |
//!
//! Without a per-task limit a chunk's answers come together when the chunk
//! ends, so a crash fails every unanswered item of the executing call:
//! any of them may have run. A pool that breaks fails every future before
//! it wakes any waiter or runs any callback ([`Sink::fail_quietly`]), so
//! a callback that waits for another of them finds it failed; then it
//! kills its other workers (CPython's order), so that waiters do not wait
//! behind dying processes; a done-callback that blocks delays those kills
//! as long.
//!
//! # Threads and races
//!
//! The transport's threads report what they hear (its link events); the
//! *supervisor* starts workers (so that a child dies with the thread that
//! started it) and enforces deadlines; submitting threads dispatch. Every
//! decision is made under the one state lock, and every race is settled
//! there: a cancel or a timeout *settles* an item before its worker is
//! killed, so an answer that arrives after is dropped, and the settled
//! item's worker end does not fail it again. A timed-out item's failure is
//! delivered by the worker's events thread, so the supervisor runs no user
//! code; and a deadline is not judged while that thread is delivering
//! (`ReaderBusy`): the answer may be waiting unread.
//!
//! # Locks
//!
//! The state lock, then a link's own lock (`Link::push` under it); never
//! the other way round. User code (sinks: decoding, callbacks) and writing
//! (`Link::flush`) run only after the state lock is released.
//! `Lifecycle` is lock-free but for its worker count, which is taken
//! only alone.

mod batch;
mod lifecycle;
mod table;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;

pub use self::batch::AnswerBatch;
#[cfg(test)]
pub(crate) use self::batch::Indices;
use self::table::{Queued, Running, Settle, State, Stop};
use super::launcher::Launcher;
use super::small_vec_of;
pub use super::transport::Delivered;
use super::transport::pipe::PipeTransport;
use super::transport::{StopHow, ToWorker, Transport};
use crate::at_exit::{self, FinishAtExit};
use crate::error::{BrokenExecutor, BrokenKind, BuildError, Error, WorkerId};
use crate::executor::Shutdown;
use crate::lifecycle::Lifecycle;

/// How long a started worker may take to report ready. Generous, since a
/// loaded machine can be slow to start a process; a worker that never
/// reports (its entry was not linked and it runs `main` instead) fails the
/// pool after this long rather than hanging it.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `terminate_workers` lets a worker handle its graceful stop
/// before it is killed for good. Long enough for a handler to clean up,
/// short enough that a task ignoring it holds up a shutdown only briefly.
const TERMINATE_GRACE: Duration = Duration::from_secs(1);

thread_local! {
    /// The engine whose internal thread this is (0: none). A `Cell` of a
    /// plain integer: still readable while the thread's other locals are
    /// being destroyed, as at process exit.
    static ENGINE_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// The pool side of a front end's codec: what the engine needs to know of
/// payloads, which is almost nothing.
///
/// # Examples
///
/// ```
/// use concurrent_futures::process::engine::Codec;
///
/// struct Text;
///
/// impl Codec for Text {
///     fn check_worker(&self, proof: &[u8]) -> Result<(), String> {
///         (proof == b"text v1").then_some(()).ok_or_else(|| "a different worker".into())
///     }
///
///     fn failure_text(&self, failure: &[u8]) -> String {
///         String::from_utf8_lossy(failure).into_owned()
///     }
/// }
///
/// assert!(Text.check_worker(b"text v1").is_ok());
/// ```
pub trait Codec: Send + Sync + 'static {
    /// Whether a worker that introduced itself with `proof` (see
    /// [`CallHandler::proof`](super::worker::CallHandler::proof)) can run
    /// this pool's calls.
    ///
    /// # Errors
    ///
    /// Why not: the pool breaks with it.
    fn check_worker(&self, proof: &[u8]) -> Result<(), String>;

    /// A failure payload as text (an initializer's, for the reason the
    /// pool breaks with).
    fn failure_text(&self, failure: &[u8]) -> String;
}

/// Where a call's outcomes go: the futures waiting for it, one per item,
/// indexed as the [`Item`]s of its [`Call`]. The front end decodes here.
///
/// # Examples
///
/// A sink that keeps results as text:
///
/// ```
/// use std::sync::Mutex;
/// use bytes::Bytes;
/// use concurrent_futures::{Error, WorkerId};
/// use concurrent_futures::process::engine::Sink;
///
/// #[derive(Default)]
/// struct Collect(Mutex<Vec<(usize, String)>>);
///
/// impl Sink for Collect {
///     fn start(&self) -> bool {
///         true
///     }
///     fn answer(&self, index: usize, _: &WorkerId, outcome: Result<Bytes, Bytes>) {
///         let text = match outcome {
///             Ok(v) | Err(v) => String::from_utf8_lossy(&v).into_owned(),
///         };
///         self.0.lock().unwrap().push((index, text));
///     }
///     fn fail(&self, index: usize, error: Error) {
///         self.0.lock().unwrap().push((index, error.to_string()));
///     }
///     fn cancel(&self, index: usize) {
///         self.fail(index, Error::Cancelled);
///     }
///     fn position(&self, _key: usize) -> Option<usize> {
///         None
///     }
/// }
///
/// let sink = Collect::default();
/// sink.answer(0, &WorkerId::process(1), Ok(Bytes::from_static(b"hi")));
/// assert_eq!(sink.0.lock().unwrap()[0], (0, "hi".to_owned()));
/// ```
pub trait Sink: Send + Sync {
    /// Marks every future running, as the call is dispatched; false when
    /// all were cancelled, so the call need not run (SPEC F7).
    fn start(&self) -> bool;

    /// The worker's answer for item `index`: its encoded result, or its
    /// encoded failure.
    fn answer(&self, index: usize, worker: &WorkerId, outcome: Result<Bytes, Bytes>);

    /// The answers one message from a worker brought, in order, each
    /// where it lies in the message's buffer: the default gives each to
    /// [`answer`](Self::answer) as `Bytes` sharing that buffer. A sink
    /// that decodes them at once can read them in place
    /// ([`Delivered::outcome`]), and one that gathers a call's items (a
    /// `map` chunk's single future) can take them all under one lock
    /// instead of one per item.
    fn answer_all(&self, worker: &WorkerId, answers: AnswerBatch<'_>) {
        for (index, delivered) in answers {
            self.answer(index, worker, delivered.to_bytes());
        }
    }

    /// Fails item `index` with the engine's error (timed out, cancelled,
    /// worker died, broken pool).
    fn fail(&self, index: usize, error: Error);

    /// [`fail`](Self::fail) in two steps, for the engine failing many
    /// items at once (a broken pool): the item is failed now, and its
    /// waiters are woken and its callbacks run only when the returned
    /// [`Wake`] is dropped, which the engine does once every item of the
    /// batch is failed. So a callback that waits for another item of the
    /// batch finds it failed instead of waiting forever. The default fails
    /// at once and returns `None`.
    fn fail_quietly(&self, index: usize, error: Error) -> Option<Wake> {
        self.fail(index, error);
        None
    }

    /// Cancels item `index`, which never started (shutdown with
    /// `cancel_futures`).
    fn cancel(&self, index: usize);

    /// [`cancel`](Self::cancel) in two steps, as
    /// [`fail_quietly`](Self::fail_quietly). The default cancels at once
    /// and returns `None`.
    fn cancel_quietly(&self, index: usize) -> Option<Wake> {
        self.cancel(index);
        None
    }

    /// Which item `key` names, if it is one of this call's: the key a
    /// front end passes to [`Engine::cancel_running`].
    fn position(&self, key: usize) -> Option<usize>;
}

/// What [`Sink::fail_quietly`] leaves to do (wake the failed item's
/// waiters, run its callbacks), done when this is dropped.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use concurrent_futures::process::engine::Wake;
///
/// let woken = Rc::new(Cell::new(false));
/// let flag = Rc::clone(&woken);
/// let wake = Wake::on_drop(move || flag.set(true));
/// assert!(!woken.get());
/// drop(wake);
/// assert!(woken.get());
/// ```
#[must_use = "dropping it at once wakes at once"]
pub struct Wake {
    /// Whatever does the waking as it drops.
    _pending: Box<dyn std::any::Any>,
}

impl Wake {
    /// A wake that runs `wake` when dropped.
    pub fn on_drop(wake: impl FnOnce() + 'static) -> Wake {
        struct OnDrop<F: FnOnce()>(Option<F>);
        impl<F: FnOnce()> Drop for OnDrop<F> {
            fn drop(&mut self) {
                if let Some(wake) = self.0.take() {
                    wake();
                }
            }
        }
        Wake {
            _pending: Box::new(OnDrop(Some(wake))),
        }
    }

    /// A wake that is `pending`, whose own drop does the waking (the
    /// future's quiet completions).
    pub(crate) fn holding(pending: impl std::any::Any) -> Wake {
        Wake {
            _pending: Box::new(pending),
        }
    }
}

impl fmt::Debug for Wake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Wake")
    }
}

/// One argument of a [`Call`]: which of the call's futures it is, and
/// where its bytes are in the call's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The item's index among its sink's futures.
    pub index: usize,
    /// Where its bytes start in the buffer.
    pub start: usize,
    /// Where they end.
    pub end: usize,
}

impl Item {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A call ready to send: a function reference and arguments, as a front
/// end's codec encoded them. The arguments share one buffer, so a chunk is
/// one allocation however many items it has, and sending it (again) copies
/// nothing.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use concurrent_futures::process::engine::{Call, Item};
///
/// let one = Call::single(Bytes::from_static(b"upper"), Bytes::from_static(b"abc"));
/// assert_eq!(one.len(), 1);
/// let two = Call::from_buffer(
///     Bytes::from_static(b"upper"),
///     Bytes::from_static(b"abcde"),
///     vec![Item { index: 0, start: 0, end: 2 }, Item { index: 1, start: 2, end: 5 }],
/// );
/// assert_eq!(two.map(|c| c.len()), Some(2));
/// ```
#[derive(Debug, Clone)]
pub struct Call {
    function: Bytes,
    buffer: Bytes,
    items: Items,
}

#[cfg(test)]
impl Call {
    /// Each item's bytes, in order.
    pub(crate) fn item_bytes(&self) -> Vec<&[u8]> {
        self.items
            .iter()
            .map(|item| &self.buffer[item.start..item.end])
            .collect()
    }

    /// The function reference's bytes.
    pub(crate) fn function_bytes(&self) -> &[u8] {
        &self.function
    }
}

/// A call's items: one, for a `submit`, without an allocation.
pub(crate) type Items = SmallVec<[Item; 1]>;

impl Call {
    /// A call with items the caller made sure lie within `buffer`.
    pub(crate) fn new(function: Bytes, buffer: Bytes, items: Items) -> Call {
        Call {
            function,
            buffer,
            items,
        }
    }

    /// `function(arg)`, one item (index 0).
    pub fn single(function: Bytes, arg: Bytes) -> Call {
        let end = arg.len();
        Call::new(
            function,
            arg,
            smallvec::smallvec![Item {
                index: 0,
                start: 0,
                end,
            }],
        )
    }

    /// `function` on each of `items`, which lie in `buffer`; `None` if one
    /// does not, or there is none.
    pub fn from_buffer(function: Bytes, buffer: Bytes, items: Vec<Item>) -> Option<Call> {
        let fits = |i: &Item| i.start <= i.end && i.end <= buffer.len();
        (!items.is_empty() && items.iter().all(fits))
            .then(|| Call::new(function, buffer, items.into()))
    }

    /// How many items it has.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when it has no item (never, for a call built here).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn payload_len(&self) -> usize {
        self.items.iter().map(Item::len).sum()
    }

    /// The items' bytes, as few slices of the buffer as they allow.
    fn parts(&self) -> SmallVec<[Bytes; 1]> {
        let mut parts: SmallVec<[(usize, usize); 1]> = SmallVec::new();
        for item in &self.items {
            match parts.last_mut() {
                Some(last) if last.1 == item.start => last.1 = item.end,
                _ => parts.push((item.start, item.end)),
            }
        }
        small_vec_of(
            parts
                .into_iter()
                .map(|(start, end)| self.buffer.slice(start..end)),
        )
    }

    /// The same call with only `items`.
    fn with_items(&self, items: Items) -> Call {
        Call::new(self.function.clone(), self.buffer.clone(), items)
    }
}

/// How an [`Engine`] runs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use concurrent_futures::process::engine::EngineOptions;
///
/// let options = EngineOptions::new(4)
///     .self_healing(true)
///     .task_timeout(Duration::from_secs(30));
/// assert_eq!(options.workers(), 4);
/// ```
#[derive(Debug, Clone)]
pub struct EngineOptions {
    max_workers: usize,
    max_tasks_per_child: Option<usize>,
    self_healing: bool,
    task_timeout: Option<Duration>,
    initializer: Option<(Bytes, Bytes)>,
    startup_advice: String,
    join_at_exit: bool,
    retries: u32,
}

impl EngineOptions {
    /// At most `max_workers` workers; nothing else on.
    pub fn new(max_workers: usize) -> Self {
        EngineOptions {
            max_workers,
            max_tasks_per_child: None,
            self_healing: false,
            task_timeout: None,
            initializer: None,
            startup_advice: String::new(),
            join_at_exit: true,
            retries: 0,
        }
    }

    /// How many workers at most.
    pub fn workers(&self) -> usize {
        self.max_workers
    }

    /// A worker is replaced after this many calls (SPEC P7).
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// A worker's death fails only its item and a new worker takes its
    /// place (SPEC B3), rather than breaking the pool.
    pub fn self_healing(mut self, on: bool) -> Self {
        self.self_healing = on;
        self
    }

    /// Each item's limit (SPEC B1); its worker is killed when it passes.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Every worker runs `function(arg)` first (SPEC P5).
    pub fn initializer(mut self, function: Bytes, arg: Bytes) -> Self {
        self.initializer = Some((function, arg));
        self
    }

    /// What to tell the user when a worker ends before its loop started
    /// (how the front end's worker program must be set up).
    pub fn startup_advice(mut self, advice: impl Into<String>) -> Self {
        self.startup_advice = advice.into();
        self
    }

    /// Whether the process's exit waits for the accepted work (SPEC E3);
    /// on by default.
    pub fn join_at_exit(mut self, on: bool) -> Self {
        self.join_at_exit = on;
        self
    }

    /// An item whose worker died or was lost while it ran is run again,
    /// up to `n` times, before it fails with `WorkerDied`: at-least-once
    /// (it may have run, or be running still on a lost machine). Off (0)
    /// by default. A death then never breaks the pool, as with
    /// [`self_healing`](Self::self_healing).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }
}

/// Refused by [`Engine::submit`]: the call and its sink back, and why.
pub struct Refused {
    /// The call not scheduled.
    pub call: Call,
    /// Its sink, untouched.
    pub sink: Arc<dyn Sink>,
    /// [`Error::ShutDown`] or [`Error::Broken`].
    pub error: Error,
}

impl fmt::Debug for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("call", &self.call)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// The pool's state at one moment, for `Debug`.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) workers: usize,
    pub(crate) busy: usize,
    pub(crate) starting: usize,
    pub(crate) queued: usize,
    pub(crate) broken: bool,
    pub(crate) shut_down: bool,
}

/// What the engine runs with.
struct Config {
    options: EngineOptions,
    /// The worker's per-item deadline, when the transport can enforce one.
    timeout: Option<Duration>,
    transport: Arc<dyn Transport>,
    codec: Arc<dyn Codec>,
}

/// A pool of workers that runs [`Call`]s: dispatch, send-ahead, time
/// limits, cancelling running calls, self-healing and breaking, shutdown
/// (see the module docs).
///
/// # Examples
///
/// Another front end starts its own workers (here this very program,
/// with the Rust front end's codec: see `ProcessPoolExecutor` for that):
///
/// ```no_run
/// use std::sync::Arc;
/// use concurrent_futures::process::Launcher;
/// use concurrent_futures::process::engine::{Codec, Engine, EngineOptions};
/// # struct MyCodec;
/// # impl Codec for MyCodec {
/// #     fn check_worker(&self, _: &[u8]) -> Result<(), String> { Ok(()) }
/// #     fn failure_text(&self, f: &[u8]) -> String { String::from_utf8_lossy(f).into() }
/// # }
///
/// let launcher = Launcher::new("/usr/bin/python3").args(["-m", "my_package._worker"]);
/// let engine = Engine::start(EngineOptions::new(2), launcher, Arc::new(MyCodec)).unwrap();
/// assert_eq!(engine.max_workers(), 2);
/// ```
pub struct Engine {
    config: Config,
    state: Mutex<State>,
    /// Signalled when a worker's start ends (it has its link, or failed).
    started: Condvar,
    life: Lifecycle,
    supervisor: Sender<Request>,
}

enum Request {
    Spawn,
    /// A deadline was set; recompute when to wake.
    Wake,
    /// The transport may start workers it could not start before: hand
    /// out queued work again (which asks for workers as needed).
    Dispatch,
}

impl Engine {
    /// Starts an engine whose workers are processes of `launcher`'s
    /// program, which must serve with
    /// [`worker::serve_if_worker`](super::worker::serve_if_worker). Workers
    /// start when work arrives.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`], [`BuildError::ZeroTasksPerChild`].
    pub fn start(
        options: EngineOptions,
        launcher: Launcher,
        codec: Arc<dyn Codec>,
    ) -> Result<Arc<Engine>, BuildError> {
        Engine::start_on(options, Arc::new(PipeTransport::new(launcher)), codec)
    }

    /// [`start`](Self::start) on any transport.
    pub(crate) fn start_on(
        options: EngineOptions,
        transport: Arc<dyn Transport>,
        codec: Arc<dyn Codec>,
    ) -> Result<Arc<Engine>, BuildError> {
        if options.max_workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        if options.max_tasks_per_child == Some(0) {
            return Err(BuildError::ZeroTasksPerChild);
        }
        // A limit is enforced by killing: a transport that cannot kill one
        // worker cannot enforce it.
        let timeout = options.task_timeout.filter(|_| transport.stops().kill);
        let (supervisor, requests) = crossbeam_channel::unbounded();
        let join_at_exit = options.join_at_exit;
        let engine = Arc::new(Engine {
            config: Config {
                options,
                timeout,
                transport,
                codec,
            },
            state: Mutex::new(State::default()),
            started: Condvar::new(),
            life: Lifecycle::new(BrokenKind::ProcessPool),
            supervisor,
        });
        let capacity = engine.supervisor.clone();
        engine.config.transport.on_capacity(Box::new(move || {
            let _ = capacity.send(Request::Dispatch);
        }));
        let weak = Arc::downgrade(&engine);
        let id = engine.id();
        // Without the supervisor no worker can start: a pool that cannot
        // start one is broken from the first submit.
        let started = thread::Builder::new()
            .name("process-pool-supervisor".into())
            .spawn(move || {
                ENGINE_THREAD.with(|e| e.set(id));
                lifecycle::supervise(weak, requests);
            });
        if let Err(e) = started {
            engine
                .life
                .break_with(format!("could not start the pool's supervisor thread: {e}"));
        }
        if join_at_exit {
            let weak = Arc::downgrade(&engine);
            at_exit::register(weak);
        }
        Ok(engine)
    }

    /// An engine that refuses all work with `reason` and starts nothing.
    pub(crate) fn refusing(reason: String) -> Arc<Engine> {
        struct Nowhere;
        impl Transport for Nowhere {
            fn start(
                &self,
                _: Arc<dyn super::transport::LinkEvents>,
            ) -> std::io::Result<Arc<dyn super::transport::Link>> {
                Err(std::io::Error::other("this pool starts no workers"))
            }
            fn send_ahead(&self) -> super::transport::SendAhead {
                super::transport::SendAhead {
                    calls: 0,
                    max_bytes: 0,
                }
            }
            fn stops(&self) -> super::transport::Stops {
                super::transport::Stops {
                    terminate: false,
                    kill: false,
                }
            }
            fn name(&self) -> &str {
                "nowhere"
            }
        }
        struct Nothing;
        impl Codec for Nothing {
            fn check_worker(&self, _: &[u8]) -> Result<(), String> {
                Err("this pool has no workers".into())
            }
            fn failure_text(&self, failure: &[u8]) -> String {
                String::from_utf8_lossy(failure).into_owned()
            }
        }
        let options = EngineOptions::new(1).join_at_exit(false);
        let (supervisor, _) = crossbeam_channel::unbounded();
        let engine = Engine {
            config: Config {
                options,
                timeout: None,
                transport: Arc::new(Nowhere),
                codec: Arc::new(Nothing),
            },
            state: Mutex::new(State::default()),
            started: Condvar::new(),
            life: Lifecycle::new(BrokenKind::ProcessPool),
            supervisor,
        };
        engine.life.break_with(reason);
        Arc::new(engine)
    }

    fn id(&self) -> usize {
        self as *const Engine as usize
    }

    /// Whether the calling thread is one of this engine's own.
    fn on_engine_thread(&self) -> bool {
        ENGINE_THREAD.try_with(Cell::get).unwrap_or(0) == self.id()
    }

    /// What `Debug` shows of the pool.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.state.lock();
        Snapshot {
            workers: state.workers.len(),
            busy: state
                .workers
                .iter()
                .filter(|w| !w.in_flight.is_empty())
                .count(),
            starting: state.starting,
            queued: state.queue.len(),
            broken: self.life.is_broken(),
            shut_down: self.life.is_shut_down(),
        }
    }

    /// The most workers it runs at once.
    pub fn max_workers(&self) -> usize {
        self.config.options.max_workers
    }

    /// True once shut down.
    pub fn is_shut_down(&self) -> bool {
        self.life.is_shut_down()
    }

    /// True once broken.
    pub fn is_broken(&self) -> bool {
        self.life.is_broken()
    }

    /// Waits until it is shut down (or broken) and every worker is gone,
    /// at most `timeout` (`None`: no limit); true if so. What CPython's
    /// `ProcessPoolExecutor` offers as joining its manager thread.
    pub fn join(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        if timeout.is_some() && deadline.is_none() {
            return self.life.wait_stopped(None);
        }
        self.life.wait_stopped(deadline)
    }

    /// Why it broke, once it has.
    pub fn broken(&self) -> Option<BrokenExecutor> {
        self.life.broken()
    }

    /// The workers that run and take calls, by id (a worker retiring or
    /// being stopped is left out); waits up to `timeout` for workers still
    /// starting, so that a worker asked for is listed once it has a
    /// process.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use concurrent_futures::process::Launcher;
    /// # use concurrent_futures::process::engine::{Codec, Engine, EngineOptions};
    /// # struct MyCodec;
    /// # impl Codec for MyCodec {
    /// #     fn check_worker(&self, _: &[u8]) -> Result<(), String> { Ok(()) }
    /// #     fn failure_text(&self, f: &[u8]) -> String { String::from_utf8_lossy(f).into() }
    /// # }
    /// let launcher = Launcher::new("/usr/bin/python3").args(["-m", "my_package._worker"]);
    /// let engine = Engine::start(EngineOptions::new(2), launcher, Arc::new(MyCodec)).unwrap();
    /// engine.start_workers(2);
    /// let pids: Vec<u32> = engine
    ///     .workers(Duration::from_secs(5))
    ///     .iter()
    ///     .filter_map(|w| w.pid())
    ///     .collect();
    /// assert!(pids.len() <= 2);
    /// ```
    pub fn workers(&self, timeout: Duration) -> Vec<WorkerId> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.state.lock();
        while state.starting > 0 || state.workers.iter().any(|w| w.link.is_none()) {
            let timed_out = match deadline {
                Some(d) => self.started.wait_until(&mut state, d).timed_out(),
                None => {
                    self.started.wait(&mut state);
                    false
                }
            };
            if timed_out {
                break;
            }
        }
        state
            .workers
            .iter()
            .filter(|w| w.accepts_calls())
            .map(|w| w.name())
            .collect()
    }

    /// Starts workers until `n` of them (at most the pool's size) run or
    /// are starting, as if that many calls were waiting: for a front end
    /// whose workers start before work arrives (CPython's `fork` context
    /// starts every worker at the first submit).
    pub fn start_workers(&self, n: usize) {
        let mut state = self.state.lock();
        if self.life.is_broken() || self.life.is_shut_down() {
            return;
        }
        let live = state.workers.iter().filter(|w| w.stop.is_none()).count() + state.starting;
        let wanted = n.min(self.config.options.max_workers).saturating_sub(live);
        self.request_spawns(&mut state, wanted);
    }

    /// Starts one more worker if the pool is below its size and no worker
    /// that has finished a call is idle: what CPython's
    /// `ProcessPoolExecutor` does at every submit, even one whose call
    /// then fails to pickle.
    pub fn reserve_worker(&self) {
        let mut state = self.state.lock();
        if self.life.is_broken() || self.life.is_shut_down() {
            return;
        }
        let live = state.workers.iter().filter(|w| w.stop.is_none()).count() + state.starting;
        // As CPython counts idleness: a worker that finished a call and
        // has none (a fresh one is not idle yet).
        let idle = state.workers.iter().any(|w| w.idle() && w.tasks_done > 0);
        if !idle && live < self.config.options.max_workers {
            self.request_spawns(&mut state, 1);
        }
    }

    /// Hands out queued work again (see [`Request::Dispatch`]).
    fn redispatch(&self) {
        let mut state = self.state.lock();
        let settle = self.dispatch(&mut state);
        drop(state);
        settle.run();
    }

    fn request_spawns(&self, state: &mut State, n: usize) {
        for _ in 0..n {
            state.starting += 1;
            self.life.worker_started();
            let _ = self.supervisor.send(Request::Spawn);
        }
    }

    /// Whether each item's answer is sent as it ends (see the module docs).
    fn precise(&self) -> bool {
        self.config.timeout.is_some()
    }

    /// Queues `call` and hands it to an idle worker if there is one.
    ///
    /// # Errors
    ///
    /// [`Refused`], with the call and its sink back, when the pool is shut
    /// down or broken.
    pub fn submit(&self, call: Call, sink: Arc<dyn Sink>) -> Result<(), Box<Refused>> {
        let settle = {
            let mut state = self.state.lock();
            if let Err(error) = self.life.admit() {
                return Err(Box::new(Refused { call, sink, error }));
            }
            state.queue.push_back(Queued {
                call,
                sink,
                started: false,
                attempts: 0,
            });
            self.dispatch(&mut state)
        };
        settle.run();
        Ok(())
    }

    /// The message that sends call `call_id`.
    fn call_message(&self, call_id: u64, call: &Call) -> ToWorker {
        ToWorker::Call {
            id: call_id,
            function: call.function.clone(),
            lens: small_vec_of(call.items.iter().map(|i| i.len() as u64)),
            parts: call.parts(),
            report_each: self.precise(),
        }
    }

    /// Pairs idle workers with queued calls, tells idle workers to exit once
    /// shut down with nothing left, and asks for workers that are missing.
    ///
    /// Messages are queued on the workers' links here, under the lock, so
    /// that two threads dispatching to one worker cannot reorder its calls
    /// (a worker answers in the order it reads); they are sent once the
    /// lock is released ([`Settle::run`]), which never blocks.
    fn dispatch(&self, state: &mut State) -> Settle {
        let mut settle = Settle::default();
        let ahead = self.config.transport.send_ahead();
        let max_workers = self.config.options.max_workers;
        // Send ahead only once every worker runs: a worker still starting
        // will take the call sooner than a busy one.
        let full = state.starting == 0
            && state
                .workers
                .iter()
                .filter(|w| w.stop.is_none() && w.link.is_some())
                .count()
                >= max_workers;
        while let Some(front) = state.queue.front() {
            let ahead_ok = full && front.call.payload_len() <= ahead.max_bytes;
            let depth = if ahead_ok { 1 + ahead.calls } else { 1 };
            let max_tasks = self.config.options.max_tasks_per_child;
            // The least busy worker, so calls go ahead only when no worker
            // is idle.
            let Some(worker) = state
                .workers
                .iter_mut()
                .filter(|w| w.accepts_calls() && w.in_flight.len() < depth)
                // A worker about to retire takes no call it would not run.
                .filter(|w| max_tasks.is_none_or(|m| w.tasks_done + w.in_flight.len() < m))
                .min_by_key(|w| w.in_flight.len())
            else {
                break;
            };
            let Some(queued) = state.queue.pop_front() else {
                break;
            };
            if !queued.started && !queued.sink.start() {
                continue; // Cancelled while queued.
            }
            let call_id = state.next_call;
            state.next_call += 1;
            let deadline = if worker.in_flight.is_empty() && worker.ready {
                self.deadline_from_now()
            } else {
                None
            };
            if let Some(link) = &worker.link {
                link.push(self.call_message(call_id, &queued.call));
                settle.flush_later(link);
            }
            worker.in_flight.push_back(Running {
                call_id,
                attempts: queued.attempts,
                call: queued.call,
                sink: queued.sink,
                answered: 0,
                settled: None,
                owed: None,
                deadline,
            });
        }
        if self.life.is_shut_down() && state.queue.is_empty() {
            for worker in state.workers.iter_mut().filter(|w| w.idle()) {
                // Closing its input ends the worker's loop.
                worker.stop = Some(Stop::ShutDown);
                worker.close_input();
            }
        }
        let live = state.workers.iter().filter(|w| w.stop.is_none()).count() + state.starting;
        let idle = state.workers.iter().filter(|w| w.idle()).count();
        let wanted = state
            .queue
            .len()
            .saturating_sub(idle + state.starting)
            .min(max_workers.saturating_sub(live));
        if !self.life.is_broken() {
            self.request_spawns(state, wanted);
        }
        settle
    }

    /// When an item starting now must end, telling the supervisor to watch.
    fn deadline_from_now(&self) -> Option<Instant> {
        let deadline = self
            .config
            .timeout
            .and_then(|t| Instant::now().checked_add(t));
        if deadline.is_some() {
            let _ = self.supervisor.send(Request::Wake);
        }
        deadline
    }

    /// Marks the pool broken: every queued and running item fails with
    /// `reason`, every worker is killed (once `settle` has failed them).
    fn break_pool(&self, state: &mut State, reason: String, settle: &mut Settle) {
        self.break_pool_sparing(state, reason, None, settle);
    }

    /// [`break_pool`](Self::break_pool), but worker `spared` (which is
    /// exiting by itself) gets [`TERMINATE_GRACE`] before it is killed.
    fn break_pool_sparing(
        &self,
        state: &mut State,
        reason: String,
        spared: Option<u64>,
        settle: &mut Settle,
    ) {
        let error = Error::Broken(self.life.break_with(reason));
        for queued in state.queue.drain(..) {
            queued.fail_into(settle, &error);
        }
        let grace = Instant::now().checked_add(TERMINATE_GRACE);
        for worker in &mut state.workers {
            for mut running in worker.in_flight.drain(..) {
                running.fail_into(settle, &error);
            }
            worker.close_input();
            if spared == Some(worker.id) && grace.is_some() {
                worker.stop.get_or_insert(Stop::Terminated);
                worker.kill_at = grace;
                let _ = self.supervisor.send(Request::Wake);
            } else {
                // After the futures fail: they need not wait for a death.
                worker.stop_after(Stop::Terminated, StopHow::Kill, settle);
            }
        }
    }

    /// Cancels the executing call that `key` names (see [`Sink::position`])
    /// by killing its worker, which is replaced (SPEC B2); the call's other
    /// unanswered items are sent again. A call sent ahead and still waiting
    /// in a worker's input cannot be stopped without killing the call
    /// executing before it, so it is refused (false), as CPython refuses to
    /// cancel the calls it has queued to its workers; so is any call when
    /// the transport cannot kill a worker.
    pub fn cancel_running(&self, key: usize) -> bool {
        if !self.config.transport.stops().kill {
            return false;
        }
        let cancelled = {
            let mut state = self.state.lock();
            let mut cancelled = None;
            for worker in state.workers.iter_mut().filter(|w| w.stop.is_none()) {
                let Some(head) = worker.in_flight.front_mut() else {
                    continue;
                };
                let Some(index) = head.sink.position(key) else {
                    continue;
                };
                let position = head.call.items.iter().position(|i| i.index == index);
                match position {
                    Some(p) if p >= head.answered && head.settled.is_none() => {
                        // Settled now, so that `true` is the truth even if
                        // the answer is already on its way: it is dropped.
                        head.settled = Some(p);
                        cancelled = Some((Arc::clone(&head.sink), index));
                        let call_id = head.call_id;
                        worker.stop(Stop::Cancelled { call_id }, StopHow::Kill);
                    }
                    _ => {}
                }
                break;
            }
            cancelled
        };
        match cancelled {
            Some((sink, index)) => {
                sink.fail(index, Error::Cancelled);
                true
            }
            None => false,
        }
    }

    /// Stops accepting work (SPEC E3); with `wait`, blocks until every
    /// worker is gone and every future their ends failed is done. From one
    /// of the engine's own threads (a done-callback) it does not wait,
    /// since the workers' ends are heard on those threads.
    pub fn shutdown(&self, options: Shutdown) {
        let settle = {
            let mut state = self.state.lock();
            self.life.shut_down();
            // A call a worker is being started for is handed over: it runs
            // (as CPython runs the calls it moved to its call queue).
            let handed = state.starting
                + state
                    .workers
                    .iter()
                    .filter(|w| w.link.is_none() && w.stop.is_none())
                    .count();
            let cancelled: Vec<Queued> = if options.cancels_futures() {
                let keep = handed.min(state.queue.len());
                state.queue.drain(keep..).collect()
            } else {
                Vec::new()
            };
            let mut settle = self.dispatch(&mut state);
            for queued in cancelled {
                queued.cancel_into(&mut settle);
            }
            settle
        };
        settle.run();
        if options.waits() && !self.on_engine_thread() {
            self.life.wait_for_workers(false);
        }
    }

    /// Stops every worker now, gracefully (SPEC P9), and shuts down without
    /// waiting for them, as CPython 3.14 does: queued calls are cancelled,
    /// running ones fail at once. A worker still alive a second after the
    /// request is killed.
    pub fn terminate_workers(&self) {
        self.stop_workers(StopHow::Terminate);
    }

    /// [`terminate_workers`](Self::terminate_workers), killing at once.
    pub fn kill_workers(&self) {
        self.stop_workers(StopHow::Kill);
    }

    fn stop_workers(&self, how: StopHow) {
        let stops = self.config.transport.stops();
        let how = match how {
            StopHow::Terminate if !stops.terminate => StopHow::Kill,
            how => how,
        };
        let settle = {
            let mut state = self.state.lock();
            self.life.shut_down();
            let mut settle = Settle::default();
            for queued in state.queue.drain(..).collect::<Vec<_>>() {
                queued.cancel_into(&mut settle);
            }
            let name = match how {
                StopHow::Kill => "kill_workers",
                StopHow::Terminate => "terminate_workers",
            };
            let error = Error::Broken(BrokenExecutor::new(
                BrokenKind::ProcessPool,
                format!("the worker was stopped by {name} while running this task"),
            ));
            let kill_at = (how == StopHow::Terminate)
                .then(|| Instant::now().checked_add(TERMINATE_GRACE))
                .flatten();
            for worker in &mut state.workers {
                for mut running in worker.in_flight.drain(..) {
                    running.fail_into(&mut settle, &error);
                }
                worker.close_input();
                worker.stop(Stop::Terminated, how);
                worker.kill_at = kill_at;
            }
            if kill_at.is_some() {
                let _ = self.supervisor.send(Request::Wake);
            }
            settle
        };
        settle.run();
    }
}

impl FinishAtExit for Engine {
    /// The work this pool accepted finishes first (SPEC E3), as CPython's
    /// exit hook joins its workers.
    fn finish_at_exit(&self) {
        self.shutdown(Shutdown::default());
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.snapshot();
        f.debug_struct("Engine")
            .field("transport", &self.config.transport.name())
            .field("max_workers", &self.max_workers())
            .field("state", &state)
            .finish()
    }
}
