//! Starting a worker process: `posix_spawn`, not `fork` (unless the
//! launcher forks itself: [`Launcher::forking`]).
//!
//! `std::process::Command` forks as soon as anything must run in the child
//! before `exec` (`pre_exec`), and a fork copies the pool's page tables only
//! for `exec` to throw them away: on a 2-core machine that was 40% of the
//! CPU a new pool spent until its first result. `posix_spawn` starts the
//! child without copying the address space (glibc clones with
//! `CLONE_VM | CLONE_VFORK`), and what the child needs before `exec` is
//! only its descriptors, which file actions can arrange: its pipe ends are
//! made inheritable there, and only there, so no process spawned at the
//! same time by another thread inherits them. The parent-death signal,
//! the other thing done before `exec` with a fork, is the worker's own
//! first step instead ([`super::die_with_the_pool`]).

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use parking_lot::Mutex;
use rustix::fs::{OFlags, fcntl_setfl};
use rustix::io::fcntl_dupfd_cloexec;
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open};

use super::inherited;
use super::input::Input;
use super::output::Output;
use super::{Process, WORKER_ENV};
use crate::process::launcher::{ForkPipes, Launcher, Starter};

/// A started worker process.
pub(super) struct Spawned {
    pub(super) pid: u32,
    pub(super) process: Arc<Process>,
    pub(super) input: Arc<Input>,
    pub(super) output: Output,
}

/// A pipe end numbered 3 or above: 0, 1 and 2 are the standard streams,
/// and a child end there (possible when the parent closed one of them)
/// would make the child's stdout our protocol pipe.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(fcntl_dupfd_cloexec(&fd, 3)?)
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument or environment variable contains a NUL byte",
        )
    })
}

/// The child's environment: ours, with the launcher's variables and the
/// marker over it.
fn environment(launcher: &Launcher, marker: &str) -> io::Result<Vec<CString>> {
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (key, value) in &launcher.env {
        env.insert(key.clone(), value.clone());
    }
    env.insert(WORKER_ENV.into(), marker.into());
    env.iter()
        .map(|(key, value)| {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            c_string(&entry)
        })
        .collect()
}

/// `posix_spawn`'s file actions, freed when dropped.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: an all-zero value is a valid place for `init` to write to.
        let mut actions = FileActions(unsafe { std::mem::zeroed() });
        // SAFETY: `init` on a value we own; on success `Drop` destroys it.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut actions.0) })?;
        Ok(actions)
    }

    /// In the child, `fd` as descriptor `number`, kept across `exec`.
    fn pass(&mut self, fd: RawFd, number: RawFd, scratch: RawFd) -> io::Result<()> {
        if fd != number {
            // SAFETY: file actions we initialized; both are plain numbers.
            return check(unsafe {
                libc::posix_spawn_file_actions_adddup2(&mut self.0, fd, number)
            });
        }
        // `dup2` onto itself would keep close-on-exec: through a scratch
        // number (a descriptor the child does not need), and back.
        // SAFETY: as above.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, fd, scratch) })?;
        // SAFETY: as above.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, scratch, number) })?;
        // SAFETY: as above.
        check(unsafe { libc::posix_spawn_file_actions_addclose(&mut self.0, scratch) })
    }

    /// The child's stdin is `/dev/null`.
    fn null_stdin(&mut self) -> io::Result<()> {
        // SAFETY: file actions we initialized; the path is NUL-terminated
        // and static (glibc copies it anyway).
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(
                &mut self.0,
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            )
        })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, destroyed once, here.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// `posix_spawn`'s attributes, freed when dropped.
struct Attributes(libc::posix_spawnattr_t);

