//! The workloads, written once against [`Pool`] so every Rust peer runs
//! the same code, plus the two that only futures have (`as_completed` over
//! done futures, `wait(FIRST_COMPLETED)`).
//!
//! The CPython script mirrors each function here; keep them in step.

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{ALL_COMPLETED, FIRST_COMPLETED, Future, as_completed, wait};

use crate::config::Config;
use crate::metrics::Metric;
use crate::peers::Pool;
use crate::stats::{median, nanos, percentile};
use crate::sys::{cpu_micros_per_sec_over, status_bytes};

/// Sum of `0..n`, what the identity workloads must add up to.
fn triangle(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Starts every worker (ours and CPython's start them lazily) by making
/// `workers` tasks meet at a barrier, then runs a batch to warm the
/// allocator and caches.
fn warm_up<P: Pool>(pool: &P, workers: usize) {
    let barrier = Arc::new(Barrier::new(workers));
    let meet: Vec<_> = (0..workers)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            pool.spawn(move || {
                barrier.wait();
                0
            })
        })
        .collect();
    pool.join_all(meet);
    let batch: Vec<_> = (0..10_000).map(|i| pool.spawn(move || i)).collect();
    assert_eq!(pool.join_all(batch), triangle(10_000));
}

/// Raw samples of one peer, gathered over the rounds and summarized at
/// the end: medians of the throughputs, percentiles of the latencies.
#[derive(Debug, Default)]
pub struct Samples {
    submit_collect: Vec<f64>,
    parked: Vec<f64>,
    busy: Vec<f64>,
    map: Vec<f64>,
    as_completed_in_flight: Vec<f64>,
    as_completed_done: Vec<f64>,
    as_completed_shuffled: Vec<f64>,
    wait_first_completed: Vec<f64>,
    scale_small: Vec<f64>,
    scale_large: Vec<f64>,
}

impl Samples {
    /// Records every metric that has samples.
    pub fn summarize(&self, record: &mut impl FnMut(Metric, f64)) {
        let medians = [
            (Metric::SubmitCollect, &self.submit_collect),
            (Metric::MapBuffered, &self.map),
            (Metric::AsCompletedInFlight, &self.as_completed_in_flight),
            (Metric::AsCompletedDone, &self.as_completed_done),
            (Metric::AsCompletedShuffled, &self.as_completed_shuffled),
            (Metric::WaitFirstCompleted, &self.wait_first_completed),
            (Metric::ScaleSmall, &self.scale_small),
            (Metric::ScaleLarge, &self.scale_large),
        ];
        for (metric, samples) in medians {
            if !samples.is_empty() {
                record(metric, median(samples));
            }
        }
        let latencies = [
            (
                Metric::LatencyParkedP50,
                Metric::LatencyParkedP99,
                &self.parked,
            ),
            (Metric::LatencyBusyP50, Metric::LatencyBusyP99, &self.busy),
        ];
        for (p50, p99, samples) in latencies {
            if !samples.is_empty() {
                record(p50, median(samples));
                record(p99, percentile(samples, 0.99));
            }
        }
    }
}

/// One round of workloads 1-4 on one Rust peer, on a fresh pool of
/// `cfg.workers` threads.
pub fn measure_round<P: Pool>(cfg: &Config, samples: &mut Samples) {
    let pool = P::with_workers(cfg.workers);
    warm_up(&pool, cfg.workers);

    samples
        .submit_collect
        .push(submit_collect(&pool, cfg.submit_n as u64));

    let gap = Duration::from_micros(cfg.parked_gap_us);
    let parked = cfg.per_round(cfg.parked_samples);
    samples.parked.extend(round_trips(&pool, parked, gap));
    samples.busy.extend(round_trips_busy(&pool, cfg));

    let n = cfg.map_n as u64;
    let start = Instant::now();
    let total = pool.map_buffered(n, cfg.map_buffersize);
    samples.map.push(nanos(start.elapsed()) / n as f64);
    assert_eq!(total, 2 * triangle(n));

    let n = cfg.as_completed_n as u64;
    let start = Instant::now();
    let total = pool.submit_as_completed(n);
    samples
        .as_completed_in_flight
        .push(nanos(start.elapsed()) / n as f64);
    assert_eq!(total, triangle(n));

    for _ in 0..cfg.per_round(cfg.scale_small_batches) {
        samples
            .scale_small
            .push(submit_collect(&pool, cfg.scale_small_n as u64));
    }
    samples
        .scale_large
        .push(submit_collect(&pool, cfg.scale_large_n as u64));
}

