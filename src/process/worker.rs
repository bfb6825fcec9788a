//! The worker side: entered before `main`, runs calls until its input ends.
//!
//! A worker is this same program started with [`WORKER_ENV`] set. A
//! constructor in this library (run by the loader, before `main`) sees the
//! variable and never returns: it runs [`worker_loop`] and exits. So
//! programs and `cargo test` binaries need no special `main` (Python needs
//! `if __name__ == "__main__"`; we need nothing). Should a linker drop the
//! constructor, [`run_worker_if_child`](crate::process::run_worker_if_child)
//! at the top of `main` does the same; and without either, the pool sees a
//! worker that never reports ready and fails with a clear error, while the
//! child refuses to start pools of its own (no fork bomb).
//!
//! Constructors run before Rust's runtime has set the process up, so the
//! entry does what that start-up does for `main` (SPEC P11): the standard
//! streams are made valid (`/dev/null` for a closed one), `SIGPIPE` is
//! ignored (a write to a closed pipe is an `ErrorKind::BrokenPipe` error,
//! not a death), and calls run on a thread named `main` with the main
//! thread's stack size. The argv is the parent's (see `transport`). Not
//! done: std's handler that reports a stack overflow by name, so a task
//! that overflows its stack ends its worker with `SIGSEGV`.
//! Other constructors of the program (its own, its other libraries') run
//! in workers as well, before this one or after it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};

use super::call::{self, FnRef, LAST_PANIC_BACKTRACE};
use super::transport::WORKER_ENV;
use super::wire::{
    FailureKind, FromWorker, MAX_FRAME_BYTES, RemoteFailure, ToWorker, read_frame, write_frame,
};

/// The worker's exit codes, which the pool reads as "ended by itself".
mod exit_code {
    /// The pool closed the input: shutdown, retirement, or its death.
    pub(super) const INPUT_ENDED: i32 = 0;
    /// The pool's end of the output is gone.
    pub(super) const OUTPUT_GONE: i32 = 1;
    /// The worker variable was not `<fd>,<fd>`.
    pub(super) const MALFORMED_MARKER: i32 = 2;
    /// The initializer failed (reported to the pool first).
    pub(super) const INIT_FAILED: i32 = 3;
    /// A frame did not match its own header.
    pub(super) const PROTOCOL_ERROR: i32 = 4;
}

#[ctor::ctor]
unsafe fn enter_worker_before_main() {
    // SAFETY (of the whole function being `unsafe` for ctor): it runs once,
    // before `main`, while the process is still single-threaded.
    run_worker_if_marked();
}

/// If this process is a worker, runs the worker loop and exits; otherwise
/// returns at once.
pub(crate) fn run_worker_if_marked() {
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    let fds = spec
        .to_str()
        .and_then(|s| s.split_once(','))
        .and_then(|(r, w)| Some((r.parse::<i32>().ok()?, w.parse::<i32>().ok()?)))
        .filter(|&(r, w)| r > 2 && w > 2 && r != w);
    let Some((read_fd, write_fd)) = fds else {
        eprintln!("concurrent-futures: malformed {WORKER_ENV}; exiting");
        std::process::exit(exit_code::MALFORMED_MARKER);
    };
    // Tasks that start pools of their own must start real pools, not see
    // themselves as workers.
    // SAFETY: we are before `main` (or at its very top, by contract of
    // `run_worker_if_child`): no other thread reads the environment.
    unsafe { std::env::remove_var(WORKER_ENV) };
    set_up_like_rust_start_up();
    // SAFETY: the pool passed us these two descriptors, open and owned by
    // nobody else in this process; both are above the standard streams.
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
    let (input, output) = (File::from(input), File::from(output));
    std::process::exit(run_on_main_thread(input, output));
}

/// What Rust's runtime start-up does before `main` that a program may
/// notice: valid standard streams and `SIGPIPE` ignored.
fn set_up_like_rust_start_up() {
    for fd in 0..=2 {
        // SAFETY: the descriptor is only probed, never closed through this.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        if fcntl_getfd(fd) == Err(rustix::io::Errno::BADF) {
            // Opens at the lowest free number, which is this one; kept
            // open for the worker's life, as std does.
            if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
                std::mem::forget(null);
            }
        }
    }
    // SAFETY: setting a signal's disposition to "ignore" installs no
    // handler; this runs before any thread of ours could be signalled.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The main thread's stack size in a normal run: the stack limit, within
