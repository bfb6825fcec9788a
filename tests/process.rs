//! `ProcessPoolExecutor` (SPEC P1-P10, B1-B3, E1-E5, F2, F10, X1).
//!
//! Workers are this test binary again, entered before `main`, so every
//! task below is a plain `fn` of this file.
//!
//! Tasks that must stay running while the test acts on them wait at a
//! gate (see `common/process.rs`), so every wait in this file is a bounded
//! poll or a bounded blocking call. A failing test kills and leaks its
//! pool instead of dropping it ([`Pool`]).
//!
//! Some tests run this binary again as a child process with [`ROLE`] set:
//! the `role_*` tests do nothing unless they are that child.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{
    BrokenKind, BuildError, Error, ExitCause, Future, MapOptions, ProcessPoolBuilder,
    ProcessPoolExecutor, Shutdown, StartMethod, State,
};
use crossbeam_channel::bounded;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod common;
use common::process::*;

/// The library's worker marker.
const WORKER_ENV: &str = "CONCURRENT_FUTURES_WORKER";

// ------------------------------------------------------------ helpers ----

fn pool(builder: ProcessPoolBuilder) -> Pool {
    Pool(Some(builder.build().expect("build the pool")))
}

fn workers(n: usize) -> ProcessPoolBuilder {
    ProcessPoolExecutor::builder().max_workers(n)
}

fn parent_pid(_: ()) -> u32 {
    std::os::unix::process::parent_id()
}

fn own_executable(_: ()) -> PathBuf {
    std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe")
}

fn square(x: u64) -> u64 {
    x * x
}

fn square_and_pid(x: u64) -> (u64, u32) {
    (x * x, std::process::id())
}

fn square_unless_13(x: u64) -> (u64, u32) {
    assert!(x != 13, "item 13 is unlucky");
    (x * x, std::process::id())
}

fn explode(x: u32) -> u32 {
    panic!("exploded on {x}")
}

/// What `set_mark` left in this process.
static MARK: OnceLock<String> = OnceLock::new();

fn set_mark(mark: String) {
    MARK.set(mark)
        .expect("the initializer runs once per worker");
}

fn mark_and_pid(_: ()) -> (Option<String>, u32) {
    (MARK.get().cloned(), std::process::id())
}

fn failing_init(message: String) {
    panic!("{message}")
}

fn init_at_gate(path: String) {
    gated(path);
}

fn reversed(s: String) -> String {
    let mut bytes = s.into_bytes();
    bytes.reverse();
    String::from_utf8(bytes).expect("ASCII stays UTF-8")
}

fn big_string(len: usize) -> String {
    letters(len)
}

fn length(s: String) -> usize {
    s.len()
}

/// `len` ASCII letters in a pattern that shows reordering.
fn letters(len: usize) -> String {
    let mut s = "abcdefghijklmnopqrstuvwxyz".repeat(len / 26 + 1);
    s.truncate(len);
    s
}

/// Serializing it always fails.
#[derive(Debug, Deserialize)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("Unserializable refuses"))
    }
}

/// Deserializing it always fails.
#[derive(Debug, Serialize)]
struct Undeserializable;

impl<'de> Deserialize<'de> for Undeserializable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("Undeserializable refuses"))
    }
}

fn takes_unserializable(_: Unserializable) -> u32 {
    1
}

fn takes_undeserializable(_: Undeserializable) -> u32 {
    2
}

fn returns_unserializable(_: ()) -> Unserializable {
    Unserializable
}

fn returns_undeserializable(_: ()) -> Undeserializable {
    Undeserializable
}

fn init_unserializable(_: Unserializable) {}

// ----------------------------------------------------------------- P1 ----

#[test]
fn max_workers_defaults_to_the_number_of_cpus() {
    // SPEC P1
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(
        ProcessPoolExecutor::builder()
            .build()
            .unwrap()
            .max_workers(),
        cpus
    );
    assert_eq!(ProcessPoolExecutor::default().max_workers(), cpus);
    assert_eq!(ProcessPoolExecutor::new(3).unwrap().max_workers(), 3);
}

#[test]
fn zero_max_workers_is_rejected_with_a_clear_error() {
    // SPEC P1, X1
    assert!(matches!(
        ProcessPoolExecutor::new(0),
        Err(BuildError::ZeroWorkers)
    ));
    let e = workers(0).build().unwrap_err();
    assert_eq!(e, BuildError::ZeroWorkers);
    assert!(e.to_string().contains("max_workers"), "{e}");
    let e = workers(1).max_tasks_per_child(0).build().unwrap_err();
    assert_eq!(e, BuildError::ZeroTasksPerChild);
    assert!(e.to_string().contains("max_tasks_per_child"), "{e}");
}

#[test]
fn tasks_run_at_once_in_separate_child_processes() {
    // SPEC P1
    let me = std::process::id();
    let pool = pool(workers(2));
    let gate = Gate::new();
    let fa = pool.submit(gated, gate.path()).unwrap();
    let a = gate.arrival();
    let fb = pool.submit(gated, gate.path()).unwrap();
    // Both tasks are at the gate together: two processes run at once.
    let b = gate.arrival();
    assert_ne!(a.pid(), b.pid());
    for w in [a.worker, b.worker] {
        assert_ne!(w.pid, me);
        assert!(w.unreaped(), "{w:?} is a child of this process");
    }
    let pids: HashSet<u32> = [a.pid(), b.pid()].into();
    a.release();
    b.release();
    let got: HashSet<u32> = [*settle(&fa).unwrap(), *settle(&fb).unwrap()].into();
    assert_eq!(got, pids);
    assert_eq!(*settle(&pool.submit(parent_pid, ()).unwrap()).unwrap(), me);
}

#[test]
fn tasks_submitted_together_to_a_fresh_pool_run_at_once() {
    // SPEC P1
    let pool = pool(workers(2));
    let gate = Gate::new();
    let fs: Vec<_> = (0..2)
        .map(|_| pool.submit(gated, gate.path()).unwrap())
        .collect();
    let first = gate.arrival();
    // The second task must reach the gate while the first is held there:
    // the pool has a second worker for it.
    let second = gate.arrival();
    assert_ne!(first.pid(), second.pid());
    // They arrive in either order.
    let pids: HashSet<u32> = [first.pid(), second.pid()].into();
    first.release();
    second.release();
    let got: HashSet<u32> = fs.iter().map(|f| *settle(f).unwrap()).collect();
    assert_eq!(got, pids);
}

// ----------------------------------------------------------------- P2 ----