/// Workload 1: submit `n` trivial tasks, then join them in order; ns per
/// task.
fn submit_collect<P: Pool>(pool: &P, n: u64) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| pool.spawn(move || i)).collect();
    let total = pool.join_all(handles);
    let elapsed = start.elapsed();
    assert_eq!(total, triangle(n));
    nanos(elapsed) / n as f64
}

/// Workload 2: `samples` submit -> result round trips, each after
/// sleeping `gap` (so the workers park in between); ns each.
fn round_trips<P: Pool>(pool: &P, samples: usize, gap: Duration) -> Vec<f64> {
    (0..samples)
        .map(|_| {
            if !gap.is_zero() {
                thread::sleep(gap);
            }
            let start = Instant::now();
            let value = pool.join(pool.spawn(|| 7));
            let elapsed = start.elapsed();
            assert_eq!(value, 7);
            nanos(elapsed)
        })
        .collect()
}

/// Workload 2b: round trips back to back while `busy_loaders` threads
/// keep `busy_window` small tasks each in the same pool.
fn round_trips_busy<P: Pool>(pool: &P, cfg: &Config) -> Vec<f64> {
    /// Stops the loaders even if a measurement panics, so the scope
    /// below can end.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Relaxed);
        }
    }

    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for _ in 0..cfg.busy_loaders {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    let batch: Vec<_> = (0..cfg.busy_window).map(|_| pool.spawn(|| 7)).collect();
                    black_box(pool.join_all(batch));
                }
            });
        }
        // Let the loaders fill the pool before the first sample.
        thread::sleep(Duration::from_millis(10));
        round_trips(pool, cfg.per_round(cfg.busy_samples), Duration::ZERO)
    })
}

/// One round of workloads 4a and 5, which need futures: ours only here
/// (CPython runs them in its script).
pub fn measure_futures_round(cfg: &Config, samples: &mut Samples) {
    let pool = concurrent_futures::ThreadPoolExecutor::with_workers(cfg.workers);
    warm_up(&pool, cfg.workers);
    samples
        .as_completed_done
        .push(as_completed_done(&pool, cfg.as_completed_n as u64, false));
    samples
        .as_completed_shuffled
        .push(as_completed_done(&pool, cfg.as_completed_n as u64, true));
    drop(pool);

    let delay = Duration::from_millis(cfg.wait_delay_ms);
    for _ in 0..cfg.per_round(cfg.wait_runs) {
        samples
            .wait_first_completed
            .push(wait_first_completed(cfg.wait_n, delay));
    }
}

/// Workload 4a: `as_completed` over `n` futures that are all done, so
/// only its own cost is timed; ns per future. 4c (`shuffled`): the same
/// futures in a random order, so consecutive futures are not neighbours
/// in memory, as when a program collects futures from many places.
fn as_completed_done(pool: &concurrent_futures::ThreadPoolExecutor, n: u64, shuffled: bool) -> f64 {
    let mut futures: Vec<_> = (0..n).map(|i| pool.spawn(move || i)).collect();
    if shuffled {
        shuffle(&mut futures, 0x5eed);
    }
    assert!(wait(&futures, ALL_COMPLETED).not_done.is_empty());
    let start = Instant::now();
    let total = as_completed(&futures)
        .map(|f| *f.result().expect("the task succeeded"))
        .fold(0, u64::wrapping_add);
    let elapsed = start.elapsed();
    assert_eq!(total, triangle(n));
    nanos(elapsed) / n as f64
}

/// Fisher-Yates with xorshift64: a fixed, reproducible order, and no
/// random-number crate for the harness.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

