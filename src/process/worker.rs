//! A worker process's side of the pipe transport: the loop that reads
//! calls, runs them with a front end's [`CallHandler`], and answers.
//!
//! The Rust front end's workers enter this loop before `main` (see
//! [`run_worker_if_child`](super::run_worker_if_child)). Another front end
//! starts its own worker program with a [`Launcher`](super::Launcher) and
//! calls [`serve_if_worker`] there with a handler of its own; the frames
//! stay private to this library.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32};

use rustix::io::{FdFlags, fcntl_setfd};
use smallvec::{SmallVec, smallvec};

use super::launcher::ForkPipes;
use super::transport::pipe::{
    Marker, WORKER_ENV, die_with_pool_process, die_with_the_pool, inherited, marker,
};
use super::transport::wire::{
    FromWorkerHead, MAX_FRAME_BYTES, ToWorkerHead, read_frame, write_frame,
};
use crate::error::TaskErrorKind;

/// What a worker does with the calls it gets: the worker's half of a
/// front end's codec. Payloads are whatever the front end's pool side
/// encoded (function references, arguments) and decodes (results,
/// failures).
///
/// # Examples
///
/// A handler whose "functions" are names and whose values are text:
///
/// ```
/// use concurrent_futures::TaskErrorKind;
/// use concurrent_futures::process::worker::CallHandler;
///
/// struct Text;
///
/// impl CallHandler for Text {
///     fn proof(&mut self) -> Vec<u8> {
///         b"text v1".to_vec()
///     }
///
///     fn init(&mut self, _function: &[u8], _arg: &[u8]) -> Result<(), Vec<u8>> {
///         Ok(())
///     }
///
///     fn call(&mut self, function: &[u8], arg: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
///         match function {
///             b"upper" => Ok(out.extend(arg.to_ascii_uppercase())),
///             _ => Err(b"no such function".to_vec()),
///         }
///     }
///
///     fn failure(&mut self, _kind: TaskErrorKind, message: &str) -> Vec<u8> {
///         message.as_bytes().to_vec()
///     }
/// }
///
/// let mut out = Vec::new();
/// Text.call(b"upper", b"abc", &mut out).unwrap();
/// assert_eq!(out, b"ABC");
/// ```
pub trait CallHandler {
    /// What the worker tells the pool first, for the pool's codec to check
    /// that this worker can run its calls (the same program, say).
    fn proof(&mut self) -> Vec<u8>;

    /// Runs the pool's initializer, before any call (SPEC P5).
    ///
    /// # Errors
    ///
    /// The failure, encoded for the pool's codec; the pool breaks with it.
    fn init(&mut self, function: &[u8], arg: &[u8]) -> Result<(), Vec<u8>>;

