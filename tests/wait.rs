//! Integration tests for `wait` and `as_completed` (SPEC W1-W3).
//!
//! Outcomes are made deterministic with channels and barriers. Where a test
//! needs a thread to be *parked* inside a call (to exercise the wake-up
//! path, or to measure that it uses no CPU), it reads the thread's state
//! from `/proc` and waits, bounded, until the kernel reports it sleeping.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{
    ALL_COMPLETED, Error, FIRST_COMPLETED, FIRST_EXCEPTION, Future, ReturnWhen, Shutdown,
    TaskError, ThreadPoolExecutor, as_completed, as_completed_deadline, as_completed_timeout, wait,
    wait_deadline, wait_timeout,
};

mod common;
use common::{Blocker, LIMIT, within_limit};

/// Linux thread ids and states, read from `/proc` (libc is not a
/// dependency).
mod proc {
    use std::time::{Duration, Instant};

    /// The kernel id of the calling thread.
    pub fn current_tid() -> u32 {
        let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        link.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("a numeric thread id")
    }

    /// What the kernel says about one thread of this process.
    #[derive(Debug, Clone, Copy)]
    pub struct Sample {
        /// `R`, `S`, `D`, ... (`/proc/.../stat` field 3); `None` once the
        /// thread is gone.
        pub state: Option<char>,
        /// utime + stime, in clock ticks (USER_HZ, 100 per second on
        /// Linux).
        pub cpu_ticks: u64,
        /// How often the thread gave up the CPU by itself (slept).
        pub voluntary_switches: u64,
    }

    pub fn sample(tid: u32) -> Sample {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"));
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"));
        let (Ok(stat), Ok(status)) = (stat, status) else {
            return Sample {
                state: None,
                cpu_ticks: 0,
                voluntary_switches: 0,
            };
        };
        // The command name (field 2) may contain spaces: parse after ')'.
        let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields[0].chars().next();
        let utime: u64 = fields[11].parse().expect("utime");
        let stime: u64 = fields[12].parse().expect("stime");
        let voluntary_switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map(|v| v.trim().parse().expect("switch count"))
            .expect("voluntary_ctxt_switches");
        Sample {
            state,
            cpu_ticks: utime + stime,
            voluntary_switches,
        }
    }

