//! Model-checked interleavings of the future state machine and its waiters.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg concurrent_futures_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --test loom
//! ```
//!
//! Under that cfg the crate's atomics, locks, cells and thread parking come
//! from loom, which runs each test body under every interleaving (bounded
//! by its preemption limit) and fails on a data race on the value slot, a
//! deadlock, or a failed assertion. One test per named race.
#![cfg(concurrent_futures_loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use concurrent_futures::{
    ALL_COMPLETED, Error, FIRST_COMPLETED, Future, TaskError, as_completed, wait,
};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

// SPEC F2, F7: cancel racing the executor's start: exactly one wins.
#[test]
fn cancel_races_start_and_completion() {
    model(|| {
        let f: Future<u32> = Future::new();
        let worker = {
            let f = f.clone();
            thread::spawn(move || match f.set_running_or_notify_cancel() {
                Ok(true) => f.set_result(7).is_ok(),
                Ok(false) => false,
                Err(e) => panic!("unexpected {e}"),
            })
        };
        let cancelled = f.cancel();
        let completed = worker.join().unwrap();
        assert!(cancelled != completed, "exactly one of cancel and run wins");
        match f.result() {
            Ok(v) => assert!(completed && *v == 7),
            Err(Error::Cancelled) => assert!(cancelled),
            Err(e) => panic!("unexpected {e}"),
        }
    });
}

// SPEC F1, F2: the same race while a callback is registered, which sends
// the cancel through the locked path; the start must not slip in between.
#[test]
fn cancel_races_start_with_a_callback_registered() {
    model(|| {
        let f: Future<u32> = Future::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        f.add_done_callback(move |_| {
            seen.fetch_add(1, SeqCst);
        });
        let worker = {
            let f = f.clone();
            thread::spawn(move || match f.set_running_or_notify_cancel() {
                Ok(true) => f.set_result(7).is_ok(),
                Ok(false) => false,
                Err(e) => panic!("unexpected {e}"),
            })
        };
        let cancelled = f.cancel();
        let completed = worker.join().unwrap();
        assert!(cancelled != completed, "exactly one of cancel and run wins");
        assert_eq!(f.cancelled(), cancelled);
        assert_eq!(calls.load(SeqCst), 1);
    });
}

// SPEC F8: two completions race; one wins, the other gets its value back.
#[test]
fn set_result_races_set_result() {
    model(|| {
        let f: Future<u32> = Future::new();
        let other = {
            let f = f.clone();
            thread::spawn(move || f.set_result(1).map_err(|e| e.into_value()))
        };
        let mine = f.set_result(2).map_err(|e| e.into_value());
        let theirs = other.join().unwrap();
        match (mine, theirs) {
            (Ok(()), Err(1)) => assert_eq!(*f.result().unwrap(), 2),
            (Err(2), Ok(())) => assert_eq!(*f.result().unwrap(), 1),
            other => panic!("not exactly one winner: {other:?}"),
        }
    });
}

// SPEC F6: a callback registered while the future completes runs exactly
// once, and sees the value.
#[test]
fn callback_registration_races_completion() {
    model(|| {
        let f: Future<u32> = Future::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let completer = {
            let f = f.clone();
            thread::spawn(move || f.set_result(5).unwrap())
        };
        let seen = Arc::clone(&calls);
        f.add_done_callback(move |f| {
            assert_eq!(*f.result().unwrap(), 5);
            seen.fetch_add(1, SeqCst);
        });
        completer.join().unwrap();
        assert_eq!(calls.load(SeqCst), 1);
    });
}

// SPEC F4: a blocked `result` racing the completion is always woken.
#[test]
fn result_races_completion() {
    model(|| {
        let f: Future<u32> = Future::new();
        let completer = {
            let f = f.clone();
            thread::spawn(move || f.set_result(3).unwrap())
        };
        assert_eq!(*f.result().unwrap(), 3);
        completer.join().unwrap();
    });
}

// SPEC F2, F4: a blocked `result` racing a cancel is woken with Cancelled.
#[test]
fn result_races_cancel() {
    model(|| {
        let f: Future<u32> = Future::new();
        let canceller = {
            let f = f.clone();
            thread::spawn(move || assert!(f.cancel()))
        };
        assert!(matches!(f.result(), Err(Error::Cancelled)));
        canceller.join().unwrap();
    });
}

