//! Integration tests for `.await` on futures (SPEC B4, Python's
//! `asyncio.wrap_future`): under tokio, and under a minimal executor
//! written here, to show no particular runtime is needed.

use std::future::{Future as StdFuture, IntoFuture};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use concurrent_futures::{Error, Future, TaskError, ThreadPoolExecutor};

mod common;
use common::LIMIT;

/// A waker that unparks one thread and counts its wake-ups.
struct ThreadWaker {
    thread: Thread,
    wakes: AtomicUsize,
}

impl ThreadWaker {
    fn new() -> Arc<ThreadWaker> {
        Arc::new(ThreadWaker {
            thread: thread::current(),
            wakes: AtomicUsize::new(0),
        })
    }

    fn wakes(&self) -> usize {
        self.wakes.load(SeqCst)
    }
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
        self.thread.unpark();
    }
}

/// The smallest executor: poll, park until woken, poll again. Fails
/// instead of hanging after `LIMIT`.
fn block_on<F: IntoFuture>(f: F) -> F::Output {
    let mut f = pin!(f.into_future());
    let waker = Waker::from(ThreadWaker::new());
    let mut cx = Context::from_waker(&waker);
    let start = Instant::now();
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let left = LIMIT
            .checked_sub(start.elapsed())
            .expect("block_on: the future was never woken");
        thread::park_timeout(left);
    }
}

/// Polls `f` once with `waker`.
fn poll_once<F: StdFuture + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    std::pin::Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Waits (bounded) until `waker` was woken at least `n` times.
fn await_wakes(waker: &ThreadWaker, n: usize) {
    let start = Instant::now();
    while waker.wakes() < n {
        let left = LIMIT
            .checked_sub(start.elapsed())
            .expect("the waker was never woken");
        thread::park_timeout(left);
    }
}

/// A value that counts its clones, to tell a move from a copy.
#[derive(Debug)]
struct Counted {
    clones: Arc<AtomicUsize>,
    text: &'static str,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, SeqCst);
        Counted {
            clones: Arc::clone(&self.clones),
            text: self.text,
        }
    }
}

fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

// ------------------------------------------------------------- tokio ---

// SPEC B4
#[test]
fn await_pool_futures_by_reference_and_by_value_under_tokio() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let by_ref = pool
        .submit(move || {
            let _ = go_rx.recv();
            vec![1, 2, 3]
        })
        .unwrap();
    let by_value = pool.submit(|| String::from("owned")).unwrap();
    let rt = current_thread_rt();
    let (sum, s) = rt.block_on(async {
        go_tx.send(()).unwrap();
        let v: &Vec<i32> = (&by_ref).await.unwrap();
        let s: String = by_value.await.unwrap();
        (v.iter().sum::<i32>(), s)
    });
    assert_eq!((sum, s.as_str()), (6, "owned"));
    // Awaiting by reference left the value in the future.
    assert_eq!(*by_ref.result().unwrap(), [1, 2, 3]);
}

// SPEC B4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_under_the_multi_thread_runtime() {
    let pool = ThreadPoolExecutor::new(4).unwrap();
    let fs: Vec<_> = (0..16u64)
        .map(|i| pool.submit(move || i * i).unwrap())
        .collect();
    let mut total = 0;
    for f in &fs {
        total += *f.await.unwrap();
    }
    assert_eq!(total, (0..16u64).map(|i| i * i).sum::<u64>());
    let owned: Vec<u64> = {
        let mut out = Vec::new();
        for f in fs {
            out.push(f.await.unwrap());
        }
        out
    };
    assert_eq!(owned.len(), 16);
}

// SPEC B4, F2
#[tokio::test]
async fn awaiting_a_cancelled_future_gives_cancelled() {
    let f: Future<u32> = Future::new();
    f.cancel();
    assert!(matches!((&f).await, Err(Error::Cancelled)));
    assert!(matches!(f.clone().await, Err(Error::Cancelled)));
    assert!(matches!(f.await, Err(Error::Cancelled)));
}

// SPEC B4, F10
#[tokio::test]
async fn awaiting_a_failed_future_gives_the_failure() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let f = pool.submit(|| -> u32 { panic!("async boom") }).unwrap();
    match (&f).await {
        Err(Error::Failed(e)) => assert_eq!(e.panic_message(), Some("async boom")),
        other => panic!("unexpected {other:?}"),
    }
    let g: Future<u32> = Future::new();
    g.set_exception(TaskError::new("set by hand")).unwrap();
    match g.await {
        Err(Error::Failed(e)) => assert_eq!(e.to_string(), "set by hand"),
        other => panic!("unexpected {other:?}"),
    }
}

