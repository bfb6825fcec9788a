//! Workers that are forks of the pool's process (`Launcher::forking`, the
//! seam under the Python package's `fork` start method), driven through the
//! engine with a codec and a worker handler of the test's own.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use concurrent_futures::process::Launcher;
use concurrent_futures::process::engine::{Call, Codec, Engine, EngineOptions, Sink};
use concurrent_futures::process::worker::{CallHandler, serve_forked};
use concurrent_futures::{Error, TaskErrorKind, WorkerId};

const PROOF: &[u8] = b"forked test worker";

/// The descriptor a call that waits at the gate reads its byte from.
static GATE: AtomicI32 = AtomicI32::new(-1);

/// What `serve_forked` returned when the test called it in the pool's
/// process (it must refuse there).
static IN_PARENT: AtomicI32 = AtomicI32::new(-1);

/// Runs `pid` (this worker's pid and parent) and `pipes` (waits for a
/// byte at the gate, then names the pipes this process holds above the
/// standard streams, and its pid).
struct TestHandler;

impl CallHandler for TestHandler {
    fn proof(&mut self) -> Vec<u8> {
        PROOF.to_vec()
    }

    fn init(&mut self, _: &[u8], _: &[u8]) -> Result<(), Vec<u8>> {
        Ok(())
    }

    fn call(&mut self, function: &[u8], _: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
        match function {
            b"pid" => {
                let pid = std::process::id();
                let parent = std::os::unix::process::parent_id();
                out.extend_from_slice(format!("{pid} {parent}").as_bytes());
                Ok(())
            }
            b"pipes" => {
                // SAFETY: the gate is open in this process (inherited) and
                // only read here, through a `File` that is then forgotten.
                let mut gate = unsafe { fs::File::from_raw_fd(GATE.load(SeqCst)) };
                let mut byte = [0u8];
                let read = gate.read_exact(&mut byte);
                std::mem::forget(gate);
                read.map_err(|e| e.to_string().into_bytes())?;
                let pipes: Vec<String> = pipes_held().iter().map(u64::to_string).collect();
                out.extend_from_slice(
                    format!("{} {}", std::process::id(), pipes.join(",")).as_bytes(),
                );
                Ok(())
            }
            _ => Err(b"no such function".to_vec()),
        }
    }

    fn failure(&mut self, _: TaskErrorKind, message: &str) -> Vec<u8> {
        message.as_bytes().to_vec()
    }
}

/// The inodes of the pipes this process holds above the standard streams.
fn pipes_held() -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for entry in fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(number) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let target = fs::read_link(entry.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        if number > 2
            && let Some(inode) = target
                .strip_prefix("pipe:[")
                .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.parse().unwrap());
        }
    }
    inodes
}

struct TestCodec;

impl Codec for TestCodec {
    fn check_worker(&self, proof: &[u8]) -> Result<(), String> {
        (proof == PROOF)
            .then_some(())
            .ok_or_else(|| "not a test worker".to_owned())
    }

    fn failure_text(&self, failure: &[u8]) -> String {
        String::from_utf8_lossy(failure).into_owned()
    }
}

/// One call's outcome, sent on a channel.
struct Answer(crossbeam_channel::Sender<Result<String, String>>);

impl Sink for Answer {
    fn start(&self) -> bool {
        true
    }

    fn answer(&self, _: usize, _: &WorkerId, outcome: Result<Bytes, Bytes>) {
        let text = |b: Bytes| String::from_utf8_lossy(&b).into_owned();
        let _ = self.0.send(outcome.map(text).map_err(text));
    }

    fn fail(&self, _: usize, error: Error) {
        let _ = self.0.send(Err(error.to_string()));
    }

    fn cancel(&self, index: usize) {
        self.fail(index, Error::Cancelled);
    }

    fn position(&self, _: usize) -> Option<usize> {
        None
    }
}

fn call(
    engine: &Engine,
    function: &'static [u8],
) -> crossbeam_channel::Receiver<Result<String, String>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let call = Call::single(Bytes::from_static(function), Bytes::new());
    engine
        .submit(call, Arc::new(Answer(tx)))
        .unwrap_or_else(|_| panic!("the engine takes the call"));
    rx
}

const LIMIT: Duration = Duration::from_secs(30);

