"""The functions every pool runs, by reference: a module of their own, so
that worker processes started afresh (ours, loky, CPython's ``spawn``)
import them without importing the harness."""

from __future__ import annotations

import math
import os
import threading
import time

# The six numbers of the ``ProcessPoolExecutor`` example in Python's
# ``concurrent.futures`` documentation (the seeds' primes example).
PRIMES = [
    112272535095293,
    112582705942171,
    112272535095293,
    115280095190773,
    115797848077099,
    1099726899285419,
]

PRIMES_ANSWER = [True, True, True, True, True, False]


def identity(x: int) -> int:
    return x


def double(x: int) -> int:
    return x * 2


def pid_after(seconds: float) -> int:
    """Sleeps, then says which worker process ran it (for warming up)."""
    time.sleep(seconds)
    return os.getpid()


def wait_event(event: threading.Event) -> None:
    """Holds a thread pool's worker until ``event`` is set."""
    event.wait()


def is_prime(n: int) -> bool:
    """The documentation's ``is_prime``."""
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
