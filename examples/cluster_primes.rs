//! The seeds' primes example on a cluster: the same `map(is_prime,
//! PRIMES)`, its workers placed by two agents over a NATS server, all on
//! this machine (`cargo run --features cluster --example cluster_primes`).
//!
//! ```python
//! with concurrent.futures.ProcessPoolExecutor() as executor:
//!     for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
//!         print('%d is prime: %s' % (number, prime))
//! ```
//!
//! The example starts `nats-server` on 127.0.0.1 (a random port) and two
//! agents, which are this program started again with
//! `CONCURRENT_FUTURES_AGENT` set, and stops them all at the end. On real
//! machines the same two roles are two commands (see the README):
//! agents run `CONCURRENT_FUTURES_AGENT=nats://server:4222
//! CONCURRENT_FUTURES_POOL=primes ... ./program`, the client builds its
//! pool with `.cluster(Cluster::new("nats://server:4222", "primes"))`.
//!
//! What to observe: the same answers as the local run, computed on the
//! agents' workers (their host and pid are printed).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "cluster")]
use concurrent_futures::ProcessPoolExecutor;
#[cfg(feature = "cluster")]
use concurrent_futures::process::cluster::{AGENT_VAR, Cluster};

#[path = "primes.rs"]
#[allow(dead_code)]
mod primes;

/// A process stopped by pid when dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats_server() -> Option<PathBuf> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Starts `nats-server` on 127.0.0.1 and a random port; its URL.
fn start_server(binary: &PathBuf, dir: &std::path::Path) -> Option<(Stopped, String)> {
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let ports = dir.join(format!("nats-server_{}.ports", child.id()));
    let server = Stopped(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&ports)
            && let Some(at) = text.find("127.0.0.1:")
        {
            let port: String = text[at + 10..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            return Some((server, format!("nats://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[cfg(feature = "cluster")]
fn where_am_i(n: u64) -> (bool, String) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    (
        primes::is_prime(n),
        format!("pid {} on {}", std::process::id(), host.trim()),
    )
}

pub fn main() {
    if cfg!(not(feature = "cluster")) {
        println!(
            "the cluster executor is the `cluster` feature: cargo run --features cluster --example cluster_primes"
        );
        return;
    }
    let Some(binary) = nats_server() else {
        println!(
            "nats-server is not installed, so there is no cluster to show: \
             `apt-get install nats-server` (Debian, Ubuntu) or see https://docs.nats.io"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("cf-cluster-example-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    match start_server(&binary, &dir) {
        Some((_server, url)) => run(&url),
        None => println!("nats-server did not start"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "cluster")]
fn run(url: &str) {
    let pool_name = format!("primes-{}", std::process::id());
    let agents: Vec<Stopped> = (0..2)
        .filter_map(|_| {
            Command::new(std::env::current_exe().ok()?)
                .env(AGENT_VAR, url)
                .env("CONCURRENT_FUTURES_POOL", &pool_name)
                .env("CONCURRENT_FUTURES_SLOTS", "1")
                .stdout(Stdio::null())
                .spawn()
                .ok()
                .map(Stopped)
        })
        .collect();
    println!(
        "nats-server at {url}, {} agents with one worker slot each",
        agents.len()
    );
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .cluster(Cluster::new(url, &pool_name))
        .build()
        .expect("the local server takes the connection");
    let start = Instant::now();
    let answers = executor
        .map(where_am_i, primes::PRIMES)
        .collect::<Result<Vec<_>, _>>()
        .expect("is_prime cannot fail, and the agents stay up");
    for (number, (prime, worker)) in primes::PRIMES.iter().zip(&answers) {
        println!("{number} is prime: {prime}   ({worker})");
    }
    assert_eq!(
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        primes::PRIMES.map(primes::is_prime),
        "the same answers as a local run"
    );
    println!("2 remote workers: {:.2?}", start.elapsed());
}

#[cfg(not(feature = "cluster"))]
fn run(_: &str) {}