#[test]
fn values_that_cannot_cross_fail_only_their_future() {
    // SPEC P2
    let pool = pool(workers(1));
    let worker = *settle(&pool.submit(whoami, ()).unwrap()).unwrap();

    // An argument that cannot be serialized: failed at once, in the parent.
    let f = pool.submit(takes_unserializable, Unserializable).unwrap();
    assert!(f.done(), "a bad argument fails its future at once");
    let message = match settle(&f) {
        Err(Error::Failed(e)) => e.to_string(),
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        message.contains("could not serialize the argument") && message.contains("Unserializable"),
        "{message}"
    );

    // An argument the worker cannot deserialize.
    let f = pool
        .submit(takes_undeserializable, Undeserializable)
        .unwrap();
    match settle(&f) {
        Err(Error::Failed(e)) => {
            let message = e.to_string();
            assert!(
                message.contains("could not deserialize the argument")
                    && message.contains("Undeserializable"),
                "{message}"
            );
            assert_eq!(e.remote_pid(), Some(worker));
        }
        other => panic!("unexpected {other:?}"),
    }

    // A result the worker cannot serialize.
    let f = pool.submit(returns_unserializable, ()).unwrap();
    match settle(&f) {
        Err(Error::Failed(e)) => {
            let message = e.to_string();
            assert!(
                message.contains("could not serialize the result")
                    && message.contains("Unserializable"),
                "{message}"
            );
            assert_eq!(e.remote_pid(), Some(worker));
        }
        other => panic!("unexpected {other:?}"),
    }

    // A result the parent cannot deserialize.
    let f = pool.submit(returns_undeserializable, ()).unwrap();
    match settle(&f) {
        Err(Error::Failed(e)) => {
            let message = e.to_string();
            assert!(
                message.contains("could not deserialize the result")
                    && message.contains("Undeserializable"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // The pool keeps working, with the same worker: none of it was fatal.
    assert_eq!(*settle(&pool.submit(square, 7).unwrap()).unwrap(), 49);
    assert_eq!(*settle(&pool.submit(whoami, ()).unwrap()).unwrap(), worker);
}

#[test]
fn a_map_chunk_whose_results_cannot_cross_fails_item_by_item() {
    // SPEC P2, P8
    let pool = pool(workers(2));
    let options = MapOptions::new().chunksize(3).timeout(LIMIT);
    let results: Vec<_> = pool
        .map_with(returns_undeserializable, vec![(); 5], options)
        .collect();
    assert_eq!(results.len(), 5);
    for r in &results {
        match r {
            Err(Error::Failed(e)) => {
                assert!(e.to_string().contains("could not deserialize"), "{e}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let squares: Vec<u64> = pool
        .map_with(square, 0..10, options)
        .map(Result::unwrap)
        .collect();
    assert_eq!(squares, (0..10).map(|x| x * x).collect::<Vec<_>>());
}

// ----------------------------------------------------------------- P3 ----

#[test]
fn a_pool_in_a_worker_whose_entry_did_not_run_is_refused() {
    // SPEC P3
    let mut child = spawn_role("role_marked_process_builds_a_pool", "p3");
    let lines = stdout_lines(&mut child);
    drop(child.stdin.take());
    let verdict = after_marker(&lines, "P3-ROLE:");
    let status = wait_child(&mut child);
    assert_eq!(verdict, "refused");
    assert!(status.success(), "the child run failed: {status}");
}

/// The child of the P3 tests: a process marked as a worker, whose entry
/// did not run (the marker is set after `main` started), builds pools.
#[test]
fn role_marked_process_builds_a_pool() {
    // SPEC P3 (the child's side)
    if !role_is("p3") {
        return;
    }
    // SAFETY: this process runs this one test alone (`--exact`, one test
    // thread) and has started no pool: no other thread touches the
    // environment.
    unsafe { std::env::set_var(WORKER_ENV, "3,4") };
    assert_eq!(
        ProcessPoolExecutor::new(1).unwrap_err(),
        BuildError::WorkerEntryNotRun
    );
    let e = ProcessPoolExecutor::builder().build().unwrap_err();
    assert_eq!(e, BuildError::WorkerEntryNotRun);
    assert!(e.to_string().contains("run_worker_if_child"), "{e}");
    let mut out = std::io::stdout().lock();
    writeln!(out, "P3-ROLE: refused").unwrap();
    out.flush().unwrap();
}

#[test]
fn default_in_a_worker_whose_entry_did_not_run_is_refused_too() {
    // SPEC P3
    let mut child = spawn_role("role_marked_process_uses_default", "p3-default");
    let lines = stdout_lines(&mut child);
    drop(child.stdin.take());
    let verdict = after_marker(&lines, "P3-ROLE:");
    let status = wait_child(&mut child);
    assert!(status.success(), "the child run failed: {status}");
    assert_eq!(
        verdict, "refused",
        "Default::default() built a working pool in a process marked as a worker"
    );
}

/// The child of the test above: `Default` in a marked process must not
/// give a working pool (it cannot return the error: it may panic, or give
/// a pool that refuses or fails all work).
#[test]
fn role_marked_process_uses_default() {
    // SPEC P3 (the child's side)
    if !role_is("p3-default") {
        return;
    }
    // SAFETY: as in `role_marked_process_builds_a_pool`.
    unsafe { std::env::set_var(WORKER_ENV, "3,4") };
    let outcome = std::panic::catch_unwind(|| {
        let pool = ProcessPoolExecutor::default();
        let f = pool.submit(whoami, ());
        f.is_ok_and(|f| f.result_timeout(LIMIT).is_ok())
    });
    let verdict = match outcome {
        Ok(true) => "a working pool",
        _ => "refused",
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "P3-ROLE: {verdict}").unwrap();
    out.flush().unwrap();
}

#[test]
fn a_malformed_worker_marker_exits_at_once_with_a_clear_message() {
    // SPEC P3
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "no_such_test"])
        .env(WORKER_ENV, "garbage")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child);
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{status}");
    assert!(
        stderr.contains(&format!("malformed {WORKER_ENV}")),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "main must not run: {stdout}");
}

// ----------------------------------------------------------------- P4 ----

#[test]
fn exec_of_this_executable_is_the_default_start_method() {
    // SPEC P4
    assert_eq!(StartMethod::default(), StartMethod::Exec);
    let here = std::fs::read_link("/proc/self/exe").unwrap();
    for builder in [workers(1), workers(1).start_method(StartMethod::Exec)] {
        let pool = pool(builder);
        let f = pool.submit(own_executable, ()).unwrap();
        assert_eq!(*settle(&f).unwrap(), here);
        let pid = *settle(&pool.submit(whoami, ()).unwrap()).unwrap();
        assert_ne!(pid, std::process::id());
    }
}

// ----------------------------------------------------------------- P5 ----

#[test]
fn the_initializer_runs_in_every_worker_before_its_tasks() {
    // SPEC P5
    let pool = pool(
        workers(2)
            .initializer(set_mark, "ready".to_owned())
            .max_tasks_per_child(1),
    );
    let fs: Vec<_> = (0..6)
        .map(|_| pool.submit(mark_and_pid, ()).unwrap())
        .collect();
    let mut pids = HashSet::new();
    for f in &fs {
        let (mark, pid) = settle(f).unwrap();
        assert_eq!(mark.as_deref(), Some("ready"));
        pids.insert(*pid);
    }
    // One worker per task, each initialized.
    assert_eq!(pids.len(), 6);
    // It ran in the workers only.
    assert_eq!(MARK.get(), None);
}

#[test]
fn a_failing_initializer_breaks_the_pool() {
    // SPEC P5, X1
    let pool = pool(workers(2).initializer(failing_init, "database unreachable".to_owned()));
    let fs: Vec<_> = (0..4).map(|x| pool.submit(square, x)).collect();
    let mut failed = 0;
    for f in fs {
        let error = match f {
            Ok(f) => settle(&f).unwrap_err().clone(),
            // Broken already: refused.
            Err(refused) => refused.reason().clone(),
        };
        match error {
            Error::Broken(b) => {
                assert_eq!(b.kind(), BrokenKind::ProcessPool);
                assert!(b.reason().contains("database unreachable"), "{b}");
                assert!(b.to_string().starts_with("BrokenProcessPool"), "{b}");
                failed += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(failed, 4);
    let refused = pool.submit(square, 9).unwrap_err();
    assert!(
        matches!(refused.reason(), Error::Broken(b) if b.kind() == BrokenKind::ProcessPool),
        "{refused:?}"
    );
    assert_eq!(refused.into_task(), 9);
}

#[test]
fn an_initializer_argument_that_cannot_be_serialized_is_a_build_error() {
    // SPEC P5, P2
    let e = workers(1)
        .initializer(init_unserializable, Unserializable)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::InitializerArgument(_)), "{e:?}");
    assert!(e.to_string().contains("initializer"), "{e}");
}

// ----------------------------------------------------------------- P6 ----

/// SPEC P6: with two tasks running (a bystander and a victim) and three
/// queued, `kill` makes the victim's worker die. Every future fails with
/// BrokenProcessPool at once (the bystander is still held at its gate, so
/// its future can only end because the pool broke), later submits fail,
/// both workers are reaped, and dropping the pool does not hang.
fn a_worker_death_breaks_the_pool(kill: impl FnOnce(&Arrival), signal: i32) {
    let pool = pool(workers(2));
    let gate = Gate::new();
    let bystander_f = pool.submit(gated, gate.path()).unwrap();
    let bystander = gate.arrival();
    let victim_f = pool.submit(gated, gate.path()).unwrap();
    let victim = gate.arrival();
    let queued: Vec<_> = (0..3)
        .map(|_| pool.submit(gated, gate.path()).unwrap())
        .collect();
    kill(&victim);
    let death = format!("signal {signal}");
    for f in [&victim_f, &bystander_f].into_iter().chain(&queued) {
        match settle(f) {
            Err(Error::Broken(b)) => {
                assert_eq!(b.kind(), BrokenKind::ProcessPool);
                let reason = b.reason();
                assert!(reason.contains("terminated abruptly"), "{reason}");
                assert!(reason.contains(&death), "{reason}");
                assert!(reason.contains(&victim.pid().to_string()), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let refused = pool.submit(gated, gate.path()).unwrap_err();
    assert!(
        matches!(refused.reason(), Error::Broken(b) if b.kind() == BrokenKind::ProcessPool),
        "{refused:?}"
    );
    assert_eq!(refused.into_task(), gate.path());
    wait_reaped(&[victim.worker, bystander.worker]);
    // The queued tasks never ran.
    assert!(gate.nobody_waiting());
    drop(pool);
    drop((victim, bystander));
}

#[test]
fn a_worker_killed_with_sigkill_breaks_the_pool() {
    // SPEC P6, X1
    a_worker_death_breaks_the_pool(|victim| sigkill(victim.pid()), 9);
}

/// A pool of one worker, busy with a call held at a gate, with two calls
/// sent ahead to it (its send-ahead is full): the next call stays queued.
struct BusyWorker {
    running: Future<u32>,
    held: Arrival,
    ahead: Vec<Future<u64>>,
    gate: Gate,
    pool: Pool,
}

impl BusyWorker {
    fn new() -> BusyWorker {
        let pool = pool(workers(1));
        let gate = Gate::new();
        let running = pool.submit(gated, gate.path()).unwrap();
        let held = gate.arrival();
        let ahead = (0..2).map(|_| pool.submit(square, 2).unwrap()).collect();
        BusyWorker {
            running,
            held,
            ahead,
            gate,
            pool,
        }
    }
}

#[test]
fn a_callback_that_waits_for_another_future_of_a_broken_pool_does_not_hang_it() {
    // SPEC P6, F5: the pool fails every future before any callback runs,
    // so a callback of a queued future that waits for the running one
    // finds it failed (failing them one by one, callbacks and all, left
    // it waiting for a future only its own thread would fail).
    let busy = BusyWorker::new();
    let (pool, running, victim) = (&busy.pool, &busy.running, &busy.held);
    let queued = pool.submit(square, 3).unwrap();
    let (seen, saw) = bounded(1);
    let waited_for = running.clone();
    queued.add_done_callback(move |f| {
        let other = waited_for.result_timeout(LIMIT).map(|_| ()).unwrap_err();
        let _ = seen.send((f.done(), other.clone()));
    });
    sigkill(victim.pid());
    let (done, other) = saw
        .recv_timeout(LIMIT)
        .expect("the callback ran and returned");
    assert!(done);
    assert!(matches!(other, Error::Broken(_)), "{other:?}");
    assert!(matches!(settle(running), Err(Error::Broken(_))));
    for f in busy.ahead.iter().chain([&queued]) {
        assert!(matches!(settle(f), Err(Error::Broken(_))));
    }
}

#[test]
fn a_callback_that_waits_for_another_cancelled_future_does_not_hang_shutdown() {
    // SPEC E3 (`cancel_futures`), F5: every queued future is cancelled
    // before any callback runs.
    let busy = BusyWorker::new();
    let pool = &busy.pool;
    let (first, second) = (
        pool.submit(square, 3).unwrap(),
        pool.submit(square, 4).unwrap(),
    );
    let (seen, saw) = bounded(1);
    let waited_for = second.clone();
    first.add_done_callback(move |_| {
        let ended = waited_for.result_timeout(LIMIT).map(|_| ()).unwrap_err();
        let _ = seen.send(ended.is_cancelled());
    });
    pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));
    assert!(saw.recv_timeout(LIMIT).expect("the callback returned"));
    assert!(first.cancelled() && second.cancelled());
    let BusyWorker {
        running,
        held,
        ahead,
        gate: _gate,
        pool: _pool,
    } = busy;
    drop(held);
    assert!(settle(&running).is_ok());
    for f in &ahead {
        assert_eq!(*settle(f).unwrap(), 4);
    }
}

#[test]
fn a_worker_that_aborts_breaks_the_pool() {
    // SPEC P6
    a_worker_death_breaks_the_pool(|victim| victim.order(ABORT), 6);
}

#[test]
fn a_worker_that_segfaults_breaks_the_pool() {
    // SPEC P6
    a_worker_death_breaks_the_pool(|victim| victim.order(SEGFAULT), 11);
}

// ----------------------------------------------------------------- P7 ----

#[test]
fn a_worker_is_replaced_after_max_tasks_per_child() {
    // SPEC P7
    let pool = pool(workers(2).max_tasks_per_child(2));
    let fs: Vec<_> = (0..20)
        .map(|x| pool.submit(square_and_pid, x).unwrap())
        .collect();
    let mut per_worker: HashMap<u32, usize> = HashMap::new();
    for (x, f) in (0..).zip(&fs) {
        let (sq, pid) = *settle(f).unwrap();
        assert_eq!(sq, x * x);
        *per_worker.entry(pid).or_default() += 1;
    }
    assert!(per_worker.values().all(|&n| n <= 2), "{per_worker:?}");
    assert!(per_worker.len() >= 10, "{per_worker:?}");
    assert!(!per_worker.contains_key(&std::process::id()));
}

// ----------------------------------------------------------------- P8 ----

#[test]
fn map_keeps_input_order_for_every_chunksize_and_fails_items_in_place() {
    // SPEC P8, E2
    let pool = pool(workers(3));
    for chunksize in [1, 7, 100] {
        let options = MapOptions::new().chunksize(chunksize).timeout(LIMIT);
        let results: Vec<_> = pool.map_with(square_unless_13, 0..250, options).collect();
        assert_eq!(results.len(), 250, "chunksize {chunksize}");
        for (x, r) in (0u64..).zip(&results) {
            match r {
                Ok((sq, _)) => assert_eq!(*sq, x * x, "chunksize {chunksize}"),
                Err(Error::Failed(e)) if x == 13 => {
                    assert_eq!(e.panic_message(), Some("item 13 is unlucky"));
                }
                Err(e) => panic!("item {x}, chunksize {chunksize}: {e:?}"),
            }
        }
        // A chunk is one call: its items ran in one worker.
        for chunk in results.chunks(chunksize) {
            let pids: HashSet<u32> = chunk.iter().flatten().map(|(_, pid)| *pid).collect();
            assert!(pids.len() <= 1, "chunksize {chunksize}: {pids:?}");
        }
    }
}

#[test]
fn map_with_buffersize_pulls_input_lazily() {
    // SPEC P8, E2
    let pool = pool(workers(2));
    for (chunksize, buffersize) in [(1, 4), (5, 3)] {
        let pulled = AtomicUsize::new(0);
        let items = (0..40).inspect(|_| {
            pulled.fetch_add(1, SeqCst);
        });
        let options = MapOptions::new()
            .chunksize(chunksize)
            .buffersize(buffersize)
            .timeout(LIMIT);
        let bound = buffersize + chunksize - 1;
        let mut map = pool.map_with(square, items, options);
        assert!(pulled.load(SeqCst) <= bound, "{}", pulled.load(SeqCst));
        let mut consumed = 0;
        for r in map.by_ref() {
            assert_eq!(r.unwrap(), consumed * consumed);
            consumed += 1;
            let ahead = pulled.load(SeqCst) - consumed as usize;
            assert!(ahead <= bound, "{ahead} items pulled ahead of the consumer");
        }
        assert_eq!(consumed, 40);
        drop(map);
        assert_eq!(pulled.load(SeqCst), 40);
    }
}

#[test]
fn map_timeout_counts_from_the_call() {
    // SPEC E2
    let pool = pool(workers(2));
    let gate = Gate::new();
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let mut map = pool.map_with(gated, vec![gate.path()], MapOptions::new().timeout(timeout));
    let held = gate.arrival();
    assert!(matches!(map.next(), Some(Err(Error::Timeout))));
    assert!(start.elapsed() >= timeout);
    assert!(map.next().is_none(), "a timeout ends the iteration");
    drop(map);
    held.release();

    // With quick items first: a prefix of values, then the timeout.
    let gate = Gate::new();
    let start = Instant::now();
    let items = vec![String::new(), String::new(), gate.path()];
    let map = pool.map_with(
        |path: String| if path.is_empty() { 0 } else { gated(path) },
        items,
        MapOptions::new().timeout(Duration::from_secs(2)),
    );
    let held = gate.arrival();
    let results: Vec<_> = map.collect();
    assert!(
        matches!(results.last(), Some(Err(Error::Timeout))),
        "{results:?}"
    );
    assert!(start.elapsed() >= Duration::from_secs(2));
    for r in &results[..results.len() - 1] {
        assert!(matches!(r, Ok(0)), "{results:?}");
    }
    held.release();
    // The pool is fine afterwards.
    assert_eq!(*settle(&pool.submit(square, 3).unwrap()).unwrap(), 9);
}

/// Takes every trace left at `gate` once the tasks that leave them are
/// done: how many of them ran.
fn traces_left(gate: &Gate) -> usize {
    let mut ran = 0;
    while !gate.nobody_waiting() {
        ran += 1;
    }
    ran
}

#[test]
fn dropping_a_map_cancels_its_chunks_that_have_not_started() {
    // SPEC P8, E2: a chunk is one call with one future, as in CPython, so
    // it runs whole or not at all.
    let pool = pool(workers(1));
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    let map = pool.map_with(touch, vec![gate.path(); 12], MapOptions::new().chunksize(3));
    drop(map);
    let worker = held.worker;
    held.release();
    assert_eq!(*settle(&running).unwrap(), worker.pid);
    pool.shutdown();
    let ran = traces_left(&gate);
    assert!(ran < 12 && ran % 3 == 0, "{ran} items ran");
}

#[test]
fn shutdown_with_cancel_futures_cancels_whole_map_chunks_that_have_not_started() {
    // SPEC E3, P8: every item of a chunk cancelled before it was sent
    // yields `Cancelled`; a chunk sent ahead runs whole.
    let pool = pool(workers(1));
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    let options = MapOptions::new().chunksize(3).timeout(LIMIT);
    let map = pool.map_with(touch, vec![gate.path(); 12], options);
    pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));
    let worker = held.worker;
    held.release();
    let outcomes: Vec<_> = map.collect();
    assert_eq!(outcomes.len(), 12, "{outcomes:?}");
    let mut ran = 0;
    for chunk in outcomes.chunks(3) {
        if chunk.iter().all(|o| matches!(o, Err(Error::Cancelled))) {
            continue;
        }
        for outcome in chunk {
            assert_eq!(*outcome.as_ref().unwrap(), worker.pid, "{outcomes:?}");
        }
        ran += 3;
    }
    assert!(ran < 12, "four chunks cannot all be sent ahead");
    assert_eq!(*settle(&running).unwrap(), worker.pid);
    pool.shutdown();
    assert_eq!(traces_left(&gate), ran, "a cancelled item ran");
}

// ----------------------------------------------------------------- P9 ----

/// SPEC P9: two running tasks and five more; `stop` returns at once (as
/// in CPython 3.14) and the workers are reaped soon after; the running
/// futures fail with BrokenProcessPool;
/// of the others, those still queued are cancelled and those already sent
/// to a worker (marked running, as in CPython) fail like the running ones;
/// none of them ran; submits are refused.
fn stopping_workers(stop: fn(&ProcessPoolExecutor)) {
    let pool = pool(workers(2));
    let gate = Gate::new();
    let mut running = Vec::new();
    let mut held = Vec::new();
    for _ in 0..2 {
        running.push(pool.submit(gated, gate.path()).unwrap());
        held.push(gate.arrival());
    }
    let queued: Vec<_> = (0..5)
        .map(|_| pool.submit(gated, gate.path()).unwrap())
        .collect();
    stop(&pool);
    wait_reaped(&[held[0].worker, held[1].worker]);
    for f in &running {
        match settle(f) {
            Err(Error::Broken(b)) => assert_eq!(b.kind(), BrokenKind::ProcessPool),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut cancelled = 0;
    for f in &queued {
        match settle(f) {
            Err(Error::Cancelled) => {
                assert!(f.cancelled());
                cancelled += 1;
            }
            Err(Error::Broken(b)) => assert_eq!(b.kind(), BrokenKind::ProcessPool),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        cancelled >= 1,
        "five calls cannot all be in flight on two workers"
    );
    assert!(matches!(
        pool.submit(square, 1).unwrap_err().reason(),
        Error::ShutDown
    ));
    assert!(gate.nobody_waiting());
    drop(pool);
}

#[test]
fn terminate_workers_stops_running_work_and_cancels_queued_work() {
    // SPEC P9
    stopping_workers(ProcessPoolExecutor::terminate_workers);
}

#[test]
fn kill_workers_stops_running_work_and_cancels_queued_work() {
    // SPEC P9
    stopping_workers(ProcessPoolExecutor::kill_workers);
}

// ---------------------------------------------------------------- P10 ----

#[test]
fn workers_end_with_their_parent_even_when_it_is_killed() {
    // SPEC P10
    for how in ["kill", "exit"] {
        let mut child = spawn_role("role_pool_owner", "p10");
        let lines = stdout_lines(&mut child);
        let pids: Vec<u32> = after_marker(&lines, "P10-WORKERS")
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let socket = after_marker(&lines, "P10-GATE");
        assert_eq!(pids.len(), 2);
        let owner = child.id();
        let procs: Vec<Proc> = pids
            .iter()
            .map(|&pid| Proc::of(pid).expect("the worker is alive"))
            .collect();
        for p in &procs {
            assert!(p.running());
            assert_eq!(p.stat().map(|(_, ppid)| ppid), Some(owner));
        }
        match how {
            "kill" => child.kill().unwrap(),
            _ => writeln!(child.stdin.as_ref().unwrap(), "exit").unwrap(),
        }
        let status = wait_child(&mut child);
        assert!(how == "kill" || status.success(), "{status}");
        poll_until(&format!("the workers' end after `{how}`"), || {
            procs.iter().all(|p| !p.running())
        });
        let _ = std::fs::remove_file(socket);
    }
}

/// The child of the P10 test: a pool whose two workers are busy forever,
/// and then it exits without dropping the pool, or is killed.
#[test]
fn role_pool_owner() {
    // SPEC P10 (the child's side)
    if !role_is("p10") {
        return;
    }
    // Not joined at exit: its work never ends, and this test is about the
    // workers dying with their parent (SPEC E3 would wait for them).
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .join_at_exit(false)
        .build()
        .unwrap();
    let gate = Gate::new();
    let _first = pool.submit(report_and_park, gate.path()).unwrap();
    let a = gate.arrival();
    let _second = pool.submit(report_and_park, gate.path()).unwrap();
    let b = gate.arrival();
    let mut out = std::io::stdout().lock();
    writeln!(out, "P10-WORKERS {} {}", a.pid(), b.pid()).unwrap();
    writeln!(out, "P10-GATE {}", gate.path()).unwrap();
    out.flush().unwrap();
    drop(out);
    // Until told to exit, or until our stdin ends (the test is gone).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::process::exit(0);
}

// ---------------------------------------------------------------- F10 ----

#[test]
fn a_panic_in_a_worker_carries_its_message_pid_and_backtrace() {
    // SPEC F10, E5
    let pool = pool(workers(1));
    let f = pool.submit(explode, 7).unwrap();
    let e = match settle(&f) {
        Err(Error::Failed(e)) => e.clone(),
        other => panic!("unexpected {other:?}"),
    };
    assert!(e.is_panic());
    assert_eq!(e.panic_message(), Some("exploded on 7"));
    let pid = e.remote_pid().expect("the worker's pid");
    assert_ne!(pid, std::process::id());
    let text = e.to_string();
    assert!(
        text.contains("exploded on 7") && text.contains(&pid.to_string()),
        "{text}"
    );
    let backtrace = e.remote_backtrace().expect("a remote backtrace");
    assert!(!backtrace.trim().is_empty());
    assert!(backtrace.contains("explode"), "{backtrace}");
    // The same worker goes on.
    assert_eq!(*settle(&pool.submit(whoami, ()).unwrap()).unwrap(), pid);
}

// ----------------------------------------------------------------- B1 ----

#[test]
fn a_task_over_its_timeout_fails_and_its_worker_is_replaced() {
    // SPEC B1
    let pool = pool(workers(2).task_timeout(Duration::from_secs(3)));
    let gate = Gate::new();
    let slow = pool.submit(gated, gate.path()).unwrap();
    // Held at the gate: it never finishes by itself.
    let stuck = gate.arrival();
    let quick: Vec<_> = (0..5).map(|x| pool.submit(square, x).unwrap()).collect();
    for (x, f) in (0..).zip(&quick) {
        assert_eq!(*settle(f).unwrap(), x * x);
    }
    // SPEC X1: the task's own time limit is not a wait's timeout.
    let outcome = settle(&slow);
    assert!(
        matches!(outcome, Err(Error::TaskTimeout(limit)) if limit == Duration::from_secs(3)),
        "{outcome:?}"
    );
    assert!(
        outcome
            .unwrap_err()
            .to_string()
            .contains("time limit of 3s")
    );
    assert!(slow.done());
    wait_reaped(&[stuck.worker]);
    let pid = *settle(&pool.submit(whoami, ()).unwrap()).unwrap();
    assert_ne!(pid, stuck.pid());
    let after: Vec<_> = (0..4).map(|x| pool.submit(square, x).unwrap()).collect();
    for (x, f) in (0..).zip(&after) {
        assert_eq!(*settle(f).unwrap(), x * x);
    }
}

#[test]
fn task_timeout_does_not_count_the_initializer() {
    // SPEC B1, P5
    let gate = Gate::new();
    let pool = pool(
        workers(1)
            .initializer(init_at_gate, gate.path())
            .task_timeout(Duration::from_millis(500)),
    );
    let f = pool.submit(square, 3).unwrap();
    // The worker's initializer is running, held at the gate.
    let init = gate.arrival();
    // Hold it for three times the task's limit: the task has not started.
    assert!(matches!(
        f.result_timeout(Duration::from_millis(1500)),
        Err(Error::Timeout)
    ));
    assert!(
        !f.done(),
        "the task failed before it started: {:?}",
        f.result()
    );
    init.release();
    assert_eq!(*settle(&f).unwrap(), 9);
}

// ----------------------------------------------------------------- B2 ----

#[test]
fn cancel_kills_a_running_task_and_replaces_its_worker() {
    // SPEC B2
    let pool = pool(workers(1));
    let gate = Gate::new();
    let f = pool.submit(gated, gate.path()).unwrap();
    let running = gate.arrival();
    assert!(f.running());
    let queued = pool.submit(square, 6).unwrap();
    assert!(pool.cancel(&f));
    assert!(matches!(settle(&f), Err(Error::Cancelled)));
    assert_eq!(f.state(), State::Finished);
    wait_reaped(&[running.worker]);
    // The queued task runs on a replacement.
    assert_eq!(*settle(&queued).unwrap(), 36);
    let pid = *settle(&pool.submit(whoami, ()).unwrap()).unwrap();
    assert_ne!(pid, running.pid());
    assert!(
        !pool.cancel(&queued),
        "a finished future cannot be cancelled"
    );
}

#[test]
fn cancel_of_a_pending_task_is_a_plain_cancel() {
    // SPEC B2, F2
    let pool = pool(workers(1));
    let gate = Gate::new();
    let busy = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    // Fillers first: a call may be sent ahead to the busy worker.
    let fillers: Vec<_> = (0..3).map(|x| pool.submit(square, x).unwrap()).collect();
    let pending = pool.submit(touch, gate.path()).unwrap();
    assert_eq!(pending.state(), State::Pending);
    assert!(pool.cancel(&pending));
    assert!(pending.cancelled());
    assert!(matches!(pending.result(), Err(Error::Cancelled)));
    assert!(pool.cancel(&pending), "cancelling again is still true");
    // The running task and its worker were not touched.
    let pid = held.pid();
    held.release();
    assert_eq!(*settle(&busy).unwrap(), pid);
    for (x, f) in (0..).zip(&fillers) {
        assert_eq!(*settle(f).unwrap(), x * x);
    }
    assert_eq!(*settle(&pool.submit(whoami, ()).unwrap()).unwrap(), pid);
    pool.shutdown();
    assert!(gate.nobody_waiting(), "the cancelled task ran");
}

#[test]
fn a_call_sent_ahead_is_cancelled_only_if_it_never_runs() {
    // SPEC B2, F2
    let pool = pool(workers(1));
    let gate = Gate::new();
    let pid = *settle(&pool.submit(whoami, ()).unwrap()).unwrap();
    let busy = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    // Possibly sent ahead to the busy worker, and then marked running.
    let ahead = pool.submit(touch, gate.path()).unwrap();
    let cancelled = pool.cancel(&ahead);
    held.release();
    assert_eq!(*settle(&busy).unwrap(), pid);
    pool.shutdown();
    if cancelled {
        assert!(matches!(settle(&ahead), Err(Error::Cancelled)));
        assert!(
            gate.nobody_waiting(),
            "pool.cancel() said true, yet the call ran"
        );
    } else {
        // Refused, as CPython refuses to cancel a call queued to a worker.
        assert_eq!(*settle(&ahead).unwrap(), pid);
        assert_eq!(gate.trace(), pid);
    }
}

/// What the kernel says process `pid` sleeps in.
/// What each thread of process `pid` waits in (a worker serves calls on a
/// thread of its own, named `main`).
fn wchan(pid: u32) -> String {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    tasks
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("wchan")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn cancelling_a_call_that_has_just_answered_fails_no_other_call() {
    // SPEC B2
    let pool = pool(workers(1));
    let gate = Gate::new();
    let z = pool.submit(gated, gate.path()).unwrap();
    let z_at_gate = gate.arrival();
    let a = pool.submit(gated, gate.path()).unwrap(); // sent ahead
    let b = pool.submit(square, 4).unwrap(); // queued
    // z's done-callback holds the reader thread that delivers z, so the
    // worker's answer for `a` waits in the pipe. (This only widens a
    // window that exists anyway: between a worker's answer and its reader.)
    let (go_tx, go_rx) = bounded::<()>(1);
    z.add_done_callback(move |_| {
        let _ = go_rx.recv_timeout(LIMIT);
    });
    z_at_gate.release();
    let a_at_gate = gate.arrival();
    let worker = a_at_gate.worker;
    a_at_gate.release();
    // The worker has answered `a` once it waits on its input pipe again.
    poll_until("the worker's answer", || {
        wchan(worker.pid).contains("pipe_read")
    });
    let cancelled = pool.cancel(&a);
    go_tx.send(()).unwrap();
    let a_outcome = settle(&a).copied();
    let b_outcome = settle(&b).copied();
    assert!(
        matches!(b_outcome, Ok(16)),
        "b was never cancelled, yet: {b_outcome:?}"
    );
    if cancelled {
        assert!(
            matches!(a_outcome, Err(Error::Cancelled)),
            "cancel() said true, yet a has {a_outcome:?}"
        );
    } else {
        assert_eq!(a_outcome.ok(), Some(worker.pid));
    }
}

#[test]
fn a_call_that_answered_in_time_is_not_timed_out_while_its_answer_waits_unread() {
    // SPEC B1: z's done-callback holds the reader thread that delivers z,
    // so `a`'s answer waits in the pipe while `a`'s limit passes. The pool
    // does not judge a deadline while the reader is busy in user code: it
    // reads `a`'s answer first, and `a` (which took no time) succeeds.
    let limit = Duration::from_secs(1);
    let pool = pool(workers(1).task_timeout(limit));
    let gate = Gate::new();
    let z = pool.submit(gated, gate.path()).unwrap();
    let z_at_gate = gate.arrival();
    let worker = z_at_gate.worker;
    let a = pool.submit(square, 2).unwrap(); // sent ahead
    let b = pool.submit(square, 4).unwrap(); // queued
    let (entered_tx, entered) = bounded::<()>(1);
    let (go_tx, go_rx) = bounded::<()>(1);
    z.add_done_callback(move |_| {
        let _ = entered_tx.send(());
        let _ = go_rx.recv_timeout(LIMIT);
    });
    z_at_gate.release();
    entered.recv_timeout(LIMIT).unwrap();
    // Let a's limit pass (time passing is what this test is about).
    thread::sleep(limit + limit / 2);
    assert!(
        worker.running(),
        "a worker whose answer waits unread was killed"
    );
    go_tx.send(()).unwrap();
    assert_eq!(*settle(&z).unwrap(), worker.pid);
    assert_eq!(settle(&a).copied().unwrap(), 4);
    assert_eq!(settle(&b).copied().unwrap(), 16);
}

#[test]
fn calls_dispatched_to_one_worker_from_two_threads_all_complete() {
    // SPEC E1, P8
    let pool = pool(workers(1));
    let gate = Gate::new();
    let pid = *settle(&pool.submit(whoami, ()).unwrap()).unwrap();
    let p = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    // Too big to be sent ahead: queued until `p` is done, then sent by the
    // thread that reads the worker's answers.
    let x = pool.submit(length, letters(32 * 1024)).unwrap();
    // `p`'s done-callback holds that thread between choosing `x` for the
    // worker and writing it.
    let (go_tx, go_rx) = bounded::<()>(1);
    p.add_done_callback(move |_| {
        let _ = go_rx.recv_timeout(LIMIT);
    });
    held.release();
    poll_until("x chosen for the worker", || x.running());
    // Small: sent ahead behind `x`, written by this thread, now.
    let y = pool.submit(square, 3).unwrap();
    go_tx.send(()).unwrap();
    assert_eq!(*settle(&p).unwrap(), pid);
    assert_eq!(*settle(&x).unwrap(), 32 * 1024);
    assert_eq!(*settle(&y).unwrap(), 9);
}

// ----------------------------------------------------------------- B3 ----

/// SPEC B3: like [`a_worker_death_breaks_the_pool`] with self-healing: only
/// the victim's future fails, with the death's signal; the bystander and
/// the queued tasks succeed; the pool goes on.
fn a_worker_death_fails_only_its_task(kill: impl FnOnce(&Arrival), signal: i32) {
    let pool = pool(workers(2).self_healing(true));
    let gate = Gate::new();
    let bystander_f = pool.submit(gated, gate.path()).unwrap();
    let bystander = gate.arrival();
    let victim_f = pool.submit(gated, gate.path()).unwrap();
    let victim = gate.arrival();
    let queued: Vec<_> = (0..3).map(|x| pool.submit(square, x).unwrap()).collect();
    kill(&victim);
    match settle(&victim_f) {
        Err(Error::WorkerDied(death)) => {
            assert_eq!(death.pid(), Some(victim.pid()));
            assert_eq!(death.cause(), ExitCause::Signal(signal));
            let text = Error::WorkerDied(death).to_string();
            assert!(text.contains(&format!("signal {signal}")), "{text}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The bystander goes on; the queued tasks run (one of them may have
    // been sent ahead to the bystander's worker and waits for it).
    let pid = bystander.pid();
    bystander.release();
    assert_eq!(*settle(&bystander_f).unwrap(), pid);
    for (x, f) in (0..).zip(&queued) {
        assert_eq!(*settle(f).unwrap(), x * x);
    }
    wait_reaped(&[victim.worker]);
    let after = pool.submit(whoami, ()).unwrap();
    assert_ne!(*settle(&after).unwrap(), victim.pid());
    drop(victim);
}

#[test]
fn self_healing_a_worker_killed_with_sigkill_fails_only_its_task() {
    // SPEC B3, X1
    a_worker_death_fails_only_its_task(|victim| sigkill(victim.pid()), 9);
}

#[test]
fn self_healing_a_worker_that_aborts_fails_only_its_task() {
    // SPEC B3
    a_worker_death_fails_only_its_task(|victim| victim.order(ABORT), 6);
}

#[test]
fn self_healing_a_worker_that_segfaults_fails_only_its_task() {
    // SPEC B3
    a_worker_death_fails_only_its_task(|victim| victim.order(SEGFAULT), 11);
}

// ----------------------------------------------------------------- X1 ----

#[test]
fn process_pool_errors_are_distinct_matchable_kinds() {
    // SPEC X1
    assert_ne!(BrokenKind::ProcessPool, BrokenKind::ThreadPool);
    let pool = pool(workers(1).initializer(failing_init, "no config".to_owned()));
    let f = pool.submit(square, 2).unwrap();
    let broken = settle(&f).unwrap_err().clone();
    match &broken {
        Error::Broken(b) => {
            assert_eq!(b.kind(), BrokenKind::ProcessPool);
            assert!(b.to_string().starts_with("BrokenProcessPool: "), "{b}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!broken.is_cancelled() && !broken.is_timeout());
    assert!(broken.task_error().is_none());
    assert!(std::error::Error::source(&broken).is_some());

    let pool = pool_shut_down();
    let refused = pool.submit(square, 1).unwrap_err();
    assert!(matches!(refused.reason(), Error::ShutDown));
    assert_eq!(
        refused.to_string(),
        "cannot schedule new futures after shutdown"
    );
    assert_eq!(refused.into_task(), 1);
}

fn pool_shut_down() -> Pool {
    let pool = pool(workers(1));
    pool.shutdown();
    pool
}

// -------------------------------------------- large values, shutdown ----

const BIG: usize = 64 << 20;

#[test]
fn sixty_four_mib_arguments_and_results_cross() {
    // SPEC P2
    let pool = pool(workers(1));
    let text = letters(BIG);
    // A big argument and a big result in one call, then a big result, then
    // a big argument, one at a time.
    let back = pool.submit(reversed, text.clone()).unwrap();
    let back = settle(&back).unwrap();
    assert_eq!(back.len(), BIG);
    assert!(*back == reversed(text.clone()));
    let made = pool.submit(big_string, BIG).unwrap();
    assert!(*settle(&made).unwrap() == text);
    let measured = pool.submit(length, text).unwrap();
    assert_eq!(*settle(&measured).unwrap(), BIG);
}

#[test]
fn a_big_argument_sent_ahead_while_a_big_result_comes_back_does_not_deadlock() {
    // SPEC P2
    let pool = pool(workers(1));
    let gate = Gate::new();
    let first = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    // Both bigger than a pipe holds (64 KiB). Sent ahead behind `first`
    // (if the pool sends it ahead): makes a big result.
    const SIZE: usize = 4 << 20;
    let made = pool.submit(big_string, SIZE).unwrap();
    // Queued: a big argument, sent when `first` finishes, by the thread
    // that reads the worker's answers, while the worker runs `made`.
    let measured = pool.submit(length, letters(SIZE)).unwrap();
    held.release();
    settle(&first).unwrap();
    assert_eq!(settle(&made).unwrap().len(), SIZE);
    assert_eq!(*settle(&measured).unwrap(), SIZE);
}

#[test]
fn shutdown_waits_for_running_and_queued_work() {
    // SPEC E3
    let pool = pool(workers(1));
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    let queued: Vec<_> = (0..3).map(|x| pool.submit(square, x).unwrap()).collect();
    let worker = held.worker;
    thread::scope(|s| {
        let shutdown = s.spawn(|| pool.shutdown());
        // Once submits are refused the shutdown is under way; a probe
        // accepted before that is more work the shutdown must finish.
        let mut probes = Vec::new();
        poll_until("shutdown refusing submits", || {
            match pool.submit(square, 10) {
                Ok(f) => {
                    probes.push(f);
                    false
                }
                Err(e) => matches!(e.reason(), Error::ShutDown),
            }
        });
        held.release();
        shutdown.join().unwrap();
        assert_eq!(*running.result_timeout(Duration::ZERO).unwrap(), worker.pid);
        for (x, f) in (0..).zip(&queued) {
            assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), x * x);
        }
        for f in &probes {
            assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), 100);
        }
    });
    assert_reaped(&[worker]);
}

#[test]
fn shutdown_with_cancel_futures_cancels_only_what_has_not_started() {
    // SPEC E3
    let pool = pool(workers(1));
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    let queued: Vec<_> = (0..4)
        .map(|_| pool.submit(touch, gate.path()).unwrap())
        .collect();
    // A call already sent to the worker is running (as in CPython, where
    // it sits in the call queue) and is not cancelled; the others are.
    let started: Vec<bool> = queued.iter().map(Future::running).collect();
    pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));
    for (f, started) in queued.iter().zip(&started) {
        assert_eq!(f.cancelled(), !started, "{:?}", f.state());
    }
    assert!(
        started.iter().any(|s| !s),
        "four calls cannot all be sent ahead"
    );
    assert!(running.running());
    let worker = held.worker;
    held.release();
    assert_eq!(*settle(&running).unwrap(), worker.pid);
    pool.shutdown();
    assert_reaped(&[worker]);
    // Exactly the calls not cancelled ran, each leaving a trace.
    for (f, started) in queued.iter().zip(&started) {
        if *started {
            assert_eq!(*settle(f).unwrap(), worker.pid);
            assert_eq!(gate.trace(), worker.pid);
        }
    }
    assert!(gate.nobody_waiting(), "a cancelled task ran");
}

#[test]
fn shutdown_without_wait_returns_at_once_and_the_work_still_finishes() {
    // SPEC E3
    let pool = pool(workers(1));
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    let queued: Vec<_> = (0..3).map(|x| pool.submit(square, x).unwrap()).collect();
    // Returns although the running task is held: it did not wait.
    pool.shutdown_with(Shutdown::default().wait(false));
    let refused = pool.submit(square, 4).unwrap_err();
    assert!(matches!(refused.reason(), Error::ShutDown));
    assert_eq!(refused.into_task(), 4);
    assert!(!running.done());
    let worker = held.worker;
    held.release();
    assert_eq!(*settle(&running).unwrap(), worker.pid);
    for (x, f) in (0..).zip(&queued) {
        assert_eq!(*settle(f).unwrap(), x * x);
    }
    drop(pool);
    assert_reaped(&[worker]);
}

#[test]
fn drop_waits_for_the_work() {
    // SPEC E4
    let pool = pool(workers(1));
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).unwrap();
    let held = gate.arrival();
    let queued: Vec<_> = (0..3).map(|x| pool.submit(square, x).unwrap()).collect();
    let worker = held.worker;
    let (dropping_tx, dropping_rx) = bounded(1);
    let dropper = thread::spawn(move || {
        dropping_tx.send(()).unwrap();
        drop(pool);
    });
    dropping_rx.recv_timeout(LIMIT).unwrap();
    held.release();
    poll_until("the pool's drop", || dropper.is_finished());
    dropper.join().unwrap();
    // Done, with values (a drop that killed the worker would have failed
    // the running task), and the worker reaped.
    assert_eq!(*running.result_timeout(Duration::ZERO).unwrap(), worker.pid);
    for (x, f) in (0..).zip(&queued) {
        assert_eq!(*f.result_timeout(Duration::ZERO).unwrap(), x * x);
    }
    assert_reaped(&[worker]);
}

#[test]
fn shutdown_returns_only_when_every_future_is_done_even_after_a_death() {
    // SPEC E3, P6
    let pool = pool(workers(2));
    let gate = Gate::new();
    let bystander_f = pool.submit(gated, gate.path()).unwrap();
    let bystander = gate.arrival();
    let victim_f = pool.submit(gated, gate.path()).unwrap();
    let victim = gate.arrival();
    let queued: Vec<_> = (0..3).map(|x| pool.submit(square, x).unwrap()).collect();
    // Failing the first queued future takes a while: its callback waits
    // (at most 2 s) for the shutdown below to return. That only widens
    // the window in which the other futures are failed.
    let (returned_tx, returned_rx) = bounded::<()>(1);
    queued[0].add_done_callback(move |_| {
        let _ = returned_rx.recv_timeout(Duration::from_secs(2));
    });
    let not_done = thread::scope(|s| {
        let shutdown = s.spawn(|| {
            pool.shutdown();
            let mut not_done = Vec::new();
            if !bystander_f.done() {
                not_done.push("bystander".to_owned());
            }
            if !victim_f.done() {
                not_done.push("victim".to_owned());
            }
            for (i, f) in queued.iter().enumerate() {
                if !f.done() {
                    not_done.push(format!("queued {i}"));
                }
            }
            let _ = returned_tx.send(());
            not_done
        });
        sigkill(victim.pid());
        shutdown.join().unwrap()
    });
    assert!(
        not_done.is_empty(),
        "shutdown(wait=true) returned while these were not done: {not_done:?}"
    );
    drop((bystander, victim));
}