/// Forks with `libc::fork`; the child serves and `_exit`s.
fn fork_and_serve(pipes: &concurrent_futures::process::ForkPipes) -> io::Result<u32> {
    // SAFETY: the child runs only the worker loop (reads, writes,
    // allocation, which glibc keeps usable in a forked child) and `_exit`s.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let code = serve_forked(pipes, TestHandler);
            // SAFETY: ends the child at once, as `serve_forked` asks.
            unsafe { libc::_exit(code) }
        }
        pid => {
            IN_PARENT.store(serve_forked(pipes, TestHandler), SeqCst);
            Ok(pid as u32)
        }
    }
}

#[test]
fn forked_workers_serve_and_hold_none_of_the_pools_other_pipes() {
    let (gate_read, gate_write) = rustix::pipe::pipe().unwrap();
    GATE.store(gate_read.as_raw_fd(), SeqCst);
    let before = pipes_held();
    let launcher = Launcher::forking(fork_and_serve);
    let engine = Engine::start(EngineOptions::new(2), launcher, Arc::new(TestCodec)).unwrap();
    engine.start_workers(2);
    assert_eq!(engine.workers(LIMIT).len(), 2);

    // A worker is a child of this process, and serving refuses to run in
    // the pool's own process.
    let answer = call(&engine, b"pid").recv_timeout(LIMIT).unwrap().unwrap();
    let (_, parent) = answer.split_once(' ').unwrap();
    assert_eq!(parent, std::process::id().to_string());
    assert_eq!(IN_PARENT.load(SeqCst), 5);

    // Both workers at the gate, then both let through: each names the
    // pipes it holds. The second one forked while this process held the
    // first one's pipes; it closed them.
    let answers = [call(&engine, b"pipes"), call(&engine, b"pipes")];
    let mut gate = fs::File::from(gate_write);
    gate.write_all(b"go").unwrap();
    let held: Vec<(String, BTreeSet<u64>)> = answers
        .iter()
        .map(|rx| {
            let answer = rx.recv_timeout(LIMIT).unwrap().unwrap();
            let (pid, pipes) = answer.split_once(' ').unwrap();
            let pipes = pipes
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| p.parse::<u64>().unwrap())
                .filter(|p| !before.contains(p))
                .collect();
            (pid.to_owned(), pipes)
        })
        .collect();
    assert_ne!(held[0].0, held[1].0, "one call on each worker");
    for (pid, pipes) in &held {
        assert_eq!(
            pipes.len(),
            2,
            "worker {pid} holds only its own two pipes: {pipes:?}"
        );
    }
    assert!(held[0].1.is_disjoint(&held[1].1), "{held:?}");
    engine.shutdown(concurrent_futures::Shutdown::default());
    assert!(engine.join(Some(LIMIT)), "the workers end at shutdown");
}

#[test]
fn a_start_function_that_fails_or_panics_breaks_the_pool_with_its_reason() {
    let failing = Launcher::forking(|_| Err(io::Error::other("no fork today")));
    let engine = Engine::start(EngineOptions::new(1), failing, Arc::new(TestCodec)).unwrap();
    let failure = call(&engine, b"pid")
        .recv_timeout(LIMIT)
        .unwrap()
        .unwrap_err();
    assert!(failure.contains("no fork today"), "{failure}");

    let panicking = Launcher::forking(|_| panic!("the starter's own bug"));
    let engine = Engine::start(EngineOptions::new(1), panicking, Arc::new(TestCodec)).unwrap();
    let failure = call(&engine, b"pid")
        .recv_timeout(LIMIT)
        .unwrap()
        .unwrap_err();
    assert!(failure.contains("panicked"), "{failure}");
}

#[test]
fn a_child_that_returns_from_the_start_function_ends_there() {
    let children = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&children);
    // The child's copy of this function returns instead of serving.
    let launcher = Launcher::forking(move |_| {
        // SAFETY: the child does nothing but return, which the transport
        // answers with `_exit`.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => Ok(1),
            pid => {
                record.lock().unwrap().push(pid);
                Ok(pid as u32)
            }
        }
    });
    let engine = Engine::start(EngineOptions::new(1), launcher, Arc::new(TestCodec)).unwrap();
    let failure = call(&engine, b"pid")
        .recv_timeout(LIMIT)
        .unwrap()
        .unwrap_err();
    assert!(failure.contains("never started its loop"), "{failure}");
    assert!(failure.contains("127"), "the child's exit code: {failure}");
    assert_eq!(
        children.lock().unwrap().len(),
        1,
        "the child started no pool of its own"
    );
}
