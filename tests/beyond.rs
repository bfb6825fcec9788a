//! What the thread pool does beyond Python: scoped tasks that borrow
//! (SPEC B5), progress bars (B6), and the seeds' deadlocks turned into
//! results or errors (B7, E6).
//!
//! A test that could hang if the library regressed keeps an extra handle
//! to its pool when it gives up, so the failure is reported instead of the
//! pool's `Drop` waiting forever on a stuck worker.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;

use concurrent_futures::{
    ALL_COMPLETED, Error, Future, ThreadPoolExecutor, as_completed_timeout, wait_timeout,
};
use crossbeam_channel::{bounded, unbounded};

mod common;
use common::{LIMIT, gate, recv, start_gated};

/// The future's outcome; on a hang, leaks the pool (its workers may be
/// stuck for good) and fails the test.
fn settle<'f, T>(f: &'f Future<T>, pool: &Arc<ThreadPoolExecutor>) -> Result<&'f T, Error> {
    match f.result_timeout(LIMIT) {
        Err(Error::Timeout) => {
            std::mem::forget(Arc::clone(pool));
            panic!("{f:?} not done within {LIMIT:?}: the pool hangs");
        }
        other => other,
    }
}

/// A pool that the test may leak when it hangs; not joined at exit, so
/// that a hung test fails instead of hanging the test binary's exit.
fn shared_pool(max_workers: usize) -> Arc<ThreadPoolExecutor> {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(max_workers)
        .join_at_exit(false)
        .build()
        .unwrap();
    Arc::new(pool)
}

// ---------------------------------------------------------------- B5 ----

#[test]
fn scope_tasks_borrow_local_data_mutably_in_chunks() {
    // SPEC B5
    let pool = ThreadPoolExecutor::new(4).unwrap();
    let mut data: Vec<u64> = (0..100).collect();
    let factor = 3; // borrowed immutably by every task
    pool.scope(|s| {
        for chunk in data.chunks_mut(7) {
            s.submit(|| chunk.iter_mut().for_each(|x| *x *= factor))
                .unwrap();
        }
    });
    assert_eq!(data, (0..100).map(|x| x * 3).collect::<Vec<_>>());

    // Disjoint mutable borrows of two locals at once.
    let mut left = String::from("left");
    let mut right = vec![1, 2];
    pool.scope(|s| {
        s.submit(|| left.push_str("+done")).unwrap();
        s.submit(|| right.push(3)).unwrap();
    });
    assert_eq!(left, "left+done");
    assert_eq!(right, [1, 2, 3]);
}

#[test]
fn scope_tasks_return_values_and_the_scope_returns_the_closures_value() {
    // SPEC B5
    let pool = ThreadPoolExecutor::new(3).unwrap();
    let words = [
        String::from("alpha"),
        "beta".into(),
        "gamma".into(),
        "delta".into(),
    ];
    let (total, futures) = pool.scope(|s| {
        let futures: Vec<Future<usize>> = words
            .iter()
            .map(|w| s.submit(|| w.len()).unwrap())
            .collect();
        let total: usize = futures.iter().map(|f| *f.result().unwrap()).sum();
        (total, futures)
    });
    assert_eq!(total, 19);
    // The values are 'static: the futures outlive the scope.
    let lens: Vec<usize> = futures
        .into_iter()
        .map(|f| f.into_result().unwrap())
        .collect();
    assert_eq!(lens, [5, 4, 5, 5]);
}

#[test]
fn a_panicking_scope_closure_waits_for_its_tasks_then_resumes_the_panic() {
    // SPEC B5
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let (open, closed) = gate();
    let (started_tx, started) = unbounded();
    // Opens the gate only once the task runs: the scope body has long
    // panicked by then, so the scope must wait for the task.
    let opener = thread::spawn(move || {
        recv(&started);
        drop(open);
    });
    let mut finished = false;
    let caught = catch_unwind(AssertUnwindSafe(|| {
        pool.scope(|s| {
            s.submit(|| {
                started_tx.send(()).unwrap();
                let _ = closed.recv();
                finished = true;
            })
            .unwrap();
            panic!("scope body panics");
        })
    }));
    let payload = caught.expect_err("the panic is resumed");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"scope body panics"));
    assert!(finished, "the scope returned before its task finished");
    opener.join().unwrap();
}

