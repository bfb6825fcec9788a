//! The error kinds of SPEC X1.
//!
//! One type per concern, each matchable without comparing strings:
//!
//! | type | returned by | Python counterpart |
//! |---|---|---|
//! | [`Error`] | `result`, `exception`, `map` items, `as_completed` | `CancelledError`, `TimeoutError`, `BrokenExecutor`, the task's exception |
//! | [`SubmitError`] | `submit` | `RuntimeError("cannot schedule new futures after shutdown")`, `BrokenThreadPool` |
//! | [`InvalidStateError`] | `set_result`, `set_exception`, `set_running_or_notify_cancel` | `InvalidStateError` |
//! | [`BuildError`] | executor builders | `ValueError("max_workers must be greater than 0")` |

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::future::State;

/// Why a future has no value to give.
///
/// Cheap to clone: every variant holds at most a reference-counted payload,
/// so `result()` can be called any number of times.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Error, Future};
/// use std::time::Duration;
///
/// let f: Future<i32> = Future::new();
/// assert!(matches!(f.result_timeout(Duration::ZERO), Err(Error::Timeout)));
/// f.cancel();
/// assert!(matches!(f.result(), Err(Error::Cancelled)));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The future was cancelled before it ran (Python `CancelledError`).
    Cancelled,
    /// A wait on the future (`result_timeout`, `map`'s or `as_completed`'s
    /// timeout) ended before the future was done (Python `TimeoutError`).
    /// The future itself goes on. For `wait` a timeout is not an error.
    Timeout,
    /// The task ran longer than its pool's per-task time limit, which this
    /// holds, and was stopped: a process pool killed its worker (SPEC B1).
    /// Unlike [`Error::Timeout`] this is the future's outcome: it is done.
    TaskTimeout(Duration),
    /// The task failed: it panicked or returned an error (the task's own
    /// exception in Python).
    Failed(TaskError),
    /// The executor broke before it could run the task (Python
    /// `BrokenExecutor` and its kinds).
    Broken(BrokenExecutor),
    /// The executor was shut down before the work could be scheduled.
    ShutDown,
    /// Waiting would never end: the caller is a running task and the future
    /// it waits on is (transitively) waiting on the caller (SPEC B7).
    Deadlock,
    /// The worker process running the task died; the pool heals itself
    /// (SPEC B3). Without self-healing a death breaks the pool instead.
    WorkerDied(WorkerDeath),
    /// An argument was refused before any work was scheduled (Python
    /// `ValueError`), such as `map` with a buffer size of zero.
    InvalidArgument(&'static str),
}

impl Error {
    /// True for [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// True for [`Error::Timeout`]: a wait gave up, the future goes on.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    /// True for [`Error::TaskTimeout`]: the task itself was stopped for
    /// running past its time limit.
    pub fn is_task_timeout(&self) -> bool {
        matches!(self, Error::TaskTimeout(_))
    }

    /// The task's own failure, if that is what this error is.
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            Error::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cancelled => f.write_str("the future was cancelled"),
            Error::Timeout => f.write_str("the wait timed out before the future was done"),
            Error::TaskTimeout(limit) => write!(
                f,
                "the task ran longer than its time limit of {limit:?} and was stopped"
            ),
            Error::Failed(e) => write!(f, "the task failed: {e}"),
            Error::Broken(e) => e.fmt(f),
            Error::ShutDown => f.write_str("cannot schedule new futures after shutdown"),
            Error::Deadlock => f.write_str(
                "deadlock: the awaited future is running and (transitively) waiting on the caller",
            ),
            Error::WorkerDied(d) => d.fmt(f),
            Error::InvalidArgument(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Failed(e) => Some(e),
            Error::Broken(e) => Some(e),
            Error::WorkerDied(e) => Some(e),
            _ => None,
        }
    }
}

/// A task's own failure: a panic, the error a fallible task returned (or
/// the exception set with
/// [`Future::set_exception`](crate::Future::set_exception)), or a value of
/// the call that could not cross into or out of a worker process.
///
/// It carries what a user needs to debug the failure (SPEC F10): the panic
/// message or error text, the original error value (reachable with
/// [`downcast_ref`](TaskError::downcast_ref) and `source()`), and for
/// failures inside a worker process its pid and backtrace. [`kind`](Self::kind)
/// says which failure it is without comparing strings (SPEC X1).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Error, TaskErrorKind, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new(1).unwrap();
/// let f = pool.submit(|| -> u32 { panic!("boom") }).unwrap();
/// match f.result() {
///     Err(Error::Failed(e)) => {
///         assert_eq!(e.kind(), TaskErrorKind::Panic);
///         assert_eq!(e.panic_message(), Some("boom"));
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Clone)]
pub struct TaskError {
    repr: Arc<Repr>,
}

