"""The Python package ``concurrent_futures_rs`` measured against CPython's
``concurrent.futures``, loky and pebble, all in one run.

Every round gives each peer, in turn (the order rotates from round to
round), a fresh pool with the same number of workers, so that a burst of
outside load hits them alike. Throughputs are the median over rounds;
latency and start-up samples are pooled over rounds. The result is one
Markdown section, ``## Python package``, printed, and with ``--write``
put at the end of BENCHMARKS.md (replacing the one there).
"""

from __future__ import annotations

import argparse
import concurrent.futures as std
import datetime
import gc
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import concurrent_futures_rs as ours
import loky
import pebble
import tasks

now_ns = time.perf_counter_ns

OURS, CPYTHON, LOKY, PEBBLE = "ours", "CPython", "loky", "pebble"
COLUMNS = (OURS, CPYTHON, LOKY, PEBBLE)
SECTION = "## Python package"
HAND_MARKER = (
    "<!-- Python package: written by hand below this line; "
    "`scripts/bench-python --write` keeps it. -->"
)
COMMAND = "scripts/bench-python --write"


@dataclass
class Config:
    workers: int = 2
    rounds: int = 3
    thread_n: int = 100_000
    thread_trips: int = 2_000
    future_n: int = 100_000
    wait_n: int = 10_000
    wait_repeats: int = 5
    proc_n: int = 10_000
    map_n: int = 100_000
    map_chunksize: int = 100
    proc_trips: int = 1_000
    startups: int = 5
    primes_runs: int = 2

    def quick(self) -> None:
        self.rounds = 1
        self.thread_n //= 10
        self.thread_trips //= 10
        self.future_n //= 10
        self.wait_n //= 10
        self.proc_n //= 10
        self.map_n //= 10
        self.proc_trips //= 10
        self.startups = 2
        self.primes_runs = 1


@dataclass
class Row:
    """One workload row: its label, whether it is a time (lower is better),
    and the peers that have it."""

    key: str
    label: str
    peers: tuple[str, ...]
    stat: str = "median"  # of the per-round values, or "p99" of pooled samples


@dataclass
class Results:
    # key -> peer -> per-round values (throughputs) or pooled samples (latencies)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, key: str, peer: str, value: float | list[float]) -> None:
        slot = self.values.setdefault(key, {}).setdefault(peer, [])
        if isinstance(value, list):
            slot.extend(value)
        else:
            slot.append(value)

    def get(self, row: Row, peer: str) -> float | None:
        samples = self.values.get(row.key, {}).get(peer)
        if not samples:
            return None
        if row.stat == "p99":
            return percentile(samples, 0.99)
        return statistics.median(samples)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rotated(peers: tuple[str, ...], round_no: int) -> tuple[str, ...]:
    k = round_no % len(peers)
    return peers[k:] + peers[:k]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- pools, behind one small interface -------------------------------------


class Pool:
    """A peer's pool: ``submit(fn, *args) -> Future``, ``map`` and
    ``shutdown``, each a direct call of the peer's own API."""

    def __init__(
        self,
        submit: Callable[..., Any],
        map_fn: Callable[[Callable[[Any], Any], Iterable[Any], int], Iterator[Any]],
        shutdown: Callable[[], None],
    ) -> None:
        self.submit = submit
        self.map = map_fn
        self.shutdown = shutdown


