//! The cluster rows: who is compared ([`ClusterPeer`]), the raw samples
//! ([`ClusterSample`]), the table's rows ([`ClusterMetric`]), the
//! numbers pooled over rounds ([`ClusterResults`]), and their Markdown:
//! the table, the targets and the `## Cluster` section of BENCHMARKS.md.
//!
//! As in the other tables, every row is "lower is better" and the ratio is
//! peer / ours (ours: the cluster pool): above 1, we are ahead.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use serde_json::{Map, Value};

use crate::config::ClusterConfig;
use crate::metrics::{Unit, sig3, thousands};
use crate::stats::{median, percentile};

/// A column of the cluster table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterPeer {
    /// Our `ProcessPoolExecutor` with `.cluster(...)`: workers on agents.
    Cluster,
    /// Our `ProcessPoolExecutor` with local workers, for scale.
    Local,
    Dask,
    Ray,
}

impl ClusterPeer {
    pub const ALL: [ClusterPeer; 4] = [
        ClusterPeer::Cluster,
        ClusterPeer::Local,
        ClusterPeer::Dask,
        ClusterPeer::Ray,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClusterPeer::Cluster => "ours (cluster)",
            ClusterPeer::Local => "ours (local process pool)",
            ClusterPeer::Dask => "dask.distributed",
            ClusterPeer::Ray => "Ray",
        }
    }

    /// The Python script's name for a Python peer.
    pub fn script_arg(self) -> Option<&'static str> {
        match self {
            ClusterPeer::Dask => Some("dask"),
            ClusterPeer::Ray => Some("ray"),
            _ => None,
        }
    }
}

impl fmt::Display for ClusterPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One kind of raw sample; a round reports a list of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterSample {
    RoundTrip,
    LegOut,
    LegBack,
    NatsPing,
    Task,
    Map,
    /// CPU ns per task during C2a, by process.
    CpuCaller,
    CpuServer,
    CpuAgents,
    CpuWorkers,
    CpuTotal,
    AgentDeath,
}

impl ClusterSample {
    pub const ALL: [ClusterSample; 12] = [
        ClusterSample::RoundTrip,
        ClusterSample::LegOut,
        ClusterSample::LegBack,
        ClusterSample::NatsPing,
        ClusterSample::Task,
        ClusterSample::Map,
        ClusterSample::CpuCaller,
        ClusterSample::CpuServer,
        ClusterSample::CpuAgents,
        ClusterSample::CpuWorkers,
        ClusterSample::CpuTotal,
        ClusterSample::AgentDeath,
    ];

    /// The key in the JSON the Python script prints.
    pub fn key(self) -> &'static str {
        match self {
            ClusterSample::RoundTrip => "round_trip_ns",
            ClusterSample::LegOut => "leg_out_ns",
            ClusterSample::LegBack => "leg_back_ns",
            ClusterSample::NatsPing => "nats_ping_ns",
            ClusterSample::Task => "task_ns",
            ClusterSample::Map => "map_ns",
            ClusterSample::CpuCaller => "cpu_caller_ns",
            ClusterSample::CpuServer => "cpu_server_ns",
            ClusterSample::CpuAgents => "cpu_agents_ns",
            ClusterSample::CpuWorkers => "cpu_workers_ns",
            ClusterSample::CpuTotal => "cpu_total_ns",
            ClusterSample::AgentDeath => "agent_death_ns",
        }
    }

    pub fn from_key(key: &str) -> Option<ClusterSample> {
        ClusterSample::ALL.into_iter().find(|s| s.key() == key)
    }
}

/// One row of the cluster table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterMetric {
    RoundTripP50,
    RoundTripP99,
    LegOut,
    LegBack,
    NatsPing,
    Task,
    Map,
    CpuCaller,
    CpuServer,
    CpuAgents,
    CpuWorkers,
    CpuTotal,
    AgentDeath,
}

