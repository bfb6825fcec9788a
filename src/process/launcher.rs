//! [`Launcher`]: which program a worker is, and how it is started (SPEC
//! P4, P11).
//!
//! The Rust front end's workers are this program again
//! ([`Launcher::this_program`]): a worker must run the very image that
//! holds the pool's code, since functions cross as offsets into it.
//! `/proc/self/exe` is that image for a program started normally, even if
//! its file was replaced or deleted since. The worker gets the parent's
//! argv, so `std::env::args()` in a task sees what `main` saw, as
//! CPython's workers see the parent's `sys.argv`.
//!
//! Two unusual starts are told apart by comparing the file that holds this
//! code (from `/proc/self/maps`) with `/proc/self/exe`:
//!
//! * the program was started through the dynamic loader (`ld.so ./prog`)
//!   or a wrapper that stays in the process (valgrind): `/proc/self/exe` is
//!   the loader or the wrapper. Workers run the program's own file
//!   directly (its path as the process maps it), with its argv;
//! * this code is in a shared library that some other program loaded (a
//!   Python extension, say): re-running that program would not run our
//!   worker, so that program must bring a launcher of its own.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;

use crate::process::codec::code_address;
use crate::process::transport::pipe::PipeEnd;

/// The program every worker of the Rust front end runs: this process's own
/// executable.
const SELF_EXE: &str = "/proc/self/exe";

/// How a worker process is started: a program, its arguments and its
/// environment (on top of this process's). The pool adds what the worker
/// needs to find its pipes; the program must then call
/// [`serve_if_worker`](crate::process::worker::serve_if_worker) (or be a Rust program
/// with this library's worker entry). Or, for workers that are copies of
/// this process, a function that forks ([`Launcher::forking`]).
///
/// # Examples
///
/// A front end whose workers are another interpreter:
///
/// ```
/// use concurrent_futures::process::Launcher;
///
/// let launcher = Launcher::new("/usr/bin/python3")
///     .args(["-m", "my_package._worker"])
///     .env("PYTHONUNBUFFERED", "1");
/// assert_eq!(launcher.program(), std::path::Path::new("/usr/bin/python3"));
/// ```
#[derive(Debug, Clone)]
pub struct Launcher {
    pub(crate) program: PathBuf,
    /// `argv[0]`, when it is not the program's path.
    pub(crate) arg0: Option<OsString>,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    /// Descriptors each worker gets, with the number it gets each as.
    pub(crate) passed_fds: Vec<(Arc<OwnedFd>, RawFd)>,
    /// When this process was started in an unusual way, how (for the
    /// advice if its workers do not start).
    pub(crate) unusual: Option<String>,
    /// Starts workers instead of the program, when set.
    pub(crate) starter: Option<Starter>,
}

/// A [`Launcher::forking`] function: forks a worker, returns its pid.
type StartFn = dyn Fn(&ForkPipes) -> io::Result<u32> + Send + Sync;

/// A [`Launcher::forking`] function, shared by the launcher's clones.
#[derive(Clone)]
pub(crate) struct Starter(pub(crate) Arc<StartFn>);

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Starter(..)")
    }
}

/// What a worker forked by a [`Launcher::forking`] function needs: its two
/// pipe ends (already open in the child, as copies), and the pool's other
/// pipe ends it must not keep. The child passes it to
/// [`serve_forked`](crate::process::worker::serve_forked).
#[derive(Clone, Debug)]
pub struct ForkPipes {
    pub(crate) read_fd: RawFd,
    pub(crate) write_fd: RawFd,
    /// The pool's process.
    pub(crate) pool: u32,
    /// The pool's pipe ends just before the fork (see `inherited.rs`).
    pub(crate) inherited: Vec<PipeEnd>,
}

impl ForkPipes {
    /// The descriptor the worker reads its calls from.
    pub fn read_fd(&self) -> RawFd {
        self.read_fd
    }

    /// The descriptor the worker writes its answers to.
    pub fn write_fd(&self) -> RawFd {
        self.write_fd
    }
}

