//! Workloads that need a process of their own: peak memory (a peak,
//! once reached, hides every later one) and process CPU time (idle pools
//! left by earlier workloads would count). The harness re-runs its own
//! binary as `--child KIND PEER CONFIG` once per peer; the child prints
//! one JSON object of metric keys.

use std::process::Command;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::peers::{Peer, with_pool};
use crate::workloads;

/// What a child process measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    MemoryCapturing,
    Idle,
    Pinned,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Memory,
        Kind::MemoryCapturing,
        Kind::Idle,
        Kind::Pinned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::MemoryCapturing => "memory-capturing",
            Kind::Idle => "idle",
            Kind::Pinned => "pinned",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Runs `kind` for `peer` in a fresh copy of this program; its metrics.
pub fn spawn(kind: Kind, peer: Peer, cfg: &Config) -> Result<Map<String, Value>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let output = Command::new(exe)
        .args(["--child", kind.name(), peer.name(), &cfg.to_json()])
        .output()
        .map_err(|e| format!("cannot start a child: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "child {} {peer} failed ({}): {}",
            kind.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_object(&output.stdout)
}

/// The body of a child process: measures and prints the JSON object.
pub fn run(kind: Kind, peer: Peer, cfg: &Config) {
    let mut metrics = Map::new();
    let mut record = |metric: crate::metrics::Metric, value: f64| {
        metrics.insert(metric.key().to_owned(), value.into());
    };
    match kind {
        Kind::Memory => with_pool!(peer, P => {
            let bytes = workloads::memory_per_pending::<P>(cfg.mem_n, false);
            record(crate::metrics::Metric::MemoryPerPending, bytes);
        }),
        Kind::MemoryCapturing => with_pool!(peer, P => {
            let bytes = workloads::memory_per_pending::<P>(cfg.mem_n, true);
            record(crate::metrics::Metric::MemoryPerPendingCapturing, bytes);
        }),
        Kind::Idle => with_pool!(peer, P => workloads::idle_cpu::<P>(cfg, &mut record)),
        Kind::Pinned => with_pool!(peer, P => {
            let p50 = workloads::round_trips_pinned::<P>(cfg);
            record(crate::metrics::Metric::LatencyPinnedP50, p50);
        }),
    }
    println!("{}", Value::Object(metrics));
}

/// The one JSON object on a child's stdout.
pub fn parse_object(stdout: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(stdout) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected a JSON object, got {other}")),
        Err(e) => Err(format!(
            "bad JSON ({e}): {}",
            String::from_utf8_lossy(stdout)
        )),
    }
}
