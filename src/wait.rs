//! `wait` and `as_completed` (SPEC W1-W3).
//!
//! Both register one [`SetWaiter`] on every pending future: O(N) to set
//! up, O(1) per completion, and a waiting thread is parked, not polling.
//! Giving up (timeout, first completion, a dropped iterator) closes the
//! waiter in O(1); futures drop closed waiters lazily.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::future::{Future, MIN_IDENTITY_GAP, deadline_after};
use crate::waiter::SetWaiter;
use std::sync::Arc;

/// When [`wait`] returns (Python's `return_when`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ReturnWhen {
    /// As soon as any future finishes or is cancelled.
    FirstCompleted,
    /// As soon as any future finishes with a failure; if none fails, when
    /// all are done.
    FirstException,
    /// When every future is done.
    #[default]
    AllCompleted,
}

/// Python's name for [`ReturnWhen::FirstCompleted`].
pub const FIRST_COMPLETED: ReturnWhen = ReturnWhen::FirstCompleted;
/// Python's name for [`ReturnWhen::FirstException`].
pub const FIRST_EXCEPTION: ReturnWhen = ReturnWhen::FirstException;
/// Python's name for [`ReturnWhen::AllCompleted`].
pub const ALL_COMPLETED: ReturnWhen = ReturnWhen::AllCompleted;

/// What [`wait`] returns (Python's `DoneAndNotDoneFutures`): the futures
/// split by whether they were done when `wait` returned, each once, in the
/// order first given.
#[derive(Debug)]
pub struct DoneAndNotDone<T> {
    /// Finished or cancelled.
    pub done: Vec<Future<T>>,
    /// Pending or running.
    pub not_done: Vec<Future<T>>,
}

/// A [`Hasher`] for maps and sets keyed by [`Future`]s: a future hashes
/// its identity (an address), which one multiplication spreads well, so
/// the default SipHash's resistance to chosen keys buys nothing there.
/// `wait` and `as_completed` use it to drop duplicates.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use std::hash::BuildHasherDefault;
/// use concurrent_futures::{Future, FutureHasher};
///
/// let f: Future<u8> = Future::new();
/// let mut names: HashMap<Future<u8>, &str, BuildHasherDefault<FutureHasher>> =
///     HashMap::default();
/// names.insert(f.clone(), "first");
/// assert_eq!(names[&f], "first");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct FutureHasher(u64);

/// Fibonacci hashing's multiplier: the high bits, which hash tables use
/// first, depend on every bit of the key.
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for FutureHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(SPREAD);
        }
    }

    fn write_usize(&mut self, id: usize) {
        self.0 = (self.0 ^ id as u64).wrapping_mul(SPREAD);
    }
}

/// A future as [`wait`] and [`as_completed`] take it: a [`Future`] itself,
/// moved in, or a reference to one, cloned. Handing over the futures
/// themselves (`as_completed(futures)`) saves a clone and a drop per
/// future, each two atomic counts on a cache line the completing worker
/// wrote last; references (`as_completed(&futures)`) leave the caller its
/// vector. Sealed: these two are the only kinds.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new(2).unwrap();
/// let fs: Vec<_> = (1..=3).map(|i| pool.submit(move || i).unwrap()).collect();
/// // By reference: `fs` stays the caller's.
/// assert_eq!(as_completed(&fs).count(), 3);
/// // By value: the iterator takes the futures over.
/// let total: i32 = as_completed(fs).map(|f| *f.result().unwrap()).sum();
/// assert_eq!(total, 6);
/// ```
pub trait FutureHandle<T>: sealed::Sealed {
    /// The future as an owned handle.
    #[doc(hidden)]
    fn into_handle(self) -> Future<T>;
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for crate::Future<T> {}
    impl<T> Sealed for &crate::Future<T> {}
}

impl<T> FutureHandle<T> for Future<T> {
    #[inline]
    fn into_handle(self) -> Future<T> {
        self
    }
}

impl<T> FutureHandle<T> for &Future<T> {
    #[inline]
    fn into_handle(self) -> Future<T> {
        self.clone()
    }
}

/// The futures once each, in first-seen order, as `wrap` makes each one.
fn unique_with<T, U>(
    fs: impl IntoIterator<Item = impl FutureHandle<T>>,
    wrap: impl Fn(Future<T>) -> U,
) -> Vec<U> {
    let mut futures: Vec<Future<T>> = fs.into_iter().map(FutureHandle::into_handle).collect();
    drop_duplicates(&mut futures);
    // In place: `U` is the future or an `Option` of it, of the same size.
    futures.into_iter().map(wrap).collect()
}