impl Launcher {
    /// Starts `program`, with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Launcher {
            program: program.into(),
            arg0: None,
            args: Vec::new(),
            env: Vec::new(),
            passed_fds: Vec::new(),
            unusual: None,
            starter: None,
        }
    }

    /// Workers that are copies of this process: `start` is called for each
    /// (on the pool's supervisor thread, which the worker then dies with,
    /// as a spawned one does), forks, and returns the child's pid; in the
    /// child, the copy of `start` calls
    /// [`serve_forked`](crate::process::worker::serve_forked) with the
    /// pipes it was given and ends the process with the code that returns
    /// (`_exit`: the child must never return into the copy of the pool's
    /// thread it runs on). This is Python's `fork` start method, for a
    /// front end whose workers must inherit what the parent built in
    /// memory. Forking a process with other threads is only sound if the
    /// child touches nothing those threads may have held (locks, the
    /// allocator's state aside): the worker loop does not.
    ///
    /// An error `start` returns, or a panic in it, is a worker that could
    /// not start (the pool breaks if it has no other). The program,
    /// arguments, environment and passed descriptors are not used.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::process::Launcher;
    /// use concurrent_futures::process::worker::{CallHandler, serve_forked};
    /// # struct Echo;
    /// # impl CallHandler for Echo {
    /// #     fn proof(&mut self) -> Vec<u8> { Vec::new() }
    /// #     fn init(&mut self, _: &[u8], _: &[u8]) -> Result<(), Vec<u8>> { Ok(()) }
    /// #     fn call(&mut self, _: &[u8], arg: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
    /// #         out.extend_from_slice(arg);
    /// #         Ok(())
    /// #     }
    /// #     fn failure(&mut self, _: concurrent_futures::TaskErrorKind, m: &str) -> Vec<u8> {
    /// #         m.as_bytes().to_vec()
    /// #     }
    /// # }
    ///
    /// let launcher = Launcher::forking(|pipes| {
    ///     // SAFETY (of the fork): the child only runs the worker loop,
    ///     // then `_exit`s.
    ///     match unsafe { libc::fork() } {
    ///         -1 => Err(std::io::Error::last_os_error()),
    ///         0 => {
    ///             let code = serve_forked(pipes, Echo);
    ///             unsafe { libc::_exit(code) }
    ///         }
    ///         pid => Ok(pid as u32),
    ///     }
    /// });
    /// # drop(launcher);
    /// ```
    pub fn forking(start: impl Fn(&ForkPipes) -> io::Result<u32> + Send + Sync + 'static) -> Self {
        Launcher {
            starter: Some(Starter(Arc::new(start))),
            ..Launcher::new("fork")
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the workers.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Gives each worker `fd` as its descriptor `number` (as CPython's
    /// `spawn` hands a worker the pipes of the `multiprocessing` objects
    /// in its initializer's arguments, by their numbers in the parent).
    /// A worker fails to start if `number` is one of the standard streams
    /// or one of its own pipes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, OwnedFd};
    /// use concurrent_futures::process::Launcher;
    ///
    /// let file = std::fs::File::open("/dev/null").unwrap();
    /// let number = file.as_raw_fd();
    /// let launcher = Launcher::new("/usr/bin/python3").pass_fd(OwnedFd::from(file), number);
    /// # drop(launcher);
    /// ```
    pub fn pass_fd(mut self, fd: OwnedFd, number: RawFd) -> Self {
        self.passed_fds.push((Arc::new(fd), number));
        self
    }

    /// The program it starts.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// This program again, started as this process was: the launcher of
    /// the Rust front end (see the module docs), worked out once per
    /// process.
    ///
    /// # Errors
    ///
    /// Why this process cannot start itself as a worker: the pool's code
    /// is in a shared library another program loaded.
    pub fn this_program() -> Result<Launcher, String> {
        static THIS: OnceLock<Result<Launcher, String>> = OnceLock::new();
        THIS.get_or_init(find_this_program).clone()
    }
}

/// Whether this code is part of the program that runs (not a library some
/// other program loaded), so that a worker of it can be started by
/// running this program again.
///
/// Every worker asks this before `main`, so it asks the dynamic loader,
/// which knows without a system call, rather than parse `/proc/self/maps`
/// (50-90 µs of a worker's start). The first object the loader lists is
/// the program, also when it was started through `ld.so`.
#[cfg_attr(not(feature = "worker-entry"), allow(dead_code))]
pub(crate) fn code_is_in_the_program() -> bool {
    struct Search {
        address: usize,
        /// `None` until the program's object has been seen.
        found: Option<bool>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Search` passed below, alive and not
        // otherwise borrowed during the call; the loader passes a valid
        // `info` whose program headers it keeps mapped meanwhile.
        let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
        let headers = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: as above: `dlpi_phnum` headers at `dlpi_phdr`.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let base = info.dlpi_addr as usize;
        let inside = headers.iter().any(|h| {
            let start = base.wrapping_add(h.p_vaddr as usize);
            h.p_type == libc::PT_LOAD
                && (start..start.wrapping_add(h.p_memsz as usize)).contains(&search.address)
        });
        search.found = Some(inside);
        1 // The program is listed first: enough.
    }
    let mut search = Search {
        address: code_address(),
        found: None,
    };
    // SAFETY: `visit` only reads what the loader passes and writes
    // `search`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.found.unwrap_or(true)
}

fn find_this_program() -> Result<Launcher, String> {
    let mut argv = std::env::args_os();
    let argv0 = argv.next();
    let args: Vec<OsString> = argv.collect();
    let (program, unusual) = match image_of_this_code() {
        Some(image) if !is_self_exe(image.dev, image.inode) => {
            let exe = fs::read_link(SELF_EXE).unwrap_or_else(|_| PathBuf::from(SELF_EXE));
            if !is_executable(&image.path) {
                return Err(format!(
                    "the pool's code is in the shared library {}, loaded by {}; workers \
                     are started by running this process's program again, which would not \
                     reach that library's worker entry. A program that hosts the library \
                     must bring its own launcher (process::Launcher) and worker loop \
                     (process::worker::serve_if_worker)",
                    image.path.display(),
                    exe.display()
                ));
            }
            let how = format!(
                "this process runs {} through {} (a loader or wrapper), and workers run {} \
                 directly",
                image.path.display(),
                exe.display(),
                image.path.display(),
            );
            (image.path, Some(how))
        }
        _ => (PathBuf::from(SELF_EXE), None),
    };
    Ok(Launcher {
        program,
        arg0: argv0,
        args,
        env: Vec::new(),
        passed_fds: Vec::new(),
        unusual,
        starter: None,
    })
}

/// The file mapped where this code lives.
struct Image {
    path: PathBuf,
    dev: (u32, u32),
    inode: u64,
}

/// Finds the mapping that holds this code in `/proc/self/maps`:
/// `start-end perms offset major:minor inode path`.
fn image_of_this_code() -> Option<Image> {
    let address = code_address();
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        if !(start..end).contains(&address) {
            return None;
        }
        let _perms = fields.next()?;
        let _offset = fields.next()?;
        let (major, minor) = fields.next()?.split_once(':')?;
        let dev = (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        );
        let inode = fields.next()?.parse().ok()?;
        let path = PathBuf::from(fields.collect::<Vec<_>>().join(" "));
        Some(Image { path, dev, inode })
    })
}

/// Whether `/proc/self/exe` is the file `(dev, inode)`.
fn is_self_exe(dev: (u32, u32), inode: u64) -> bool {
    match rustix::fs::stat(SELF_EXE) {
        Ok(st) => {
            let exe_dev = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
            exe_dev == dev && st.st_ino == inode
        }
        // Without /proc there is nothing to compare; the handshake still
        // checks the image.
        Err(_) => true,
    }
}

/// An ELF file with an interpreter (`PT_INTERP`) is a program; a shared
/// library has none. Anything unreadable counts as a program: the
/// handshake catches what this cannot.
fn is_executable(path: &Path) -> bool {
    let mut header = Vec::new();
    let read = fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut header));
    if read.is_err() {
        return true;
    }
    elf_has_interpreter(&header).unwrap_or(true)
}

/// `PT_INTERP` among the program headers of an ELF image's first bytes.
fn elf_has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..4)? != b"\x7fELF" || *elf.get(5)? != 1 {
        return None; // Not ELF, or not little-endian: let the handshake judge.
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let (phoff, phentsize, phnum) = match elf.get(4)? {
        2 => (
            usize::try_from(u64_at(0x20)?).ok()?,
            u16_at(0x36)?,
            u16_at(0x38)?,
        ),
        1 => (u32_at(0x1c)? as usize, u16_at(0x2a)?, u16_at(0x2c)?),
        _ => return None,
    };
    let found = (0..usize::from(phnum))
        .any(|i| u32_at(phoff + i * usize::from(phentsize)) == Some(PT_INTERP));
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_its_own_worker_program() {
        let launcher = Launcher::this_program().unwrap();
        assert_eq!(launcher.program, Path::new(SELF_EXE));
        assert!(launcher.unusual.is_none(), "{:?}", launcher.unusual);
        let argv: Vec<OsString> = launcher.arg0.into_iter().chain(launcher.args).collect();
        assert_eq!(
            argv,
            std::env::args_os().collect::<Vec<_>>(),
            "workers get the parent's argv"
        );
        assert!(code_is_in_the_program());
    }

    fn fake_elf(segment_types: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56 * segment_types.len()];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(segment_types.len() as u16).to_le_bytes());
        for (i, t) in segment_types.iter().enumerate() {
            elf[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        elf
    }

    #[test]
    fn programs_have_an_interpreter_and_libraries_do_not() {
        // SPEC P11
        assert!(is_executable(Path::new(SELF_EXE)));
        assert_eq!(elf_has_interpreter(&fake_elf(&[6, 3, 1])), Some(true));
        assert_eq!(elf_has_interpreter(&fake_elf(&[1, 2])), Some(false));
        assert_eq!(elf_has_interpreter(b"not elf"), None);
    }
}
