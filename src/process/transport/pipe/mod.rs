//! The pipe transport: each worker a fresh process of a program (see
//! [`Launcher`]), spoken to over two pipes (SPEC P4).
//!
//! The child gets its pipe ends, named in an environment variable
//! (`spawn.rs`), and its first step sets `PR_SET_PDEATHSIG = SIGKILL`, so
//! it dies with the thread that started it (the engine's long-lived
//! supervisor) and thus with the parent (SPEC P10). Signals go through a pidfd, which cannot hit a recycled pid; where
//! the system offers none (an old kernel, or valgrind), by pid, but only
//! until the worker is reaped, before which its pid cannot be reused.
//! Writing never blocks a caller (`input.rs`); reading ends when the worker
//! exits, even if a process it forked keeps the pipe open (`output.rs`).
//! One reader thread per worker reads its frames, reports them, and reaps
//! the worker when its output ends.

pub(crate) mod inherited;
mod input;
mod output;
mod spawn;

pub(crate) use self::inherited::PipeEnd;

use std::io::{self, BufReader};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;

use parking_lot::Mutex;
use rustix::process::{Pid, Signal, WaitOptions, kill_process, pidfd_send_signal, waitpid};

use self::input::Input;
use self::output::Output;
use self::spawn::spawn;
use super::wire::{self, FromWorkerHead, read_frame};
use super::{Link, LinkEvents, SendAhead, StopHow, Stops, ToWorker, Transport};
use crate::error::{ExitCause, WorkerId};
use crate::process::launcher::Launcher;

/// The variable that marks a process as a worker:
/// `<pool's pid>,<read fd>,<write fd>,<read pipe's inode>,<write pipe's
/// inode>`. Only a direct child of that pid is the worker it names;
/// processes its tasks start inherit the variable and ignore it, so nobody
/// needs to change the environment (which would be unsound while other
/// threads may read it). The inodes tell a worker whose pool died before
/// it looked (it still holds those very pipes) from such a process (whose
/// descriptors of those numbers, if any, are other files: a worker's pipes
/// are close-on-exec).
pub(crate) const WORKER_ENV: &str = "CONCURRENT_FUTURES_WORKER";

/// What the worker variable says about this process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Not set: not a worker.
    Absent,
    /// This process is a worker, with these pipe ends.
    Mine { read_fd: i32, write_fd: i32 },
    /// This process was started as a worker, but its pool is gone.
    Orphaned,
    /// Set for another process (this one was started by a worker's task).
    Others,
    /// Set but not understood.
    Malformed,
}

/// Reads the worker variable.
pub(crate) fn marker() -> Marker {
    match std::env::var_os(WORKER_ENV) {
        Some(spec) => marker_of(&spec),
        None => Marker::Absent,
    }
}

/// What a set worker variable says about this process.
fn marker_of(spec: &std::ffi::OsStr) -> Marker {
    let parsed = spec.to_str().and_then(|s| {
        let mut parts = s.split(',');
        let mut number = || parts.next()?.parse::<u64>().ok();
        let fields = (number()?, number()?, number()?, number()?, number()?);
        parts.next().is_none().then_some(fields)
    });
    let Some((parent, read_fd, write_fd, read_inode, write_inode)) = parsed else {
        return Marker::Malformed;
    };
    let (Ok(read_fd), Ok(write_fd)) = (i32::try_from(read_fd), i32::try_from(write_fd)) else {
        return Marker::Malformed;
    };
    if read_fd <= 2 || write_fd <= 2 || read_fd == write_fd {
        return Marker::Malformed;
    }
    let ours = rustix::process::getppid()
        .is_some_and(|p| u64::try_from(p.as_raw_nonzero().get()) == Ok(parent));
    if ours {
        Marker::Mine { read_fd, write_fd }
    } else if is_pipe(read_fd, read_inode) && is_pipe(write_fd, write_inode) {
        Marker::Orphaned
    } else {
        Marker::Others
    }
}

/// Whether descriptor `fd` of this process is the pipe with inode `inode`.
fn is_pipe(fd: i32, inode: u64) -> bool {
    // SAFETY: only borrowed for the `fstat` below, which fails harmlessly
    // if `fd` is not open.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
            && st.st_ino == inode
    })
}

/// A worker's first step, before anything of its own: it dies with the
/// pool's thread that started it (SPEC P10), as a child started by `fork`
/// would have been told to before `exec`. False when the pool has already
/// gone, before the request could take effect: the worker must exit.
pub(crate) fn die_with_the_pool() -> bool {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    // The pool may have died before the line above took effect.
    matches!(marker(), Marker::Mine { .. })
}

/// [`die_with_the_pool`] for a worker forked by the pool's process `pool`.
pub(crate) fn die_with_pool_process(pool: u32) -> bool {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    rustix::process::getppid().is_some_and(|p| u32::try_from(p.as_raw_nonzero().get()) == Ok(pool))
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
        let mut output = started.output;
        output.report_to(Arc::clone(&events));
        let process = Arc::clone(&started.process);
        let reader = std::thread::Builder::new()
            .name(format!("process-pool-reader-{pid}"))
            .spawn(move || read_until_exit(&process, output, &*events));
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

    /// Waits for the process to end and reaps it.
    fn wait(&self) -> io::Result<ExitStatus> {
        loop {
            match waitpid(Some(self.pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => return Ok(ExitStatus::from_raw(status.as_raw())),
                Ok(None) => return Err(io::Error::other("no status")),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
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
fn read_until_exit(process: &Process, output: Output, events: &dyn LinkEvents) {
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
    events.ended(exit_cause(process.wait()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_worker_whose_pool_is_gone_is_told_from_a_process_its_task_started() {
        let (read_end, write_end) = rustix::pipe::pipe().unwrap();
        let inode = |fd: &OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
        let (r, w) = (read_end.as_raw_fd(), write_end.as_raw_fd());
        let (ri, wi) = (inode(&read_end), inode(&write_end));
        let parent = rustix::process::getppid().unwrap().as_raw_nonzero();
        let spec = |parent: u64, ri: u64, wi: u64| format!("{parent},{r},{w},{ri},{wi}");
        assert_eq!(
            marker_of(spec(parent.get() as u64, 0, 0).as_ref()),
            Marker::Mine {
                read_fd: r,
                write_fd: w
            }
        );
        // Another parent, and this process holds those very pipes: a
        // worker whose pool died before it looked.
        let other = u64::from(u32::MAX) + 1;
        assert_eq!(marker_of(spec(other, ri, wi).as_ref()), Marker::Orphaned);
        // Another parent, and other files at those numbers.
        assert_eq!(marker_of(spec(other, ri + 1, wi).as_ref()), Marker::Others);
        assert_eq!(marker_of("3,4".as_ref()), Marker::Malformed);
        assert_eq!(
            marker_of(format!("{parent},2,{w},0,0").as_ref()),
            Marker::Malformed
        );
    }
}