/// Drops every future but the first of each, keeping the order.
///
/// Futures made together lie close together in memory, so their
/// identities usually span a range a bitmap covers in less memory than
/// the vector of handles itself: one bit per [`MIN_IDENTITY_GAP`] bytes,
/// read and written without hashing, and small enough to stay in cache
/// (100k pool futures: 19 KiB, against about 1 MiB for a hash set, whose
/// probes missed the cache and took a quarter of `as_completed`'s time
/// over done futures). Futures spread wider fall back to a hash set.
fn drop_duplicates<T>(futures: &mut Vec<Future<T>>) {
    if futures.len() < 2 {
        return;
    }
    let (low, high) = futures.iter().fold((usize::MAX, 0), |(low, high), f| {
        (low.min(f.id()), high.max(f.id()))
    });
    let slots = (high - low) / MIN_IDENTITY_GAP + 1;
    if slots / 64 <= futures.len() {
        drop_duplicates_by_bitmap(futures, low, slots);
    } else {
        drop_duplicates_by_hash(futures);
    }
}

/// [`drop_duplicates`] for futures whose identities are at least `low`
/// and fall in `slots` slots from it.
fn drop_duplicates_by_bitmap<T>(futures: &mut Vec<Future<T>>, low: usize, slots: usize) {
    let mut seen = vec![0u64; slots.div_ceil(64)];
    futures.retain(|f| {
        let slot = (f.id() - low) / MIN_IDENTITY_GAP;
        let (word, bit) = (&mut seen[slot / 64], 1u64 << (slot % 64));
        let first = *word & bit == 0;
        *word |= bit;
        first
    });
}

/// [`drop_duplicates`] for futures spread wide.
fn drop_duplicates_by_hash<T>(futures: &mut Vec<Future<T>>) {
    let mut seen: HashSet<usize, BuildHasherDefault<FutureHasher>> =
        HashSet::with_capacity_and_hasher(futures.len(), Default::default());
    futures.retain(|f| seen.insert(f.id()));
}

/// The futures once each, in first-seen order.
fn unique<T>(fs: impl IntoIterator<Item = impl FutureHandle<T>>) -> Vec<Future<T>> {
    unique_with(fs, |f| f)
}

/// Waits for the futures, which may come from any executors, until
/// `return_when` is met (SPEC W1).
///
/// Duplicates count once. Futures cancelled by a shutdown count as done at
/// once (unlike CPython, whose `wait` can hang on them). `fs` holds the
/// futures or references to them ([`FutureHandle`]): futures handed over
/// are moved into the result, not cloned.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{wait, ThreadPoolExecutor, ALL_COMPLETED};
///
/// let pool = ThreadPoolExecutor::new(4).unwrap();
/// let fs: Vec<_> = (0..8).map(|i| pool.submit(move || i * i).unwrap()).collect();
/// let result = wait(&fs, ALL_COMPLETED);
/// assert_eq!(result.done.len(), 8);
/// assert!(result.not_done.is_empty());
/// ```
pub fn wait<T>(
    fs: impl IntoIterator<Item = impl FutureHandle<T>>,
    return_when: ReturnWhen,
) -> DoneAndNotDone<T> {
    wait_until(fs, None, return_when)
}

/// [`wait`] for at most `timeout`; on timeout it returns what is done so
/// far (a timeout is not an error here).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{wait_timeout, Future, FIRST_COMPLETED};
/// use std::time::Duration;
///
/// let never: Future<()> = Future::new();
/// let r = wait_timeout([&never], Duration::from_millis(1), FIRST_COMPLETED);
/// assert_eq!(r.not_done.len(), 1);
/// ```
pub fn wait_timeout<T>(
    fs: impl IntoIterator<Item = impl FutureHandle<T>>,
    timeout: Duration,
    return_when: ReturnWhen,
) -> DoneAndNotDone<T> {
    wait_until(fs, deadline_after(timeout), return_when)
}

