//! A worker's input: frames written without ever blocking the sender
//! (SPEC E1: `submit` returns at once, whatever the worker is doing).
//!
//! The pipe is non-blocking. A sender writes its frame straight into it
//! when nothing is waiting ahead of it, which is the common case and
//! costs no thread hand-off. Whatever does not fit (a large argument, or a
//! worker that is not reading: still starting, in its initializer, busy)
//! is queued for this input's writer thread, started the first time it is
//! needed, which waits for the pipe to drain and writes the rest in order.
//! Only that thread ever waits on this worker's pipe, so no thread that
//! serves other workers, the supervisor or a caller is held up by it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use rustix::event::{PollFd, PollFlags, poll};

use crate::process::transport::wire::Frame;

/// The most slices one `writev` is given; the rest go in the next call. A
/// frame has a header, a function and its arguments, usually in one
/// slice (only a chunk sent again in pieces has more): three each, for the
/// frames one flush writes at once.
const MAX_SLICES: usize = 3 * MAX_FRAMES_AT_ONCE;

/// How many queued frames one flush takes at a time.
const MAX_FRAMES_AT_ONCE: usize = 16;

/// A frame partly written.
struct Pending {
    frame: Frame,
    written: usize,
}

enum Progress {
    Done,
    WouldBlock,
}

impl Pending {
    /// Writes as much as the pipe takes now.
    fn write_some(&mut self, fd: &OwnedFd) -> io::Result<Progress> {
        write_frames_from(fd, std::slice::from_mut(self), &mut 0)
    }

