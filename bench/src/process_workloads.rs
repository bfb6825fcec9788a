//! The process-pool workloads P1-P7, written once against [`ProcPool`] so
//! ours and procspawn run the same code, plus the ones only our pool
//! offers (`map` with `chunksize`, a broken pool).
//!
//! Each round runs in a fresh child process of the harness (`--proc-child
//! PEER CONFIG`, see [`child_main`]): a pool's start-up depends on the
//! size of the process that forks its workers, and the harness's own
//! process has grown by then. The child prints one JSON object of raw
//! samples, [`Sample`] key -> list of numbers; the parent pools them over
//! rounds (`process_metrics.rs`). The CPython script's `proc` mode prints
//! the same keys; keep the two in step.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{ALL_COMPLETED, Error, MapOptions, ProcessPoolExecutor, wait};
use serde_json::{Map, Value as Json};

use crate::child::parse_object;
use crate::config::{Config, ProcessConfig};
use crate::process_metrics::Sample;
use crate::process_peers::{ProcPeer, ProcPool, with_proc_pool};
use crate::stats::nanos;

// ------------------------------------------------------------ the tasks --

/// P1, P3, P4: the trivial task.
pub fn identity(x: u64) -> u64 {
    x
}

/// P2: the mapped function.
pub fn double(x: u64) -> u64 {
    x * 2
}

/// Warm-up: which process runs a call that lasts `ms` milliseconds.
fn pid_after(ms: u64) -> u32 {
    thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// P7: a value that goes there and back.
fn echo(s: String) -> String {
    s
}

/// P6: tells the harness, over the Unix socket at `path`, which process
/// runs it, then holds its worker until the harness hangs up (or the
/// process is killed).
fn report_and_hold(path: String) -> u32 {
    let Ok(mut stream) = UnixStream::connect(&path) else {
        return 0;
    };
    let _ = stream.write_all(&std::process::id().to_le_bytes());
    let _ = stream.read(&mut [0u8; 1]);
    0
}

/// P5: the seeds' six numbers (`examples/primes.rs`).
pub const PRIMES: [u64; 6] = [
    112_272_535_095_293,
    112_582_705_942_171,
    112_272_535_095_293,
    115_280_095_190_773,
    115_797_848_077_099,
    1_099_726_899_285_419,
];

/// P5: the seeds' `is_prime`, as in `examples/primes.rs`.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n == 2 {
        return true;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let sqrt_n = (n as f64).sqrt() as u64;
    (3..=sqrt_n).step_by(2).all(|i| !n.is_multiple_of(i))
}

// ------------------------------------------------------- the child side --

/// Raw samples of one child run.
#[derive(Default)]
struct Samples(BTreeMap<Sample, Vec<f64>>);

impl Samples {
    fn push(&mut self, sample: Sample, value: f64) {
        self.0.entry(sample).or_default().push(value);
    }

    fn extend(&mut self, sample: Sample, values: impl IntoIterator<Item = f64>) {
        self.0.entry(sample).or_default().extend(values);
    }

    fn into_json(self) -> Json {
        Json::Object(
            self.0
                .into_iter()
                .map(|(sample, values)| (sample.key().to_owned(), values.into()))
                .collect(),
        )
    }
}

