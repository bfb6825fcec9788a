//! The results as Markdown: the tables printed after every run, the
//! issue's targets checked against them, and the whole of BENCHMARKS.md.

use std::fmt::Write;
use std::time::Duration;

use crate::config::Config;
use crate::metrics::{Metric, Results, Unit, sig3, thousands};
use crate::peers::Peer;
use crate::process_metrics::ProcResults;
use crate::{process_report, sys};

/// The documented command; `--write` is how BENCHMARKS.md was made.
pub const COMMAND: &str = "cargo run --release -p concurrent-futures-bench";

/// BENCHMARKS.md below this line is written by hand (the analysis of the
/// numbers); `--write` regenerates what is above it and keeps the rest.
pub const KEEP_MARKER: &str = "<!-- Written by hand below this line: `--write` keeps it. -->";

/// The workspace lock file, read at build time so the report names the
/// peer versions that were actually compiled in.
const CARGO_LOCK: &str = include_str!("../../Cargo.lock");

/// A run, ready to print.
pub struct Report<'a> {
    pub cfg: &'a Config,
    pub results: &'a Results,
    pub proc_results: &'a ProcResults,
    /// Peers that could not run here, and why.
    pub skipped: Vec<String>,
    /// `None` when python3 could not be run.
    pub python: Option<String>,
    /// CPU µs/s of this process before any pool existed: row 7's floor.
    pub cpu_floor: f64,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started and ended.
    pub load: [String; 2],
    pub wall: Duration,
}

/// A Markdown table: a "Workload" column, then one column per peer, one
/// row per `(label, cells)`. Shared by the thread- and process-pool tables.
pub fn markdown_table<P: std::fmt::Display, const N: usize>(
    peers: [P; N],
    rows: impl IntoIterator<Item = (String, [String; N])>,
) -> String {
    let mut out = String::from("| Workload |");
    for peer in peers {
        write!(out, " {peer} |").unwrap();
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(N));
    out.push('\n');
    for (label, cells) in rows {
        write!(out, "| {label} |").unwrap();
        for cell in cells {
            write!(out, " {cell} |").unwrap();
        }
        out.push('\n');
    }
    out
}

/// One target of the issue, checked.
struct Target {
    goal: &'static str,
    measured: String,
    /// `None` when a number it needs is missing.
    met: Option<bool>,
}