/// Which failure a [`TaskError`] is (SPEC X1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// The task panicked.
    Panic,
    /// The task returned an error, or one was set with `set_exception`.
    Error,
    /// A value of the call (its argument, or its result inside the worker)
    /// could not be serialized, or its `Serialize` impl panicked.
    Serialize,
    /// A value of the call (its argument inside the worker, or its result
    /// back in this process) could not be deserialized, or its
    /// `Deserialize` impl panicked.
    Deserialize,
    /// The worker reported an error in its own front end's terms (a
    /// Python exception, say), not as a Rust panic.
    Remote,
}

enum Repr {
    Panic(String),
    Error(Box<dyn std::error::Error + Send + Sync>),
    /// A value that could not be (de)serialized in this process.
    Codec {
        kind: TaskErrorKind,
        message: String,
    },
    /// A failure inside a worker process, carried back as text.
    Remote {
        kind: TaskErrorKind,
        message: String,
        backtrace: Option<String>,
        worker: WorkerId,
    },
}

impl TaskError {
    /// A failure from a task's own error value.
    pub fn new<E>(error: E) -> Self
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        TaskError {
            repr: Arc::new(Repr::Error(error.into())),
        }
    }

    /// A failure from a caught panic's payload.
    pub(crate) fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        TaskError {
            repr: Arc::new(Repr::Panic(panic_message(payload.as_ref()))),
        }
    }

    /// A value that could not be serialized or deserialized here.
    pub(crate) fn codec(kind: TaskErrorKind, message: String) -> Self {
        TaskError {
            repr: Arc::new(Repr::Codec { kind, message }),
        }
    }

    /// A failure that happened in `worker` (SPEC F10).
    pub(crate) fn remote(
        kind: TaskErrorKind,
        message: String,
        backtrace: Option<String>,
        worker: WorkerId,
    ) -> Self {
        TaskError {
            repr: Arc::new(Repr::Remote {
                kind,
                message,
                backtrace,
                worker,
            }),
        }
    }

    /// Which failure this is.
    pub fn kind(&self) -> TaskErrorKind {
        match &*self.repr {
            Repr::Panic(_) => TaskErrorKind::Panic,
            Repr::Error(_) => TaskErrorKind::Error,
            Repr::Codec { kind, .. } | Repr::Remote { kind, .. } => *kind,
        }
    }

    /// True when the task panicked, here or in a worker process.
    pub fn is_panic(&self) -> bool {
        self.kind() == TaskErrorKind::Panic
    }

    /// The panic message, when the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &*self.repr {
            Repr::Panic(m) => Some(m),
            Repr::Remote {
                kind: TaskErrorKind::Panic,
                message,
                ..
            } => Some(message),
            _ => None,
        }
    }

    /// The task's error value, when it is an `E`. Failures in worker
    /// processes arrive as text and are never an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match &*self.repr {
            Repr::Error(e) => e.downcast_ref(),
            _ => None,
        }
    }

    /// The backtrace captured in the worker process where the task failed
    /// (SPEC F10).
    pub fn remote_backtrace(&self) -> Option<&str> {
        match &*self.repr {
            Repr::Remote { backtrace, .. } => backtrace.as_deref(),
            _ => None,
        }
    }

    /// The worker process the failure happened in, if it was remote.
    pub fn remote_pid(&self) -> Option<u32> {
        self.remote_worker().and_then(WorkerId::pid)
    }

    /// The worker the failure happened in, if it was remote.
    pub fn remote_worker(&self) -> Option<&WorkerId> {
        match &*self.repr {
            Repr::Remote { worker, .. } => Some(worker),
            _ => None,
        }
    }
}

/// Renders a panic payload the way the default panic hook does.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.repr {
            Repr::Panic(m) => f.debug_tuple("Panic").field(m).finish(),
            Repr::Error(e) => f.debug_tuple("Error").field(e).finish(),
            Repr::Codec { kind, message } => f
                .debug_struct("Codec")
                .field("kind", kind)
                .field("message", message)
                .finish(),
            Repr::Remote {
                kind,
                message,
                worker,
                ..
            } => f
                .debug_struct("Remote")
                .field("kind", kind)
                .field("message", message)
                .field("worker", worker)
                .finish_non_exhaustive(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.repr {
            Repr::Panic(m) => write!(f, "panicked: {m}"),
            Repr::Error(e) => e.fmt(f),
            Repr::Codec { message, .. } => f.write_str(message),
            Repr::Remote {
                kind: TaskErrorKind::Panic,
                message,
                worker,
                ..
            } => write!(f, "panicked in worker ({worker}): {message}"),
            Repr::Remote {
                message, worker, ..
            } => write!(f, "in worker ({worker}): {message}"),
        }
    }
}

