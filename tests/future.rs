//! Integration tests for `Future<T>` (SPEC F1-F10).
//!
//! Every outcome is made deterministic with channels and barriers; timeouts
//! only bound a wait so that a bug fails the test instead of hanging it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use concurrent_futures::{
    ALL_COMPLETED, Error, FIRST_COMPLETED, Future, State, TaskError, ThreadPoolExecutor,
    as_completed, wait, wait_timeout,
};

mod common;
use common::{Blocker, LIMIT, within_limit};

/// A value that counts how often it is cloned, to tell a move from a copy.
#[derive(Debug)]
struct Counted {
    clones: Arc<AtomicUsize>,
    payload: String,
}

impl Counted {
    fn new(payload: &str) -> (Counted, Arc<AtomicUsize>) {
        let clones = Arc::new(AtomicUsize::new(0));
        let value = Counted {
            clones: Arc::clone(&clones),
            payload: payload.to_owned(),
        };
        (value, clones)
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, SeqCst);
        Counted {
            clones: Arc::clone(&self.clones),
            payload: self.payload.clone(),
        }
    }
}

/// A value that cannot be cloned at all.
#[derive(Debug, PartialEq)]
struct NoClone(Vec<u32>);

#[derive(Debug)]
struct DiskFull {
    device: &'static str,
}

impl fmt::Display for DiskFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no space left on {}", self.device)
    }
}

impl std::error::Error for DiskFull {}

// ---------------------------------------------------------------- F1 ---

// SPEC F1, F3
#[test]
fn pool_future_goes_pending_running_finished() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let blocker = Blocker::start(&pool, ());

    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let f = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            41 + 1
        })
        .unwrap();

    // Queued behind the blocker: pending.
    assert_eq!(f.state(), State::Pending);
    assert!(!f.running() && !f.done() && !f.cancelled());
    assert_eq!(blocker.future.state(), State::Running);
    assert!(blocker.future.running());

    blocker.release_and_wait();
    started_rx.recv_timeout(LIMIT).unwrap();
    // Running: no longer pending, not done.
    assert_eq!(f.state(), State::Running);
    assert!(f.running() && !f.done() && !f.cancelled());

    go_tx.send(()).unwrap();
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 42);
    assert_eq!(f.state(), State::Finished);
    assert!(f.done() && !f.running() && !f.cancelled());
}

// SPEC F1, F2
#[test]
fn pending_pool_future_can_be_cancelled_and_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let blocker = Blocker::start(&pool, ());
    let ran2 = Arc::clone(&ran);
    let f = pool.submit(move || ran2.store(true, SeqCst)).unwrap();

    assert!(f.cancel());
    assert_eq!(f.state(), State::Cancelled);
    assert!(f.cancelled() && f.done() && !f.running());
    assert!(matches!(f.result(), Err(Error::Cancelled)));

    blocker.release_and_wait();
    // Everything queued has been handled once the pool is shut down.
    pool.shutdown();
    assert!(!ran.load(SeqCst), "a cancelled task must never run");
    assert_eq!(f.state(), State::Cancelled);
}

// SPEC F1, F9
#[test]
fn finished_future_holds_a_value_or_a_failure() {
    let ok: Future<u8> = Future::new();
    assert_eq!(ok.state(), State::Pending);
    ok.set_result(7).unwrap();
    assert_eq!(ok.state(), State::Finished);
    assert_eq!(*ok.result().unwrap(), 7);
    assert!(ok.exception().unwrap().is_none());

    let failed: Future<u8> = Future::new();
    failed.set_exception(TaskError::new("bad input")).unwrap();
    assert_eq!(failed.state(), State::Finished);
    assert!(!failed.cancelled());
    match failed.result() {
        Err(Error::Failed(e)) => assert_eq!(e.to_string(), "bad input"),
        other => panic!("expected the task's failure, got {other:?}"),
    }
}

// SPEC F1, F7
#[test]
fn standalone_future_walks_every_state_by_hand() {
    let f: Future<&str> = Future::new();
    assert_eq!(f.state(), State::Pending);
    assert!(f.set_running_or_notify_cancel().unwrap());
    assert_eq!(f.state(), State::Running);
    f.set_result("done").unwrap();
    assert_eq!(f.state(), State::Finished);
    assert_eq!(*f.result().unwrap(), "done");
}

// ---------------------------------------------------------------- F2 ---

// SPEC F2
#[test]
fn cancel_is_false_when_running_or_finished_and_true_when_already_cancelled() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let blocker = Blocker::start(&pool, ());
    // Running: cannot be cancelled, and stays running.
    assert!(!blocker.future.cancel());
    assert!(blocker.future.running());
    assert!(!blocker.future.cancelled());
    let running = blocker.future.clone();
    blocker.release_and_wait();
    // Finished: cannot be cancelled, and keeps its outcome.
    assert!(!running.cancel());
    assert!(!running.cancelled());
    assert!(running.result().is_ok());

    // Cancelled: cancelling again says true.
    let f: Future<()> = Future::new();
    assert!(f.cancel());
    assert!(f.cancel());
    assert!(f.cancelled());

    // A finished stand-alone future, with a value and with a failure.
    let v = Future::new();
    v.set_result(1).unwrap();
    assert!(!v.cancel());
    assert_eq!(*v.result().unwrap(), 1);
    let e: Future<i32> = Future::new();
    e.set_exception(TaskError::new("x")).unwrap();
    assert!(!e.cancel());
    assert!(matches!(e.result(), Err(Error::Failed(_))));
}