/// [`wait`] until `deadline` at the latest.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{wait_deadline, Future, FIRST_EXCEPTION};
/// use std::time::Instant;
///
/// let f = Future::new();
/// f.set_result(1).unwrap();
/// let r = wait_deadline([&f], Instant::now(), FIRST_EXCEPTION);
/// assert_eq!(r.done.len(), 1);
/// ```
pub fn wait_deadline<T>(
    fs: impl IntoIterator<Item = impl FutureHandle<T>>,
    deadline: Instant,
    return_when: ReturnWhen,
) -> DoneAndNotDone<T> {
    wait_until(fs, Some(deadline), return_when)
}

fn wait_until<T>(
    fs: impl IntoIterator<Item = impl FutureHandle<T>>,
    deadline: Option<Instant>,
    return_when: ReturnWhen,
) -> DoneAndNotDone<T> {
    let futures = unique(fs);
    let satisfied = |done: usize, failed: bool| match return_when {
        // Nothing to wait for is complete at once, as in CPython.
        ReturnWhen::FirstCompleted => done > 0 || futures.is_empty(),
        ReturnWhen::FirstException => failed || done == futures.len(),
        ReturnWhen::AllCompleted => done == futures.len(),
    };
    let mut done = futures.iter().filter(|f| f.done()).count();
    let mut failed = futures.iter().any(Future::failed);
    // SPEC B7: a worker waiting on tasks of its own pool runs the ones
    // nobody started, so a saturated pool cannot wait on itself.
    let on_worker = crate::task_context::worker_pool() != crate::pool_id::NO_POOL;
    for f in futures.iter().filter(|_| on_worker) {
        if satisfied(done, failed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if f.run_inline_if_own_pool() {
            done += 1;
            failed |= f.failed();
        }
    }
    if !satisfied(done, failed) && deadline.is_none_or(|d| Instant::now() < d) {
        let waiter = Arc::new(SetWaiter::new());
        for (i, f) in futures.iter().enumerate() {
            if !f.done() && !f.register_set(&waiter, i) {
                // Done between the count above and the registration.
                waiter.notify(i);
            }
        }
        // Futures done before registering were counted already; the
        // waiter reports each future at most once, so count only the
        // reports of futures that were not done at the first count.
        let mut counted: Vec<bool> = futures.iter().map(Future::done).collect();
        done = counted.iter().filter(|&&d| d).count();
        failed = futures.iter().any(Future::failed);
        while !satisfied(done, failed) {
            let Some(i) = waiter.next_until(deadline) else {
                break;
            };
            if !std::mem::replace(&mut counted[i], true) {
                done += 1;
                failed |= futures[i].failed();
            }
        }
        waiter.close();
    }
    let (done, not_done) = futures.into_iter().partition(Future::done);
    DoneAndNotDone { done, not_done }
}

/// Yields the futures as they finish or are cancelled (SPEC W2), those
/// already done first. Duplicates are yielded once.
///
/// `fs` holds the futures or references to them ([`FutureHandle`]).
/// Handed over (`as_completed(futures)`), each future is yielded as it
/// was given, with no handle cloned or dropped on the way: the cheaper
/// form when the caller does not need its vector afterwards.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new(2).unwrap();
/// let fs: Vec<_> = (1..=3).map(|i| pool.submit(move || i * 10).unwrap()).collect();
/// let mut total = 0;
/// for f in as_completed(&fs) {
///     total += f.result().unwrap();
/// }
/// assert_eq!(total, 60);
/// ```
pub fn as_completed<T>(fs: impl IntoIterator<Item = impl FutureHandle<T>>) -> AsCompleted<T> {
    AsCompleted {
        completions: Completions::new(unique_with(fs, Some), None),
    }
}

/// [`as_completed`] with a timeout counted from this call: when it passes
/// with futures left, the iterator yields one [`Error::Timeout`] and ends.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed_timeout, Error, Future};
/// use std::time::Duration;
///
/// let done = Future::new();
/// done.set_result(1).unwrap();
/// let never = Future::new();
/// let mut it = as_completed_timeout([&done, &never], Duration::from_millis(5));
/// assert_eq!(it.next().unwrap().unwrap(), done);
/// assert!(matches!(it.next(), Some(Err(Error::Timeout))));
/// assert!(it.next().is_none());
/// ```
pub fn as_completed_timeout<T>(
    fs: impl IntoIterator<Item = impl FutureHandle<T>>,
    timeout: Duration,
) -> AsCompletedTimeout<T> {
    AsCompletedTimeout {
        completions: Completions::new(unique_with(fs, Some), Some(deadline_after(timeout))),
    }
}

/// [`as_completed_timeout`] with an absolute deadline.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed_deadline, Error, Future};
/// use std::time::Instant;
///
/// let never: Future<()> = Future::new();
/// let mut it = as_completed_deadline([&never], Instant::now());
/// assert!(matches!(it.next(), Some(Err(Error::Timeout))));
/// ```
pub fn as_completed_deadline<T>(
    fs: impl IntoIterator<Item = impl FutureHandle<T>>,
    deadline: Instant,
) -> AsCompletedTimeout<T> {
    AsCompletedTimeout {
        completions: Completions::new(unique_with(fs, Some), Some(Some(deadline))),
    }
}

/// The shared engine of both `as_completed` iterators.
#[derive(Debug)]
struct Completions<T> {
    futures: Vec<Option<Future<T>>>,
    /// Futures already done at the call, yielded first, in input order.
    early: std::vec::IntoIter<usize>,
    waiter: Arc<SetWaiter>,
    remaining: usize,
    /// `Some(None)`: a timeout too large to represent, i.e. none.
    deadline: Option<Option<Instant>>,
    timed_out: bool,
    /// Whether the iterating thread is a pool worker (SPEC B7).
    on_worker: bool,
    inline_cursor: usize,
}

impl<T> Completions<T> {
    fn new(futures: Vec<Option<Future<T>>>, deadline: Option<Option<Instant>>) -> Self {
        let waiter = Arc::new(SetWaiter::new());
        let mut early = Vec::new();
        for (i, f) in futures.iter().flatten().enumerate() {
            if f.done() || !f.register_set(&waiter, i) {
                early.push(i);
            }
        }
        Completions {
            remaining: futures.len(),
            futures,
            early: early.into_iter(),
            waiter,
            deadline,
            timed_out: false,
            on_worker: crate::task_context::worker_pool() != crate::pool_id::NO_POOL,
            inline_cursor: 0,
        }
    }

    /// SPEC B7: on a worker, runs one of our own pool's unstarted tasks
    /// rather than wait for a worker that may never come; its completion
    /// reaches the waiter like any other. A future that has left PENDING
    /// never returns to it, so the cursor only moves forward: O(N) in all.
    fn run_one_inline(&mut self) {
        while self.inline_cursor < self.futures.len() {
            let i = self.inline_cursor;
            self.inline_cursor += 1;
            if self.futures[i]
                .as_ref()
                .is_some_and(Future::run_inline_if_own_pool)
            {
                return;
            }
        }
    }

    fn take(&mut self, i: usize) -> Option<Future<T>> {
        let f = self.futures.get_mut(i)?.take()?;
        self.remaining -= 1;
        Some(f)
    }

    fn next(&mut self) -> Option<Result<Future<T>, Error>> {
        while let Some(i) = self.early.next() {
            if let Some(f) = self.take(i) {
                return Some(Ok(f));
            }
        }
        while self.remaining > 0 && !self.timed_out {
            let deadline = self.deadline.flatten();
            if self.on_worker && self.waiter.is_empty() {
                self.run_one_inline();
            }
            match self.waiter.next_until(deadline) {
                Some(i) => {
                    if let Some(f) = self.take(i) {
                        return Some(Ok(f));
                    }
                }
                None => {
                    // As CPython drops its futures once it raises: the
                    // values the caller did not take are not kept alive
                    // by an iterator that has ended.
                    self.timed_out = true;
                    self.waiter.close();
                    self.futures = Vec::new();
                    self.remaining = 0;
                    return Some(Err(Error::Timeout));
                }
            }
        }
        None
    }
}

impl<T> Drop for Completions<T> {
    fn drop(&mut self) {
        self.waiter.close();
    }
}

/// The iterator of [`as_completed`]: yields each future once, as it
/// completes.
#[derive(Debug)]
pub struct AsCompleted<T> {
    completions: Completions<T>,
}

impl<T> Iterator for AsCompleted<T> {
    type Item = Future<T>;

    fn next(&mut self) -> Option<Future<T>> {
        // Without a deadline the engine never reports a timeout.
        self.completions.next().and_then(Result::ok)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.completions.remaining, Some(self.completions.remaining))
    }
}