    /// Waits (bounded) until the thread sleeps in the kernel, i.e. is
    /// parked; false if it exited first.
    pub fn wait_until_sleeping(tid: u32) -> bool {
        let start = Instant::now();
        loop {
            match sample(tid).state {
                Some('S') => return true,
                None => return false,
                _ => {}
            }
            assert!(
                start.elapsed() < super::LIMIT,
                "thread {tid} never went to sleep"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// `n` pending stand-alone futures.
fn pending(n: usize) -> Vec<Future<u32>> {
    (0..n).map(|_| Future::new()).collect()
}

fn done_with(v: u32) -> Future<u32> {
    let f = Future::new();
    f.set_result(v).unwrap();
    f
}

fn failed(msg: &'static str) -> Future<u32> {
    let f = Future::new();
    f.set_exception(TaskError::new(msg)).unwrap();
    f
}

/// Spawns a thread that reports its kernel id, then runs `f`.
fn spawn_reporting<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> (u32, thread::JoinHandle<R>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        tx.send(proc::current_tid()).unwrap();
        f()
    });
    (rx.recv_timeout(LIMIT).unwrap(), handle)
}

fn set_of<T>(fs: &[Future<T>]) -> HashSet<Future<T>> {
    fs.iter().cloned().collect()
}

// ---------------------------------------------------------------- W1 ---

// SPEC W1
#[test]
fn return_when_constants_and_default() {
    assert_eq!(FIRST_COMPLETED, ReturnWhen::FirstCompleted);
    assert_eq!(FIRST_EXCEPTION, ReturnWhen::FirstException);
    assert_eq!(ALL_COMPLETED, ReturnWhen::AllCompleted);
    assert_eq!(ReturnWhen::default(), ALL_COMPLETED);
}

// SPEC W1, W2
#[test]
fn empty_input_returns_at_once() {
    let none: Vec<Future<u32>> = Vec::new();
    for rw in [FIRST_EXCEPTION, ALL_COMPLETED] {
        let r = within_limit(move || wait(&[] as &[Future<u32>], rw));
        assert!(r.done.is_empty() && r.not_done.is_empty());
    }
    assert_eq!(as_completed(&none).count(), 0);
    assert_eq!(as_completed_timeout(&none, Duration::ZERO).count(), 0);
}

// SPEC W1
#[test]
fn empty_input_with_first_completed_returns_at_once() {
    let r = within_limit(|| wait(&[] as &[Future<u32>], FIRST_COMPLETED));
    assert!(r.done.is_empty() && r.not_done.is_empty());
    // With a timeout it must not wait the whole timeout either; bounded by
    // `within_limit`, a timeout longer than the limit tells the two apart.
    let r = within_limit(|| wait_timeout(&[] as &[Future<u32>], 2 * LIMIT, FIRST_COMPLETED));
    assert!(r.done.is_empty() && r.not_done.is_empty());
}

// SPEC W1
#[test]
fn first_completed_returns_when_one_finishes() {
    let fs = pending(3);
    let f1 = fs[1].clone();
    let (waiter_tid, waiter) = {
        let fs = fs.clone();
        spawn_reporting(move || wait_timeout(&fs, LIMIT, FIRST_COMPLETED))
    };
    proc::wait_until_sleeping(waiter_tid);
    f1.set_result(1).unwrap();
    let r = waiter.join().unwrap();
    assert_eq!(r.done, [fs[1].clone()]);
    assert_eq!(r.not_done, [fs[0].clone(), fs[2].clone()]);
}

// SPEC W1
#[test]
fn first_completed_returns_on_a_cancellation() {
    let fs = pending(3);
    let (waiter_tid, waiter) = {
        let fs = fs.clone();
        spawn_reporting(move || wait_timeout(&fs, LIMIT, FIRST_COMPLETED))
    };
    proc::wait_until_sleeping(waiter_tid);
    assert!(fs[2].cancel());
    let r = waiter.join().unwrap();
    assert_eq!(r.done, [fs[2].clone()]);
    assert_eq!(r.not_done.len(), 2);
}

// SPEC W1
#[test]
fn first_completed_with_one_already_done_returns_at_once() {
    let fs = vec![Future::new(), done_with(1), Future::new()];
    let r = wait(&fs, FIRST_COMPLETED);
    assert_eq!(r.done, [fs[1].clone()]);
    assert_eq!(r.not_done, [fs[0].clone(), fs[2].clone()]);
}

// SPEC W1
#[test]
fn first_completed_with_pool_futures() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let blocker = Blocker::start(&pool, 0_u32);
    let quick = pool.submit(|| 7).unwrap();
    let fs = [blocker.future.clone(), quick.clone()];
    let r = wait_timeout(&fs, LIMIT, FIRST_COMPLETED);
    // The blocker cannot finish before it is released.
    assert_eq!(r.done, [quick]);
    assert_eq!(r.not_done, std::slice::from_ref(&blocker.future));
    blocker.release();
}

// SPEC W1
#[test]
fn first_exception_returns_at_the_first_failure() {
    let fs = pending(3);
    let (waiter_tid, waiter) = {
        let fs = fs.clone();
        spawn_reporting(move || wait_timeout(&fs, LIMIT, FIRST_EXCEPTION))
    };
    proc::wait_until_sleeping(waiter_tid);
    fs[1].set_exception(TaskError::new("boom")).unwrap();
    let r = waiter.join().unwrap();
    assert_eq!(r.done, [fs[1].clone()]);
    assert_eq!(r.not_done, [fs[0].clone(), fs[2].clone()]);
}

// SPEC W1
#[test]
fn first_exception_with_a_failure_already_there_returns_at_once() {
    let fs = vec![Future::new(), done_with(1), failed("early"), Future::new()];
    let r = wait(&fs, FIRST_EXCEPTION);
    assert_eq!(r.done, [fs[1].clone(), fs[2].clone()]);
    assert_eq!(r.not_done, [fs[0].clone(), fs[3].clone()]);
}

// SPEC W1
#[test]
fn first_exception_with_a_panicking_pool_task() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let blocker = Blocker::start(&pool, 0_u32);
    let bad = pool.submit(|| -> u32 { panic!("task failed") }).unwrap();
    let fs = [blocker.future.clone(), bad.clone()];
    let r = wait_timeout(&fs, LIMIT, FIRST_EXCEPTION);
    assert_eq!(r.done, std::slice::from_ref(&bad));
    assert_eq!(r.not_done, std::slice::from_ref(&blocker.future));
    assert!(matches!(bad.result(), Err(Error::Failed(_))));
    blocker.release();
}