    /// Runs `function` on `arg`, appending the encoded result to `out`
    /// (empty on entry).
    ///
    /// # Errors
    ///
    /// The failure, encoded for the pool's codec; only this call fails.
    fn call(&mut self, function: &[u8], arg: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>>;

    /// A failure the loop itself must report (an argument too large for
    /// this process's memory, a result too large to send), encoded as
    /// [`call`](Self::call) encodes its own.
    fn failure(&mut self, kind: TaskErrorKind, message: &str) -> Vec<u8>;
}

/// The worker's exit codes, which the pool reads as "ended by itself".
pub(crate) mod exit_code {
    /// The pool closed the input: shutdown, retirement, or its death.
    pub(crate) const INPUT_ENDED: i32 = 0;
    /// The pool's end of the output is gone.
    pub(crate) const OUTPUT_GONE: i32 = 1;
    /// The worker variable was not `<fd>,<fd>`.
    pub(crate) const MALFORMED_MARKER: i32 = 2;
    /// The initializer failed (reported to the pool first).
    pub(crate) const INIT_FAILED: i32 = 3;
    /// A frame did not match its own header.
    pub(crate) const PROTOCOL_ERROR: i32 = 4;
    /// `serve_forked` outside a fresh child of the pool's process.
    pub(crate) const NOT_FORKED: i32 = 5;
}

/// A worker's pipes, taken from the environment.
pub(crate) struct Pipes {
    input: File,
    output: File,
}

/// Set once this process has entered the worker loop: a pool built by one
/// of its tasks is a real pool of its own.
static ENTERED: AtomicBool = AtomicBool::new(false);

/// Whether this process is marked as a worker whose loop has not started
/// (its entry did not run): a pool built here must be refused, or it would
/// start workers that start workers. A marker this process cannot read is
/// taken as one.
pub(crate) fn entry_missing() -> bool {
    match marker() {
        Marker::Absent | Marker::Others => false,
        Marker::Mine { .. } => !ENTERED.load(Relaxed),
        Marker::Orphaned | Marker::Malformed => true,
    }
}

/// The pipes this process was started with, if it is a worker.
pub(crate) fn take_pipes() -> Option<Pipes> {
    let (read_fd, write_fd) = match marker() {
        Marker::Absent | Marker::Others => return None,
        Marker::Mine { read_fd, write_fd } => (read_fd, write_fd),
        // Started by a pool that is gone: nobody to serve.
        Marker::Orphaned => std::process::exit(exit_code::INPUT_ENDED),
        Marker::Malformed => {
            eprintln!("concurrent-futures: malformed {WORKER_ENV}; exiting");
            std::process::exit(exit_code::MALFORMED_MARKER);
        }
    };
    // Only once: a second call finds the loop already ran.
    if ENTERED.swap(true, Relaxed) {
        return None;
    }
    if !die_with_the_pool() {
        std::process::exit(exit_code::INPUT_ENDED);
    }
    // SAFETY: the pool that started this process passed us these two
    // descriptors (the marker names our parent), open and owned by nobody
    // else in this process; both are above the standard streams.
    let (input, output) = unsafe {
        (
            OwnedFd::from_raw_fd(read_fd),
            OwnedFd::from_raw_fd(write_fd),
        )
    };
    // Processes the tasks start must not hold our pipes open: their ends
    // are how the pool notices our death.
    let _ = fcntl_setfd(&input, FdFlags::CLOEXEC);
    let _ = fcntl_setfd(&output, FdFlags::CLOEXEC);
    Some(Pipes {
        input: File::from(input),
        output: File::from(output),
    })
}

/// If this process was started as a pool's worker, serves its calls with
/// `handler` on this thread until the pool closes the input, and returns
/// the exit code to exit with; `None` when this process is no worker.
///
/// A worker program of another front end calls it first thing (CPython's
/// workers: `python -m package._worker`).
///
/// # Examples
///
/// ```no_run
/// # use concurrent_futures::process::worker::{CallHandler, serve_if_worker};
/// # struct MyHandler;
/// # impl CallHandler for MyHandler {
/// #     fn proof(&mut self) -> Vec<u8> { Vec::new() }
/// #     fn init(&mut self, _: &[u8], _: &[u8]) -> Result<(), Vec<u8>> { Ok(()) }
/// #     fn call(&mut self, _: &[u8], _: &[u8], _: &mut Vec<u8>) -> Result<(), Vec<u8>> { Ok(()) }
/// #     fn failure(&mut self, _: concurrent_futures::TaskErrorKind, m: &str) -> Vec<u8> { m.into() }
/// # }
/// // First thing in the worker program:
/// if let Some(code) = serve_if_worker(MyHandler) {
///     std::process::exit(code);
/// }
/// ```
pub fn serve_if_worker(handler: impl CallHandler) -> Option<i32> {
    take_pipes().map(|pipes| serve(pipes, handler))
}

/// In a worker that a [`Launcher::forking`](super::Launcher::forking)
/// function forked: serves the pool with `handler` over `pipes` until the
/// pool closes the input, and returns the exit code, with which the child
/// must then `_exit` at once. First it closes the pool's other pipe ends
/// it inherited (another worker's input kept open here would never end),
/// and sets itself to die with the pool's thread that forked it, as a
/// spawned worker does.
///
/// It takes the two descriptors in `pipes` as its own, so it serves only
/// in a child of the pool's process, once: called in the pool's process,
/// or again, it returns at once (exit code 5) and touches nothing.
///
/// # Examples
///
/// See [`Launcher::forking`](super::Launcher::forking).
pub fn serve_forked(pipes: &ForkPipes, handler: impl CallHandler) -> i32 {
    static SERVED_IN: AtomicU32 = AtomicU32::new(0);
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    // A child's copy of this memory holds its parent's pid, not its own.
    if me == pipes.pool || SERVED_IN.swap(me, Relaxed) == me {
        return exit_code::NOT_FORKED;
    }
    if !die_with_pool_process(pipes.pool) {
        return exit_code::INPUT_ENDED; // The pool died during the fork.
    }
    inherited::close_inherited(&pipes.inherited, [pipes.read_fd, pipes.write_fd]);
    ENTERED.store(true, Relaxed);
    // SAFETY: the transport made these two ends for this child (they are
    // close-on-exec already) and forked it with them; in the child nothing
    // else owns them (the caller's contract: one call, in the child).
    let (input, output) = unsafe {
        (
            OwnedFd::from_raw_fd(pipes.read_fd),
            OwnedFd::from_raw_fd(pipes.write_fd),
        )
    };
    let pipes = Pipes {
        input: File::from(input),
        output: File::from(output),
    };
    serve(pipes, handler)
}

/// Result and answer buffers up to this size are reused between calls;
/// larger ones are freed so one huge result does not pin memory for the
/// worker's life.
const RETAINED_RESULT_BYTES: usize = 1 << 20;

/// Serves calls until the pool closes the input; returns the exit code.
pub(crate) fn serve(pipes: Pipes, mut handler: impl CallHandler) -> i32 {
    let mut input = BufReader::new(pipes.input);
    let mut output = Out {
        writer: BufWriter::new(pipes.output),
        scratch: Vec::new(),
    };
    let proof = handler.proof();
    if !matches!(
        send(&mut output, &FromWorkerHead::Ready, &proof),
        Served::Ok
    ) {
        return exit_code::OUTPUT_GONE;
    }
    let mut buffers = Buffers::default();
    let mut header = Vec::new();
    loop {
        let served = match read_frame::<ToWorkerHead>(&mut input, &mut header) {
            Ok(Some((
                ToWorkerHead::Call {
                    id,
                    function_len,
                    lens,
                    report_each,
                },
                payload,
            ))) => {
                let call = Call {
                    id,
                    lens: &lens,
                    report_each,
                };
                match payload {
                    Ok(bytes) => call.run(
                        &mut handler,
                        function_len,
                        &bytes,
                        &mut buffers,
                        &mut output,
                    ),
                    Err(len) => call.refuse_too_large(&mut handler, len, &mut output),
                }
            }
            Ok(Some((ToWorkerHead::Init { function_len }, payload))) => {
                let outcome = match payload {
                    Ok(bytes) => match bytes.split_at_checked(function_len as usize) {
                        Some((function, arg)) => handler.init(function, arg),
                        None => return exit_code::PROTOCOL_ERROR,
                    },
                    Err(len) => Err(handler.failure(
                        TaskErrorKind::Deserialize,
                        &format!("the initializer's argument ({len} bytes) does not fit in memory"),
                    )),
                };
                match outcome {
                    Ok(()) => send(&mut output, &FromWorkerHead::Initialized, &[]),
                    Err(failure) => {
                        let _ = send(&mut output, &FromWorkerHead::InitFailed, &failure);
                        return exit_code::INIT_FAILED;
                    }
                }
            }
            // The pool closed our input: shutdown, retirement, or its death.
            Ok(Some((ToWorkerHead::End, _))) | Ok(None) | Err(_) => return exit_code::INPUT_ENDED,
        };
        match served {
            Served::Ok => {}
            Served::OutputGone => return exit_code::OUTPUT_GONE,
            Served::ProtocolError => return exit_code::PROTOCOL_ERROR,
        }
        buffers.trim();
    }
}

/// What a worker reuses from call to call: one item's result, and a
/// chunk's answers, so that a long `map` does not grow them afresh for
/// every chunk.
#[derive(Default)]
struct Buffers {
    result: Vec<u8>,
    answers: AnswerFrame,
}

impl Buffers {
    fn trim(&mut self) {
        if self.result.capacity() > RETAINED_RESULT_BYTES {
            self.result = Vec::new();
        }
        if self.answers.bytes.capacity() > RETAINED_RESULT_BYTES {
            self.answers = AnswerFrame::default();
        }
    }
}

enum Served {
    Ok,
    OutputGone,
    ProtocolError,
}

/// The worker's output: frames built in one reused buffer.
struct Out {
    writer: BufWriter<File>,
    scratch: Vec<u8>,
}

impl Out {
    fn frame(&mut self, header: &FromWorkerHead, payload: &[&[u8]]) -> std::io::Result<()> {
        write_frame(&mut self.writer, header, payload, &mut self.scratch)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

fn send(output: &mut Out, header: &FromWorkerHead, payload: &[u8]) -> Served {
    match output
        .frame(header, &[payload])
        .and_then(|()| output.flush())
    {
        Ok(()) => Served::Ok,
        Err(_) => Served::OutputGone,
    }
}

/// A received call.
struct Call<'a> {
    id: u64,
    lens: &'a [u64],
    report_each: bool,
}

impl Call<'_> {
    /// Runs each item and answers it, in order: item by item with
    /// `report_each`, else all at once when the call ends.
    fn run(
        &self,
        handler: &mut impl CallHandler,
        function_len: u32,
        payload: &[u8],
        buffers: &mut Buffers,
        output: &mut Out,
    ) -> Served {
        let Some((function, mut args)) = payload.split_at_checked(function_len as usize) else {
            return Served::ProtocolError;
        };
        if self.lens.iter().sum::<u64>() != args.len() as u64 {
            return Served::ProtocolError;
        }
        let Buffers { result, answers } = buffers;
        answers.reserve(self.lens.len());
        for (index, &len) in self.lens.iter().enumerate() {
            let (arg, rest) = args.split_at(len as usize);
            args = rest;
            result.clear();
            let mut outcome = handler.call(function, arg, result);
            if outcome.is_ok() && result.len() as u64 > MAX_FRAME_BYTES {
                outcome = Err(handler.failure(
                    TaskErrorKind::Serialize,
                    &format!(
                        "the result is {} bytes, more than a frame may carry ({MAX_FRAME_BYTES})",
                        result.len()
                    ),
                ));
            }
            let sent = if self.report_each || self.lens.len() == 1 {
                // Alone in its frame: the result goes out as it is.
                send_one(self.id, index as u32, &outcome, result, output)
            } else {
                answers.add(&outcome, result);
                if index + 1 == self.lens.len() {
                    answers.send(self.id, output)
                } else {
                    Ok(())
                }
            };
            if sent.is_err() || (self.report_each && output.flush().is_err()) {
                return Served::OutputGone;
            }
        }
        match output.flush() {
            Ok(()) => Served::Ok,
            Err(_) => Served::OutputGone,
        }
    }

