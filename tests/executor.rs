//! What every executor promises (SPEC E1-E6), checked on the thread pool,
//! plus the bad inputs of the executor-facing future API (F4, F6-F8).
//!
//! No test sleeps: tasks block on gates (a channel whose sender is dropped
//! to open it) and report through channels; timeouts are only upper
//! bounds that turn a hang into a failure.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use concurrent_futures::{
    ALL_COMPLETED, ClosureExecutor, Error, Executor, FnExecutor, Future, MapOptions, Shutdown,
    State, TaskError, ThreadPoolExecutor, as_completed, wait,
};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

mod common;
use common::{LIMIT, gate, occupy, recv, settle, start_gated, thread_name};

/// Starts `n` workers and leaves them idle, so that `n` tasks submitted
/// at once surely run at once (each warm-up task is submitted after the
/// previous one started, so the pool's start policy does not matter).
fn warm(pool: &ThreadPoolExecutor, n: usize) {
    let (open, closed) = gate();
    let futures = occupy(pool, n, &closed);
    drop(open);
    for f in &futures {
        settle(f).unwrap();
    }
}

#[test]
fn submit_returns_at_once_while_the_pool_is_saturated() {
    // SPEC E1
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (open, closed) = gate();
    let first = start_gated(&pool, closed, || "first");
    // The only worker is blocked: every submit must still return at once,
    // with a future that is not done.
    let queued: Vec<Future<usize>> = (0..100).map(|i| pool.submit(move || i).unwrap()).collect();
    assert!(first.running());
    assert!(queued.iter().all(|f| f.state() == State::Pending));
    drop(open);
    assert_eq!(*settle(&first).unwrap(), "first");
    for (i, f) in queued.iter().enumerate() {
        assert_eq!(*settle(f).unwrap(), i);
    }
}

#[test]
fn map_yields_results_in_input_order_whatever_the_completion_order() {
    // SPEC E2
    let pool = ThreadPoolExecutor::new(5).unwrap();
    warm(&pool, 5);
    // Item i may only finish after item i + 1 did: completion order is
    // exactly the reverse of input order.
    let links: Vec<(Sender<()>, Receiver<()>)> = (0..5).map(|_| bounded(1)).collect();
    let links = Arc::new(links);
    let chained = Arc::clone(&links);
    let results: Vec<usize> = pool
        .map(
            move |i: usize| {
                if i < 4 {
                    chained[i]
                        .1
                        .recv_timeout(LIMIT)
                        .expect("successor finished");
                }
                if i > 0 {
                    chained[i - 1].0.send(()).unwrap();
                }
                i * 10
            },
            0..5,
        )
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, [0, 10, 20, 30, 40]);

    let squares: Vec<u64> = pool
        .map(|x: u64| x * x, 0..1000)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(squares, (0..1000).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn map_may_borrow_its_input_for_the_maps_lifetime() {
    // SPEC E2
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let words = [String::from("a"), "bb".into(), "ccc".into()];
    let lens: Vec<usize> = pool
        .map(|n: usize| n * 10, words.iter().map(String::len))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lens, [10, 20, 30]);
    let buffered: Vec<usize> = pool
        .map_with(
            |n: usize| n,
            words.iter().map(String::len),
            MapOptions::new().buffersize(1),
        )
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(buffered, [1, 2, 3]);
}

#[test]
fn map_with_empty_input_yields_nothing() {
    // SPEC E2
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let mut it = pool.map(|x: u32| x, Vec::new());
    assert_eq!(it.size_hint(), (0, Some(0)));
    assert!(it.next().is_none());
    assert!(it.next().is_none());
    let mut buffered = pool.map_with(|x: u32| x, [], MapOptions::new().buffersize(4));
    assert!(buffered.next().is_none());
    let timed = pool.map_with(|x: u32| x, [], MapOptions::new().timeout(Duration::ZERO));
    assert_eq!(timed.count(), 0);
}

