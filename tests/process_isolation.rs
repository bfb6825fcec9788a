//! What user code does cannot hang a process pool, lose its work or abort
//! the program (SPEC P2, P6, P9, P11, E1, B1, F10, X1): serde impls and
//! `Drop`s that panic or fail, done-callbacks that shut the pool down,
//! tasks that ignore `SIGTERM`, write to closed pipes, fork, or run long
//! inside a chunk, and arguments far larger than a pipe.
//!
//! Every wait is bounded (`common::process::LIMIT`); a failing test kills
//! and leaks its pool.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use concurrent_futures::{
    BuildError, Error, MapOptions, ProcessPoolBuilder, ProcessPoolExecutor, TaskErrorKind,
};
use crossbeam_channel::bounded;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod common;
use common::process::*;

fn pool(builder: ProcessPoolBuilder) -> Pool {
    Pool(Some(builder.build().expect("build the pool")))
}

fn workers(n: usize) -> ProcessPoolBuilder {
    ProcessPoolExecutor::builder().max_workers(n)
}

/// Runs `f` on another thread; fails the test if it does not return
/// within [`LIMIT`] (the call would have hung).
fn returns_in_time<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not return within {LIMIT:?}"))
}

fn square(x: u64) -> u64 {
    x * x
}

fn task_error(outcome: Result<&impl std::fmt::Debug, Error>) -> concurrent_futures::TaskError {
    match outcome {
        Err(Error::Failed(e)) => e,
        other => panic!("expected a task failure, got {other:?}"),
    }
}

// ------------------------------------------------ values that misbehave ----

/// Which of its serde impls fails, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Trap {
    None,
    PanicOnSerialize,
    PanicOnDeserialize,
    FailOnSerialize,
    FailOnDeserialize,
}

/// A value whose serde impls fail the way its trap says, on either side.
#[derive(Debug)]
struct Touchy(Trap);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Trap::PanicOnSerialize => panic!("touchy refuses to serialize"),
            Trap::FailOnSerialize => Err(S::Error::custom("touchy cannot be written: no socket")),
            trap => trap.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Trap::deserialize(d)? {
            Trap::PanicOnDeserialize => panic!("touchy refuses to deserialize"),
            Trap::FailOnDeserialize => Err(D::Error::custom("touchy cannot be read: too old")),
            trap => Ok(Touchy(trap)),
        }
    }
}

/// Returns a value that will misbehave on the way back.
fn make_touchy(trap: Trap) -> Touchy {
    Touchy(trap)
}

/// Takes a value that misbehaved on the way in, if it got here.
fn take_touchy(_: Touchy) -> u32 {
    std::process::id()
}

#[test]
fn a_panicking_deserialize_of_a_result_fails_only_its_future() {
    // SPEC P2: the result decodes in this process, on the pool's own
    // thread; its panic must not kill that thread or leave the future
    // running forever.
    let pool = pool(workers(1));
    let f = pool.submit(make_touchy, Trap::PanicOnDeserialize).unwrap();
    let e = task_error(settle(&f));
    assert_eq!(e.kind(), TaskErrorKind::Deserialize);
    assert!(
        e.to_string().contains("touchy refuses to deserialize"),
        "{e}"
    );
    // The thread that reads this worker's answers goes on.
    assert_eq!(*settle(&pool.submit(square, 5).unwrap()).unwrap(), 25);
    returns_in_time("shutdown", move || pool.shutdown());
}

#[test]
fn a_panicking_serialize_of_a_result_in_the_worker_fails_only_its_future() {
    // SPEC P2: the worker's loop survives; the same worker serves on.
    let pool = pool(workers(1));
    let before = *settle(&pool.submit(whoami, ()).unwrap()).unwrap();
    let f = pool.submit(make_touchy, Trap::PanicOnSerialize).unwrap();
    let e = task_error(settle(&f));
    assert_eq!(e.kind(), TaskErrorKind::Serialize);
    assert_eq!(e.remote_pid(), Some(before));
    assert!(e.to_string().contains("touchy refuses to serialize"), "{e}");
    assert_eq!(*settle(&pool.submit(whoami, ()).unwrap()).unwrap(), before);
}

