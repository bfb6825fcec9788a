//! The processes the cluster rows need besides the harness: a NATS server
//! on 127.0.0.1, agents (this executable, made one by its environment),
//! and the Python peers' interpreter with dask.distributed and Ray in a
//! virtual environment under `target/`.
//!
//! Every process started here leads a process group of its own, and is
//! stopped with its whole group (an agent's workers, dask's nannies and
//! workers, Ray's daemons) and reaped when its handle is dropped, also on
//! an error or a panic. Each also gets `SIGKILL` if the harness's main
//! thread dies first (`PR_SET_PDEATHSIG`: a harness killed by a signal
//! runs no destructor). Every wait is bounded.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::process::cluster::AGENT_VAR;

/// A child process leading its own process group; dropping it sends
/// `SIGKILL` to the group and reaps the child.
pub struct Service {
    child: Child,
    reaped: bool,
}

impl Service {
    /// Starts `command` as the leader of a new process group, killed if
    /// the thread that starts it dies first.
    pub fn spawn(command: &mut Command, what: &str) -> Result<Service, String> {
        // SAFETY: the hook runs in the child between fork and exec, and
        // calls only prctl(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Service {
            child,
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `SIGKILL` to the leader only (as a crash would), not its group.
    /// The leader is not reaped, so its pid (and the group's id) cannot
    /// be reused before [`stop`](Self::stop).
    pub fn kill_leader(&self) -> Result<(), String> {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is
        // our unreaped child, so it names no other process.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGKILL) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "kill({}) failed: {}",
                self.pid(),
                std::io::Error::last_os_error()
            ))
        }
    }

    /// Whether the leader has exited (it is not reaped: see
    /// [`exit_status`]).
    pub fn exited(&self) -> bool {
        exited_unreaped(self.pid())
    }

    /// `SIGKILL` to the whole group, then reaps the leader.
    pub fn stop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: as in `kill_leader`; the group's id is our unreaped
        // child's pid, so the group is the one it leads.
        unsafe { libc::killpg(self.pid() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether child `pid` has exited, without reaping it (`waitid` with
/// `WNOWAIT`): its pid stays reserved until it is waited for.
fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into
    // it and nothing else.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is valid and writable; P_PID names our own child.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
        )
    };
    // SAFETY: after a successful waitid, si_pid is set (0: not exited).
    rc == 0 && unsafe { info.si_pid() } != 0
}

/// Runs `command` in a process group of its own, waiting at most
/// `limit`; what it printed. Past the limit, or once the leader exits,
/// whatever is left of its group is killed, so nothing it started (dask
/// workers, Ray daemons that did not leave the group) outlives it.
pub fn run_bounded(command: &mut Command, what: &str, limit: Duration) -> Result<Output, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut service = Service::spawn(command, what)?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        service
            .child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        service
            .child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    while !service.exited() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let timed_out = !service.exited();
    // Both cases: the group goes, so the pipes close and the drains end.
    // SAFETY: as in `Service::stop`; the leader is not reaped yet.
    unsafe { libc::killpg(service.pid() as libc::pid_t, libc::SIGKILL) };
    let status = service
        .child
        .wait()
        .map_err(|e| format!("cannot wait for {what}: {e}"))?;
    service.reaped = true;
    let output = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if timed_out {
        return Err(format!(
            "{what} did not finish within {limit:?}; stderr: {}",
            tail(&output.stderr, 2_000)
        ));
    }
    Ok(output)
}

/// The last `max` bytes of `bytes`, as text.
pub fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

// ------------------------------------------------------------ the server --

/// `nats-server`, if installed.
pub fn nats_server_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// A NATS server on 127.0.0.1 and a random port, with its files in a
/// directory of its own (removed when dropped).
pub struct NatsServer {
    // Declared first: stopped before its directory goes.
    process: Service,
    pub url: String,
    pub version: String,
    dir: PathBuf,
}

