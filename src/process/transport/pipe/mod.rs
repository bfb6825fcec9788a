//! The pipe transport: each worker a fresh process of a program (see
//! [`Launcher`]), spoken to over two pipes (SPEC P4).
//!
//! The child gets its pipe ends, named in an environment variable, and
//! `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the thread that started it
//! (the engine's long-lived supervisor) and thus with the parent (SPEC
//! P10). Signals go through a pidfd, which cannot hit a recycled pid; where
//! the system offers none (an old kernel, or valgrind), by pid, but only
//! until the worker is reaped, before which its pid cannot be reused.
//! Writing never blocks a caller (`input.rs`); reading ends when the worker
//! exits, even if a process it forked keeps the pipe open (`output.rs`).
//! One reader thread per worker reads its frames, reports them, and reaps
//! the worker when its output ends.

mod input;
mod output;

use std::io::{self, BufReader};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use rustix::fs::{OFlags, fcntl_setfl};
use rustix::io::{FdFlags, fcntl_dupfd_cloexec, fcntl_setfd};
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};

use self::input::Input;
use self::output::Output;
use super::wire::{self, FromWorkerHead, read_frame};
use super::{Link, LinkEvents, SendAhead, StopHow, Stops, ToWorker, Transport};
use crate::error::{ExitCause, WorkerId};
use crate::process::launcher::Launcher;

/// The variable that marks a process as a worker:
/// `<pool's pid>,<read fd>,<write fd>`. Only a direct child of that pid is
/// the worker it names; processes its tasks start inherit the variable and
/// ignore it, so nobody needs to change the environment (which would be
/// unsound while other threads may read it).
pub(crate) const WORKER_ENV: &str = "CONCURRENT_FUTURES_WORKER";

/// What the worker variable says about this process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Not set: not a worker.
    Absent,
    /// This process is a worker, with these pipe ends.
    Mine { read_fd: i32, write_fd: i32 },
    /// Set for another process (this one was started by a worker's task).
    Others,
    /// Set but not understood.
    Malformed,
}

/// Reads the worker variable.
pub(crate) fn marker() -> Marker {
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return Marker::Absent;
    };
    let parsed = spec.to_str().and_then(|s| {
        let mut parts = s.split(',').map(|p| p.parse::<i32>().ok());
        let fields = (parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(fields)
    });
    match parsed {
        Some((parent, read_fd, write_fd)) if read_fd > 2 && write_fd > 2 && read_fd != write_fd => {
            let ours =
                rustix::process::getppid().is_some_and(|p| p.as_raw_nonzero().get() == parent);
            if ours {
                Marker::Mine { read_fd, write_fd }
            } else {
                Marker::Others
            }
        }
        _ => Marker::Malformed,
    }
}

/// Calls that may wait in a busy worker's pipe. One keeps a worker from
/// idling between a result and its next call (CPython's
/// `EXTRA_QUEUED_CALLS = 1`); a second lets a worker that answers faster
/// than its reader is scheduled go on with the next call instead of
/// sleeping, and lets the reader send both in one write: on a loaded
/// 2-core machine it halved the context switches of a stream of trivial
/// calls. More would add imbalance (a call waits behind a long one) and
/// keep more calls from being cancelled, for little more gain.
const CALLS_AHEAD: usize = 2;

/// Only calls this small are sent ahead: a call waiting in a busy worker's
/// pipe should fit the pipe's buffer (64 KiB by default), so that a dead
/// worker's calls are sent again cheaply. Larger calls go only to workers
/// that are reading.
const SEND_AHEAD_MAX_BYTES: usize = 16 * 1024;

/// Workers as child processes of `launcher`'s program.
pub(crate) struct PipeTransport {
    launcher: Launcher,
}

impl PipeTransport {
    pub(crate) fn new(launcher: Launcher) -> Self {
        PipeTransport { launcher }
    }
}

