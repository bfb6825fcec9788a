//! Seed 003 (after Fluent Python's flags example): `download_many` with
//! `Executor.map`, then rewritten with `submit` and `as_completed`.
//!
//! ```python
//! def download_many(cc_list):
//!     with futures.ThreadPoolExecutor(5) as executor:
//!         res = executor.map(download_one, cc_list)
//!     return len(list(res))
//!
//! def download_many(cc_list):
//!     cc_list = cc_list[:5]
//!     with futures.ThreadPoolExecutor(max_workers=4) as executor:
//!         to_do = []
//!         for cc in sorted(cc_list):
//!             future = executor.submit(download_one, cc)
//!             to_do.append(future)
//!             print('Scheduled for {}: {}'.format(cc, future))
//!         results = []
//!         for future in futures.as_completed(to_do):
//!             res = future.result()
//!             print('{} result: {!r}'.format(future, res))
//!             results.append(res)
//!         return len(results)
//! ```
//!
//! `download_one` pretends to download a country's flag: it sleeps a little,
//! longer for some countries than for others, and returns the country code.
//!
//! What to observe: `map` hands results back in input order. With
//! `as_completed`, a future printed right after `submit` is usually still
//! `Pending` (no worker has picked it up yet; the fifth one must wait for a
//! free worker of four anyway), and the results come back in completion
//! order, each future now `Finished`.

use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{ThreadPoolExecutor, as_completed};

/// The twenty most populous countries, as in Fluent Python.
const POP20_CC: [&str; 20] = [
    "CN", "IN", "US", "ID", "BR", "PK", "NG", "BD", "RU", "JP", "MX", "PH", "VN", "ET", "EG", "DE",
    "IR", "TR", "CD", "FR",
];

/// The time one simulated download takes at least; some take a few times
/// longer, so the completion order differs from the submission order.
const DOWNLOAD: Duration = Duration::from_millis(15);

fn download_one(cc: &'static str) -> &'static str {
    let slowness = cc.bytes().map(u32::from).sum::<u32>() % 4 + 1;
    thread::sleep(DOWNLOAD * slowness);
    cc
}

/// The `map` version: results in input order.
fn download_many_map(cc_list: &[&'static str]) -> usize {
    let executor = ThreadPoolExecutor::new(5).expect("five workers is a valid pool size");
    let res: Vec<&str> = executor
        .map(download_one, cc_list.iter().copied())
        .collect::<Result<_, _>>()
        .expect("download_one neither panics nor gets cancelled");
    println!("map results, in input order: {}", res.join(" "));
    res.len()
}

/// The `as_completed` version: results as they finish.
fn download_many_as_completed(cc_list: &[&'static str]) -> usize {
    let mut cc_list = cc_list[..5].to_vec();
    cc_list.sort_unstable();
    let executor = ThreadPoolExecutor::new(4).expect("four workers is a valid pool size");
    let to_do: Vec<_> = cc_list
        .into_iter()
        .map(|cc| {
            let future = executor
                .submit(move || download_one(cc))
                .expect("a pool that was never shut down accepts work");
            println!("Scheduled for {cc}: {future:?}");
            future
        })
        .collect();
    let mut results = Vec::new();
    for future in as_completed(&to_do) {
        match future.result() {
            Ok(res) => {
                println!("{future:?} result: {res:?}");
                results.push(*res);
            }
            Err(e) => println!("{future:?} failed: {e}"),
        }
    }
    results.len()
}

/// Runs the example.
pub fn main() {
    let t0 = Instant::now();
    let count = download_many_map(&POP20_CC);
    println!("{count} flags downloaded in {:.2?}", t0.elapsed());

    println!();
    let t0 = Instant::now();
    let count = download_many_as_completed(&POP20_CC);
    println!("{count} flags downloaded in {:.2?}", t0.elapsed());
}
