//! Who is compared ([`Peer`]) and the one interface the Rust workloads
//! drive every Rust pool through ([`Pool`]).

use std::collections::VecDeque;
use std::fmt;

/// A column of the results table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// This crate's `ThreadPoolExecutor`.
    Ours,
    /// CPython's `concurrent.futures.ThreadPoolExecutor`.
    CPython,
    /// `rayon::ThreadPool::spawn` + a oneshot channel per task.
    Rayon,
    /// The `threadpool` crate + a oneshot channel per task.
    Threadpool,
    /// tokio's `spawn_blocking`, join handles awaited via `block_on`.
    Tokio,
    /// The minimal crossbeam-channel pool in `crossbeam_pool.rs`.
    Crossbeam,
}

impl Peer {
    /// Every column, in table order.
    pub const ALL: [Peer; 6] = [
        Peer::Ours,
        Peer::CPython,
        Peer::Rayon,
        Peer::Threadpool,
        Peer::Tokio,
        Peer::Crossbeam,
    ];

    /// The peers measured in this process (every one but CPython).
    pub const RUST: [Peer; 5] = [
        Peer::Ours,
        Peer::Rayon,
        Peer::Threadpool,
        Peer::Tokio,
        Peer::Crossbeam,
    ];

    /// The Rust peers other than ours.
    pub const RUST_OTHERS: [Peer; 4] =
        [Peer::Rayon, Peer::Threadpool, Peer::Tokio, Peer::Crossbeam];

    /// The command-line and table name.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Ours => "ours",
            Peer::CPython => "CPython",
            Peer::Rayon => "rayon",
            Peer::Threadpool => "threadpool",
            Peer::Tokio => "tokio",
            Peer::Crossbeam => "crossbeam",
        }
    }

    pub fn from_name(name: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pool that runs a closure and hands back something to wait on for
/// its result. Tasks return `u64` so every workload can check its sum.
///
/// The workloads that a library offers natively (`map` with a buffer
/// size, `as_completed`) are methods too: the defaults build them from
/// `spawn` and `join` the way a user of that library would, and our
/// executor overrides them with its own API.
pub trait Pool: Send + Sync + Sized + 'static {
    /// What `spawn` returns: our `Future`, a oneshot receiver, a tokio
    /// `JoinHandle`.
    type Handle: Send;

    /// A pool of exactly `workers` threads.
    fn with_workers(workers: usize) -> Self;

    fn spawn(&self, task: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle;

    /// Blocks until the task behind `handle` has run; its result.
    fn join(&self, handle: Self::Handle) -> u64;

    /// Joins every handle in order; the sum of the results.
    fn join_all(&self, handles: Vec<Self::Handle>) -> u64 {
        handles
            .into_iter()
            .map(|h| self.join(h))
            .fold(0, u64::wrapping_add)
    }

    /// Doubles `0..n` with at most `buffersize` tasks ahead of the
    /// consumer, results in order; their sum. The default is Python
    /// 3.14's algorithm: one more item goes in as each result is taken.
    fn map_buffered(&self, n: u64, buffersize: usize) -> u64 {
        let mut items = 0..n;
        let mut window: VecDeque<Self::Handle> = items
            .by_ref()
            .take(buffersize)
            .map(|x| self.spawn(move || x * 2))
            .collect();
        let mut total = 0u64;
        while let Some(front) = window.pop_front() {
            if let Some(x) = items.next() {
                window.push_back(self.spawn(move || x * 2));
            }
            total = total.wrapping_add(self.join(front));
        }
        total
    }

    /// Submits `0..n` as identity tasks and takes the results in
    /// completion order; their sum. Pools without `as_completed` get the
    /// usual substitute: every task sends its result on one shared channel
    /// (the per-task handle is still made, and dropped).
    fn submit_as_completed(&self, n: u64) -> u64 {
        let (sender, receiver) = crossbeam_channel::unbounded();
        for i in 0..n {
            let sender = sender.clone();
            drop(self.spawn(move || {
                let _ = sender.send(i);
                i
            }));
        }
        drop(sender);
        receiver.iter().fold(0, u64::wrapping_add)
    }
}

/// Runs `$body` with the type alias `$pool` naming the [`Pool`] of the
/// Rust peer `$peer`; a generic function cannot take the type from a
/// runtime value, a `match` can.
macro_rules! with_pool {
    ($peer:expr, $pool:ident => $body:expr) => {
        match $peer {
            $crate::peers::Peer::Ours => {
                type $pool = ::concurrent_futures::ThreadPoolExecutor;
                $body
            }
            $crate::peers::Peer::Rayon => {
                type $pool = $crate::pools::RayonPool;
                $body
            }
            $crate::peers::Peer::Threadpool => {
                type $pool = $crate::pools::ThreadpoolPool;
                $body
            }
            $crate::peers::Peer::Tokio => {
                type $pool = $crate::pools::TokioPool;
                $body
            }
            $crate::peers::Peer::Crossbeam => {
                type $pool = $crate::crossbeam_pool::CrossbeamPool;
                $body
            }
            $crate::peers::Peer::CPython => {
                panic!("CPython is measured by bench/python, not through Pool")
            }
        }
    };
}

pub(crate) use with_pool;