impl<T> ExactSizeIterator for AsCompleted<T> {}

impl<T> AsCompleted<T> {
    /// The next future to complete, waiting no later than `deadline`:
    /// `Ok(None)` once every future was yielded, [`Error::Timeout`] when
    /// the deadline came first. Unlike [`as_completed_deadline`]'s timeout
    /// this one ends nothing: the next call waits again, so a caller can
    /// wait in slices (to look at something else in between) and still
    /// see every future once.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `deadline` passed with futures left.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use concurrent_futures::{as_completed, Error, Future};
    ///
    /// let f: Future<i32> = Future::new();
    /// let mut it = as_completed([&f]);
    /// assert!(matches!(it.next_before(Instant::now()), Err(Error::Timeout)));
    /// f.set_result(1).unwrap();
    /// assert_eq!(it.next_before(Instant::now()).unwrap(), Some(f));
    /// assert_eq!(it.next_before(Instant::now()).unwrap(), None);
    /// ```
    pub fn next_before(&mut self, deadline: Instant) -> Result<Option<Future<T>>, Error> {
        if let Some(f) = self.try_next() {
            return Ok(Some(f));
        }
        let c = &mut self.completions;
        while c.remaining > 0 {
            if c.on_worker && c.waiter.is_empty() {
                c.run_one_inline();
            }
            match c.waiter.next_until(Some(deadline)) {
                Some(i) => {
                    if let Some(f) = c.take(i) {
                        return Ok(Some(f));
                    }
                }
                None => return Err(Error::Timeout),
            }
        }
        Ok(None)
    }