impl Transport for PipeTransport {
    fn start(&self, events: Arc<dyn LinkEvents>) -> io::Result<Arc<dyn Link>> {
        let started = spawn(&self.launcher)?;
        let pid = started.pid;
        let link = Arc::new(PipeLink {
            worker: WorkerId::process(pid),
            input: started.input,
            process: Arc::clone(&started.process),
        });
        let (child, mut output) = (started.child, started.output);
        let caught_up = Arc::clone(&events);
        output.on_wait(move || caught_up.caught_up());
        let process = Arc::clone(&started.process);
        let reader = std::thread::Builder::new()
            .name(format!("process-pool-reader-{pid}"))
            .spawn(move || read_until_exit(child, &process, output, &*events));
        if let Err(e) = reader {
            // Without its reader the worker cannot be heard: end it.
            link.process.signal(Signal::KILL);
            return Err(e);
        }
        Ok(link)
    }

    fn send_ahead(&self) -> SendAhead {
        SendAhead {
            calls: CALLS_AHEAD,
            max_bytes: SEND_AHEAD_MAX_BYTES,
        }
    }

    fn stops(&self) -> Stops {
        Stops {
            terminate: true,
            kill: true,
        }
    }

    fn name(&self) -> &str {
        "pipes to child processes"
    }
}

/// A worker process, for signalling.
pub(super) struct Process {
    pid: Pid,
    /// `None` where the system has no pidfds.
    pub(super) pidfd: Option<OwnedFd>,
    /// Set just before the process is reaped: from then on its pid may
    /// name another process, so it is signalled no more.
    reaped: Mutex<bool>,
}

impl Process {
    /// Sends `signal`; a process that already ended is not an error.
    fn signal(&self, signal: Signal) {
        match &self.pidfd {
            Some(pidfd) => {
                let _ = pidfd_send_signal(pidfd, signal);
            }
            None => {
                let reaped = self.reaped.lock();
                if !*reaped {
                    let _ = kill_process(self.pid, signal);
                }
            }
        }
    }

    fn reaping(&self) {
        *self.reaped.lock() = true;
    }
}

/// One worker process.
struct PipeLink {
    worker: WorkerId,
    input: Arc<Input>,
    process: Arc<Process>,
}

impl Link for PipeLink {
    fn worker(&self) -> &WorkerId {
        &self.worker
    }

    fn push(&self, message: ToWorker) {
        match wire::to_worker_frame(message) {
            Ok(frame) => self.input.push(frame),
            // Only a function reference over 4 GiB gets here; the call then
            // never answers, and the worker is killed so that it fails.
            Err(e) => {
                tracing::error!(%e, worker = %self.worker, "could not frame a message");
                self.stop(StopHow::Kill);
            }
        }
    }

    fn flush(&self) {
        self.input.flush();
    }

    fn close(&self) {
        self.input.close();
    }

    fn stop(&self, how: StopHow) {
        let signal = match how {
            StopHow::Terminate => Signal::TERM,
            StopHow::Kill => Signal::KILL,
        };
        self.process.signal(signal);
    }
}

/// How many received messages the reader hands over at once, at most.
const MAX_BATCH: usize = 64;

/// The reader thread of one worker: frames in, then the reaping.
///
/// A frame that is already whole in the read buffer after another one
/// joins its batch: the worker answered faster than we read, and the
/// engine takes such a batch as cheaply as one message.
fn read_until_exit(mut child: Child, process: &Process, output: Output, events: &dyn LinkEvents) {
    let mut input = BufReader::new(output);
    let mut header = Vec::new();
    let mut batch = Vec::new();
    let understood = loop {
        match read_frame::<FromWorkerHead>(&mut input, &mut header) {
            Ok(Some((head, payload))) => match wire::from_worker(head, payload) {
                Some(message) => batch.push(message),
                None => break false,
            },
            Ok(None) => break true,
            Err(_) => break false,
        }
        if batch.len() < MAX_BATCH && wire::frame_is_whole(input.buffer()) {
            continue;
        }
        match batch.len() {
            1 => batch.drain(..).for_each(|m| events.received(m)),
            _ => events.received_all(std::mem::take(&mut batch)),
        }
    };
    // What was read before the end still counts.
    if !batch.is_empty() {
        events.received_all(batch);
    }
    drop(input);
    if !understood {
        // A corrupt stream: the worker can no longer be understood.
        process.signal(Signal::KILL);
    }
    // The output ended: the worker has exited or is exiting. Reap it.
    process.reaping();
    let status = child.wait();
    events.ended(exit_cause(status));
}