// SPEC F2
#[test]
fn cancel_wakes_every_waiter_and_runs_callbacks_in_the_cancelling_thread() {
    let f: Future<u32> = Future::new();
    let n = 6;
    let barrier = Arc::new(Barrier::new(n + 1));
    let waiters: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                if i % 2 == 0 {
                    f.result_timeout(LIMIT).map(|_| ()).unwrap_err()
                } else {
                    f.exception_timeout(LIMIT).map(|_| ()).unwrap_err()
                }
            })
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    f.add_done_callback(move |f| {
        tx.send((thread::current().id(), f.cancelled())).unwrap();
    });
    barrier.wait();
    assert!(f.cancel());
    // The callback ran inside `cancel`, in this thread.
    assert_eq!(rx.try_recv().unwrap(), (thread::current().id(), true));
    for w in waiters {
        assert!(matches!(w.join().unwrap(), Error::Cancelled));
    }
}

// SPEC F2, F8
#[test]
fn cancel_racing_set_result_has_exactly_one_winner() {
    for _ in 0..200 {
        let f: Future<u32> = Future::new();
        let barrier = Arc::new(Barrier::new(2));
        let g = f.clone();
        let b = Arc::clone(&barrier);
        let setter = thread::spawn(move || {
            b.wait();
            g.set_result(5).is_ok()
        });
        barrier.wait();
        let cancelled = f.cancel();
        let set = setter.join().unwrap();
        assert!(cancelled != set, "cancel={cancelled} set_result={set}");
        if cancelled {
            assert_eq!(f.state(), State::Cancelled);
            assert!(matches!(f.result(), Err(Error::Cancelled)));
        } else {
            assert_eq!(*f.result().unwrap(), 5);
        }
    }
}

// SPEC F2, F1
#[test]
fn cancel_racing_a_worker_either_cancels_or_runs_never_both() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let mut cancelled_flags = Vec::new();
    for _ in 0..200 {
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        let f = pool.submit(move || r.store(true, SeqCst)).unwrap();
        let cancelled = f.cancel();
        let outcome = f.result_timeout(LIMIT);
        if cancelled {
            assert!(matches!(outcome, Err(Error::Cancelled)));
            assert_eq!(f.state(), State::Cancelled);
            cancelled_flags.push(ran);
        } else {
            assert!(outcome.is_ok());
            assert_eq!(f.state(), State::Finished);
            assert!(ran.load(SeqCst));
        }
    }
    // Once the pool is shut down every queued job has been handled: none
    // that was cancelled ran.
    pool.shutdown();
    assert!(cancelled_flags.iter().all(|ran| !ran.load(SeqCst)));
}

// ---------------------------------------------------------------- F3 ---

// SPEC F3
#[test]
fn queries_never_block_while_the_task_runs_or_others_wait() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let blocker = Blocker::start(&pool, ());
    let queued = pool.submit(|| 1).unwrap();
    // Somebody is blocked on each of them.
    let w1 = {
        let f = blocker.future.clone();
        thread::spawn(move || f.result_timeout(LIMIT).is_ok())
    };
    let w2 = {
        let f = queued.clone();
        thread::spawn(move || f.result_timeout(LIMIT).is_ok())
    };
    let (r, q) = (blocker.future.clone(), queued.clone());
    let states = within_limit(move || {
        (
            (r.cancelled(), r.running(), r.done(), r.state()),
            (q.cancelled(), q.running(), q.done(), q.state()),
        )
    });
    assert_eq!(states.0, (false, true, false, State::Running));
    assert_eq!(states.1, (false, false, false, State::Pending));
    blocker.release_and_wait();
    assert!(w1.join().unwrap());
    assert!(w2.join().unwrap());
}

// SPEC F3, F4, F6
#[test]
fn queries_result_and_new_callbacks_do_not_wait_for_a_running_callback() {
    let f: Future<u32> = Future::new();
    let (in_cb_tx, in_cb_rx) = mpsc::channel();
    let (leave_tx, leave_rx) = mpsc::channel::<()>();
    f.add_done_callback(move |_| {
        in_cb_tx.send(()).unwrap();
        let _ = leave_rx.recv_timeout(LIMIT);
    });
    let g = f.clone();
    let completer = thread::spawn(move || g.set_result(3).unwrap());
    in_cb_rx.recv_timeout(LIMIT).unwrap();

    // The completing thread is stuck in a callback; the outcome is
    // published already, and nothing here may wait for that callback.
    let g = f.clone();
    let seen = within_limit(move || {
        let (tx, rx) = mpsc::channel();
        g.add_done_callback(move |f| tx.send(*f.result().unwrap()).unwrap());
        let immediate = rx.try_recv().ok();
        (
            g.done(),
            g.cancelled(),
            g.running(),
            *g.result().unwrap(),
            immediate,
        )
    });
    assert_eq!(seen, (true, false, false, 3, Some(3)));
    leave_tx.send(()).unwrap();
    completer.join().unwrap();
}

// ---------------------------------------------------------------- F4 ---

// SPEC F4
#[test]
fn result_with_zero_timeout_polls() {
    let f: Future<u8> = Future::new();
    assert!(matches!(
        f.result_timeout(Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        f.result_deadline(Instant::now()),
        Err(Error::Timeout)
    ));
    // A deadline in the past is the same as a poll.
    let past = Instant::now().checked_sub(Duration::from_secs(1));
    if let Some(past) = past {
        assert!(matches!(f.result_deadline(past), Err(Error::Timeout)));
    }
    // A timeout leaves the future untouched.
    assert_eq!(f.state(), State::Pending);
    f.set_result(9).unwrap();
    assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), 9);
    assert_eq!(*f.result_deadline(Instant::now()).unwrap(), 9);
}