impl ClusterMetric {
    pub const ALL: [ClusterMetric; 13] = [
        ClusterMetric::RoundTripP50,
        ClusterMetric::RoundTripP99,
        ClusterMetric::LegOut,
        ClusterMetric::LegBack,
        ClusterMetric::NatsPing,
        ClusterMetric::Task,
        ClusterMetric::Map,
        ClusterMetric::CpuCaller,
        ClusterMetric::CpuServer,
        ClusterMetric::CpuAgents,
        ClusterMetric::CpuWorkers,
        ClusterMetric::CpuTotal,
        ClusterMetric::AgentDeath,
    ];

    /// The row's title, with the sizes of this run.
    pub fn label(self, cfg: &ClusterConfig) -> String {
        let k = |n: usize| thousands(n as u64);
        match self {
            ClusterMetric::RoundTripP50 => {
                "C1a. round trip: submit one trivial task, wait for its result, median".into()
            }
            ClusterMetric::RoundTripP99 => "C1b. round trip, p99".into(),
            ClusterMetric::LegOut => {
                "C1c. of a round trip: submit → the task starts in its worker, median".into()
            }
            ClusterMetric::LegBack => {
                "C1d. of a round trip: the task starts → the caller has its result, median".into()
            }
            ClusterMetric::NatsPing => {
                "C1e. for scale: a bare NATS request/reply to an agent (its liveness ping), median"
                    .into()
            }
            ClusterMetric::CpuCaller => "C2c. CPU per task in C2a: the calling process".into(),
            ClusterMetric::CpuServer => "C2d. CPU per task in C2a: nats-server".into(),
            ClusterMetric::CpuAgents => "C2e. CPU per task in C2a: the agents".into(),
            ClusterMetric::CpuWorkers => "C2f. CPU per task in C2a: the worker processes".into(),
            ClusterMetric::CpuTotal => "C2g. CPU per task in C2a: all of these".into(),
            ClusterMetric::Task => format!(
                "C2a. submit {} trivial tasks, then collect all, per task",
                k(cfg.submit_n)
            ),
            ClusterMetric::Map => {
                format!(
                    "C2b. map over {} items, chunksize 1, per item",
                    k(cfg.map_n)
                )
            }
            ClusterMetric::AgentDeath => {
                "C3. SIGKILL the agent running a call → the call fails (WorkerDied, Lost), median"
                    .into()
            }
        }
    }
}

/// Every raw sample of the run: (peer, sample) -> values, pooled over
/// rounds.
#[derive(Debug, Default)]
pub struct ClusterResults {
    samples: BTreeMap<(ClusterPeer, ClusterSample), Vec<f64>>,
}

impl ClusterResults {
    pub fn record(&mut self, peer: ClusterPeer, sample: ClusterSample, value: f64) {
        self.samples.entry((peer, sample)).or_default().push(value);
    }

    pub fn extend(&mut self, peer: ClusterPeer, sample: ClusterSample, values: &[f64]) {
        self.samples
            .entry((peer, sample))
            .or_default()
            .extend_from_slice(values);
    }

    /// Adds the lists of a JSON object the Python script printed. Unknown
    /// keys are an error: the two sides disagree.
    pub fn record_json(
        &mut self,
        peer: ClusterPeer,
        object: &Map<String, Value>,
    ) -> Result<(), String> {
        for (key, values) in object {
            let sample =
                ClusterSample::from_key(key).ok_or_else(|| format!("unknown sample {key:?}"))?;
            let values = values
                .as_array()
                .ok_or_else(|| format!("{key:?} is not a list: {values}"))?;
            for value in values {
                let value = value
                    .as_f64()
                    .ok_or_else(|| format!("{key:?} has a non-number: {value}"))?;
                self.record(peer, sample, value);
            }
        }
        Ok(())
    }

    pub fn samples(&self, peer: ClusterPeer, sample: ClusterSample) -> Option<&[f64]> {
        self.samples
            .get(&(peer, sample))
            .map(Vec::as_slice)
            .filter(|s| !s.is_empty())
    }