#[test]
fn map_timeout_fails_the_late_item_then_ends_and_cancels_the_rest() {
    // SPEC E2
    // One worker runs the items in order; item 2 blocks. When item 2 has
    // started, items 0 and 1 are published, so they are returned whatever
    // the deadline; item 2 cannot finish in time, whatever the machine.
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (open, closed) = gate();
    let (started_tx, started) = unbounded();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let options = MapOptions::new().timeout(Duration::from_millis(50));
    let mut it = pool.map_with(
        move |i: u32| {
            counter.fetch_add(1, SeqCst);
            if i == 2 {
                started_tx.send(()).unwrap();
                let _ = closed.recv();
            }
            i
        },
        0..5,
        options,
    );
    recv(&started);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert_eq!(it.next().unwrap().unwrap(), 1);
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    assert!(it.next().is_none(), "a timeout ends the iteration");
    assert!(it.next().is_none());
    drop(open);
    drop(it);
    pool.shutdown();
    // Items 3 and 4 were cancelled by the timeout; item 2 was running.
    assert_eq!(ran.load(SeqCst), 3);
}

#[test]
fn map_buffersize_bounds_how_many_items_are_submitted_ahead() {
    // SPEC E2
    let pool = ThreadPoolExecutor::new(8).unwrap();
    warm(&pool, 8);
    let (open, closed) = gate();
    let (started_tx, started) = unbounded();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&pulled);
    let input = (0..100u64).inspect(move |_| {
        counting.fetch_add(1, SeqCst);
    });
    let mut it = pool.map_with(
        move |x: u64| {
            started_tx.send(x).unwrap();
            let _ = closed.recv();
            x * 2
        },
        input,
        MapOptions::new().buffersize(3),
    );
    // Eight idle workers could take more, but only three items exist.
    let mut first: Vec<u64> = (0..3).map(|_| recv(&started)).collect();
    first.sort_unstable();
    assert_eq!(first, [0, 1, 2]);
    assert_eq!(pulled.load(SeqCst), 3);
    assert!(started.is_empty());
    drop(open);
    // One more item goes in as each result is taken.
    for k in 0..100u64 {
        assert_eq!(it.next().unwrap().unwrap(), k * 2);
        assert_eq!(pulled.load(SeqCst), (k as usize + 4).min(100));
    }
    assert!(it.next().is_none());
}

#[test]
fn map_buffersize_runs_an_endless_input_in_bounded_memory() {
    // SPEC E2
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&pulled);
    let endless = (0u64..).inspect(move |_| {
        counting.fetch_add(1, SeqCst);
    });
    let first: Vec<u64> = pool
        .map_with(|x| x + 1, endless, MapOptions::new().buffersize(4))
        .take(10)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    assert_eq!(pulled.load(SeqCst), 14);
}