    /// Writes all of it, waiting for the pipe as needed.
    fn write_all(&mut self, fd: &OwnedFd) -> io::Result<()> {
        loop {
            match self.write_some(fd)? {
                Progress::Done => return Ok(()),
                Progress::WouldBlock => {
                    let mut fds = [PollFd::new(fd, PollFlags::OUT)];
                    match poll(&mut fds, None) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}

/// Writes `frames`, in order, as far as the pipe takes them now: as few
/// `writev` calls as [`MAX_SLICES`] allows. Frames fully written are
/// removed; the first one left may be partly written.
fn write_frames(fd: &OwnedFd, frames: &mut Vec<Pending>) -> io::Result<Progress> {
    let mut done = 0;
    let progress = write_frames_from(fd, frames, &mut done);
    frames.drain(..done);
    progress
}

/// [`write_frames`] on a slice: `done` counts the frames fully written.
fn write_frames_from(
    fd: &OwnedFd,
    frames: &mut [Pending],
    done: &mut usize,
) -> io::Result<Progress> {
    while *done < frames.len() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut count = 0;
        'frames: for pending in &frames[*done..] {
            let mut skip = pending.written;
            let parts = std::iter::once(&pending.frame.head[..])
                .chain(pending.frame.body.iter().map(|b| &b[..]));
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                count += 1;
                skip = 0;
                if count == MAX_SLICES {
                    break 'frames;
                }
            }
        }
        if count == 0 {
            // Only empty frames left (none are made): nothing to write.
            *done = frames.len();
            break;
        }
        let mut written = match rustix::io::writev(fd, &slices[..count]) {
            Ok(n) => n,
            Err(rustix::io::Errno::AGAIN) => return Ok(Progress::WouldBlock),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for pending in &mut frames[*done..] {
            let left = pending.frame.len() - pending.written;
            if written < left {
                pending.written += written;
                break;
            }
            written -= left;
            pending.written += left;
            *done += 1;
        }
    }
    Ok(Progress::Done)
}

struct State {
    /// `None` once closed: nothing more is written, and the pipe closes as
    /// soon as no write is under way, which ends the worker's loop.
    fd: Option<Arc<OwnedFd>>,
    /// Frames not yet (fully) written, in order.
    queue: VecDeque<Pending>,
    /// Somebody is writing the queue: a flushing sender, or the writer
    /// thread once the pipe was full. Nobody else writes meanwhile, so
    /// frames go out whole and in order.
    writing: bool,
    /// The writer thread is asked to take over (the pipe was full).
    hand_over: bool,
    writer_started: bool,
    /// The buffer [`Input::flush`] takes frames into, kept between flushes.
    batch: Vec<Pending>,
}

/// The pool's end of a worker's input.
///
/// Sending is two steps, so that callers can fix the order of frames under
/// a lock of their own and write after releasing it: [`push`](Self::push)
/// queues a frame (cheap, in the caller's order), [`flush`](Self::flush)
/// writes what is queued without ever blocking.
pub(crate) struct Input {
    state: Mutex<State>,
    work: Condvar,
    name: String,
}

impl Input {
    /// `fd` must be non-blocking.
    pub(crate) fn new(fd: OwnedFd, name: String) -> Arc<Input> {
        Arc::new(Input {
            state: Mutex::new(State {
                fd: Some(Arc::new(fd)),
                queue: VecDeque::new(),
                writing: false,
                hand_over: false,
                writer_started: false,
                batch: Vec::new(),
            }),
            work: Condvar::new(),
            name,
        })
    }

    /// Queues `frame` after every frame queued before it. A frame for a
    /// worker that has died or was closed is dropped: the worker's end is
    /// reported by its reader.
    pub(crate) fn push(&self, frame: Frame) {
        let mut state = self.state.lock();
        if state.fd.is_some() {
            state.queue.push_back(Pending { frame, written: 0 });
        }
    }

    /// Writes the queued frames as far as the pipe takes them now; the
    /// writer thread writes the rest. Never blocks on the worker. If
    /// another thread is writing, it writes these too.
    pub(crate) fn flush(self: &Arc<Self>) {
        let mut state = self.state.lock();
        if state.writing {
            return;
        }
        state.writing = true;
        // Reused from flush to flush: no allocation per write.
        let mut batch = std::mem::take(&mut state.batch);
        loop {
            let (Some(fd), false) = (state.fd.clone(), state.queue.is_empty()) else {
                state.writing = false;
                state.batch = batch;
                return;
            };
            // Several frames in one system call: each write may wake the
            // worker, and one wake-up for all of them is what batching
            // saves.
            let take = state.queue.len().min(MAX_FRAMES_AT_ONCE);
            batch.extend(state.queue.drain(..take));
            drop(state);
            let progress = write_frames(&fd, &mut batch);
            state = self.state.lock();
            match progress {
                Ok(Progress::Done) => {}
                Ok(Progress::WouldBlock) => {
                    // Back in front of what was queued meanwhile, in order.
                    for pending in batch.drain(..).rev() {
                        state.queue.push_front(pending);
                    }
                    // `writing` stays set: it is the writer thread's now.
                    self.hand_over(state, &fd);
                    return;
                }
                Err(_) => {
                    state.fd = None;
                    state.queue.clear();
                    state.writing = false;
                    return;
                }
            }
        }
    }

    /// Passes the queue to the writer thread, starting it the first time.
    fn hand_over<'a>(
        self: &'a Arc<Self>,
        mut state: parking_lot::MutexGuard<'a, State>,
        fd: &Arc<OwnedFd>,
    ) {
        state.hand_over = true;
        if state.writer_started {
            self.work.notify_one();
            return;
        }
        let input = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name(format!("process-pool-writer-{}", self.name))
            .spawn(move || input.write_queued());
        match started {
            Ok(_) => state.writer_started = true,
            Err(e) => {
                // No thread to hand the rest to: write it here, late
                // rather than never.
                tracing::warn!(%e, "could not start a writer thread; writing in the caller");
                state.hand_over = false;
                while let Some(mut p) = state.queue.pop_front() {
                    drop(state);
                    let written = p.write_all(fd);
                    state = self.state.lock();
                    if written.is_err() {
                        state.fd = None;
                        state.queue.clear();
                    }
                }
                state.writing = false;
            }
        }
    }

    /// Stops writing: queued frames are dropped, and the pipe closes once
    /// no write holds it, so the worker reads the end of its input.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        // The end frame first, when it can go whole and in order: nothing
        // queued, no write under way. A pipe write this small is atomic:
        // all of it, or (the pipe full) none.
        if !state.writing
            && state.queue.is_empty()
            && let (Some(fd), Ok(end)) = (&state.fd, super::super::wire::end_frame())
        {
            let _ = rustix::io::write(&**fd, &end);
        }
        state.fd = None;
        state.queue.clear();
        self.work.notify_one();
    }

