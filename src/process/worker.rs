//! The worker side: entered before `main`, runs calls until its input ends.
//!
//! A worker is this same executable started with [`WORKER_ENV`] set. A
//! constructor in this library (run by the loader, before `main`) sees the
//! variable and never returns: it runs [`worker_loop`] and exits. So
//! programs and `cargo test` binaries need no special `main` (Python needs
//! `if __name__ == "__main__"`; we need nothing). Should a linker drop the
//! constructor, [`run_worker_if_child`](crate::process::run_worker_if_child)
//! at the top of `main` does the same; and without either, the pool sees a
//! worker that never reports ready and fails with a clear error, while the
//! child refuses to start pools of its own (no fork bomb).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use rustix::io::{FdFlags, fcntl_setfd};

use super::call::{self, LAST_PANIC_BACKTRACE};
use super::transport::WORKER_ENV;
use super::wire::{
    FailureKind, FromWorker, MAX_FRAME_BYTES, RemoteFailure, ToWorker, read_frame, write_frame,
};

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
        .and_then(|(r, w)| Some((r.parse::<i32>().ok()?, w.parse::<i32>().ok()?)));
    let Some((read_fd, write_fd)) = fds else {
        eprintln!("concurrent-futures: malformed {WORKER_ENV}; exiting");
        std::process::exit(2);
    };
    // Tasks that start pools of their own must start real pools, not see
    // themselves as workers.
    // SAFETY: we are before `main` (or at its very top, by contract of
    // `run_worker_if_child`): no other thread reads the environment.
    unsafe { std::env::remove_var(WORKER_ENV) };
    // SAFETY: the pool passed us these two descriptors, open and owned by
    // nobody else in this process.
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
    std::process::exit(worker_loop(File::from(input), File::from(output)));
}

/// Reports panics to the pool instead of printing them: the hook keeps
/// the backtrace for the failure it sends back (SPEC F10).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|_| {
        let backtrace = std::backtrace::Backtrace::force_capture().to_string();
        LAST_PANIC_BACKTRACE.with(|b| *b.borrow_mut() = Some(backtrace));
    }));
}

/// Serves calls until the pool closes the input; returns the exit code.
fn worker_loop(input: File, output: File) -> i32 {
    install_panic_hook();
    let mut input = BufReader::new(input);
    let mut output = BufWriter::new(output);
    let pid = std::process::id();
    let ready = FromWorker::Ready {
        image_check: call::image_check(),
        pid,
    };
    if write_frame(&mut output, &ready, &[])
        .and_then(|()| output.flush())
        .is_err()
    {
        return 1;
    }
    let mut result = Vec::new();
    loop {
        let (message, payload) = match read_frame::<ToWorker>(&mut input) {
            Ok(Some((message, Ok(payload)))) => (message, payload),
            Ok(Some((ToWorker::Call { id, .. }, Err(len)))) => {
                let failure = RemoteFailure::new(
                    FailureKind::DecodeArgument,
                    format!("the argument ({len} bytes) does not fit in the worker's memory"),
                );
                let reply = FromWorker::Done {
                    id,
                    failure: Some(failure),
                };
                if write_frame(&mut output, &reply, &[])
                    .and_then(|()| output.flush())
                    .is_err()
                {
                    return 1;
                }
                continue;
            }
            // An initializer argument that does not fit: the pool breaks.
            Ok(Some((ToWorker::Init { .. }, Err(len)))) => {
                let failure = RemoteFailure::new(
                    FailureKind::DecodeArgument,
                    format!("the initializer's argument ({len} bytes) does not fit in memory"),
                );
                let _ = write_frame(&mut output, &FromWorker::InitFailed(failure), &[]);
                let _ = output.flush();
                return 3;
            }
            // The pool closed our input: shutdown, retirement, or its death.
            Ok(None) | Err(_) => return 0,
        };
        let (reply, ok) = match message {
            ToWorker::Call {
                id,
                trampoline,
                func,
            } => {
                result.clear();
                // SAFETY: the pool encoded this call with `call::encode_*`
                // in the image our handshake reported as the same.
                let mut failure =
                    unsafe { call::run_encoded(trampoline, func, &payload, &mut result) }.err();
                if failure.is_none() && result.len() as u64 > MAX_FRAME_BYTES {
                    failure = Some(RemoteFailure::new(
                        FailureKind::EncodeResult,
                        format!(
                            "the result is {} bytes, more than a frame may carry ({MAX_FRAME_BYTES})",
                            result.len()
                        ),
                    ));
                }
                let ok = failure.is_none();
                (FromWorker::Done { id, failure }, ok)
            }
            ToWorker::Init { trampoline, func } => {
                let mut ignored = Vec::new();
                // SAFETY: as above.
                match unsafe { call::run_encoded(trampoline, func, &payload, &mut ignored) } {
                    Ok(()) => (FromWorker::Initialized, false),
                    Err(failure) => {
                        let _ = write_frame(&mut output, &FromWorker::InitFailed(failure), &[]);
                        let _ = output.flush();
                        return 3;
                    }
                }
            }
        };
        let body = if ok { &result[..] } else { &[][..] };
        if write_frame(&mut output, &reply, body)
            .and_then(|()| output.flush())
            .is_err()
        {
            return 1;
        }
        // Free a huge result's memory now rather than keep it until a
        // larger one comes.
        if result.capacity() > RETAINED_RESULT_BYTES {
            result = Vec::new();
        }
    }
}

/// Result buffers up to this size are reused between calls; larger ones
/// are freed so one huge result does not pin memory for the worker's life.
const RETAINED_RESULT_BYTES: usize = 1 << 20;