// SPEC W1
#[test]
fn first_exception_ignores_cancellations() {
    // Already cancelled at the call: not a failure, so wait goes on.
    let fs = pending(3);
    fs[0].cancel();
    let (waiter_tid, waiter) = {
        let fs = fs.clone();
        spawn_reporting(move || wait_timeout(&fs, LIMIT, FIRST_EXCEPTION))
    };
    assert!(proc::wait_until_sleeping(waiter_tid), "wait returned early");
    // Cancelled while waiting: still not a failure. Once the cancel has
    // been seen the waiter must go back to sleep, not return.
    assert!(fs[1].cancel());
    assert!(
        proc::wait_until_sleeping(waiter_tid),
        "wait returned on a cancellation"
    );
    fs[2].set_exception(TaskError::new("real failure")).unwrap();
    let r = waiter.join().unwrap();
    assert_eq!(r.done, fs);
    assert!(r.not_done.is_empty());
}

// SPEC W1
#[test]
fn first_exception_without_failures_is_all_completed() {
    let fs = pending(4);
    fs[0].set_result(0).unwrap();
    let (waiter_tid, waiter) = {
        let fs = fs.clone();
        spawn_reporting(move || wait_timeout(&fs, LIMIT, FIRST_EXCEPTION))
    };
    proc::wait_until_sleeping(waiter_tid);
    fs[1].set_result(1).unwrap();
    fs[2].cancel();
    assert!(proc::wait_until_sleeping(waiter_tid), "returned too early");
    fs[3].set_result(3).unwrap();
    let r = waiter.join().unwrap();
    assert_eq!(r.done, fs);
    assert!(r.not_done.is_empty());

    // The same with everything done at the call, and with a timeout.
    let fs = vec![done_with(1), done_with(2)];
    let cancelled = Future::new();
    cancelled.cancel();
    let mut with_cancel = fs.clone();
    with_cancel.push(cancelled);
    let r = wait(&with_cancel, FIRST_EXCEPTION);
    assert_eq!(r.done, with_cancel);
    let mut with_pending = fs.clone();
    with_pending.push(Future::new());
    let r = wait_timeout(&with_pending, Duration::from_millis(10), FIRST_EXCEPTION);
    assert_eq!(r.done, fs);
    assert_eq!(r.not_done.len(), 1);
}

// SPEC W1
#[test]
fn all_completed_waits_for_every_future_and_keeps_input_order() {
    let pool = ThreadPoolExecutor::new(4).unwrap();
    let fs: Vec<_> = (0..16u32)
        .map(|i| pool.submit(move || i * i).unwrap())
        .collect();
    let r = wait(&fs, ALL_COMPLETED);
    assert!(r.not_done.is_empty());
    assert_eq!(r.done, fs);
    for (i, f) in r.done.iter().enumerate() {
        assert_eq!(*f.result().unwrap(), (i * i) as u32);
    }
}

// SPEC W1
#[test]
fn all_completed_counts_failures_and_cancellations_as_done() {
    let fs = pending(3);
    let (waiter_tid, waiter) = {
        let fs = fs.clone();
        spawn_reporting(move || wait_timeout(&fs, LIMIT, ALL_COMPLETED))
    };
    proc::wait_until_sleeping(waiter_tid);
    fs[0].set_exception(TaskError::new("x")).unwrap();
    fs[1].cancel();
    assert!(proc::wait_until_sleeping(waiter_tid), "returned too early");
    fs[2].set_result(2).unwrap();
    let r = waiter.join().unwrap();
    assert_eq!(r.done, fs);
}

// SPEC W1
#[test]
fn timeout_returns_what_is_done_and_is_not_an_error() {
    let fs = vec![done_with(1), Future::new(), failed("f"), Future::new()];
    for rw in [ALL_COMPLETED, FIRST_EXCEPTION] {
        let r = wait_timeout(&fs[..2], Duration::from_millis(5), rw);
        assert_eq!(r.done, [fs[0].clone()]);
        assert_eq!(r.not_done, [fs[1].clone()]);
    }
    let r = wait_timeout(&fs, Duration::ZERO, ALL_COMPLETED);
    assert_eq!(r.done, [fs[0].clone(), fs[2].clone()]);
    assert_eq!(r.not_done, [fs[1].clone(), fs[3].clone()]);
    let r = wait_deadline(&fs, Instant::now(), ALL_COMPLETED);
    assert_eq!(r.done.len(), 2);
    let never = [Future::<u32>::new()];
    let r = wait_timeout(&never, Duration::from_millis(5), FIRST_COMPLETED);
    assert!(r.done.is_empty());
    assert_eq!(r.not_done, never);
    // The futures are untouched and can still complete.
    fs[1].set_result(1).unwrap();
    fs[3].set_result(3).unwrap();
    assert!(wait(&fs, ALL_COMPLETED).not_done.is_empty());
}

