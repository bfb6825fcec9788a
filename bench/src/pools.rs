//! [`Pool`] for our executor and for each library peer.
//!
//! The peers have no futures, so each task carries the sending half of a
//! `oneshot` channel: that is what a user of those libraries writes to get
//! a result back, and its cost is part of what is compared.

use concurrent_futures::{MapOptions, ThreadPoolExecutor, as_completed};

use crate::peers::Pool;

impl Pool for ThreadPoolExecutor {
    type Handle = concurrent_futures::Future<u64>;

    fn with_workers(workers: usize) -> Self {
        ThreadPoolExecutor::new(workers).expect("workers > 0")
    }

    fn spawn(&self, task: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        self.submit(task).expect("the pool is running")
    }

    fn join(&self, handle: Self::Handle) -> u64 {
        *handle.result().expect("the task succeeded")
    }

    fn map_buffered(&self, n: u64, buffersize: usize) -> u64 {
        self.map_with(
            |x: u64| x * 2,
            0..n,
            MapOptions::new().buffersize(buffersize),
        )
        .map(|r| r.expect("the task succeeded"))
        .fold(0, u64::wrapping_add)
    }

    fn submit_as_completed(&self, n: u64) -> u64 {
        let futures: Vec<_> = (0..n).map(|i| self.spawn(move || i)).collect();
        // Handed over, as the peers' handles are consumed: no clone.
        as_completed(futures)
            .map(|f| *f.result().expect("the task succeeded"))
            .fold(0, u64::wrapping_add)
    }
}

/// Receives what a oneshot-carrying task sent.
fn receive(handle: oneshot::Receiver<u64>) -> u64 {
    handle.recv().expect("the task ran")
}

/// `rayon::ThreadPool::spawn` (what `rayon::spawn` does on the global
/// pool, here on a pool of our size).
pub struct RayonPool(rayon::ThreadPool);

impl Pool for RayonPool {
    type Handle = oneshot::Receiver<u64>;

    fn with_workers(workers: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .expect("rayon starts its threads");
        RayonPool(pool)
    }

    fn spawn(&self, task: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        let (sender, receiver) = oneshot::channel();
        self.0.spawn(move || {
            let _ = sender.send(task());
        });
        receiver
    }

    fn join(&self, handle: Self::Handle) -> u64 {
        receive(handle)
    }
}

/// The `threadpool` crate's `execute`.
pub struct ThreadpoolPool(threadpool::ThreadPool);

impl Pool for ThreadpoolPool {
    type Handle = oneshot::Receiver<u64>;

    fn with_workers(workers: usize) -> Self {
        ThreadpoolPool(threadpool::ThreadPool::new(workers))
    }

    fn spawn(&self, task: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        let (sender, receiver) = oneshot::channel();
        self.0.execute(move || {
            let _ = sender.send(task());
        });
        receiver
    }

    fn join(&self, handle: Self::Handle) -> u64 {
        receive(handle)
    }
}

/// tokio's blocking pool: `spawn_blocking` on a multi-thread runtime
/// whose blocking pool is capped at the worker count. The runtime's one
/// async worker only drives `block_on`; it runs none of the tasks.
pub struct TokioPool(tokio::runtime::Runtime);

impl Pool for TokioPool {
    type Handle = tokio::task::JoinHandle<u64>;

    fn with_workers(workers: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(workers)
            .build()
            .expect("tokio starts its runtime");
        TokioPool(runtime)
    }

    fn spawn(&self, task: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        self.0.spawn_blocking(task)
    }

    fn join(&self, handle: Self::Handle) -> u64 {
        self.0.block_on(handle).expect("the task succeeded")
    }

    /// One `block_on` for the whole batch, as a tokio user would write it,
    /// rather than entering the runtime once per handle.
    fn join_all(&self, handles: Vec<Self::Handle>) -> u64 {
        self.0.block_on(async {
            let mut total = 0u64;
            for handle in handles {
                total = total.wrapping_add(handle.await.expect("the task succeeded"));
            }
            total
        })
    }
}