// SPEC W1: `wait(ALL_COMPLETED)` racing one completion and one cancel.
#[test]
fn wait_races_completion_and_cancel() {
    model(|| {
        let a: Future<u32> = Future::new();
        let b: Future<u32> = Future::new();
        let t1 = {
            let a = a.clone();
            thread::spawn(move || a.set_result(1).unwrap())
        };
        let t2 = {
            let b = b.clone();
            thread::spawn(move || assert!(b.cancel()))
        };
        let r = wait([&a, &b], ALL_COMPLETED);
        assert_eq!(r.done.len(), 2);
        assert!(r.not_done.is_empty());
        // Not joined: `wait` may see both done before a completer's
        // unpark lands, and loom counts an unpark of a thread blocked in
        // `join` as a wrong wake-up (real threads keep it for their next
        // park). loom still runs both threads to their end, and fails the
        // model if either panics.
        drop((t1, t2));
    });
}

// SPEC W1: `wait(FIRST_COMPLETED)` returns once one completes.
#[test]
fn wait_first_completed_races_completion() {
    model(|| {
        let a: Future<u32> = Future::new();
        let b: Future<u32> = Future::new();
        let t = {
            let b = b.clone();
            thread::spawn(move || b.set_result(2).unwrap())
        };
        let r = wait([&a, &b], FIRST_COMPLETED);
        assert_eq!(r.done, vec![b.clone()]);
        assert_eq!(r.not_done, vec![a.clone()]);
        t.join().unwrap();
    });
}

// SPEC W2: `as_completed` racing completions yields each future once.
#[test]
fn as_completed_races_completion() {
    model(|| {
        let a: Future<u32> = Future::new();
        let b: Future<u32> = Future::new();
        let t = {
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                b.set_result(2).unwrap();
                a.set_result(1).unwrap();
            })
        };
        let mut sum = 0;
        for f in as_completed([&a, &b]) {
            sum += *f.result().unwrap();
        }
        assert_eq!(sum, 3);
        t.join().unwrap();
    });
}

// The last handle moving the value out never races a callback reading it.
#[test]
fn into_result_races_callbacks() {
    model(|| {
        let f: Future<u32> = Future::new();
        f.add_done_callback(|f| assert_eq!(*f.result().unwrap(), 4));
        let completer = {
            let f = f.clone();
            thread::spawn(move || f.set_result(4).unwrap())
        };
        assert_eq!(f.into_result().unwrap(), 4);
        completer.join().unwrap();
    });
}

/// Counts how often a task was consumed: run, or dropped unrun.
struct Consumed(Arc<AtomicUsize>);

