//! Runs `bench/python/bench_cpython.py` with `python3`, one fresh
//! interpreter per mode, for the same reasons as `child.rs`.

use std::process::Command;

use serde_json::{Map, Value};

use crate::child::parse_object;
use crate::config::Config;

/// The script, found from the harness's source directory so the command
/// works from any working directory.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/bench_cpython.py");

/// The script's modes: its workloads 1-5, then memory, idle CPU and the
/// pinned round trip.
pub const MODES: [&str; 5] = ["main", "mem", "mem_capturing", "idle", "pinned"];

/// What one run of the script reported.
pub struct Run {
    /// `sys.version`, e.g. `3.11.7`.
    pub version: String,
    pub results: Map<String, Value>,
}

/// Runs the script in `mode`.
pub fn run(mode: &str, cfg: &Config) -> Result<Run, String> {
    let output = Command::new("python3")
        .args([SCRIPT, mode, &cfg.to_json()])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "python3 {mode} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut object = parse_object(&output.stdout)?;
    let version = object
        .remove("python")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    match object.remove("results") {
        Some(Value::Object(results)) => Ok(Run { version, results }),
        _ => Err(format!("python3 {mode}: no \"results\" object")),
    }
}