/// Workload 2c, in a child process of its own: back-to-back round trips
/// with the whole process pinned to one CPU, so the caller and the
/// workers always compete for it (what "all cores busy" means for a
/// pool). The median, in ns.
pub fn round_trips_pinned<P: Pool>(cfg: &Config) -> f64 {
    crate::sys::pin_to_one_cpu();
    let pool = P::with_workers(cfg.workers);
    warm_up(&pool, cfg.workers);
    median(&round_trips(&pool, cfg.pinned_samples, Duration::ZERO))
}

/// Workload 5: `wait(FIRST_COMPLETED)` on `n` stand-alone pending futures;
/// another thread completes one after `delay` (by then `wait` has long
/// registered on all of them). Nanoseconds from `set_result` to `wait`'s
/// return.
fn wait_first_completed(n: usize, delay: Duration) -> f64 {
    let futures: Vec<Future<u64>> = (0..n).map(|_| Future::new()).collect();
    let target = futures[n / 2].clone();
    thread::scope(|s| {
        let setter = s.spawn(move || {
            thread::sleep(delay);
            let completed_at = Instant::now();
            target.set_result(1).expect("pending until now");
            completed_at
        });
        let result = wait(&futures, FIRST_COMPLETED);
        let returned_at = Instant::now();
        assert_eq!(result.done.len(), 1);
        let completed_at = setter.join().expect("the setter does not panic");
        // Instant is CLOCK_MONOTONIC, comparable across threads.
        nanos(returned_at.saturating_duration_since(completed_at))
    })
}

/// Workload 6, in a child process of its own: resident bytes per pending
/// future with `n` of them queued behind the pool's only worker, which is
/// held on a channel. 6a: the tasks capture nothing (a zero-sized
/// closure), so the figure is each pool's own overhead per task. 6b
/// (`capturing`): each task captures its index (8 bytes), as most real
/// tasks capture something. The caller's handle vector is allocated and
/// touched before the baseline, so it is not counted.
pub fn memory_per_pending<P: Pool>(n: usize, capturing: bool) -> f64 {
    let pool = P::with_workers(1);
    let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(1);
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let blocker = pool.spawn(move || {
        let _ = started_tx.send(());
        let _ = gate_rx.recv();
        0
    });
    started_rx.recv().expect("the worker takes the blocker");

    let mut handles: Vec<P::Handle> = Vec::with_capacity(n);
    handles.spare_capacity_mut().fill_with(MaybeUninit::zeroed);
    black_box(handles.spare_capacity_mut());
    let baseline = status_bytes("VmRSS");
    if capturing {
        for i in 0..n as u64 {
            handles.push(pool.spawn(move || black_box(i) * 2));
        }
    } else {
        for _ in 0..n {
            handles.push(pool.spawn(|| 7));
        }
    }
    let peak = status_bytes("VmHWM");

    drop(gate_tx);
    pool.join(blocker);
    let expected = if capturing {
        2 * triangle(n as u64)
    } else {
        7 * n as u64
    };
    assert_eq!(pool.join_all(handles), expected);
    peak.saturating_sub(baseline) as f64 / n as f64
}

/// Workload 7, in a child process of its own: CPU µs per second used by
/// an idle pool (every worker started, no work), then with one thread
/// blocked on the result of a task that cannot finish yet.
pub fn idle_cpu<P: Pool>(cfg: &Config, record: &mut impl FnMut(Metric, f64)) {
    let settle = Duration::from_millis(cfg.settle_ms);
    let pool = Arc::new(P::with_workers(cfg.workers));
    warm_up(&*pool, cfg.workers);
    thread::sleep(settle);
    record(Metric::IdlePoolCpu, cpu_micros_per_sec_over(cfg.idle_secs));

    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let never = pool.spawn(move || {
        let _ = gate_rx.recv();
        0
    });
    let waiter = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || pool.join(never))
    };
    thread::sleep(settle);
    record(
        Metric::BlockedWaiterCpu,
        cpu_micros_per_sec_over(cfg.idle_secs),
    );

    drop(gate_tx);
    assert_eq!(waiter.join().expect("the waiter does not panic"), 0);
}
