//! `--cluster`: our process pool with its workers on agents over a NATS
//! server (the library's `cluster` feature, through this crate's), next to
//! our local process pool, dask.distributed and Ray, in one run.
//!
//! ```text
//! cargo run --release -p concurrent-futures-bench --features cluster -- --cluster [--quick] [--write]
//! ```
//!
//! The run starts `nats-server` on 127.0.0.1 and a random port and
//! `agents` agents (this executable again, made agents by their
//! environment before `main`), then runs `rounds` rounds: each measures
//! our cluster pool, our local pool, dask and Ray, in that order, each on
//! a fresh pool (the Python peers in a fresh interpreter), then kills
//! agents for row C3. `--write` replaces the `## Cluster` section of
//! BENCHMARKS.md (or appends it) and leaves the rest of the file alone.
//! Everything started is stopped at the end, also on an error
//! (`cluster_services.rs`).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::process::cluster::Cluster;
use concurrent_futures::{Error, ExitCause, MapOptions, ProcessPoolExecutor};
use serde_json::Value;

use crate::child::parse_object;
use crate::cluster_report::{
    self, ClusterPeer, ClusterResults, ClusterSample, RunInfo, replace_section,
};
use crate::cluster_services::{NatsServer, PythonEnv, Service, agent, run_bounded, tail};
use crate::config::ClusterConfig;
use crate::stats::nanos;
use crate::sys;

/// The Python peers' script.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/cluster_peers.py");

// ------------------------------------------------------------ the tasks --

/// C1, C2: the trivial task.
fn identity(x: u64) -> u64 {
    x
}

/// C1c-d: when the task started, on `CLOCK_MONOTONIC`.
fn stamp(_: u64) -> u64 {
    monotonic_ns()
}

/// Warm-up: which process runs a call that lasts 20 ms.
fn pid_after_20ms(_: u64) -> u32 {
    thread::sleep(Duration::from_millis(20));
    std::process::id()
}

/// C3: tells the harness, over the Unix socket at `path`, which process
/// runs it, then holds its worker until the harness hangs up, the process
/// is killed, or 60 s pass.
fn report_and_hold(path: String) -> u32 {
    let Ok(mut stream) = UnixStream::connect(&path) else {
        return 0;
    };
    let _ = stream.write_all(&std::process::id().to_le_bytes());
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = stream.read(&mut [0u8; 1]);
    0
}

/// `CLOCK_MONOTONIC` in ns: the clock `Instant` reads on Linux, and
/// Python's `time.monotonic_ns`, so stamps compare across processes.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a
    // constant Linux always supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ----------------------------------------------------------- the run --

