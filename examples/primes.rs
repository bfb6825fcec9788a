//! The seeds' `ProcessPoolExecutor` example: which of six large numbers are
//! prime, checked in worker processes with `map`, beside the same check run
//! sequentially.
//!
//! ```python
//! def main():
//!     with concurrent.futures.ProcessPoolExecutor() as executor:
//!         for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
//!             print('%d is prime: %s' % (number, prime))
//! ```
//!
//! No `if __name__ == '__main__'` is needed: workers are this executable
//! started again, and they enter their loop before `main` runs.
//!
//! What to observe: the same answers as the sequential run, and with two
//! or more cores the pool taking roughly half the time or less (the work is
//! CPU-bound and runs in parallel, with no GIL to share).

use std::time::{Duration, Instant};

use concurrent_futures::ProcessPoolExecutor;

pub const PRIMES: [u64; 6] = [
    112_272_535_095_293,
    112_582_705_942_171,
    112_272_535_095_293,
    115_280_095_190_773,
    115_797_848_077_099,
    1_099_726_899_285_419,
];

pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n == 2 {
        return true;
    }
    if n % 2 == 0 {
        return false;
    }
    // The seed's `math.floor(math.sqrt(n))`: exact for these sizes.
    let sqrt_n = (n as f64).sqrt() as u64;
    (3..=sqrt_n).step_by(2).all(|i| n % i != 0)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

pub fn main() {
    let (sequential, sequential_time) = timed(|| PRIMES.map(is_prime));
    let executor = ProcessPoolExecutor::default();
    let (parallel, parallel_time) = timed(|| {
        executor
            .map(is_prime, PRIMES)
            .collect::<Result<Vec<bool>, _>>()
            .expect("is_prime cannot fail")
    });
    for (number, prime) in PRIMES.iter().zip(&parallel) {
        println!("{number} is prime: {prime}");
    }
    assert_eq!(parallel, sequential, "both runs agree");
    println!(
        "sequential: {sequential_time:.2?}; {} worker processes: {parallel_time:.2?} ({:.2}x)",
        executor.max_workers(),
        sequential_time.as_secs_f64() / parallel_time.as_secs_f64()
    );
}
