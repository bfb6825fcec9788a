//! How frames reach a worker process and how its end is noticed: pipes to
//! a fresh process of the same executable (SPEC P4). The transport layer.
//!
//! The child gets two pipe ends, named in an environment variable, and
//! `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the thread that spawned it
//! (the pool's long-lived supervisor) and thus with the parent (SPEC P10).
//! Signals go through a pidfd, which cannot hit a recycled pid. Writing
//! never blocks a caller (`input.rs`); reading ends when the worker exits,
//! even if a process it forked keeps the pipe open (`output.rs`).

mod command;
mod input;
mod output;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;

use rustix::fs::{OFlags, fcntl_setfl};
use rustix::io::{FdFlags, fcntl_dupfd_cloexec, fcntl_setfd};
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

pub(crate) use self::command::{WorkerCommand, worker_command};
pub(crate) use self::input::{Frame, Input};
pub(crate) use self::output::Output;
use crate::error::ExitCause;

/// The variable that marks a process as a worker: `<read fd>,<write fd>`.
pub(crate) const WORKER_ENV: &str = "CONCURRENT_FUTURES_WORKER";

/// A started worker process, as the pool holds it.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) pidfd: Arc<OwnedFd>,
    pub(crate) input: Arc<Input>,
    pub(crate) output: Output,
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

/// Starts a worker: this program again, started as the parent was (see
/// `command.rs`), entering the worker loop before `main` (`worker.rs`).
pub(crate) fn spawn(command: &WorkerCommand) -> io::Result<Spawned> {
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
    let mut cmd = Command::new(&command.program);
    if let Some((argv0, args)) = command.argv.split_first() {
        cmd.arg0(argv0).args(args);
    }
    cmd.env(WORKER_ENV, format!("{read_fd},{write_fd}"))
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (fcntl, prctl, getppid); it
    // allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            fcntl_setfd(&child_reads, FdFlags::empty())?;
            fcntl_setfd(&child_writes, FdFlags::empty())?;
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
    let pidfd = match Pid::from_raw(pid as i32).map(|p| pidfd_open(p, PidfdFlags::empty())) {
        Some(Ok(fd)) => Arc::new(fd),
        Some(Err(e)) => return Err(kill_unwatched(child, e.into())),
        None => return Err(kill_unwatched(child, io::Error::other("invalid pid"))),
    };
    Ok(Spawned {
        child,
        pid,
        input: Input::new(parent_writes, pid.to_string()),
        output: Output::new(parent_reads, Arc::clone(&pidfd)),
        pidfd,
    })
}

fn kill_unwatched(mut child: Child, error: io::Error) -> io::Error {
    let _ = child.kill();
    let _ = child.wait();
    error
}

/// Sends `signal` to the worker behind `pidfd`; a worker that already
/// ended is not an error.
pub(crate) fn signal(pidfd: &OwnedFd, signal: Signal) {
    let _ = pidfd_send_signal(pidfd, signal);
}

/// How a reaped worker ended.
pub(crate) fn exit_cause(status: io::Result<ExitStatus>) -> ExitCause {
    match status {
        Ok(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => ExitCause::Signal(sig),
            (None, Some(code)) => ExitCause::Code(code),
            (None, None) => ExitCause::Code(-1),
        },
        Err(_) => ExitCause::Code(-1),
    }
}