    /// How many futures it has yet to yield.
    pub fn remaining(&self) -> usize {
        self.completions.remaining
    }

    /// The next future that is already done, without blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{as_completed, Future};
    ///
    /// let f: Future<()> = Future::new();
    /// let mut it = as_completed([&f]);
    /// assert!(it.try_next().is_none());
    /// f.cancel();
    /// assert_eq!(it.try_next(), Some(f));
    /// ```
    pub fn try_next(&mut self) -> Option<Future<T>> {
        let c = &mut self.completions;
        while let Some(i) = c.early.next() {
            if let Some(f) = c.take(i) {
                return Some(f);
            }
        }
        while let Some(i) = c.waiter.try_next() {
            if let Some(f) = c.take(i) {
                return Some(f);
            }
        }
        None
    }
}

/// The iterator of [`as_completed_timeout`]: yields each future once, as
/// it completes, or one [`Error::Timeout`] when time runs out.
#[derive(Debug)]
pub struct AsCompletedTimeout<T> {
    completions: Completions<T>,
}

impl<T> Iterator for AsCompletedTimeout<T> {
    type Item = Result<Future<T>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.completions.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let c = &self.completions;
        if c.timed_out {
            (0, Some(0))
        } else {
            (c.remaining.min(1), Some(c.remaining))
        }
    }
}

#[cfg(all(test, not(concurrent_futures_loom)))]
mod tests {
    use super::*;

    /// Three futures, each given more than once, the order of first
    /// appearance, and the expected outcome.
    fn with_duplicates() -> (Vec<Future<u32>>, Vec<Future<u32>>) {
        let (a, b, c) = (Future::new(), Future::new(), Future::new());
        let given = vec![
            c.clone(),
            a.clone(),
            c.clone(),
            b.clone(),
            a.clone(),
            c.clone(),
        ];
        (given, vec![c, a, b])
    }

    #[test]
    fn miri_duplicates_are_dropped_in_order() {
        let (mut futures, unique) = with_duplicates();
        drop_duplicates(&mut futures);
        assert_eq!(futures, unique);
    }

    #[test]
    fn miri_both_ways_of_dropping_duplicates_agree() {
        let (mut by_hash, unique) = with_duplicates();
        drop_duplicates_by_hash(&mut by_hash);
        assert_eq!(by_hash, unique);

        // Each way on its own: the bitmap, however far apart the futures
        // happen to be, over a range that holds them all.
        let (mut by_bitmap, unique) = with_duplicates();
        let ids = by_bitmap.iter().map(Future::id);
        let (low, high) = (ids.clone().min().unwrap(), ids.max().unwrap());
        drop_duplicates_by_bitmap(&mut by_bitmap, low, (high - low) / MIN_IDENTITY_GAP + 1);
        assert_eq!(by_bitmap, unique);
    }

    #[test]
    fn miri_one_future_or_none_is_left_alone() {
        let mut none: Vec<Future<u32>> = Vec::new();
        drop_duplicates(&mut none);
        assert!(none.is_empty());
        let mut one = vec![Future::<u32>::new()];
        drop_duplicates(&mut one);
        assert_eq!(one.len(), 1);
    }
}
