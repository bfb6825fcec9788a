//! Integration tests for the error kinds (SPEC X1): each kind is distinct
//! and matchable without comparing strings, implements
//! `std::error::Error + Send + Sync + 'static`, and says what went wrong in
//! words a user can act on.

use std::error::Error as StdError;
use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use concurrent_futures::{
    BrokenExecutor, BrokenKind, BuildError, Error, ExitCause, Future, InvalidStateError, State,
    SubmitError, TaskError, TaskErrorKind, ThreadPoolExecutor, WorkerDeath,
};

mod common;
use common::LIMIT;

#[derive(Debug, PartialEq)]
struct QuotaExceeded {
    used: u32,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quota exceeded: {} of 100 used", self.used)
    }
}

impl StdError for QuotaExceeded {}

/// A name per kind, by matching only: no string comparison.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::Cancelled => "cancelled",
        Error::Timeout => "timeout",
        Error::TaskTimeout(_) => "task timeout",
        Error::Failed(t) if t.is_panic() => "panicked",
        Error::Failed(_) => "failed",
        Error::Broken(b) if b.kind() == BrokenKind::ThreadPool => "broken thread pool",
        Error::Broken(b) if b.kind() == BrokenKind::ProcessPool => "broken process pool",
        Error::Broken(_) => "broken",
        Error::ShutDown => "shut down",
        Error::Deadlock => "deadlock",
        Error::InvalidArgument(_) => "invalid argument",
        _ => "other",
    }
}

fn assert_error<E: StdError + Send + Sync + 'static>() {}

/// A pool whose initializer panics, so it is broken (SPEC T3).
fn broken_pool() -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(1)
        .initializer(|| panic!("database unreachable"))
        .build()
        .unwrap()
}

// SPEC X1
#[test]
fn every_error_type_is_a_std_error_send_sync_static() {
    assert_error::<Error>();
    assert_error::<TaskError>();
    assert_error::<BrokenExecutor>();
    assert_error::<BuildError>();
    assert_error::<InvalidStateError>();
    assert_error::<InvalidStateError<String>>();
    assert_error::<InvalidStateError<TaskError>>();
    assert_error::<SubmitError<fn() -> u32>>();
    assert_error::<SubmitError<Box<dyn FnOnce() -> u32 + Send + Sync>>>();

    // Each converts into the usual boxed error.
    let f = Future::new();
    f.set_result(1).unwrap();
    let invalid = f.set_result(2).unwrap_err();
    let boxed: Vec<Box<dyn StdError + Send + Sync + 'static>> = vec![
        Box::new(Error::Cancelled),
        Box::new(TaskError::new("x")),
        Box::new(BuildError::ZeroWorkers),
        Box::new(invalid),
    ];
    assert!(boxed.iter().all(|e| !e.to_string().is_empty()));
}

// SPEC X1, F2, F4
#[test]
fn cancelled_is_its_own_kind() {
    let f: Future<u32> = Future::new();
    f.cancel();
    let e = f.result().unwrap_err();
    assert!(matches!(e, Error::Cancelled));
    assert!(e.is_cancelled() && !e.is_timeout());
    assert!(e.task_error().is_none());
    assert_eq!(kind(&e), "cancelled");
    let shown = e.to_string().to_lowercase();
    assert!(shown.contains("cancelled"), "{shown}");
    assert!(e.source().is_none());
}

// SPEC X1, F4
#[test]
fn timeout_is_its_own_kind() {
    let f: Future<u32> = Future::new();
    let e = f.result_timeout(Duration::ZERO).unwrap_err();
    assert!(matches!(e, Error::Timeout));
    assert!(e.is_timeout() && !e.is_cancelled());
    assert_eq!(kind(&e), "timeout");
    let shown = e.to_string().to_lowercase();
    assert!(
        shown.contains("timeout") || shown.contains("timed out"),
        "{shown}"
    );
    // The future is not affected: a timeout is the caller's, not the task's.
    assert!(!f.done());
}