// SPEC F4
#[test]
fn result_with_a_short_timeout_times_out_then_succeeds_later() {
    let f: Future<u8> = Future::new();
    assert!(matches!(
        f.result_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        f.exception_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    let g = f.clone();
    let t = thread::spawn(move || g.set_result(1).unwrap());
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 1);
    t.join().unwrap();
}

// SPEC F4: a wait that timed out leaves its entry on its future; when
// that future completes while the same thread waits on another one, the
// late notification must not end the later wait.
#[test]
fn a_timed_out_wait_completed_late_does_not_end_the_next_wait() {
    for round in 0..200u32 {
        let first: Future<u32> = Future::new();
        assert!(matches!(
            first.result_timeout(Duration::ZERO),
            Err(Error::Timeout)
        ));
        assert!(matches!(
            first.result_timeout(Duration::from_micros(1)),
            Err(Error::Timeout)
        ));
        let second: Future<u32> = Future::new();
        let completer = {
            let (first, second) = (first.clone(), second.clone());
            thread::spawn(move || {
                first.set_result(round).unwrap();
                second.set_result(round + 1).unwrap();
            })
        };
        assert_eq!(*second.result_timeout(LIMIT).unwrap(), round + 1);
        assert_eq!(*first.result().unwrap(), round);
        completer.join().unwrap();
    }
}

// SPEC F4, F5
#[test]
fn huge_timeouts_do_not_panic_or_overflow() {
    let huge = [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(u64::MAX / 2),
        Duration::from_secs(60 * 60 * 24 * 365 * 1000),
    ];
    // Already done: returns at once.
    let done = Future::new();
    done.set_result(5u8).unwrap();
    for &d in &huge {
        assert_eq!(*done.result_timeout(d).unwrap(), 5);
        assert!(done.exception_timeout(d).unwrap().is_none());
    }
    let cancelled: Future<u8> = Future::new();
    cancelled.cancel();
    for &d in &huge {
        assert!(matches!(cancelled.result_timeout(d), Err(Error::Cancelled)));
        assert!(matches!(
            cancelled.exception_timeout(d),
            Err(Error::Cancelled)
        ));
    }
    // Pending: blocks until completed from elsewhere.
    for &d in &huge {
        let f: Future<u8> = Future::new();
        let (tx, rx) = mpsc::channel::<()>();
        let g = f.clone();
        let t = thread::spawn(move || {
            rx.recv().unwrap();
            g.set_result(8).unwrap();
        });
        let waiter = {
            let f = f.clone();
            thread::spawn(move || {
                let v = *f.result_timeout(d).unwrap();
                let e = f.exception_timeout(d).unwrap().is_none();
                (v, e)
            })
        };
        tx.send(()).unwrap();
        t.join().unwrap();
        assert_eq!(waiter.join().unwrap(), (8, true));
    }
    // A far-away deadline.
    let far = Instant::now() + Duration::from_secs(60 * 60 * 24 * 365 * 100);
    assert_eq!(*done.result_deadline(far).unwrap(), 5);
    assert!(done.exception_deadline(far).unwrap().is_none());
}

// SPEC F4
#[test]
fn result_is_shared_by_many_threads_and_never_moved_or_cloned() {
    let f: Future<NoClone> = Future::new();
    let n = 8;
    let barrier = Arc::new(Barrier::new(n + 1));
    let readers: Vec<_> = (0..n)
        .map(|_| {
            let f = f.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut addrs = HashSet::new();
                for _ in 0..100 {
                    let v = f.result_timeout(LIMIT).unwrap();
                    assert_eq!(v, &NoClone(vec![1, 2, 3]));
                    addrs.insert(v as *const NoClone as usize);
                }
                addrs
            })
        })
        .collect();
    barrier.wait();
    f.set_result(NoClone(vec![1, 2, 3])).unwrap();
    let mut all = HashSet::new();
    for r in readers {
        all.extend(r.join().unwrap());
    }
    all.insert(f.result().unwrap() as *const NoClone as usize);
    assert_eq!(all.len(), 1, "every reader must see the one stored value");
}

// SPEC F4, F10
#[test]
fn result_reports_cancellation_and_failure_every_time() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let failing = pool.submit(|| -> u32 { panic!("task exploded") }).unwrap();
    for _ in 0..3 {
        match failing.result_timeout(LIMIT) {
            Err(Error::Failed(e)) => assert_eq!(e.panic_message(), Some("task exploded")),
            other => panic!("expected the panic, got {other:?}"),
        }
    }
    let cancelled: Future<u32> = Future::new();
    cancelled.cancel();
    for _ in 0..3 {
        assert!(matches!(cancelled.result(), Err(Error::Cancelled)));
    }
    // The worker survived the panic.
    assert_eq!(
        *pool.submit(|| 2).unwrap().result_timeout(LIMIT).unwrap(),
        2
    );
}

// SPEC F4
#[test]
fn result_of_a_pool_task_sees_everything_the_task_did() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let shared = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&shared);
    let f = pool
        .submit(move || {
            s.lock().unwrap().extend([1, 2, 3]);
            String::from("written")
        })
        .unwrap();
    assert_eq!(f.result_timeout(LIMIT).unwrap(), "written");
    assert_eq!(*shared.lock().unwrap(), [1, 2, 3]);
}

// ---------------------------------------------------------------- F5 ---

