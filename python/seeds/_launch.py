"""Runs one seed example as ``__main__``, with the standard library's
``concurrent.futures`` or with ``concurrent_futures_rs`` in its place
(run.py's helper)::

    python _launch.py {stdlib,ours} EXAMPLE.py

``ours`` calls ``concurrent_futures_rs.alias.install()`` first, so that the
example's ``import concurrent.futures`` and ``from concurrent import
futures`` give this package; the example then runs through
``runpy.run_path(EXAMPLE, run_name="__main__")``, as ``python EXAMPLE.py``
would run it (``sys.argv[0]`` is the example; ``sys.path[0]`` is this
directory, the examples' own).

Process pool workers need no alias: ours start a fresh interpreter that
imports the example by its path as ``__mp_main__`` (its ``__file__``, as
``spawn`` does), where ``concurrent.futures`` is the standard library's
again, which the workers' side of the examples never uses.

Where ``SEEDS_REPORT`` names a file, it receives JSON saying which
``concurrent.futures`` the run had, before the example (``module``) and
after it (``globals``: where each of the example's globals that comes from
a ``concurrent.futures`` was defined, e.g. ``"executor":
"concurrent_futures_rs.thread"``), so that run.py can check the alias was
in effect.
"""

from __future__ import annotations

import io
import json
import os
import runpy
import sys
import types

REPORT_ENV = "SEEDS_REPORT"
HOMES = ("concurrent.futures", "concurrent_futures_rs")


def home(value: object) -> str | None:
    """The module ``value`` comes from, if that is a ``concurrent.futures``."""
    if isinstance(value, types.ModuleType):
        name = value.__name__
        if name == "concurrent":
            inner = getattr(value, "futures", None)
            name = inner.__name__ if isinstance(inner, types.ModuleType) else name
    elif isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        name = getattr(value, "__module__", None) or ""
    else:
        name = type(value).__module__
    return name if name.startswith(HOMES) else None


def homes(namespace: dict[str, object]) -> dict[str, str]:
    """``home`` of each global, looking one level into containers (the
    examples keep their futures in lists and dicts)."""
    found: dict[str, str] = {}
    for key, value in namespace.items():
        if key.startswith("__"):
            continue
        items: list[object] = [value]
        if isinstance(value, dict):
            items += [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            items += list(value)
        names = sorted({h for h in map(home, items) if h is not None})
        if names:
            found[key] = ", ".join(names)
    return found


def write_report(report: dict[str, object]) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("stdlib", "ours"):
        sys.exit("usage: python _launch.py {stdlib,ours} EXAMPLE.py [ARGS...]")
    mode, path = sys.argv[1], os.path.abspath(sys.argv[2])
    # run.py sets PYTHONUNBUFFERED so that a killed example loses nothing;
    # unbuffered, `print` writes its pieces apart, and a worker's log line
    # could land inside the main thread's line of dashes. Line buffering
    # writes each whole line at once and still loses nothing but a
    # partial line.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True, write_through=False)
    if mode == "ours":
        import concurrent_futures_rs.alias

        concurrent_futures_rs.alias.install()
    import concurrent.futures

    report: dict[str, object] = {
        "mode": mode,
        "module": concurrent.futures.__name__,
        "file": concurrent.futures.__file__,
    }
    write_report(report)
    sys.argv = [path, *sys.argv[3:]]
    namespace = runpy.run_path(path, run_name="__main__")
    report["globals"] = homes(namespace)
    report["concurrent_futures_rs_loaded"] = "concurrent_futures_rs" in sys.modules
    write_report(report)


if __name__ == "__main__":
    main()