// SPEC X1, F7, F8
#[test]
fn invalid_state_is_its_own_type_and_names_the_state() {
    let f = Future::new();
    f.set_result(1u8).unwrap();
    let e: InvalidStateError<u8> = f.set_result(2).unwrap_err();
    assert_eq!(e.state(), State::Finished);
    let shown = e.to_string();
    assert!(shown.to_lowercase().contains("invalid state"), "{shown}");
    assert!(shown.contains("Finished"), "{shown}");
    assert!(format!("{e:?}").contains("InvalidStateError"));
    assert_eq!(e.into_value(), 2);

    let c: Future<u8> = Future::new();
    c.cancel();
    let e = c.set_result(3).unwrap_err();
    assert_eq!(e.state(), State::Cancelled);
    assert!(e.to_string().contains("Cancelled"), "{e}");

    let r: Future<u8> = Future::new();
    r.set_running_or_notify_cancel().unwrap();
    let e: InvalidStateError = r.set_running_or_notify_cancel().unwrap_err();
    assert_eq!(e.state(), State::Running);
    assert!(e.to_string().contains("Running"), "{e}");
}

// SPEC X1, F10
#[test]
fn the_tasks_own_failure_is_its_own_kind() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let panicked = pool
        .submit(|| -> u32 { panic!("index {} out of range", 12) })
        .unwrap();
    let returned = pool
        .submit_fallible(|| -> Result<u32, QuotaExceeded> { Err(QuotaExceeded { used: 130 }) })
        .unwrap();

    let e = panicked.result_timeout(LIMIT).unwrap_err();
    assert_eq!(kind(&e), "panicked");
    let Error::Failed(task) = &e else {
        panic!("expected Failed, got {e:?}")
    };
    assert!(task.is_panic());
    assert_eq!(task.panic_message(), Some("index 12 out of range"));
    assert!(task.downcast_ref::<QuotaExceeded>().is_none());
    let shown = e.to_string();
    assert!(shown.contains("index 12 out of range"), "{shown}");
    assert!(shown.contains("panicked"), "{shown}");
    // The error chain leads to the task's error.
    assert!(e.source().is_some());

    let e = returned.result_timeout(LIMIT).unwrap_err();
    assert_eq!(kind(&e), "failed");
    let task = e.task_error().expect("the task's own error");
    assert!(!task.is_panic());
    assert_eq!(
        task.downcast_ref::<QuotaExceeded>(),
        Some(&QuotaExceeded { used: 130 })
    );
    assert!(task.downcast_ref::<std::io::Error>().is_none());
    let shown = e.to_string();
    assert!(shown.contains("quota exceeded: 130 of 100 used"), "{shown}");
    // Walking the source chain reaches the original error.
    let mut cause: Option<&(dyn StdError + 'static)> = Some(&e);
    let mut found = false;
    while let Some(c) = cause {
        found |= c.downcast_ref::<QuotaExceeded>().is_some();
        cause = c.source();
    }
    assert!(found, "the original error is in the source chain");

    // A std error kind survives too.
    let io = pool
        .submit_fallible(|| -> Result<(), std::io::Error> {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "config.toml missing",
            ))
        })
        .unwrap();
    let e = io.result_timeout(LIMIT).unwrap_err();
    let io_err = e
        .task_error()
        .and_then(|t| t.downcast_ref::<std::io::Error>())
        .expect("an io::Error");
    assert_eq!(io_err.kind(), std::io::ErrorKind::NotFound);
    assert!(e.to_string().contains("config.toml missing"));
}

// SPEC X1, F8
#[test]
fn task_error_from_strings_and_error_values() {
    let from_str = TaskError::new("plain message");
    assert_eq!(from_str.to_string(), "plain message");
    assert!(!from_str.is_panic());
    let from_string = TaskError::new(String::from("owned message"));
    assert_eq!(from_string.to_string(), "owned message");
    let from_value = TaskError::new(QuotaExceeded { used: 101 });
    assert_eq!(
        from_value.downcast_ref::<QuotaExceeded>().unwrap().used,
        101
    );
    // Cheap clones that keep the value.
    let copy = from_value.clone();
    assert_eq!(copy.downcast_ref::<QuotaExceeded>().unwrap().used, 101);
}