/// A started worker process.
struct Spawned {
    child: Child,
    pid: u32,
    process: Arc<Process>,
    input: Arc<Input>,
    output: Output,
}

/// A pipe end numbered 3 or above: 0, 1 and 2 are the standard streams,
/// and a child end there (possible when the parent closed one of them)
/// would make the child's stdout our protocol pipe.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(fcntl_dupfd_cloexec(&fd, 3)?)
}

/// Starts a worker process of `launcher`.
fn spawn(launcher: &Launcher) -> io::Result<Spawned> {
    // Every end is close-on-exec; the child's ends are made inheritable
    // only inside the child, between fork and exec, so no other process
    // spawned concurrently inherits them.
    let (child_reads, parent_writes) = pipe_with(PipeFlags::CLOEXEC)?;
    let (parent_reads, child_writes) = pipe_with(PipeFlags::CLOEXEC)?;
    let (child_reads, child_writes) = (above_stdio(child_reads)?, above_stdio(child_writes)?);
    fcntl_setfl(&parent_writes, OFlags::NONBLOCK)?;
    fcntl_setfl(&parent_reads, OFlags::NONBLOCK)?;
    let (read_fd, write_fd) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
    let parent = rustix::process::getpid();
    let mut cmd = Command::new(&launcher.program);
    if let Some(arg0) = &launcher.arg0 {
        cmd.arg0(arg0);
    }
    cmd.args(&launcher.args)
        .envs(launcher.env.iter().map(|(k, v)| (k, v)))
        .env(
            WORKER_ENV,
            format!("{},{read_fd},{write_fd}", parent.as_raw_nonzero()),
        )
        .stdin(Stdio::null());
    let passed = launcher.passed_fds.clone();
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (fcntl, dup2, prctl, getppid);
    // it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            fcntl_setfd(&child_reads, FdFlags::empty())?;
            fcntl_setfd(&child_writes, FdFlags::empty())?;
            for (fd, number) in &passed {
                if *number <= 2 || *number == read_fd || *number == write_fd {
                    return Err(io::Error::other("a passed descriptor's number is taken"));
                }
                pass_fd(fd, *number)?;
            }
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died before the line above took effect.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other("the pool's process exited"));
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id();
    let Some(raw) = Pid::from_raw(pid as i32) else {
        return Err(kill_unwatched(child, io::Error::other("invalid pid")));
    };
    let pidfd = match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(rustix::io::Errno::NOSYS) => None,
        Err(e) => return Err(kill_unwatched(child, e.into())),
    };
    let process = Arc::new(Process {
        pid: raw,
        pidfd,
        reaped: Mutex::new(false),
    });
    Ok(Spawned {
        child,
        pid,
        input: Input::new(parent_writes, pid.to_string()),
        output: Output::new(parent_reads, Arc::clone(&process)),
        process,
    })
}

/// In a child between fork and exec: `fd` as descriptor `number`, kept
/// across exec.
fn pass_fd(fd: &OwnedFd, number: RawFd) -> io::Result<()> {
    if fd.as_raw_fd() != number {
        // SAFETY: dup2 on a descriptor we own onto a number the caller
        // checked is none of ours; async-signal-safe.
        if unsafe { libc::dup2(fd.as_raw_fd(), number) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: fcntl on the descriptor just made; async-signal-safe.
    if unsafe { libc::fcntl(number, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn kill_unwatched(mut child: Child, error: io::Error) -> io::Error {
    let _ = child.kill();
    let _ = child.wait();
    error
}

/// How a reaped worker ended.
fn exit_cause(status: io::Result<ExitStatus>) -> ExitCause {
    match status {
        Ok(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => ExitCause::Signal(sig),
            (None, Some(code)) => ExitCause::Code(code),
            (None, None) => ExitCause::Code(-1),
        },
        Err(_) => ExitCause::Code(-1),
    }
}