#[test]
fn a_panicking_deserialize_of_an_argument_in_the_worker_fails_only_its_future() {
    // SPEC P2
    let pool = pool(workers(1));
    let before = *settle(&pool.submit(whoami, ()).unwrap()).unwrap();
    let f = pool
        .submit(take_touchy, Touchy(Trap::PanicOnDeserialize))
        .unwrap();
    let e = task_error(settle(&f));
    assert_eq!(e.kind(), TaskErrorKind::Deserialize);
    assert!(
        e.to_string().contains("touchy refuses to deserialize"),
        "{e}"
    );
    assert_eq!(*settle(&pool.submit(whoami, ()).unwrap()).unwrap(), before);
}

#[test]
fn a_panicking_serialize_of_an_argument_fails_its_future_not_the_caller() {
    // SPEC P2, E1: the caller gets a failed future, not a panic.
    let pool = pool(workers(1));
    let f = pool
        .submit(take_touchy, Touchy(Trap::PanicOnSerialize))
        .unwrap();
    let e = task_error(settle(&f));
    assert_eq!(e.kind(), TaskErrorKind::Serialize);
    assert!(e.to_string().contains("touchy refuses to serialize"), "{e}");
    // In a chunk, only that item fails.
    let items = vec![
        Touchy(Trap::None),
        Touchy(Trap::PanicOnSerialize),
        Touchy(Trap::None),
    ];
    let outcomes: Vec<_> = pool
        .map_with(take_touchy, items, MapOptions::new().chunksize(3))
        .collect();
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert!(
        matches!(&outcomes[1], Err(Error::Failed(e)) if e.kind() == TaskErrorKind::Serialize),
        "{outcomes:?}"
    );
    // A chunk none of whose arguments could be sent: no call, every item
    // failed, and the chunks around it run.
    let items = (0..7).map(|i| {
        Touchy(if (3..6).contains(&i) {
            Trap::PanicOnSerialize
        } else {
            Trap::None
        })
    });
    let outcomes: Vec<_> = pool
        .map_with(
            take_touchy,
            items,
            MapOptions::new().chunksize(3).timeout(LIMIT),
        )
        .collect();
    assert_eq!(outcomes.len(), 7);
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.is_ok(), !(3..6).contains(&i), "{i}: {outcomes:?}");
    }
}

#[test]
fn a_serde_error_keeps_the_users_message_in_every_direction() {
    // SPEC F10, P2: `Error::custom("...")` reaches the user as written,
    // not as postcard's "Serde Serialization Error".
    let pool = pool(workers(1));
    let cases = [
        (
            pool.submit(take_touchy, Touchy(Trap::FailOnSerialize)),
            TaskErrorKind::Serialize,
            "touchy cannot be written: no socket",
        ),
        (
            pool.submit(take_touchy, Touchy(Trap::FailOnDeserialize)),
            TaskErrorKind::Deserialize,
            "touchy cannot be read: too old",
        ),
    ];
    for (f, kind, message) in cases {
        let e = task_error(settle(&f.unwrap()));
        assert_eq!(e.kind(), kind);
        assert!(e.to_string().contains(message), "{e}");
    }
    let results = [
        (
            pool.submit(make_touchy, Trap::FailOnSerialize).unwrap(),
            TaskErrorKind::Serialize,
            "touchy cannot be written: no socket",
        ),
        (
            pool.submit(make_touchy, Trap::FailOnDeserialize).unwrap(),
            TaskErrorKind::Deserialize,
            "touchy cannot be read: too old",
        ),
    ];
    for (f, kind, message) in results {
        let e = task_error(settle(&f));
        assert_eq!(e.kind(), kind);
        assert!(e.to_string().contains(message), "{e}");
    }
}

fn init_touchy(_: Touchy) {}