impl NatsServer {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn start() -> Result<NatsServer, String> {
        let binary = nats_server_binary().ok_or(
            "nats-server is not installed (apt-get install nats-server, or see docs.nats.io)",
        )?;
        let version = run_bounded(
            Command::new(&binary).arg("--version"),
            "nats-server --version",
            Duration::from_secs(10),
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
        let dir = std::env::temp_dir().join(format!("cf-bench-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        let process = Service::spawn(
            Command::new(&binary)
                .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
                .arg(&dir)
                .arg("-l")
                .arg(dir.join("server.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "nats-server",
        )?;
        let mut server = NatsServer {
            process,
            url: String::new(),
            version,
            dir,
        };
        let ports = server
            .dir
            .join(format!("nats-server_{}.ports", server.process.pid()));
        let deadline = Instant::now() + Duration::from_secs(10);
        // {"nats":["nats://127.0.0.1:PORT"]}
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports)
                && let Some(at) = text.find("127.0.0.1:")
            {
                let port: String = text[at + 10..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(port) = port.parse::<u16>() {
                    server.url = format!("nats://127.0.0.1:{port}");
                    return Ok(server);
                }
            }
            if Instant::now() >= deadline || server.process.exited() {
                return Err(format!(
                    "nats-server did not start: {}",
                    std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.process.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An agent of `pool` with `slots` worker slots: this executable, which
/// the library's constructor makes an agent before `main`. Its workers are
/// in its process group, so dropping it stops them too.
pub fn agent(url: &str, pool: &str, slots: usize) -> Result<Service, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    Service::spawn(
        Command::new(exe)
            .env(AGENT_VAR, url)
            .env("CONCURRENT_FUTURES_POOL", pool)
            .env("CONCURRENT_FUTURES_SLOTS", slots.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        "an agent",
    )
}

// ----------------------------------------------------- the Python peers --

/// The virtual environment of the Python peers, and which of them it can
/// run (`Err`: why not).
pub struct PythonEnv {
    pub python: PathBuf,
    pub dask: Result<(), String>,
    pub ray: Result<(), String>,
}

/// Where the harness keeps its virtual environment.
pub const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-cluster-py");

impl PythonEnv {
    /// Makes the virtual environment from `python3` if it is missing and
    /// installs into it what is missing of dask.distributed and Ray, with
    /// pip (idempotent: a second run only checks the imports).
    pub fn ensure(progress: &impl Fn(&str)) -> Result<PythonEnv, String> {
        let venv = Path::new(VENV);
        let python = venv.join("bin/python");
        if !python.is_file() {
            progress(&format!("making the Python peers' venv {}", venv.display()));
            let out = run_bounded(
                Command::new("python3").args(["-m", "venv"]).arg(venv),
                "python3 -m venv",
                Duration::from_secs(300),
            )?;
            if !out.status.success() {
                return Err(format!(
                    "python3 -m venv failed: {}",
                    tail(&out.stderr, 2_000)
                ));
            }
        }
        let install = |module: &str, spec: &str| -> Result<(), String> {
            if imports(&python, module) {
                return Ok(());
            }
            progress(&format!("pip install {spec} into {}", venv.display()));
            let out = run_bounded(
                Command::new(&python).args(["-m", "pip", "install", "-q", spec]),
                &format!("pip install {spec}"),
                Duration::from_secs(900),
            )?;
            if !out.status.success() {
                return Err(format!(
                    "pip install {spec} failed: {}",
                    tail(&out.stderr, 600)
                ));
            }
            if imports(&python, module) {
                Ok(())
            } else {
                Err(format!("{module} installed but does not import"))
            }
        };
        Ok(PythonEnv {
            dask: install("distributed", "dask[distributed]"),
            ray: install("ray", "ray"),
            python,
        })
    }
}

/// Whether `python -c "import MODULE"` works.
fn imports(python: &Path, module: &str) -> bool {
    run_bounded(
        Command::new(python).args(["-c", &format!("import {module}")]),
        &format!("import {module}"),
        Duration::from_secs(120),
    )
    .is_ok_and(|o| o.status.success())
}