// SPEC W1
#[test]
fn huge_timeouts_do_not_panic_or_overflow() {
    for d in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(60 * 60 * 24 * 365 * 1000),
    ] {
        let fs = vec![done_with(1), Future::new()];
        let g = fs[1].clone();
        let (tx, rx) = mpsc::channel::<()>();
        let completer = thread::spawn(move || {
            rx.recv().unwrap();
            g.set_result(2).unwrap();
        });
        let r = wait_timeout(&fs, d, FIRST_COMPLETED);
        assert_eq!(r.done, [fs[0].clone()]);
        tx.send(()).unwrap();
        let r = wait_timeout(&fs, d, ALL_COMPLETED);
        assert_eq!(r.done, fs);
        completer.join().unwrap();
        let got: Vec<_> = as_completed_timeout(&fs, d).map(Result::unwrap).collect();
        assert_eq!(got.len(), 2);
    }
    let far = Instant::now() + Duration::from_secs(60 * 60 * 24 * 365 * 100);
    let fs = [done_with(3)];
    assert_eq!(wait_deadline(&fs, far, ALL_COMPLETED).done.len(), 1);
    assert_eq!(as_completed_deadline(&fs, far).count(), 1);
}

// SPEC W1
#[test]
fn duplicates_count_once() {
    let a = done_with(1);
    let b = Future::new();
    let fs = [a.clone(), a.clone(), b.clone(), a.clone(), b.clone()];
    let r = wait_timeout(&fs, Duration::from_millis(5), ALL_COMPLETED);
    assert_eq!(r.done, std::slice::from_ref(&a));
    assert_eq!(r.not_done, std::slice::from_ref(&b));
    let r = wait(&fs, FIRST_COMPLETED);
    assert_eq!(r.done, std::slice::from_ref(&a));
    assert_eq!(r.not_done, std::slice::from_ref(&b));

    // A pending duplicate completing once satisfies ALL_COMPLETED.
    let c: Future<u32> = Future::new();
    let fs = [c.clone(), c.clone(), c.clone()];
    let g = c.clone();
    let t = thread::spawn(move || g.set_result(5).unwrap());
    let r = wait_timeout(&fs, LIMIT, ALL_COMPLETED);
    assert_eq!(r.done, std::slice::from_ref(&c));
    assert!(r.not_done.is_empty());
    t.join().unwrap();

    // Two different pending futures, one listed many times: completing the
    // repeated one must not make ALL_COMPLETED think everything is done.
    let p = Future::new();
    let q = Future::new();
    let fs = [p.clone(), p.clone(), p.clone(), q.clone()];
    let (waiter_tid, waiter) = {
        let fs = fs.clone();
        spawn_reporting(move || wait_timeout(&fs, LIMIT, ALL_COMPLETED))
    };
    proc::wait_until_sleeping(waiter_tid);
    p.set_result(1).unwrap();
    assert!(proc::wait_until_sleeping(waiter_tid), "returned too early");
    q.set_result(2).unwrap();
    let r = waiter.join().unwrap();
    assert_eq!(r.done, [p, q]);
}

// SPEC W1
#[test]
fn futures_from_different_executors_and_standalone_ones() {
    let pool_a = ThreadPoolExecutor::new(2).unwrap();
    let pool_b = ThreadPoolExecutor::builder()
        .max_workers(1)
        .thread_name_prefix("other")
        .build()
        .unwrap();
    let standalone = Future::new();
    let fs = vec![
        pool_a.submit(|| 1).unwrap(),
        standalone.clone(),
        pool_b.submit(|| 2).unwrap(),
        pool_a.submit(|| 3).unwrap(),
    ];
    let s = standalone.clone();
    let t = thread::spawn(move || s.set_result(4).unwrap());
    let r = wait_timeout(&fs, LIMIT, ALL_COMPLETED);
    assert_eq!(r.done, fs);
    t.join().unwrap();
    let total: u32 = as_completed(&fs).map(|f| *f.result().unwrap()).sum();
    assert_eq!(total, 10);
}