// SPEC F5
#[test]
fn exception_is_none_for_a_value_and_the_failure_otherwise() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let ok = pool.submit(|| 1).unwrap();
    assert!(ok.exception_timeout(LIMIT).unwrap().is_none());
    assert!(ok.exception().unwrap().is_none());

    let failed = pool.submit(|| -> i32 { panic!("kaput") }).unwrap();
    let e = failed.exception_timeout(LIMIT).unwrap().expect("a failure");
    match &e {
        Error::Failed(t) => assert_eq!(t.panic_message(), Some("kaput")),
        other => panic!("unexpected {other:?}"),
    }
    // The same failure again, and the same as result's.
    let again = failed.exception().unwrap().unwrap();
    assert_eq!(again.to_string(), e.to_string());
    assert_eq!(failed.result().unwrap_err().to_string(), e.to_string());

    let fallible = pool
        .submit_fallible(|| -> Result<i32, DiskFull> { Err(DiskFull { device: "/dev/sda" }) })
        .unwrap();
    let e = fallible.exception_timeout(LIMIT).unwrap().unwrap();
    let task_error = e.task_error().expect("the task's own error");
    assert_eq!(
        task_error.downcast_ref::<DiskFull>().unwrap().device,
        "/dev/sda"
    );
}

// SPEC F5
#[test]
fn exception_waits_like_result_and_reports_cancel_as_an_error() {
    let f: Future<()> = Future::new();
    assert!(matches!(
        f.exception_timeout(Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        f.exception_deadline(Instant::now()),
        Err(Error::Timeout)
    ));
    let g = f.clone();
    let waiter =
        thread::spawn(move || g.exception_timeout(LIMIT).map(|e| e.map(|e| e.to_string())));
    f.set_exception(TaskError::new("late failure")).unwrap();
    assert_eq!(
        waiter.join().unwrap().unwrap().as_deref(),
        Some("the task failed: late failure")
    );

    let c: Future<()> = Future::new();
    c.cancel();
    assert!(matches!(c.exception(), Err(Error::Cancelled)));
    assert!(matches!(
        c.exception_deadline(Instant::now()),
        Err(Error::Cancelled)
    ));
}

// ----------------------------------------------------------- into_result ---

// SPEC F4
#[test]
fn into_result_moves_the_value_out_of_the_last_handle() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (value, clones) = Counted::new("moved");
    let f = pool.submit(move || value).unwrap();
    f.result_timeout(LIMIT).unwrap();
    let v = f.into_result().unwrap();
    assert_eq!(v.payload, "moved");
    assert_eq!(
        clones.load(SeqCst),
        0,
        "the last handle must move, not clone"
    );

    // A stand-alone future, waited for inside into_result.
    let (value, clones) = Counted::new("standalone");
    let f: Future<Counted> = Future::new();
    let g = f.clone();
    let (tx, rx) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        rx.recv().unwrap();
        g.set_result(value).unwrap();
        // `g` is dropped here; the receiver is then the last handle.
    });
    tx.send(()).unwrap();
    t.join().unwrap();
    assert_eq!(f.into_result().unwrap().payload, "standalone");
    assert_eq!(clones.load(SeqCst), 0);
}

// SPEC F4
#[test]
fn into_result_clones_when_other_handles_exist() {
    let (value, clones) = Counted::new("shared");
    let f: Future<Counted> = Future::new();
    f.set_result(value).unwrap();
    let other = f.clone();
    let v = f.into_result().unwrap();
    assert_eq!(v.payload, "shared");
    assert_eq!(clones.load(SeqCst), 1);
    // The remaining handle still has the value.
    assert_eq!(other.result().unwrap().payload, "shared");
    // ... and, being last now, moves it.
    assert_eq!(other.into_result().unwrap().payload, "shared");
    assert_eq!(clones.load(SeqCst), 1);
}

// SPEC F4
#[test]
fn into_result_blocks_and_reports_cancel_and_failure() {
    let f: Future<String> = Future::new();
    let g = f.clone();
    let waiter = thread::spawn(move || g.into_result());
    f.set_result("later".to_owned()).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), "later");

    let c: Future<String> = Future::new();
    c.cancel();
    assert!(matches!(c.into_result(), Err(Error::Cancelled)));

    let pool = ThreadPoolExecutor::new(1).unwrap();
    let p = pool.submit(|| -> String { panic!("no string") }).unwrap();
    match p.into_result() {
        Err(Error::Failed(e)) => assert_eq!(e.panic_message(), Some("no string")),
        other => panic!("unexpected {other:?}"),
    }
}

// SPEC F4
#[test]
fn into_result_from_many_threads_at_once_is_sound() {
    for round in 0..50 {
        let (value, _clones) = Counted::new("race");
        let f: Future<Counted> = Future::new();
        let n = 6;
        let barrier = Arc::new(Barrier::new(n + 1));
        let takers: Vec<_> = (0..n)
            .map(|_| {
                let f = f.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    f.into_result().unwrap().payload
                })
            })
            .collect();
        barrier.wait();
        if round % 2 == 0 {
            f.set_result(value).unwrap();
            drop(f);
        } else {
            let f2 = f.clone();
            drop(f);
            f2.set_result(value).unwrap();
        }
        for t in takers {
            assert_eq!(t.join().unwrap(), "race");
        }
    }
}

// ---------------------------------------------------------------- F6 ---

// SPEC F6
#[test]
fn callbacks_run_in_the_order_added_and_get_the_future() {
    let f: Future<u32> = Future::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..5 {
        let order = Arc::clone(&order);
        let me = f.clone();
        f.add_done_callback(move |g| {
            assert_eq!(g, &me, "the callback gets the future it was added to");
            order.lock().unwrap().push((i, *g.result().unwrap()));
        });
    }
    assert!(order.lock().unwrap().is_empty(), "nothing runs before done");
    f.set_result(7).unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        [(0, 7), (1, 7), (2, 7), (3, 7), (4, 7)]
    );
}

