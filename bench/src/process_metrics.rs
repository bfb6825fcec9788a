//! What the process-pool workloads measure: the raw samples a child run
//! or the CPython script reports ([`Sample`]), the table's rows
//! ([`ProcMetric`]) and the numbers pooled over rounds ([`ProcResults`]).
//!
//! As in the thread table, every time is "lower is better" and the ratio
//! is peer / ours: above 1, we are ahead. The speed-up rows are "higher is
//! better" and carry no ratio.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::ProcessConfig;
use crate::metrics::{Unit, thousands};
use crate::process_peers::ProcPeer;
use crate::stats::{median, percentile};

/// One kind of raw sample; a run reports a list of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sample {
    Task,
    Map,
    RoundTrip,
    Startup,
    PrimesSequential,
    PrimesPool,
    /// One run's sequential time over its pool time (unitless).
    PrimesSpeedup,
    /// The best 2-worker speed-up the six numbers allow (unitless).
    PrimesBound,
    DeathBroken,
    DeathHealed,
    Big,
}

impl Sample {
    pub const ALL: [Sample; 11] = [
        Sample::Task,
        Sample::Map,
        Sample::RoundTrip,
        Sample::Startup,
        Sample::PrimesSequential,
        Sample::PrimesPool,
        Sample::PrimesSpeedup,
        Sample::PrimesBound,
        Sample::DeathBroken,
        Sample::DeathHealed,
        Sample::Big,
    ];

    /// The key in the JSON the child processes and the CPython script
    /// print.
    pub fn key(self) -> &'static str {
        match self {
            Sample::Task => "task_ns",
            Sample::Map => "map_ns",
            Sample::RoundTrip => "round_trip_ns",
            Sample::Startup => "startup_ns",
            Sample::PrimesSequential => "primes_sequential_ns",
            Sample::PrimesPool => "primes_pool_ns",
            Sample::PrimesSpeedup => "primes_speedup",
            Sample::PrimesBound => "primes_bound",
            Sample::DeathBroken => "death_broken_ns",
            Sample::DeathHealed => "death_healed_ns",
            Sample::Big => "big_ns",
        }
    }

    pub fn from_key(key: &str) -> Option<Sample> {
        Sample::ALL.into_iter().find(|s| s.key() == key)
    }
}

/// One row of the process-pool table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProcMetric {
    Task,
    Map,
    RoundTripP50,
    RoundTripP99,
    Startup,
    PrimesSequential,
    PrimesPool,
    PrimesSpeedup,
    PrimesBound,
    DeathBroken,
    DeathHealed,
    Big,
}

impl ProcMetric {
    pub const ALL: [ProcMetric; 12] = [
        ProcMetric::Task,
        ProcMetric::Map,
        ProcMetric::RoundTripP50,
        ProcMetric::RoundTripP99,
        ProcMetric::Startup,
        ProcMetric::PrimesSequential,
        ProcMetric::PrimesPool,
        ProcMetric::PrimesSpeedup,
        ProcMetric::PrimesBound,
        ProcMetric::DeathBroken,
        ProcMetric::DeathHealed,
        ProcMetric::Big,
    ];

    pub fn unit(self) -> Unit {
        match self {
            ProcMetric::PrimesSpeedup | ProcMetric::PrimesBound => Unit::Times,
            _ => Unit::Nanos,
        }
    }

    /// The row's title, with the sizes of this run.
    pub fn label(self, cfg: &ProcessConfig) -> String {
        let k = |n: usize| thousands(n as u64);
        match self {
            ProcMetric::Task => format!(
                "P1. submit {} trivial tasks (chunksize 1) + collect, per task",
                k(cfg.submit_n)
            ),
            ProcMetric::Map => format!(
                "P2. map {} items, chunksize {}, per item",
                k(cfg.map_n),
                cfg.map_chunksize
            ),
            ProcMetric::RoundTripP50 => "P3. round trip, warm pool, median".into(),
            ProcMetric::RoundTripP99 => "P3. round trip, warm pool, p99".into(),
            ProcMetric::Startup => format!(
                "P4. start-up: new {}-worker pool to first result, median",
                cfg.workers
            ),
            ProcMetric::PrimesSequential => {
                "P5a. primes (6 numbers), sequential, same process".into()
            }
            ProcMetric::PrimesPool => format!("P5b. primes, pool of {} workers", cfg.workers),
            ProcMetric::PrimesSpeedup => {
                "P5c. primes speed-up, sequential / pool, median of runs (higher is better)".into()
            }
            ProcMetric::PrimesBound => format!(
                "P5d. best speed-up any {}-worker schedule allows for these numbers",
                cfg.workers
            ),
            ProcMetric::DeathBroken => format!(
                "P6a. SIGKILL a worker -> all {} waiting futures failed (broken pool), median",
                cfg.death_waiters
            ),
            ProcMetric::DeathHealed => {
                "P6b. SIGKILL a worker -> its call failed, pool heals, median".into()
            }
            ProcMetric::Big => format!(
                "P7. {} argument + {} result, one round trip",
                bytes_label(cfg.big_bytes),
                bytes_label(cfg.big_bytes)
            ),
        }
    }
}