/// Runs the cluster rows; with `write`, replaces BENCHMARKS.md's section.
/// `ours_only`: without the Python peers (nothing installed), for
/// comparing builds of the library or settings; never written.
pub fn run(
    quick: bool,
    write: bool,
    ours_only: Option<crate::cluster_only::OursOnly>,
    benchmarks_md: &str,
) -> Result<(), String> {
    let cfg = if quick {
        ClusterConfig::quick()
    } else {
        ClusterConfig::full()
    };
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    eprintln!(
        "cluster {} run: {} agents × {} slot(s), {} CPUs",
        if quick { "quick" } else { "full" },
        cfg.agents,
        cfg.slots,
        sys::nproc()
    );
    let mut notes = Vec::new();

    // Set-up, before the load average is read: the venv, the server, the
    // agents.
    let python = if ours_only.is_some() {
        Err("left out (--ours-only)".to_owned())
    } else {
        PythonEnv::ensure(&progress)
    };
    let python = match python {
        Ok(env) => Some(env),
        Err(e) => {
            eprintln!("warning: no Python peers: {e}");
            notes.push(format!("the Python peers could not run here: {e}"));
            None
        }
    };
    if let Some(env) = &python {
        for (peer, ready) in [(ClusterPeer::Dask, &env.dask), (ClusterPeer::Ray, &env.ray)] {
            if let Err(e) = ready {
                eprintln!("warning: {peer} skipped: {e}");
                notes.push(format!("{peer} could not be installed here: {e}"));
            }
        }
    }
    let server = NatsServer::start()?;
    progress(&format!("{} at {}", server.version, server.url));
    let pool_name = format!("bench-{}", std::process::id());
    let agents: Vec<Service> = (0..cfg.agents)
        .map(|_| agent(&server.url, &pool_name, cfg.slots))
        .collect::<Result<_, _>>()?;
    let mut cluster = Cluster::new(&server.url, &pool_name);
    if let Some(calls) = ours_only.and_then(|o| o.calls_ahead) {
        cluster = cluster.calls_ahead(calls);
    }
    // Whose CPU time C2c-g reads, besides this process and the workers.
    let mut services = vec![(ClusterSample::CpuServer, server.pid())];
    services.extend(agents.iter().map(|a| (ClusterSample::CpuAgents, a.pid())));

    let load_before = sys::loadavg();
    let measuring = Instant::now();
    let mut results = ClusterResults::default();
    let mut versions: [Option<String>; 3] = [None, None, None]; // python, dask, ray
    let mut failed: Vec<ClusterPeer> = Vec::new();
    let mut death_runs = 0;
    for round in 1..=cfg.rounds {
        for peer in ClusterPeer::ALL {
            if failed.contains(&peer) {
                continue;
            }
            progress(&format!("round {round}/{}: {peer}", cfg.rounds));
            match peer {
                ClusterPeer::Cluster => {
                    let pool = ProcessPoolExecutor::builder()
                        .max_workers(cfg.workers)
                        .cluster(cluster.clone())
                        .build()
                        .map_err(|e| format!("a cluster pool: {e}"))?;
                    measure_ours(&pool, &cfg, peer, &services, &mut results)?;
                    // While the pool has workers, its probes show the
                    // agents' ping subjects.
                    let pings = nats_pings(&server.url, &pool_name, &cfg)?;
                    results.extend(peer, ClusterSample::NatsPing, &pings);
                }
                ClusterPeer::Local => {
                    let pool = ProcessPoolExecutor::builder()
                        .max_workers(cfg.workers)
                        .build()
                        .map_err(|e| format!("a local pool: {e}"))?;
                    measure_ours(&pool, &cfg, peer, &[], &mut results)?;
                }
                ClusterPeer::Dask | ClusterPeer::Ray => {
                    let ready = python.as_ref().and_then(|env| {
                        let ok = match peer {
                            ClusterPeer::Dask => env.dask.is_ok(),
                            _ => env.ray.is_ok(),
                        };
                        ok.then_some(env.python.clone())
                    });
                    let Some(interpreter) = ready else {
                        failed.push(peer);
                        continue;
                    };
                    match run_python(&interpreter, peer, &cfg) {
                        Ok(run) => {
                            results.record_json(peer, &run.results)?;
                            versions[0] = Some(run.python);
                            versions[if peer == ClusterPeer::Dask { 1 } else { 2 }] =
                                Some(run.version);
                        }
                        Err(e) => {
                            eprintln!("warning: {peer} skipped: {e}");
                            notes.push(format!("{peer} could not run here: {e}"));
                            failed.push(peer);
                        }
                    }
                }
            }
        }
        let deaths = cfg.deaths.div_ceil(cfg.rounds).min(cfg.deaths - death_runs);
        for _ in 0..deaths {
            death_runs += 1;
            progress(&format!(
                "round {round}/{}: agent death {death_runs}/{}",
                cfg.rounds, cfg.deaths
            ));
            let ns = agent_death(&server.url, death_runs, &cfg, &mut notes)?;
            if ns > 1e9 {
                notes.push(format!(
                    "C3 run {death_runs} took {}: far more than a probe period (see the \
                     notes on C3)",
                    crate::metrics::Unit::Nanos.format(ns)
                ));
            }
            results.record(ClusterPeer::Cluster, ClusterSample::AgentDeath, ns);
        }
    }
    let load_after = sys::loadavg();
    let measured_secs = measuring.elapsed().as_secs_f64();

    let [python_version, dask_version, ray_version] = versions;
    let info = RunInfo {
        date: sys::today_utc(),
        wall_secs: started.elapsed().as_secs_f64(),
        load: [load_before, load_after],
        nproc: sys::nproc(),
        cpu: sys::cpu_model(),
        kernel: sys::kernel(),
        nats_server: server.version.clone(),
        python: python_version,
        dask: dask_version,
        ray: ray_version,
        notes,
    };
    println!("\n{}", cluster_report::results_table(&cfg, &results));
    println!("Ratio in parentheses: peer / ours (cluster); above 1, we are faster.\n");
    println!("{}", cluster_report::targets_table(&results));
    for line in &info.notes {
        println!("note: {line}");
    }
    eprintln!(
        "load average {} -> {}; measuring {measured_secs:.0} s, total {:.0} s",
        info.load[0], info.load[1], info.wall_secs
    );
    if write {
        let existing = std::fs::read_to_string(benchmarks_md).ok();
        let section = cluster_report::section(&cfg, &results, &info);
        let text = replace_section(existing.as_deref(), &section);
        std::fs::write(benchmarks_md, text)
            .map_err(|e| format!("cannot write {benchmarks_md}: {e}"))?;
        eprintln!(
            "wrote the {} section of BENCHMARKS.md",
            cluster_report::HEADING
        );
    }
    Ok(())
}

