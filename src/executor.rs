//! What every pool shares: the executor traits and the shutdown options
//! (SPEC E1-E4); `map` has its own module.

use crate::error::{Error, SubmitError};
use crate::future::Future;
use crate::map::{Map, MapOptions};

/// What every pool shares (Python's `Executor`): its shutdown and its
/// state. What a pool runs is the business of the traits below it:
/// [`FnExecutor`] for `fn(A) -> R` calls, which every pool runs (a process
/// pool in its workers), and [`ClosureExecutor`] for closures, which only
/// pools in this process can run.
///
/// # Examples
///
/// Code that only stops pools takes any of them:
///
/// ```
/// use concurrent_futures::{Executor, ProcessPoolExecutor, ThreadPoolExecutor};
///
/// fn stop(pool: &impl Executor) -> bool {
///     pool.shutdown();
///     pool.is_shut_down()
/// }
///
/// assert!(stop(&ThreadPoolExecutor::new(1).unwrap()));
/// assert!(stop(&ProcessPoolExecutor::new(1).unwrap()));
/// ```
pub trait Executor {
    /// Stops accepting work (SPEC E3); see [`Shutdown`].
    fn shutdown_with(&self, options: Shutdown);

    /// `shutdown(wait=True)`: refuses new work, then waits for all pending
    /// work to finish and the workers to exit. Idempotent.
    fn shutdown(&self) {
        self.shutdown_with(Shutdown::default());
    }

    /// The most workers this pool runs at once.
    fn max_workers(&self) -> usize;

    /// True once shut down (by `shutdown`, or by terminating its workers).
    fn is_shut_down(&self) -> bool;

    /// True once broken (Python's `_broken`): a worker's initializer
    /// failed, or, in a process pool, a worker died.
    fn is_broken(&self) -> bool;
}

/// A pool that runs `fn(A) -> R` calls: every pool does, so code generic
/// over this runs on threads or on processes alike. A process pool needs
/// `A` and `R` to cross by serde; a thread pool only that they may move
/// between threads.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{FnExecutor, MapOptions, ProcessPoolExecutor, ThreadPoolExecutor};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn sum_of_squares(pool: &impl FnExecutor<u64, u64>) -> u64 {
///     let one = *pool.submit_fn(square, 3).unwrap().result().unwrap();
///     let rest: u64 = pool
///         .map_fn(square, 0..3, MapOptions::new())
///         .map(Result::unwrap)
///         .sum();
///     one + rest
/// }
///
/// assert_eq!(sum_of_squares(&ThreadPoolExecutor::new(2).unwrap()), 14);
/// assert_eq!(sum_of_squares(&ProcessPoolExecutor::new(2).unwrap()), 14);
/// ```
pub trait FnExecutor<A, R>: Executor {
    /// Schedules `f(arg)` and returns its future at once (SPEC E1).
    ///
    /// # Errors
    ///
    /// [`SubmitError`] with `arg` back when the pool is shut down or broken.
    fn submit_fn(&self, f: fn(A) -> R, arg: A) -> Result<Future<R>, SubmitError<A>>;

    /// Runs `f` over `items`; results in input order (SPEC E2, P8).
    fn map_fn<'a, I>(&'a self, f: fn(A) -> R, items: I, options: MapOptions) -> Map<'a, R>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: 'a;
}

/// A pool that runs closures in this process and hands back [`Future`]s:
/// [`ThreadPoolExecutor`](crate::ThreadPoolExecutor) and executors of your
/// own. The thread pool has inherent methods of the same names, so the
/// trait is only needed to write code generic over such executors.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{ClosureExecutor, ThreadPoolExecutor};
///
/// fn double_all(pool: &impl ClosureExecutor, xs: Vec<u32>) -> Vec<u32> {
///     pool.map(|x| x * 2, xs).map(Result::unwrap).collect()
/// }
///
/// let pool = ThreadPoolExecutor::new(2).unwrap();
/// assert_eq!(double_all(&pool, vec![1, 2, 3]), [2, 4, 6]);
/// ```
pub trait ClosureExecutor: Executor {
    /// Schedules `task` and returns its future at once (SPEC E1).
    ///
    /// # Errors
    ///
    /// [`SubmitError`] with the task when the executor is shut down or
    /// broken.
    fn submit<F, T>(&self, task: F) -> Result<Future<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + Sync + 'static;

    /// Runs `f` over `items` concurrently; results come back in input order
    /// (SPEC E2). All items are submitted at once; see
    /// [`map_with`](Self::map_with) for `timeout` and `buffersize`.
    fn map<'a, F, I, T>(&'a self, f: F, items: I) -> Map<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: 'a,
        I::Item: Send + 'static,
        T: Send + Sync + 'static,
        Self: Sized,
    {
        self.map_with(f, items, MapOptions::new())
    }

    /// [`map`](Self::map) with Python's keyword options.
    fn map_with<'a, F, I, T>(&'a self, f: F, items: I, options: MapOptions) -> Map<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: 'a,
        I::Item: Send + 'static,
        T: Send + Sync + 'static,
        Self: Sized,
    {
        let f = std::sync::Arc::new(f);
        let mut items = items.into_iter();
        let submit = move || {
            let item = items.next()?;
            let f = std::sync::Arc::clone(&f);
            Some(self.submit(move || f(item)).map_err(Error::from))
        };
        Map::new(submit, options)
    }
}

/// How [`Executor::shutdown_with`] stops a pool (Python's keywords).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Shutdown, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new(1).unwrap();
/// pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));
/// assert!(pool.submit(|| ()).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shutdown {
    wait: bool,
    cancel_futures: bool,
}

impl Default for Shutdown {
    /// `wait = true`, `cancel_futures = false`, as in Python.
    fn default() -> Self {
        Shutdown {
            wait: true,
            cancel_futures: false,
        }
    }
}

impl Shutdown {
    /// Block until pending work is done and the workers are gone (`true`),
    /// or return at once while the work still finishes (`false`).
    pub fn wait(self, wait: bool) -> Self {
        Shutdown { wait, ..self }
    }

    /// Cancel every future that has not started running.
    pub fn cancel_futures(self, cancel_futures: bool) -> Self {
        Shutdown {
            cancel_futures,
            ..self
        }
    }

    /// Whether the shutdown blocks.
    pub fn waits(&self) -> bool {
        self.wait
    }

    /// Whether the shutdown cancels what has not started.
    pub fn cancels_futures(&self) -> bool {
        self.cancel_futures
    }
}
