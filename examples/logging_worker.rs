//! Seed 002, the `ThreadPoolExecutor` logging example and its
//! context-manager rewrite.
//!
//! ```python
//! executor = futures.ThreadPoolExecutor(max_workers=3)
//! fs = [executor.submit(worker, i) for i in range(6)]
//! while True:
//!     time.sleep(2)
//!     logging.info(threading.enumerate())
//!     flag = True
//!     for f in fs:
//!         logging.info(f.done())
//!         flag = flag and f.done()
//!     print('-' * 30)
//!     if flag:
//!         executor.shutdown()
//!         logging.info(threading.enumerate())
//!         break
//! ```
//!
//! The seed's 5 s of work and 2 s between polls are scaled down to `WORK`
//! and `POLL`. Rust cannot list a process's threads, so where the seed logs
//! `threading.enumerate()` this example logs the pool itself, whose `Debug`
//! shows how many workers it started and whether it is shut down.
//!
//! What to observe: three workers named `worker_0` to `worker_2` (the seed
//! ends with "the only drawback: you cannot name the threads"; here you
//! can), tasks 3-5 start only as tasks 0-2 finish, and the polls show the
//! futures becoming done three at a time. In the second part the pool is
//! dropped at the end of a block, which waits like leaving `with`, so the
//! first poll after it already finds every future done with `n + 100`.

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{ALL_COMPLETED, Future, ThreadPoolExecutor, wait_timeout};

/// How long one task works (the seed's `time.sleep(5)`).
const WORK: Duration = Duration::from_millis(100);
/// How often the main thread looks at the futures (the seed's
/// `time.sleep(2)`).
const POLL: Duration = Duration::from_millis(40);
/// The seed polls forever; six tasks on three workers need about
/// `2 * WORK / POLL` polls, so running out of these means something is
/// badly wrong.
const MAX_POLLS: usize = 50;

/// The seed's log format: time, process and thread, message.
fn log(message: impl std::fmt::Display) {
    static START: OnceLock<Instant> = OnceLock::new();
    // Held while reading the clock, so the lines come out in time order.
    let _stdout = std::io::stdout().lock();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    let current = thread::current();
    let name = current.name().unwrap_or("<unnamed>");
    println!(
        "{:>4} ms [{}:{name:<8}] {message}",
        elapsed.as_millis(),
        std::process::id()
    );
}

fn worker(n: u32) -> u32 {
    log(format_args!("begin to work{n}"));
    thread::sleep(WORK);
    log(format_args!("finished{n}"));
    n + 100
}

/// Polls every future's `done()` until all are, as the seed's `while True`
/// loop does, logging the pool while there is one and results when
/// `show_results`. Returns whether all finished within `MAX_POLLS` polls.
fn poll_until_done(
    executor: Option<&ThreadPoolExecutor>,
    fs: &[Future<u32>],
    show_results: bool,
) -> bool {
    for _ in 0..MAX_POLLS {
        // Unlike the seed's sleep, this pause ends early once all are done.
        let _ = wait_timeout(fs, POLL, ALL_COMPLETED);
        if let Some(executor) = executor {
            log(format_args!("{executor:?}"));
        }
        let mut flag = true;
        for f in fs {
            log(f.done());
            flag = flag && f.done();
            if show_results && f.done() {
                match f.result() {
                    Ok(result) => log(format_args!("result = {result}")),
                    Err(e) => log(format_args!("failed: {e}")),
                }
            }
        }
        println!("{}", "-".repeat(30));
        if flag {
            return true;
        }
    }
    false
}

/// Runs the example.
pub fn main() {
    println!("-- an explicit shutdown() once every future is done --");
    let executor = ThreadPoolExecutor::builder()
        .max_workers(3)
        .thread_name_prefix("worker")
        .build()
        .expect("three workers is a valid pool size");
    let fs: Vec<Future<u32>> = (0..6)
        .map(|i| {
            executor
                .submit(move || worker(i))
                .expect("a pool that was never shut down accepts work")
        })
        .collect();
    let all_done = poll_until_done(Some(&executor), &fs, false);
    assert!(
        all_done,
        "the tasks did not finish within {MAX_POLLS} polls"
    );
    executor.shutdown();
    log(format_args!("{executor:?}"));

    println!("-- a block instead of `with`: dropping the pool waits --");
    let fs: Vec<Future<u32>> = {
        let executor = ThreadPoolExecutor::builder()
            .max_workers(3)
            .thread_name_prefix("with")
            .build()
            .expect("three workers is a valid pool size");
        (0..6)
            .map(|i| {
                executor
                    .submit(move || worker(i))
                    .expect("a pool that was never shut down accepts work")
            })
            .collect()
    };
    let all_done = poll_until_done(None, &fs, true);
    assert!(all_done, "dropping the pool did not wait for its tasks");
    log("====end====");
}