    /// The row's value for `peer`: the median (over rounds for the
    /// throughputs, of the pooled samples otherwise), or the p99.
    pub fn get(&self, metric: ClusterMetric, peer: ClusterPeer) -> Option<f64> {
        let med = |sample| self.samples(peer, sample).map(median);
        match metric {
            ClusterMetric::RoundTripP50 => med(ClusterSample::RoundTrip),
            ClusterMetric::RoundTripP99 => self
                .samples(peer, ClusterSample::RoundTrip)
                .map(|s| percentile(s, 0.99)),
            ClusterMetric::LegOut => med(ClusterSample::LegOut),
            ClusterMetric::LegBack => med(ClusterSample::LegBack),
            ClusterMetric::NatsPing => med(ClusterSample::NatsPing),
            ClusterMetric::Task => med(ClusterSample::Task),
            ClusterMetric::Map => med(ClusterSample::Map),
            ClusterMetric::CpuCaller => med(ClusterSample::CpuCaller),
            ClusterMetric::CpuServer => med(ClusterSample::CpuServer),
            ClusterMetric::CpuAgents => med(ClusterSample::CpuAgents),
            ClusterMetric::CpuWorkers => med(ClusterSample::CpuWorkers),
            ClusterMetric::CpuTotal => med(ClusterSample::CpuTotal),
            ClusterMetric::AgentDeath => med(ClusterSample::AgentDeath),
        }
    }

    /// peer / ours (the cluster pool).
    pub fn ratio(&self, metric: ClusterMetric, peer: ClusterPeer) -> Option<f64> {
        let ours = self.get(metric, ClusterPeer::Cluster)?;
        let theirs = self.get(metric, peer)?;
        (ours > f64::EPSILON).then(|| theirs / ours)
    }
}

/// The table, one row per metric, one column per peer; every peer cell
/// carries its ratio to our cluster pool.
pub fn results_table(cfg: &ClusterConfig, results: &ClusterResults) -> String {
    crate::report::markdown_table(
        ClusterPeer::ALL,
        ClusterMetric::ALL.map(|m| {
            (
                m.label(cfg),
                ClusterPeer::ALL.map(|p| match results.get(m, p) {
                    None => "n/a".into(),
                    Some(value) => {
                        let shown = Unit::Nanos.format(value);
                        match results.ratio(m, p) {
                            Some(ratio) if p != ClusterPeer::Cluster => {
                                format!("{shown} ({}×)", sig3(ratio))
                            }
                            _ => shown,
                        }
                    }
                }),
            )
        }),
    )
}

/// One target, checked.
struct Target {
    goal: &'static str,
    measured: String,
    /// `None` when a number it needs is missing.
    met: Option<bool>,
}

fn targets(results: &ClusterResults) -> Vec<Target> {
    let at_most = |goal, metric, limit: f64| {
        let value = results.get(metric, ClusterPeer::Cluster);
        Target {
            goal,
            measured: value.map_or("n/a".into(), |v| Unit::Nanos.format(v)),
            met: value.map(|v| v <= limit),
        }
    };
    let vs_dask = |goal, metric| {
        let ratio = results.ratio(metric, ClusterPeer::Dask);
        Target {
            goal,
            measured: ratio.map_or("n/a".into(), |x| format!("{}× faster", sig3(x))),
            met: ratio.map(|x| x >= 10.0),
        }
    };
    let mut death = at_most(
        "agent death noticed ≤ 50 ms (C3, median)",
        ClusterMetric::AgentDeath,
        50e6,
    );
    if let Some(s) = results.samples(ClusterPeer::Cluster, ClusterSample::AgentDeath) {
        let worst = s.iter().copied().fold(0.0, f64::max);
        write!(
            death.measured,
            "; slowest of {}: {}",
            s.len(),
            Unit::Nanos.format(worst)
        )
        .unwrap();
    }
    vec![
        at_most(
            "round trip ≤ 150 µs (C1a, median)",
            ClusterMetric::RoundTripP50,
            150e3,
        ),
        at_most(
            "pipelined ≤ 15 µs per task (C2a)",
            ClusterMetric::Task,
            15e3,
        ),
        vs_dask(
            "round trip ≥ 10× ahead of dask.distributed (C1a)",
            ClusterMetric::RoundTripP50,
        ),
        vs_dask(
            "pipelined ≥ 10× ahead of dask.distributed (C2a)",
            ClusterMetric::Task,
        ),
        death,
    ]
}

