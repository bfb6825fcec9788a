//! What is measured ([`Metric`]), in what unit, and the collected numbers.
//!
//! Every metric is "lower is better" (time, bytes, CPU), so the ratio
//! peer / ours reads the same way everywhere: above 1, we are ahead.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::peers::Peer;

/// One row of the results table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    SubmitCollect,
    LatencyParkedP50,
    LatencyParkedP99,
    LatencyBusyP50,
    LatencyBusyP99,
    LatencyPinnedP50,
    MapBuffered,
    AsCompletedDone,
    AsCompletedShuffled,
    AsCompletedInFlight,
    WaitFirstCompleted,
    MemoryPerPending,
    MemoryPerPendingCapturing,
    IdlePoolCpu,
    BlockedWaiterCpu,
    ScaleSmall,
    ScaleLarge,
}

/// How a metric's value is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Nanos,
    Bytes,
    /// CPU time, in microseconds per second of wall time.
    CpuMicrosPerSec,
    /// A speed-up factor (higher is better).
    Times,
}

impl Metric {
    pub const ALL: [Metric; 17] = [
        Metric::SubmitCollect,
        Metric::LatencyParkedP50,
        Metric::LatencyParkedP99,
        Metric::LatencyBusyP50,
        Metric::LatencyBusyP99,
        Metric::LatencyPinnedP50,
        Metric::MapBuffered,
        Metric::AsCompletedDone,
        Metric::AsCompletedShuffled,
        Metric::AsCompletedInFlight,
        Metric::WaitFirstCompleted,
        Metric::MemoryPerPending,
        Metric::MemoryPerPendingCapturing,
        Metric::IdlePoolCpu,
        Metric::BlockedWaiterCpu,
        Metric::ScaleSmall,
        Metric::ScaleLarge,
    ];

    /// The name in the JSON that the CPython script and the child
    /// processes print.
    pub fn key(self) -> &'static str {
        match self {
            Metric::SubmitCollect => "submit_collect_ns",
            Metric::LatencyParkedP50 => "latency_parked_p50_ns",
            Metric::LatencyParkedP99 => "latency_parked_p99_ns",
            Metric::LatencyBusyP50 => "latency_busy_p50_ns",
            Metric::LatencyBusyP99 => "latency_busy_p99_ns",
            Metric::LatencyPinnedP50 => "latency_pinned_p50_ns",
            Metric::MapBuffered => "map_buffered_ns",
            Metric::AsCompletedDone => "as_completed_done_ns",
            Metric::AsCompletedShuffled => "as_completed_shuffled_ns",
            Metric::AsCompletedInFlight => "as_completed_in_flight_ns",
            Metric::WaitFirstCompleted => "wait_first_completed_ns",
            Metric::MemoryPerPending => "memory_per_pending_bytes",
            Metric::MemoryPerPendingCapturing => "memory_per_pending_capturing_bytes",
            Metric::IdlePoolCpu => "idle_pool_cpu_us_per_s",
            Metric::BlockedWaiterCpu => "blocked_waiter_cpu_us_per_s",
            Metric::ScaleSmall => "scale_small_ns",
            Metric::ScaleLarge => "scale_large_ns",
        }
    }

    pub fn from_key(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.key() == key)
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::MemoryPerPending | Metric::MemoryPerPendingCapturing => Unit::Bytes,
            Metric::IdlePoolCpu | Metric::BlockedWaiterCpu => Unit::CpuMicrosPerSec,
            _ => Unit::Nanos,
        }
    }

    /// The row's title, with the sizes of this run.
    pub fn label(self, cfg: &Config) -> String {
        let k = |n: usize| thousands(n as u64);
        match self {
            Metric::SubmitCollect => {
                format!("1. submit {} + collect, per task", k(cfg.submit_n))
            }
            Metric::LatencyParkedP50 => "2a. round trip, parked pool, median".into(),
            Metric::LatencyParkedP99 => "2a. round trip, parked pool, p99".into(),
            Metric::LatencyBusyP50 => "2b. round trip, busy pool, median".into(),
            Metric::LatencyBusyP99 => "2b. round trip, busy pool, p99".into(),
            Metric::LatencyPinnedP50 => {
                "2c. round trip, all cores busy (process pinned to one CPU), median".into()
            }
            Metric::MapBuffered => format!(
                "3. map {} items, buffersize {}, per item",
                k(cfg.map_n),
                cfg.map_buffersize
            ),
            Metric::AsCompletedDone => format!(
                "4a. as_completed over {} done futures, per future",
                k(cfg.as_completed_n)
            ),
            Metric::AsCompletedShuffled => format!(
                "4c. as_completed over {} done futures, shuffled, per future",
                k(cfg.as_completed_n)
            ),
            Metric::AsCompletedInFlight => format!(
                "4b. submit {} + as_completed, per future",
                k(cfg.as_completed_n)
            ),
            Metric::WaitFirstCompleted => format!(
                "5. wait(FIRST_COMPLETED) on {} pending, completion -> return",
                k(cfg.wait_n)
            ),
            Metric::MemoryPerPending => {
                format!("6. memory per pending future ({} pending)", k(cfg.mem_n))
            }
            Metric::MemoryPerPendingCapturing => format!(
                "6b. memory per pending future, task capturing 8 bytes ({} pending)",
                k(cfg.mem_n)
            ),
            Metric::IdlePoolCpu => "7a. idle pool CPU".into(),
            Metric::BlockedWaiterCpu => "7b. thread blocked in result() CPU".into(),
            Metric::ScaleSmall => format!(
                "8a. submit {} + collect, per task (median of {} batches)",
                k(cfg.scale_small_n),
                cfg.per_round(cfg.scale_small_batches) * cfg.rounds
            ),
            Metric::ScaleLarge => {
                format!("8b. submit {} + collect, per task", k(cfg.scale_large_n))
            }
        }
    }
}

