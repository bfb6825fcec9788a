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

/// Reads a worker's answers; end of stream when the worker has exited.
pub(crate) struct Output {
    /// Non-blocking.
    fd: OwnedFd,
    process: Arc<Process>,
    exited: bool,
    /// Called whenever everything the worker wrote so far has been read
    /// and the reader is about to wait for more.
    on_wait: Option<Box<dyn FnMut() + Send>>,
}

impl Output {
    /// `fd` must be non-blocking; `process` is the worker.
    pub(super) fn new(fd: OwnedFd, process: Arc<Process>) -> Self {
        Output {
            fd,
            process,
            exited: false,
            on_wait: None,
        }
    }

    /// Has `f` called each time the reader has caught up with the worker.
    pub(crate) fn on_wait(&mut self, f: impl FnMut() + Send + 'static) {
        self.on_wait = Some(Box::new(f));
    }
}

impl Read for Output {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Always a read first, even after a short one: "caught up"
            // must mean the pipe is empty now (an answer may have come
            // while the reader delivered the last one), or a deadline
            // would be judged with that answer unread.
            match rustix::io::read(&self.fd, &mut *buf) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) if self.exited => return Ok(0),
                Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(f) = &mut self.on_wait {
                f();
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