/// `67108864` as `64 MiB`.
pub fn bytes_label(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Every raw sample of the run: (peer, sample) -> values, pooled over
/// rounds.
#[derive(Debug, Default)]
pub struct ProcResults {
    samples: BTreeMap<(ProcPeer, Sample), Vec<f64>>,
}

impl ProcResults {
    /// Adds the lists of a JSON object a child or the CPython script
    /// printed. Unknown keys are an error: the two sides disagree.
    pub fn record_json(
        &mut self,
        peer: ProcPeer,
        object: &Map<String, Value>,
    ) -> Result<(), String> {
        for (key, values) in object {
            let sample = Sample::from_key(key).ok_or_else(|| format!("unknown sample {key:?}"))?;
            let values = values
                .as_array()
                .ok_or_else(|| format!("{key:?} is not a list: {values}"))?;
            let list = self.samples.entry((peer, sample)).or_default();
            for value in values {
                list.push(
                    value
                        .as_f64()
                        .ok_or_else(|| format!("{key:?} has a non-number: {value}"))?,
                );
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn record(&mut self, peer: ProcPeer, sample: Sample, value: f64) {
        self.samples.entry((peer, sample)).or_default().push(value);
    }

    /// The raw samples of `sample` for `peer`.
    pub fn samples(&self, peer: ProcPeer, sample: Sample) -> Option<&[f64]> {
        self.samples
            .get(&(peer, sample))
            .map(Vec::as_slice)
            .filter(|s| !s.is_empty())
    }

    /// The row's value for `peer`: medians (over rounds, or of the pooled
    /// samples), the p99 of the round trips.
    pub fn get(&self, metric: ProcMetric, peer: ProcPeer) -> Option<f64> {
        let med = |sample| self.samples(peer, sample).map(median);
        match metric {
            ProcMetric::Task => med(Sample::Task),
            ProcMetric::Map => med(Sample::Map),
            ProcMetric::RoundTripP50 => med(Sample::RoundTrip),
            ProcMetric::RoundTripP99 => self
                .samples(peer, Sample::RoundTrip)
                .map(|s| percentile(s, 0.99)),
            ProcMetric::Startup => med(Sample::Startup),
            ProcMetric::PrimesSequential => med(Sample::PrimesSequential),
            ProcMetric::PrimesPool => med(Sample::PrimesPool),
            ProcMetric::PrimesSpeedup => med(Sample::PrimesSpeedup),
            ProcMetric::PrimesBound => med(Sample::PrimesBound),
            ProcMetric::DeathBroken => med(Sample::DeathBroken),
            ProcMetric::DeathHealed => med(Sample::DeathHealed),
            ProcMetric::Big => med(Sample::Big),
        }
    }

    /// peer / ours for times; none for the speed-ups (higher is better,
    /// shown as they are).
    pub fn ratio(&self, metric: ProcMetric, peer: ProcPeer) -> Option<f64> {
        if metric.unit() == Unit::Times {
            return None;
        }
        let ours = self.get(metric, ProcPeer::Ours)?;
        let theirs = self.get(metric, peer)?;
        (ours > f64::EPSILON).then(|| theirs / ours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for s in Sample::ALL {
            assert_eq!(Sample::from_key(s.key()), Some(s));
        }
    }

    #[test]
    fn pools_samples_over_rounds() {
        let mut r = ProcResults::default();
        let round = |values: &str| -> Map<String, Value> {
            serde_json::from_str(&format!(
                r#"{{"round_trip_ns": {values}, "task_ns": [10]}}"#
            ))
            .unwrap()
        };
        r.record_json(ProcPeer::Ours, &round("[1, 2]")).unwrap();
        r.record_json(ProcPeer::Ours, &round("[3]")).unwrap();
        assert_eq!(r.get(ProcMetric::RoundTripP50, ProcPeer::Ours), Some(2.0));
        assert_eq!(r.get(ProcMetric::RoundTripP99, ProcPeer::Ours), Some(3.0));
        r.record(ProcPeer::CPythonFork, Sample::Task, 50.0);
        assert_eq!(r.ratio(ProcMetric::Task, ProcPeer::CPythonFork), Some(5.0));
        r.record(ProcPeer::Ours, Sample::PrimesSpeedup, 2.0);
        assert_eq!(r.get(ProcMetric::PrimesSpeedup, ProcPeer::Ours), Some(2.0));
        assert_eq!(r.ratio(ProcMetric::PrimesSpeedup, ProcPeer::Ours), None);
        let bad: Map<String, Value> = serde_json::from_str(r#"{"nope": [1]}"#).unwrap();
        assert!(r.record_json(ProcPeer::Ours, &bad).is_err());
    }

    #[test]
    fn byte_labels() {
        assert_eq!(bytes_label(64 << 20), "64 MiB");
        assert_eq!(bytes_label(512 << 10), "512 KiB");
    }
}