// SPEC F6
#[test]
fn callback_runs_in_the_pool_worker_that_completes_the_future() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .thread_name_prefix("cbworker")
        .build()
        .unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let f = pool
        .submit(move || {
            let _ = go_rx.recv();
            thread::current().id()
        })
        .unwrap();
    let (tx, rx) = mpsc::channel();
    f.add_done_callback(move |f| {
        let name = thread::current().name().map(str::to_owned);
        tx.send((name, thread::current().id(), *f.result().unwrap()))
            .unwrap();
    });
    go_tx.send(()).unwrap();
    let (name, cb_thread, task_thread) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(name.as_deref(), Some("cbworker_0"));
    assert_eq!(cb_thread, task_thread);
    assert_ne!(cb_thread, thread::current().id());
}

// SPEC F6, F8
#[test]
fn callback_runs_in_the_thread_calling_set_result_or_set_exception() {
    for fail in [false, true] {
        let f: Future<u8> = Future::new();
        let (tx, rx) = mpsc::channel::<ThreadId>();
        f.add_done_callback(move |_| tx.send(thread::current().id()).unwrap());
        let g = f.clone();
        let completer = thread::spawn(move || {
            if fail {
                g.set_exception(TaskError::new("no")).unwrap();
            } else {
                g.set_result(1).unwrap();
            }
            // The callback ran before set_* returned.
            thread::current().id()
        });
        let completer_id = completer.thread().id();
        assert_eq!(completer.join().unwrap(), completer_id);
        assert_eq!(rx.try_recv().unwrap(), completer_id);
    }
}

// SPEC F6
#[test]
fn callback_added_while_the_future_completes_runs_exactly_once() {
    for _ in 0..200 {
        let f: Future<u32> = Future::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(2));
        let adder = {
            let (f, runs, barrier) = (f.clone(), Arc::clone(&runs), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..3 {
                    let runs = Arc::clone(&runs);
                    f.add_done_callback(move |f| {
                        assert_eq!(*f.result().unwrap(), 1);
                        runs.fetch_add(1, SeqCst);
                    });
                }
            })
        };
        barrier.wait();
        f.set_result(1).unwrap();
        adder.join().unwrap();
        // Each ran once: before set_result returned or inside
        // add_done_callback, never both, never neither.
        assert_eq!(runs.load(SeqCst), 3);
    }
}

// SPEC F6
#[test]
fn callback_added_to_a_done_future_runs_at_once_in_the_caller() {
    let done = Future::new();
    done.set_result("v").unwrap();
    let cancelled: Future<&str> = Future::new();
    cancelled.cancel();
    for f in [&done, &cancelled] {
        let ran_in = Arc::new(Mutex::new(None));
        let r = Arc::clone(&ran_in);
        f.add_done_callback(move |f| {
            assert!(f.done());
            *r.lock().unwrap() = Some(thread::current().id());
        });
        // Already ran, before add_done_callback returned.
        assert_eq!(*ran_in.lock().unwrap(), Some(thread::current().id()));
    }
}

// SPEC F6
#[test]
fn callback_may_add_callbacks_and_query_the_future() {
    let f: Future<u8> = Future::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = Arc::clone(&order);
    f.add_done_callback(move |f| {
        o.lock().unwrap().push("outer");
        assert!(f.done() && !f.running() && !f.cancelled());
        let o2 = Arc::clone(&o);
        // Re-entrant: the future is done, so this runs right away.
        f.add_done_callback(move |_| o2.lock().unwrap().push("nested"));
        o.lock().unwrap().push("after nested");
    });
    f.set_result(1).unwrap();
    assert_eq!(*order.lock().unwrap(), ["outer", "nested", "after nested"]);
}

/// A minimal `tracing` subscriber that keeps every event's level and
/// fields, to check that a panicking callback is logged.
#[derive(Default, Clone)]
struct Recorder {
    events: Arc<Mutex<Vec<(tracing::Level, String)>>>,
}

struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = FieldText(String::new());
        event.record(&mut text);
        self.events
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// SPEC F6
#[test]
fn panicking_callback_is_logged_and_ignored_and_later_callbacks_still_run() {
    let recorder = Recorder::default();
    let f: Future<u32> = Future::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = Arc::clone(&order);
    f.add_done_callback(move |_| o.lock().unwrap().push(1));
    f.add_done_callback(|_| panic!("callback exploded"));
    let o = Arc::clone(&order);
    f.add_done_callback(move |f| o.lock().unwrap().push(*f.result().unwrap()));

    let outcome = tracing::subscriber::with_default(recorder.clone(), || f.set_result(3));
    assert!(
        outcome.is_ok(),
        "a callback's panic must not reach set_result"
    );
    assert_eq!(*order.lock().unwrap(), [1, 3]);
    // The outcome is unchanged.
    assert_eq!(*f.result().unwrap(), 3);
    assert_eq!(f.state(), State::Finished);
    // It was logged, with the panic message.
    let events = recorder.events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|(level, text)| *level == tracing::Level::ERROR
                && text.contains("callback exploded")),
        "expected an ERROR event naming the panic, got {events:?}"
    );

    // Added to a done future: the panic stays inside add_done_callback.
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        f.add_done_callback(|_| panic!("late callback exploded"));
    });
    assert!(
        recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|(_, text)| text.contains("late callback exploded"))
    );
    assert_eq!(*f.result().unwrap(), 3);
}

// SPEC F6
#[test]
fn panicking_callback_on_a_pool_future_leaves_the_worker_alive() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let f = pool
        .submit(move || {
            let _ = go_rx.recv();
            10
        })
        .unwrap();
    let (tx, rx) = mpsc::channel();
    f.add_done_callback(|_| panic!("callback on a worker exploded"));
    f.add_done_callback(move |f| tx.send(*f.result().unwrap()).unwrap());
    go_tx.send(()).unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 10);
    assert_eq!(*f.result_timeout(LIMIT).unwrap(), 10);
    assert_eq!(
        *pool.submit(|| 11).unwrap().result_timeout(LIMIT).unwrap(),
        11
    );
}