#[test]
fn map_refuses_a_zero_buffersize_before_submitting_anything() {
    // SPEC E2, X1: CPython 3.14 raises ValueError("buffersize must be None
    // or > 0"); here the map yields that error once and submits nothing.
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&pulled);
    let input = (0u64..).inspect(move |_| {
        counting.fetch_add(1, SeqCst);
    });
    let mut map = pool.map_with(|x| x, input, MapOptions::new().buffersize(0));
    match map.next() {
        Some(Err(Error::InvalidArgument(why))) => {
            assert_eq!(why, "buffersize must be None or > 0");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(map.next().is_none());
    assert_eq!(pulled.load(SeqCst), 0);
    // A type that cannot hold zero works too.
    let one = std::num::NonZeroUsize::MIN;
    let first: Vec<u64> = pool
        .map_with(|x| x, 0u64.., MapOptions::new().buffersize(one))
        .take(3)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(first, [0, 1, 2]);
}

#[test]
fn map_failed_item_surfaces_at_its_position_and_iteration_continues() {
    // SPEC E2, E5
    // CPython raises at the failed item and its generator ends; here the
    // item is an `Err` and the iterator goes on (SPEC: "A failed item
    // surfaces when the iterator reaches it").
    let pool = ThreadPoolExecutor::new(3).unwrap();
    let results: Vec<Result<u32, Error>> = pool
        .map(
            |x: u32| {
                if x == 2 {
                    panic!("item two fails");
                }
                x
            },
            0..5,
        )
        .collect();
    assert_eq!(results.len(), 5);
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (2, Err(Error::Failed(e))) => assert_eq!(e.panic_message(), Some("item two fails")),
            (i, Ok(x)) if i != 2 => assert_eq!(*x as usize, i),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn dropping_a_map_iterator_halfway_cancels_what_has_not_started() {
    // SPEC E2
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (open, closed) = gate();
    let (started_tx, started) = unbounded();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let mut it = pool.map(
        move |i: u32| {
            counter.fetch_add(1, SeqCst);
            if i >= 1 {
                started_tx.send(i).unwrap();
                let _ = closed.recv();
            }
            i
        },
        0..10,
    );
    assert_eq!(it.next().unwrap().unwrap(), 0);
    // The only worker is inside item 1; items 2..10 are queued behind it.
    assert_eq!(recv(&started), 1);
    drop(it);
    drop(open);
    pool.shutdown();
    assert_eq!(ran.load(SeqCst), 2, "only the items 0 and 1 ran");
}

#[test]
fn map_on_a_pool_shut_down_midway_yields_shut_down_then_ends() {
    // SPEC E2, E3
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let mut it = pool.map_with(|x: u32| x, 0..10, MapOptions::new().buffersize(2));
    assert_eq!(it.next().unwrap().unwrap(), 0);
    pool.shutdown();
    // Items 1 and 2 were submitted before the shutdown; item 3 is refused.
    assert_eq!(it.next().unwrap().unwrap(), 1);
    assert_eq!(it.next().unwrap().unwrap(), 2);
    assert!(matches!(it.next(), Some(Err(Error::ShutDown))));
    assert!(it.next().is_none());
    drop(it);

    let mut refused = pool.map(|x: u32| x, 0..3);
    assert!(matches!(refused.next(), Some(Err(Error::ShutDown))));
    assert!(refused.next().is_none());
}

#[test]
fn shutdown_wait_true_waits_for_pending_work_and_for_the_workers() {
    // SPEC E3
    struct OnExit(Sender<String>);
    impl Drop for OnExit {
        fn drop(&mut self) {
            let _ = self.0.send(thread_name());
        }
    }
    thread_local! {
        static EXIT: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
    }

    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let (open, closed) = gate();
    let (exits_tx, exits) = unbounded();
    let (started_tx, started) = unbounded();
    let mut futures = Vec::new();
    // One after the other, so both workers run one each.
    for i in 0..2 {
        let (closed, exits_tx, started_tx) = (closed.clone(), exits_tx.clone(), started_tx.clone());
        futures.push(
            pool.submit(move || {
                EXIT.with(|e| *e.borrow_mut() = Some(OnExit(exits_tx)));
                started_tx.send(()).unwrap();
                let _ = closed.recv();
                i
            })
            .unwrap(),
        );
        recv(&started);
    }
    drop(exits_tx);
    // Queued behind the two blocked workers.
    futures.extend((2..6).map(|i| pool.submit(move || i).unwrap()));

    let (returned_tx, returned) = bounded(1);
    let shutting = Arc::clone(&pool);
    let watched = futures.clone();
    let shutdown = thread::spawn(move || {
        shutting.shutdown();
        let all_done = watched.iter().all(Future::done);
        let exited: HashSet<String> = exits.try_iter().collect();
        returned_tx.send(()).unwrap();
        (all_done, exited)
    });
    // The gate is closed, so the shutdown cannot have returned.
    assert!(returned.try_recv().is_err());
    drop(open);
    let (all_done, exited) = shutdown.join().unwrap();
    assert!(
        all_done,
        "shutdown(wait=true) returned before the work was done"
    );
    assert_eq!(exited.len(), 2, "both workers had exited: {exited:?}");
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(*f.result().unwrap(), i);
    }
}

#[test]
fn shutdown_wait_false_returns_at_once_and_the_work_still_finishes() {
    // SPEC E3
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let (open, closed) = gate();
    let futures: Vec<Future<u32>> = (0..6)
        .map(|i| {
            let closed = closed.clone();
            pool.submit(move || {
                let _ = closed.recv();
                i
            })
            .unwrap()
        })
        .collect();
    let (returned_tx, returned) = bounded(1);
    let shutting = Arc::clone(&pool);
    let shutdown = thread::spawn(move || {
        shutting.shutdown_with(Shutdown::default().wait(false));
        returned_tx.send(()).unwrap();
    });
    // Returns although every task is still blocked.
    recv(&returned);
    shutdown.join().unwrap();
    assert!(futures.iter().all(|f| !f.done()));
    let refused = pool.submit(|| 99).unwrap_err();
    assert!(matches!(refused.reason(), Error::ShutDown));
    drop(open);
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(*settle(f).unwrap(), i as u32);
    }
}