/// reason (an unlimited stack gets the usual 8 MiB).
fn main_stack_size() -> usize {
    const USUAL: u64 = 8 << 20;
    const MOST: u64 = 1 << 30;
    let limit = rustix::process::getrlimit(rustix::process::Resource::Stack).current;
    usize::try_from(limit.filter(|&l| l <= MOST).unwrap_or(USUAL)).unwrap_or(8 << 20)
}

/// Runs the loop on a thread named `main`, so that tasks see the name they
/// would see in a normal run (the constructor's thread has none yet).
fn run_on_main_thread(input: File, output: File) -> i32 {
    let mut files = Some((input, output));
    let joined = std::thread::scope(|s| {
        let files = &mut files;
        std::thread::Builder::new()
            .name("main".into())
            .stack_size(main_stack_size())
            .spawn_scoped(s, move || files.take().map(|(i, o)| worker_loop(i, o)))
            .ok()
            .map(|h| h.join())
    });
    match joined {
        Some(Ok(Some(code))) => code,
        // The loop does not unwind; should it, the pool sees its output
        // end, which is how it learns of any death.
        Some(Ok(None) | Err(_)) => exit_code::OUTPUT_GONE,
        // No thread could be started: serve on this one.
        None => files.map_or(exit_code::OUTPUT_GONE, |(i, o)| worker_loop(i, o)),
    }
}

/// Reports panics to the pool instead of printing them: the hook keeps
/// the backtrace for the failure it sends back (SPEC F10).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|_| {
        let backtrace = std::backtrace::Backtrace::force_capture().to_string();
        let _ = LAST_PANIC_BACKTRACE.try_with(|b| *b.borrow_mut() = Some(backtrace));
    }));
}

/// Result buffers up to this size are reused between calls; larger ones
/// are freed so one huge result does not pin memory for the worker's life.
const RETAINED_RESULT_BYTES: usize = 1 << 20;

/// Serves calls until the pool closes the input; returns the exit code.
fn worker_loop(input: File, output: File) -> i32 {
    install_panic_hook();
    let mut input = BufReader::new(input);
    let mut output = BufWriter::new(output);
    let ready = FromWorker::Ready {
        image_check: call::image_check(),
        pid: std::process::id(),
    };
    if write_frame(&mut output, &ready, &[])
        .and_then(|()| output.flush())
        .is_err()
    {
        return exit_code::OUTPUT_GONE;
    }
    let mut result = Vec::new();
    loop {
        let served = match read_frame::<ToWorker>(&mut input) {
            Ok(Some((
                ToWorker::Call {
                    id,
                    trampoline,
                    func,
                    lens,
                    report_each,
                },
                payload,
            ))) => {
                let function = FnRef { trampoline, func };
                let call = Call {
                    id,
                    function,
                    lens: &lens,
                    report_each,
                };
                match payload {
                    Ok(bytes) => call.run(&bytes, &mut result, &mut output),
                    Err(len) => call.refuse_too_large(len, &mut output),
                }
            }
            Ok(Some((ToWorker::Init { trampoline, func }, payload))) => {
                let outcome = match payload {
                    // SAFETY: the pool encoded this call with `call::fn_ref`
                    // in the image our handshake reported as the same.
                    Ok(bytes) => unsafe {
                        call::run_item(FnRef { trampoline, func }, &bytes, &mut Vec::new())
                    },
                    Err(len) => Err(RemoteFailure::new(
                        FailureKind::Deserialize,
                        format!("the initializer's argument ({len} bytes) does not fit in memory"),
                    )),
                };
                match outcome {
                    Ok(()) => send(&mut output, &FromWorker::Initialized, &[]),
                    Err(failure) => {
                        let _ = send(&mut output, &FromWorker::InitFailed(failure), &[]);
                        return exit_code::INIT_FAILED;
                    }
                }
            }
            // The pool closed our input: shutdown, retirement, or its death.
            Ok(None) | Err(_) => return exit_code::INPUT_ENDED,
        };
        match served {
            Served::Ok => {}
            Served::OutputGone => return exit_code::OUTPUT_GONE,
            Served::ProtocolError => return exit_code::PROTOCOL_ERROR,
        }
        if result.capacity() > RETAINED_RESULT_BYTES {
            result = Vec::new();
        }
    }
}