// SPEC W1
#[test]
fn wait_does_not_hang_on_futures_cancelled_by_shutdown() {
    // CPython's wait() can hang here (gh-92001, gh-109934); we must not.
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let blocker = Blocker::start(&pool, 0_u32);
    let queued: Vec<_> = (0..4u32).map(|i| pool.submit(move || i).unwrap()).collect();

    // One thread already blocked in wait, one in as_completed.
    let (w_tid, waiter) = {
        let fs = queued.clone();
        spawn_reporting(move || wait_timeout(&fs, LIMIT, ALL_COMPLETED))
    };
    let (i_tid, iterator) = {
        let fs = queued.clone();
        spawn_reporting(move || {
            as_completed_timeout(&fs, LIMIT)
                .map(|r| r.map(|f| f.cancelled()))
                .collect::<Vec<_>>()
        })
    };
    proc::wait_until_sleeping(w_tid);
    proc::wait_until_sleeping(i_tid);
    pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));

    let r = waiter.join().unwrap();
    assert!(r.not_done.is_empty(), "wait must see shutdown's cancels");
    assert!(r.done.iter().all(Future::cancelled));
    let seen = iterator.join().unwrap();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| matches!(r, Ok(true))), "{seen:?}");

    // And a wait that starts after the shutdown returns at once.
    for rw in [FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED] {
        let r = wait_timeout(&queued, LIMIT, rw);
        assert_eq!(r.done.len(), 4);
        assert!(r.not_done.is_empty());
    }
    blocker.release();
    assert_eq!(*blocker.future.result_timeout(LIMIT).unwrap(), 0);
}

// SPEC W1
#[test]
fn wait_from_many_threads_on_the_same_futures() {
    let fs = pending(5);
    let n = 6;
    let barrier = Arc::new(Barrier::new(n + 1));
    let waiters: Vec<_> = (0..n)
        .map(|i| {
            let fs = fs.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let rw = [FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED][i % 3];
                (rw, wait_timeout(&fs, LIMIT, rw))
            })
        })
        .collect();
    barrier.wait();
    for (i, f) in fs.iter().enumerate() {
        f.set_result(i as u32).unwrap();
    }
    for w in waiters {
        let (rw, r) = w.join().unwrap();
        if rw == FIRST_COMPLETED {
            assert!(!r.done.is_empty());
        } else {
            assert_eq!(r.done, fs);
        }
    }
}

// ---------------------------------------------------------------- W2 ---

// SPEC W2
#[test]
fn as_completed_yields_already_done_first_then_in_completion_order() {
    let fs = vec![
        Future::new(),
        done_with(1),
        Future::new(),
        failed("x"),
        Future::new(),
    ];
    let mut it = as_completed(&fs);
    assert_eq!(it.len(), 5);
    // Completed after the call, before the first next: still after the
    // ones that were done at the call.
    fs[4].set_result(4).unwrap();
    let first_two: HashSet<_> = [it.next().unwrap(), it.next().unwrap()].into();
    assert_eq!(first_two, set_of(&[fs[1].clone(), fs[3].clone()]));
    assert_eq!(it.next().unwrap(), fs[4]);
    fs[2].cancel();
    fs[0].set_result(0).unwrap();
    assert_eq!(it.next().unwrap(), fs[2]);
    assert_eq!(it.next().unwrap(), fs[0]);
    assert_eq!(it.len(), 0);
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

// SPEC W2
#[test]
fn as_completed_with_a_concurrent_completer_yields_each_once() {
    let fs = pending(6);
    let order = [3usize, 0, 5, 1, 4, 2];
    let completer = {
        let fs = fs.clone();
        thread::spawn(move || {
            for &i in &order {
                fs[i].set_result(i as u32).unwrap();
            }
        })
    };
    let got: Vec<u32> = as_completed_timeout(&fs, LIMIT)
        .map(|f| *f.unwrap().result().unwrap())
        .collect();
    completer.join().unwrap();
    // Some may already be done at the call; every future comes once.
    assert_eq!(got.len(), 6);
    let got: HashSet<u32> = got.into_iter().collect();
    assert_eq!(got, (0..6).collect());
}

// SPEC W2
#[test]
fn as_completed_strict_completion_order() {
    let fs = pending(5);
    let mut it = as_completed(&fs);
    // All complete after the call: yielded exactly in completion order.
    for &i in &[2usize, 4, 0, 3, 1] {
        fs[i].set_result(i as u32).unwrap();
    }
    let got: Vec<u32> = it.by_ref().map(|f| *f.result().unwrap()).collect();
    assert_eq!(got, [2, 4, 0, 3, 1]);
}

// SPEC W2
#[test]
fn as_completed_over_pool_futures() {
    let pool = ThreadPoolExecutor::new(4).unwrap();
    let fs: Vec<_> = (0..32u32)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    let mut seen: Vec<u32> = as_completed(&fs).map(|f| *f.result().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..32).collect::<Vec<_>>());
}