pub fn targets_table(results: &ClusterResults) -> String {
    let mut out = String::from("| Target | Measured (ours, cluster) | Met |\n|---|---|---|\n");
    for t in targets(results) {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        writeln!(out, "| {} | {} | {met} |", t.goal, t.measured).unwrap();
    }
    out
}

/// The documented command of the cluster rows.
pub const COMMAND: &str =
    "cargo run --release -p concurrent-futures-bench --features cluster -- --cluster";

/// The section's heading: `--cluster --write` replaces from here to the
/// next `## ` heading (or the end), and appends it when it is missing.
pub const HEADING: &str = "## Cluster";

/// What the section says about the run besides the numbers.
pub struct RunInfo {
    pub date: String,
    pub wall_secs: f64,
    /// `/proc/loadavg` (1, 5, 15 min) when the measuring started and ended.
    pub load: [String; 2],
    pub nproc: usize,
    pub cpu: String,
    pub kernel: String,
    pub nats_server: String,
    pub python: Option<String>,
    pub dask: Option<String>,
    pub ray: Option<String>,
    /// Peers that could not run here, and why; other remarks.
    pub notes: Vec<String>,
}

/// The whole `## Cluster` section.
pub fn section(cfg: &ClusterConfig, results: &ClusterResults, info: &RunInfo) -> String {
    let mut out = String::new();
    let mode = if cfg.quick {
        " --quick --write"
    } else {
        " --write"
    };
    writeln!(out, "{HEADING}\n").unwrap();
    writeln!(
        out,
        "Made by `{COMMAND}{mode}` on {}, in {:.0} s; this section only (the rest of \
         this file is left as it was). Load average {} at the start of the \
         measurements and {} at the end (1, 5, 15 min; the end includes this \
         run's own dask and Ray processes), on a shared {}-core machine: the \
         ratios matter more than the absolute times.{}\n",
        info.date,
        info.wall_secs,
        info.load[0],
        info.load[1],
        info.nproc,
        if cfg.quick {
            " This was a `--quick` run (smaller sizes, one round): indicative only."
        } else {
            ""
        }
    )
    .unwrap();
    writeln!(
        out,
        "- Machine: nproc {}, {}, Linux {}\n- {}; CPython {}; dask.distributed {}; Ray {}\n",
        info.nproc,
        info.cpu,
        info.kernel,
        info.nats_server,
        info.python.as_deref().unwrap_or("not run"),
        info.dask.as_deref().unwrap_or("not run"),
        info.ray.as_deref().unwrap_or("not run"),
    )
    .unwrap();
    writeln!(
        out,
        "Our cluster pool (`ProcessPoolExecutor::builder().max_workers({w}).cluster(...)`) \
         with {a} agents × {s} slot on one NATS server on 127.0.0.1, next to our local \
         process pool with {w} workers, `dask.distributed` (a `LocalCluster` of {w} worker \
         processes, 1 thread each) and Ray (`ray.init(num_cpus={w})`), all in the same \
         run, interleaved: each of {r} round(s) runs every peer once, in that order, on \
         a fresh pool. Ratio in parentheses: peer / ours (cluster), **above 1 we are \
         faster**. n/a: not measured for that peer (see the notes).\n",
        w = cfg.workers,
        a = cfg.agents,
        s = cfg.slots,
        r = cfg.rounds,
    )
    .unwrap();
    for line in &info.notes {
        writeln!(out, "**Note:** {line}\n").unwrap();
    }
    out.push_str(&results_table(cfg, results));
    writeln!(out, "\n### Targets (cluster)\n").unwrap();
    out.push_str(&targets_table(results));
    writeln!(out, "\n### What each cluster row measures\n").unwrap();
    out.push_str(&notes(cfg));
    out
}