#[test]
fn initializer_arguments_that_misbehave_give_a_clear_error() {
    // SPEC P2, P5: serializing it happens at build, and its panic is a
    // build error with the message; deserializing it happens in every
    // worker, and its panic breaks the pool with the message.
    match workers(1)
        .initializer(init_touchy, Touchy(Trap::PanicOnSerialize))
        .build()
    {
        Err(BuildError::InitializerArgument(why)) => {
            assert!(why.contains("touchy refuses to serialize"), "{why}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let pool = pool(workers(1).initializer(init_touchy, Touchy(Trap::PanicOnDeserialize)));
    match settle(&pool.submit(square, 1).unwrap()) {
        Err(Error::Broken(b)) => {
            assert!(b.reason().contains("touchy refuses to deserialize"), "{b}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A result whose `Drop` panics, wherever it is dropped.
#[derive(Debug, Serialize, Deserialize)]
struct DropBomb(u8);

impl Drop for DropBomb {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("DropBomb went off");
        }
    }
}

fn make_bomb(_: ()) -> DropBomb {
    DropBomb(1)
}

#[test]
fn a_result_whose_drop_panics_harms_no_thread_of_the_pool() {
    // SPEC P2: in the worker the value is dropped after encoding; here
    // nobody holds the future, so the pool's reader drops it.
    let pool = pool(workers(1));
    drop(pool.submit(make_bomb, ()).unwrap());
    let kept = pool.submit(make_bomb, ()).unwrap();
    // One worker answers in order: this answer comes after the bombs'.
    assert_eq!(*settle(&pool.submit(square, 3).unwrap()).unwrap(), 9);
    assert_eq!(settle(&kept).unwrap().0, 1);
    std::mem::forget(kept);
    returns_in_time("shutdown", move || pool.shutdown());
}

// ----------------------------------------- callbacks that end the pool ----

#[test]
fn a_done_callback_that_shuts_the_pool_down_does_not_hang() {
    // SPEC E3, P6: the callback runs on the pool's reader thread.
    let pool = Arc::new(pool(workers(1)));
    let (done_tx, done_rx) = bounded(1);
    let f = pool.submit(square, 4).unwrap();
    let inside = Arc::clone(&pool);
    f.add_done_callback(move |_| {
        inside.shutdown();
        let _ = done_tx.send(());
    });
    assert_eq!(*settle(&f).unwrap(), 16);
    done_rx
        .recv_timeout(LIMIT)
        .expect("shutdown inside a done-callback returned");
    assert!(matches!(
        pool.submit(square, 1).unwrap_err().reason(),
        Error::ShutDown
    ));
    returns_in_time("shutdown afterwards", move || pool.shutdown());
}

#[test]
fn a_done_callback_that_drops_the_last_handle_to_the_pool_does_not_hang() {
    // SPEC E3, E4: dropping is `shutdown(wait = true)`, here from the
    // thread that must see the worker exit.
    let executor = workers(1).build().unwrap();
    let f = executor.submit(square, 6).unwrap();
    let g = executor.submit(square, 7).unwrap();
    let holder = Mutex::new(Some(executor));
    let (dropped_tx, dropped_rx) = bounded(1);
    f.add_done_callback(move |_| {
        drop(holder.lock().unwrap().take());
        let _ = dropped_tx.send(());
    });
    dropped_rx
        .recv_timeout(LIMIT)
        .expect("the pool's drop inside a done-callback returned");
    assert_eq!(*settle(&f).unwrap(), 36);
    // Work accepted before the drop still finishes.
    assert_eq!(*settle(&g).unwrap(), 49);
}

fn park_forever(_: ()) {
    loop {
        thread::park();
    }
}

#[test]
fn callbacks_of_timed_out_and_terminated_tasks_may_stop_the_pool() {
    // SPEC E3, P9, B1: these callbacks run on the supervisor thread and
    // on the caller's; neither hangs.
    let pool = Arc::new(pool(workers(1).task_timeout(Duration::from_millis(300))));
    let (tx, rx) = bounded(2);
    let f = pool.submit(park_forever, ()).unwrap();
    let inside = Arc::clone(&pool);
    let tx2 = tx.clone();
    f.add_done_callback(move |_| {
        inside.terminate_workers();
        inside.shutdown();
        let _ = tx2.send("timed out");
    });
    assert!(matches!(settle(&f), Err(Error::TaskTimeout(_))));
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), "timed out");
    returns_in_time("shutdown afterwards", move || pool.shutdown());
}

// --------------------------------------------------------------- SPEC P9 ----

/// Ignores `SIGTERM`, then waits at the gate.
fn ignore_sigterm_then_gate(path: String) -> u32 {
    // SAFETY: "ignore" installs no handler.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    gated(path)
}

#[test]
fn terminate_workers_returns_at_once_when_a_task_ignores_sigterm() {
    // SPEC P9: CPython 3.14 does not wait either; the futures fail at
    // once; the stubborn worker is killed after a grace period and reaped.
    let pool = Arc::new(pool(workers(1)));
    let gate = Gate::new();
    let f = pool.submit(ignore_sigterm_then_gate, gate.path()).unwrap();
    let stubborn = gate.arrival();
    let terminating = Arc::clone(&pool);
    returns_in_time("terminate_workers", move || terminating.terminate_workers());
    assert!(matches!(settle(&f), Err(Error::Broken(_))));
    let waiting = Arc::clone(&pool);
    returns_in_time("shutdown after terminate", move || waiting.shutdown());
    wait_reaped(&[stubborn.worker]);
}

// --------------------------------------------------------------- SPEC E1 ----

/// Parks at the gate while the marker file exists when it starts.
fn init_blocks_if_marked(marker: String) {
    if std::path::Path::new(&marker).exists() {
        gated(format!("{marker}.sock"));
    }
}

fn length(text: String) -> usize {
    text.len()
}

#[test]
fn a_huge_argument_for_a_worker_that_is_not_reading_blocks_nothing() {
    // SPEC E1: `submit` returns at once; SPEC B1: another worker's time
    // limit is enforced on time meanwhile.
    let dir = std::env::temp_dir().join(format!("cf-e1-{}", std::process::id()));
    let marker = dir.to_str().unwrap().to_owned();
    let _ = std::fs::remove_file(&marker);
    let gate = Gate::at(format!("{marker}.sock"));
    let pool = Arc::new(pool(
        workers(2)
            .initializer(init_blocks_if_marked, marker.clone())
            .task_timeout(Duration::from_secs(3)),
    ));
    // The first worker starts unmarked and runs a task that never ends.
    let stuck = pool.submit(report_and_park, gate.path()).unwrap();
    let busy = gate.arrival();
    drop(busy);
    std::fs::write(&marker, b"").unwrap();
    // The second worker sits in its initializer and reads nothing: a call
    // far larger than a pipe must still leave `submit` at once.
    let submitting = Arc::clone(&pool);
    let big = returns_in_time("submit of a 32 MiB argument", move || {
        submitting.submit(length, "x".repeat(32 << 20)).unwrap()
    });
    let blocked = gate.arrival();
    // The first worker's limit passes while the second is still blocked.
    assert!(matches!(settle(&stuck), Err(Error::TaskTimeout(_))));
    assert!(blocked.worker.running(), "the second worker is still held");
    std::fs::remove_file(&marker).unwrap();
    blocked.release();
    assert_eq!(*settle(&big).unwrap(), 32 << 20);
}

// --------------------------------------------------------------- SPEC B1 ----

/// Sleeps `ms` milliseconds (forever for `u64::MAX`); returns the pid.
fn nap(ms: u64) -> u32 {
    if ms == u64::MAX {
        park_forever(());
    }
    thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[test]
fn the_time_limit_is_per_item_also_inside_a_chunk() {
    // SPEC B1: ten items of 0.3 s under a 1 s limit, in one chunk of 10,
    // all succeed (the chunk takes 3 s).
    let pool = pool(workers(1).task_timeout(Duration::from_secs(1)));
    let outcomes: Vec<_> = pool
        .map_with(nap, vec![300; 10], MapOptions::new().chunksize(10))
        .collect();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
}

#[test]
fn an_item_over_its_limit_fails_alone_and_the_rest_of_its_chunk_runs_elsewhere() {
    // SPEC B1
    let pool = pool(workers(1).task_timeout(Duration::from_millis(500)));
    let outcomes: Vec<_> = pool
        .map_with(
            nap,
            vec![1, 1, u64::MAX, 1, 1],
            MapOptions::new().chunksize(5),
        )
        .collect();
    assert!(
        matches!(outcomes[2], Err(Error::TaskTimeout(_))),
        "{outcomes:?}"
    );
    let pid = |i: usize| *outcomes[i].as_ref().unwrap();
    assert_eq!(pid(0), pid(1));
    assert_eq!(pid(3), pid(4));
    assert_ne!(pid(1), pid(3), "the items after the stuck one moved on");
}

#[test]
fn a_poll_loop_on_a_timed_out_task_ends() {
    // SPEC X1: the task's time limit is its own kind, so a loop written
    // as std's channels teach ends on it instead of spinning forever.
    let pool = pool(workers(1).task_timeout(Duration::from_millis(200)));
    let f = pool.submit(park_forever, ()).unwrap();
    let mut polls = 0u32;
    let outcome = loop {
        match f.result_timeout(Duration::from_millis(50)) {
            Err(Error::Timeout) => {
                polls += 1;
                assert!(polls < 600, "the poll loop did not end");
            }
            other => break other.map(|_| ()),
        }
    };
    let e = outcome.unwrap_err();
    assert!(e.is_task_timeout() && !e.is_timeout(), "{e:?}");
    assert!(e.to_string().contains("time limit"), "{e}");
}

#[test]
fn a_zero_chunksize_is_refused() {
    // SPEC E2, P8: CPython raises ValueError("chunksize must be >= 1.").
    let pool = pool(workers(1));
    let mut map = pool.map_with(square, 0..3, MapOptions::new().chunksize(0));
    assert!(matches!(map.next(), Some(Err(Error::InvalidArgument(_)))));
    assert!(map.next().is_none());
}

// -------------------------------------------------------------- SPEC P11 ----

/// Writes to a pipe nobody reads: a normal Rust program gets an error.
fn write_to_a_closed_pipe(_: ()) -> String {
    let (read_end, write_end) = rustix::pipe::pipe().unwrap();
    drop(read_end);
    let mut w = std::fs::File::from(write_end);
    match w.write_all(b"anyone?") {
        Ok(()) => "written".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

fn argv(_: ()) -> Vec<String> {
    std::env::args().collect()
}

fn thread_name(_: ()) -> Option<String> {
    thread::current().name().map(str::to_owned)
}

#[test]
fn a_worker_behaves_like_a_normal_run_of_the_program() {
    // SPEC P11: SIGPIPE ignored, the program's argv, a main thread named
    // `main`.
    let pool = pool(workers(1));
    let pipe = pool.submit(write_to_a_closed_pipe, ()).unwrap();
    assert_eq!(settle(&pipe).unwrap(), "BrokenPipe");
    let args = pool.submit(argv, ()).unwrap();
    assert_eq!(
        *settle(&args).unwrap(),
        std::env::args().collect::<Vec<_>>()
    );
    let name = pool.submit(thread_name, ()).unwrap();
    assert_eq!(settle(&name).unwrap().as_deref(), Some("main"));
}

#[test]
fn a_program_run_through_the_dynamic_loader_starts_its_workers() {
    // SPEC P11: `ld.so ./program` makes /proc/self/exe the loader.
    let loader = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"]
        .into_iter()
        .find(|l| std::path::Path::new(l).exists());
    let Some(loader) = loader else {
        eprintln!("skipped: no dynamic loader at a known path");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(loader)
        .arg(&exe)
        .args([
            "--exact",
            "role_run_a_task",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "loader")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut child);
    assert_eq!(after_marker(&lines, "P11-RESULT"), "49");
    assert!(wait_child(&mut child).success());
}

#[test]
fn role_run_a_task() {
    // SPEC P11 (the child's side)
    if !role_is("loader") {
        return;
    }
    let pool = workers(1).build().unwrap();
    let f = pool.submit(square, 7).unwrap();
    println!("P11-RESULT {}", settle(&f).unwrap());
}

#[test]
fn a_parent_with_its_stdout_closed_keeps_the_protocol_apart() {
    // SPEC P11: with fd 1 closed, a new pipe could take its number; a
    // worker's prints must never land in the pool's pipes.
    let mut child = spawn_role("role_closed_stdout", "closed-stdout");
    let status = wait_child(&mut child);
    assert_eq!(status.code(), Some(49), "{status}");
}

fn noisy_square(x: u64) -> u64 {
    println!("some output the pool must not read");
    x * x
}

#[test]
fn role_closed_stdout() {
    // SPEC P11 (the child's side): reports through its exit code.
    if !role_is("closed-stdout") {
        return;
    }
    // SAFETY: nothing in this process uses fd 1 after this.
    unsafe { libc::close(1) };
    let pool = workers(1).join_at_exit(false).build().unwrap();
    let code = match settle(&pool.submit(noisy_square, 7).unwrap()) {
        Ok(&v) => v as i32,
        Err(_) => 1,
    };
    std::process::exit(code);
}

// --------------------------------------------------- a worker that forks ----

/// Forks a child that reports at `gates.0` and stays as long as the test
/// holds it (keeping a copy of the worker's pipes), then waits at
/// `gates.1` itself.
fn fork_then_gate(gates: (String, String)) -> u32 {
    // SAFETY: the child only connects, writes, reads and exits.
    match unsafe { libc::fork() } {
        0 => {
            if let Ok(mut s) = UnixStream::connect(&gates.0) {
                let _ = s.write_all(&std::process::id().to_le_bytes());
                let mut order = [0u8; 1];
                let _ = std::io::Read::read(&mut s, &mut order);
            }
            // SAFETY: ends the forked child at once, running nothing else.
            unsafe { libc::_exit(0) }
        }
        _ => gated(gates.1),
    }
}

#[test]
fn a_worker_death_is_seen_even_when_a_process_it_forked_keeps_its_pipes() {
    // SPEC P6, B3: the pool learns of the death from the process, not
    // from its pipe closing.
    let pool = pool(workers(1).self_healing(true));
    let (kid_gate, worker_gate) = (Gate::new(), Gate::new());
    let f = pool
        .submit(fork_then_gate, (kid_gate.path(), worker_gate.path()))
        .unwrap();
    let kid = kid_gate.arrival();
    let worker = worker_gate.arrival();
    sigkill(worker.pid());
    assert!(
        matches!(settle(&f), Err(Error::WorkerDied(_))),
        "{:?}",
        f.result()
    );
    assert_eq!(*settle(&pool.submit(square, 2).unwrap()).unwrap(), 4);
    drop(kid);
}

#[test]
fn shutdown_returns_while_a_process_forked_without_exec_holds_the_workers_pipes() {
    // SPEC E3, P10: a fork (Python's multiprocessing default on Linux)
    // inherits the pool's ends of its workers' pipes; the workers must
    // still be told to stop.
    let pool = Pool(Some(ProcessPoolExecutor::new(1).expect("a pool")));
    assert!(*settle(&pool.submit(whoami, ()).expect("submit")).expect("a pid") > 0);
    // SAFETY: the child only calls async-signal-safe functions (sleep,
    // _exit) and never returns into Rust code.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        // SAFETY: as above.
        unsafe {
            libc::sleep(60);
            libc::_exit(0);
        }
    }
    let (done_tx, done_rx) = bounded(1);
    let mut pool = pool;
    let pool = pool.0.take().expect("the pool");
    thread::spawn(move || {
        pool.shutdown();
        let _ = done_tx.send(());
    });
    let returned = done_rx.recv_timeout(LIMIT).is_ok();
    // SAFETY: plain system calls on the child's pid.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    assert!(
        returned,
        "shutdown waited for a process that merely holds the pipes"
    );
}