// SPEC W2
#[test]
fn as_completed_yields_duplicates_once() {
    let a = done_with(1);
    let b = Future::new();
    let fs = [a.clone(), b.clone(), a.clone(), b.clone(), b.clone()];
    let mut it = as_completed(&fs);
    assert_eq!(it.len(), 2);
    assert_eq!(it.next().unwrap(), a);
    b.set_result(2).unwrap();
    assert_eq!(it.next().unwrap(), b);
    assert!(it.next().is_none());

    let mut it = as_completed_timeout(&fs, Duration::from_millis(5));
    assert_eq!(it.next().unwrap().unwrap(), a);
    assert_eq!(it.next().unwrap().unwrap(), b);
    assert!(it.next().is_none());
}

// SPEC W2
#[test]
fn as_completed_timeout_yields_one_timeout_then_ends() {
    let a = done_with(1);
    let b = Future::new();
    let c = Future::new();
    let fs = [b.clone(), a.clone(), c.clone()];
    let mut it = as_completed_timeout(&fs, Duration::from_millis(20));
    assert_eq!(it.next().unwrap().unwrap(), a);
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    assert!(it.next().is_none());
    assert!(it.next().is_none());
    // Later completions do not revive it.
    b.set_result(2).unwrap();
    assert!(it.next().is_none());

    // Deadline already passed: done ones still come first.
    let mut it = as_completed_deadline(&fs, Instant::now());
    let first: HashSet<_> = [it.next().unwrap().unwrap(), it.next().unwrap().unwrap()].into();
    assert_eq!(first, set_of(&[a.clone(), b.clone()]));
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    assert!(it.next().is_none());

    // Zero timeout with nothing left: no timeout error at all.
    let mut it = as_completed_timeout([&a], Duration::ZERO);
    assert_eq!(it.next().unwrap().unwrap(), a);
    assert!(it.next().is_none());
}