impl std::error::Error for TaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.repr {
            Repr::Error(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// How a worker ended, in terms every transport can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitCause {
    /// Killed by this signal number (9 for `SIGKILL`, 11 for `SIGSEGV`...).
    Signal(i32),
    /// Exited with this status code.
    Code(i32),
    /// Nothing more was heard from it and nothing says how it ended: its
    /// link was lost (a cluster agent or host that went away).
    Lost,
}

/// Which worker: a name for errors and logs, and its process id when it
/// is a process this machine can see.
///
/// # Examples
///
/// ```
/// use concurrent_futures::WorkerId;
///
/// let local = WorkerId::process(42);
/// assert_eq!(local.to_string(), "pid 42");
/// assert_eq!(local.pid(), Some(42));
/// let remote = WorkerId::named("agent a1, worker 3");
/// assert_eq!(remote.pid(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkerId {
    name: Arc<str>,
    pid: Option<u32>,
}

impl WorkerId {
    /// A worker process of this machine.
    pub fn process(pid: u32) -> Self {
        WorkerId {
            name: format!("pid {pid}").into(),
            pid: Some(pid),
        }
    }

    /// A worker known by name only (on another machine, say).
    pub fn named(name: impl Into<Arc<str>>) -> Self {
        WorkerId {
            name: name.into(),
            pid: None,
        }
    }

    /// Its process id, for a local worker process.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A worker died while it ran a task (SPEC B3, P6).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{ExitCause, WorkerDeath, WorkerId};
///
/// let death = WorkerDeath::new(42, ExitCause::Signal(9));
/// assert_eq!(death.to_string(), "worker died: killed by signal 9 (SIGKILL), pid 42");
/// assert_eq!(death.pid(), Some(42));
/// let lost = WorkerDeath::of(WorkerId::named("agent a1"), ExitCause::Lost);
/// assert_eq!(lost.to_string(), "worker died: lost (nothing more was heard from it), agent a1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkerDeath {
    worker: WorkerId,
    cause: ExitCause,
}

impl WorkerDeath {
    /// Worker process `pid` ended with `cause`.
    pub fn new(pid: u32, cause: ExitCause) -> Self {
        WorkerDeath::of(WorkerId::process(pid), cause)
    }

    /// `worker` ended with `cause`.
    pub fn of(worker: WorkerId, cause: ExitCause) -> Self {
        WorkerDeath { worker, cause }
    }

    /// The worker's process id, when it was a local process.
    pub fn pid(&self) -> Option<u32> {
        self.worker.pid()
    }

    /// Which worker.
    pub fn worker(&self) -> &WorkerId {
        &self.worker
    }

    /// How it ended.
    pub fn cause(&self) -> ExitCause {
        self.cause
    }
}

/// The conventional name of a signal number on this platform.
#[cfg(unix)]
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: &[(i32, &str)] = &[
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == signal)
        .map(|(_, name)| *name)
}

/// The conventional name of a signal number on this platform.
#[cfg(not(unix))]
pub(crate) fn signal_name(_signal: i32) -> Option<&'static str> {
    None
}

impl fmt::Display for ExitCause {
    /// `killed by signal 9 (SIGKILL)`, `killed by signal 34` for a signal
    /// without a conventional name, `exited with code 3`, or `lost`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitCause::Signal(s) => match signal_name(s) {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
            ExitCause::Code(c) => write!(f, "exited with code {c}"),
            ExitCause::Lost => f.write_str("lost (nothing more was heard from it)"),
        }
    }
}

impl fmt::Display for WorkerDeath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker died: {}, {}", self.cause, self.worker)
    }
}

impl std::error::Error for WorkerDeath {}

/// Which kind of executor broke (Python's subclasses of `BrokenExecutor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokenKind {
    /// Python `BrokenThreadPool`: a worker's initializer failed.
    ThreadPool,
    /// Python `BrokenProcessPool`: a worker process died or failed to start.
    ProcessPool,
}

/// The executor can no longer run work (Python `BrokenExecutor`).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{BrokenKind, Error, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::builder()
///     .max_workers(1)
///     .initializer(|| panic!("no database"))
///     .build()
///     .unwrap();
/// let f = pool.submit(|| 1).unwrap();
/// match f.result() {
///     Err(Error::Broken(b)) => assert_eq!(b.kind(), BrokenKind::ThreadPool),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Clone, Debug)]
pub struct BrokenExecutor {
    kind: BrokenKind,
    reason: Arc<str>,
}

