//! Helpers for the process pool tests: bounded waits, processes told
//! apart from their pid's reuse, a [`Gate`] where tasks report and wait
//! for orders, and child runs of the test binary in a role.
//!
//! Tasks that must stay running while the test acts on them wait at a
//! [`Gate`]: a Unix socket the test listens on. A task connects, sends its
//! worker's pid and blocks until the test sends it an order (return,
//! abort, segfault, ...). That gives the test the worker's pid and full
//! control of when and how the task ends, with no sleeping: every wait is
//! a bounded poll or a bounded blocking call.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::ops::Deref;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{Error, Future, ProcessPoolExecutor};

/// A process pool that is killed and leaked instead of dropped when the
/// test fails: a stuck worker (or future) would make the pool's `Drop`, or
/// the exit of the test binary (SPEC E3), wait forever and hide the
/// failure.
pub struct Pool(pub Option<ProcessPoolExecutor>);

impl Deref for Pool {
    type Target = ProcessPoolExecutor;

    fn deref(&self) -> &ProcessPoolExecutor {
        self.0.as_ref().expect("the pool is there until dropped")
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            if thread::panicking() {
                pool.kill_workers();
                std::mem::forget(pool);
            }
        }
    }
}

/// Upper bound for anything that should happen promptly, generous for a
/// loaded machine. Only ever an upper bound: nothing waits this long
/// unless the library is broken.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Set in a child run of this binary: which `role_*` test acts.
pub const ROLE: &str = "CF_TEST_ROLE";

/// The future's outcome, failing the test if it is not done in time.
pub fn settle<T>(f: &Future<T>) -> Result<&T, Error> {
    match f.result_timeout(LIMIT) {
        Err(Error::Timeout) if !f.done() => panic!("a future was not done within {LIMIT:?}"),
        other => other,
    }
}

/// Polls `done` until it holds, failing the test after [`LIMIT`].
pub fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// `(state, ppid, start time)` of process `pid` from `/proc`, if it exists.
pub fn proc_stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain anything) start at
    // field 3, the state; the ppid is field 4 and the start time field 22.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// One process, told apart from a later one that reuses its pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proc {
    pub pid: u32,
    pub start: u64,
}

impl Proc {
    pub fn of(pid: u32) -> Option<Proc> {
        proc_stat(pid).map(|(_, _, start)| Proc { pid, start })
    }

    /// `(state, ppid)` while this very process exists (also as a zombie).
    pub fn stat(&self) -> Option<(char, u32)> {
        match proc_stat(self.pid) {
            Some((state, ppid, start)) if start == self.start => Some((state, ppid)),
            _ => None,
        }
    }

    /// Still a child of this test process: running, or a zombie nobody
    /// reaped.
    pub fn unreaped(&self) -> bool {
        self.stat()
            .is_some_and(|(_, ppid)| ppid == std::process::id())
    }

    /// Still running (neither gone nor a zombie).
    pub fn running(&self) -> bool {
        self.stat()
            .is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
    }
}

/// Every one of `procs` is gone and reaped, now.
pub fn assert_reaped(procs: &[Proc]) {
    let left: Vec<_> = procs.iter().filter(|p| p.unreaped()).collect();
    assert!(left.is_empty(), "worker processes not reaped: {left:?}");
}

/// Every one of `procs` gets reaped, within [`LIMIT`].
pub fn wait_reaped(procs: &[Proc]) {
    poll_until(&format!("reaping of {procs:?}"), || {
        procs.iter().all(|p| !p.unreaped())
    });
}

pub fn sigkill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a valid pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill -9");
}

/// Where gated tasks report and wait for orders (see the file's docs).
pub struct Gate {
    pub listener: UnixListener,
    pub path: PathBuf,
}

/// A task waiting at a [`Gate`]: its worker and its connection. Dropping it
/// lets the task return.
pub struct Arrival {
    pub worker: Proc,
    pub stream: UnixStream,
}

/// Orders for a task at the gate.
pub const RETURN: u8 = b'r';
pub const ABORT: u8 = b'a';
pub const SEGFAULT: u8 = b's';