// SPEC W2
#[test]
fn as_completed_timeout_is_measured_from_the_call() {
    let pending_future: Future<u32> = Future::new();
    let timeout = Duration::from_millis(50);
    let mut it = as_completed_timeout([&pending_future], timeout);

    // If the timeout were counted from `next`, this thread would park in
    // it; a helper completes the future as soon as it sees that, turning
    // the wrong behaviour into a yielded future instead of a timeout.
    let returned = Arc::new(AtomicBool::new(false));
    let (armed_tx, armed_rx) = mpsc::channel::<u32>();
    let helper = {
        let returned = Arc::clone(&returned);
        let f = pending_future.clone();
        thread::spawn(move || {
            let Ok(tid) = armed_rx.recv() else { return };
            let start = Instant::now();
            while !returned.load(SeqCst) && start.elapsed() < LIMIT {
                if proc::sample(tid).state == Some('S') {
                    let _ = f.set_result(1);
                    return;
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // Let the whole timeout pass before the first `next`.
    let created = Instant::now();
    while created.elapsed() <= timeout {
        thread::sleep(timeout);
    }
    armed_tx.send(proc::current_tid()).unwrap();
    let first = it.next();
    returned.store(true, SeqCst);
    helper.join().unwrap();
    assert!(
        matches!(first, Some(Err(Error::Timeout))),
        "the deadline had passed already: {first:?}"
    );
    assert!(it.next().is_none());
}

// SPEC W2
#[test]
fn as_completed_timeout_mid_iteration() {
    let fs = pending(3);
    let mut it = as_completed_timeout(&fs, Duration::from_millis(30));
    fs[1].set_result(1).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), fs[1]);
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    assert!(it.next().is_none());
    assert_eq!(it.size_hint(), (0, Some(0)));
}

// SPEC W2
#[test]
fn cancellation_wakes_as_completed() {
    let fs = pending(3);
    let (tid, iterator) = {
        let fs = fs.clone();
        spawn_reporting(move || {
            as_completed_timeout(&fs, LIMIT)
                .map(|r| r.map(|f| (f.cancelled(), f)))
                .collect::<Vec<_>>()
        })
    };
    proc::wait_until_sleeping(tid);
    assert!(fs[1].cancel());
    proc::wait_until_sleeping(tid);
    assert!(fs[0].cancel());
    fs[2].set_result(2).unwrap();
    let got = iterator.join().unwrap();
    let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        got,
        [
            (true, fs[1].clone()),
            (true, fs[0].clone()),
            (false, fs[2].clone())
        ]
    );
}

// SPEC W2
#[test]
fn try_next_never_blocks() {
    let fs = vec![Future::new(), done_with(1), Future::new()];
    let mut it = as_completed(&fs);
    assert_eq!(it.try_next(), Some(fs[1].clone()));
    assert_eq!(it.try_next(), None);
    assert_eq!(it.len(), 2);
    fs[2].cancel();
    assert_eq!(it.try_next(), Some(fs[2].clone()));
    assert_eq!(it.try_next(), None);
    fs[0].set_result(0).unwrap();
    assert_eq!(it.next(), Some(fs[0].clone()));
    assert_eq!(it.try_next(), None);
    assert_eq!(it.next(), None);
}

// SPEC W2
#[test]
fn dropping_an_as_completed_iterator_midway_is_fine() {
    let fs = pending(4);
    fs[0].set_result(0).unwrap();
    {
        let mut it = as_completed(&fs);
        assert_eq!(it.next().unwrap(), fs[0]);
        // Dropped with three futures still registered.
    }
    {
        let mut it = as_completed_timeout(&fs, LIMIT);
        assert_eq!(it.next().unwrap().unwrap(), fs[0]);
    }
    // Many short-lived iterators and timed-out waits on the same futures.
    for _ in 0..1000 {
        drop(as_completed(&fs[1..]));
        let _ = wait_timeout(&fs[1..], Duration::ZERO, FIRST_COMPLETED);
        let _ = fs[1].result_timeout(Duration::ZERO);
    }
    // The futures are unharmed and complete normally.
    for (i, f) in fs.iter().enumerate().skip(1) {
        f.set_result(i as u32).unwrap();
    }
    let total: u32 = as_completed(&fs).map(|f| *f.result().unwrap()).sum();
    assert_eq!(total, 6);

    // Dropping an iterator on another thread while the futures complete.
    let more = pending(50);
    let it = as_completed(&more);
    let completer = {
        let more = more.clone();
        thread::spawn(move || {
            for (i, f) in more.iter().enumerate() {
                f.set_result(i as u32).unwrap();
            }
        })
    };
    let dropper = thread::spawn(move || {
        let mut it = it;
        let first = it.next().is_some();
        drop(it);
        first
    });
    assert!(dropper.join().unwrap());
    completer.join().unwrap();
    assert_eq!(wait(&more, ALL_COMPLETED).done.len(), 50);
}

// SPEC W2
#[test]
fn as_completed_iterator_moves_between_threads() {
    let fs = pending(2);
    let mut it = as_completed(&fs);
    fs[0].set_result(0).unwrap();
    assert_eq!(it.next().unwrap(), fs[0]);
    let (tid, other) = spawn_reporting(move || it.next());
    proc::wait_until_sleeping(tid);
    fs[1].set_result(1).unwrap();
    assert_eq!(other.join().unwrap().unwrap(), fs[1]);
}

// ---------------------------------------------------------------- W3 ---

// SPEC W3
#[test]
fn blocked_waiters_are_parked_and_use_no_cpu() {
    // A resource bound, not a timing one: each thread blocked in a waiting
    // call must sleep in the kernel, spend (almost) no CPU time and not
    // wake up repeatedly while nothing happens.
    const INTERVAL: Duration = Duration::from_millis(300);
    // 20% of the interval, in clock ticks (USER_HZ = 100 per second).
    let max_ticks = (INTERVAL.as_millis() as u64 / 10) / 5;
    // A poll loop of even 10 ms would switch 30 times in the interval.
    let max_switches = 10;

    let target: Future<u32> = Future::new();
    let others = pending(100);
    let mut all = others.clone();
    all.push(target.clone());

    type Blocked = Box<dyn FnOnce() -> bool + Send>;
    let calls: Vec<(&str, Blocked)> = vec![
        ("result", {
            let f = target.clone();
            Box::new(move || f.result().is_ok())
        }),
        ("result_timeout", {
            let f = target.clone();
            Box::new(move || f.result_timeout(Duration::from_secs(60)).is_ok())
        }),
        ("exception", {
            let f = target.clone();
            Box::new(move || f.exception().is_ok())
        }),
        ("into_result", {
            let f = target.clone();
            Box::new(move || f.into_result().is_ok())
        }),
        ("wait", {
            let fs = all.clone();
            Box::new(move || wait(&fs, FIRST_COMPLETED).done.len() == 1)
        }),
        ("wait_timeout", {
            let fs = all.clone();
            Box::new(move || {
                wait_timeout(&fs, Duration::from_secs(60), FIRST_COMPLETED)
                    .not_done
                    .len()
                    == 100
            })
        }),
        ("wait_all", {
            let f = target.clone();
            Box::new(move || wait([&f], ALL_COMPLETED).done.len() == 1)
        }),
        ("wait_first_exception", {
            let f = target.clone();
            Box::new(move || wait([&f], FIRST_EXCEPTION).done.len() == 1)
        }),
        ("as_completed", {
            let fs = all.clone();
            Box::new(move || as_completed(&fs).next().is_some())
        }),
        ("as_completed_timeout", {
            let fs = all.clone();
            Box::new(move || {
                matches!(
                    as_completed_timeout(&fs, Duration::from_secs(60)).next(),
                    Some(Ok(_))
                )
            })
        }),
    ];
    let threads: Vec<_> = calls
        .into_iter()
        .map(|(name, call)| {
            let (tid, handle) = spawn_reporting(call);
            (name, tid, handle)
        })
        .collect();
    for (name, tid, _) in &threads {
        assert!(
            proc::wait_until_sleeping(*tid),
            "{name}: returned before anything completed"
        );
    }
    let before: Vec<_> = threads
        .iter()
        .map(|(_, tid, _)| proc::sample(*tid))
        .collect();
    thread::sleep(INTERVAL);
    let after: Vec<_> = threads
        .iter()
        .map(|(_, tid, _)| proc::sample(*tid))
        .collect();
    target.set_result(1).unwrap();
    for (((name, _, handle), b), a) in threads.into_iter().zip(before).zip(after) {
        assert!(handle.join().unwrap(), "{name}: wrong outcome");
        assert_eq!(a.state, Some('S'), "{name}: not asleep at the end");
        let ticks = a.cpu_ticks - b.cpu_ticks;
        assert!(
            ticks <= max_ticks,
            "{name}: used {ticks} ticks of CPU while blocked (max {max_ticks})"
        );
        let switches = a.voluntary_switches - b.voluntary_switches;
        assert!(
            switches < max_switches,
            "{name}: woke up {switches} times while nothing happened"
        );
    }
}

// SPEC W3
#[test]
fn many_futures_set_up_and_complete_fine() {
    let n = 10_000;
    let fs = pending(n);
    let completer = {
        let fs = fs.clone();
        thread::spawn(move || {
            for (i, f) in fs.iter().enumerate().rev() {
                f.set_result(i as u32).unwrap();
            }
        })
    };
    let mut count = 0;
    for r in as_completed_timeout(&fs, LIMIT) {
        r.unwrap();
        count += 1;
    }
    assert_eq!(count, n);
    completer.join().unwrap();
    let r = wait(&fs, ALL_COMPLETED);
    assert_eq!(r.done.len(), n);
}

#[test]
fn as_completed_timeout_lets_go_of_its_futures_once_it_timed_out() {
    // SPEC W2: as CPython drops its futures when it raises TimeoutError, a
    // value that arrives later is not kept alive by the ended iterator.
    let value = Arc::new(());
    let pending: Future<Arc<()>> = Future::new();
    let mut it = as_completed_timeout([&pending], Duration::from_millis(10));
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    pending.set_result(Arc::clone(&value)).unwrap();
    drop(pending);
    assert_eq!(
        Arc::strong_count(&value),
        1,
        "the value lives on in an iterator that ended"
    );
    assert!(it.next().is_none());
}

// SPEC W1, W2: the futures themselves may be handed over instead of
// references. Each comes back as it was given: the only handle, so its
// value can be moved out, and duplicates still count once.
#[test]
fn futures_handed_over_by_value_are_moved_not_cloned() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let fs: Vec<_> = (0..64u32)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    let mut got: Vec<u32> = as_completed(fs)
        .map(|f| f.try_into_result().expect("the only handle").unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..64).collect::<Vec<_>>());

    let a = done_with(1);
    let b: Future<u32> = Future::new();
    let mut it = as_completed(vec![a.clone(), b.clone(), a.clone()]);
    assert_eq!(it.len(), 2);
    assert_eq!(it.next().unwrap(), a);
    b.set_result(2).unwrap();
    assert_eq!(it.next().unwrap(), b);
    assert!(it.next().is_none());
    drop(it);
    // The iterator kept no handle: ours are the last again.
    assert_eq!(a.try_into_result().expect("the last handle").unwrap(), 1);
    assert_eq!(b.try_into_result().expect("the last handle").unwrap(), 2);

    let c = done_with(3);
    let d: Future<u32> = Future::new();
    let r = wait_timeout(
        vec![c.clone(), d.clone(), c.clone()],
        Duration::from_millis(1),
        ALL_COMPLETED,
    );
    assert_eq!(r.done, std::slice::from_ref(&c));
    assert_eq!(r.not_done, std::slice::from_ref(&d));
    drop(r);
    assert!(c.try_into_result().is_ok());

    let mut it = as_completed_timeout(vec![d.clone()], Duration::from_millis(1));
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    assert!(it.next().is_none());
    drop(it);
    d.set_result(4).unwrap();
    assert_eq!(d.try_into_result().expect("the last handle").unwrap(), 4);
}