#[test]
fn a_panicking_scope_task_fails_its_future_only() {
    // SPEC B5, E5
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let mut counter = 0;
    let outcome = pool.scope(|s| {
        let bad = s.submit(|| -> u8 { panic!("scoped task panics") }).unwrap();
        s.submit(|| counter += 1).unwrap();
        bad.result().unwrap_err()
    });
    assert!(matches!(outcome, Error::Failed(e) if e.panic_message() == Some("scoped task panics")));
    assert_eq!(counter, 1);
}

#[test]
fn a_scope_on_a_shut_down_pool_refuses_tasks_and_gives_them_back() {
    // SPEC B5, E3
    let pool = ThreadPoolExecutor::new(1).unwrap();
    pool.shutdown();
    let mut local = 0;
    pool.scope(|s| {
        let refused = s.submit(|| local += 1).unwrap_err();
        assert!(matches!(refused.reason(), Error::ShutDown));
        (refused.into_task())();
    });
    assert_eq!(local, 1);
}

#[test]
fn a_scope_inside_a_task_of_a_one_worker_pool_does_not_deadlock() {
    // SPEC B5, B7
    let pool = shared_pool(1);
    let inner = Arc::clone(&pool);
    let f = pool
        .submit(move || {
            let mut data = vec![1u64; 100];
            // The only worker is this one: the scope's tasks can only run
            // inline, whether awaited inside the scope or at its end.
            let first = inner.scope(|s| {
                let futures: Vec<Future<u64>> = data
                    .chunks_mut(10)
                    .map(|chunk| {
                        s.submit(move || {
                            chunk.iter_mut().for_each(|x| *x *= 2);
                            chunk.iter().sum()
                        })
                        .unwrap()
                    })
                    .collect();
                *futures[0].result().unwrap()
            });
            (first, data.iter().sum::<u64>())
        })
        .unwrap();
    assert_eq!(*settle(&f, &pool).unwrap(), (20, 200));
}

// ---------------------------------------------------------------- B6 ----

#[cfg(feature = "progress")]
mod progress {
    use super::LIMIT;
    use concurrent_futures::progress::{ProgressBar, ProgressExt};
    use concurrent_futures::{Future, ThreadPoolExecutor, as_completed};

    #[test]
    fn map_progress_counts_every_item() {
        // SPEC B6
        let pool = ThreadPoolExecutor::new(3).unwrap();
        let mut it = pool
            .map(|x: u64| x + 1, 0..50)
            .progress_with(ProgressBar::hidden());
        let sum: u64 = it.by_ref().map(Result::unwrap).sum();
        assert_eq!(sum, (1..=50u64).sum::<u64>());
        assert_eq!(it.bar().position(), 50);
        assert!(it.bar().is_finished());

        // Without a bar given, the length is the iterator's known length.
        let auto = pool.map(|x: u64| x, 0..7).progress();
        assert_eq!(auto.bar().length(), Some(7));
        assert_eq!(auto.count(), 7);
    }

