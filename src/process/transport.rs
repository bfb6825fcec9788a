//! How bytes reach a worker process and how its end is noticed: pipes to
//! a fresh process of the same executable (SPEC P4). The transport layer.
//!
//! The child gets two pipe ends, named in an environment variable, and
//! `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the thread that spawned it
//! (the pool's long-lived supervisor) and thus with the parent (SPEC P10).
//! Signals go through a pidfd, which cannot hit a recycled pid.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};

use rustix::io::{FdFlags, fcntl_setfd};
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::error::ExitCause;

/// The variable that marks a process as a worker: `<read fd>,<write fd>`.
pub(crate) const WORKER_ENV: &str = "CONCURRENT_FUTURES_WORKER";

/// A started worker process, as the pool holds it.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) to_child: File,
    pub(crate) from_child: File,
}

/// Starts a worker: this executable again, entering the worker loop before
/// `main` (see `worker.rs`).
pub(crate) fn spawn() -> io::Result<Spawned> {
    // Both pipes are close-on-exec; the child's ends are made inheritable
    // only inside the child, between fork and exec, so no other process
    // spawned concurrently inherits them.
    let (child_reads, parent_writes) = pipe_with(PipeFlags::CLOEXEC)?;
    let (parent_reads, child_writes) = pipe_with(PipeFlags::CLOEXEC)?;
    let (read_fd, write_fd) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
    let parent = rustix::process::getpid();
    let mut command = Command::new("/proc/self/exe");
    command
        .env(WORKER_ENV, format!("{read_fd},{write_fd}"))
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (fcntl, prctl, getppid); it
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
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
    let child = command.spawn()?;
    let pid = child.id();
    let pidfd = match Pid::from_raw(pid as i32).map(|p| pidfd_open(p, PidfdFlags::empty())) {
        Some(Ok(fd)) => fd,
        Some(Err(e)) => return Err(kill_unwatched(child, e.into())),
        None => return Err(kill_unwatched(child, io::Error::other("invalid pid"))),
    };
    Ok(Spawned {
        child,
        pid,
        pidfd,
        to_child: File::from(parent_writes),
        from_child: File::from(parent_reads),
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