impl Report<'_> {
    /// The results table, one row per metric, one column per peer;
    /// every peer cell carries its ratio to ours.
    pub fn results_table(&self) -> String {
        markdown_table(
            Peer::ALL,
            Metric::ALL.map(|m| (m.label(self.cfg), Peer::ALL.map(|p| self.cell(m, p)))),
        )
    }

    fn cell(&self, metric: Metric, peer: Peer) -> String {
        let Some(value) = self.results.get(metric, peer) else {
            return "n/a".into();
        };
        let shown = metric.unit().format(value);
        match self.results.ratio(metric, peer) {
            Some(ratio) if peer != Peer::Ours => format!("{shown} ({}×)", sig3(ratio)),
            _ => shown,
        }
    }

    fn targets(&self) -> Vec<Target> {
        let r = self.results;
        let ours = |m| r.get(m, Peer::Ours);
        let vs_cpython = |goal, metric, times: f64| {
            let ratio = r.ratio(metric, Peer::CPython);
            Target {
                goal,
                measured: ratio.map_or("n/a".into(), |x| format!("{}× faster", sig3(x))),
                met: ratio.map(|x| x >= times),
            }
        };
        let at_most = |goal, metric: Metric, limit: f64| {
            let value = ours(metric);
            Target {
                goal,
                measured: value.map_or("n/a".into(), |v| metric.unit().format(v)),
                met: value.map(|v| v <= limit),
            }
        };
        // Ours against the best Rust peer on `metric`: met when ours is no
        // worse than every one of them.
        let le_every_peer = |goal, metric: Metric| {
            let best = Peer::RUST_OTHERS
                .into_iter()
                .filter_map(|p| Some((p, r.get(metric, p)?)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match (ours(metric), best) {
                (Some(o), Some((peer, b))) => Target {
                    goal,
                    measured: format!(
                        "{} vs {peer} {}: {}× its {}",
                        metric.unit().format(o),
                        metric.unit().format(b),
                        sig3(o / b),
                        if metric.unit() == Unit::Bytes {
                            "size"
                        } else {
                            "time"
                        },
                    ),
                    met: Some(o <= b),
                },
                _ => Target {
                    goal,
                    measured: "n/a".into(),
                    met: None,
                },
            }
        };
        let flat = {
            let goal = "cost per task flat from 1k to 1M tasks (8b ≤ 1.5× 8a)";
            match (ours(Metric::ScaleSmall), ours(Metric::ScaleLarge)) {
                (Some(small), Some(large)) => Target {
                    goal,
                    measured: format!(
                        "{} -> {}: {}×",
                        Unit::Nanos.format(small),
                        Unit::Nanos.format(large),
                        sig3(large / small)
                    ),
                    met: Some(large <= 1.5 * small),
                },
                _ => Target {
                    goal,
                    measured: "n/a".into(),
                    met: None,
                },
            }
        };
        let floor = self.cpu_floor.max(1.0);
        let at_noise_floor = |goal, metric: Metric| {
            let value = ours(metric);
            Target {
                goal,
                measured: value.map_or("n/a".into(), |v| {
                    format!(
                        "{} (floor {})",
                        metric.unit().format(v),
                        metric.unit().format(floor)
                    )
                }),
                met: value.map(|v| v <= 2.0 * floor),
            }
        };
        vec![
            le_every_peer(
                "submit + collect ≤ 1.0× every Rust peer",
                Metric::SubmitCollect,
            ),
            vs_cpython(
                "submit + collect ≥ 50× faster than CPython",
                Metric::SubmitCollect,
                50.0,
            ),
            le_every_peer(
                "memory per pending future, capturing task (6b) ≤ the best peer",
                Metric::MemoryPerPendingCapturing,
            ),
            le_every_peer(
                "round trip, parked pool (median) ≤ every peer",
                Metric::LatencyParkedP50,
            ),
            vs_cpython(
                "round trip ≥ 10× faster than CPython, parked pool (median)",
                Metric::LatencyParkedP50,
                10.0,
            ),
            le_every_peer(
                "round trip, all cores busy (2c, median) ≤ every peer",
                Metric::LatencyPinnedP50,
            ),
            le_every_peer(
                "submit + as_completed (4b) ≤ every peer",
                Metric::AsCompletedInFlight,
            ),
            at_most(
                "as_completed over 100k done futures, shuffled (4c) ≤ 0.1 µs per future",
                Metric::AsCompletedShuffled,
                100.0,
            ),
            flat,
            at_noise_floor(
                "idle pool at the noise floor (≤ 2× the harness's own)",
                Metric::IdlePoolCpu,
            ),
            at_noise_floor(
                "thread blocked in result() at the noise floor (≤ 2× the harness's own)",
                Metric::BlockedWaiterCpu,
            ),
        ]
    }

    /// The process-pool table.
    pub fn process_table(&self) -> String {
        process_report::results_table(&self.cfg.process, self.proc_results)
    }

    /// The process-pool targets.
    pub fn process_targets_table(&self) -> String {
        process_report::targets_table(&self.cfg.process, self.proc_results)
    }

    pub fn targets_table(&self) -> String {
        let mut out = String::from("| Target | Measured (ours) | Met |\n|---|---|---|\n");
        for t in self.targets() {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "n/a",
            };
            writeln!(out, "| {} | {} | {met} |", t.goal, t.measured).unwrap();
        }
        out
    }

    /// The whole of BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let cfg = self.cfg;
        let mut out = String::new();
        let mode = if cfg.quick {
            " -- --quick --write"
        } else {
            " -- --write"
        };
        writeln!(out, "# Benchmarks\n").unwrap();
        writeln!(
            out,
            "Made by `{COMMAND}{mode}` on {}, in {:.0} s.\n",
            sys::today_utc(),
            self.wall.as_secs_f64()
        )
        .unwrap();
        writeln!(
            out,
            "**These numbers are from one run on a shared, noisy {}-core machine \
             (other builds and tests may have been running; load average \
             {} at the start, {} at the end): the ratios matter, not the \
             absolute times.** Every peer ran in the same run, one after the \
             other, with the same number of workers: **{}** threads, or \
             **{}** processes.{}\n",
            sys::nproc(),
            self.load[0],
            self.load[1],
            cfg.workers,
            cfg.process.workers,
            if cfg.quick {
                " This was a `--quick` run (smaller sizes, one round): \
                 indicative only."
            } else {
                ""
            }
        )
        .unwrap();
        writeln!(out, "## Machine\n").unwrap();
        writeln!(out, "- nproc: {}", sys::nproc()).unwrap();
        writeln!(out, "- CPU: {}", sys::cpu_model()).unwrap();
        writeln!(out, "- Linux {}", sys::kernel()).unwrap();
        writeln!(
            out,
            "- CPython {}",
            self.python.as_deref().unwrap_or("not available")
        )
        .unwrap();
        writeln!(out, "- peers: {}\n", peer_versions()).unwrap();
        writeln!(out, "## Results\n").unwrap();
        writeln!(
            out,
            "Each peer cell shows its value and, in parentheses, the ratio \
             peer / ours: **above 1 we are faster** (or smaller, or leaner). \
             n/a: not measured for that peer (see the notes).\n"
        )
        .unwrap();
        out.push_str(&self.results_table());
        writeln!(out, "\n## Targets from the issue\n").unwrap();
        out.push_str(&self.targets_table());
        writeln!(out, "\n## What each row measures\n").unwrap();
        out.push_str(&notes(cfg, self.cpu_floor));
        writeln!(out, "\n## Process pools\n").unwrap();
        writeln!(
            out,
            "Ours (`ProcessPoolExecutor`), CPython's `ProcessPoolExecutor` \
             with the `fork` context (and `spawn` for start-up) and \
             procspawn's `Pool`, {} worker processes each, measured in the \
             same run as the thread pools above. Ratio in parentheses: peer \
             / ours, **above 1 we are faster**.\n",
            cfg.process.workers
        )
        .unwrap();
        for line in &self.skipped {
            writeln!(out, "**Not measured:** {line}\n").unwrap();
        }
        out.push_str(&self.process_table());
        writeln!(out, "\n### Targets from the issue (process pool)\n").unwrap();
        out.push_str(&self.process_targets_table());
        writeln!(out, "\n### What each process row measures\n").unwrap();
        out.push_str(&process_report::notes(&cfg.process));
        writeln!(out, "\n## Running it\n").unwrap();
        writeln!(
            out,
            "- `{COMMAND}`: everything, about 5 minutes on 2 cores \
             (most of it in CPython); prints all four tables.\n\
             - `{COMMAND} -- --quick`: the CI smoke run, about 20 s, with a \
             tenth of the sizes or less.\n\
             - `-- --write` also rewrites this file.\n\
             - The harness is `bench/src`; CPython's side is \
             `bench/python/bench_cpython.py`, run with `python3`."
        )
        .unwrap();
        out
    }
}