    /// The writer thread: whenever handed the queue, writes all of it,
    /// waiting for the pipe as needed, then gives writing back.
    fn write_queued(self: Arc<Self>) {
        let mut state = self.state.lock();
        loop {
            if state.fd.is_none() {
                return;
            }
            if !state.hand_over {
                self.work.wait(&mut state);
                continue;
            }
            let (Some(fd), Some(mut pending)) = (state.fd.clone(), state.queue.pop_front()) else {
                state.hand_over = false;
                state.writing = false;
                continue;
            };
            drop(state);
            let written = pending.write_all(&fd);
            drop(fd);
            state = self.state.lock();
            if written.is_err() {
                // The worker is gone; its reader reports how it ended.
                state.fd = None;
                state.queue.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rustix::pipe::{PipeFlags, pipe_with};
    use std::io::Read;

    #[test]
    fn frames_larger_than_the_pipe_arrive_whole_and_in_order_without_blocking_the_sender() {
        let (read_end, write_end) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).unwrap();
        rustix::fs::fcntl_setfl(&read_end, rustix::fs::OFlags::empty()).unwrap();
        let input = Input::new(write_end, "test".into());
        let big = Bytes::from(vec![7u8; 1 << 20]);
        // Nobody reads yet: both sends must return at once.
        input.push(Frame {
            head: b"one:"[..].into(),
            body: smallvec::smallvec![big.clone()],
        });
        input.flush();
        input.push(Frame {
            head: b"two:"[..].into(),
            body: smallvec::smallvec![Bytes::from_static(b"end")],
        });
        input.flush();
        let mut got = vec![0u8; 4 + (1 << 20) + 7];
        let mut file = std::fs::File::from(read_end);
        file.read_exact(&mut got).unwrap();
        input.close();
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).unwrap();
        // Closing ends the input, after the end frame when it could go at
        // once (the writer thread may still hold the pipe: then without).
        let end = super::super::super::wire::end_frame().unwrap();
        assert!(
            rest.is_empty() || rest[..] == end[..],
            "closing ends the input"
        );
        assert_eq!(&got[..4], b"one:");
        assert!(got[4..4 + (1 << 20)].iter().all(|&b| b == 7));
        assert_eq!(&got[4 + (1 << 20)..], b"two:end");
    }

    #[test]
    fn frames_queued_together_go_out_whole_and_in_order_even_when_the_pipe_fills_midway() {
        let (read_end, write_end) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).unwrap();
        rustix::fs::fcntl_setfl(&read_end, rustix::fs::OFlags::empty()).unwrap();
        let input = Input::new(write_end, "test".into());
        // More frames than one flush takes at once, and more bytes than the
        // pipe holds: the writer thread finishes what the flush could not.
        let frames: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 5_000 + usize::from(i)]).collect();
        for frame in &frames {
            input.push(Frame {
                head: smallvec::SmallVec::from_slice(&frame[..1]),
                body: smallvec::smallvec![Bytes::copy_from_slice(&frame[1..])],
            });
        }
        input.flush();
        let expected: Vec<u8> = frames.concat();
        let mut got = vec![0u8; expected.len()];
        let mut file = std::fs::File::from(read_end);
        file.read_exact(&mut got).unwrap();
        assert!(got == expected, "frames arrived changed or out of order");
        input.close();
    }
}