impl Gate {
    pub fn new() -> Gate {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Gate::at(std::env::temp_dir().join(format!(
            "cf-process-test-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        )))
    }

    /// A gate at `path`, for tasks that compute where to report.
    pub fn at(path: impl Into<PathBuf>) -> Gate {
        let path = path.into();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the gate's socket");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        Gate { listener, path }
    }

    pub fn path(&self) -> String {
        self.path.to_str().expect("a UTF-8 temp path").to_owned()
    }

    /// The next task to reach the gate, within [`LIMIT`].
    pub fn arrival(&self) -> Arrival {
        let (stream, pid) = self.accept();
        let worker = Proc::of(pid).expect("the task's worker is alive at the gate");
        Arrival { worker, stream }
    }

    /// The pid a task left at the gate, within [`LIMIT`], for tasks that
    /// do not wait (their worker may be gone by now).
    pub fn trace(&self) -> u32 {
        self.accept().1
    }

    pub fn accept(&self) -> (UnixStream, u32) {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).expect("a blocking stream");
                    stream
                        .set_read_timeout(Some(LIMIT))
                        .expect("a read timeout");
                    let mut pid = [0; 4];
                    stream.read_exact(&mut pid).expect("the task sends its pid");
                    return (stream, u32::from_le_bytes(pid));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "no task reached the gate within {LIMIT:?}"
                    );
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept at the gate: {e}"),
            }
        }
    }

    /// True when no task is waiting to be let in.
    pub fn nobody_waiting(&self) -> bool {
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(e) => panic!("accept at the gate: {e}"),
            Ok(_) => false,
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Arrival {
    pub fn pid(&self) -> u32 {
        self.worker.pid
    }

    /// Sends the task its order; a task that already died is no error.
    pub fn order(&self, order: u8) {
        let _ = (&self.stream).write_all(&[order]);
    }

    pub fn release(self) {
        self.order(RETURN);
    }
}

// ------------------------------------------------- tasks (run in workers) ----

/// Reports at the gate, waits for an order, carries it out; returns the
/// worker's pid. The test dropping its end counts as "return".
pub fn gated(path: String) -> u32 {
    let mut stream = UnixStream::connect(&path).expect("connect to the gate");
    stream
        .write_all(&std::process::id().to_le_bytes())
        .expect("report at the gate");
    let mut order = [RETURN];
    let _ = stream.read(&mut order);
    match order[0] {
        ABORT => std::process::abort(),
        SEGFAULT => {
            let unmapped = std::ptr::without_provenance_mut::<u8>(16);
            // SAFETY: not sound, on purpose: the write hits the unmapped
            // first page, so this worker dies of SIGSEGV right here.
            unsafe { unmapped.write_volatile(1) };
            unreachable!("the write above faults");
        }
        _ => std::process::id(),
    }
}

/// Reports at the gate, hangs up and then never returns (nor holds a
/// connection that could end it).
pub fn report_and_park(path: String) {
    let mut stream = UnixStream::connect(&path).expect("connect to the gate");
    stream
        .write_all(&std::process::id().to_le_bytes())
        .expect("report at the gate");
    drop(stream);
    loop {
        thread::park();
    }
}

/// Leaves a trace at the gate and returns at once.
pub fn touch(path: String) -> u32 {
    let mut stream = UnixStream::connect(&path).expect("connect to the gate");
    stream
        .write_all(&std::process::id().to_le_bytes())
        .expect("report at the gate");
    std::process::id()
}

pub fn whoami(_: ()) -> u32 {
    std::process::id()
}

// ------------------------------------------ child runs of this binary ----

/// Runs this binary again, running only the test `test` with [`ROLE`] =
/// `role`; stdin and stdout piped.
pub fn spawn_role(test: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run this test binary again")
}

/// Waits for `child` within [`LIMIT`]; kills it and fails the test if it
/// does not exit in time.
pub fn wait_child(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child process did not exit within {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Reads `child`'s stdout on a thread; the lines arrive on the channel.
pub fn stdout_lines(child: &mut Child) -> crossbeam_channel::Receiver<String> {
    let stdout = child.stdout.take().expect("a piped stdout");
    let (tx, rx) = crossbeam_channel::unbounded();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What follows `marker` on the first line of `lines` that has it, within
/// [`LIMIT`]. (The harness prints `test <name> ... ` before a test's own
/// output, on the same line.)
pub fn after_marker(lines: &crossbeam_channel::Receiver<String>, marker: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let line = lines
            .recv_deadline(deadline)
            .unwrap_or_else(|e| panic!("no line with {marker:?}: {e}"));
        if let Some((_, rest)) = line.split_once(marker) {
            return rest.trim().to_owned();
        }
    }
}

pub fn role_is(role: &str) -> bool {
    std::env::var(ROLE).is_ok_and(|r| r == role)
}