// SPEC X1
#[test]
fn broken_thread_pool_is_its_own_kind_for_pending_and_later_work() {
    let pool = broken_pool();
    let f = pool.submit(|| 1).unwrap();
    let e = f.result_timeout(LIMIT).unwrap_err();
    assert_eq!(kind(&e), "broken thread pool");
    let Error::Broken(b) = &e else {
        panic!("expected Broken, got {e:?}")
    };
    assert_eq!(b.kind(), BrokenKind::ThreadPool);
    assert!(
        b.reason().contains("database unreachable"),
        "{}",
        b.reason()
    );
    let shown = e.to_string();
    assert!(shown.contains("BrokenThreadPool"), "{shown}");
    assert!(shown.contains("initializer"), "{shown}");
    assert!(shown.contains("database unreachable"), "{shown}");
    assert!(e.task_error().is_none());

    // Later submits are refused with the same kind, the task given back.
    // (The break is recorded before `f` fails, so this is deterministic.)
    let refused = pool.submit(|| 2).unwrap_err();
    match refused.reason() {
        Error::Broken(b) => assert_eq!(b.kind(), BrokenKind::ThreadPool),
        other => panic!("expected Broken, got {other:?}"),
    }
    assert!(refused.to_string().contains("BrokenThreadPool"));
    assert_eq!((refused.into_task())(), 2);

    // The two broken kinds differ.
    assert_ne!(BrokenKind::ThreadPool, BrokenKind::ProcessPool);
}

// SPEC X1
#[test]
fn shut_down_is_its_own_kind_and_gives_the_task_back() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    pool.shutdown();
    let owned = String::from("precious");
    let refused = pool.submit(move || owned.len()).unwrap_err();
    assert!(matches!(refused.reason(), Error::ShutDown));
    assert_eq!(kind(refused.reason()), "shut down");
    // CPython's exact words.
    assert_eq!(
        refused.to_string(),
        "cannot schedule new futures after shutdown"
    );
    assert!(format!("{refused:?}").contains("ShutDown"));
    // The task comes back unrun, with what it captured.
    let task = refused.into_task();
    assert_eq!(task(), 8);

    let refused = pool
        .submit_fallible(|| Ok::<_, QuotaExceeded>(1))
        .unwrap_err();
    assert!(matches!(refused.reason(), Error::ShutDown));
}

// SPEC X1
#[test]
fn question_mark_converts_submit_error_into_error() {
    fn run(pool: &ThreadPoolExecutor) -> Result<u32, Error> {
        let f = pool.submit(|| 20)?;
        let g = pool.submit(|| 22)?;
        Ok(f.result()? + g.result()?)
    }
    let pool = ThreadPoolExecutor::new(2).unwrap();
    assert_eq!(run(&pool).unwrap(), 42);
    pool.shutdown();
    assert!(matches!(run(&pool), Err(Error::ShutDown)));

    let broken = broken_pool();
    // Make sure the pool has broken: its first future fails.
    let first = broken.submit(|| 0).unwrap();
    assert!(matches!(first.result_timeout(LIMIT), Err(Error::Broken(_))));
    assert!(matches!(run(&broken), Err(Error::Broken(_))));

    // And into a boxed error, as applications do.
    fn boxed(pool: &ThreadPoolExecutor) -> Result<u32, Box<dyn StdError + Send + Sync>> {
        let f = pool.submit(|| 1)?;
        Ok(*f.result()?)
    }
    let e = boxed(&pool).unwrap_err();
    assert!(e.to_string().contains("after shutdown"));
}

// SPEC X1, T1
#[test]
fn zero_workers_is_a_bad_argument() {
    let e = ThreadPoolExecutor::new(0).unwrap_err();
    assert_eq!(e, BuildError::ZeroWorkers);
    let e = ThreadPoolExecutor::builder()
        .max_workers(0)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::ZeroWorkers));
    // CPython's exact words.
    assert_eq!(e.to_string(), "max_workers must be greater than 0");
}

