"""SPEC B8: Runs CPython's own ``test_concurrent_futures``, unchanged, against
concurrent_futures_rs, and prints ``N passed, N failed, N skipped``.

Run it with the interpreter whose test suite it is (Debian's
``/usr/bin/python3.11`` with ``libpython3.11-testsuite``), from a venv
that has the package installed. It makes the package
``concurrent.futures`` in every process the suite starts (``python -I``
children included) with a ``.pth`` file in the venv, then runs the
suite with the deliberate differences marked as expected failures and
the tests of CPython's private process-pool machinery skipped, each with
its reason, from the expectations file (TOML, see ``expected-3.11.toml``).

Every test gets a time limit: a hang dumps every thread's traceback and
fails the run rather than stall it.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import importlib
import os
import sys
import sysconfig
import time
import unittest
from collections.abc import Iterator
from typing import Any

import tomllib

PTH_NAME = "zz_concurrent_futures_rs_alias.pth"
PTH_LINE = "import concurrent_futures_rs.alias as _cf_alias; _cf_alias.install()\n"


def ensure_alias() -> None:
    """Installs the ``.pth`` alias in this venv; re-executes this script
    when it was missing, since ``.pth`` files are read at start-up."""
    if sys.prefix == sys.base_prefix:
        sys.exit("run this from a dedicated venv: the alias changes concurrent.futures there")
    path = os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)
    try:
        with open(path) as f:
            current = f.read()
    except FileNotFoundError:
        current = None
    if current != PTH_LINE:
        with open(path, "w") as f:
            f.write(PTH_LINE)
        os.execv(sys.executable, [sys.executable, *sys.argv])


def check_alias() -> None:
    import concurrent.futures

    import concurrent_futures_rs

    if concurrent.futures.Future is not concurrent_futures_rs.Future:
        sys.exit("concurrent.futures is not concurrent_futures_rs: the alias did not take")


def iter_tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from iter_tests(test)
        else:
            yield test


def load_suite() -> unittest.TestSuite:
    module = importlib.import_module("test.test_concurrent_futures")
    loader = unittest.TestLoader()
    if hasattr(module, "__path__"):  # 3.12+: a package
        return loader.discover(
            module.__path__[0], top_level_dir=os.path.dirname(os.path.dirname(module.__path__[0]))
        )
    return loader.loadTestsFromModule(module)


def short_id(test: unittest.TestCase) -> str:
    """``Class.method``, the form the expectations file uses."""
    return f"{type(test).__name__}.{test._testMethodName}"


def _own(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    wrapper.__dict__.pop("__unittest_expecting_failure__", None)
    return wrapper


def mark(suite: unittest.TestSuite, expected: dict[str, dict[str, str]]) -> list[str]:
    """Applies the expectations; returns the ids it found no test for."""
    found: set[str] = set()
    for test in iter_tests(suite):
        tid = short_id(test)
        entry = expected.get(tid)
        if entry is None:
            continue
        found.add(tid)
        cls = type(test)
        method = getattr(cls, test._testMethodName)
        reason = entry["reason"]
        if entry["kind"] == "skip":
            setattr(cls, test._testMethodName, unittest.skip(reason)(method))
        elif entry["kind"] == "xfail":
            # A wrapper of its own: `expectedFailure` marks the function it
            # is given, which mixins share between classes.
            setattr(cls, test._testMethodName, unittest.expectedFailure(_own(method)))
        else:
            raise SystemExit(f"{tid}: kind must be skip or xfail, not {entry['kind']!r}")
    return sorted(set(expected) - found)


class TimedResult(unittest.TextTestResult):
    """Arms a per-test limit; a hang dumps tracebacks and exits."""

    limit: float = 300.0

    def startTest(self, test: unittest.TestCase) -> None:
        faulthandler.dump_traceback_later(self.limit, exit=True)
        self._started = time.monotonic()
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expected", required=True, help="the expectations file (TOML)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per test")
    parser.add_argument("-k", dest="only", default=None, help="run only ids containing this")
    options = parser.parse_args()

    ensure_alias()
    check_alias()
    with open(options.expected, "rb") as f:
        expected: dict[str, Any] = tomllib.load(f)["tests"]

    suite = load_suite()
    missing = mark(suite, expected)
    if missing:
        print("expectations name tests the suite lacks:", *missing, sep="\n  ")
        return 2
    if options.only:
        suite = unittest.TestSuite(t for t in iter_tests(suite) if options.only in short_id(t))

    TimedResult.limit = options.timeout
    runner = unittest.TextTestRunner(verbosity=2, resultclass=TimedResult, stream=sys.stdout)
    start = time.monotonic()
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    xfailed = len(result.expectedFailures)
    passed = result.testsRun - failed - skipped - xfailed
    print(
        f"\nCPython {sys.version.split()[0]} test_concurrent_futures against "
        f"concurrent_futures_rs, {time.monotonic() - start:.0f} s:"
    )
    for test, _ in result.skipped:
        print(f"  skipped  {short_id(test)}")
    for test, _ in result.expectedFailures:
        print(f"  xfailed  {short_id(test)}: {expected[short_id(test)]['reason']}")
    for test, _ in result.failures + result.errors:
        print(f"  FAILED   {short_id(test)}")
    for test in result.unexpectedSuccesses:
        print(f"  UNEXPECTED SUCCESS {short_id(test)}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped, {xfailed} expected failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