impl Attributes {
    /// As `std::process::Command` starts a child: no signal blocked, and
    /// `SIGPIPE` (which Rust programs ignore) back to its default.
    fn like_std() -> io::Result<Self> {
        // SAFETY: an all-zero value is a valid place for `init` to write to.
        let mut attributes = Attributes(unsafe { std::mem::zeroed() });
        // SAFETY: `init` on a value we own; on success `Drop` destroys it.
        check(unsafe { libc::posix_spawnattr_init(&mut attributes.0) })?;
        // SAFETY: signal sets we own, filled by the sigset functions; the
        // attributes are initialized.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            check(libc::posix_spawnattr_setsigmask(&mut attributes.0, &none))?;
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(
                &mut attributes.0,
                &pipe,
            ))?;
            let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(
                &mut attributes.0,
                flags as _,
            ))?;
        }
        Ok(attributes)
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialized in `like_std`, destroyed once, here.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// The `posix_spawn` family returns an error number rather than setting
/// `errno`.
fn check(code: libc::c_int) -> io::Result<()> {
    match code {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// The capacity asked for each of a worker's two pipes.
const PIPE_SIZE: usize = 256 << 10;

/// Starts a worker process of `launcher`.
pub(super) fn spawn(launcher: &Launcher) -> io::Result<Spawned> {
    // Every end is close-on-exec; the child's ends are made inheritable
    // only in the child, by the file actions. The ends kept here are
    // listed for forked workers to close.
    let (child_reads, parent_writes, parent_reads, child_writes) = {
        let mut ends = inherited::lock();
        let (child_reads, parent_writes) = pipe_with(PipeFlags::CLOEXEC)?;
        let (parent_reads, child_writes) = pipe_with(PipeFlags::CLOEXEC)?;
        ends.add(&parent_writes)?;
        ends.add(&parent_reads)?;
        (child_reads, parent_writes, parent_reads, child_writes)
    };
    let (child_reads, child_writes) = (above_stdio(child_reads)?, above_stdio(child_writes)?);
    fcntl_setfl(&parent_writes, OFlags::NONBLOCK)?;
    fcntl_setfl(&parent_reads, OFlags::NONBLOCK)?;
    // Large values cross in 256 KiB steps, not the default 64 KiB: a 64 MiB
    // round trip (BENCHMARKS.md, P7) took about a quarter less time. Not more: every
    // pipe's size counts against its user's pipe budget
    // (`fs.pipe-user-pages-soft`, 64 MiB by default), past which the
    // kernel gives the user's new pipes one page; two such pipes per
    // worker leave room for 128 workers. Best effort: a refusal (a user
    // over that budget) keeps the default.
    for end in [&parent_writes, &parent_reads] {
        let _ = rustix::pipe::fcntl_setpipe_size(end, PIPE_SIZE);
    }
    let (read_fd, write_fd) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
    let raw_pid = match &launcher.starter {
        Some(starter) => start_forked(starter, read_fd, write_fd)?,
        None => posix_spawn(
            launcher,
            read_fd,
            write_fd,
            &child_reads,
            &child_writes,
            &parent_writes,
        )?,
    };
    drop((child_reads, child_writes));
    let Some(pid) = Pid::from_raw(raw_pid) else {
        return Err(io::Error::other("invalid pid"));
    };
    let pidfd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(rustix::io::Errno::NOSYS) => None,
        Err(e) => {
            // Not yet reaped: its pid is still its own.
            let _ = kill_process(pid, Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            return Err(e.into());
        }
    };
    let process = Arc::new(Process {
        pid,
        pidfd,
        reaped: Mutex::new(false),
    });
    Ok(Spawned {
        pid: raw_pid as u32,
        input: Input::new(parent_writes, raw_pid.to_string()),
        output: Output::new(parent_reads, Arc::clone(&process)),
        process,
    })
}

/// Has `starter` fork a worker with the child's pipe ends `read_fd` and
/// `write_fd`; its pid.
fn start_forked(starter: &Starter, read_fd: RawFd, write_fd: RawFd) -> io::Result<libc::pid_t> {
    let me = rustix::process::getpid();
    let pipes = ForkPipes {
        read_fd,
        write_fd,
        pool: me.as_raw_nonzero().get() as u32,
        inherited: inherited::snapshot(),
    };
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| (starter.0)(&pipes)));
    if rustix::process::getpid() != me {
        // The child came back (its `start` returned or panicked instead
        // of ending it): it must not go on as a copy of the pool.
        // SAFETY: `_exit` ends the process at once and touches nothing.
        unsafe { libc::_exit(127) };
    }
    let pid = match started {
        Ok(Ok(pid)) => pid,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(io::Error::other("the worker's start function panicked")),
    };
    match libc::pid_t::try_from(pid) {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(io::Error::other(format!(
            "the worker's start function returned pid {pid}"
        ))),
    }
}

/// Runs `launcher`'s program as a worker with the child's pipe ends
/// `read_fd` and `write_fd` (numbers of `child_reads` and `child_writes`);
/// its pid. `parent_writes` is close-on-exec in the child.
fn posix_spawn(
    launcher: &Launcher,
    read_fd: RawFd,
    write_fd: RawFd,
    child_reads: &OwnedFd,
    child_writes: &OwnedFd,
    parent_writes: &OwnedFd,
) -> io::Result<libc::pid_t> {
    if launcher
        .passed_fds
        .iter()
        .any(|(_, n)| *n <= 2 || *n == read_fd || *n == write_fd)
    {
        return Err(io::Error::other("a passed descriptor's number is taken"));
    }
    let inode = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|st| st.st_ino);
    let marker = format!(
        "{},{read_fd},{write_fd},{},{}",
        rustix::process::getpid().as_raw_nonzero(),
        inode(child_reads)?,
        inode(child_writes)?,
    );
    let program = c_string(launcher.program.as_os_str().as_bytes())?;
    let arg0 = launcher
        .arg0
        .as_deref()
        .unwrap_or(launcher.program.as_os_str());
    let argv: Vec<CString> = std::iter::once(arg0)
        .chain(launcher.args.iter().map(OsString::as_os_str))
        .map(|a: &OsStr| c_string(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let envp = environment(launcher, &marker)?;

    let mut actions = FileActions::new()?;
    // The parent's ends are close-on-exec: free numbers in the child to
    // pass the child's ends through.
    let scratch = parent_writes.as_raw_fd();
    actions.null_stdin()?;
    actions.pass(read_fd, read_fd, scratch)?;
    actions.pass(write_fd, write_fd, scratch)?;
    // Those kept at their own number first: their scratch step may land
    // on a number another one is passed to.
    let (same, moved): (Vec<_>, Vec<_>) = launcher
        .passed_fds
        .iter()
        .partition(|(fd, n)| fd.as_raw_fd() == *n);
    for (fd, number) in same.into_iter().chain(moved) {
        actions.pass(fd.as_raw_fd(), *number, scratch)?;
    }
    let attributes = Attributes::like_std()?;
    let (argv_ptrs, envp_ptrs) = (null_terminated(&argv), null_terminated(&envp));
    let mut raw_pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: the program and each
    // argument and variable are NUL-terminated strings that outlive it, in
    // null-terminated arrays; the actions and attributes are initialized.
    // glibc reports a failed `exec` as the returned error.
    check(unsafe {
        libc::posix_spawnp(
            &mut raw_pid,
            program.as_ptr(),
            &actions.0,
            &attributes.0,
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
        )
    })?;
    Ok(raw_pid)
}
