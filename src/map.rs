//! `map`, as every pool runs it: its options and the iterator it returns
//! (SPEC E2, P8).

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};
use std::vec;

use crate::error::{Error, TaskError};
use crate::future::{Future, deadline_after};

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

/// What a pool submitted for the next items of a map, in input order.
pub(crate) enum Batch<T> {
    /// One item's future.
    One(Future<T>),
    /// `len` items sent together (a process pool's `chunksize`), under one
    /// future that holds each item's outcome in order, as CPython's
    /// `_process_chunk` does: one future per item would cost the caller an
    /// allocation and a wait for each.
    Chunk {
        future: Future<Vec<Result<T, Error>>>,
        len: usize,
    },
}

impl<T> Batch<T> {
    fn len(&self) -> usize {
        match self {
            Batch::One(_) => 1,
            Batch::Chunk { len, .. } => *len,
        }
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<(), Error> {
        match self {
            Batch::One(future) => future.block_until_done(deadline),
            Batch::Chunk { future, .. } => future.block_until_done(deadline),
        }
    }

    fn cancel(&self) {
        match self {
            Batch::One(future) => future.cancel(),
            Batch::Chunk { future, .. } => future.cancel(),
        };
    }
}

type SubmitNext<'a, T> = Box<dyn FnMut() -> Option<Result<Batch<T>, Error>> + 'a>;

/// The iterator `map` returns: each item's result in input order.
///
/// A failed item surfaces as an `Err` when the iterator reaches it, and the
/// iteration goes on. A timeout ends it. Dropping the iterator cancels
/// every item that has not started.
pub struct Map<'a, T> {
    in_flight: VecDeque<Batch<T>>,
    /// Items submitted and not yet taken, but those in `ready`.
    ahead: usize,
    /// The outcomes of the chunk being taken, the next one first.
    ready: vec::IntoIter<Result<T, Error>>,
    /// Submits the next input items; `None` once the input is exhausted.
    submit_next: Option<SubmitNext<'a, T>>,
    buffersize: usize,
    deadline: Option<Instant>,
    ended: bool,
}

impl<'a, T: 'static> Map<'a, T> {
    /// Starts a map over what `submit_next` submits, one item at a time.
    pub(crate) fn new(
        mut submit_next: impl FnMut() -> Option<Result<Future<T>, Error>> + 'a,
        options: MapOptions,
    ) -> Self {
        Map::batched(move || Some(submit_next()?.map(Batch::One)), options)
    }

    /// Starts a map over what `submit_next` submits, submitting everything
    /// now or, with a buffer size, that many items.
    pub(crate) fn batched(
        submit_next: impl FnMut() -> Option<Result<Batch<T>, Error>> + 'a,
        options: MapOptions,
    ) -> Self {
        if let Err(refused) = options.check_buffersize() {
            return Map::refused(refused);
        }
        let mut map = Map {
            in_flight: VecDeque::new(),
            ahead: 0,
            ready: Vec::new().into_iter(),
            submit_next: Some(Box::new(submit_next)),
            buffersize: options.buffersize.unwrap_or(usize::MAX),
            deadline: options.timeout.and_then(deadline_after),
            ended: false,
        };
        while map.ahead < map.buffersize && map.submit_one() {}
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
            in_flight: VecDeque::from([Batch::One(failed)]),
            ahead: 1,
            ready: Vec::new().into_iter(),
            submit_next: None,
            buffersize: usize::MAX,
            deadline: None,
            ended: false,
        }
    }

    /// Submits the next items; false when the input is exhausted.
    fn submit_one(&mut self) -> bool {
        let Some(submit) = self.submit_next.as_mut() else {
            return false;
        };
        match submit() {
            Some(Ok(batch)) => {
                self.ahead += batch.len();
                self.in_flight.push_back(batch);
                true
            }
            Some(Err(e)) => {
                // The executor refused: that item fails and so would every
                // later one, so the input ends here.
                let failed = Future::new();
                let _ = failed.complete_failed(e);
                self.ahead += 1;
                self.in_flight.push_back(Batch::One(failed));
                self.submit_next = None;
                false
            }
            None => {
                self.submit_next = None;
                false
            }
        }
    }

    /// Python 3.14: one more item goes in as each result is taken, before
    /// the map waits for that result. The item about to be taken still
    /// counts, hence `<=`: a buffer of `n` keeps `n` items in flight.
    #[inline]
    fn refill(&mut self) {
        // Checked first: a map without a buffer submitted everything at
        // the start, and this runs for every item taken.
        if self.submit_next.is_none() {
            return;
        }
        while self.ahead + self.ready.len() <= self.buffersize && self.submit_one() {}
    }
}

impl<T: 'static> Iterator for Map<'_, T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Result<T, Error>> {
        if self.ended {
            return None;
        }
        if self.ready.len() > 0 {
            self.refill();
            return self.ready.next();
        }
        let batch = self.in_flight.pop_front()?;
        self.refill();
        if let Err(e) = batch.wait(self.deadline) {
            batch.cancel();
            self.ended = true;
            self.cancel_rest();
            return Some(Err(e));
        }
        self.ahead -= batch.len();
        match batch {
            Batch::One(future) => Some(last_outcome(future)),
            Batch::Chunk { future, len } => {
                self.ready = match last_outcome(future) {
                    Ok(outcomes) => outcomes.into_iter(),
                    // Engines settle a chunk item by item (`shutdown`'s
                    // `cancel_futures` included) and only the map cancels
                    // the chunk's own future, so this does not happen;
                    // should it, the failure is each item's.
                    Err(e) => (0..len)
                        .map(|_| Err(e.clone()))
                        .collect::<Vec<_>>()
                        .into_iter(),
                };
                self.ready.next()
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.ahead + self.ready.len();
        if self.ended {
            (0, Some(0))
        } else if self.submit_next.is_none() {
            (n, Some(n))
        } else {
            (n, None)
        }
    }
}

/// The outcome of a done future that the map alone holds: the map never
/// shares its futures and executors complete them through non-handle
/// references, so its handle is the last one and the value moves out.
fn last_outcome<V>(future: Future<V>) -> Result<V, Error> {
    future.take_outcome().unwrap_or_else(|_| {
        Err(Error::Failed(TaskError::new(
            "internal error: a map result was shared",
        )))
    })
}

impl<T> Map<'_, T> {
    fn cancel_rest(&mut self) {
        self.submit_next = None;
        for batch in self.in_flight.drain(..) {
            batch.cancel();
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
            .field("ahead", &(self.ahead + self.ready.len()))
            .field("deadline", &self.deadline)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
