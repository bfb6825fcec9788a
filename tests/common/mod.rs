//! Helpers shared by the integration tests (`mod common;` in each test
//! file). Every test binary compiles its own copy and uses only some of
//! them, hence `dead_code` is allowed.
//!
//! `loom.rs` does not use this module: it is compiled under its own cfg.

#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concurrent_futures::{Error, Future, ThreadPoolExecutor};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

/// Upper bound for anything that should happen "soon": a bug fails the
/// test after this long instead of hanging it. (The process pool tests
/// keep their own, longer bounds.)
pub const LIMIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------ thread pool ----

/// A gate: tasks block on `recv()` until every `Sender` is dropped.
pub fn gate() -> (Sender<()>, Receiver<()>) {
    bounded(0)
}

/// Receives one message, failing the test instead of hanging.
pub fn recv<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(LIMIT).expect("no message within the limit")
}

/// The future's outcome, failing the test instead of hanging.
pub fn settle<T>(f: &Future<T>) -> Result<&T, Error> {
    match f.result_timeout(LIMIT) {
        Err(Error::Timeout) => panic!("{f:?} not done within {LIMIT:?}"),
        other => other,
    }
}

pub fn thread_name() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_owned()
}

/// Submits a task that reports that it started, blocks on `closed` (a
/// [`gate`]) until it opens, then returns `task()`. Returns the task's
/// future once the task is running.
pub fn start_gated<T, F>(pool: &ThreadPoolExecutor, closed: Receiver<()>, task: F) -> Future<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + Sync + 'static,
{
    let (started_tx, started) = unbounded();
    let f = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            let _ = closed.recv();
            task()
        })
        .unwrap();
    recv(&started);
    f
}

/// Submits `n` tasks one after the other, each blocked on `closed` after
/// reporting that it started, so that `n` workers run at once. Returns the
/// futures (the workers' thread names).
pub fn occupy(pool: &ThreadPoolExecutor, n: usize, closed: &Receiver<()>) -> Vec<Future<String>> {
    (0..n)
        .map(|_| start_gated(pool, closed.clone(), thread_name))
        .collect()
}

/// A task that occupies one worker until released. Declare it *after* the
/// pool: if the test panics, the blocker (and its sender) is dropped first,
/// the task returns and the pool's drop does not hang.
pub struct Blocker<T> {
    pub future: Future<T>,
    release: mpsc::Sender<()>,
}

impl<T: Send + Sync + 'static> Blocker<T> {
    /// Submits the blocking task, which returns `value` once released, and
    /// returns once it is running.
    pub fn start(pool: &ThreadPoolExecutor, value: T) -> Blocker<T> {
        let (started_tx, started_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let future = pool
            .submit(move || {
                started_tx.send(()).unwrap();
                // Returns on release or when the sender is dropped.
                let _ = release_rx.recv();
                value
            })
            .unwrap();
        started_rx
            .recv_timeout(LIMIT)
            .expect("blocker never started");
        Blocker { future, release }
    }

    /// Lets the task return, without waiting for it.
    pub fn release(&self) {
        let _ = self.release.send(());
    }

    /// Lets the task return and waits (bounded) until it has.
    pub fn release_and_wait(self) {
        self.release();
        self.future.result_timeout(LIMIT).unwrap();
    }
}

/// Runs `f` on another thread and fails (instead of hanging) if it does not
/// return within `LIMIT`.
pub fn within_limit<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .expect("the call blocked (or panicked) instead of returning")
}

// ------------------------------------------------------------ chaos ----

/// The seed of a chaos run: `CHAOS_SEED` when set (to replay a run), else
/// one from the clock.
pub fn chaos_seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

// ----------------------------------------------------- process pool ----

/// Without the library's `worker-entry` feature, a host program enters the
/// worker loop itself: here, before the test harness's `main`.
#[cfg(all(target_os = "linux", not(feature = "worker-entry")))]
#[ctor::ctor]
unsafe fn enter_the_worker_loop_if_this_is_a_worker() {
    // SAFETY (of the function being `unsafe` for ctor): it runs once,
    // before `main`.
    concurrent_futures::process::run_worker_if_child();
}

#[cfg(target_os = "linux")]
pub mod process;