/// `--proc-child PEER CONFIG`: one round of every process workload for a
/// Rust peer, in this fresh process; prints the samples as JSON.
pub fn child_main(args: &[String]) -> ExitCode {
    let [peer, json] = args else {
        eprintln!("usage: --proc-child PEER CONFIG-JSON");
        return ExitCode::FAILURE;
    };
    let peer = match ProcPeer::from_arg(peer) {
        Some(peer) if ProcPeer::RUST.contains(&peer) => peer,
        _ => {
            eprintln!("unknown process peer {peer:?}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = match Config::from_json(json) {
        Ok(cfg) => cfg.process,
        Err(e) => {
            eprintln!("bad config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut samples = Samples::default();
    with_proc_pool!(peer, P => measure_round::<P>(&cfg, &mut samples));
    if peer == ProcPeer::Ours {
        measure_ours_only(&cfg, &mut samples);
    }
    println!("{}", samples.into_json());
    ExitCode::SUCCESS
}

/// Runs one round for `peer` in a fresh copy of this program; its raw
/// samples, key -> list.
pub fn spawn_round(peer: ProcPeer, cfg: &Config) -> Result<Map<String, Json>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let output = Command::new(exe)
        .args(["--proc-child", peer.arg(), &cfg.to_json()])
        .output()
        .map_err(|e| format!("cannot start a child: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "process child {peer} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_object(&output.stdout)
}

// ---------------------------------------------------- generic workloads --

/// One round of the workloads both Rust pools run.
fn measure_round<P: ProcPool>(cfg: &ProcessConfig, samples: &mut Samples) {
    // First, while this process is small and has no pool: start-up.
    for _ in 0..cfg.per_round(cfg.startups) {
        samples.push(Sample::Startup, startup::<P>(cfg.workers));
    }

    let pool = P::with_workers(cfg.workers);
    warm_up(&pool, cfg.workers);
    samples.push(Sample::Task, submit_collect(&pool, cfg));
    // P3 on this pool and on fresh ones: each placement on the cores gets
    // its share of the samples.
    let pools = cfg.round_trip_pools.max(1);
    let per_pool = cfg.per_round(cfg.round_trips).div_ceil(pools);
    samples.extend(Sample::RoundTrip, round_trips(&pool, per_pool));
    for _ in 1..pools {
        let fresh = P::with_workers(cfg.workers);
        warm_up(&fresh, cfg.workers);
        samples.extend(Sample::RoundTrip, round_trips(&fresh, per_pool));
    }
    // Each run times the sequential check and then the pool's, back to
    // back, so the speed-up compares like with like under slowly changing
    // outside load. The bound uses each number's fastest sequential time,
    // the least disturbed by that load.
    let mut fastest = [f64::INFINITY; PRIMES.len()];
    for _ in 0..cfg.primes_runs {
        let (sequential, per_number) = primes_sequential();
        let pool_time = primes_pool(&pool);
        samples.push(Sample::PrimesSequential, sequential);
        samples.push(Sample::PrimesPool, pool_time);
        samples.push(Sample::PrimesSpeedup, sequential / pool_time);
        for (best, t) in fastest.iter_mut().zip(per_number) {
            *best = best.min(t);
        }
    }
    if cfg.primes_runs > 0 {
        samples.push(Sample::PrimesBound, two_worker_bound(&fastest));
    }
    samples.push(Sample::Big, big_round_trip(&pool, cfg.big_bytes));
    drop(pool);

    for _ in 0..cfg.per_round(cfg.deaths) {
        samples.push(Sample::DeathHealed, death_healed::<P>(cfg.workers));
    }
}

/// Makes sure every worker process runs (ours starts them as work
/// arrives; procspawn in `Pool::new`), then runs a batch to warm the
/// pipes, the allocator and the caches.
fn warm_up<P: ProcPool>(pool: &P, workers: usize) {
    for _ in 0..5 {
        let handles: Vec<_> = (0..workers).map(|_| pool.spawn(pid_after, 20)).collect();
        let mut pids: Vec<u32> = handles.into_iter().map(|h| pool.join(h)).collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.len() == workers {
            break;
        }
    }
    let batch: Vec<_> = (0..1_000).map(|i| pool.spawn(identity, i)).collect();
    let total: u64 = batch.into_iter().map(|h| pool.join(h)).sum();
    assert_eq!(total, triangle(1_000));
}

/// Sum of `0..n`.
fn triangle(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// P1: submit `submit_n` trivial tasks, one call each, then collect every
/// result in order; ns per task. procspawn goes in batches (see
/// [`ProcessConfig::procspawn_batch`]).
fn submit_collect<P: ProcPool>(pool: &P, cfg: &ProcessConfig) -> f64 {
    let n = cfg.submit_n as u64;
    let batch = P::max_outstanding(cfg).min(cfg.submit_n) as u64;
    let start = Instant::now();
    let mut total = 0u64;
    let mut next = 0;
    while next < n {
        let end = (next + batch).min(n);
        let handles: Vec<_> = (next..end).map(|i| pool.spawn(identity, i)).collect();
        total += handles.into_iter().map(|h| pool.join(h)).sum::<u64>();
        next = end;
    }
    let elapsed = start.elapsed();
    assert_eq!(total, triangle(n));
    nanos(elapsed) / n as f64
}

/// P3: back-to-back submit -> result round trips; ns each.
fn round_trips<P: ProcPool>(pool: &P, samples: usize) -> Vec<f64> {
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            let value = pool.join(pool.spawn(identity, 7));
            let elapsed = start.elapsed();
            assert_eq!(value, 7);
            nanos(elapsed)
        })
        .collect()
}

/// P4: from creating a pool of `workers` processes to the first result;
/// ns. Shutting the pool down is not counted.
fn startup<P: ProcPool>(workers: usize) -> f64 {
    let start = Instant::now();
    let pool = P::with_workers(workers);
    let value = pool.join(pool.spawn(identity, 1));
    let elapsed = start.elapsed();
    assert_eq!(value, 1);
    drop(pool);
    nanos(elapsed)
}

/// P5: the six numbers checked one after the other in this process; ns
/// in all, and ns per number.
fn primes_sequential() -> (f64, Vec<f64>) {
    let mut per_number = Vec::with_capacity(PRIMES.len());
    let start = Instant::now();
    for n in PRIMES {
        let t = Instant::now();
        black_box(is_prime(black_box(n)));
        per_number.push(nanos(t.elapsed()));
    }
    (nanos(start.elapsed()), per_number)
}

/// P5: the six numbers in the pool (one call each, all submitted at once,
/// results in order: what `map` with chunksize 1 does); ns.
fn primes_pool<P: ProcPool>(pool: &P) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = PRIMES.iter().map(|&n| pool.spawn(is_prime, n)).collect();
    let primes: Vec<bool> = handles.into_iter().map(|h| pool.join(h)).collect();
    let elapsed = start.elapsed();
    assert_eq!(primes, [true, true, true, true, true, false]);
    nanos(elapsed)
}

/// P5: the best speed-up any 2-worker schedule can reach over the
/// sequential run, given each number's sequential time: the total over
/// the makespan of the best split of the numbers into two sets.
pub fn two_worker_bound(times: &[f64]) -> f64 {
    let total: f64 = times.iter().sum();
    let best = (0u32..1 << times.len())
        .map(|set| {
            let one: f64 = times
                .iter()
                .enumerate()
                .filter(|(i, _)| set & (1 << i) != 0)
                .map(|(_, t)| t)
                .sum();
            one.max(total - one)
        })
        .fold(f64::INFINITY, f64::min);
    total / best
}

/// P7: one call whose argument and result are `bytes` long; ns for the
/// round trip (making the argument is not counted).
fn big_round_trip<P: ProcPool>(pool: &P, bytes: usize) -> f64 {
    let text = letters(bytes);
    let sent = text.clone();
    let start = Instant::now();
    let back = pool.join(pool.spawn(echo, sent));
    let elapsed = start.elapsed();
    assert!(back == text, "the value came back changed");
    nanos(elapsed)
}

/// `len` ASCII letters.
fn letters(len: usize) -> String {
    (b'a'..=b'z').cycle().take(len).map(char::from).collect()
}

// --------------------------------------------------------- worker death --

/// A Unix socket that [`report_and_hold`] tasks connect to: each sends
/// its worker's pid and is held until this is dropped.
struct Holder {
    listener: UnixListener,
    path: PathBuf,
    held: Vec<UnixStream>,
}

impl Holder {
    fn new() -> Holder {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "cf-bench-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind a Unix socket");
        listener.set_nonblocking(true).expect("non-blocking accept");
        Holder {
            listener,
            path,
            held: Vec::new(),
        }
    }

    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// The pid the next task to arrive reports.
    fn arrival(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("no task arrived: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        let mut pid = [0u8; 4];
        stream.read_exact(&mut pid).expect("the task sends its pid");
        self.held.push(stream);
        u32::from_le_bytes(pid)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `SIGKILL` to `pid` after `delay`, on another thread; when it was sent.
fn kill_later(pid: u32, delay: Duration) -> thread::JoinHandle<Instant> {
    thread::spawn(move || {
        thread::sleep(delay);
        let at = Instant::now();
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a
        // worker of a pool of this process, not yet reaped (its task
        // holds it), so it cannot have been recycled.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill({pid}) failed");
        at
    })
}

/// P6b: with a worker running a call on each worker, `SIGKILL` one: ns
/// from the kill to its call failing, while the pool lives on (ours with
/// `self_healing(true)`; procspawn always restarts a dead worker).
fn death_healed<P: ProcPool>(workers: usize) -> f64 {
    let pool = P::self_healing(workers);
    let mut holder = Holder::new();
    let victim = pool.spawn(report_and_hold, holder.path());
    let victim_pid = holder.arrival();
    let bystanders: Vec<_> = (1..workers)
        .map(|_| {
            let handle = pool.spawn(report_and_hold, holder.path());
            holder.arrival();
            handle
        })
        .collect();
    let killer = kill_later(victim_pid, Duration::from_millis(20));
    let failure = pool.join_failure(victim);
    let failed_at = Instant::now();
    let killed_at = killer.join().expect("the killer does not panic");
    if let Err(e) = failure {
        panic!("the killed call did not fail with a worker death: {e}");
    }
    // Hang up: the bystanders finish normally.
    drop(holder);
    for handle in bystanders {
        assert_eq!(pool.join(handle), 0);
    }
    nanos(failed_at.saturating_duration_since(killed_at))
}

/// The workloads only our pool has a form of here: `map` with a
/// `chunksize` (P2) and a death that breaks the pool (P6a; procspawn
/// restarts the worker instead).
fn measure_ours_only(cfg: &ProcessConfig, samples: &mut Samples) {
    let pool = ProcessPoolExecutor::new(cfg.workers).expect("a pool");
    warm_up(&pool, cfg.workers);
    samples.push(Sample::Map, map_chunked(&pool, cfg));
    drop(pool);
    for _ in 0..cfg.per_round(cfg.deaths) {
        samples.push(Sample::DeathBroken, death_breaks(cfg));
    }
}

/// P2: `map_with(double, 0..n, chunksize)`, every result taken in order;
/// ns per item.
fn map_chunked(pool: &ProcessPoolExecutor, cfg: &ProcessConfig) -> f64 {
    let n = cfg.map_n as u64;
    let options = MapOptions::new().chunksize(cfg.map_chunksize);
    let start = Instant::now();
    let total = pool
        .map_with(double, 0..n, options)
        .map(|r| r.expect("double cannot fail"))
        .fold(0u64, u64::wrapping_add);
    let elapsed = start.elapsed();
    assert_eq!(total, 2 * triangle(n));
    nanos(elapsed) / n as f64
}

/// P6a: `death_waiters` futures wait in `wait(ALL_COMPLETED)`, one
/// running on each worker and the rest queued; a worker is killed. ns
/// from the kill to `wait` returning with every future failed `Broken`.
fn death_breaks(cfg: &ProcessConfig) -> f64 {
    let pool = ProcessPoolExecutor::new(cfg.workers).expect("a pool");
    let mut holder = Holder::new();
    let futures: Vec<_> = (0..cfg.death_waiters.max(cfg.workers))
        .map(|_| {
            pool.submit(report_and_hold, holder.path())
                .expect("the pool takes work")
        })
        .collect();
    let pids: Vec<u32> = (0..cfg.workers).map(|_| holder.arrival()).collect();
    let killer = kill_later(pids[0], Duration::from_millis(cfg.death_delay_ms));
    let outcome = wait(&futures, ALL_COMPLETED);
    let returned_at = Instant::now();
    let killed_at = killer.join().expect("the killer does not panic");
    assert!(outcome.not_done.is_empty());
    for f in &futures {
        match f.result() {
            Err(Error::Broken(_)) => {}
            other => panic!("expected a broken pool, got {other:?}"),
        }
    }
    drop(holder);
    drop(pool);
    nanos(returned_at.saturating_duration_since(killed_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_answers() {
        let answers = PRIMES.map(is_prime);
        assert_eq!(answers, [true, true, true, true, true, false]);
    }

    #[test]
    fn bound_of_a_two_worker_split() {
        assert_eq!(two_worker_bound(&[1.0, 1.0]), 2.0);
        // Five equal tasks: three on one worker, at best.
        let bound = two_worker_bound(&[1.0; 5]);
        assert!((bound - 5.0 / 3.0).abs() < 1e-12);
        assert_eq!(two_worker_bound(&[3.0, 1.0, 1.0, 1.0]), 2.0);
    }
}
