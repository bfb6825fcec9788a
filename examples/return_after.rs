//! Seed 004 (after masnun's quick introduction): `done()` before and after
//! the work, then `as_completed()` and `wait()` over tasks of random length.
//!
//! ```python
//! pool = ThreadPoolExecutor(3)
//! future = pool.submit(return_after_5_secs, ("hello"))
//! print(future.done())    # False
//! sleep(5)
//! print(future.done())    # True
//! print(future.result())
//! ```
//!
//! The seed sleeps exactly as long as the task and hopes it is done by then;
//! here the main thread waits for the future instead, which is both
//! faster and certain. The seconds of the seed are scaled down to `SECOND`.
//!
//! What to observe: `done()` is false right after `submit` and true after
//! `wait`; `as_completed` prints the results shortest sleep first, whatever
//! the submission order; `wait` returns every future in `done` and none in
//! `not_done`.

use std::thread;
use std::time::Duration;

use concurrent_futures::{ALL_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait};
use rand::Rng;

/// What one of the seed's seconds lasts here.
const SECOND: Duration = Duration::from_millis(20);

fn return_after_5_secs(message: &'static str) -> &'static str {
    thread::sleep(SECOND * 5);
    message
}

/// The seed's second `return_after_5_secs`, which sleeps `randint(1, 5)`
/// seconds; the sleep is drawn by the caller so it can be shown.
fn return_after_random_secs(num: u32, secs: u32) -> String {
    thread::sleep(SECOND * secs);
    format!("Return of {num}")
}

/// Submits the five tasks of the seed's `as_completed` and `wait` examples.
fn submit_five(pool: &ThreadPoolExecutor) -> Vec<Future<String>> {
    let secs: Vec<u32> = (0..5).map(|_| rand::rng().random_range(1..=5)).collect();
    println!("sleeps drawn for tasks 0-4, in seed seconds: {secs:?}");
    (0..5)
        .zip(secs)
        .map(|(x, secs)| {
            pool.submit(move || return_after_random_secs(x, secs))
                .expect("a pool that was never shut down accepts work")
        })
        .collect()
}

/// Runs the example.
pub fn main() {
    println!("-- done() before and after --");
    let pool = ThreadPoolExecutor::new(3).expect("three workers is a valid pool size");
    let future = pool
        .submit(|| return_after_5_secs("hello"))
        .expect("a pool that was never shut down accepts work");
    println!("future.done() right after submit: {}", future.done());
    wait([&future], ALL_COMPLETED);
    println!("future.done() after wait: {}", future.done());
    match future.result() {
        Ok(message) => println!("Result: {message}"),
        Err(e) => println!("failed: {e}"),
    }

    println!("-- as_completed() --");
    let pool = ThreadPoolExecutor::new(5).expect("five workers is a valid pool size");
    let futures = submit_five(&pool);
    for x in as_completed(&futures) {
        match x.result() {
            Ok(message) => println!("{message}"),
            Err(e) => println!("failed: {e}"),
        }
    }

    println!("-- wait() --");
    let futures = submit_five(&pool);
    println!("{:?}", wait(&futures, ALL_COMPLETED));
}