    #[test]
    fn as_completed_progress_counts_every_future() {
        // SPEC B6
        let pool = ThreadPoolExecutor::new(3).unwrap();
        let futures: Vec<Future<u32>> = (0..40).map(|i| pool.submit(move || i).unwrap()).collect();
        let mut it = as_completed(&futures).progress_with(ProgressBar::hidden());
        let mut seen: Vec<u32> = it
            .by_ref()
            .map(|f| *f.result_timeout(LIMIT).unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        assert_eq!(it.bar().position(), 40);
        assert!(it.bar().is_finished());
    }
}

// ---------------------------------------------------------------- B7 ----

#[test]
fn the_seeds_wait_on_future_completes_with_25() {
    // SPEC E6, B7
    // Seed: def wait_on_future(): f = executor.submit(pow, 5, 2);
    // print(f.result()) on ThreadPoolExecutor(max_workers=1) hangs in
    // CPython; here the waiting worker runs `pow` itself.
    let executor = shared_pool(1);
    let inner = Arc::clone(&executor);
    let outer = executor
        .submit(move || *inner.submit(|| 5u32.pow(2)).unwrap().result().unwrap())
        .unwrap();
    assert_eq!(*settle(&outer, &executor).unwrap(), 25);

    // The same through `exception`, `into_result` and a timed wait.
    let inner = Arc::clone(&executor);
    let variants = executor
        .submit(move || {
            let a = inner.submit(|| 1u32).unwrap();
            let b = inner.submit(|| 2u32).unwrap();
            let c = inner.submit(|| 3u32).unwrap();
            let none = a.exception().unwrap().is_none();
            (
                none,
                b.into_result().unwrap(),
                *c.result_timeout(LIMIT).unwrap(),
            )
        })
        .unwrap();
    assert_eq!(*settle(&variants, &executor).unwrap(), (true, 2, 3));
}

#[test]
fn nested_waits_on_a_one_worker_pool_complete() {
    // SPEC E6, B7
    fn fib(pool: &Arc<ThreadPoolExecutor>, n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        let (p1, p2) = (Arc::clone(pool), Arc::clone(pool));
        let a = pool.submit(move || fib(&p1, n - 1)).unwrap();
        let b = pool.submit(move || fib(&p2, n - 2)).unwrap();
        a.result().unwrap() + b.result().unwrap()
    }
    let pool = shared_pool(1);
    let inner = Arc::clone(&pool);
    let f = pool.submit(move || fib(&inner, 10)).unwrap();
    assert_eq!(*settle(&f, &pool).unwrap(), 55);
}

#[test]
fn map_inside_a_task_of_a_one_worker_pool_completes() {
    // SPEC E6, B7
    let pool = shared_pool(1);
    let inner = Arc::clone(&pool);
    let f = pool
        .submit(move || {
            inner
                .map(|x: u32| x * x, 0..10)
                .map(Result::unwrap)
                .sum::<u32>()
        })
        .unwrap();
    assert_eq!(*settle(&f, &pool).unwrap(), 285);
}

/// The seed's `wait_on_a` / `wait_on_b`, generalised to a ring of
/// `n` tasks on `n` workers: task i waits (without timeout) on task
/// i + 1, the last on the first. Every task runs before any of them waits.
/// Returns each task's own value and what its wait gave.
fn ring(n: usize) -> Vec<(u32, Result<u32, Error>)> {
    let pool = shared_pool(n);
    let (go_tx, go) = gate();
    let (started_tx, started) = unbounded();
    let mut handoffs = Vec::new();
    let mut futures = Vec::new();
    for i in 0..n {
        let (handoff_tx, handoff) = bounded::<Future<(u32, Result<u32, Error>)>>(1);
        let (go, started_tx) = (go.clone(), started_tx.clone());
        let value = 5 + i as u32;
        let f = pool
            .submit(move || {
                started_tx.send(()).unwrap();
                let _ = go.recv();
                let next = handoff.recv().unwrap();
                let waited = next.result().map(|(v, _)| *v);
                (value, waited)
            })
            .unwrap();
        // Submitted one at a time, each after the previous one started,
        // so that all n run at once whatever the worker start policy.
        recv(&started);
        handoffs.push(handoff_tx);
        futures.push(f);
    }
    for (i, handoff) in handoffs.iter().enumerate() {
        handoff.send(futures[(i + 1) % n].clone()).unwrap();
    }
    drop(go_tx);
    futures
        .iter()
        .map(|f| {
            let (value, waited) = settle(f, &pool).unwrap();
            (*value, waited.clone())
        })
        .collect()
}

#[test]
fn the_seeds_wait_on_a_and_wait_on_b_report_one_deadlock_and_both_complete() {
    // SPEC E6, B7
    // Seed: a = submit(wait_on_b); b = submit(wait_on_a) on two workers
    // hangs forever in CPython. Here exactly one of the two waits fails
    // with Deadlock, so the other one gets its value.
    for _ in 0..20 {
        let outcomes = ring(2);
        let deadlocks = outcomes
            .iter()
            .filter(|(_, w)| matches!(w, Err(Error::Deadlock)))
            .count();
        assert_eq!(deadlocks, 1, "{outcomes:?}");
        for (i, (value, waited)) in outcomes.iter().enumerate() {
            assert_eq!(*value, 5 + i as u32);
            match waited {
                Ok(v) => assert_eq!(*v, 5 + ((i + 1) % 2) as u32),
                Err(e) => assert_eq!(e.to_string(), Error::Deadlock.to_string()),
            }
        }
    }
}

#[test]
fn a_three_task_cycle_is_detected() {
    // SPEC B7
    for _ in 0..10 {
        let outcomes = ring(3);
        let deadlocks = outcomes
            .iter()
            .filter(|(_, w)| matches!(w, Err(Error::Deadlock)))
            .count();
        assert_eq!(deadlocks, 1, "{outcomes:?}");
        assert!(outcomes.iter().enumerate().all(
            |(i, (_, w))| matches!(w, Ok(v) if *v == 5 + ((i + 1) % 3) as u32)
                || matches!(w, Err(Error::Deadlock))
        ));
    }
}

#[test]
fn a_timed_wait_that_closes_a_cycle_is_a_deadlock_at_once() {
    // SPEC B7, issue: a cycle is reported whether the wait has a timeout
    // or not. `a` waits on `b` with a timeout longer than this test's own
    // limit, `b` on `a` without: whichever wait closes the cycle fails
    // with Deadlock at once, and the other then gets its value.
    let pool = shared_pool(2);
    let (go_tx, go) = gate();
    let (started_tx, started) = unbounded();
    let (b_tx, b_rx) = bounded::<Future<Result<u32, Error>>>(1);
    let (a_tx, a_rx) = bounded::<Future<Result<u32, Error>>>(1);
    let a = {
        let (go, started_tx) = (go.clone(), started_tx.clone());
        pool.submit(move || {
            started_tx.send(()).unwrap();
            let _ = go.recv();
            let b = b_rx.recv().unwrap();
            b.result_timeout(LIMIT * 3).map(|_| 5)
        })
        .unwrap()
    };
    recv(&started);
    let b = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            let _ = go.recv();
            let a = a_rx.recv().unwrap();
            a.result().map(|_| 6)
        })
        .unwrap();
    recv(&started);
    b_tx.send(b.clone()).unwrap();
    a_tx.send(a.clone()).unwrap();
    drop(go_tx);
    let outcomes = [
        settle(&a, &pool).unwrap().clone(),
        settle(&b, &pool).unwrap().clone(),
    ];
    let deadlocks = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Error::Deadlock)))
        .count();
    assert_eq!(deadlocks, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().any(|o| matches!(o, Ok(5 | 6))),
        "{outcomes:?}"
    );
}