// SPEC B4
#[test]
fn many_tasks_await_the_same_future() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let f: Future<u64> = Future::new();
    let n = 64;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            let ready_tx = ready_tx.clone();
            rt.spawn(async move {
                ready_tx.send(()).unwrap();
                if i % 2 == 0 {
                    *(&f).await.unwrap()
                } else {
                    f.await.unwrap()
                }
            })
        })
        .collect();
    for _ in 0..n {
        ready_rx.recv_timeout(LIMIT).unwrap();
    }
    // Completed from a plain thread, outside the runtime.
    let g = f.clone();
    thread::spawn(move || g.set_result(77).unwrap())
        .join()
        .unwrap();
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert_eq!(results, vec![77; n]);
    assert_eq!(*f.result().unwrap(), 77);
}

// SPEC B4, F2
#[test]
fn cancel_from_another_thread_wakes_awaiting_tasks() {
    let rt = current_thread_rt();
    let f: Future<u32> = Future::new();
    let g = f.clone();
    let (polled_tx, polled_rx) = mpsc::channel::<()>();
    let canceller = thread::spawn(move || {
        polled_rx.recv().unwrap();
        assert!(g.cancel());
    });
    let r = rt.block_on(async {
        polled_tx.send(()).unwrap();
        (&f).await.copied()
    });
    assert!(matches!(r, Err(Error::Cancelled)));
    canceller.join().unwrap();
}