#[test]
fn shutdown_cancel_futures_cancels_queued_work_and_wakes_its_waiters() {
    // SPEC E3
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (open, closed) = gate();
    let running = start_gated(&pool, closed, || "ran");
    let queued: Vec<Future<&str>> = (0..4).map(|_| pool.submit(|| "queued").unwrap()).collect();
    let callbacks = Arc::new(AtomicUsize::new(0));
    for f in &queued {
        let callbacks = Arc::clone(&callbacks);
        f.add_done_callback(move |f| {
            assert!(f.cancelled());
            callbacks.fetch_add(1, SeqCst);
        });
    }
    // Three kinds of waiters, each in its own thread.
    let by_result = {
        let f = queued[2].clone();
        thread::spawn(move || f.result_timeout(LIMIT).map(|_| ()))
    };
    let by_wait = {
        let fs = queued.clone();
        thread::spawn(move || wait(&fs, ALL_COMPLETED).done.len())
    };
    let by_as_completed = {
        let fs = queued.clone();
        thread::spawn(move || as_completed(&fs).count())
    };

    pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));
    assert!(matches!(by_result.join().unwrap(), Err(Error::Cancelled)));
    assert_eq!(by_wait.join().unwrap(), 4);
    assert_eq!(by_as_completed.join().unwrap(), 4);
    assert_eq!(callbacks.load(SeqCst), 4);
    for f in &queued {
        assert!(f.cancelled() && f.done());
        assert!(matches!(f.result(), Err(Error::Cancelled)));
    }
    // The running task is not cancelled and completes.
    assert!(!running.cancelled());
    drop(open);
    assert_eq!(*settle(&running).unwrap(), "ran");
}

#[test]
fn shutdown_wait_and_cancel_futures_cancels_before_it_waits() {
    // SPEC E3
    let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    let (open, closed) = gate();
    let running = start_gated(&pool, closed, || 1);
    let queued = pool.submit(|| 2).unwrap();
    let shutting = Arc::clone(&pool);
    let shutdown =
        thread::spawn(move || shutting.shutdown_with(Shutdown::default().cancel_futures(true)));
    // Cancelled while the shutdown still waits for the running task.
    assert!(matches!(settle(&queued), Err(Error::Cancelled)));
    assert!(!running.done());
    drop(open);
    shutdown.join().unwrap();
    assert!(
        running.done(),
        "shutdown(wait=true) returned before the work was done"
    );
    assert_eq!(*running.result().unwrap(), 1);
}