enum Served {
    Ok,
    OutputGone,
    ProtocolError,
}

fn send(output: &mut BufWriter<File>, message: &FromWorker, payload: &[u8]) -> Served {
    match write_frame(output, message, payload).and_then(|()| output.flush()) {
        Ok(()) => Served::Ok,
        Err(_) => Served::OutputGone,
    }
}

/// A received call.
struct Call<'a> {
    id: u64,
    function: FnRef,
    lens: &'a [u64],
    report_each: bool,
}

impl Call<'_> {
    /// Runs each item and answers it, in order: item by item with
    /// `report_each`, else all at once when the call ends.
    fn run(&self, payload: &[u8], result: &mut Vec<u8>, output: &mut BufWriter<File>) -> Served {
        if self.lens.iter().sum::<u64>() != payload.len() as u64 {
            return Served::ProtocolError;
        }
        let mut answers = Answers::default();
        let mut at = 0;
        for (index, &len) in self.lens.iter().enumerate() {
            let arg = &payload[at..at + len as usize];
            at += len as usize;
            result.clear();
            // SAFETY: the pool encoded this call with `call::fn_ref` in the
            // image our handshake reported as the same.
            let mut failure = unsafe { call::run_item(self.function, arg, result) }.err();
            if failure.is_none() && result.len() as u64 > MAX_FRAME_BYTES {
                failure = Some(RemoteFailure::new(
                    FailureKind::Serialize,
                    format!(
                        "the result is {} bytes, more than a frame may carry ({MAX_FRAME_BYTES})",
                        result.len()
                    ),
                ));
            }
            let sent = if self.report_each || self.lens.len() == 1 {
                // Alone in its frame: the result goes out as it is.
                send_one(self.id, index as u32, failure, result, output)
            } else {
                answers.add(failure, result);
                if index + 1 == self.lens.len() {
                    answers.send(self.id, 0, output)
                } else {
                    Ok(())
                }
            };
            if sent.is_err() {
                return Served::OutputGone;
            }
            if self.report_each && output.flush().is_err() {
                return Served::OutputGone;
            }
        }
        match output.flush() {
            Ok(()) => Served::Ok,
            Err(_) => Served::OutputGone,
        }
    }

    /// The call's bytes did not fit in memory: every item fails.
    fn refuse_too_large(&self, len: u64, output: &mut BufWriter<File>) -> Served {
        let mut answers = Answers::default();
        for _ in self.lens {
            let failure = RemoteFailure::new(
                FailureKind::Deserialize,
                format!("the argument ({len} bytes) does not fit in the worker's memory"),
            );
            answers.add(Some(failure), &[]);
        }
        match answers
            .send(self.id, 0, output)
            .and_then(|()| output.flush())
        {
            Ok(()) => Served::Ok,
            Err(_) => Served::OutputGone,
        }
    }
}

/// Answers item `index` in a frame of its own.
fn send_one(
    id: u64,
    index: u32,
    failure: Option<RemoteFailure>,
    result: &[u8],
    output: &mut BufWriter<File>,
) -> std::io::Result<()> {
    let body = if failure.is_none() { result } else { &[][..] };
    let message = FromWorker::Answers {
        id,
        first: index,
        lens: vec![body.len() as u64],
        failures: vec![failure],
    };
    write_frame(output, &message, body)
}

/// Answers collected for one frame.
#[derive(Default)]
struct Answers {
    failures: Vec<Option<RemoteFailure>>,
    lens: Vec<u64>,
    results: Vec<u8>,
}

impl Answers {
    fn add(&mut self, failure: Option<RemoteFailure>, result: &[u8]) {
        let len = if failure.is_none() { result.len() } else { 0 };
        self.results.extend_from_slice(&result[..len]);
        self.failures.push(failure);
        self.lens.push(len as u64);
    }

    /// Writes the collected answers as one frame and starts afresh.
    fn send(&mut self, id: u64, first: u32, output: &mut BufWriter<File>) -> std::io::Result<()> {
        let message = FromWorker::Answers {
            id,
            first,
            failures: std::mem::take(&mut self.failures),
            lens: std::mem::take(&mut self.lens),
        };
        let written = write_frame(output, &message, &self.results);
        self.results.clear();
        written
    }
}
