//! Seed 002's `ProcessPoolExecutor` variant of the logging worker, in its
//! context-manager form: workers log with their process id, return
//! `n + 100`, and the main process polls `done()` and prints the results.
//!
//! ```python
//! def worker(n):
//!     logging.info('begin to work{}'.format(n))
//!     time.sleep(5)
//!     logging.info('finished{}'.format(n))
//!     return n + 100
//!
//! if __name__ == '__main__':
//!     executor = futures.ProcessPoolExecutor(max_workers=3)
//!     with executor:
//!         fs = [executor.submit(worker, i) for i in range(6)]
//!     while True: ... logging.info("result = {}".format(f.result())) ...
//! ```
//!
//! The seed's 5 s of work is scaled down to `WORK`. What to observe: log
//! lines from three different worker pids (not the main pid), tasks 3-5
//! starting as 0-2 finish, and after the `with` block (here: the pool
//! dropped at the end of a block, which waits) every future is done with
//! `n + 100`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concurrent_futures::{Future, ProcessPoolExecutor};

/// How long one task works (the seed's `time.sleep(5)`).
const WORK: Duration = Duration::from_millis(100);

fn log(message: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    println!(
        "{}.{:03}\t [pid {}] {message}",
        now.as_secs() % 100_000,
        now.subsec_millis(),
        std::process::id()
    );
}

fn worker(n: u32) -> u32 {
    log(&format!("begin to work{n}"));
    std::thread::sleep(WORK);
    log(&format!("finished{n}"));
    n + 100
}

pub fn main() {
    log("main process");
    let fs: Vec<Future<u32>> = {
        let executor = ProcessPoolExecutor::new(3).expect("3 workers is valid");
        (0..6)
            .map(|i| executor.submit(worker, i).expect("the pool is running"))
            .collect()
        // Leaving the block drops the pool: shutdown(wait=True), as `with`.
    };
    let mut all_done = true;
    for f in &fs {
        log(&format!("{}", f.done()));
        all_done &= f.done();
        if f.done() {
            log(&format!(
                "result = {}",
                f.result().expect("worker cannot fail")
            ));
        }
    }
    println!("{}", "-".repeat(30));
    assert!(all_done, "the block waited for every task");
    log("====end====");
}
