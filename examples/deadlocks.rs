//! Seed 001, the two deadlocks of the `ThreadPoolExecutor` section, which
//! hang forever in Python and finish here (SPEC B7).
//!
//! ```python
//! def wait_on_future():
//!     f = executor.submit(pow, 5, 2)
//!     # This will never complete because there is only one worker thread and
//!     # it is executing this function.
//!     print(f.result())
//!
//! executor = ThreadPoolExecutor(max_workers=1)
//! executor.submit(wait_on_future)
//! ```
//!
//! ```python
//! def wait_on_b():
//!     time.sleep(5)
//!     print(b.result())  # b will never complete because it is waiting on a.
//!     return 5
//!
//! def wait_on_a():
//!     time.sleep(5)
//!     print(a.result())  # a will never complete because it is waiting on b.
//!     return 6
//!
//! executor = ThreadPoolExecutor(max_workers=2)
//! a = executor.submit(wait_on_b)
//! b = executor.submit(wait_on_a)
//! ```
//!
//! What to observe: in the first case the only worker, waiting on a task of
//! its own pool that has not started, runs that task itself and prints 25.
//! In the second, both tasks are running when they wait on each other; the
//! one that would close the cycle gets `Err(Deadlock)` from `result()`
//! instead of hanging, returns, and so lets the other one finish. Which of
//! the two closes the cycle depends on timing.

use std::sync::{Arc, Barrier, OnceLock};

use concurrent_futures::{Error, Future, ThreadPoolExecutor};

/// One worker waiting on a task queued behind itself.
fn wait_on_future_example() {
    let executor = Arc::new(ThreadPoolExecutor::new(1).expect("one worker is a valid pool size"));
    let inner = Arc::clone(&executor);
    let wait_on_future = move || -> Result<u32, Error> {
        let f = inner.submit(|| 5u32.pow(2))?;
        let result = f.result().copied();
        println!("wait_on_future: f.result() = {result:?}");
        result
    };
    let outer = executor
        .submit_fallible(wait_on_future)
        .expect("a pool that was never shut down accepts work");
    println!("main: outer.result() = {:?}", outer.result());
}

/// Two running tasks, each waiting on the other.
fn wait_on_each_other_example() {
    let executor = ThreadPoolExecutor::new(2).expect("two workers is a valid pool size");
    let a_slot: Arc<OnceLock<Future<u32>>> = Arc::default();
    let b_slot: Arc<OnceLock<Future<u32>>> = Arc::default();
    // The seed sleeps 5 s so that both tasks are running before either
    // waits; a barrier makes that certain. Had one not started yet, the
    // other would just run it inline (the first example), with no cycle.
    // Main is the third party: it releases the tasks only once both slots
    // are filled.
    let all_started = Arc::new(Barrier::new(3));

    let wait_on_b = {
        let (b_slot, all_started) = (Arc::clone(&b_slot), Arc::clone(&all_started));
        move || {
            all_started.wait();
            let b = b_slot.get().expect("main fills b before the barrier");
            println!("wait_on_b: b.result() = {:?}", b.result());
            5
        }
    };
    let wait_on_a = {
        let (a_slot, all_started) = (Arc::clone(&a_slot), Arc::clone(&all_started));
        move || {
            all_started.wait();
            let a = a_slot.get().expect("main fills a before the barrier");
            println!("wait_on_a: a.result() = {:?}", a.result());
            6
        }
    };

    let a = executor
        .submit(wait_on_b)
        .expect("a pool that was never shut down accepts work");
    let b = executor
        .submit(wait_on_a)
        .expect("a pool that was never shut down accepts work");
    for (slot, future) in [(&a_slot, &a), (&b_slot, &b)] {
        slot.set(future.clone())
            .expect("each slot is filled once, here");
    }
    all_started.wait();
    println!("main: a.result() = {:?}", a.result());
    println!("main: b.result() = {:?}", b.result());
}

/// Runs the example.
pub fn main() {
    println!("-- wait_on_future, max_workers=1 --");
    wait_on_future_example();
    println!("-- wait_on_a / wait_on_b, max_workers=2 --");
    wait_on_each_other_example();
}
