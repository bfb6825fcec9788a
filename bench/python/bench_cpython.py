#!/usr/bin/env python3
"""CPython's concurrent.futures, measured the way bench/src measures ours.

The Rust harness runs this script as

    python3 bench_cpython.py MODE 'CONFIG JSON'

and parses the one JSON object it prints on stdout. MODE is one of

* ``main``: workloads 1-5 (throughput, latency, map, as_completed, wait);
* ``mem``: memory per pending future (run in a fresh process so the peak
  resident set is this workload's alone); ``mem_capturing`` the same with
  each task carrying its index (``submit(identity, i)``);
* ``pinned``: round trips with the process pinned to one CPU (2c);
* ``idle``: CPU time of an idle pool and of a thread blocked in result();
* ``proc``: one round of the process-pool workloads P1-P7 with
  ``ProcessPoolExecutor`` and the ``fork`` context, plus start-up (P4) with
  the ``spawn`` context. It prints raw samples (lists), one object per
  context, which the harness pools over rounds.

The keys of the result match the Rust harness's metric keys; the sizes come
from CONFIG so both sides always measure the same thing.
"""

import collections
import itertools
import json
import math
import multiprocessing
import os
import random
import signal
import socket
import statistics
import string
import sys
import tempfile
import threading
import time
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from concurrent.futures.process import BrokenProcessPool

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


def as_completed_done(ex, cfg, shuffled=False):
    """Workload 4a: as_completed over N futures that are all done; 4c
    (``shuffled``) with the futures in a random order."""
    n = cfg["as_completed_n"]
    fs = [ex.submit(identity, i) for i in range(n)]
    wait(fs, return_when=ALL_COMPLETED)
    if shuffled:
        random.Random(0x5EED).shuffle(fs)
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
            samples["shuffled"].append(as_completed_done(ex, cfg, shuffled=True))
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
        "as_completed_shuffled_ns": median(samples["shuffled"]),
        "as_completed_in_flight_ns": median(samples["in_flight"]),
        "wait_first_completed_ns": median(samples["wait"]),
    }


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def run_pinned(cfg):
    """Workload 2c: back-to-back round trips, the process pinned to one CPU
    (threads started afterwards inherit it)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with ThreadPoolExecutor(max_workers=cfg["workers"]) as ex:
        warm_up(ex, cfg["workers"])
        samples = []
        for _ in range(cfg["pinned_samples"]):
            start = now_ns()
            ex.submit(seven).result()
            samples.append(now_ns() - start)
    return {"latency_pinned_p50_ns": statistics.median(samples)}


def run_mem_capturing(cfg):
    return run_mem(cfg, capturing=True)


def run_mem(cfg, capturing=False):
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
    if capturing:
        for i in range(n):
            fs[i] = ex.submit(identity, i)
    else:
        for i in range(n):
            fs[i] = ex.submit(seven)
    peak = status_kib("VmHWM")
    key = "memory_per_pending_capturing_bytes" if capturing else "memory_per_pending_bytes"
    result = {key: (peak - base) * 1024 / n}
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


# ---------------------------------------------------------------- process --
# Mirrors bench/src/process_workloads.rs. The functions a worker runs are at
# module level so that they pickle by name (and, with spawn, re-import).

PRIMES = [
    112272535095293,
    112582705942171,
    112272535095293,
    115280095190773,
    115797848077099,
    1099726899285419,
]


def is_prime(n):
    """The seeds' is_prime, as in the concurrent.futures documentation."""
    if n < 2:
        return False
    if n == 2:
        return True
    if n % 2 == 0:
        return False

    sqrt_n = int(math.floor(math.sqrt(n)))
    for i in range(3, sqrt_n + 1, 2):
        if n % i == 0:
            return False
    return True


def pid_after(ms):
    time.sleep(ms / 1e3)
    return os.getpid()


def echo(s):
    return s


def report_and_hold(path):
    """P6: tells the harness which process runs it, then holds its worker
    until the harness hangs up (or the process is killed)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        return 0
    s.sendall(os.getpid().to_bytes(4, "little"))
    s.recv(1)
    return 0


def proc_warm_up(ex, workers):
    """Every worker running (fork starts them all at the first submit,
    spawn one per submit), then a batch, as the harness's `warm_up`."""
    for _ in range(5):
        pids = {f.result() for f in [ex.submit(pid_after, 20) for _ in range(workers)]}
        if len(pids) == workers:
            break
    batch = [ex.submit(identity, i) for i in range(1000)]
    assert sum(f.result() for f in batch) == 1000 * 999 // 2


def proc_startup(ctx, workers):
    """P4: from creating the pool to the first result; shutdown not
    counted."""
    start = now_ns()
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    assert ex.submit(identity, 1).result() == 1
    elapsed = now_ns() - start
    ex.shutdown()
    return elapsed


def proc_submit_collect(ex, pc):
    """P1: N trivial tasks, one call each, then every result in order."""
    n = pc["submit_n"]
    start = now_ns()
    fs = [ex.submit(identity, i) for i in range(n)]
    total = sum(f.result() for f in fs)
    elapsed = now_ns() - start
    assert total == n * (n - 1) // 2
    return elapsed / n


def proc_map(ex, pc):
    """P2: map with a chunksize, every result taken in order."""
    n = pc["map_n"]
    start = now_ns()
    total = sum(ex.map(double, range(n), chunksize=pc["map_chunksize"]))
    elapsed = now_ns() - start
    assert total == n * (n - 1)
    return elapsed / n