// SPEC X1
#[test]
fn kinds_are_distinct() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let cancelled: Future<u32> = Future::new();
    cancelled.cancel();
    let pending: Future<u32> = Future::new();
    let panicked = pool.submit(|| -> u32 { panic!("p") }).unwrap();
    let failed: Future<u32> = Future::new();
    failed.set_exception(TaskError::new("f")).unwrap();
    let broken = broken_pool();
    let broken_f = broken.submit(|| 0u32).unwrap();
    pool.shutdown();
    let shut_down = Error::from(pool.submit(|| 0u32).unwrap_err());

    let errors = [
        cancelled.result().unwrap_err(),
        pending.result_timeout(Duration::ZERO).unwrap_err(),
        panicked.result_timeout(LIMIT).unwrap_err(),
        failed.result().unwrap_err(),
        broken_f.result_timeout(LIMIT).unwrap_err(),
        shut_down,
        Error::Deadlock,
    ];
    let kinds: Vec<&str> = errors.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "cancelled",
            "timeout",
            "panicked",
            "failed",
            "broken thread pool",
            "shut down",
            "deadlock"
        ]
    );
    // Distinct messages too, each non-empty and a single line.
    let messages: std::collections::HashSet<String> =
        errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), errors.len());
    for m in &messages {
        assert!(!m.is_empty() && !m.contains('\n'), "{m:?}");
    }
    // Errors are cheap to clone and keep their kind.
    for e in &errors {
        assert_eq!(kind(&e.clone()), kind(e));
    }
}

// SPEC X1, F4
#[test]
fn errors_cross_threads() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let f = pool.submit(|| -> u32 { panic!("sent across") }).unwrap();
    let (tx, rx) = mpsc::channel::<Error>();
    let e = f.result_timeout(LIMIT).unwrap_err();
    std::thread::spawn(move || tx.send(e).unwrap())
        .join()
        .unwrap();
    let e = rx.recv().unwrap();
    assert_eq!(e.task_error().unwrap().panic_message(), Some("sent across"));
}

// SPEC X1, B1
#[test]
fn a_task_killed_by_its_time_limit_is_not_a_wait_that_timed_out() {
    let e = Error::TaskTimeout(Duration::from_millis(1500));
    assert!(e.is_task_timeout() && !e.is_timeout());
    assert_eq!(kind(&e), "task timeout");
    assert_eq!(
        e.to_string(),
        "the task ran longer than its time limit of 1.5s and was stopped"
    );
    let waited = Future::<u32>::new()
        .result_timeout(Duration::ZERO)
        .unwrap_err();
    assert!(waited.is_timeout() && !waited.is_task_timeout());
    assert!(waited.to_string().contains("wait timed out"), "{waited}");
}

// SPEC X1, F10
#[test]
fn a_task_error_says_which_failure_it_is() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let panicked = pool.submit(|| -> u32 { panic!("boom") }).unwrap();
    let returned = pool.submit_fallible(|| "x".parse::<u32>()).unwrap();
    let kind_of = |f: &Future<u32>| match f.result_timeout(LIMIT) {
        Err(Error::Failed(e)) => e.kind(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(kind_of(&panicked), TaskErrorKind::Panic);
    assert_eq!(kind_of(&returned), TaskErrorKind::Error);
    assert_eq!(TaskError::new("set").kind(), TaskErrorKind::Error);
}

// SPEC X1, P6: signals without a conventional name get their number only.
#[test]
fn worker_deaths_name_their_signal_or_give_its_number() {
    assert_eq!(
        WorkerDeath::new(7, ExitCause::Signal(9)).to_string(),
        "worker died: killed by signal 9 (SIGKILL), pid 7"
    );
    assert_eq!(
        WorkerDeath::new(7, ExitCause::Signal(13)).to_string(),
        "worker died: killed by signal 13 (SIGPIPE), pid 7"
    );
    assert_eq!(
        WorkerDeath::new(7, ExitCause::Signal(40)).to_string(),
        "worker died: killed by signal 40, pid 7"
    );
    assert_eq!(
        WorkerDeath::new(7, ExitCause::Code(3)).to_string(),
        "worker died: exited with code 3, pid 7"
    );
}
