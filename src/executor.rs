//! What every pool shares: the executor traits, the shutdown and `map`
//! options, and the `map` iterator (SPEC E1-E4).

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::error::{Error, SubmitError};
use crate::future::{Future, deadline_after};

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

/// A count of items for [`MapOptions`]: a `usize` or a [`NonZeroUsize`].
///
/// With a `NonZeroUsize` a zero cannot be written at all; a `usize` zero
/// is refused when the map starts, as CPython 3.14 raises `ValueError`:
/// the map then yields [`Error::InvalidArgument`] and nothing else.
///
/// # Examples
///
/// ```
/// use concurrent_futures::MapOptions;
/// use std::num::NonZeroUsize;
///
/// let eight = NonZeroUsize::new(8).unwrap();
/// assert_eq!(MapOptions::new().chunksize(8), MapOptions::new().chunksize(eight));
/// ```
pub trait ItemCount: sealed::Sealed {
    /// The count as a plain number (0 when it is the refused zero).
    fn count(self) -> usize;
}

impl ItemCount for usize {
    fn count(self) -> usize {
        self
    }
}

impl ItemCount for NonZeroUsize {
    fn count(self) -> usize {
        self.get()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for usize {}
    impl Sealed for std::num::NonZeroUsize {}
}

/// Python's keyword options of `Executor.map`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{MapOptions, ThreadPoolExecutor};
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::new(2).unwrap();
/// let options = MapOptions::new().buffersize(4).timeout(Duration::from_secs(60));
/// let squares: Vec<u64> = pool
///     .map_with(|x: u64| x * x, 0..1000, options)
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(squares[999], 998_001);
/// ```
///
/// A zero is refused, as in CPython:
///
/// ```
/// use concurrent_futures::{Error, MapOptions, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new(1).unwrap();
/// let mut map = pool.map_with(|x: u32| x, 0..3, MapOptions::new().buffersize(0));
/// assert!(matches!(map.next(), Some(Err(Error::InvalidArgument(_)))));
/// assert!(map.next().is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapOptions {
    timeout: Option<Duration>,
    buffersize: Option<usize>,
    chunksize: Option<usize>,
}

impl MapOptions {
    /// No timeout, everything submitted at once, chunks of one.
    pub fn new() -> Self {
        MapOptions::default()
    }

    /// Counted from the `map` call: a result not ready in time yields
    /// [`Error::Timeout`] at that item and ends the iteration.
    pub fn timeout(self, timeout: Duration) -> Self {
        MapOptions {
            timeout: Some(timeout),
            ..self
        }
    }

    /// At most this many items are submitted ahead of the consumer, so an
    /// endless input runs in bounded memory (Python 3.14). Zero is refused
    /// (see [`ItemCount`]).
    pub fn buffersize(self, buffersize: impl ItemCount) -> Self {
        MapOptions {
            buffersize: Some(buffersize.count()),
            ..self
        }
    }

    /// Items per batch for process pools; thread pools ignore it, as in
    /// Python. Zero is refused by process pools (see [`ItemCount`]).
    pub fn chunksize(self, chunksize: impl ItemCount) -> Self {
        MapOptions {
            chunksize: Some(chunksize.count()),
            ..self
        }
    }

    /// The chunk size asked for, 1 by default.
    pub fn chunk_size(&self) -> usize {
        self.chunksize.unwrap_or(1)
    }

    /// Refuses a zero chunk size, for the pools that batch.
    pub(crate) fn check_chunksize(&self) -> Result<(), Error> {
        match self.chunksize {
            Some(0) => Err(Error::InvalidArgument("chunksize must be >= 1")),
            _ => Ok(()),
        }
    }

    fn check_buffersize(&self) -> Result<(), Error> {
        match self.buffersize {
            Some(0) => Err(Error::InvalidArgument("buffersize must be None or > 0")),
            _ => Ok(()),
        }
    }
}

type SubmitNext<'a, T> = Box<dyn FnMut() -> Option<Result<Future<T>, Error>> + 'a>;

/// The iterator `map` returns: each item's result in input order.
///
/// A failed item surfaces as an `Err` when the iterator reaches it, and the
/// iteration goes on. A timeout ends it. Dropping the iterator cancels
/// every item that has not started.
pub struct Map<'a, T> {
    in_flight: VecDeque<Future<T>>,
    /// Submits the next input item; `None` once the input is exhausted.
    submit_next: Option<SubmitNext<'a, T>>,
    deadline: Option<Instant>,
    ended: bool,
}

impl<'a, T: 'static> Map<'a, T> {
    /// Starts a map over whatever `submit_next` submits, submitting
    /// everything now or, with a buffer size, that many items.
    pub(crate) fn new(
        submit_next: impl FnMut() -> Option<Result<Future<T>, Error>> + 'a,
        options: MapOptions,
    ) -> Self {
        if let Err(refused) = options.check_buffersize() {
            return Map::refused(refused);
        }
        let deadline = options.timeout.and_then(deadline_after);
        let mut map = Map {
            in_flight: VecDeque::new(),
            submit_next: Some(Box::new(submit_next)),
            deadline,
            ended: false,
        };
        let ahead = options.buffersize.unwrap_or(usize::MAX);
        while map.in_flight.len() < ahead && map.submit_one() {}
        if options.buffersize.is_none() {
            map.submit_next = None;
        }
        map
    }

    /// A map that submits nothing and yields `error` once.
    pub(crate) fn refused(error: Error) -> Self {
        let failed = Future::new();
        let _ = failed.complete_failed(error);
        Map {
            in_flight: VecDeque::from([failed]),
            submit_next: None,
            deadline: None,
            ended: false,
        }
    }

    /// Submits one more item; false when the input is exhausted.
    fn submit_one(&mut self) -> bool {
        let Some(submit) = self.submit_next.as_mut() else {
            return false;
        };
        match submit() {
            Some(Ok(f)) => {
                self.in_flight.push_back(f);
                true
            }
            Some(Err(e)) => {
                // The executor refused: that item fails and so would every
                // later one, so the input ends here.
                let failed = Future::new();
                let _ = failed.complete_failed(e);
                self.in_flight.push_back(failed);
                self.submit_next = None;
                false
            }
            None => {
                self.submit_next = None;
                false
            }
        }
    }
}

impl<T: 'static> Iterator for Map<'_, T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Result<T, Error>> {
        if self.ended {
            return None;
        }
        let future = self.in_flight.pop_front()?;
        // Python 3.14: one more item goes in as each result is taken.
        self.submit_one();
        if let Err(e) = future.block_until_done(self.deadline) {
            future.cancel();
            self.ended = true;
            self.cancel_rest();
            return Some(Err(e));
        }
        // The map never shares its futures and executors complete them
        // through non-handle references, so this handle is the last one.
        Some(future.take_outcome().unwrap_or_else(|_| {
            Err(Error::Failed(crate::error::TaskError::new(
                "internal error: a map result was shared",
            )))
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.in_flight.len();
        if self.ended {
            (0, Some(0))
        } else if self.submit_next.is_none() {
            (n, Some(n))
        } else {
            (n, None)
        }
    }
}

impl<T> Map<'_, T> {
    fn cancel_rest(&mut self) {
        self.submit_next = None;
        for f in self.in_flight.drain(..) {
            f.cancel();
        }
    }
}

impl<T> Drop for Map<'_, T> {
    fn drop(&mut self) {
        self.cancel_rest();
    }
}

impl<T> fmt::Debug for Map<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("in_flight", &self.in_flight.len())
            .field("deadline", &self.deadline)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