def _executor_pool(executor: Any) -> Pool:
    def map_fn(fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        return executor.map(fn, items, chunksize=chunksize)

    return Pool(executor.submit, map_fn, executor.shutdown)


def _pebble_pool(pool: Any, processes: bool) -> Pool:
    schedule = pool.schedule

    if processes:

        def submit(fn: Callable[..., Any], *args: Any) -> Any:
            return schedule(fn, args)

    else:
        submit = pool.submit  # ThreadPool.submit(fn, *args) calls schedule

    def map_fn(fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int) -> Iterator[Any]:
        return pool.map(fn, items, chunksize=chunksize).result()

    def shutdown() -> None:
        pool.close()
        pool.join()

    return Pool(submit, map_fn, shutdown)


def thread_pool(peer: str, workers: int) -> Pool:
    if peer == OURS:
        return _executor_pool(ours.ThreadPoolExecutor(max_workers=workers))
    if peer == CPYTHON:
        return _executor_pool(std.ThreadPoolExecutor(max_workers=workers))
    if peer == PEBBLE:
        return _pebble_pool(pebble.ThreadPool(max_workers=workers), processes=False)
    raise ValueError(peer)


CPYTHON_SPAWN = "CPython spawn"


def process_pool(peer: str, workers: int) -> Pool:
    if peer == OURS:
        return _executor_pool(ours.ProcessPoolExecutor(max_workers=workers))
    if peer == CPYTHON:
        return _executor_pool(std.ProcessPoolExecutor(max_workers=workers))
    if peer == CPYTHON_SPAWN:
        spawn = multiprocessing.get_context("spawn")
        return _executor_pool(std.ProcessPoolExecutor(max_workers=workers, mp_context=spawn))
    if peer == LOKY:
        return _executor_pool(loky.ProcessPoolExecutor(max_workers=workers))
    if peer == PEBBLE:
        return _pebble_pool(pebble.ProcessPool(max_workers=workers), processes=True)
    raise ValueError(peer)


def warm_threads(pool: Pool, workers: int) -> None:
    """Starts every worker thread, then runs a batch."""
    barrier = threading.Barrier(workers)
    for f in [pool.submit(barrier.wait) for _ in range(workers)]:
        f.result(timeout=30)
    batch = [pool.submit(tasks.identity, i) for i in range(1_000)]
    assert sum(f.result() for f in batch) == 1_000 * 999 // 2


def warm_processes(pool: Pool, workers: int) -> None:
    """Every worker process running (calls that sleep and return their pid
    came back from ``workers`` pids), then a batch of trivial calls."""
    for _ in range(20):
        fs = [pool.submit(tasks.pid_after, 0.05) for _ in range(workers)]
        if len({f.result(timeout=60) for f in fs}) == workers:
            break
    else:
        raise RuntimeError("the pool never ran calls on all its workers at once")
    batch = [pool.submit(tasks.identity, i) for i in range(1_000)]
    assert sum(f.result() for f in batch) == 1_000 * 999 // 2


# --- workloads ---------------------------------------------------------------


def submit_collect(pool: Pool, n: int) -> float:
    """Submit ``n`` trivial calls, then take every result in order; per call."""
    gc.collect()
    submit, identity = pool.submit, tasks.identity
    start = now_ns()
    fs = [submit(identity, i) for i in range(n)]
    total = sum(f.result() for f in fs)
    elapsed = now_ns() - start
    assert total == n * (n - 1) // 2
    return elapsed / n


def round_trips(pool: Pool, n: int) -> list[float]:
    """Back-to-back round trips: submit one call, wait for its result."""
    gc.collect()
    submit, identity = pool.submit, tasks.identity
    samples = []
    for _ in range(n):
        start = now_ns()
        submit(identity, 7).result()
        samples.append(now_ns() - start)
    return samples


def map_items(pool: Pool, n: int, chunksize: int) -> float:
    gc.collect()
    start = now_ns()
    total = sum(pool.map(tasks.double, range(n), chunksize))
    elapsed = now_ns() - start
    assert total == n * (n - 1)
    return elapsed / n


def primes(pool: Pool) -> float:
    gc.collect()
    start = now_ns()
    answer = list(pool.map(tasks.is_prime, tasks.PRIMES, 1))
    elapsed = now_ns() - start
    assert answer == tasks.PRIMES_ANSWER
    return elapsed


def primes_sequential() -> float:
    start = now_ns()
    answer = [tasks.is_prime(n) for n in tasks.PRIMES]
    elapsed = now_ns() - start
    assert answer == tasks.PRIMES_ANSWER
    return elapsed


def startup(peer: str, workers: int) -> float:
    """Construct a pool, take the first result, shut it down (waiting)."""
    gc.collect()
    start = now_ns()
    pool = process_pool(peer, workers)
    assert pool.submit(tasks.identity, 1).result(timeout=60) == 1
    pool.shutdown()
    return now_ns() - start


def future_cycle(future_cls: type, n: int) -> float:
    """``Future()``, ``set_result``, ``result()``; per future."""
    gc.collect()
    start = now_ns()
    for i in range(n):
        f = future_cls()
        f.set_result(i)
        f.result()
    return (now_ns() - start) / n


def done_futures(future_cls: type, n: int) -> list[Any]:
    fs = []
    for i in range(n):
        f = future_cls()
        f.set_result(i)
        fs.append(f)
    return fs


def wait_done(module: Any, fs: list[Any]) -> float:
    gc.collect()
    start = now_ns()
    done, not_done = module.wait(fs, return_when=module.ALL_COMPLETED)
    elapsed = now_ns() - start
    assert len(done) == len(fs) and not not_done
    return elapsed / len(fs)


def as_completed_done(module: Any, fs: list[Any]) -> float:
    gc.collect()
    start = now_ns()
    total = sum(f.result() for f in module.as_completed(fs))
    elapsed = now_ns() - start
    assert total == len(fs) * (len(fs) - 1) // 2
    return elapsed / len(fs)


def while_completing(module: Any, pool: Pool, workers: int, n: int, how: str) -> float:
    """``n`` calls queued behind ``workers`` calls that hold every worker;
    timed from releasing them until ``wait`` returns (or ``as_completed``
    has yielded every future); per future."""
    gc.collect()
    gate = threading.Event()
    gates = [pool.submit(tasks.wait_event, gate) for _ in range(workers)]
    fs = [pool.submit(tasks.identity, i) for i in range(n)]
    start = now_ns()
    gate.set()
    if how == "wait":
        done, not_done = module.wait(fs, return_when=module.ALL_COMPLETED)
        assert len(done) == n and not not_done
    else:
        assert sum(f.result() for f in module.as_completed(fs)) == n * (n - 1) // 2
    elapsed = now_ns() - start
    for g in gates:
        g.result()
    return elapsed / n


# --- rows --------------------------------------------------------------------


THREAD_PEERS = (OURS, CPYTHON, PEBBLE)
FUTURE_PEERS = (OURS, CPYTHON)
PROCESS_PEERS = (OURS, CPYTHON, LOKY, PEBBLE)


def rows(cfg: Config) -> list[Row]:
    w, p = cfg.wait_n, cfg.proc_n
    return [
        Row("t_submit", f"T1. threads: submit {cfg.thread_n:,} + collect, per task", THREAD_PEERS),
        Row("t_trip", "T2. threads: round trip, median", THREAD_PEERS),
        Row("t_trip_p99", "T2. threads: round trip, p99", THREAD_PEERS, "p99"),
        Row("f_cycle", "F1. `Future()` + `set_result` + `result()`, per future", FUTURE_PEERS),
        Row(
            "w_done", f"W1. `wait(ALL_COMPLETED)` over {w:,} done futures, per future", FUTURE_PEERS
        ),
        Row("a_done", f"W2. `as_completed` over {w:,} done futures, per future", FUTURE_PEERS),
        Row(
            "w_pool",
            f"W3. `wait(ALL_COMPLETED)` over {w:,} futures a pool completes, per future",
            FUTURE_PEERS,
        ),
        Row(
            "a_pool",
            f"W4. `as_completed` over {w:,} futures a pool completes, per future",
            FUTURE_PEERS,
        ),
        Row(
            "p_submit",
            f"P1. processes: submit {p:,} (chunksize 1) + collect, per task",
            PROCESS_PEERS,
        ),
        Row(
            "p_map",
            f"P2. processes: map {cfg.map_n:,} items, chunksize {cfg.map_chunksize}, per item",
            PROCESS_PEERS,
        ),
        Row("p_trip", "P3. processes: round trip, median", PROCESS_PEERS),
        Row("p_trip_p99", "P3. processes: round trip, p99", PROCESS_PEERS, "p99"),
        Row("p_start", "P4. start-up: construct + first result + shutdown, median", PROCESS_PEERS),
        Row(
            "p_start_spawn",
            "P4b. start-up as P4, CPython with the `spawn` context, median",
            (OURS, CPYTHON),
        ),
        Row(
            "p_primes",
            "P5. primes: `map(is_prime, PRIMES)` on a warm pool, wall time",
            PROCESS_PEERS,
        ),
    ]


# --- the run -----------------------------------------------------------------


def cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of its reaped children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run_round(cfg: Config, r: int, res: Results, loads: list[float]) -> None:
    workers = cfg.workers
    loads.append(os.getloadavg()[0])
    for peer in rotated(THREAD_PEERS, r):
        progress(f"round {r + 1}: thread pool, {peer}")
        pool = thread_pool(peer, workers)
        warm_threads(pool, workers)
        res.add("t_submit", peer, submit_collect(pool, cfg.thread_n))
        res.add("t_trip", peer, round_trips(pool, cfg.thread_trips))
        if peer in FUTURE_PEERS:
            module = ours if peer == OURS else std
            for _ in range(cfg.wait_repeats):
                res.add("w_pool", peer, while_completing(module, pool, workers, cfg.wait_n, "wait"))
                res.add("a_pool", peer, while_completing(module, pool, workers, cfg.wait_n, "as"))
        pool.shutdown()
    for peer in rotated(FUTURE_PEERS, r):
        progress(f"round {r + 1}: futures, {peer}")
        module = ours if peer == OURS else std
        res.add("f_cycle", peer, future_cycle(module.Future, cfg.future_n))
        for _ in range(cfg.wait_repeats):
            res.add("w_done", peer, wait_done(module, done_futures(module.Future, cfg.wait_n)))
            res.add(
                "a_done", peer, as_completed_done(module, done_futures(module.Future, cfg.wait_n))
            )
    loads.append(os.getloadavg()[0])
    res.add("seq_primes", OURS, primes_sequential())
    for peer in rotated(PROCESS_PEERS, r):
        progress(f"round {r + 1}: process pool, {peer}")
        pool = process_pool(peer, workers)
        warm_processes(pool, workers)
        res.add("p_submit", peer, submit_collect(pool, cfg.proc_n))
        res.add("p_map", peer, map_items(pool, cfg.map_n, cfg.map_chunksize))
        res.add("p_trip", peer, round_trips(pool, cfg.proc_trips))
        for _ in range(cfg.primes_runs):
            res.add("p_primes", peer, primes(pool))
        pool.shutdown()
    progress(f"round {r + 1}: start-up")
    for _ in range(cfg.startups):
        for peer in rotated((*PROCESS_PEERS, CPYTHON_SPAWN), r):
            key, column = ("p_start_spawn", CPYTHON) if peer == CPYTHON_SPAWN else ("p_start", peer)
            res.add(key, column, startup(peer, workers))
    loads.append(os.getloadavg()[0])


def measure(cfg: Config) -> tuple[Results, dict[str, Any]]:
    res = Results()
    meta: dict[str, Any] = {"load_start": os.getloadavg(), "date": datetime.date.today()}
    loads: list[float] = []
    wall0, busy0, own0 = time.monotonic(), cpu_busy_s(), own_cpu_s()
    for r in range(cfg.rounds):
        run_round(cfg, r, res, loads)
    wall = time.monotonic() - wall0
    outside = (cpu_busy_s() - busy0) - (own_cpu_s() - own0)
    meta.update(
        load_end=os.getloadavg(),
        load_max=max(loads),
        seconds=wall,
        outside_cores=max(0.0, outside / wall),
    )
    # Ours' start-up row is the same measurement for both start-up rows.
    res.values["p_start_spawn"][OURS] = list(res.values["p_start"][OURS])
    # The trip rows' p99 use the same pooled samples as their medians.
    for trip in ("t_trip", "p_trip"):
        res.values[f"{trip}_p99"] = res.values[trip]
    return res, meta


# --- the report --------------------------------------------------------------


def sig3(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ns(ns: float) -> str:
    if ns < 1_000:
        return f"{ns:.0f} ns" if ns >= 10 else f"{ns:.1f} ns"
    for unit, scale in (("µs", 1e3), ("ms", 1e6), ("s", 1e9)):
        if ns < scale * 1_000 or unit == "s":
            return f"{sig3(ns / scale)} {unit}"
    raise AssertionError


def ratio(res: Results, row: Row, peer: str) -> float | None:
    ours_value, peer_value = res.get(row, OURS), res.get(row, peer)
    if ours_value is None or peer_value is None or ours_value == 0:
        return None
    return peer_value / ours_value


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def machine_lines() -> list[str]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "status",
                "--porcelain",
                "--",
                "src",
                "python/src",
                "python/concurrent_futures_rs",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "?", ""
    tree = f"commit {commit}" + (" with uncommitted changes" if dirty else "")
    return [
        f"- nproc: {os.cpu_count()}",
        f"- CPU: {cpu}",
        f"- Linux {platform.release()}",
        f"- CPython {platform.python_version()}",
        f"- concurrent_futures_rs {ours.__version__} (the wheel from target/wheels, "
        f"built from the working tree at {tree})",
        f"- peers: loky {version('loky')} (with cloudpickle {version('cloudpickle')}), "
        f"pebble {version('pebble')}",
    ]


def results_table(cfg: Config, res: Results) -> list[str]:
    lines = [
        "| Workload | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for row in rows(cfg):
        cells = []
        for peer in COLUMNS:
            value = res.get(row, peer) if peer in row.peers else None
            if value is None:
                cells.append("n/a")
            elif peer == OURS:
                cells.append(fmt_ns(value))
            else:
                x = ratio(res, row, peer)
                cells.append(f"{fmt_ns(value)} ({sig3(x)}×)" if x is not None else fmt_ns(value))
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return lines


def targets_table(cfg: Config, res: Results) -> tuple[list[str], list[bool]]:
    by_key = {row.key: row for row in rows(cfg)}
    lines = ["| Target | Measured (ours) | Met |", "|---|---|---|"]
    met_all = []

    def add(target: str, measured: str, met: bool) -> None:
        met_all.append(met)
        lines.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")

    for key, times, what in (
        ("t_submit", 10, "thread submit + collect (T1)"),
        ("p_submit", 5, "process pool, per task with chunksize 1 (P1)"),
        ("p_trip", 4, "process round trip, median (P3)"),
    ):
        row = by_key[key]
        x = ratio(res, row, CPYTHON)
        assert x is not None
        add(
            f"{what} ≥ {times}× faster than CPython",
            f"{fmt_ns(res.get(row, OURS) or 0)}: {sig3(x)}× faster",
            x >= times,
        )
    for peer in (LOKY, PEBBLE):
        had = [row for row in rows(cfg) if peer in row.peers]
        behind = [row for row in had if (ratio(res, row, peer) or 0) <= 1]
        worst = min(had, key=lambda row: ratio(res, row, peer) or 0)
        lowest = sig3(ratio(res, worst, peer) or 0)
        measured = f"lowest ratio {lowest}× ({worst.label.split('.')[0]})"
        if behind:
            measured += "; behind on " + ", ".join(
                f"{row.label.split('.')[0]} ({sig3(ratio(res, row, peer) or 0)}×)" for row in behind
            )
        add(f"ahead of {peer} on every row it has ({len(had)} rows)", measured, not behind)
    return lines, met_all


def notes(cfg: Config, res: Results) -> list[str]:
    w = cfg.workers
    seq = statistics.median(res.values["seq_primes"][OURS])
    return [
        f"- Pools, {w} workers each: ours "
        f"`concurrent_futures_rs.ThreadPoolExecutor(max_workers={w})` and "
        f"`ProcessPoolExecutor(max_workers={w})`; CPython's `concurrent.futures` classes "
        "with their defaults (on Linux, 3.11's process pool forks its workers); "
        f"`loky.ProcessPoolExecutor(max_workers={w})` (its `loky` context: fork + exec, "
        f"cloudpickle); pebble's `ThreadPool(max_workers={w})` and `ProcessPool(max_workers={w})`"
        " (fork). Ours follows the default context as CPython's does: on 3.11 on Linux its "
        "workers are forks of the measuring process, all started at the first submit. loky has "
        "no thread pool, so its thread rows are n/a.",
        "- Calls: every pool runs the plain functions of `bench/python_package/tasks.py` "
        "(`identity`, `double`, `is_prime`), by reference. Ours, CPython and loky through "
        "`submit(fn, *args)` and `map(fn, items, chunksize=...)`; pebble through "
        "`schedule(fn, args)` (process pool; its thread pool's `submit(fn, *args)`, which calls "
        "`schedule`) and `map(fn, items, chunksize=...).result()`.",
        f"- Rounds: {cfg.rounds}. Each round gives every peer, in turn (the order rotating from "
        "round to round), a fresh pool: thread pools, then the futures rows, then process pools, "
        "then the start-ups. Every pool is warmed up first: threads, a barrier that every worker "
        "must reach; processes, calls that sleep 50 ms and return their pid until they came back "
        f"from {w} pids; then 1,000 trivial calls. Throughput rows are the median over rounds "
        "(W rows: over every repeat of every round); round trip and start-up samples are pooled "
        "over rounds.",
        f"- T1: submit {cfg.thread_n:,} `identity(i)` calls, then take every result in order. "
        f"T2: {cfg.thread_trips:,} back-to-back round trips per round (submit `identity(7)`, "
        "wait for its result).",
        f"- F1: {cfg.future_n:,} times, a stand-alone `Future()`, `set_result(i)` and `result()`.",
        f"- W1, W2: {cfg.wait_n:,} stand-alone futures already done (made with `Future()` and "
        "`set_result`, not timed); only `wait(fs, return_when=ALL_COMPLETED)`, or "
        "`as_completed(fs)` with each `result()`, is timed. W3, W4: on a warm thread pool, "
        f"{w} calls that block on an event hold every worker while {cfg.wait_n:,} `identity(i)` "
        "calls are queued behind them (not timed); timed from setting the event until `wait` "
        "returns, or `as_completed` has yielded every future, so the pool's running of the "
        f"calls is in the time. {cfg.wait_repeats} repeats per round. Each peer's own `wait` and "
        "`as_completed` over its own futures; pebble's futures are CPython's, so n/a.",
        f"- P1: submit {cfg.proc_n:,} `identity(i)` calls, one message each, then take every "
        f"result in order. P2: `sum(map(double, range({cfg.map_n:,}), "
        f"chunksize={cfg.map_chunksize}))`; every chunk is submitted at once by every peer. "
        f"P3: {cfg.proc_trips:,} back-to-back round trips per round on the warm pool.",
        f"- P4: {cfg.startups} start-ups per peer per round: the time from constructing the pool "
        "to the first result of `identity(1)` and a `shutdown(wait=True)` returning (pebble: "
        "`close()` + `join()`). With the default context (`fork` on Linux, 3.11) ours and CPython "
        "start both workers at the first submit; with `spawn`, one as the first call needs it. "
        "The workers import `tasks.py` and the harness's entry "
        "(`run.py`, empty at import) as the parent's main module. P4b: CPython with "
        '`mp_context=get_context("spawn")`, beside the same measurements of ours.',
        "- P5: `list(map(is_prime, PRIMES))`, chunksize 1, on the warm pool: the six numbers of "
        "the `ProcessPoolExecutor` example in Python's documentation, with its `is_prime` (the "
        f"seeds' primes example). {cfg.primes_runs} time(s) per peer per round, the median of "
        "all runs. For scale, the same six checks one "
        f"after the other in the harness process took {fmt_ns(seq)} (median over rounds); five "
        f"of the numbers cost about the same, so {w} workers cannot do better than about "
        "5.3 / 3 ≈ 1.8× faster than that.",
    ]


def section(cfg: Config, res: Results, meta: dict[str, Any], command: str) -> str:
    start, end = meta["load_start"], meta["load_end"]
    target_lines, _ = targets_table(cfg, res)
    parts = [
        SECTION,
        "",
        f"Made by `{command}` on {meta['date'].isoformat()}, in {meta['seconds']:.0f} s.",
        "",
        "**These numbers are from one run on a shared, noisy "
        f"{os.cpu_count()}-core machine (load average {start[0]:.2f} {start[1]:.2f} "
        f"{start[2]:.2f} at the start, {end[0]:.2f} {end[1]:.2f} {end[2]:.2f} at the end, the "
        "benchmark's own threads and processes included; highest 1-minute value seen between "
        f"peers {meta['load_max']:.2f}; CPU used by other processes during the run: "
        f"{meta['outside_cores']:.2f} cores on average): the ratios matter, not the absolute "
        "times.** Every peer ran in the same run, round by round, with the same number of "
        f"workers: **{cfg.workers}** threads, or **{cfg.workers}** processes.",
        "",
        *machine_lines(),
        "",
        "### Python package: results",
        "",
        "Each peer cell shows its value and, in parentheses, the ratio peer / ours: **above 1 "
        "we are faster**. n/a: not measured for that peer (see the notes).",
        "",
        *results_table(cfg, res),
        "",
        "### Python package: targets",
        "",
        *target_lines,
        "",
        "### What each Python package row measures",
        "",
        *notes(cfg, res),
        "",
        "### Running the Python package's benchmark",
        "",
        "- `scripts/bench-python`: makes the venv target/bench-py (the machine's `python3`, "
        "loky and pebble from PyPI, the package's wheel from target/wheels, built by "
        "`scripts/python-dev` when missing), runs `bench/python_package/run.py` and prints this "
        "section; about 1.5-3 minutes on 2 cores.",
        "- `--write` also puts it at the end of BENCHMARKS.md, replacing the section there and "
        "keeping what is below its hand-written marker; `--quick` is a smoke run of about 15 s "
        "(one round, a tenth of the sizes); `--workers N` and `--rounds N` change those.",
        "",
    ]
    return "\n".join(parts)


def write(path: Path, text: str) -> None:
    """Puts ``text`` in place of the ``## Python package`` section (up to
    the next ``## `` heading, or the end), keeping what is below its
    hand-written marker; appends it at the end when there is none."""
    old = path.read_text() if path.exists() else ""
    at = old.find("\n" + SECTION + "\n")
    if at < 0:
        head, hand, tail = old, "\n", ""
    else:
        head, rest = old[: at + 1], old[at + 1 :]
        after = rest.find("\n## ", len(SECTION))
        body, tail = (rest, "") if after < 0 else (rest[: after + 1], rest[after + 1 :])
        marker = body.find(HAND_MARKER)
        hand = body[marker + len(HAND_MARKER) :] if marker >= 0 else "\n"
    if tail and not hand.endswith("\n\n"):
        hand = hand.rstrip("\n") + "\n\n"
    path.write_text(head.rstrip("\n") + "\n\n" + text + "\n" + HAND_MARKER + hand + tail)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, a tenth of the sizes")
    parser.add_argument("--write", type=Path, metavar="BENCHMARKS_MD")
    parser.add_argument("--command", default=COMMAND, help="the command named in the section")
    args = parser.parse_args(argv)
    cfg = Config(workers=args.workers, rounds=args.rounds)
    if args.quick:
        cfg.quick()
    progress(f"load average before: {os.getloadavg()}")
    res, meta = measure(cfg)
    text = section(cfg, res, meta, args.command)
    print(text)
    if meta["outside_cores"] > 0.5:
        progress("warning: the machine was busy during the run; consider running again")
    if args.write is not None:
        write(args.write, text)
        progress(f"wrote {args.write}")
    return 0
