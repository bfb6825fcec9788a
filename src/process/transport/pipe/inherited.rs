//! The pool's pipe ends that a worker forked from the pool's process
//! (without `exec`: [`Launcher::forking`](crate::process::Launcher::forking))
//! must close before it serves.
//!
//! A fork copies every descriptor, close-on-exec or not. A forked worker
//! that held another worker's input open would keep that worker from ever
//! reading the end of its input, and a shutdown that waits for it from
//! returning (the end frame sent before closing does not always go: not
//! behind a partly written call). So the transport lists every pipe end it
//! keeps in this process, with the pipe's identity, and a forked worker
//! closes those it holds. The identity matters because the list is only
//! pruned now and then: a number listed may since name another file, which
//! is left alone.
//!
//! Pipes are made under the list's lock, so that a fork on another thread
//! sees each pipe either listed or not yet made. The child reads the list
//! in its copy of this process's memory; should the fork have caught
//! another thread holding the lock (the copy then stays locked), it falls
//! back to the copy taken just before the fork, which may miss a pipe made
//! in between.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use parking_lot::{Mutex, MutexGuard};

/// One listed descriptor: its number and the pipe it was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PipeEnd {
    fd: RawFd,
    dev: u64,
    inode: u64,
}

impl PipeEnd {
    fn of(fd: &OwnedFd) -> io::Result<Self> {
        let st = rustix::fs::fstat(fd)?;
        Ok(PipeEnd {
            fd: fd.as_raw_fd(),
            dev: st.st_dev,
            inode: st.st_ino,
        })
    }

    /// Whether this process's descriptor `fd` is still that pipe.
    fn is_open(&self) -> bool {
        // SAFETY: only borrowed for the `fstat`, which fails harmlessly
        // if the number is not open.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        rustix::fs::fstat(fd).is_ok_and(|st| st.st_dev == self.dev && st.st_ino == self.inode)
    }
}

/// Every pipe end the transport keeps in this process, and some it closed
/// since (pruned when the list has doubled).
pub(crate) struct Ends {
    listed: Vec<PipeEnd>,
    pruned_at: usize,
}

static ENDS: Mutex<Ends> = Mutex::new(Ends {
    listed: Vec::new(),
    pruned_at: 0,
});

/// The list, locked: make pipes while holding it, then [`Ends::add`] the
/// ends this process keeps.
pub(crate) fn lock() -> MutexGuard<'static, Ends> {
    ENDS.lock()
}

impl Ends {
    pub(crate) fn add(&mut self, fd: &OwnedFd) -> io::Result<()> {
        if self.listed.len() >= (2 * self.pruned_at).max(64) {
            self.listed.retain(PipeEnd::is_open);
            self.pruned_at = self.listed.len();
        }
        self.listed.push(PipeEnd::of(fd)?);
        Ok(())
    }
}

/// The list as it is now, for a child that finds it locked.
pub(crate) fn snapshot() -> Vec<PipeEnd> {
    ENDS.lock().listed.clone()
}

/// In a forked worker: closes every listed pipe end it inherited, except
/// its own two pipes' (`keep`). `fallback` is the list taken just before
/// the fork.
pub(crate) fn close_inherited(fallback: &[PipeEnd], keep: [RawFd; 2]) {
    let copy;
    let listed = match ENDS.try_lock() {
        Some(ends) => {
            copy = ends.listed.clone();
            &copy[..]
        }
        None => fallback,
    };
    for end in listed {
        if !keep.contains(&end.fd) && end.is_open() {
            // SAFETY: the number is open and still the pipe end the
            // transport made and owned in the parent, whose copy this
            // process's memory holds but nothing here uses: closing it
            // takes it from nobody.
            drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(end.fd) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_end_counts_as_open_only_while_its_number_is_that_pipe() {
        let (a, _b) = rustix::pipe::pipe().unwrap();
        let end = PipeEnd::of(&a).unwrap();
        assert!(end.is_open());
        drop(a);
        assert!(!end.is_open(), "closed");
        // The number most likely taken again, by another pipe: not the
        // listed end either.
        let (c, _d) = rustix::pipe::pipe().unwrap();
        assert!(!end.is_open(), "fd {} is another pipe", c.as_raw_fd());
    }
}