/// The generated report followed by the hand-written part of `existing`
/// (from [`KEEP_MARKER`] on), if it has one.
pub fn keep_hand_written(generated: String, existing: Option<&str>) -> String {
    match existing.and_then(|text| text.find(KEEP_MARKER).map(|at| &text[at..])) {
        Some(kept) => format!("{generated}\n{kept}"),
        None => generated,
    }
}

/// What every row measures and how each peer does it.
fn notes(cfg: &Config, cpu_floor: f64) -> String {
    let k = |n: usize| thousands(n as u64);
    format!(
        "\
- Pools: ours is `ThreadPoolExecutor::new({w})`; CPython's \
`ThreadPoolExecutor(max_workers={w})`; rayon a `ThreadPool` of {w} threads \
with `spawn` + a `oneshot` channel per task; `threadpool::ThreadPool::new({w})` \
+ oneshot; tokio `spawn_blocking` on a multi-thread runtime with \
`max_blocking_threads({w})` (one async worker, which only drives `block_on`); \
crossbeam: {w} threads receiving `Box<dyn FnOnce>` from one unbounded \
channel, + oneshot. Every pool is warmed up (all workers started) first.
- Rounds: workloads 1-5 run in {rounds} round(s); each round gives every Rust \
peer a fresh, warmed-up pool in turn, so a burst of outside load hits them \
alike, and the turns rotate from round to round, so no peer always goes first \
or follows the same one; after each turn the harness waits (up to 2 s) until \
the process is quiet, so a dropped pool's exiting threads do not share the \
cores with the next. Throughput rows are the median over rounds; latency samples are pooled \
over rounds. CPython runs the same rounds in its own process afterwards.
- 1: submit {submit} tasks returning their index, then join them in order \
(tokio: one `block_on` over all handles).
- 2a: {parked} round trips (submit one task, wait for its result), each \
after a {gap} µs sleep so the workers have parked. 2b: {busy} back-to-back \
round trips while {loaders} loader thread(s) keep submitting batches of \
{window} small tasks to the same pool and joining them. On 2 cores the \
loaders, the workers and the measuring thread compete for the CPUs, so the \
p99 rows are mostly scheduler time slices. 2c: {pinned} back-to-back round \
trips in a fresh process per peer pinned to one CPU (`sched_setaffinity` \
before the pool exists; CPython `os.sched_setaffinity`), so the caller and \
the workers always share it: what \"all cores busy\" means for a pool. Median.
- 3: ours is `map_with(|x| x * 2, 0..{map}, MapOptions::new().buffersize({buf}))`; \
CPython 3.11 has no `buffersize`, so the script runs Python 3.14's algorithm \
(a window of {buf} futures, one more submitted as each result is taken); \
the Rust peers run the same window over their handles.
- 4a: `as_completed` over {asc} futures that are all done (submitted, then \
`wait(ALL_COMPLETED)`), so only `as_completed` and `result()` are timed; \
ours takes references (`as_completed(&futures)`: the caller keeps its vector, \
whose drop is not timed). Ours and CPython only. 4c: the same over the same number of futures in a \
fixed shuffled order (xorshift Fisher-Yates; CPython `random.Random(0x5EED)`), \
so consecutive futures are not neighbours in memory. 4b: submit {asc} tasks and take them as they complete, \
submission included; ours hands its vector over (`as_completed(futures)`, no \
handle cloned), as the peers' handles are consumed, and every future's drop is timed. \
The Rust peers have no `as_completed`: each task sends \
its result on one shared crossbeam channel, which the caller drains (the \
per-task oneshot/JoinHandle is still made and dropped).
- 5: {wait_n} stand-alone pending futures (`Future::new()`, CPython `Future()`); \
`wait(FIRST_COMPLETED)` on them while another thread, {delay} ms later (by then \
registration is long done; CPython's script also checks every future has its \
waiter), calls `set_result` on one. Time from just before `set_result` to \
`wait`'s return, median of {runs} runs. Ours and CPython only: the Rust \
peers have no `wait`.
- 6: a fresh process per peer; its pool's single worker is held on a \
channel, then {mem} tasks are submitted and stay pending. Peak RSS \
(`VmHWM`) minus RSS before submitting, divided by {mem}. The tasks capture \
nothing (zero-sized closures), so this is each pool's own per-task cost: \
ours is the future's shared state plus the queue slot; the library peers' \
include their boxed job, the oneshot channel and its sender captured in the \
job; CPython's a `Future`, a `_WorkItem` and the queue entry. The caller's \
vector of handles is allocated and touched before the baseline, so it is \
not counted. 6b: the same with each task capturing its index, 8 bytes \
(`move || i * 2`; CPython `submit(identity, i)`), as most real tasks \
capture something: ours keeps the task inside the future's own allocation.
- 7: a fresh process per peer. 7a: CPU time of the whole process \
(`CLOCK_PROCESS_CPUTIME_ID`; CPython `time.process_time()`) over {idle} s \
of an idle pool with every worker started, after {settle} ms to settle. 7b: \
the same with one more thread blocked on the result of a task that waits on \
a channel, i.e. a future that does not complete (ours: `result()`; the \
peers: oneshot `recv` / `block_on(JoinHandle)`). For scale, the harness's own \
process measured {floor:.0} µs/s the same way before it had any pool. A ratio \
is shown only when ours is above 100 µs/s; below that both are noise.
- 8: workload 1 at two sizes, on the same warmed pool in every round: 8a \
submits {small} tasks and joins them, {batches} times per round (the median \
per task over all batches); 8b {large} tasks once per round. A flat cost per \
task means 8b close to 8a; the growth that remains is the memory of the \
pending tasks outgrowing the caches. The Rust peers only: CPython's \
{large} tasks would take most of a minute.
",
        w = cfg.workers,
        submit = k(cfg.submit_n),
        rounds = cfg.rounds,
        parked = k(cfg.parked_samples),
        gap = cfg.parked_gap_us,
        busy = k(cfg.busy_samples),
        pinned = k(cfg.pinned_samples),
        small = k(cfg.scale_small_n),
        batches = cfg.per_round(cfg.scale_small_batches),
        large = k(cfg.scale_large_n),
        loaders = cfg.busy_loaders,
        window = cfg.busy_window,
        map = k(cfg.map_n),
        buf = cfg.map_buffersize,
        asc = k(cfg.as_completed_n),
        wait_n = k(cfg.wait_n),
        delay = cfg.wait_delay_ms,
        runs = cfg.wait_runs,
        mem = k(cfg.mem_n),
        idle = cfg.idle_secs,
        settle = cfg.settle_ms,
        floor = cpu_floor,
    )
}

/// `rayon 1.12.0, ...`: the peer crates as Cargo.lock pins them.
fn peer_versions() -> String {
    [
        "rayon",
        "threadpool",
        "tokio",
        "crossbeam-channel",
        "oneshot",
        "procspawn",
    ]
    .into_iter()
    .map(|name| format!("{name} {}", locked_version(CARGO_LOCK, name).unwrap_or("?")))
    .collect::<Vec<_>>()
    .join(", ")
}

/// The version of package `name` in a Cargo.lock.
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    lines.find(|l| *l == wanted)?;
    lines
        .next()?
        .strip_prefix("version = \"")?
        .strip_suffix('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_locked_versions() {
        let lock = "[[package]]\nname = \"rayon\"\nversion = \"1.12.0\"\n";
        assert_eq!(locked_version(lock, "rayon"), Some("1.12.0"));
        assert_eq!(locked_version(lock, "tokio"), None);
        assert!(locked_version(CARGO_LOCK, "tokio").is_some());
    }

    #[test]
    fn write_keeps_the_hand_written_tail() {
        let old = format!("# old numbers\n{KEEP_MARKER}\n## Analysis\nkept\n");
        let new = keep_hand_written("# new numbers\n".into(), Some(&old));
        assert_eq!(
            new,
            format!("# new numbers\n\n{KEEP_MARKER}\n## Analysis\nkept\n")
        );
        assert_eq!(
            keep_hand_written("# new\n".into(), Some("# old\n")),
            "# new\n"
        );
        assert_eq!(keep_hand_written("# new\n".into(), None), "# new\n");
    }

    #[test]
    fn tables_have_a_row_per_metric_and_target() {
        let cfg = Config::quick();
        let mut results = Results::default();
        results.record(Peer::Ours, Metric::SubmitCollect, 100.0);
        results.record(Peer::CPython, Metric::SubmitCollect, 6_000.0);
        results.record(Peer::Rayon, Metric::SubmitCollect, 90.0);
        let proc_results = ProcResults::default();
        let report = Report {
            cfg: &cfg,
            results: &results,
            proc_results: &proc_results,
            skipped: Vec::new(),
            python: None,
            cpu_floor: 30.0,
            load: ["0.10 0.20 0.30".into(), "0.40 0.50 0.60".into()],
            wall: Duration::from_secs(1),
        };
        let table = report.results_table();
        assert_eq!(table.lines().count(), 2 + Metric::ALL.len());
        assert!(table.contains("| 100 ns | 6.00 µs (60.0×) | 90 ns (0.90×) |"));
        let targets = report.targets_table();
        assert!(targets.contains("| 60.0× faster | yes |"));
        assert!(targets.contains("1.11× its time | **no** |"));
    }
}
