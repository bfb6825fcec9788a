//! Benchmarks `concurrent-futures` against CPython's `concurrent.futures`,
//! rayon, the `threadpool` crate, tokio's `spawn_blocking` and a minimal
//! crossbeam-channel pool (thread pools), and against CPython's
//! `ProcessPoolExecutor` and procspawn's `Pool` (process pools), all in one
//! run, and prints the ratios.
//!
//! ```text
//! cargo run --release -p concurrent-futures-bench             # ~5 min
//! cargo run --release -p concurrent-futures-bench -- --quick  # ~20 s smoke
//! cargo run --release -p concurrent-futures-bench -- --write  # + BENCHMARKS.md
//! cargo run --release -p concurrent-futures-bench --features cluster -- --cluster [--write]
//! cargo run --release -p concurrent-futures-bench -- --process    # process rows, printed
//! cargo run --release -p concurrent-futures-bench --features cluster -- --cluster --ours-only [--calls-ahead=N]
//! ```
//!
//! `--cluster` (with this crate's `cluster` feature, which turns on the
//! library's) measures only the cluster rows instead: our process pool with
//! its workers on agents over a local NATS server, our local process pool,
//! dask.distributed and Ray (`cluster_bench`, `cluster_services`,
//! `cluster_report`); its `--write` replaces only the `## Cluster`
//! section of BENCHMARKS.md.
//!
//! Layout: `peers` (who is compared, the `Pool` interface), `pools` and
//! `crossbeam_pool` (the adapters), `workloads` (what is measured),
//! `child` and `cpython` (what runs in other processes), `metrics`,
//! `stats`, `sys` and `report` (numbers and their presentation). The
//! process pools have their own `process_peers`, `process_workloads`,
//! `process_metrics` and `process_report`.
//!
//! Two kinds of worker process run this same executable: our pool's, which
//! the library's constructor sends into its worker loop before `main`, and
//! procspawn's, which `procspawn::init()` at the top of `main` takes over.
//! Each is marked by its own environment variable, so neither sees the
//! other's workers.

mod child;
#[cfg(feature = "cluster")]
mod cluster_bench;
#[cfg(feature = "cluster")]
mod cluster_report;
#[cfg(feature = "cluster")]
mod cluster_services;
mod config;
mod cpython;
mod crossbeam_pool;
mod metrics;
mod peers;
mod pools;
mod process_metrics;
mod process_peers;
mod process_report;
mod process_workloads;
mod report;
mod stats;
mod sys;
mod workloads;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use config::Config;
use metrics::Results;
use peers::{Peer, with_pool};
use process_metrics::ProcResults;
use process_peers::ProcPeer;
use report::Report;
use workloads::Samples;

const USAGE: &str = "\
usage: concurrent-futures-bench [--quick] [--write] [--cluster [--ours-only [--calls-ahead=N]] | --process]

  --quick   smaller sizes, one repetition: a ~20 s smoke run
  --write   also rewrite BENCHMARKS.md at the workspace root
  --cluster only the cluster rows (needs `--features cluster`): our pool on
            agents over a local nats-server, our local process pool,
            dask.distributed and Ray; with --write, replaces only the
            \"## Cluster\" section of BENCHMARKS.md
  --ours-only
            with --cluster: only our two pools (no Python peers, nothing
            installed), printed, never written
  --calls-ahead=N
            with --ours-only: the cluster pool sends N calls ahead to each
            worker (`Cluster::calls_ahead`) instead of the default
  --process only the process-pool rows (ours, procspawn, CPython), printed,
            never written: for comparing two builds of the library side by
            side, run after run
";

/// Where `--write` puts the report: the workspace root.
const BENCHMARKS_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md");