/// What every row measures and how each peer does it.
fn notes(cfg: &ClusterConfig) -> String {
    let k = |n: usize| thousands(n as u64);
    format!(
        "\
- Set-up: `nats-server -a 127.0.0.1 -p -1`; {a} agents, each this harness's \
executable started with `CONCURRENT_FUTURES_AGENT=<url>`, \
`CONCURRENT_FUTURES_POOL=<name>`, `CONCURRENT_FUTURES_SLOTS={s}` (the library's \
constructor makes it an agent before `main`). The cluster pool has the default \
settings: 32 calls sent ahead to each worker (`Cluster::calls_ahead`). Every path \
is loopback: client → server → agent → worker pipe → agent → server → client. dask: \
`LocalCluster(n_workers={w}, threads_per_worker=1, processes=True, \
dashboard_address=None)` and a `Client` (its scheduler runs in the client's \
process, on a thread of its own). Ray: `ray.init(num_cpus={w}, \
include_dashboard=False, log_to_driver=False)` and `ray.remote(identity)`. \
Both run the same plain functions from an importable module \
(`bench/python/cluster_tasks.py`), in a fresh interpreter per round \
(`bench/python/cluster_peers.py`, with the venv `target/bench-cluster-py`).
- Warm-up, every peer and round: calls that sleep 20 ms until {w} worker \
processes have answered, then 50 round trips and {warm} trivial calls.
- C1: {rt} back-to-back round trips per round, pooled over rounds: ours \
`submit(identity, 7)` then `result()`; dask `client.submit(identity, 7, \
pure=False).result()` (`pure=False`: a fresh key, never a cached result); Ray \
`ray.get(f.remote(7))`. C1c and C1d split {st} more round trips per round with \
a task that returns `CLOCK_MONOTONIC` in its worker (Python's `time.monotonic_ns`, \
the same clock): submit → that stamp, and the stamp → the caller has the result.
- C1e (ours, cluster, for scale): {pings} NATS requests per round from a bare \
`async-nats` client in this process to an agent's liveness-ping subject, which \
the agent's runtime answers with an empty message: client → server → agent → \
server → client with no worker, no engine and no HMAC. The cluster round trip \
adds to it the worker's pipe both ways, the agent's relay (its runtime thread \
and its pipe reader thread), sealing and opening each message, and the \
client's runtime and link threads.
- C2a: submit `identity(i)` for i in `0..{n_raw}`, one call each, then take every \
result (ours in order; dask `client.gather` of the futures; Ray `ray.get` of the \
list of refs); median over rounds. C2b: ours `map(identity, 0..{m_raw})` (chunksize 1, \
every item submitted at once); dask `client.map(identity, range({m_raw}), pure=False)` \
+ `gather`; Ray has no map of its own: n/a. C2c-g: the CPU time \
(`clock_getcpuclockid`, every thread) each process used during C2a, divided \
by {n}, median over rounds: this process (the caller and the pool's threads), \
nats-server, the agents, the workers (found by the pids the warm-up calls \
return). On {nproc} CPUs, a total near {nproc}× C2a means the run is \
CPU-bound. Not measured for dask and Ray: n/a.
- C3: {d} runs in all ({dr} per round): a fresh agent with 1 slot on a pool name \
of its own, a self-healing cluster pool of 1 worker, a call that reports its \
worker's pid over a Unix socket and then blocks (up to 60 s); {delay} ms plus \
k/{d} of {spread} ms (run k = 0, …, {d_last}, so the kills fall evenly over one probe \
period) after it arrives, this thread sends `SIGKILL` to the agent (not its worker, which \
dies with it by `PR_SET_PDEATHSIG`). Time from just before `kill` to `result()` \
returning `Error::WorkerDied` with `ExitCause::Lost`. The client notices through \
its probes of the agent (every 20 ms by default: the server answers \"no \
responders\" once the agent's connection is gone), so the median is about half \
a probe period plus the kernel closing the agent's socket. The kills sweep \
the probe period so that some land while a probe is in flight (delivered to \
the agent, not yet answered): the server answers \"no responders\" only to a \
request published once the agent is gone, so a client that waited that probe \
out would notice the death only after `lost_after` (3 s by default), which \
shows as a slowest time of about 3 s (the library did so before commit \
22e2d43). Only ours has an agent: n/a for the others.
",
        a = cfg.agents,
        s = cfg.slots,
        w = cfg.workers,
        warm = k(cfg.warmup),
        rt = k(cfg.round_trips),
        st = k(cfg.stamped),
        n = k(cfg.submit_n),
        d = cfg.deaths,
        dr = cfg.deaths.div_ceil(cfg.rounds),
        delay = cfg.death_delay_ms,
        spread = cfg.death_spread_ms,
        n_raw = cfg.submit_n,
        m_raw = cfg.map_n,
        d_last = cfg.deaths.saturating_sub(1),
        pings = k(cfg.nats_pings),
        nproc = crate::sys::nproc(),
    )
}

/// `existing` with its `## Cluster` section (up to the next `## `
/// heading, or the end) replaced by `section`, or `section` appended.
pub fn replace_section(existing: Option<&str>, section: &str) -> String {
    let section = section.trim_end();
    let Some(text) = existing else {
        return format!("{section}\n");
    };
    let starts_line = |at: usize| at == 0 || text.as_bytes()[at - 1] == b'\n';
    let heading = text
        .match_indices(HEADING)
        .map(|(at, _)| at)
        .find(|&at| starts_line(at) && text[at + HEADING.len()..].starts_with(['\n', '\r']));
    match heading {
        Some(start) => {
            let after = start + HEADING.len();
            let end = text[after..]
                .match_indices("\n## ")
                .map(|(at, _)| after + at + 1)
                .next()
                .unwrap_or(text.len());
            let rest = &text[end..];
            if rest.is_empty() {
                format!("{}{section}\n", &text[..start])
            } else {
                format!("{}{section}\n\n{rest}", &text[..start])
            }
        }
        None => format!("{}\n\n{section}\n", text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for s in ClusterSample::ALL {
            assert_eq!(ClusterSample::from_key(s.key()), Some(s));
        }
    }

    #[test]
    fn tables_and_targets() {
        let cfg = ClusterConfig::quick();
        let mut r = ClusterResults::default();
        r.extend(
            ClusterPeer::Cluster,
            ClusterSample::RoundTrip,
            &[100e3, 120e3, 140e3],
        );
        r.record(ClusterPeer::Dask, ClusterSample::RoundTrip, 1.2e6);
        r.record(ClusterPeer::Cluster, ClusterSample::Task, 20e3);
        r.record(ClusterPeer::Dask, ClusterSample::Task, 100e3);
        r.record(ClusterPeer::Cluster, ClusterSample::AgentDeath, 12e6);
        let table = results_table(&cfg, &r);
        assert_eq!(table.lines().count(), 2 + ClusterMetric::ALL.len());
        assert!(table.contains("| 120 µs | n/a | 1.20 ms (10.0×) | n/a |"));
        let targets = targets_table(&r);
        assert!(targets.contains("| 120 µs | yes |"));
        assert!(targets.contains("| 20.0 µs | **no** |"));
        assert!(targets.contains("| 10.0× faster | yes |"));
        assert!(targets.contains("| 5.00× faster | **no** |"));
        assert!(targets.contains("12.0 ms; slowest of 1: 12.0 ms | yes |"));
        let bad: Map<String, Value> = serde_json::from_str(r#"{"nope": [1]}"#).unwrap();
        assert!(r.record_json(ClusterPeer::Ray, &bad).is_err());
    }

    #[test]
    fn the_section_is_replaced_or_appended() {
        let new = "## Cluster\n\nnew\n";
        assert_eq!(replace_section(None, new), new);
        assert_eq!(
            replace_section(Some("# B\n\n## Other\n\nx\n"), new),
            "# B\n\n## Other\n\nx\n\n## Cluster\n\nnew\n"
        );
        assert_eq!(
            replace_section(Some("# B\n\n## Cluster\n\nold\n### sub\nold\n"), new),
            "# B\n\n## Cluster\n\nnew\n"
        );
        assert_eq!(
            replace_section(Some("# B\n\n## Cluster\n\nold\n\n## Next\n\nkept\n"), new),
            "# B\n\n## Cluster\n\nnew\n\n## Next\n\nkept\n"
        );
        // A heading that only starts with "## Cluster" is another section.
        assert_eq!(
            replace_section(Some("## Clustering\n\nx\n"), new),
            "## Clustering\n\nx\n\n## Cluster\n\nnew\n"
        );
    }
}