#[test]
fn waiting_on_a_running_task_outside_a_cycle_just_waits() {
    // SPEC B7
    let pool = shared_pool(2);
    let (open, closed) = gate();
    let running = start_gated(&pool, closed, || 40);
    let awaited = running.clone();
    let (waiting_tx, waiting) = unbounded();
    let waiter = pool
        .submit(move || {
            waiting_tx.send(()).unwrap();
            awaited.result().map(|v| v + 2)
        })
        .unwrap();
    recv(&waiting);
    drop(open);
    assert_eq!(*settle(&waiter, &pool).unwrap().as_ref().unwrap(), 42);
    // A chain of waits (c -> b -> running) is no cycle either.
    let pool = shared_pool(3);
    let (open, closed) = gate();
    let head = start_gated(&pool, closed, || 1);
    let middle = {
        let head = head.clone();
        pool.submit(move || head.result().map(|v| v + 1)).unwrap()
    };
    let tail = {
        let middle = middle.clone();
        pool.submit(move || middle.result().cloned().and_then(|r| r).map(|v| v + 1))
            .unwrap()
    };
    drop(open);
    assert!(matches!(settle(&tail, &pool).unwrap(), Ok(3)));
    assert!(matches!(settle(&middle, &pool).unwrap(), Ok(2)));
}

