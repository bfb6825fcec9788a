//! The Rust front end's worker entry: this same program, entered before
//! `main` (SPEC P3, P11).
//!
//! A worker is this program started with the worker variable naming it. With
//! the `worker-entry` feature (on by default), a constructor in this
//! library (run by the loader, before `main`) sees the variable and never
//! returns: it serves calls and exits. So programs and `cargo test`
//! binaries need no special `main` (Python needs
//! `if __name__ == "__main__"`; we need nothing). Without the feature (a
//! program that hosts the library and does not want a constructor), or
//! should a linker drop it, [`run_worker_if_child`](super::run_worker_if_child)
//! at the top of `main` does the same; and without either, the pool sees a
//! worker that never reports ready and fails with a clear error, while the
//! child refuses to start pools of its own (no fork bomb).
//!
//! Constructors run before Rust's runtime has set the process up, so the
//! entry does what that start-up does for `main`: the standard streams are
//! made valid (`/dev/null` for a closed one), `SIGPIPE` is ignored (a write
//! to a closed pipe is an `ErrorKind::BrokenPipe` error, not a death), and
//! calls run on a thread named `main` with the main thread's stack size.
//! The argv is the parent's (see the launcher). Not done: std's handler
//! that reports a stack overflow by name, so a task that overflows its
//! stack ends its worker with `SIGSEGV`. Other constructors of the program
//! (its own, its other libraries') run in workers as well, before this one
//! or after it.

use std::fs::File;
use std::os::fd::BorrowedFd;

use rustix::io::fcntl_getfd;

use super::codec::RustHandler;
use super::worker::{self, Pipes, exit_code};

#[cfg(feature = "worker-entry")]
#[ctor::ctor]
unsafe fn enter_worker_before_main() {
    // SAFETY (of the whole function being `unsafe` for ctor): it runs once,
    // before `main`, and only reads the environment.
    //
    // A library that hosts this code in another program (a Python
    // extension with this feature on) must not take that program over.
    if super::transport::pipe::marker() != super::transport::pipe::Marker::Absent
        && super::launcher::code_is_in_the_program()
    {
        run_worker_if_marked();
    }
    #[cfg(feature = "cluster")]
    if std::env::var_os(super::cluster::AGENT_VAR).is_some()
        && super::transport::pipe::marker() == super::transport::pipe::Marker::Absent
        && super::launcher::code_is_in_the_program()
    {
        run_agent_from_env();
    }
}

/// This process is a cluster agent: serves as one and exits.
#[cfg(all(feature = "worker-entry", feature = "cluster"))]
fn run_agent_from_env() {
    set_up_like_rust_start_up();
    let Some(cluster) = super::cluster::Cluster::from_env() else {
        return;
    };
    let slots = std::env::var("CONCURRENT_FUTURES_SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    match super::cluster::run_agent(&cluster, slots) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("concurrent-futures agent: {e}");
            std::process::exit(2);
        }
    }
}

/// If this process is a worker, serves calls and exits; otherwise returns
/// at once.
pub(crate) fn run_worker_if_marked() {
    let Some(pipes) = worker::take_pipes() else {
        return;
    };
    set_up_like_rust_start_up();
    std::process::exit(run_on_main_thread(pipes));
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

/// Serves on a thread named `main`, so that tasks see the name they would
/// see in a normal run (the constructor's thread has none yet).
fn run_on_main_thread(pipes: Pipes) -> i32 {
    let mut pipes = Some(pipes);
    let joined = std::thread::scope(|s| {
        let pipes = &mut pipes;
        std::thread::Builder::new()
            .name("main".into())
            .stack_size(main_stack_size())
            .spawn_scoped(s, move || {
                pipes.take().map(|p| worker::serve(p, RustHandler::new()))
            })
            .ok()
            .map(|h| h.join())
    });
    match joined {
        Some(Ok(Some(code))) => code,
        // The loop does not unwind; should it, the pool sees its output
        // end, which is how it learns of any death.
        Some(Ok(None) | Err(_)) => exit_code::OUTPUT_GONE,
        // No thread could be started: serve on this one.
        None => pipes.map_or(exit_code::OUTPUT_GONE, |p| {
            worker::serve(p, RustHandler::new())
        }),
    }
}
