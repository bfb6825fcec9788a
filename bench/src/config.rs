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
    /// Rounds of workloads 1-4: each round runs every peer once, on a
    /// fresh pool, so a burst of load from elsewhere hits all peers alike.
    /// Throughputs are the median over rounds; latency samples are pooled.
    pub rounds: usize,
    /// Workload 1: tasks submitted before collecting.
    pub submit_n: usize,
    /// Workload 2a: round trips with the pool parked in between, in all.
    pub parked_samples: usize,
    /// Workload 2a: pause before each round trip, long enough for every
    /// peer's workers to stop spinning and park.
    pub parked_gap_us: u64,
    /// Workload 2b: round trips while loaders keep the pool busy, in all.
    pub busy_samples: usize,
    /// Workload 2c: back-to-back round trips in a child process pinned to
    /// one CPU (the caller and the workers share it: all cores busy).
    pub pinned_samples: usize,
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
    /// Workload 8: the small batch (submit, then collect), timed this many
    /// times per round; the median per task is reported.
    pub scale_small_n: usize,
    pub scale_small_batches: usize,
    /// Workload 8: the large batch, once per round.
    pub scale_large_n: usize,
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
    /// The process-pool workloads (P1-P7).
    pub process: ProcessConfig,
}

/// Sizes of the process-pool workloads (`process_workloads.rs` and the
/// CPython script's `proc` mode).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// Worker processes of every pool.
    pub workers: usize,
    /// Rounds: each gives every peer a fresh process (a child of the
    /// harness, or a fresh interpreter) in turn. Throughputs and times are
    /// the median over rounds; latency samples are pooled.
    pub rounds: usize,
    /// P1: trivial tasks submitted (chunksize 1) before collecting.
    pub submit_n: usize,
    /// P1, procspawn only: handles outstanding at once. Each pending
    /// procspawn task holds three descriptors (two `ipc-channel`s), so
    /// 20,000 at once would pass the descriptor limit (`ulimit -n` is
    /// 20,000 on the reference machine); it submits and joins in batches
    /// of this size instead.
    pub procspawn_batch: usize,
    /// P2: items mapped.
    pub map_n: usize,
    /// P2: items per message.
    pub map_chunksize: usize,
    /// P3: back-to-back round trips on a warm pool, in all.
    pub round_trips: usize,
    /// P3: the pools they are spread over, per round: where a pool's
    /// threads and processes land on the cores moves a round trip's median
    /// by up to 1.5x here, so one pool per round is too few placements.
    pub round_trip_pools: usize,
    /// P4: fresh pools started, in all.
    pub startups: usize,
    /// P5: runs of the sequential check and of the pool's, per round, in
    /// Rust (about 0.1 s each).
    pub primes_runs: usize,
    /// P5: the same for CPython, whose runs take seconds.
    pub primes_runs_python: usize,
    /// P6: worker deaths, in all.
    pub deaths: usize,
    /// P6: futures waiting when the worker dies: one running on each
    /// worker, the rest queued.
    pub death_waiters: usize,
    /// P6: pause between the waiter blocking and the kill.
    pub death_delay_ms: u64,
    /// P7: bytes of the argument and of the result.
    pub big_bytes: usize,
}

impl ProcessConfig {
    /// The documented run.
    pub fn full() -> Self {
        ProcessConfig {
            workers: 2,
            rounds: 3,
            submit_n: 20_000,
            procspawn_batch: 4_000,
            map_n: 1_000_000,
            map_chunksize: 100,
            round_trips: 3_000,
            round_trip_pools: 5,
            startups: 15,
            primes_runs: 5,
            primes_runs_python: 2,
            deaths: 30,
            death_waiters: 6,
            death_delay_ms: 20,
            big_bytes: 64 << 20,
        }
    }

    /// The smoke run.
    pub fn quick() -> Self {
        ProcessConfig {
            rounds: 1,
            submit_n: 2_000,
            procspawn_batch: 1_000,
            map_n: 100_000,
            round_trips: 300,
            startups: 3,
            primes_runs: 2,
            deaths: 2,
            big_bytes: 8 << 20,
            ..ProcessConfig::full()
        }
    }

    /// `total` samples spread over the rounds: this many per round.
    pub fn per_round(&self, total: usize) -> usize {
        total.div_ceil(self.rounds)
    }
}

