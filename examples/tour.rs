//! Every example of the seeds (thread pools, then process pools), one after the other:
//! `cargo run --features cluster --example tour` (without the feature, the
//! cluster example says how to see it).
//!
//! Each example is also a program of its own (`cargo run --example
//! load_urls`, ...); this one includes their files as modules and calls
//! their `main` functions, so the tour always shows exactly what they do.
//!
//! What to observe: a header per example naming the seed it reproduces,
//! then that example's output; the whole tour takes a second or two,
//! because the seeds' sleeps of several seconds are scaled down to tens of
//! milliseconds.

// cluster_primes includes primes.rs as its own module (it is a program of
// its own too), so the tour holds that file twice.
#![allow(clippy::duplicate_mod)]

use std::time::Instant;

#[path = "cluster_primes.rs"]
mod cluster_primes;
#[path = "copy_files.rs"]
mod copy_files;
#[path = "deadlocks.rs"]
mod deadlocks;
#[path = "download_many.rs"]
mod download_many;
#[path = "load_urls.rs"]
mod load_urls;
#[path = "logging_worker.rs"]
mod logging_worker;
#[path = "pow_submit.rs"]
mod pow_submit;
#[path = "primes.rs"]
mod primes;
#[path = "process_logging_worker.rs"]
mod process_logging_worker;
#[path = "return_after.rs"]
mod return_after;
#[path = "wait_return_when.rs"]
mod wait_return_when;

/// Name, what it reproduces, and how to run it.
const EXAMPLES: [(&str, &str, fn()); 11] = [
    (
        "pow_submit",
        "seeds 000/001: submit(pow, 323, 1235) and result()",
        pow_submit::main,
    ),
    (
        "load_urls",
        "seeds 000/001/004: load URLs with as_completed",
        load_urls::main,
    ),
    (
        "logging_worker",
        "seed 002: workers that log, polling done(), shutdown() and `with`",
        logging_worker::main,
    ),
    (
        "copy_files",
        "seed 001: shutil.copy in a `with` block",
        copy_files::main,
    ),
    (
        "download_many",
        "seed 003: download_many with map, then with as_completed",
        download_many::main,
    ),
    (
        "return_after",
        "seed 004: done() before and after, as_completed() and wait()",
        return_after::main,
    ),
    (
        "wait_return_when",
        "seeds 001/004: wait() with each return_when",
        wait_return_when::main,
    ),
    (
        "deadlocks",
        "seed 001: the two ThreadPoolExecutor deadlocks, resolved",
        deadlocks::main,
    ),
    (
        "primes",
        "seeds 000/001/004: is_prime with ProcessPoolExecutor.map, beside a sequential run",
        primes::main,
    ),
    (
        "process_logging_worker",
        "seed 002: the ProcessPoolExecutor logging worker, `with` and n + 100",
        process_logging_worker::main,
    ),
    (
        "cluster_primes",
        "seeds 000/001/004: the primes map on a local 2-agent cluster over NATS",
        cluster_primes::main,
    ),
];

fn main() {
    let tour = Instant::now();
    for (name, about, run) in EXAMPLES {
        println!("\n=== {name}: {about} ===");
        let start = Instant::now();
        run();
        println!("=== {name} took {:.0?} ===", start.elapsed());
    }
    println!("\nthe tour took {:.2?}", tour.elapsed());
}
