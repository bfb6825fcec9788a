"""Python's ``concurrent.futures`` on a Rust core.

The names are the standard library's, with the same meaning: ``Future``,
``ThreadPoolExecutor``, ``ProcessPoolExecutor``, ``wait``,
``as_completed``, the ``FIRST_COMPLETED``/``FIRST_EXCEPTION``/
``ALL_COMPLETED`` constants, and the exception classes, which *are* the
standard library's (``except concurrent.futures.TimeoutError`` catches
ours). Importing this package is light: the pools load when first used,
so that a process pool worker starts fast.

>>> import concurrent_futures_rs as cf
>>> with cf.ThreadPoolExecutor(max_workers=2) as pool:
...     sorted(pool.map(abs, [-2, 1, -3]))
[1, 2, 3]

``install()`` makes this package ``concurrent.futures`` for the whole
process (asyncio and every library then use it).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = (
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "ALL_COMPLETED",
    "CancelledError",
    "TimeoutError",
    "InvalidStateError",
    "BrokenExecutor",
    "Future",
    "Executor",
    "wait",
    "as_completed",
    "ProcessPoolExecutor",
    "ThreadPoolExecutor",
    "BrokenProcessPool",
    "BrokenThreadPool",
    "WorkerDied",
    "get_reusable_executor",
    "install",
)

# Where each public name lives; loaded on first use (PEP 562).
_HOMES = {
    "FIRST_COMPLETED": "_base",
    "FIRST_EXCEPTION": "_base",
    "ALL_COMPLETED": "_base",
    "CancelledError": "_base",
    "TimeoutError": "_base",
    "InvalidStateError": "_base",
    "BrokenExecutor": "_base",
    "Future": "_base",
    "Executor": "_base",
    "wait": "_base",
    "as_completed": "_base",
    "ThreadPoolExecutor": "thread",
    "BrokenThreadPool": "thread",
    "ProcessPoolExecutor": "process",
    "BrokenProcessPool": "process",
    "WorkerDied": "process",
    "get_reusable_executor": "process",
    "install": "alias",
}

_SUBMODULES = ("_base", "thread", "process")


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        module = importlib.import_module(f"{__name__}.{home}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
