//! Python's `concurrent.futures`, in Rust: thread pools and process pools
//! whose tasks return real futures you can wait on, time out, cancel,
//! attach callbacks to and collect as they complete.
//!
//! Every Python name is here, with the same behaviour (see the README for
//! the table), plus what Python lacks: `.await` on any future, scoped tasks
//! that borrow local data, the seeds' deadlocks turned into results or
//! errors, and progress bars.
//!
//! # A tour
//!
//! Submit a call and wait for its result (Python's `executor.submit(pow,
//! 323, 1235).result()`):
//!
//! ```
//! use concurrent_futures::ThreadPoolExecutor;
//!
//! let executor = ThreadPoolExecutor::new(1).unwrap();
//! let future = executor.submit(|| 323u64.pow(3)).unwrap();
//! assert_eq!(*future.result().unwrap(), 33_698_267);
//! ```
//!
//! Collect results as they complete, keyed by their future as in the
//! seed's `future_to_url` dictionary:
//!
//! ```
//! use std::collections::HashMap;
//! use concurrent_futures::{as_completed, ThreadPoolExecutor};
//!
//! let executor = ThreadPoolExecutor::new(5).unwrap();
//! let urls = ["a.example", "bb.example", "ccc.example"];
//! let future_to_url: HashMap<_, _> = urls
//!     .iter()
//!     .map(|&url| (executor.submit(move || url.len()).unwrap(), url))
//!     .collect();
//! for future in as_completed(future_to_url.keys()) {
//!     let url = future_to_url[&future];
//!     match future.result() {
//!         Ok(len) => println!("{url:?} page is {len} bytes"),
//!         Err(e) => println!("{url:?} generated an exception: {e}"),
//!     }
//! }
//! ```
//!
//! `map` keeps input order; `wait` splits futures into done and not done:
//!
//! ```
//! use concurrent_futures::{wait, ThreadPoolExecutor, FIRST_COMPLETED};
//!
//! let executor = ThreadPoolExecutor::new(4).unwrap();
//! let squares: Vec<u64> = executor.map(|x: u64| x * x, 1..=4).map(Result::unwrap).collect();
//! assert_eq!(squares, [1, 4, 9, 16]);
//!
//! let fs: Vec<_> = (0..4).map(|i| executor.submit(move || i).unwrap()).collect();
//! let first = wait(&fs, FIRST_COMPLETED);
//! assert!(!first.done.is_empty());
//! ```
//!
//! A task that waits on another task of its own saturated pool does not
//! deadlock: the waiting worker runs the pending task itself (SPEC B7):
//!
//! ```
//! use std::sync::Arc;
//! use concurrent_futures::ThreadPoolExecutor;
//!
//! let executor = Arc::new(ThreadPoolExecutor::new(1).unwrap());
//! let inner = Arc::clone(&executor);
//! let outer = executor
//!     .submit(move || *inner.submit(|| 5u32.pow(2)).unwrap().result().unwrap())
//!     .unwrap();
//! assert_eq!(*outer.result().unwrap(), 25);
//! ```
//!
//! CPU-bound work goes to worker processes, which are this same
//! executable started again; they never run `main`, so nothing like
//! Python's `if __name__ == "__main__"` is needed. Functions cross by
//! reference, values by serde:
//!
//! ```
//! use concurrent_futures::{MapOptions, ProcessPoolExecutor};
//!
//! fn is_prime(n: u64) -> bool {
//!     n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
//! }
//!
//! let executor = ProcessPoolExecutor::new(2).unwrap();
//! let primes = executor
//!     .map_with(is_prime, 1..=100, MapOptions::new().chunksize(10))
//!     .filter(|r| matches!(r, Ok(true)))
//!     .count();
//! assert_eq!(primes, 25);
//! ```
//!
//! # Where it differs from Python
//!
//! * `result()` returns `&T` (the value stays in the future, shared by all
//!   handles); `into_result()` moves it out.
//! * Timeouts are separate methods (`result_timeout`, `result_deadline`),
//!   as with std's channels.
//! * `wait` and `as_completed` see a cancellation at once, also one made by
//!   `shutdown(cancel_futures)`; CPython's can hang on those.
//! * Dropping a pool is `shutdown(wait = true)`, like leaving `with`; a
//!   pool never dropped still finishes its work before the program exits.
//! * A task killed by its time limit fails with `Error::TaskTimeout`, a
//!   kind of its own; `Error::Timeout` is only ever a wait that gave up.
//! * `map` takes one iterable; zip several into tuples.

#![warn(missing_docs)]

mod at_exit;
mod error;
mod future;
mod lifecycle;
mod map;
mod pool_id;
mod sync;
mod task_context;
mod wait;
mod waiter;

mod async_wait;
mod executor;
#[cfg(target_os = "linux")]
pub mod process;
#[cfg(feature = "progress")]
pub mod progress;
mod scope;
mod thread_pool;

pub use error::{
    BrokenExecutor, BrokenKind, BuildError, Error, ExitCause, InvalidStateError, SubmitError,
    TaskError, TaskErrorKind, WorkerDeath, WorkerId,
};
#[cfg(concurrent_futures_loom)]
#[doc(hidden)]
pub use future::loom_hooks;
pub use future::{Future, State};
#[cfg(target_os = "linux")]
pub use process::{ProcessPoolBuilder, ProcessPoolExecutor, StartMethod};
pub use wait::{
    ALL_COMPLETED, AsCompleted, AsCompletedTimeout, DoneAndNotDone, FIRST_COMPLETED,
    FIRST_EXCEPTION, FutureHandle, FutureHasher, ReturnWhen, as_completed, as_completed_deadline,
    as_completed_timeout, wait, wait_deadline, wait_timeout,
};

pub use async_wait::{Wait, WaitOwned};
pub use executor::{ClosureExecutor, Executor, FnExecutor, Shutdown};
pub use map::{ItemCount, Map, MapOptions};
pub use scope::Scope;
pub use thread_pool::{ThreadPoolBuilder, ThreadPoolExecutor};

/// The README's quick start, compiled and run as a doctest so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
