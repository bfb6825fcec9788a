"""The seeds' Python examples (python/seeds/, the seeds' code unchanged)
run against the package as ``concurrent.futures`` and print, in substance,
what they print with the standard library.

One call of python/seeds/run.py's ``run_all()`` serves every test here:
each example runs twice (stdlib, then ours aliased in) in fresh
interpreters, all of them side by side. That takes about 20 s, set by the
seeds' own sleeps (5 s per task, 2 s between polls); every run has a time
limit (60 s, 8 s for the deadlock that is expected to hang), so nothing
here can hang.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

import pytest

SEEDS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "seeds")


def load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seeds_run", os.path.join(SEEDS, "run.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


run = load_runner()


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return {r.example.name: r for r in run.run_all()}


def explain(result: Any) -> str:
    return "\n".join(run.report_lines(result, stdlib_output=True))


@pytest.mark.parametrize("example", run.EXAMPLES, ids=lambda e: e.name)
def test_seed_example(example: Any, results: dict[str, Any]) -> None:
    # SPEC B8: the seeds' Python examples run unchanged against the package.
    result = results[example.name]
    if example.known_difference:
        assert result.status != "same", (
            "the known difference is gone: drop known_difference from run.py\n" + explain(result)
        )
        assert result.status == "known difference", explain(result)
        pytest.xfail(example.known_difference)
    assert result.status == "same", explain(result)


def test_every_example_file_is_run() -> None:
    helpers = {"run.py", "_launch.py"}
    files = {f[: -len(".py")] for f in os.listdir(SEEDS) if f.endswith(".py") and f not in helpers}
    assert files == {e.name for e in run.EXAMPLES}


def test_polls_merge_repeated_blocks_and_sort_workers() -> None:
    example = run.Example("x", "a test", compare="polls")
    main = "2026-01-01 00:00:00,000\t [MainProcess:MainThread, 10:1] "
    worker = "2026-01-01 00:00:00,000\t [ForkProcess-1:MainThread, 11:2] "
    dashes = "-" * 30

    def lines(*items: str) -> list[str]:
        return [run.normalise_line(line, 10, "/nowhere") for line in items]

    one = lines(worker + "begin", main + "False", dashes, main + "False", dashes, worker + "end")
    two = lines(main + "False", dashes, worker + "begin", worker + "end", main + "False", dashes)
    assert run.canonical(example, one) == run.canonical(example, two)
    three = lines(main + "True", dashes, worker + "begin", worker + "end")
    assert run.canonical(example, one) != run.canonical(example, three)


def test_polls_leave_out_a_poll_that_caught_tasks_finishing() -> None:
    example = run.Example("x", "a test", compare="polls")
    dashes = "-" * 30

    def polls(*states: str) -> list[str]:
        main = "2026-01-01 00:00:00,000\t [MainProcess:MainThread, 10:1] "
        return [
            run.normalise_line(line, 10, "/nowhere")
            for state in states
            for line in (main + state, dashes)
        ]

    steady = run.canonical(example, polls("FF", "FF", "TF", "TF", "TT"))
    assert run.canonical(example, polls("FF", "FF", "TF", "TF", "TF", "TT")) == steady
    assert run.canonical(example, polls("FF", "FF", "TF", "TF", "TX", "TT")) == steady
    assert run.canonical(example, polls("FF", "TF", "TF", "TT")) == steady
    assert run.canonical(example, polls("FF", "FF", "TT")) != steady
