//! Sizes and repetitions of every workload.
//!
//! One `Config` drives the Rust workloads, the child processes and the
//! CPython script (it travels to them as JSON), so every peer measures
//! exactly the same thing.

use serde::{Deserialize, Serialize};

/// What one run measures, and how much of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// `--quick`: the CI smoke sizes.
    pub quick: bool,
    /// Worker threads of every pool, ours and the peers'.
    pub workers: usize,
    /// Workload 1: tasks submitted before collecting.
    pub submit_n: usize,
    /// Workload 1: runs; the median is reported.
    pub submit_reps: usize,
    /// Workload 2a: round trips with the pool parked in between.
    pub parked_samples: usize,
    /// Workload 2a: pause before each round trip, long enough for every
    /// peer's workers to stop spinning and park.
    pub parked_gap_us: u64,
    /// Workload 2b: round trips while loaders keep the pool busy.
    pub busy_samples: usize,
    /// Workload 2b: threads that keep submitting small tasks.
    pub busy_loaders: usize,
    /// Workload 2b: tasks each loader keeps in flight.
    pub busy_window: usize,
    /// Workload 3: items mapped.
    pub map_n: usize,
    /// Workload 3: items submitted ahead of the consumer.
    pub map_buffersize: usize,
    /// Workload 4: futures iterated.
    pub as_completed_n: usize,
    /// Workload 5: pending futures `wait` watches.
    pub wait_n: usize,
    /// Workload 5: runs; the median is reported.
    pub wait_runs: usize,
    /// Workload 5: how long after `wait` starts one future is completed;
    /// far longer than registering on `wait_n` futures takes.
    pub wait_delay_ms: u64,
    /// Workload 6: futures kept pending.
    pub mem_n: usize,
    /// Workload 7: seconds of CPU accounting per measurement.
    pub idle_secs: f64,
    /// Workload 7: pause before measuring, so spinning workers settle.
    pub settle_ms: u64,
}

impl Config {
    /// The documented run: the sizes the issue asks for, about 2-3 minutes
    /// on a 2-core machine, most of it spent in CPython.
    pub fn full() -> Self {
        Config {
            quick: false,
            workers: 2,
            submit_n: 200_000,
            submit_reps: 3,
            parked_samples: 1_000,
            parked_gap_us: 1_000,
            busy_samples: 2_000,
            busy_loaders: 1,
            busy_window: 16,
            map_n: 1_000_000,
            map_buffersize: 128,
            as_completed_n: 100_000,
            wait_n: 10_000,
            wait_runs: 11,
            wait_delay_ms: 50,
            mem_n: 1_000_000,
            idle_secs: 1.0,
            settle_ms: 200,
        }
    }

    /// A smoke run of about 20 s: a tenth of the sizes or less, so the
    /// ratios are indicative only.
    pub fn quick() -> Self {
        Config {
            quick: true,
            submit_n: 20_000,
            submit_reps: 1,
            parked_samples: 200,
            busy_samples: 400,
            map_n: 50_000,
            as_completed_n: 10_000,
            wait_runs: 3,
            mem_n: 100_000,
            idle_secs: 0.2,
            settle_ms: 50,
            ..Config::full()
        }
    }

    /// The config as the CPython script and the child processes read it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serializes")
    }

    /// The config a parent passed to a child process.
    pub fn from_json(json: &str) -> serde_json::Result<Self> {
        serde_json::from_str(json)
    }
}