#[test]
fn shutdown_is_idempotent_and_safe_from_several_threads_at_once() {
    // SPEC E3
    let pool = Arc::new(ThreadPoolExecutor::new(3).unwrap());
    let (open, closed) = gate();
    let futures: Vec<Future<u32>> = (0..20)
        .map(|i| {
            let closed = closed.clone();
            pool.submit(move || {
                let _ = closed.recv();
                i
            })
            .unwrap()
        })
        .collect();
    let start = Arc::new(Barrier::new(9));
    let callers: Vec<_> = (0..8)
        .map(|k| {
            let (pool, start) = (Arc::clone(&pool), Arc::clone(&start));
            let watched = futures.clone();
            thread::spawn(move || {
                start.wait();
                match k % 4 {
                    0 => pool.shutdown(),
                    1 => pool.shutdown_with(Shutdown::default().wait(false)),
                    2 => pool.shutdown_with(Shutdown::default().wait(true)),
                    _ => Executor::shutdown(&*pool),
                }
                k % 4 == 1 || watched.iter().all(Future::done)
            })
        })
        .collect();
    start.wait();
    drop(open);
    for caller in callers {
        assert!(caller.join().unwrap(), "a waiting shutdown returned early");
    }
    pool.shutdown();
    pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(*f.result().unwrap(), i as u32);
    }
    assert!(matches!(
        pool.submit(|| 0).unwrap_err().reason(),
        Error::ShutDown
    ));
}

#[test]
fn shutdown_from_inside_a_task_does_not_hang() {
    // SPEC E3
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let (open, closed) = gate();
    let other = start_gated(&pool, closed, || "other");
    let inner = Arc::clone(&pool);
    let (about_to_shutdown_tx, about_to_shutdown) = unbounded();
    let shutting = pool
        .submit(move || {
            about_to_shutdown_tx.send(()).unwrap();
            // Waits for every worker but its own.
            inner.shutdown();
            inner.shutdown();
            let after = inner.submit(|| ()).is_err();
            (thread_name(), after)
        })
        .unwrap();
    recv(&about_to_shutdown);
    drop(open);
    let (name, refused) = settle(&shutting).unwrap();
    assert!(name.ends_with("_1"), "ran on the second worker: {name}");
    assert!(refused);
    assert_eq!(*settle(&other).unwrap(), "other");
    pool.shutdown();
}

#[test]
fn shutdown_cancel_futures_from_inside_a_task_cancels_the_queue() {
    // SPEC E3
    let pool = Arc::new(ThreadPoolExecutor::new(1).unwrap());
    let (open, closed) = gate();
    let inner = Arc::clone(&pool);
    let (ready_tx, ready) = unbounded();
    let first = pool
        .submit(move || {
            let _ = closed.recv();
            inner.shutdown_with(Shutdown::default().cancel_futures(true));
            ready_tx.send(()).unwrap();
        })
        .unwrap();
    let queued: Vec<Future<u8>> = (0..3).map(|_| pool.submit(|| 1).unwrap()).collect();
    drop(open);
    recv(&ready);
    assert!(settle(&first).is_ok());
    for f in &queued {
        assert!(matches!(settle(f), Err(Error::Cancelled)));
    }
}

#[test]
fn dropping_the_last_handle_inside_a_task_does_not_hang() {
    // SPEC E3, E4
    let pool = Arc::new(ThreadPoolExecutor::new(2).unwrap());
    let (open, closed) = gate();
    let last = Arc::clone(&pool);
    let f = pool
        .submit(move || {
            let _ = closed.recv();
            // The pool's Drop runs here, on its own worker.
            drop(last);
            7
        })
        .unwrap();
    drop(pool);
    drop(open);
    assert_eq!(*settle(&f).unwrap(), 7);
}

#[test]
fn submit_after_shutdown_is_refused_with_the_task_given_back() {
    // SPEC E3
    let pool = ThreadPoolExecutor::new(1).unwrap();
    assert_eq!(*pool.submit(|| 1).unwrap().result().unwrap(), 1);
    pool.shutdown();
    let refused = pool.submit(|| 7).unwrap_err();
    assert!(matches!(refused.reason(), Error::ShutDown));
    assert_eq!(
        refused.to_string(),
        "cannot schedule new futures after shutdown"
    );
    assert_eq!((refused.into_task())(), 7);

    let owned = String::from("given back");
    let refused = pool.submit(move || owned).unwrap_err();
    assert_eq!((refused.into_task())(), "given back");

    let refused = pool.submit_fallible(|| "x".parse::<u8>()).unwrap_err();
    assert!(matches!(refused.reason(), Error::ShutDown));
    assert!((refused.into_task())().is_err());

    // Through the trait, and as an `Error`.
    let refused = ClosureExecutor::submit(&pool, || 3).unwrap_err();
    let as_error: Error = refused.into();
    assert!(matches!(as_error, Error::ShutDown));
}