impl Config {
    /// The documented run: the sizes the issue asks for, about 5 minutes
    /// on a 2-core machine, most of it spent in CPython.
    pub fn full() -> Self {
        Config {
            quick: false,
            workers: 2,
            rounds: 3,
            submit_n: 200_000,
            parked_samples: 1_200,
            parked_gap_us: 1_000,
            busy_samples: 2_400,
            pinned_samples: 3_000,
            busy_loaders: 1,
            busy_window: 16,
            map_n: 1_000_000,
            map_buffersize: 128,
            as_completed_n: 100_000,
            scale_small_n: 1_000,
            scale_small_batches: 200,
            scale_large_n: 1_000_000,
            wait_n: 10_000,
            wait_runs: 12,
            wait_delay_ms: 50,
            mem_n: 1_000_000,
            idle_secs: 1.0,
            settle_ms: 200,
            process: ProcessConfig::full(),
        }
    }

    /// A smoke run of about 20 s: one round and a tenth of the sizes or
    /// less, so the ratios are indicative only.
    pub fn quick() -> Self {
        Config {
            quick: true,
            rounds: 1,
            submit_n: 20_000,
            parked_samples: 200,
            busy_samples: 400,
            pinned_samples: 500,
            map_n: 50_000,
            as_completed_n: 10_000,
            scale_small_batches: 20,
            scale_large_n: 100_000,
            wait_runs: 3,
            mem_n: 100_000,
            idle_secs: 0.2,
            settle_ms: 50,
            process: ProcessConfig::quick(),
            ..Config::full()
        }
    }

    /// `total` samples spread over the rounds: this many per round.
    pub fn per_round(&self, total: usize) -> usize {
        total.div_ceil(self.rounds)
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

/// Sizes of the cluster rows (`--cluster`, `cluster_bench.rs`; the Python
/// peers' script reads the same, as JSON).
#[cfg(feature = "cluster")]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// `--quick`: the smoke sizes.
    pub quick: bool,
    /// Agents on the NATS server, and worker slots each.
    pub agents: usize,
    pub slots: usize,
    /// Worker processes of every pool: `agents * slots`.
    pub workers: usize,
    /// Rounds: each runs every peer once, in turn, on a fresh pool.
    pub rounds: usize,
    /// Warm-up calls before measuring, per round.
    pub warmup: usize,
    /// C1: back-to-back round trips per round (pooled over rounds).
    pub round_trips: usize,
    /// C1c-d: round trips per round with a task that stamps its start.
    pub stamped: usize,
    /// C2a: trivial tasks submitted before collecting.
    pub submit_n: usize,
    /// C2b: items mapped, chunksize 1.
    pub map_n: usize,
    /// C3: agent deaths, in all.
    pub deaths: usize,
    /// C3: pause between the call arriving and the kill: this, plus
    /// `k / deaths` of `death_spread_ms` for run `k`, so the kills fall
    /// evenly over one period of the client's probes of its agents.
    pub death_delay_ms: u64,
    pub death_spread_ms: u64,
    /// C1e: bare NATS request/replies per round.
    pub nats_pings: usize,
    /// The most one result may take.
    pub timeout_s: u64,
    /// The most collecting all of C2a or C2b may take (dask needs about a
    /// minute for 20,000 tasks on 2 loaded cores); a Python peer's whole
    /// round gets three times this.
    pub bulk_timeout_s: u64,
}

#[cfg(feature = "cluster")]
impl ClusterConfig {
    /// The documented run: about 3-4 minutes on 2 cores, most of it in
    /// dask and Ray.
    pub fn full() -> Self {
        ClusterConfig {
            quick: false,
            agents: 2,
            slots: 1,
            workers: 2,
            rounds: 3,
            warmup: 1_000,
            round_trips: 2_000,
            stamped: 500,
            submit_n: 20_000,
            map_n: 20_000,
            deaths: 6,
            death_delay_ms: 20,
            death_spread_ms: 20,
            nats_pings: 2_000,
            timeout_s: 60,
            bulk_timeout_s: 600,
        }
    }

    /// The smoke run.
    pub fn quick() -> Self {
        ClusterConfig {
            quick: true,
            rounds: 1,
            warmup: 200,
            round_trips: 300,
            stamped: 100,
            submit_n: 2_000,
            map_n: 2_000,
            deaths: 2,
            nats_pings: 300,
            ..ClusterConfig::full()
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serializes")
    }
}