// SPEC B4
#[test]
fn dropping_an_awaiting_task_leaves_the_future_usable() {
    let rt = current_thread_rt();
    let f: Future<String> = Future::new();
    rt.block_on(async {
        // The future never completes in this window: the timeout fires and
        // drops the awaiting `Wait` (and, by value, a `WaitOwned`).
        let r = tokio::time::timeout(Duration::from_millis(10), (&f).into_future()).await;
        assert!(r.is_err());
        let r = tokio::time::timeout(Duration::from_millis(10), f.clone().into_future()).await;
        assert!(r.is_err());
    });
    // An aborted task that was awaiting it.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let g = f.clone();
    let task = multi.spawn(async move {
        started_tx.send(()).unwrap();
        g.await
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    task.abort();
    let joined = multi.block_on(task);
    // Aborted, or (if it raced to completion) it would carry a value; the
    // future is pending, so it can only have been aborted.
    assert!(joined.unwrap_err().is_cancelled());

    assert!(!f.done());
    f.set_result(String::from("still works")).unwrap();
    assert_eq!(f.result().unwrap(), "still works");
    let again = rt.block_on(async { (&f).await.unwrap().clone() });
    assert_eq!(again, "still works");
    assert_eq!(rt.block_on(f.into_future()).unwrap(), "still works");
}

// ------------------------------------------------- minimal executor ---

// SPEC B4
#[test]
fn await_under_a_minimal_hand_written_executor() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let f = pool.submit(|| 6 * 7).unwrap();
    assert_eq!(*block_on(&f).unwrap(), 42);
    assert_eq!(block_on(f).unwrap(), 42);

    // An async block composing several awaits.
    let a = pool.submit(|| 1).unwrap();
    let b = pool.submit(|| 2).unwrap();
    let sum = block_on(async { *(&a).await.unwrap() + b.await.unwrap() });
    assert_eq!(sum, 3);
    // Cancelled and failed.
    let c: Future<u8> = Future::new();
    c.cancel();
    assert!(matches!(block_on(&c), Err(Error::Cancelled)));
    assert!(matches!(block_on(c), Err(Error::Cancelled)));
    let e = pool.submit(|| -> u8 { panic!("in pool") }).unwrap();
    assert!(matches!(block_on(&e), Err(Error::Failed(_))));
}

// SPEC B4
#[test]
fn completion_from_another_thread_wakes_the_awaiting_task() {
    for by_value in [false, true] {
        let f: Future<u32> = Future::new();
        let waker_state = ThreadWaker::new();
        let waker = Waker::from(Arc::clone(&waker_state));
        let g = f.clone();
        let done = if by_value {
            let mut w = g.into_future();
            assert!(poll_once(&mut w, &waker).is_pending());
            let completer = {
                let f = f.clone();
                thread::spawn(move || f.set_result(5).unwrap())
            };
            await_wakes(&waker_state, 1);
            let r = poll_once(&mut w, &waker);
            completer.join().unwrap();
            matches!(r, Poll::Ready(Ok(5)))
        } else {
            let mut w = (&g).into_future();
            assert!(poll_once(&mut w, &waker).is_pending());
            // Polling again while pending keeps it registered.
            assert!(poll_once(&mut w, &waker).is_pending());
            let completer = {
                let f = f.clone();
                thread::spawn(move || f.set_result(5).unwrap())
            };
            await_wakes(&waker_state, 1);
            let r = poll_once(&mut w, &waker);
            completer.join().unwrap();
            matches!(r, Poll::Ready(Ok(&5)))
        };
        assert!(done, "ready after the wake (by value: {by_value})");
        assert_eq!(waker_state.wakes(), 1, "woken exactly once");
    }
}

// SPEC B4
#[test]
fn the_latest_waker_is_the_one_woken() {
    // A task that moved to another executor thread polls with a new waker;
    // the completion must wake that one.
    let f: Future<u32> = Future::new();
    let first = ThreadWaker::new();
    let second = ThreadWaker::new();
    let mut w = (&f).into_future();
    assert!(poll_once(&mut w, &Waker::from(Arc::clone(&first))).is_pending());
    assert!(poll_once(&mut w, &Waker::from(Arc::clone(&second))).is_pending());
    f.set_result(1).unwrap();
    assert_eq!(second.wakes(), 1);
    assert_eq!(first.wakes(), 0);
    assert!(matches!(
        poll_once(&mut w, &Waker::from(second)),
        Poll::Ready(Ok(&1))
    ));
}

// SPEC B4
#[test]
fn an_already_done_future_is_ready_at_the_first_poll() {
    let f = Future::new();
    f.set_result(3u8).unwrap();
    let waker_state = ThreadWaker::new();
    let waker = Waker::from(Arc::clone(&waker_state));
    let mut w = (&f).into_future();
    assert!(matches!(poll_once(&mut w, &waker), Poll::Ready(Ok(&3))));
    let mut o = f.clone().into_future();
    assert!(matches!(poll_once(&mut o, &waker), Poll::Ready(Ok(3))));
    assert_eq!(waker_state.wakes(), 0);
}

// SPEC B4
#[test]
fn a_dropped_awaitable_leaves_the_future_usable() {
    let f: Future<u32> = Future::new();
    let waker = Waker::from(ThreadWaker::new());
    for _ in 0..100 {
        let mut w = (&f).into_future();
        assert!(poll_once(&mut w, &waker).is_pending());
        drop(w);
        let mut o = f.clone().into_future();
        assert!(poll_once(&mut o, &waker).is_pending());
    }
    f.set_result(9).unwrap();
    assert_eq!(*block_on(&f).unwrap(), 9);
    assert_eq!(block_on(f).unwrap(), 9);
}

// SPEC B4, F4
#[test]
fn awaiting_by_value_moves_out_of_the_last_handle() {
    let clones = Arc::new(AtomicUsize::new(0));
    let f = Future::new();
    f.set_result(Counted {
        clones: Arc::clone(&clones),
        text: "moved",
    })
    .unwrap();
    let other = f.clone();
    // Another handle exists: cloned.
    assert_eq!(block_on(f).unwrap().text, "moved");
    assert_eq!(clones.load(SeqCst), 1);
    // The last handle: moved.
    assert_eq!(block_on(other).unwrap().text, "moved");
    assert_eq!(clones.load(SeqCst), 1);
}

// SPEC B4
#[test]
fn many_threads_block_on_the_same_future() {
    let f: Future<u32> = Future::new();
    let n = 8;
    let barrier = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                if i % 2 == 0 {
                    *block_on(&f).unwrap()
                } else {
                    block_on(f).unwrap()
                }
            })
        })
        .collect();
    barrier.wait();
    f.set_result(12).unwrap();
    for t in threads {
        assert_eq!(t.join().unwrap(), 12);
    }
}

// SPEC B4
#[test]
fn awaitables_are_send_for_spawning() {
    fn assert_send<T: Send>(_: &T) {}
    let f: Future<u32> = Future::new();
    let by_ref = (&f).into_future();
    assert_send(&by_ref);
    let by_value = f.clone().into_future();
    assert_send(&by_value);
    drop(by_ref);
    let task = async move { (&f).await.copied() };
    assert_send(&task);
}