def proc_round_trips(ex, count):
    """P3: back-to-back submit -> result."""
    samples = []
    for _ in range(count):
        start = now_ns()
        assert ex.submit(identity, 7).result() == 7
        samples.append(now_ns() - start)
    return samples


def two_worker_bound(times):
    """P5: the best speed-up a 2-worker split of the numbers allows."""
    total = sum(times)
    best = min(
        max(one, total - one)
        for one in (
            sum(t for i, t in enumerate(times) if mask & (1 << i))
            for mask in range(1 << len(times))
        )
    )
    return total / best


def proc_primes_sequential():
    per_number = []
    start = now_ns()
    for n in PRIMES:
        t = now_ns()
        is_prime(n)
        per_number.append(now_ns() - t)
    return now_ns() - start, per_number


def proc_primes_pool(ex):
    """P5: the seeds' example, `executor.map(is_prime, PRIMES)`."""
    start = now_ns()
    primes = list(ex.map(is_prime, PRIMES))
    elapsed = now_ns() - start
    assert primes == [True, True, True, True, True, False]
    return elapsed


def proc_big(ex, nbytes):
    """P7: one call whose argument and result are `nbytes` long."""
    text = (string.ascii_lowercase * (nbytes // 26 + 1))[:nbytes]
    start = now_ns()
    back = ex.submit(echo, text).result()
    elapsed = now_ns() - start
    assert back == text
    return elapsed


class Holder:
    """The Unix socket report_and_hold tasks connect to."""

    def __init__(self):
        self.path = os.path.join(
            tempfile.gettempdir(), f"cf-bench-py-{os.getpid()}-{time.monotonic_ns()}.sock"
        )
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.listener.settimeout(30)
        self.held = []

    def arrival(self):
        conn, _ = self.listener.accept()
        conn.settimeout(None)
        pid = b""
        while len(pid) < 4:
            pid += conn.recv(4 - len(pid))
        self.held.append(conn)
        return int.from_bytes(pid, "little")

    def close(self):
        for conn in self.held:
            conn.close()
        self.listener.close()
        os.unlink(self.path)


def proc_death_broken(ctx, pc):
    """P6a: futures wait in wait(ALL_COMPLETED), one running on each worker,
    the rest queued; a worker is killed. From the kill to wait's return,
    every future failed with BrokenProcessPool."""
    workers = pc["workers"]
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    holder = Holder()
    fs = [
        ex.submit(report_and_hold, holder.path)
        for _ in range(max(pc["death_waiters"], workers))
    ]
    pids = [holder.arrival() for _ in range(workers)]
    killed_at = []

    def killer():
        time.sleep(pc["death_delay_ms"] / 1e3)
        killed_at.append(now_ns())
        os.kill(pids[0], signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    wait(fs, return_when=ALL_COMPLETED)
    returned_at = now_ns()
    t.join()
    for f in fs:
        assert isinstance(f.exception(), BrokenProcessPool), f.exception()
    holder.close()
    ex.shutdown()
    return returned_at - killed_at[0]


def run_proc(cfg):
    """One round of P1-P7 with the fork context, and P4 with spawn."""
    pc = cfg["process"]
    workers, rounds = pc["workers"], pc["rounds"]
    per_round = lambda total: -(-total // rounds)
    fork = multiprocessing.get_context("fork")
    spawn = multiprocessing.get_context("spawn")
    f = collections.defaultdict(list)
    s = collections.defaultdict(list)
    for _ in range(per_round(pc["startups"])):
        f["startup_ns"].append(proc_startup(fork, workers))
        s["startup_ns"].append(proc_startup(spawn, workers))
    with ProcessPoolExecutor(max_workers=workers, mp_context=fork) as ex:
        proc_warm_up(ex, workers)
        f["task_ns"].append(proc_submit_collect(ex, pc))
        f["map_ns"].append(proc_map(ex, pc))
        pools = max(pc["round_trip_pools"], 1)
        per_pool = -(-per_round(pc["round_trips"]) // pools)
        f["round_trip_ns"] += proc_round_trips(ex, per_pool)
        # As the harness: sequential then pool, back to back; the bound from
        # each number's fastest sequential time.
        fastest = [math.inf] * len(PRIMES)
        for _ in range(pc["primes_runs_python"]):
            sequential, per_number = proc_primes_sequential()
            pool_time = proc_primes_pool(ex)
            f["primes_sequential_ns"].append(sequential)
            f["primes_pool_ns"].append(pool_time)
            f["primes_speedup"].append(sequential / pool_time)
            fastest = [min(a, b) for a, b in zip(fastest, per_number)]
        if pc["primes_runs_python"]:
            f["primes_bound"].append(two_worker_bound(fastest))
        f["big_ns"].append(proc_big(ex, pc["big_bytes"]))
    for _ in range(1, pools):
        with ProcessPoolExecutor(max_workers=workers, mp_context=fork) as ex:
            proc_warm_up(ex, workers)
            f["round_trip_ns"] += proc_round_trips(ex, per_pool)
    for _ in range(per_round(pc["deaths"])):
        f["death_broken_ns"].append(proc_death_broken(fork, pc))
    return {"fork": f, "spawn": s}


def main():
    mode, cfg = sys.argv[1], json.loads(sys.argv[2])
    runners = {
        "main": run_main,
        "mem": run_mem,
        "mem_capturing": run_mem_capturing,
        "idle": run_idle,
        "pinned": run_pinned,
        "proc": run_proc,
    }
    results = runners[mode](cfg)
    print(json.dumps({"python": sys.version.split()[0], "results": results}))


if __name__ == "__main__":
    main()
