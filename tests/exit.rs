//! Work a live pool accepted finishes before a normal process exit (SPEC
//! E3), for both pools, as CPython's exit hook joins its workers.
//!
//! Each case runs this binary again in a role: the role puts its pool in a
//! `static`, submits tasks, shuts the pool down without waiting and
//! returns, so the test harness exits while the work is pending. The
//! tasks wait until the exit has begun (an exit handler the role registers
//! after the pool's own, so it runs first, says so), then print a line.
//! The test counts the lines.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Condvar, LazyLock, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{ProcessPoolExecutor, Shutdown, ThreadPoolExecutor};

mod common;
use common::process::{LIMIT, ROLE, role_is, wait_child};

/// Set by the role's exit handler: the process is exiting.
static EXITING: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

extern "C" fn mark_exiting() {
    *EXITING.0.lock().unwrap() = true;
    EXITING.1.notify_all();
    // For the process pool's tasks, which cannot see this process.
    if let Ok(path) = std::env::var(MARKER) {
        let _ = std::fs::write(path, b"");
    }
}

/// Registers [`mark_exiting`]: after the pools' own handler, so before it.
fn on_exit_mark_exiting() {
    // SAFETY: `mark_exiting` does not unwind.
    assert_eq!(unsafe { libc::atexit(mark_exiting) }, 0);
}

/// How long a task still works once the exit has begun: without the
/// join, the process is gone long before (the outcome with the join does
/// not depend on it).
const WORK_AFTER_EXIT_BEGAN: Duration = Duration::from_millis(200);

/// Waits (bounded) until the exit has begun, works a little longer, then
/// reports `i`.
fn wait_for_exit_then_report(i: u32) {
    let (lock, cv) = &EXITING;
    let mut exiting = lock.lock().unwrap();
    let deadline = Instant::now() + LIMIT;
    while !*exiting && Instant::now() < deadline {
        exiting = cv.wait_timeout(exiting, LIMIT).unwrap().0;
    }
    let exiting = *exiting;
    thread::sleep(WORK_AFTER_EXIT_BEGAN);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "E3-DONE {i} exiting={exiting}");
    let _ = out.flush();
}

/// The file whose existence tells worker processes that the exit began.
const MARKER: &str = "CF_EXIT_TEST_MARKER";

/// In a worker: waits (bounded) for the marker file, then reports `i`.
fn wait_for_marker_then_report(args: (String, u32)) {
    let (marker, i) = args;
    let deadline = Instant::now() + LIMIT;
    while !Path::new(&marker).exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    println!("E3-DONE {i} exiting={}", Path::new(&marker).exists());
}

/// Runs role `role` of test `test` and returns its exit status and the
/// lines that report finished work.
fn run_role(test: &str, role: &str) -> (std::process::ExitStatus, Vec<String>) {
    let marker = std::env::temp_dir().join(format!("cf-exit-{}-{role}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(MARKER, &marker)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("E3-DONE"))
            .collect::<Vec<_>>()
    });
    let status = wait_child(&mut child);
    let lines = reader.join().unwrap();
    let _ = std::fs::remove_file(&marker);
    (status, lines)
}

static THREADS: LazyLock<ThreadPoolExecutor> =
    LazyLock::new(|| ThreadPoolExecutor::new(2).unwrap());

#[test]
fn a_static_thread_pool_finishes_its_work_when_main_returns() {
    // SPEC E3
    let (status, lines) = run_role("role_static_thread_pool", "threads");
    assert!(status.success(), "{status}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.ends_with("exiting=true")),
        "{lines:?}"
    );
}

#[test]
fn role_static_thread_pool() {
    // SPEC E3 (the child's side)
    if !role_is("threads") {
        return;
    }
    LazyLock::force(&THREADS);
    on_exit_mark_exiting();
    for i in 0..3 {
        THREADS
            .submit(move || wait_for_exit_then_report(i))
            .unwrap();
    }
    THREADS.shutdown_with(Shutdown::default().wait(false));
}

static PROCESSES: LazyLock<ProcessPoolExecutor> =
    LazyLock::new(|| ProcessPoolExecutor::new(2).unwrap());

#[test]
fn a_static_process_pool_finishes_its_work_when_main_returns() {
    // SPEC E3
    let (status, lines) = run_role("role_static_process_pool", "processes");
    assert!(status.success(), "{status}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.ends_with("exiting=true")),
        "{lines:?}"
    );
}

#[test]
fn role_static_process_pool() {
    // SPEC E3 (the child's side)
    if !role_is("processes") {
        return;
    }
    LazyLock::force(&PROCESSES);
    on_exit_mark_exiting();
    let marker = std::env::var(MARKER).unwrap();
    let futures: Vec<_> = (0..3)
        .map(|i| {
            PROCESSES
                .submit(wait_for_marker_then_report, (marker.clone(), i))
                .unwrap()
        })
        .collect();
    // Every task is running (so none waits on a worker yet to start).
    let deadline = Instant::now() + LIMIT;
    while futures.iter().filter(|f| f.running()).count() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
    PROCESSES.shutdown_with(Shutdown::default().wait(false));
}

#[test]
fn a_pool_that_opts_out_is_not_waited_for() {
    // SPEC E3: `join_at_exit(false)` exits without the work.
    let (status, lines) = run_role("role_opted_out_thread_pool", "opt-out");
    assert!(status.success(), "{status}");
    assert!(lines.is_empty(), "{lines:?}");
}

static OPTED_OUT: LazyLock<ThreadPoolExecutor> = LazyLock::new(|| {
    ThreadPoolExecutor::builder()
        .max_workers(2)
        .join_at_exit(false)
        .build()
        .unwrap()
});

#[test]
fn role_opted_out_thread_pool() {
    // SPEC E3 (the child's side)
    if !role_is("opt-out") {
        return;
    }
    LazyLock::force(&OPTED_OUT);
    // The tasks wait for nothing that exit sets: without the join they
    // never report.
    let (_keep, never) = crossbeam_channel::bounded::<()>(0);
    for i in 0..3 {
        let never = never.clone();
        OPTED_OUT
            .submit(move || {
                let _ = never.recv_timeout(LIMIT);
                println!("E3-DONE {i}");
            })
            .unwrap();
    }
    std::mem::forget(_keep);
}

static EXIT_INSIDE: LazyLock<ThreadPoolExecutor> =
    LazyLock::new(|| ThreadPoolExecutor::new(2).unwrap());

#[test]
fn a_task_that_exits_the_program_does_not_deadlock_the_join() {
    // SPEC E3: the exit handler runs on that task's worker, which waits
    // for every worker but itself.
    let (status, lines) = run_role("role_task_calls_exit", "exit-inside");
    assert_eq!(status.code(), Some(7), "{status}");
    assert_eq!(lines.len(), 1, "{lines:?}");
}

#[test]
fn role_task_calls_exit() {
    // SPEC E3 (the child's side)
    if !role_is("exit-inside") {
        return;
    }
    LazyLock::force(&EXIT_INSIDE);
    on_exit_mark_exiting();
    EXIT_INSIDE.submit(|| wait_for_exit_then_report(0)).unwrap();
    EXIT_INSIDE.submit(|| std::process::exit(7)).unwrap();
    // Only the task exits: this thread waits, bounded.
    thread::sleep(LIMIT);
}