// ---------------------------------------------------------------- F7 ---

// SPEC F7
#[test]
fn set_running_or_notify_cancel_pending_then_twice() {
    let f: Future<()> = Future::new();
    assert!(f.set_running_or_notify_cancel().unwrap());
    assert!(f.running());
    let e = f.set_running_or_notify_cancel().unwrap_err();
    assert_eq!(e.state(), State::Running);
    // Still running, not cancellable.
    assert!(f.running());
    assert!(!f.cancel());
    f.set_result(()).unwrap();
    let e = f.set_running_or_notify_cancel().unwrap_err();
    assert_eq!(e.state(), State::Finished);
}

// SPEC F7
#[test]
fn set_running_or_notify_cancel_on_a_cancelled_future() {
    let f: Future<()> = Future::new();
    assert!(f.cancel());
    assert!(!f.set_running_or_notify_cancel().unwrap());
    // Still cancelled, and reported as such.
    assert!(f.cancelled() && f.done());
    assert_eq!(f.state(), State::Cancelled);
    assert!(f.cancel());
    assert!(matches!(f.result(), Err(Error::Cancelled)));
    // Only once (CPython: RuntimeError "Future in unexpected state").
    let e = f.set_running_or_notify_cancel().unwrap_err();
    assert_eq!(e.state(), State::Cancelled);

    // Failed futures refuse it too.
    let g: Future<()> = Future::new();
    g.set_exception(TaskError::new("x")).unwrap();
    assert_eq!(
        g.set_running_or_notify_cancel().unwrap_err().state(),
        State::Finished
    );
}

// SPEC F7
#[test]
fn set_running_or_notify_cancel_leaves_wait_and_as_completed_woken() {
    let f: Future<u8> = Future::new();
    let g = f.clone();
    let waiter = thread::spawn(move || {
        let r = wait_timeout([&g], LIMIT, ALL_COMPLETED);
        (r.done.len(), r.not_done.len())
    });
    let g = f.clone();
    let iterator = thread::spawn(move || as_completed([&g]).count());
    assert!(f.cancel());
    assert!(!f.set_running_or_notify_cancel().unwrap());
    assert_eq!(waiter.join().unwrap(), (1, 0));
    assert_eq!(iterator.join().unwrap(), 1);
    // Waiting after the acknowledgement does not block either.
    let r = wait([&f], ALL_COMPLETED);
    assert_eq!(r.done, std::slice::from_ref(&f));
}

// SPEC F7
#[test]
fn set_running_or_notify_cancel_succeeds_once_under_races() {
    for _ in 0..100 {
        let f: Future<u8> = Future::new();
        let n = 4;
        let barrier = Arc::new(Barrier::new(n + 1));
        let racers: Vec<_> = (0..n)
            .map(|_| {
                let f = f.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    f.set_running_or_notify_cancel().ok()
                })
            })
            .collect();
        barrier.wait();
        let cancelled = f.cancel();
        let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let ok: Vec<bool> = results.iter().flatten().copied().collect();
        assert_eq!(ok.len(), 1, "exactly one call succeeds: {results:?}");
        // Either it started first (cancel fails) or the cancel won and the
        // one acknowledgement says false.
        assert_eq!(ok[0], !cancelled);
        assert_eq!(f.running(), !cancelled);
        assert_eq!(f.cancelled(), cancelled);
    }
}

// ---------------------------------------------------------------- F8 ---

// SPEC F8
#[test]
fn set_result_and_set_exception_on_a_done_future_give_the_value_back() {
    let f = Future::new();
    f.set_result(String::from("first")).unwrap();
    let e = f.set_result(String::from("second")).unwrap_err();
    assert_eq!(e.state(), State::Finished);
    assert_eq!(e.into_value(), "second");
    let e = f.set_exception(TaskError::new("too late")).unwrap_err();
    assert_eq!(e.state(), State::Finished);
    assert_eq!(e.into_value().to_string(), "too late");
    assert_eq!(f.result().unwrap(), "first");

    let failed: Future<String> = Future::new();
    failed.set_exception(TaskError::new("original")).unwrap();
    assert_eq!(
        failed
            .set_result(String::from("x"))
            .unwrap_err()
            .into_value(),
        "x"
    );
    assert_eq!(
        failed
            .set_exception(TaskError::new("other"))
            .unwrap_err()
            .into_value()
            .to_string(),
        "other"
    );
    assert_eq!(
        failed.exception().unwrap().unwrap().to_string(),
        "the task failed: original"
    );

    // Cancelled counts as done (CPython: InvalidStateError: CANCELLED).
    let c: Future<String> = Future::new();
    c.cancel();
    let e = c.set_result(String::from("v")).unwrap_err();
    assert_eq!(e.state(), State::Cancelled);
    assert_eq!(e.into_value(), "v");
    let e = c.set_exception(TaskError::new("e")).unwrap_err();
    assert_eq!(e.state(), State::Cancelled);
    assert!(c.cancelled());
}

// SPEC F8
#[test]
fn set_result_works_on_pending_and_running_futures() {
    // Pending (CPython allows completing without set_running first).
    let p = Future::new();
    p.set_result(1).unwrap();
    assert_eq!(*p.result().unwrap(), 1);
    // Running.
    let r = Future::new();
    assert!(r.set_running_or_notify_cancel().unwrap());
    r.set_result(2).unwrap();
    assert_eq!(*r.result().unwrap(), 2);
    let e: Future<i32> = Future::new();
    assert!(e.set_running_or_notify_cancel().unwrap());
    e.set_exception(TaskError::new("bad")).unwrap();
    assert!(matches!(e.result(), Err(Error::Failed(_))));
}