    /// The call's bytes did not fit in memory: every item fails.
    fn refuse_too_large(
        &self,
        handler: &mut impl CallHandler,
        len: u64,
        output: &mut Out,
    ) -> Served {
        let mut answers = AnswerFrame::default();
        let message = format!("the argument ({len} bytes) does not fit in the worker's memory");
        for _ in self.lens {
            answers.add(
                &Err(handler.failure(TaskErrorKind::Deserialize, &message)),
                &[],
            );
        }
        match answers.send(self.id, output).and_then(|()| output.flush()) {
            Ok(()) => Served::Ok,
            Err(_) => Served::OutputGone,
        }
    }
}

/// Answers item `index` in a frame of its own.
fn send_one(
    id: u64,
    index: u32,
    outcome: &Result<(), Vec<u8>>,
    result: &[u8],
    output: &mut Out,
) -> std::io::Result<()> {
    let (body, failed) = match outcome {
        Ok(()) => (result, SmallVec::new()),
        Err(failure) => (&failure[..], smallvec![0]),
    };
    let header = FromWorkerHead::Answers {
        id,
        first: index,
        lens: smallvec![body.len() as u64],
        failed,
    };
    output.frame(&header, &[body])
}

/// Answers collected for one frame; empty between frames.
#[derive(Default)]
struct AnswerFrame {
    lens: SmallVec<[u64; 1]>,
    failed: SmallVec<[u32; 1]>,
    bytes: Vec<u8>,
}

impl AnswerFrame {
    fn reserve(&mut self, items: usize) {
        self.lens.reserve(items);
    }

    fn add(&mut self, outcome: &Result<(), Vec<u8>>, result: &[u8]) {
        let part = match outcome {
            Ok(()) => result,
            Err(failure) => {
                self.failed.push(self.lens.len() as u32);
                &failure[..]
            }
        };
        self.bytes.extend_from_slice(part);
        self.lens.push(part.len() as u64);
    }

    /// Writes the collected answers as one frame.
    fn send(&mut self, id: u64, output: &mut Out) -> std::io::Result<()> {
        let header = FromWorkerHead::Answers {
            id,
            first: 0,
            lens: std::mem::take(&mut self.lens),
            failed: std::mem::take(&mut self.failed),
        };
        let written = output.frame(&header, &[&self.bytes]);
        if let FromWorkerHead::Answers {
            mut lens,
            mut failed,
            ..
        } = header
        {
            lens.clear();
            failed.clear();
            (self.lens, self.failed) = (lens, failed);
        }
        self.bytes.clear();
        written
    }
}