#[test]
fn drop_is_shutdown_wait_true() {
    // SPEC E4
    let pool = ThreadPoolExecutor::new(2).unwrap();
    let (open, closed) = gate();
    let (started_tx, started) = unbounded();
    let futures: Vec<Future<u32>> = (0..8)
        .map(|i| {
            let (closed, started_tx) = (closed.clone(), started_tx.clone());
            pool.submit(move || {
                started_tx.send(()).unwrap();
                let _ = closed.recv();
                i
            })
            .unwrap()
        })
        .collect();
    recv(&started);
    let (dropped_tx, dropped) = bounded(1);
    let watched = futures.clone();
    let dropper = thread::spawn(move || {
        drop(pool);
        let all_done = watched.iter().all(Future::done);
        dropped_tx.send(()).unwrap();
        all_done
    });
    // The tasks are blocked, so the drop cannot have returned.
    assert!(dropped.try_recv().is_err());
    drop(open);
    assert!(
        dropper.join().unwrap(),
        "drop returned before the work was done"
    );
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(*f.result().unwrap(), i as u32);
    }
}

#[test]
fn a_panicking_task_fails_only_its_future_and_the_pool_keeps_working() {
    // SPEC E5
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let before = pool.submit(thread_name).unwrap();
    let boom = pool.submit(|| -> u32 { panic!("boom {}", 42) }).unwrap();
    let static_str = pool.submit(|| -> u32 { panic!("static") }).unwrap();
    let any = pool
        .submit(|| -> u32 { std::panic::panic_any(17_i32) })
        .unwrap();
    let fallible = pool.submit_fallible(|| "x1".parse::<u32>()).unwrap();
    let after = pool.submit(thread_name).unwrap();

    match settle(&boom) {
        Err(Error::Failed(e)) => {
            assert!(e.is_panic());
            assert_eq!(e.panic_message(), Some("boom 42"));
            assert!(e.to_string().contains("boom 42"));
        }
        other => panic!("unexpected {other:?}"),
    }
    match settle(&static_str) {
        Err(Error::Failed(e)) => assert_eq!(e.panic_message(), Some("static")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(settle(&any), Err(Error::Failed(e)) if e.is_panic()));
    match settle(&fallible) {
        Err(Error::Failed(e)) => {
            assert!(!e.is_panic());
            assert!(e.downcast_ref::<std::num::ParseIntError>().is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(boom.exception(), Ok(Some(Error::Failed(_)))));
    // The same (only) worker ran everything: it survived the panics.
    assert_eq!(settle(&before).unwrap(), settle(&after).unwrap());
    let again: Vec<u32> = pool.map(|x: u32| x + 1, 0..3).map(Result::unwrap).collect();
    assert_eq!(again, [1, 2, 3]);
}

#[test]
fn a_panicking_callback_is_ignored_and_the_worker_goes_on() {
    // SPEC F6, E5
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (open, closed) = gate();
    let ran = Arc::new(AtomicUsize::new(0));
    let f = pool
        .submit(move || {
            let _ = closed.recv();
            thread_name()
        })
        .unwrap();
    f.add_done_callback(|_| panic!("callback panics"));
    let counter = Arc::clone(&ran);
    f.add_done_callback(move |f| {
        assert!(f.done());
        counter.fetch_add(1, SeqCst);
    });
    drop(open);
    let worker = settle(&f).unwrap().clone();
    // Later callbacks still ran, the outcome is unchanged, the worker lives.
    assert_eq!(*pool.submit(thread_name).unwrap().result().unwrap(), worker);
    assert_eq!(ran.load(SeqCst), 1);
    // Already done: the panicking callback runs (and is caught) right here.
    f.add_done_callback(|_| panic!("late callback panics"));
    let counter = Arc::clone(&ran);
    f.add_done_callback(move |_| {
        counter.fetch_add(1, SeqCst);
    });
    assert_eq!(ran.load(SeqCst), 2);
    assert_eq!(*f.result().unwrap(), worker);
}

#[test]
fn the_executor_traits_work_generically() {
    // SPEC E1, E2, E3
    fn squares<E: ClosureExecutor>(executor: &E, n: u64) -> Vec<u64> {
        executor
            .map(|x| x * x, 0..n)
            .collect::<Result<_, _>>()
            .unwrap()
    }
    fn submit_two<E: ClosureExecutor>(executor: &E) -> (Future<&'static str>, Future<u8>) {
        (
            executor.submit(|| "text").unwrap(),
            executor.submit(|| 8).unwrap(),
        )
    }
    fn stop<E: ClosureExecutor>(executor: &E) {
        executor.shutdown_with(Shutdown::default().cancel_futures(true));
        executor.shutdown();
        assert!(executor.is_shut_down() && !executor.is_broken());
        assert!(executor.submit(|| ()).is_err());
    }
    let pool = ThreadPoolExecutor::new(2).unwrap();
    assert_eq!(squares(&pool, 5), [0, 1, 4, 9, 16]);
    let (a, b) = submit_two(&pool);
    assert_eq!((*settle(&a).unwrap(), *settle(&b).unwrap()), ("text", 8));
    let timed: Vec<u8> = pool
        .map_with(|x: u8| x, 0..3, MapOptions::new().timeout(LIMIT))
        .map(Result::unwrap)
        .collect();
    assert_eq!(timed, [0, 1, 2]);
    stop(&pool);

    let defaults = Shutdown::default();
    assert!(defaults.waits() && !defaults.cancels_futures());
}

fn triple(x: u32) -> u32 {
    x * 3
}

#[test]
fn code_generic_over_executors_takes_either_pool() {
    // SPEC E1, E2, E3: what both pools share, from outside.
    fn run_all<E: FnExecutor<u32, u32>>(pool: &E) -> (u32, Vec<u32>) {
        let one = *pool.submit_fn(triple, 5).unwrap().result().unwrap();
        let many = pool
            .map_fn(triple, 0..4, MapOptions::new().chunksize(2))
            .collect::<Result<_, _>>()
            .unwrap();
        (one, many)
    }
    fn stop(pool: &impl Executor) -> (usize, bool) {
        pool.shutdown();
        (pool.max_workers(), pool.is_shut_down())
    }
    let threads = ThreadPoolExecutor::new(2).unwrap();
    let processes = concurrent_futures::ProcessPoolExecutor::new(2).unwrap();
    assert_eq!(run_all(&threads), (15, vec![0, 3, 6, 9]));
    assert_eq!(run_all(&processes), (15, vec![0, 3, 6, 9]));
    assert_eq!(stop(&threads), (2, true));
    assert_eq!(stop(&processes), (2, true));
    let refused = processes.submit_fn(triple, 1).unwrap_err();
    assert_eq!(refused.into_task(), 1);
    assert!(!processes.is_broken());
}

#[test]
fn result_timeout_zero_polls_and_a_huge_timeout_waits_forever() {
    // SPEC F4
    // CPython: result(timeout=0) on a pending future raises TimeoutError;
    // result(timeout=1e20) raises OverflowError. Here a timeout too large
    // to represent means no timeout.
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let (open, closed) = gate();
    let f = pool
        .submit(move || {
            let _ = closed.recv();
            5
        })
        .unwrap();
    assert!(matches!(
        f.result_timeout(Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        f.exception_timeout(Duration::ZERO),
        Err(Error::Timeout)
    ));
    let waiter = {
        let f = f.clone();
        thread::spawn(move || *f.result_timeout(Duration::MAX).unwrap())
    };
    let exception_waiter = {
        let f = f.clone();
        thread::spawn(move || {
            f.exception_timeout(Duration::from_secs(u64::MAX))
                .unwrap()
                .is_none()
        })
    };
    drop(open);
    assert_eq!(waiter.join().unwrap(), 5);
    assert!(exception_waiter.join().unwrap());
    assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), 5);
    assert_eq!(*f.result_timeout(Duration::MAX).unwrap(), 5);

    let cancelled: Future<u8> = Future::new();
    cancelled.cancel();
    assert!(matches!(
        cancelled.result_timeout(Duration::ZERO),
        Err(Error::Cancelled)
    ));
    assert!(matches!(
        cancelled.result_timeout(Duration::MAX),
        Err(Error::Cancelled)
    ));
}

#[test]
fn set_result_on_a_done_future_is_an_invalid_state() {
    // SPEC F8
    let f = Future::new();
    f.set_result(1).unwrap();
    let e = f.set_result(2).unwrap_err();
    assert_eq!(e.state(), State::Finished);
    assert_eq!(e.into_value(), 2);
    assert!(f.set_exception(TaskError::new("late")).is_err());
    assert_eq!(*f.result().unwrap(), 1);

    let cancelled: Future<u8> = Future::new();
    assert!(cancelled.cancel());
    let e = cancelled.set_result(3).unwrap_err();
    assert_eq!(e.state(), State::Cancelled);
    assert!(matches!(cancelled.result(), Err(Error::Cancelled)));

    // A pool's future: the executor's value stays.
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let from_pool = pool.submit(|| 10).unwrap();
    assert_eq!(*settle(&from_pool).unwrap(), 10);
    assert_eq!(from_pool.set_result(11).unwrap_err().into_value(), 11);
    assert!(
        from_pool
            .set_exception(TaskError::new("too late"))
            .unwrap_err()
            .to_string()
            .contains("Finished")
    );
    assert_eq!(*from_pool.result().unwrap(), 10);
}

#[test]
fn set_running_or_notify_cancel_twice_is_an_invalid_state() {
    // SPEC F7
    // CPython raises RuntimeError("Future in unexpected state") here.
    let f: Future<u8> = Future::new();
    assert!(f.set_running_or_notify_cancel().unwrap());
    assert!(f.running());
    assert!(!f.cancel(), "a running future cannot be cancelled");
    assert_eq!(
        f.set_running_or_notify_cancel().unwrap_err().state(),
        State::Running
    );
    f.set_result(1).unwrap();
    assert_eq!(
        f.set_running_or_notify_cancel().unwrap_err().state(),
        State::Finished
    );

    let cancelled: Future<u8> = Future::new();
    cancelled.cancel();
    assert!(!cancelled.set_running_or_notify_cancel().unwrap());
    assert_eq!(
        cancelled
            .set_running_or_notify_cancel()
            .unwrap_err()
            .state(),
        State::Cancelled
    );
    assert!(cancelled.cancelled());
}

#[test]
fn a_task_error_converts_into_a_std_error_chain() {
    // SPEC E5
    let pool = ThreadPoolExecutor::new(1).unwrap();
    let f = pool.submit_fallible(|| Err::<(), _>("disk full")).unwrap();
    let e = settle(&f).unwrap_err();
    assert_eq!(e.to_string(), "the task failed: disk full");
    let source = std::error::Error::source(&e).expect("the task's error is the source");
    assert_eq!(source.to_string(), "disk full");
    // A panicking task never unwinds into the caller.
    let panicked = pool.submit(|| -> u8 { panic!("inside") }).unwrap();
    let caught = catch_unwind(AssertUnwindSafe(|| panicked.result().is_err()));
    assert!(matches!(caught, Ok(true)));
}
