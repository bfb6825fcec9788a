//! SPEC B7 with more thread pools alive than 16-bit ids: the extra pools
//! share one id, so their tasks are not run inline by a waiting worker,
//! but every pool still knows its own workers exactly (scopes, shutdown
//! from a task). A binary of its own: it takes every id while it runs.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

use concurrent_futures::{Error, Shutdown, ThreadPoolExecutor};

const LIMIT: Duration = Duration::from_secs(30);

fn one_worker() -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(1)
        .join_at_exit(false)
        .build()
        .unwrap()
}

#[test]
fn b7_pools_beyond_the_ids_still_know_their_own_workers() {
    // A pool starts no thread before its first task, so holding the ids
    // is cheap; these are more than there are ids.
    let held: Vec<ThreadPoolExecutor> = (0..65_536).map(|_| one_worker()).collect();
    let a: &'static ThreadPoolExecutor = Box::leak(Box::new(one_worker()));
    let b: &'static ThreadPoolExecutor = Box::leak(Box::new(one_worker()));

    // A scope that a pool's only worker waits for runs its tasks there.
    let total = a
        .submit(move || {
            let sum = AtomicUsize::new(0);
            a.scope(|s| {
                for x in [1, 2, 3] {
                    let sum = &sum;
                    s.submit(move || sum.fetch_add(x, SeqCst)).unwrap();
                }
            });
            sum.into_inner()
        })
        .unwrap();
    assert_eq!(*total.result_timeout(LIMIT).unwrap(), 6);

    // A worker of one such pool shutting down another waits for all of
    // the other's workers: none of them is its own.
    let (release, blocked) = mpsc::channel::<()>();
    let running = b.submit(move || blocked.recv().unwrap()).unwrap();
    let shut_down = a
        .submit(move || {
            b.shutdown_with(Shutdown::default().wait(true));
            running.done()
        })
        .unwrap();
    assert!(matches!(
        shut_down.result_timeout(Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    release.send(()).unwrap();
    assert!(
        *shut_down.result_timeout(LIMIT).unwrap(),
        "waited for b's worker"
    );

    // From inside its own task, a pool's shutdown does not wait for the
    // worker running it.
    let own = a
        .submit(move || {
            a.shutdown_with(Shutdown::default().wait(true));
            "returned"
        })
        .unwrap();
    assert_eq!(*own.result_timeout(LIMIT).unwrap(), "returned");
    drop(held);
}
