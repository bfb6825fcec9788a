//! Seeds 001 and 004, `wait(fs, timeout=None, return_when=ALL_COMPLETED)`
//! with each `return_when`, and with a timeout.
//!
//! Seed 004: "We can control the behavior of the wait function by defining
//! when it should return ... `FIRST_COMPLETED`, `FIRST_EXCEPTION` and
//! `ALL_COMPLETED`. By default, it's set to `ALL_COMPLETED`."
//!
//! Each case submits five tasks; task `i` works `i + 1` steps, so they
//! finish one step apart, in order. For `FIRST_EXCEPTION`, task 1 fails.
//!
//! What to observe: `FIRST_COMPLETED` returns with only task 0 done;
//! `FIRST_EXCEPTION` returns as task 1 fails, with tasks 0 and 1 done; with
//! `ALL_COMPLETED` all five are done; a timeout shorter than any task
//! returns with none done, and is not an error.

use std::thread;
use std::time::Duration;

use concurrent_futures::{
    ALL_COMPLETED, DoneAndNotDone, FIRST_COMPLETED, FIRST_EXCEPTION, Future, ReturnWhen,
    ThreadPoolExecutor, wait, wait_timeout,
};

/// One step of work; long enough that the tasks finish clearly apart.
const STEP: Duration = Duration::from_millis(25);
const TASKS: u32 = 5;

fn task(i: u32, fail: bool) -> Result<String, String> {
    thread::sleep(STEP * (i + 1));
    if fail {
        Err(format!("task {i} raised an exception"))
    } else {
        Ok(format!("task {i}"))
    }
}

/// Submits the five tasks; the one numbered `failing` fails.
fn submit_all(pool: &ThreadPoolExecutor, failing: Option<u32>) -> Vec<Future<String>> {
    (0..TASKS)
        .map(|i| {
            let fail = failing == Some(i);
            pool.submit_fallible(move || task(i, fail))
                .expect("a pool that was never shut down accepts work")
        })
        .collect()
}

fn report(case: &str, outcome: &DoneAndNotDone<String>) {
    let done: Vec<String> = outcome
        .done
        .iter()
        .map(|f| match f.result() {
            Ok(value) => value.clone(),
            Err(e) => format!("Err({e})"),
        })
        .collect();
    println!(
        "{case:<31} {} done, {} not done; done: [{}]",
        outcome.done.len(),
        outcome.not_done.len(),
        done.join(", ")
    );
}

/// Runs the example.
pub fn main() {
    let pool = ThreadPoolExecutor::new(TASKS as usize).expect("five workers is a valid pool size");
    let cases: [(&str, ReturnWhen, Option<u32>); 3] = [
        ("FIRST_COMPLETED", FIRST_COMPLETED, None),
        ("FIRST_EXCEPTION (task 1 fails)", FIRST_EXCEPTION, Some(1)),
        ("ALL_COMPLETED", ALL_COMPLETED, None),
    ];
    for (case, return_when, failing) in cases {
        let fs = submit_all(&pool, failing);
        report(case, &wait(&fs, return_when));
        // The next case needs every worker free, or its tasks would start
        // late and finish out of step.
        wait(&fs, ALL_COMPLETED);
    }

    let fs = submit_all(&pool, None);
    report(
        "timeout = STEP / 2",
        &wait_timeout(&fs, STEP / 2, ALL_COMPLETED),
    );
}