#[test]
fn a_main_thread_waiting_on_tasks_is_never_told_deadlock() {
    // SPEC B7
    // Only running tasks can close a cycle; a plain thread just waits.
    let pool = shared_pool(1);
    let (open, closed) = gate();
    let f = pool
        .submit(move || {
            let _ = closed.recv();
            9
        })
        .unwrap();
    let waiter = {
        let f = f.clone();
        thread::spawn(move || f.result().copied())
    };
    drop(open);
    assert_eq!(waiter.join().unwrap().unwrap(), 9);
}

#[test]
fn wait_and_as_completed_inside_a_task_on_a_saturated_pool_complete() {
    // SPEC E6, B7
    // The seed's `wait_on_future`, waiting through `wait` and
    // `as_completed` instead of `result` (DESIGN: one waiting mechanism
    // serves result, exception, wait and as_completed).
    let pool = shared_pool(1);
    let inner = Arc::clone(&pool);
    let f = pool
        .submit(move || {
            let a = inner.submit(|| 5u32.pow(2)).unwrap();
            let by_wait = wait_timeout([&a], LIMIT / 4, ALL_COMPLETED).done.len();
            let b = inner.submit(|| 3u32).unwrap();
            let by_as_completed = as_completed_timeout([&b], LIMIT / 4)
                .filter(Result::is_ok)
                .count();
            (by_wait, by_as_completed)
        })
        .unwrap();
    assert_eq!(*settle(&f, &pool).unwrap(), (1, 1));
}

#[test]
fn a_cycle_through_an_inline_run_is_reported_not_hung() {
    // SPEC B7
    // `a` submits `b` and waits on it; on one worker the waiting worker runs
    // `b` inline. `b` waits on `a`: a true cycle (a waits on b, b on a).
    let pool = shared_pool(1);
    let (handoff_tx, handoff) = bounded::<Future<Result<u32, Error>>>(1);
    let inner = Arc::clone(&pool);
    let a = pool
        .submit(move || {
            let me = handoff.recv().unwrap();
            let b = inner
                .submit(move || match me.result() {
                    Err(Error::Deadlock) => Ok::<u32, Error>(1),
                    other => panic!("b: unexpected {other:?}"),
                })
                .unwrap();
            b.result()
                .map(|inner: &Result<u32, Error>| *inner.as_ref().unwrap_or(&0))
        })
        .unwrap();
    handoff_tx.send(a.clone()).unwrap();
    match a.result_timeout(LIMIT) {
        // The edge "a waits on b" exists while b runs inline, so b's
        // wait on a closes the cycle and fails; then a gets b's value.
        Ok(outcome) => assert!(matches!(outcome, Ok(1)), "{outcome:?}"),
        Err(e) => {
            std::mem::forget(Arc::clone(&pool));
            panic!("a: {e:?} (the only worker is parked for good)");
        }
    }
}

#[test]
fn a_chain_of_ten_thousand_inline_runs_completes_without_overflowing_the_stack() {
    // SPEC B7: task i waits on queued task i + 1 of its own one-worker
    // pool, so each runs inside the one before it.
    const LINKS: usize = 10_000;
    let pool = shared_pool(1);
    let slots: Arc<Vec<std::sync::OnceLock<Future<usize>>>> =
        Arc::new((0..=LINKS).map(|_| std::sync::OnceLock::new()).collect());
    let (open, closed) = gate();
    // Hold the only worker while the chain is queued in order.
    let holder = start_gated(&pool, closed, || 0usize);
    for i in 0..=LINKS {
        let next = Arc::clone(&slots);
        let f = pool
            .submit(move || match next.get(i + 1).and_then(|s| s.get()) {
                Some(f) => f.result().map_or(usize::MAX, |n| n + 1),
                None => 0,
            })
            .unwrap();
        slots[i].set(f).unwrap();
    }
    drop(open);
    assert_eq!(*settle(&holder, &pool).unwrap(), 0);
    let head = slots[0].get().unwrap().clone();
    assert_eq!(*settle(&head, &pool).unwrap(), LINKS);
}