// ------------------------------------------------------ our workloads --

/// The most one result may take.
fn limit(cfg: &ClusterConfig) -> Duration {
    Duration::from_secs(cfg.timeout_s)
}

fn call<A, R>(
    pool: &ProcessPoolExecutor,
    f: fn(A) -> R,
    arg: A,
    cfg: &ClusterConfig,
) -> Result<R, String>
where
    A: serde::Serialize + serde::de::DeserializeOwned,
    R: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let future = pool.submit(f, arg).map_err(|e| format!("submit: {e}"))?;
    future
        .result_timeout(limit(cfg))
        .cloned()
        .map_err(|e| format!("a call failed: {e}"))
}

/// One round of C1 and C2 on `pool`, a fresh one. `services`: the other
/// processes whose CPU time C2c-g reads (with the sample each counts in).
fn measure_ours(
    pool: &ProcessPoolExecutor,
    cfg: &ClusterConfig,
    peer: ClusterPeer,
    services: &[(ClusterSample, u32)],
    results: &mut ClusterResults,
) -> Result<(), String> {
    let workers = warm_up(pool, cfg)?;
    let mut watched = vec![(ClusterSample::CpuCaller, std::process::id())];
    watched.extend_from_slice(services);
    watched.extend(workers.iter().map(|&pid| (ClusterSample::CpuWorkers, pid)));

    let mut round_trips = Vec::with_capacity(cfg.round_trips);
    for _ in 0..cfg.round_trips {
        let start = Instant::now();
        let value = call(pool, identity, 7, cfg)?;
        round_trips.push(nanos(start.elapsed()));
        assert_eq!(value, 7);
    }
    results.extend(peer, ClusterSample::RoundTrip, &round_trips);

    for _ in 0..cfg.stamped {
        let sent = monotonic_ns();
        let ran = call(pool, stamp, 0, cfg)?;
        let returned = monotonic_ns();
        results.record(peer, ClusterSample::LegOut, ran.saturating_sub(sent) as f64);
        results.record(
            peer,
            ClusterSample::LegBack,
            returned.saturating_sub(ran) as f64,
        );
    }

    let n = cfg.submit_n as u64;
    let cpu_before: Vec<Option<u64>> = watched.iter().map(|&(_, pid)| cpu_ns(pid)).collect();
    let start = Instant::now();
    let futures = (0..n)
        .map(|i| pool.submit(identity, i).map_err(|e| format!("submit: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = 0u64;
    for future in &futures {
        total += future
            .result_timeout(limit(cfg))
            .map_err(|e| format!("a call failed: {e}"))?;
    }
    let elapsed = start.elapsed();
    let cpu_after: Vec<Option<u64>> = watched.iter().map(|&(_, pid)| cpu_ns(pid)).collect();
    assert_eq!(total, triangle(n));
    drop(futures);
    results.record(peer, ClusterSample::Task, nanos(elapsed) / n as f64);
    let mut cpu: Vec<(ClusterSample, f64)> = Vec::new();
    for ((sample, pid), (before, after)) in watched.iter().zip(cpu_before.iter().zip(&cpu_after)) {
        let (Some(before), Some(after)) = (before, after) else {
            return Err(format!("cannot read the CPU time of pid {pid}"));
        };
        let per_task = after.saturating_sub(*before) as f64 / n as f64;
        match cpu.iter_mut().find(|(s, _)| s == sample) {
            Some((_, total)) => *total += per_task,
            None => cpu.push((*sample, per_task)),
        }
    }
    let total_cpu = cpu.iter().map(|(_, v)| v).sum();
    for (sample, value) in cpu {
        results.record(peer, sample, value);
    }
    results.record(peer, ClusterSample::CpuTotal, total_cpu);

    let n = cfg.map_n as u64;
    let start = Instant::now();
    let mut total = 0u64;
    for item in pool.map_with(
        identity,
        0..n,
        MapOptions::new().timeout(Duration::from_secs(cfg.bulk_timeout_s)),
    ) {
        total += item.map_err(|e| format!("map: {e}"))?;
    }
    let elapsed = start.elapsed();
    assert_eq!(total, triangle(n));
    results.record(peer, ClusterSample::Map, nanos(elapsed) / n as f64);
    Ok(())
}

/// Every worker process running (calls that sleep 20 ms came back from
/// `workers` pids), then 50 round trips and a batch of trivial calls; the
/// workers' pids.
fn warm_up(pool: &ProcessPoolExecutor, cfg: &ClusterConfig) -> Result<Vec<u32>, String> {
    let mut workers = Vec::new();
    for _ in 0..10 {
        let futures = (0..cfg.workers)
            .map(|_| {
                pool.submit(pid_after_20ms, 0)
                    .map_err(|e| format!("submit: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut pids = Vec::new();
        for f in &futures {
            pids.push(
                *f.result_timeout(limit(cfg))
                    .map_err(|e| format!("warm-up: {e}"))?,
            );
        }
        workers.extend(pids);
        workers.sort_unstable();
        workers.dedup();
        if workers.len() >= cfg.workers {
            break;
        }
    }
    if workers.len() < cfg.workers {
        return Err(format!(
            "only {} of {} workers answered the warm-up",
            workers.len(),
            cfg.workers
        ));
    }
    for _ in 0..50 {
        call(pool, identity, 7, cfg)?;
    }
    let n = cfg.warmup as u64;
    let futures = (0..n)
        .map(|i| pool.submit(identity, i).map_err(|e| format!("submit: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = 0;
    for f in &futures {
        total += f
            .result_timeout(limit(cfg))
            .map_err(|e| format!("warm-up: {e}"))?;
    }
    assert_eq!(total, triangle(n));
    Ok(workers)
}

/// The CPU time process `pid` has used so far, every thread, in ns.
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is valid and writable.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid and writable; `clock` came from the kernel.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// C1e: `nats_pings` bare request/replies to one of `pool`'s agents' ping
/// subjects, found from the probes the pool's client sends them (so it
/// must have workers now); ns each.
fn nats_pings(url: &str, pool: &str, cfg: &ClusterConfig) -> Result<Vec<f64>, String> {
    use futures_util::StreamExt;

    let limit = limit(cfg);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("a tokio runtime: {e}"))?;
    runtime.block_on(async {
        let client = tokio::time::timeout(limit, async_nats::connect(url))
            .await
            .map_err(|_| format!("no connection to {url} within {limit:?}"))?
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let mut probes = client
            .subscribe(format!("cf.{pool}.a.*.ping"))
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        let probe = tokio::time::timeout(Duration::from_secs(5), probes.next())
            .await
            .ok()
            .flatten()
            .ok_or("no probe of an agent seen within 5 s")?;
        drop(probes);
        let subject = probe.subject.to_string();
        let mut samples = Vec::with_capacity(cfg.nats_pings);
        for i in 0..50 + cfg.nats_pings {
            let start = Instant::now();
            tokio::time::timeout(limit, client.request(subject.clone(), "".into()))
                .await
                .map_err(|_| format!("no answer on {subject} within {limit:?}"))?
                .map_err(|e| format!("request on {subject}: {e}"))?;
            if i >= 50 {
                samples.push(nanos(start.elapsed()));
            }
        }
        Ok(samples)
    })
}

/// Sum of `0..n`.
fn triangle(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

// -------------------------------------------------------- agent death --

/// A Unix socket that [`report_and_hold`] tasks connect to.
struct Holder {
    listener: UnixListener,
    path: PathBuf,
    held: Vec<UnixStream>,
}

impl Holder {
    fn new(run: usize) -> Result<Holder, String> {
        let path = std::env::temp_dir().join(format!(
            "cf-bench-cluster-{}-{run}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(|e| format!("cannot bind {path:?}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("non-blocking accept: {e}"))?;
        Ok(Holder {
            listener,
            path,
            held: Vec::new(),
        })
    }

    /// The pid the next task to arrive reports, within `limit`.
    fn arrival(&mut self, limit: Duration) -> Result<u32, String> {
        let deadline = Instant::now() + limit;
        let mut stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("no task arrived within {limit:?}: {e}")),
            }
        };
        stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(limit)))
            .map_err(|e| format!("the task's stream: {e}"))?;
        let mut pid = [0u8; 4];
        stream
            .read_exact(&mut pid)
            .map_err(|e| format!("the task did not send its pid: {e}"))?;
        self.held.push(stream);
        Ok(u32::from_le_bytes(pid))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` is alive (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// C3: ns from `SIGKILL` to the agent running a call to that call failing
/// with `WorkerDied` (`ExitCause::Lost`). A fresh agent on a pool name of
/// its own, so the measuring agents are not involved.
fn agent_death(
    url: &str,
    run: usize,
    cfg: &ClusterConfig,
    notes: &mut Vec<String>,
) -> Result<f64, String> {
    let name = format!("bench-death-{}-{run}", std::process::id());
    let mut victim = agent(url, &name, 1)?;
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .self_healing(true)
        .cluster(Cluster::new(url, &name).placement_timeout(Duration::from_secs(2)))
        .build()
        .map_err(|e| format!("a cluster pool: {e}"))?;
    let mut holder = Holder::new(run)?;
    let running = pool
        .submit(report_and_hold, holder.path.to_string_lossy().into_owned())
        .map_err(|e| format!("submit: {e}"))?;
    let worker_pid = holder.arrival(limit(cfg))?;
    let spread = Duration::from_millis(cfg.death_spread_ms) * (run - 1) as u32 / cfg.deaths as u32;
    thread::sleep(Duration::from_millis(cfg.death_delay_ms) + spread);
    let killed_at = Instant::now();
    victim.kill_leader()?;
    let outcome = running.result_timeout(limit(cfg));
    let failed_at = Instant::now();
    let elapsed = nanos(failed_at.saturating_duration_since(killed_at));
    let lost = match outcome {
        Err(Error::WorkerDied(d)) if d.cause() == ExitCause::Lost => Ok(()),
        Err(Error::WorkerDied(d)) => {
            Err(format!("WorkerDied with cause {:?}, not Lost", d.cause()))
        }
        Err(e) => Err(format!("expected WorkerDied(Lost), got the error {e}")),
        Ok(v) => Err(format!("expected WorkerDied(Lost), got the value {v}")),
    };
    // SPEC P10: the agent's worker dies with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(worker_pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if alive(worker_pid) {
        notes.push(format!(
            "C3 run {run}: the killed agent's worker (pid {worker_pid}) was still running 5 s later"
        ));
    }
    drop(holder);
    let shutdown = Instant::now();
    drop(pool);
    let shutdown = shutdown.elapsed();
    if shutdown > Duration::from_secs(1) {
        eprintln!("note: dropping the pool after the agent's death took {shutdown:.2?}");
    }
    victim.stop();
    lost.map(|()| elapsed)
}

// ----------------------------------------------------- the Python peers --

/// What one run of the script reported.
struct PythonRun {
    python: String,
    version: String,
    results: serde_json::Map<String, Value>,
}

/// One round of `peer` in a fresh interpreter, at most three times the
/// config's limit for collecting a batch.
fn run_python(
    interpreter: &PathBuf,
    peer: ClusterPeer,
    cfg: &ClusterConfig,
) -> Result<PythonRun, String> {
    let arg = peer.script_arg().expect("a Python peer");
    let output = run_bounded(
        Command::new(interpreter).args([SCRIPT, arg, &cfg.to_json()]),
        &format!("cluster_peers.py {arg}"),
        Duration::from_secs(3 * cfg.bulk_timeout_s),
    )?;
    if !output.status.success() {
        return Err(format!(
            "cluster_peers.py {arg} failed ({}): {}",
            output.status,
            tail(&output.stderr, 1_500)
        ));
    }
    // The last line: whatever the libraries print before it is not ours.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("cluster_peers.py {arg} printed no JSON: {stdout}"))?;
    let mut object = parse_object(line.as_bytes())?;
    let text = |object: &mut serde_json::Map<String, Value>, key: &str| {
        object
            .remove(key)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    };
    let python = text(&mut object, "python");
    let version = text(&mut object, "version");
    match object.remove("results") {
        Some(Value::Object(results)) => Ok(PythonRun {
            python,
            version,
            results,
        }),
        _ => Err(format!("cluster_peers.py {arg}: no \"results\" object")),
    }
}
