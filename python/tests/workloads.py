"""Functions the process pool tests run in workers (importable there)."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any


def identity(x: Any) -> Any:
    return x


def add(a: int, b: int = 0) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def raise_value_error(message: str) -> None:
    raise ValueError(message)  # the line the remote traceback shows


def die(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def set_then_sleep(event: Any, seconds: float) -> str:
    event.set()
    time.sleep(seconds)
    return "slept"


def exit_with(code: int) -> None:
    sys.exit(code)


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this object refuses pickling")


def return_unpicklable() -> Unpicklable:
    return Unpicklable()


class FailsToUnpickle:
    def __reduce__(self) -> Any:
        return (_fail_rebuild, ())


def _fail_rebuild() -> None:
    raise RuntimeError("cannot rebuild this object")


def return_fails_to_unpickle() -> FailsToUnpickle:
    return FailsToUnpickle()


INITIALIZED: list[str] = []


def init(tag: str) -> None:
    INITIALIZED.append(tag)


def initialized() -> list[str]:
    return INITIALIZED


def init_fail() -> None:
    raise ValueError("error in initializer")


RUNTIME_STATE: list[str] = []


def runtime_state() -> list[str]:
    """What this module's list holds in the worker."""
    return RUNTIME_STATE


def parent_pid() -> int:
    return os.getppid()


def put_on(q: Any, value: Any) -> None:
    q.put(value)
