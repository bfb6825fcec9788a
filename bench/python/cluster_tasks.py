"""The tasks the cluster peers run (bench/python/cluster_peers.py).

They live in a module of their own so that dask's and Ray's worker
processes import them by name, as they would a program's own module,
rather than receiving them pickled by value from ``__main__``.
"""

import os
import time


def identity(x: int) -> int:
    """The trivial task: rows C1 and C2."""
    return x


def stamp(_: int) -> int:
    """When the task ran, on ``CLOCK_MONOTONIC`` (the clock the harness reads)."""
    return time.monotonic_ns()


def pid_after_20ms(_: int) -> int:
    """Warm-up: which worker process runs a call that lasts 20 ms."""
    time.sleep(0.02)
    return os.getpid()
