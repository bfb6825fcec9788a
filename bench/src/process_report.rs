//! The process-pool results as Markdown: the table, the targets
//! checked against it, and what each row measures.

use std::fmt::Write;

use crate::config::ProcessConfig;
use crate::metrics::{Unit, sig3, thousands};
use crate::process_metrics::{ProcMetric, ProcResults, Sample, bytes_label};
use crate::process_peers::ProcPeer;

/// The table, one row per metric, one column per peer; every peer cell
/// carries its ratio to ours.
pub fn results_table(cfg: &ProcessConfig, results: &ProcResults) -> String {
    crate::report::markdown_table(
        ProcPeer::ALL,
        ProcMetric::ALL.map(|m| (m.label(cfg), ProcPeer::ALL.map(|p| cell(results, m, p)))),
    )
}

fn cell(results: &ProcResults, metric: ProcMetric, peer: ProcPeer) -> String {
    let Some(value) = results.get(metric, peer) else {
        return "n/a".into();
    };
    let shown = metric.unit().format(value);
    match results.ratio(metric, peer) {
        Some(ratio) if peer != ProcPeer::Ours => format!("{shown} ({}×)", sig3(ratio)),
        _ => shown,
    }
}

/// One target of the issue, checked.
struct Target {
    goal: String,
    measured: String,
    /// `None` when a number it needs is missing.
    met: Option<bool>,
}

fn targets(cfg: &ProcessConfig, r: &ProcResults) -> Vec<Target> {
    let ours = |m| r.get(m, ProcPeer::Ours);
    let at_most = |goal: &str, metric: ProcMetric, limit: f64| {
        let value = ours(metric);
        Target {
            goal: goal.to_owned(),
            measured: value.map_or("n/a".into(), |v| metric.unit().format(v)),
            met: value.map(|v| v <= limit),
        }
    };
    let worst = |sample| {
        r.samples(ProcPeer::Ours, sample)
            .map(|s| s.iter().copied().fold(0.0, f64::max))
    };
    let mut death = at_most(
        "worker death noticed by every waiter within 2 ms (P6a, median)",
        ProcMetric::DeathBroken,
        2e6,
    );
    if let (Some(worst), Some(n)) = (
        worst(Sample::DeathBroken),
        r.samples(ProcPeer::Ours, Sample::DeathBroken)
            .map(<[f64]>::len),
    ) {
        write!(
            death.measured,
            "; slowest of {n}: {}",
            Unit::Nanos.format(worst)
        )
        .unwrap();
    }
    let speedup = ours(ProcMetric::PrimesSpeedup);
    let bound = ours(ProcMetric::PrimesBound);
    let primes = Target {
        goal: format!(
            "primes ≥ 1.9× faster than sequential with {} workers (P5c)",
            cfg.workers
        ),
        measured: match (speedup, bound) {
            (Some(s), Some(b)) => format!(
                "{}× (the best any {}-worker split of these six numbers allows: {}×)",
                sig3(s),
                cfg.workers,
                sig3(b)
            ),
            (Some(s), None) => format!("{}×", sig3(s)),
            _ => "n/a".into(),
        },
        met: speedup.map(|s| s >= 1.9),
    };
    let big = ours(ProcMetric::Big);
    let big = Target {
        goal: "64 MiB arguments and results cross without deadlock".into(),
        measured: match big {
            Some(t) => format!(
                "{} each way in one call: {} (P7); also `sixty_four_mib_arguments_and_results_cross` in tests/process.rs",
                bytes_label(cfg.big_bytes),
                Unit::Nanos.format(t)
            ),
            None => "n/a".into(),
        },
        met: big.map(|_| true),
    };
    vec![
        at_most("chunksize-1 task ≤ 3 µs (P1)", ProcMetric::Task, 3_000.0),
        at_most(
            "map with chunksize 100 ≤ 200 ns per item (P2)",
            ProcMetric::Map,
            200.0,
        ),
        at_most(
            "submit -> result round trip ≤ 15 µs (P3, median)",
            ProcMetric::RoundTripP50,
            15_000.0,
        ),
        at_most(
            "start-up of a 2-worker pool to the first result ≤ 3 ms (P4, median)",
            ProcMetric::Startup,
            3e6,
        ),
        primes,
        death,
        big,
    ]
}

pub fn targets_table(cfg: &ProcessConfig, results: &ProcResults) -> String {
    let mut out = String::from("| Target | Measured (ours) | Met |\n|---|---|---|\n");
    for t in targets(cfg, results) {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        writeln!(out, "| {} | {} | {met} |", t.goal, t.measured).unwrap();
    }
    out
}

