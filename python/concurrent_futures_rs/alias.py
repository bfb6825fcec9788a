"""``install()``: this package as ``concurrent.futures`` for the whole
process, so that asyncio and every library use it (like
``uvloop.install()``). Off unless asked for: call it first thing, or put
``import concurrent_futures_rs.alias as a; a.install()`` in a ``.pth``
file to reach every process, ``python -I`` children included (the way
CPython's own test suite is run against this package)."""

from __future__ import annotations

import sys


def install() -> None:
    """Replaces ``concurrent.futures`` (and its ``_base``, ``thread`` and
    ``process`` modules) in ``sys.modules`` with this package's."""
    # The real ones first: ours derive from them.
    import concurrent
    import concurrent.futures
    import concurrent.futures._base
    import concurrent.futures.process
    import concurrent.futures.thread

    import concurrent_futures_rs as package
    from concurrent_futures_rs import _base, process, thread

    package._base = _base  # type: ignore[attr-defined]
    package.thread = thread  # type: ignore[attr-defined]
    package.process = process  # type: ignore[attr-defined]
    sys.modules["concurrent.futures"] = package
    sys.modules["concurrent.futures._base"] = _base
    sys.modules["concurrent.futures.thread"] = thread
    sys.modules["concurrent.futures.process"] = process
    concurrent.futures = package  # type: ignore[attr-defined]