// SPEC F8
#[test]
fn set_result_wakes_everything_waiting() {
    let f: Future<u32> = Future::new();
    let barrier = Arc::new(Barrier::new(5));
    let mut handles = Vec::new();
    {
        let (f, b) = (f.clone(), Arc::clone(&barrier));
        handles.push(thread::spawn(move || {
            b.wait();
            *f.result().unwrap()
        }));
    }
    {
        let (f, b) = (f.clone(), Arc::clone(&barrier));
        handles.push(thread::spawn(move || {
            b.wait();
            f.exception().unwrap().map_or(1, |_| 0)
        }));
    }
    {
        let (f, b) = (f.clone(), Arc::clone(&barrier));
        handles.push(thread::spawn(move || {
            b.wait();
            let r = wait([&f], ALL_COMPLETED);
            r.done.len() as u32
        }));
    }
    {
        let (f, b) = (f.clone(), Arc::clone(&barrier));
        handles.push(thread::spawn(move || {
            b.wait();
            as_completed([&f]).map(|f| *f.result().unwrap()).sum()
        }));
    }
    let (tx, rx) = mpsc::channel();
    f.add_done_callback(move |f| tx.send(*f.result().unwrap()).unwrap());
    barrier.wait();
    f.set_result(4).unwrap();
    let got: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, [4, 1, 1, 4]);
    assert_eq!(rx.try_recv().unwrap(), 4);
}

// SPEC F8
#[test]
fn concurrent_set_result_has_exactly_one_winner() {
    for _ in 0..100 {
        let f: Future<usize> = Future::new();
        let n = 4;
        let barrier = Arc::new(Barrier::new(n));
        let setters: Vec<_> = (0..n)
            .map(|i| {
                let f = f.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let r = if i == 0 {
                        f.set_exception(TaskError::new("loser?"))
                            .map_err(|e| e.into_value().to_string().len())
                    } else {
                        f.set_result(i).map_err(|e| e.into_value())
                    };
                    (i, r)
                })
            })
            .collect();
        let results: Vec<_> = setters.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        // Every loser got its own value back.
        for (i, r) in &results {
            if let Err(back) = r {
                let expected = if *i == 0 { "loser?".len() } else { *i };
                assert_eq!(*back, expected);
            }
        }
        match (winners[0], f.result()) {
            (0, Err(Error::Failed(_))) => {}
            (w, Ok(v)) => assert_eq!(*v, w),
            other => panic!("outcome does not match the winner: {other:?}"),
        }
    }
}

// SPEC F8
#[test]
fn set_result_on_a_queued_pool_future_replaces_the_task() {
    let ran = Arc::new(AtomicBool::new(false));
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let blocker = Blocker::start(&pool, ());
    let r = Arc::clone(&ran);
    let f = pool
        .submit(move || {
            r.store(true, SeqCst);
            1
        })
        .unwrap();
    f.set_result(99).unwrap();
    blocker.release_and_wait();
    pool.shutdown();
    assert!(!ran.load(SeqCst), "a completed future's task must not run");
    assert_eq!(*f.result().unwrap(), 99);
}

// SPEC F8
#[test]
fn set_result_on_a_running_pool_future_wins_and_the_pool_goes_on() {
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let f = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            let _ = go_rx.recv();
            1
        })
        .unwrap();
    started_rx.recv_timeout(LIMIT).unwrap();
    f.set_result(99).unwrap();
    assert_eq!(*f.result().unwrap(), 99);
    go_tx.send(()).unwrap();
    // The task's own outcome is dropped; the worker keeps working.
    assert_eq!(
        *pool.submit(|| 2).unwrap().result_timeout(LIMIT).unwrap(),
        2
    );
    assert_eq!(*f.result().unwrap(), 99);
}

// ---------------------------------------------------------------- F9 ---

// SPEC F9
#[test]
fn standalone_futures_mix_with_pool_futures_in_wait_and_as_completed() {
    let pool_a = ThreadPoolExecutor::new(2).unwrap();
    let pool_b = ThreadPoolExecutor::new(1).unwrap();
    let standalone: Future<u32> = Future::new();
    let defaulted: Future<u32> = Future::default();
    assert_eq!(defaulted.state(), State::Pending);
    let a = pool_a.submit(|| 1).unwrap();
    let b = pool_b.submit(|| 2).unwrap();
    let fs = vec![a.clone(), standalone.clone(), b.clone(), defaulted.clone()];

    // Not all done yet.
    let first = wait_timeout(&fs, LIMIT, FIRST_COMPLETED);
    assert!(!first.done.is_empty());
    assert!(first.not_done.contains(&standalone));
    assert!(first.not_done.contains(&defaulted));

    let s = standalone.clone();
    let d = defaulted.clone();
    let completer = thread::spawn(move || {
        s.set_result(3).unwrap();
        d.set_result(4).unwrap();
    });
    let all = wait_timeout(&fs, LIMIT, ALL_COMPLETED);
    assert!(all.not_done.is_empty());
    assert_eq!(all.done, fs);
    completer.join().unwrap();

    let mut sum = 0;
    for f in as_completed(&fs) {
        sum += *f.result().unwrap();
    }
    assert_eq!(sum, 1 + 2 + 3 + 4);
}

// ---------------------------------------------------------------- F10 ---