impl BrokenExecutor {
    pub(crate) fn new(kind: BrokenKind, reason: impl Into<Arc<str>>) -> Self {
        BrokenExecutor {
            kind,
            reason: reason.into(),
        }
    }

    /// Which executor broke.
    pub fn kind(&self) -> BrokenKind {
        self.kind
    }

    /// What broke it, for people.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for BrokenExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            BrokenKind::ThreadPool => "BrokenThreadPool",
            BrokenKind::ProcessPool => "BrokenProcessPool",
        };
        write!(f, "{name}: {}", self.reason)
    }
}

impl std::error::Error for BrokenExecutor {}

/// `submit` was refused; the task comes back unrun, like
/// [`std::sync::mpsc::SendError`].
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Error, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new(1).unwrap();
/// pool.shutdown();
/// let refused = pool.submit(|| 7).unwrap_err();
/// assert!(matches!(refused.reason(), Error::ShutDown));
/// assert_eq!((refused.into_task())(), 7);
/// ```
pub struct SubmitError<F> {
    task: F,
    reason: Error,
}

impl<F> SubmitError<F> {
    pub(crate) fn new(task: F, reason: Error) -> Self {
        SubmitError { task, reason }
    }

    /// Why: [`Error::ShutDown`] or [`Error::Broken`].
    pub fn reason(&self) -> &Error {
        &self.reason
    }

    /// The task that was not scheduled.
    pub fn into_task(self) -> F {
        self.task
    }
}

impl<F> From<SubmitError<F>> for Error {
    fn from(e: SubmitError<F>) -> Error {
        e.reason
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Display for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reason.fmt(f)
    }
}

impl<F> std::error::Error for SubmitError<F> {}

/// An executor-only operation was called on a future in the wrong state
/// (Python `InvalidStateError`). The value that could not be set comes back.
///
/// # Examples
///
/// ```
/// use concurrent_futures::Future;
///
/// let f = Future::new();
/// f.set_result(1).unwrap();
/// let e = f.set_result(2).unwrap_err();
/// assert_eq!(e.into_value(), 2);
/// ```
pub struct InvalidStateError<T = ()> {
    state: State,
    value: T,
}

impl<T> InvalidStateError<T> {
    pub(crate) fn new(state: State, value: T) -> Self {
        InvalidStateError { state, value }
    }

    /// The state the future was in.
    pub fn state(&self) -> State {
        self.state
    }

    /// The value that was not set.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> fmt::Debug for InvalidStateError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidStateError")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for InvalidStateError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid state for this operation: the future is {:?}",
            self.state
        )
    }
}

impl<T> std::error::Error for InvalidStateError<T> {}

/// An executor was configured with an argument it cannot work with (Python
/// `ValueError`).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{BuildError, ThreadPoolExecutor};
///
/// assert!(matches!(ThreadPoolExecutor::new(0), Err(BuildError::ZeroWorkers)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_workers` was 0; an executor needs at least one worker.
    ZeroWorkers,
    /// `max_tasks_per_child` was 0; a worker must run at least one task.
    ZeroTasksPerChild,
    /// The process pool initializer's argument could not be serialized.
    InitializerArgument(String),
    /// A process pool was created inside a worker process whose entry did
    /// not run (see `process::run_worker_if_child`); refusing it prevents
    /// a fork bomb.
    WorkerEntryNotRun,
    /// This program cannot start workers of its own, and why (for example,
    /// the pool's code is in a shared library loaded by another program).
    NoWorkerProgram(String),
    /// A cluster pool could not reach its cluster, and why (the server is
    /// unreachable, refused the credentials, or the settings are refused).
    Cluster(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroWorkers => f.write_str("max_workers must be greater than 0"),
            BuildError::ZeroTasksPerChild => {
                f.write_str("max_tasks_per_child must be greater than 0")
            }
            BuildError::InitializerArgument(e) => {
                write!(f, "could not serialize the initializer's argument: {e}")
            }
            BuildError::NoWorkerProgram(why) => {
                write!(f, "cannot start worker processes: {why}")
            }
            BuildError::Cluster(why) => write!(f, "cannot use the cluster: {why}"),
            BuildError::WorkerEntryNotRun => f.write_str(
                "this process was started as a pool worker but its entry did not run; call \
                 concurrent_futures::process::run_worker_if_child() at the top of main",
            ),
        }
    }
}

impl std::error::Error for BuildError {}
