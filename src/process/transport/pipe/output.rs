//! A worker's output, read until the worker is gone.
//!
//! The end of the pipe is not enough to tell: a task that forks leaves a
//! copy of the pipe's write end in the child, and the pipe then stays open
//! after the worker dies. So the reader also watches the worker's pidfd:
//! once the process has exited, whatever is still in the pipe is read and
//! then the output counts as ended, whoever else holds the pipe. (Where
//! the system has no pidfds, only the pipe's end tells.)

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::event::{PollFd, PollFlags, poll};

use super::Process;
use crate::process::transport::LinkEvents;

/// Reads a worker's answers; end of stream when the worker has exited.
pub(crate) struct Output {
    /// Non-blocking.
    fd: OwnedFd,
    process: Arc<Process>,
    exited: bool,
    /// The last read returned less than it was asked for: the pipe was
    /// empty at that moment.
    drained: bool,
    /// Told whenever everything the worker wrote so far has been read and
    /// the reader is about to wait for more.
    events: Option<Arc<dyn LinkEvents>>,
}

impl Output {
    /// `fd` must be non-blocking; `process` is the worker.
    pub(super) fn new(fd: OwnedFd, process: Arc<Process>) -> Self {
        Output {
            fd,
            process,
            exited: false,
            drained: false,
            events: None,
        }
    }

    /// Has `events` told each time the reader has caught up with the
    /// worker ([`LinkEvents::caught_up`]).
    pub(crate) fn report_to(&mut self, events: Arc<dyn LinkEvents>) {
        self.events = Some(events);
    }

    /// Whether the next read may go straight to waiting: the last one
    /// drained the pipe, and nobody needs "caught up" to mean that nothing
    /// came since (an answer may have come while the reader delivered the
    /// last one). That saves a system call per wake-up in the common case.
    fn may_wait_first(&mut self) -> bool {
        std::mem::take(&mut self.drained)
            && !self.exited
            && !self
                .events
                .as_ref()
                .is_some_and(|e| e.needs_exact_catch_up())
    }
}

impl Read for Output {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut wait_first = self.may_wait_first();
        loop {
            // Otherwise a read first, even after a short one: where
            // "caught up" must mean the pipe is empty now, or a deadline
            // would be judged with an answer unread.
            if !std::mem::take(&mut wait_first) {
                match rustix::io::read(&self.fd, &mut *buf) {
                    Ok(n) => {
                        self.drained = n < buf.len();
                        return Ok(n);
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::AGAIN) if self.exited => return Ok(0),
                    Err(rustix::io::Errno::AGAIN) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(events) = &self.events {
                events.caught_up();
            }
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            let watched = match &self.process.pidfd {
                Some(pidfd) => {
                    let mut both = [fds[0].clone(), PollFd::new(pidfd, PollFlags::IN)];
                    let polled = poll(&mut both, None);
                    let exited = !both[1].revents().is_empty();
                    polled.map(|_| exited)
                }
                None => poll(&mut fds, None).map(|_| false),
            };
            match watched {
                // Exited: drain what it wrote, then end.
                Ok(true) => self.exited = true,
                Ok(false) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
