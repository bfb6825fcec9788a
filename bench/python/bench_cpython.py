#!/usr/bin/env python3
"""CPython's concurrent.futures, measured the way bench/src measures ours.

The Rust harness runs this script as

    python3 bench_cpython.py MODE 'CONFIG JSON'

and parses the one JSON object it prints on stdout. MODE is one of

* ``main``: workloads 1-5 (throughput, latency, map, as_completed, wait);
* ``mem``: memory per pending future (run in a fresh process so the peak
  resident set is this workload's alone);
* ``idle``: CPU time of an idle pool and of a thread blocked in result().

The keys of the result match the Rust harness's metric keys; the sizes come
from CONFIG so both sides always measure the same thing.
"""

import collections
import itertools
import json
import statistics
import sys
import threading
import time
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    Future,
    ThreadPoolExecutor,
    as_completed,
    wait,
)

now_ns = time.perf_counter_ns


def identity(x):
    return x


def double(x):
    return x * 2


def seven():
    return 7


def warm_up(ex, workers):
    """Starts every worker (CPython, like ours, spawns them lazily), then
    runs a batch, as the harness's `warm_up` does."""
    barrier = threading.Barrier(workers)
    for f in [ex.submit(barrier.wait) for _ in range(workers)]:
        f.result()
    batch = [ex.submit(identity, i) for i in range(10_000)]
    assert sum(f.result() for f in batch) == 10_000 * 9_999 // 2


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def per_round(cfg, total):
    """`total` samples spread over the rounds: this many per round."""
    return -(-total // cfg["rounds"])


def submit_collect(ex, cfg):
    """Workload 1: submit N trivial tasks, then collect every result."""
    n = cfg["submit_n"]
    start = now_ns()
    fs = [ex.submit(identity, i) for i in range(n)]
    total = sum(f.result() for f in fs)
    elapsed = now_ns() - start
    assert total == n * (n - 1) // 2
    return elapsed / n


def latency_parked(ex, cfg):
    """Workload 2a: one round trip at a time, the pool idle in between."""
    gap = cfg["parked_gap_us"] / 1e6
    samples = []
    for _ in range(per_round(cfg, cfg["parked_samples"])):
        time.sleep(gap)
        start = now_ns()
        ex.submit(seven).result()
        samples.append(now_ns() - start)
    return samples


def latency_busy(ex, cfg):
    """Workload 2b: round trips while loader threads keep the pool busy."""
    stop = threading.Event()
    window = cfg["busy_window"]

    def loader():
        while not stop.is_set():
            for f in [ex.submit(seven) for _ in range(window)]:
                f.result()

    loaders = [threading.Thread(target=loader) for _ in range(cfg["busy_loaders"])]
    for t in loaders:
        t.start()
    samples = []
    try:
        for _ in range(per_round(cfg, cfg["busy_samples"])):
            start = now_ns()
            ex.submit(seven).result()
            samples.append(now_ns() - start)
    finally:
        stop.set()
        for t in loaders:
            t.join()
    return samples


def map_buffered(ex, cfg):
    """Workload 3: map with a bounded window of futures.

    CPython 3.11's map has no buffersize (3.14 added it); this is what 3.14
    does: submit `buffersize` items, then one more as each result is taken.
    """
    n, k = cfg["map_n"], cfg["map_buffersize"]
    items = iter(range(n))
    start = now_ns()
    window = collections.deque(ex.submit(double, x) for x in itertools.islice(items, k))
    total = 0
    while window:
        f = window.popleft()
        nxt = next(items, None)
        if nxt is not None:
            window.append(ex.submit(double, nxt))
        total += f.result()
    elapsed = now_ns() - start
    assert total == n * (n - 1)
    return elapsed / n


def as_completed_done(ex, cfg):
    """Workload 4a: as_completed over N futures that are all done."""
    n = cfg["as_completed_n"]
    fs = [ex.submit(identity, i) for i in range(n)]
    wait(fs, return_when=ALL_COMPLETED)
    start = now_ns()
    total = sum(f.result() for f in as_completed(fs))
    elapsed = now_ns() - start
    assert total == n * (n - 1) // 2
    return elapsed / n


def as_completed_in_flight(ex, cfg):
    """Workload 4b: submit N tasks, then take them as they complete."""
    n = cfg["as_completed_n"]
    start = now_ns()
    fs = [ex.submit(identity, i) for i in range(n)]
    total = sum(f.result() for f in as_completed(fs))
    elapsed = now_ns() - start
    assert total == n * (n - 1) // 2
    return elapsed / n


def wait_first_completed(cfg):
    """Workload 5: from set_result (another thread) to wait's return."""
    n = cfg["wait_n"]
    delay = cfg["wait_delay_ms"] / 1e3
    samples = []
    for _ in range(per_round(cfg, cfg["wait_runs"])):
        fs = [Future() for _ in range(n)]
        completed_at = []

        def complete_one():
            # Long enough for wait() to have registered on all N futures;
            # the private `_waiters` lists confirm it, so the measurement
            # never includes the registration.
            time.sleep(delay)
            while not all(f._waiters for f in fs):
                time.sleep(0.001)
            completed_at.append(now_ns())
            fs[n // 2].set_result(1)

        setter = threading.Thread(target=complete_one)
        setter.start()
        done, _ = wait(fs, return_when=FIRST_COMPLETED)
        returned_at = now_ns()
        setter.join()
        assert len(done) == 1
        samples.append(returned_at - completed_at[0])
    return samples


def run_main(cfg):
    """Workloads 1-5 in rounds, each on a fresh pool, as the harness does:
    medians of the throughputs over rounds, latency samples pooled."""
    samples = collections.defaultdict(list)
    for _ in range(cfg["rounds"]):
        with ThreadPoolExecutor(max_workers=cfg["workers"]) as ex:
            warm_up(ex, cfg["workers"])
            samples["submit_collect"].append(submit_collect(ex, cfg))
            samples["parked"] += latency_parked(ex, cfg)
            samples["busy"] += latency_busy(ex, cfg)
            samples["map"].append(map_buffered(ex, cfg))
            samples["done"].append(as_completed_done(ex, cfg))
            samples["in_flight"].append(as_completed_in_flight(ex, cfg))
        samples["wait"] += wait_first_completed(cfg)
    median = statistics.median
    return {
        "submit_collect_ns": median(samples["submit_collect"]),
        "latency_parked_p50_ns": median(samples["parked"]),
        "latency_parked_p99_ns": percentile(samples["parked"], 0.99),
        "latency_busy_p50_ns": median(samples["busy"]),
        "latency_busy_p99_ns": percentile(samples["busy"], 0.99),
        "map_buffered_ns": median(samples["map"]),
        "as_completed_done_ns": median(samples["done"]),
        "as_completed_in_flight_ns": median(samples["in_flight"]),
        "wait_first_completed_ns": median(samples["wait"]),
    }


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def run_mem(cfg):
    """Workload 6: peak RSS growth per pending future.

    One worker is held on an event, so every submitted future stays
    pending. The list that holds the futures is allocated before the
    baseline, so only the futures (and the pool's queue) are counted.
    """
    n = cfg["mem_n"]
    ex = ThreadPoolExecutor(max_workers=1)
    started, gate = threading.Event(), threading.Event()

    def blocker():
        started.set()
        gate.wait()

    ex.submit(blocker)
    started.wait()
    fs = [None] * n
    base = status_kib("VmRSS")
    for i in range(n):
        fs[i] = ex.submit(seven)
    peak = status_kib("VmHWM")
    result = {"memory_per_pending_bytes": (peak - base) * 1024 / n}
    # Release the worker and drop the queue quickly: only the number matters.
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    return result


def cpu_over(secs):
    start = time.process_time()
    time.sleep(secs)
    return (time.process_time() - start) / secs * 1e6


def run_idle(cfg):
    """Workload 7: CPU µs per second of an idle pool, then of a waiter."""
    secs = cfg["idle_secs"]
    ex = ThreadPoolExecutor(max_workers=cfg["workers"])
    warm_up(ex, cfg["workers"])
    time.sleep(cfg["settle_ms"] / 1e3)
    results = {"idle_pool_cpu_us_per_s": cpu_over(secs)}
    gate = threading.Event()
    never = ex.submit(gate.wait)
    waiter = threading.Thread(target=never.result, daemon=True)
    waiter.start()
    time.sleep(cfg["settle_ms"] / 1e3)
    results["blocked_waiter_cpu_us_per_s"] = cpu_over(secs)
    gate.set()
    waiter.join()
    ex.shutdown()
    return results


def main():
    mode, cfg = sys.argv[1], json.loads(sys.argv[2])
    runners = {"main": run_main, "mem": run_mem, "idle": run_idle}
    results = runners[mode](cfg)
    print(json.dumps({"python": sys.version.split()[0], "results": results}))


if __name__ == "__main__":
    main()