impl Unit {
    /// A value with its unit, three significant digits or so.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Nanos if value < 1e3 => format!("{value:.0} ns"),
            Unit::Nanos if value < 1e6 => format!("{} µs", sig3(value / 1e3)),
            Unit::Nanos if value < 1e9 => format!("{} ms", sig3(value / 1e6)),
            Unit::Nanos => format!("{} s", sig3(value / 1e9)),
            Unit::Bytes if value < 1024.0 => format!("{value:.0} B"),
            Unit::Bytes => format!("{} KiB", sig3(value / 1024.0)),
            Unit::CpuMicrosPerSec => format!("{value:.0} µs/s"),
            Unit::Times => format!("{}×", sig3(value)),
        }
    }
}

/// `x` with three significant digits (at least none after the point).
pub fn sig3(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Every number of the run: metric -> peer -> value.
#[derive(Debug, Default)]
pub struct Results {
    values: BTreeMap<Metric, BTreeMap<Peer, f64>>,
}

impl Results {
    pub fn record(&mut self, peer: Peer, metric: Metric, value: f64) {
        self.values.entry(metric).or_default().insert(peer, value);
    }

    pub fn get(&self, metric: Metric, peer: Peer) -> Option<f64> {
        self.values.get(&metric)?.get(&peer).copied()
    }

    /// peer / ours: how many times better we are (> 1) or worse (< 1).
    /// None when either is missing, or ours is too close to zero for a
    /// quotient to mean anything (idle CPU).
    pub fn ratio(&self, metric: Metric, peer: Peer) -> Option<f64> {
        let ours = self.get(metric, Peer::Ours)?;
        let theirs = self.get(metric, peer)?;
        let floor = match metric.unit() {
            Unit::CpuMicrosPerSec => 100.0,
            _ => f64::EPSILON,
        };
        (ours > floor).then(|| theirs / ours)
    }

    /// Records every `"key": number` of a JSON object a child process or
    /// the CPython script printed. Unknown keys are an error: they mean
    /// the two sides disagree on what they measure.
    pub fn record_json(
        &mut self,
        peer: Peer,
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        for (key, value) in object {
            let metric = Metric::from_key(key).ok_or_else(|| format!("unknown metric {key:?}"))?;
            let value = value
                .as_f64()
                .ok_or_else(|| format!("{key:?} is not a number: {value}"))?;
            self.record(peer, metric, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_units() {
        assert_eq!(Unit::Nanos.format(123.4), "123 ns");
        assert_eq!(Unit::Nanos.format(17_600.0), "17.6 µs");
        assert_eq!(Unit::Nanos.format(8_717_585.0), "8.72 ms");
        assert_eq!(Unit::Bytes.format(1901.0), "1.86 KiB");
        assert_eq!(Unit::Times.format(1.774), "1.77×");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn keys_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_key(m.key()), Some(m));
        }
    }

    #[test]
    fn ratio_is_peer_over_ours() {
        let mut r = Results::default();
        r.record(Peer::Ours, Metric::SubmitCollect, 100.0);
        r.record(Peer::CPython, Metric::SubmitCollect, 5_000.0);
        assert_eq!(r.ratio(Metric::SubmitCollect, Peer::CPython), Some(50.0));
        assert_eq!(r.ratio(Metric::SubmitCollect, Peer::Rayon), None);
        r.record(Peer::Ours, Metric::IdlePoolCpu, 3.0);
        r.record(Peer::CPython, Metric::IdlePoolCpu, 50.0);
        assert_eq!(r.ratio(Metric::IdlePoolCpu, Peer::CPython), None);
    }
}