// SPEC F10
#[test]
fn failures_carry_the_panic_message_or_the_error_text() {
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let formatted = pool
        .submit(|| -> u8 { panic!("bad value {} at index {}", 42, 7) })
        .unwrap();
    let literal = pool.submit(|| -> u8 { panic!("static message") }).unwrap();
    let odd = pool
        .submit(|| -> u8 { std::panic::panic_any(17u32) })
        .unwrap();
    let fallible = pool
        .submit_fallible(|| -> Result<u8, DiskFull> { Err(DiskFull { device: "sdb" }) })
        .unwrap();
    let parse = pool.submit_fallible(|| "x1".parse::<u8>()).unwrap();

    let Err(Error::Failed(e)) = formatted.result_timeout(LIMIT) else {
        panic!("expected a failure")
    };
    assert!(e.is_panic());
    assert_eq!(e.panic_message(), Some("bad value 42 at index 7"));
    let shown = formatted.result().unwrap_err().to_string();
    assert!(shown.contains("bad value 42 at index 7"), "{shown}");
    assert!(shown.contains("panicked"), "{shown}");

    let Err(Error::Failed(e)) = literal.result_timeout(LIMIT) else {
        panic!("expected a failure")
    };
    assert_eq!(e.panic_message(), Some("static message"));

    // A panic payload that is not a string still fails the future, as a
    // panic, with some text.
    let Err(Error::Failed(e)) = odd.result_timeout(LIMIT) else {
        panic!("expected a failure")
    };
    assert!(e.is_panic());
    assert!(!e.panic_message().unwrap().is_empty());

    let Err(Error::Failed(e)) = fallible.result_timeout(LIMIT) else {
        panic!("expected a failure")
    };
    assert!(!e.is_panic());
    assert_eq!(e.panic_message(), None);
    assert_eq!(e.downcast_ref::<DiskFull>().unwrap().device, "sdb");
    assert_eq!(e.to_string(), "no space left on sdb");
    let source = std::error::Error::source(&e).expect("the original error as source");
    assert_eq!(source.to_string(), "no space left on sdb");
    let shown = fallible.result().unwrap_err().to_string();
    assert!(shown.contains("no space left on sdb"), "{shown}");

    let Err(Error::Failed(e)) = parse.result_timeout(LIMIT) else {
        panic!("expected a failure")
    };
    assert!(e.downcast_ref::<std::num::ParseIntError>().is_some());
    assert!(e.downcast_ref::<DiskFull>().is_none());

    // set_exception keeps the text too.
    let f: Future<()> = Future::new();
    f.set_exception(TaskError::new(DiskFull { device: "nvme0" }))
        .unwrap();
    let e = f.exception().unwrap().unwrap();
    assert_eq!(
        e.task_error()
            .unwrap()
            .downcast_ref::<DiskFull>()
            .unwrap()
            .device,
        "nvme0"
    );
    assert!(e.to_string().contains("no space left on nvme0"));
}

// ---------------------------------------------------------- identity ---

// SPEC F1, F9
#[test]
fn futures_hash_and_compare_by_identity() {
    let a = Future::new();
    let b = Future::new();
    a.set_result(1).unwrap();
    b.set_result(1).unwrap();
    // Same value, different futures.
    assert_ne!(a, b);
    let a2 = a.clone();
    assert_eq!(a, a2);

    let mut names = HashMap::new();
    names.insert(a.clone(), "a");
    names.insert(b.clone(), "b");
    names.insert(a2.clone(), "a again");
    assert_eq!(names.len(), 2);
    assert_eq!(names[&a], "a again");
    assert_eq!(names[&b], "b");

    // The seed's `future_to_url` pattern: futures from a pool as keys.
    let pool = ThreadPoolExecutor::new(3).unwrap();
    let urls = ["a.example", "bb.example", "ccc.example"];
    let future_to_url: HashMap<_, _> = urls
        .iter()
        .map(|&url| (pool.submit(move || url.len()).unwrap(), url))
        .collect();
    let mut seen = Vec::new();
    for f in as_completed(future_to_url.keys()) {
        let url = future_to_url[&f];
        assert_eq!(*f.result().unwrap(), url.len());
        seen.push(url);
    }
    seen.sort_unstable();
    assert_eq!(seen, urls);
}

// SPEC F4, F9
#[test]
fn futures_are_send_sync_clone_and_debug() {
    fn assert_traits<T: Send + Sync + Clone + fmt::Debug + Eq + std::hash::Hash + 'static>() {}
    assert_traits::<Future<u32>>();
    assert_traits::<Future<String>>();
    let f: Future<u8> = Future::new();
    let shown = format!("{f:?}");
    assert!(shown.contains("Pending"), "{shown}");
}

#[test]
fn result_works_in_a_thread_local_destructor() {
    // SPEC F4: a blocking wait after the thread's own locals were torn
    // down (here: inside one of them) still works.
    struct WaitsWhenDropped(Option<(Future<u32>, mpsc::Sender<u32>)>);
    impl Drop for WaitsWhenDropped {
        fn drop(&mut self) {
            if let Some((f, report)) = self.0.take() {
                let _ = report.send(f.result().copied().unwrap_or(0));
            }
        }
    }
    thread_local! {
        static LAST: std::cell::RefCell<WaitsWhenDropped> =
            const { std::cell::RefCell::new(WaitsWhenDropped(None)) };
    }
    let f: Future<u32> = Future::new();
    let (report_tx, report) = mpsc::channel();
    let waiting = f.clone();
    let t = thread::spawn(move || {
        // Registered first, so destroyed after the library's own locals.
        LAST.with(|l| l.borrow_mut().0 = Some((waiting, report_tx)));
        // A wait now sets up the library's per-thread waiter.
        let warm: Future<()> = Future::new();
        let _ = warm.result_timeout(Duration::from_millis(1));
    });
    // The thread is in its locals' destruction, waiting on `f`.
    thread::sleep(Duration::from_millis(20));
    f.set_result(11).unwrap();
    assert_eq!(report.recv_timeout(LIMIT).unwrap(), 11);
    t.join().unwrap();
}