impl Drop for Consumed {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counted_task(value: u32) -> (Arc<AtomicUsize>, impl FnOnce() -> u32 + Send + 'static) {
    let consumed = Arc::new(AtomicUsize::new(0));
    let guard = Consumed(Arc::clone(&consumed));
    (consumed, move || {
        let _guard = guard;
        value
    })
}

// SPEC F1, F2: a worker starting a pool task races `cancel`: the task is
// run or dropped unrun, exactly once, and the outcome says which.
#[test]
fn pool_task_start_races_cancel() {
    model(|| {
        let (consumed, task) = counted_task(5);
        let (f, queued) = concurrent_futures::loom_hooks::task_future(task);
        let worker = thread::spawn(move || queued.run());
        let cancelled = f.cancel();
        worker.join().unwrap();
        match f.result() {
            Ok(v) => assert!(!cancelled && *v == 5),
            Err(Error::Cancelled) => assert!(cancelled),
            Err(e) => panic!("unexpected {e}"),
        }
        assert_eq!(consumed.load(SeqCst), 1);
    });
}

// SPEC F8: `set_result` on a pool task races its worker (Starting, then
// Running): the storage holds the task, then one outcome, never both at
// once; the task is consumed once and the first completion wins.
#[test]
fn pool_task_run_races_set_result() {
    model(|| {
        let (consumed, task) = counted_task(5);
        let (f, queued) = concurrent_futures::loom_hooks::task_future(task);
        let worker = thread::spawn(move || queued.run());
        let set = f.set_result(9).is_ok();
        worker.join().unwrap();
        let v = *f.result().unwrap();
        assert!(if set { v == 9 } else { v == 5 });
        assert_eq!(consumed.load(SeqCst), 1);
    });
}

// SPEC F4: a waiter registering while the worker is in an owned phase
// (Starting, Completing) waits it out and is woken with the value.
#[test]
fn pool_task_run_races_a_waiter() {
    model(|| {
        let (consumed, task) = counted_task(5);
        let (f, queued) = concurrent_futures::loom_hooks::task_future(task);
        let worker = thread::spawn(move || queued.run());
        assert_eq!(*f.result().unwrap(), 5);
        worker.join().unwrap();
        assert_eq!(consumed.load(SeqCst), 1);
    });
}

// SPEC F7: an executor's `set_running_or_notify_cancel` races the worker
// for a pool task: one of them claims it; the task runs or is dropped once.
#[test]
fn pool_task_run_races_set_running() {
    model(|| {
        let (consumed, task) = counted_task(5);
        let (f, queued) = concurrent_futures::loom_hooks::task_future(task);
        let worker = thread::spawn(move || queued.run());
        let claimed = matches!(f.set_running_or_notify_cancel(), Ok(true));
        if claimed {
            f.set_result(1).unwrap();
        }
        worker.join().unwrap();
        let v = *f.result().unwrap();
        assert!(if claimed { v == 1 } else { v == 5 });
        assert_eq!(consumed.load(SeqCst), 1);
    });
}

// The last reference to a finished pool task goes away on either thread:
// the outcome is dropped once, after its last read.
#[test]
fn pool_task_outcome_dropped_by_the_last_reference() {
    model(|| {
        let (consumed, task) = counted_task(5);
        let (f, queued) = concurrent_futures::loom_hooks::task_future(task);
        let worker = thread::spawn(move || queued.run());
        drop(f);
        worker.join().unwrap();
        assert_eq!(consumed.load(SeqCst), 1);
    });
}

// The outcome's kind is a flag in the state byte, not a tag in the
// storage: a failure set while the worker runs the task is read as the
// failure, the task's value as the value, and the last handle moving
// either out (the `TAKEN` flag) races the queue's reference going away.
#[test]
fn pool_task_failure_or_value_moved_out_by_the_last_handle() {
    model(|| {
        let (consumed, task) = counted_task(5);
        let (f, queued) = concurrent_futures::loom_hooks::task_future(task);
        let worker = thread::spawn(move || queued.run());
        let failed = f.set_exception(TaskError::new("first")).is_ok();
        match f.into_result() {
            Ok(v) => assert!(!failed && v == 5),
            Err(Error::Failed(e)) => assert!(failed && e.to_string().contains("first")),
            Err(e) => panic!("unexpected {e}"),
        }
        worker.join().unwrap();
        assert_eq!(consumed.load(SeqCst), 1);
    });
}

// SPEC F4: a thread reuses its waiter from wait to wait; a notification
// for a wait that ended (a `result_timeout` whose entry is still on its
// future) racing the next wait never wakes that next wait.
#[test]
fn a_late_notification_does_not_wake_the_next_wait() {
    use concurrent_futures::loom_hooks::Waiter;
    use loom::sync::atomic::AtomicBool;
    model(|| {
        let waiter = Waiter::new();
        let ended = waiter.wait_number();
        let late = {
            let entry = waiter.entry();
            thread::spawn(move || entry.notify(ended))
        };
        waiter.end_wait();
        let current = waiter.wait_number();
        assert_ne!(current, ended);
        let completed = Arc::new(AtomicBool::new(false));
        let completer = {
            let entry = waiter.entry();
            let completed = Arc::clone(&completed);
            thread::spawn(move || {
                completed.store(true, loom::sync::atomic::Ordering::Relaxed);
                entry.notify(current);
            })
        };
        assert!(waiter.park());
        assert!(
            completed.load(loom::sync::atomic::Ordering::Relaxed),
            "woken by the notification of a wait that had ended"
        );
        late.join().unwrap();
        completer.join().unwrap();
    });
}
