//! Who is compared in the process-pool table ([`ProcPeer`]) and the one
//! interface the Rust process workloads drive both Rust pools through
//! ([`ProcPool`]): our `ProcessPoolExecutor` and procspawn's `Pool`.
//!
//! Both send a plain `fn(A) -> R` by reference and its argument and result
//! by value through serde, so one generic workload measures both.

use std::fmt;

use concurrent_futures::{Error, Future, ProcessPoolExecutor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::ProcessConfig;

/// A column of the process-pool table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProcPeer {
    /// This crate's `ProcessPoolExecutor`.
    Ours,
    /// CPython's `ProcessPoolExecutor` with the `fork` context (the
    /// default on Linux up to 3.13).
    CPythonFork,
    /// CPython's `ProcessPoolExecutor` with the `spawn` context: start-up
    /// only.
    CPythonSpawn,
    /// procspawn's `Pool` (`spawn` + `JoinHandle::join`).
    Procspawn,
}

impl ProcPeer {
    /// Every column, in table order.
    pub const ALL: [ProcPeer; 4] = [
        ProcPeer::Ours,
        ProcPeer::CPythonFork,
        ProcPeer::CPythonSpawn,
        ProcPeer::Procspawn,
    ];

    /// The peers measured by this harness's own child processes.
    pub const RUST: [ProcPeer; 2] = [ProcPeer::Ours, ProcPeer::Procspawn];

    /// The table heading.
    pub fn name(self) -> &'static str {
        match self {
            ProcPeer::Ours => "ours",
            ProcPeer::CPythonFork => "CPython fork",
            ProcPeer::CPythonSpawn => "CPython spawn",
            ProcPeer::Procspawn => "procspawn",
        }
    }

    /// The command-line name (`--proc-child NAME`) and the CPython
    /// script's key.
    pub fn arg(self) -> &'static str {
        match self {
            ProcPeer::Ours => "ours",
            ProcPeer::CPythonFork => "fork",
            ProcPeer::CPythonSpawn => "spawn",
            ProcPeer::Procspawn => "procspawn",
        }
    }

    pub fn from_arg(arg: &str) -> Option<ProcPeer> {
        ProcPeer::ALL.into_iter().find(|p| p.arg() == arg)
    }
}

impl fmt::Display for ProcPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What crosses to a worker and back.
pub trait Value: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Value for T {}

/// A pool of worker processes that runs `f(arg)` and hands back something
/// to wait on for the result. Failures panic: the workloads that expect
/// one (a worker's death) use each pool's own API.
pub trait ProcPool: Sized {
    /// Our `Future<R>`, procspawn's `JoinHandle<R>`.
    type Handle<R: Value>;

    /// A pool of exactly `workers` processes. Workers may start lazily.
    fn with_workers(workers: usize) -> Self;

    fn spawn<A: Value, R: Value>(&self, f: fn(A) -> R, arg: A) -> Self::Handle<R>;

    /// Blocks until the call behind `handle` has run; its result.
    fn join<R: Value>(&self, handle: Self::Handle<R>) -> R;

    /// A pool whose dead workers are replaced, failing only the call that
    /// was running (P6b).
    fn self_healing(workers: usize) -> Self;

    /// Blocks until the call behind `handle` ends; `Ok` if it failed
    /// because its worker died, the outcome otherwise.
    fn join_failure<R: Value>(&self, handle: Self::Handle<R>) -> Result<(), String>;

    /// Calls that P1 keeps outstanding at once: all of them, unless the
    /// pool cannot hold that many.
    fn max_outstanding(_cfg: &ProcessConfig) -> usize {
        usize::MAX
    }
}

impl ProcPool for ProcessPoolExecutor {
    type Handle<R: Value> = Future<R>;

    fn with_workers(workers: usize) -> Self {
        ProcessPoolExecutor::new(workers).expect("a pool with workers > 0")
    }

    fn spawn<A: Value, R: Value>(&self, f: fn(A) -> R, arg: A) -> Future<R> {
        self.submit(f, arg)
            .unwrap_or_else(|e| panic!("submit failed: {e}"))
    }

    fn join<R: Value>(&self, handle: Future<R>) -> R {
        handle
            .into_result()
            .unwrap_or_else(|e| panic!("the call failed: {e}"))
    }

    fn self_healing(workers: usize) -> Self {
        ProcessPoolExecutor::builder()
            .max_workers(workers)
            .self_healing(true)
            .build()
            .expect("a pool with workers > 0")
    }

    fn join_failure<R: Value>(&self, handle: Future<R>) -> Result<(), String> {
        match handle.result() {
            Err(Error::WorkerDied(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
            Ok(_) => Err("it succeeded".into()),
        }
    }
}

/// procspawn's pool. Its workers start in `Pool::new`; every call gets
/// two `ipc-channel`s of its own (argument and result), whose receiving
/// ends cross to the worker as file descriptors.
pub struct ProcspawnPool(pub procspawn::Pool);

impl ProcPool for ProcspawnPool {
    type Handle<R: Value> = procspawn::JoinHandle<R>;

    fn with_workers(workers: usize) -> Self {
        ProcspawnPool(procspawn::Pool::new(workers).expect("procspawn pool"))
    }

    fn spawn<A: Value, R: Value>(&self, f: fn(A) -> R, arg: A) -> procspawn::JoinHandle<R> {
        self.0.spawn(arg, f)
    }

    fn join<R: Value>(&self, handle: procspawn::JoinHandle<R>) -> R {
        handle
            .join()
            .unwrap_or_else(|e| panic!("the procspawn call failed: {e}"))
    }

    /// procspawn's pool always restarts a worker that dies.
    fn self_healing(workers: usize) -> Self {
        ProcspawnPool::with_workers(workers)
    }

    fn join_failure<R: Value>(&self, handle: procspawn::JoinHandle<R>) -> Result<(), String> {
        match handle.join() {
            Err(e) if !e.is_panic() => Ok(()),
            Err(e) => Err(e.to_string()),
            Ok(_) => Err("it succeeded".into()),
        }
    }

    /// Each pending call holds three descriptors (see
    /// [`ProcessConfig::procspawn_batch`]).
    fn max_outstanding(cfg: &ProcessConfig) -> usize {
        cfg.procspawn_batch
    }
}

/// Runs `$body` with the type alias `$pool` naming the [`ProcPool`] of
/// the Rust process peer `$peer`.
macro_rules! with_proc_pool {
    ($peer:expr, $pool:ident => $body:expr) => {
        match $peer {
            $crate::process_peers::ProcPeer::Ours => {
                type $pool = ::concurrent_futures::ProcessPoolExecutor;
                $body
            }
            $crate::process_peers::ProcPeer::Procspawn => {
                type $pool = $crate::process_peers::ProcspawnPool;
                $body
            }
            $crate::process_peers::ProcPeer::CPythonFork
            | $crate::process_peers::ProcPeer::CPythonSpawn => {
                panic!("CPython is measured by bench/python, not through ProcPool")
            }
        }
    };
}

pub(crate) use with_proc_pool;