/// What every row measures and how each peer does it.
pub fn notes(cfg: &ProcessConfig) -> String {
    let k = |n: usize| thousands(n as u64);
    format!(
        "\
- Pools: ours is `ProcessPoolExecutor::new({w})` (workers are this \
harness's executable started again, entering their loop before `main`; they \
start as work arrives); CPython's `ProcessPoolExecutor(max_workers={w}, \
mp_context=get_context(\"fork\"))` (\"spawn\" for start-up only); procspawn's \
`Pool::new({w})` (its workers start in `new`; each call is `spawn(arg, f)` and \
gets two `ipc-channel`s of its own, argument and result, whose ends cross as \
file descriptors; the harness's `main` begins with `procspawn::init()`). \
Every pool runs the same plain functions (`identity`, `double`, `is_prime`) by \
reference, arguments and results by value (serde, postcard for ours and \
bincode for procspawn; pickle for CPython).
- Rounds: {rounds} round(s); each gives ours, procspawn and CPython, in turn, \
a fresh process (a child of the harness, or a fresh interpreter), so a burst \
of outside load hits them alike. Throughputs and times are the median over \
rounds, latency and start-up samples are pooled over rounds.
- Warm pool (P1-P3, P5, P7): every worker process running (two calls that \
sleep 20 ms and return their pid came back from two pids), then 1,000 \
trivial calls.
- P1: submit {submit} `identity(i)` calls, one message each (chunksize 1), \
then take every result in order. procspawn holds three descriptors per \
pending call and this machine allows {nofile} per process (`ulimit -n`), so \
it submits and joins batches of {batch}.
- P2: ours `map_with(double, 0..{map}, MapOptions::new().chunksize({chunk}))`; \
CPython `sum(executor.map(double, range({map}), chunksize={chunk}))`. Both \
submit every chunk at once. procspawn has no chunking (or `map`): n/a.
- P3: {rt} back-to-back round trips in all (submit `identity(7)`, wait for \
its result), spread over {rt_pools} warm pools per round (the first one, \
then fresh ones): where a pool's threads and processes land on the cores \
moves the median by up to 1.5x on this machine.
- P4: {startups} fresh pools in all: the time from creating the pool to the \
first result of `identity(1)`; shutting the pool down is not counted. Ours \
and CPython spawn start one worker for the first call, CPython fork starts \
both at the first submit, procspawn both in `Pool::new`.
- P5: the seeds' example (`examples/primes.rs`: six large numbers, five of \
them prime, the seeds' `is_prime`), first one after the other in the \
measuring process (Rust for ours and procspawn, Python for CPython), then in \
the warm pool, one call per number, all submitted at once (CPython: \
`executor.map(is_prime, PRIMES)`), {primes} time(s) per round ({primes_py} \
for CPython, whose runs take seconds). Each run times the sequential check \
and then the pool, back to back; P5c is the median over runs of that run's \
sequential time / pool time (so it need not equal P5a / P5b exactly). A \
burst of outside load on one of the two cores slows the pool more than the \
sequential run, so this row is the most sensitive to the machine being \
shared. P5d: five of the numbers cost about the same and the sixth (composite, \
smallest factor 3,306,091) about a third of one, so with {w} workers one \
worker gets three of the five: the best split's makespan, from each \
number's fastest sequential time in the round, bounds the speed-up of any \
pool.
- P6a: a fresh pool; {waiters} calls submitted that report their worker's pid \
over a Unix socket and then block: one runs on each worker, the rest are \
queued. The measuring thread blocks in `wait(futures, ALL_COMPLETED)`; \
{delay} ms later another thread sends `SIGKILL` to one worker. Time from \
just before `kill` to `wait`'s return, when every future has failed with \
`Broken` (CPython: `BrokenProcessPool`); {deaths} deaths in all. procspawn \
has no broken state: it restarts the worker and fails only that call, so n/a.
- P6b: the same kill with `self_healing(true)` (ours) and procspawn's pool \
(which always restarts a dead worker): one call running on each worker; \
time from the kill to the killed call's `result()` / `join()` failing. \
CPython has no self-healing: n/a.
- P7: one `echo(s)` call whose argument is a string of {big} and whose \
result is the same string, on the warm pool; making the string is not \
counted.
",
        w = cfg.workers,
        rounds = cfg.rounds,
        submit = k(cfg.submit_n),
        batch = k(cfg.procspawn_batch),
        nofile = thousands(crate::sys::open_files_limit()),
        map = k(cfg.map_n),
        chunk = cfg.map_chunksize,
        rt = k(cfg.round_trips),
        rt_pools = cfg.round_trip_pools,
        startups = cfg.startups,
        primes = cfg.primes_runs,
        primes_py = cfg.primes_runs_python,
        waiters = cfg.death_waiters,
        delay = cfg.death_delay_ms,
        deaths = cfg.deaths,
        big = bytes_label(cfg.big_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_a_row_per_metric_and_target() {
        let cfg = ProcessConfig::quick();
        let mut results = ProcResults::default();
        results.record(ProcPeer::Ours, Sample::Task, 5_000.0);
        results.record(ProcPeer::CPythonFork, Sample::Task, 250_000.0);
        results.record(ProcPeer::Ours, Sample::PrimesSpeedup, 1.5);
        let table = results_table(&cfg, &results);
        assert_eq!(table.lines().count(), 2 + ProcMetric::ALL.len());
        assert!(table.contains("| 5.00 µs | 250 µs (50.0×) | n/a | n/a |"));
        assert!(table.contains("| 1.50× | n/a | n/a | n/a |"));
        let targets = targets_table(&cfg, &results);
        assert!(targets.contains("| 5.00 µs | **no** |"));
        assert!(targets.contains("| 1.50× | **no** |"));
    }
}