fn main() -> ExitCode {
    // A procspawn worker runs its calls here and never returns. (Our own
    // pool's workers never get here: they enter their loop before `main`.)
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child") => return child_main(&args[1..]),
        Some("--proc-child") => return process_workloads::child_main(&args[1..]),
        _ => {}
    }
    let (mut quick, mut write, mut cluster, mut process) = (false, false, false, false);
    let mut ours_only = false;
    let mut calls_ahead = None;
    for arg in &args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--write" => write = true,
            "--cluster" => cluster = true,
            "--process" => process = true,
            "--ours-only" => ours_only = true,
            other if other.starts_with("--calls-ahead=") => {
                match other["--calls-ahead=".len()..].parse::<usize>() {
                    Ok(n) => calls_ahead = Some(n),
                    Err(_) => {
                        eprint!("--calls-ahead takes a number: {other:?}\n{USAGE}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprint!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    if cluster && process {
        eprint!("--cluster and --process exclude each other\n{USAGE}");
        return ExitCode::FAILURE;
    }
    if ours_only && (!cluster || write) || calls_ahead.is_some() && !ours_only {
        eprint!("--ours-only goes with --cluster and prints only; --calls-ahead with it\n{USAGE}");
        return ExitCode::FAILURE;
    }
    if cluster {
        let only = ours_only.then_some(cluster_only::OursOnly { calls_ahead });
        return run_cluster(quick, write, only);
    }
    let cfg = if quick {
        Config::quick()
    } else {
        Config::full()
    };
    if process {
        if write {
            // BENCHMARKS.md is one run of every row; a part would mix runs.
            eprint!("--process prints only; --write needs the full run\n{USAGE}");
            return ExitCode::FAILURE;
        }
        return match run_process_only(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run_all(&cfg, write) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--cluster`: the cluster rows alone.
#[cfg(feature = "cluster")]
fn run_cluster(quick: bool, write: bool, ours_only: Option<cluster_only::OursOnly>) -> ExitCode {
    match cluster_bench::run(quick, write, ours_only, BENCHMARKS_MD) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "cluster"))]
fn run_cluster(_quick: bool, _write: bool, _ours_only: Option<cluster_only::OursOnly>) -> ExitCode {
    eprintln!(
        "--cluster needs the bench crate's `cluster` feature: \
         cargo run --release -p concurrent-futures-bench --features cluster -- --cluster"
    );
    ExitCode::FAILURE
}

/// `--child KIND PEER CONFIG`: one measurement in a process of its own.
fn child_main(args: &[String]) -> ExitCode {
    let [kind, peer, json] = args else {
        eprintln!("usage: --child KIND PEER CONFIG-JSON");
        return ExitCode::FAILURE;
    };
    let (Some(kind), Some(peer)) = (child::Kind::from_name(kind), Peer::from_name(peer)) else {
        eprintln!("unknown child kind {kind:?} or peer {peer:?}");
        return ExitCode::FAILURE;
    };
    match Config::from_json(json) {
        Ok(cfg) => {
            child::run(kind, peer, &cfg);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bad config: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long the harness waits for a dropped pool's threads to go quiet
/// before it measures the next one.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// `peers` starting at the `by`-th, wrapping around: the order of round
/// `by`, so that no peer always runs first, or right after the same one.
fn rotated(peers: &[Peer], by: usize) -> impl Iterator<Item = Peer> + '_ {
    let start = by % peers.len().max(1);
    peers[start..].iter().chain(&peers[..start]).copied()
}

/// Every workload for every peer, one after the other so they do not
/// compete for the two cores; then the tables.
fn run_all(cfg: &Config, write: bool) -> Result<(), String> {
    let started = Instant::now();
    let load_before = sys::loadavg();
    let progress = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    eprintln!(
        "{} run, {} workers per pool, {} CPUs",
        if cfg.quick { "quick" } else { "full" },
        cfg.workers,
        sys::nproc()
    );
    let mut results = Results::default();

    // Before any pool exists: what measuring CPU time costs by itself.
    progress("CPU floor (no pool)");
    let cpu_floor = sys::cpu_micros_per_sec_over(cfg.idle_secs);

    let mut samples: BTreeMap<Peer, Samples> = BTreeMap::new();
    for round in 1..=cfg.rounds {
        for peer in rotated(&Peer::RUST, round - 1) {
            progress(&format!("round {round}/{}: {peer}", cfg.rounds));
            let samples = samples.entry(peer).or_default();
            with_pool!(peer, P => workloads::measure_round::<P>(cfg, samples));
            if !sys::settle(SETTLE_LIMIT) {
                eprintln!("warning: still busy {SETTLE_LIMIT:?} after {peer}'s round");
            }
        }
        progress(&format!(
            "round {round}/{}: ours, as_completed and wait",
            cfg.rounds
        ));
        workloads::measure_futures_round(cfg, samples.entry(Peer::Ours).or_default());
    }
    for (&peer, samples) in &samples {
        samples.summarize(&mut |metric, value| results.record(peer, metric, value));
    }

    for kind in child::Kind::ALL {
        for peer in Peer::RUST {
            progress(&format!("{peer}: {} (child process)", kind.name()));
            let metrics = child::spawn(kind, peer, cfg)?;
            results.record_json(peer, &metrics)?;
        }
    }

    let mut python = None;
    for mode in cpython::MODES {
        progress(&format!("CPython: {mode}"));
        match cpython::run(mode, cfg) {
            Ok(run) => {
                results.record_json(Peer::CPython, &run.results)?;
                python = Some(run.version);
            }
            // A machine without python3 still gets the Rust comparison.
            Err(e) => eprintln!("warning: CPython skipped: {e}"),
        }
    }

    let mut proc_results = ProcResults::default();
    let mut skipped = Vec::new();
    measure_process_pools(cfg, &mut proc_results, &mut skipped, &mut python, &progress)?;

    let report = Report {
        cfg,
        results: &results,
        proc_results: &proc_results,
        skipped,
        python,
        cpu_floor,
        load: [load_before, sys::loadavg()],
        wall: started.elapsed(),
    };
    println!("\n{}", report.results_table());
    println!("Ratio in parentheses: peer / ours; above 1, we are faster.");
    println!(
        "CPU floor (this process before any pool, same measurement as row 7): {cpu_floor:.0} µs/s\n"
    );
    println!("{}", report.targets_table());
    println!("Process pools:\n\n{}", report.process_table());
    println!("{}", report.process_targets_table());
    for line in &report.skipped {
        println!("note: {line}");
    }
    eprintln!("total {:.0} s", report.wall.as_secs_f64());
    if write {
        let existing = std::fs::read_to_string(BENCHMARKS_MD).ok();
        let text = report::keep_hand_written(report.markdown(), existing.as_deref());
        std::fs::write(BENCHMARKS_MD, text)
            .map_err(|e| format!("cannot write {BENCHMARKS_MD}: {e}"))?;
        eprintln!("wrote BENCHMARKS.md");
    }
    Ok(())
}

/// `--process`: the process-pool rows alone, with the load average around
/// them, printed.
fn run_process_only(cfg: &Config) -> Result<(), String> {
    let started = Instant::now();
    let load_before = sys::loadavg();
    let progress = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let mut results = ProcResults::default();
    let (mut skipped, mut python) = (Vec::new(), None);
    measure_process_pools(cfg, &mut results, &mut skipped, &mut python, &progress)?;
    println!(
        "Process pools (load average {load_before} before, {} after):\n\n{}",
        sys::loadavg(),
        process_report::results_table(&cfg.process, &results)
    );
    println!("{}", process_report::targets_table(&cfg.process, &results));
    for line in &skipped {
        println!("note: {line}");
    }
    eprintln!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The process-pool workloads, in rounds: each round runs ours, procspawn
/// and CPython in a fresh process each, one after the other. A peer that
/// cannot run here is skipped with a note (`skipped`), not an error.
fn measure_process_pools(
    cfg: &Config,
    results: &mut ProcResults,
    skipped: &mut Vec<String>,
    python: &mut Option<String>,
    progress: &impl Fn(&str),
) -> Result<(), String> {
    let rounds = cfg.process.rounds;
    let mut failed: Vec<ProcPeer> = Vec::new();
    for round in 1..=rounds {
        for peer in ProcPeer::RUST {
            if failed.contains(&peer) {
                continue;
            }
            progress(&format!("process round {round}/{rounds}: {peer}"));
            match process_workloads::spawn_round(peer, cfg) {
                Ok(samples) => results.record_json(peer, &samples)?,
                // Ours must work; a peer that cannot is reported.
                Err(e) if peer != ProcPeer::Ours => {
                    eprintln!("warning: {peer} skipped: {e}");
                    skipped.push(format!("{peer} could not run here: {e}"));
                    failed.push(peer);
                }
                Err(e) => return Err(e),
            }
        }
        if failed.contains(&ProcPeer::CPythonFork) {
            continue;
        }
        progress(&format!("process round {round}/{rounds}: CPython"));
        match cpython::run("proc", cfg) {
            Ok(run) => {
                for (key, samples) in &run.results {
                    let peer = ProcPeer::from_arg(key)
                        .ok_or_else(|| format!("CPython proc: unknown context {key:?}"))?;
                    let samples = samples
                        .as_object()
                        .ok_or_else(|| format!("CPython proc: {key:?} is not an object"))?;
                    results.record_json(peer, samples)?;
                }
                *python = Some(run.version);
            }
            Err(e) => {
                eprintln!("warning: CPython process pools skipped: {e}");
                skipped.push(format!("CPython's process pool could not run here: {e}"));
                failed.push(ProcPeer::CPythonFork);
            }
        }
    }
    Ok(())
}

/// What `--ours-only` changes in a cluster run.
mod cluster_only {
    /// Only our two pools, printed; the cluster pool with this many calls
    /// sent ahead, where given.
    #[derive(Clone, Copy, Debug)]
    pub struct OursOnly {
        // Read by the cluster rows alone; a build without them still
        // parses the flag, to refuse it clearly.
        #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
        pub calls_ahead: Option<usize>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_starts_with_the_next_peer_and_keeps_them_all() {
        let orders: Vec<Vec<Peer>> = (0..Peer::RUST.len() + 1)
            .map(|round| rotated(&Peer::RUST, round).collect())
            .collect();
        for (round, order) in orders.iter().enumerate() {
            assert_eq!(order[0], Peer::RUST[round % Peer::RUST.len()]);
            let mut sorted = order.clone();
            sorted.sort();
            let mut all = Peer::RUST.to_vec();
            all.sort();
            assert_eq!(sorted, all, "round {round} runs every peer once");
        }
        assert_eq!(orders[0], orders[Peer::RUST.len()]);
    }
}
