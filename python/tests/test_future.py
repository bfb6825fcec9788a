"""The Future: CPython's semantics, and what makes it a drop-in."""

from __future__ import annotations

import asyncio
import concurrent.futures as std
import gc
import threading
import weakref

import pytest

import concurrent_futures_rs as cf


def test_is_a_stdlib_future() -> None:
    # SPEC B8: a subclass of the standard library's Future.
    f = cf.Future()
    assert isinstance(f, std.Future)
    assert type(f).__mro__[1].__name__ == "FutureBase"


def test_result_and_states() -> None:
    f = cf.Future()
    assert f._state == "PENDING" and not f.done() and not f.running()
    assert f.set_running_or_notify_cancel() is True
    assert f.running() and f._state == "RUNNING"
    assert not f.cancel()
    f.set_result(5)
    assert f.result() == 5 and f.exception() is None and f.done()
    assert f._state == "FINISHED" and f._result == 5


def test_exception_is_raised_as_is() -> None:
    f = cf.Future()
    error = OSError("disk")
    f.set_exception(error)
    with pytest.raises(OSError) as info:
        f.result()
    assert info.value is error
    assert f.exception() is error


def test_cancel_then_acknowledge() -> None:
    f = cf.Future()
    assert f.cancel() and f.cancelled() and f.done()
    assert f._state == "CANCELLED"
    assert f.set_running_or_notify_cancel() is False
    assert f._state == "CANCELLED_AND_NOTIFIED"
    with pytest.raises(cf.CancelledError):
        f.result()
    with pytest.raises(cf.CancelledError):
        f.exception()


def test_timeout_is_the_stdlib_class() -> None:
    f = cf.Future()
    with pytest.raises(std.TimeoutError):
        f.result(timeout=0)
    with pytest.raises(std.TimeoutError):
        f.exception(timeout=0.01)


def test_invalid_state_message_as_cpython() -> None:
    f = cf.Future()
    f.set_result(1)
    with pytest.raises(std.InvalidStateError, match=r"^FINISHED: <Future at 0x[0-9a-f]+ "):
        f.set_result(2)
    with pytest.raises(RuntimeError, match="Future in unexpected state"):
        f.set_running_or_notify_cancel()


def test_repr() -> None:
    f = cf.Future()
    assert repr(f).endswith("state=pending>")
    f.set_exception(KeyError())
    assert repr(f).endswith("state=finished raised KeyError>")
    g = cf.Future()
    g.set_result(3)
    assert repr(g).endswith("state=finished returned int>")


def test_callbacks_run_in_order_once() -> None:
    f = cf.Future()
    seen: list[tuple[str, object]] = []
    f.add_done_callback(lambda fut: seen.append(("a", fut)))
    f.add_done_callback(lambda fut: seen.append(("b", fut)))
    f.set_result(None)
    f.add_done_callback(lambda fut: seen.append(("c", fut)))
    assert seen == [("a", f), ("b", f), ("c", f)]


def test_raising_callback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    f = cf.Future()
    ran: list[bool] = []

    def bad(_: object) -> None:
        raise ZeroDivisionError

    f.add_done_callback(bad)
    f.add_done_callback(lambda _: ran.append(True))
    with caplog.at_level("ERROR", logger="concurrent.futures"):
        f.set_result(1)
    assert ran == [True]
    assert "exception calling callback for" in caplog.text


def test_callback_on_cancel() -> None:
    f = cf.Future()
    seen: list[bool] = []
    f.add_done_callback(lambda fut: seen.append(fut.cancelled()))
    f.cancel()
    assert seen == [True]


def test_waiting_thread_is_woken() -> None:
    f = cf.Future()
    started = threading.Event()
    out: list[object] = []

    def waiter() -> None:
        started.set()
        out.append(f.result(timeout=30))

    t = threading.Thread(target=waiter)
    t.start()
    assert started.wait(30)
    f.set_result("x")
    t.join(30)
    assert out == ["x"]


def test_pending_future_with_callback_is_collected() -> None:
    f = cf.Future()
    f.add_done_callback(lambda fut: fut)
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None


def test_stdlib_wait_works_on_ours() -> None:
    f = cf.Future()
    threading.Timer(0.01, f.set_result, (1,)).start()
    done, not_done = std.wait([f], timeout=30)
    assert done == {f} and not not_done


def test_asyncio_wrap_future() -> None:
    # SPEC B8: asyncio accepts our futures.
    async def main() -> int:
        f = cf.Future()
        loop = asyncio.get_running_loop()
        loop.call_soon(f.set_result, 7)
        return await asyncio.wrap_future(f)

    assert asyncio.run(main()) == 7


def test_asyncio_executor_integration() -> None:
    async def main() -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        pool = cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="ours")
        loop.set_default_executor(pool)
        value = await loop.run_in_executor(pool, pow, 2, 5)
        name = await asyncio.to_thread(lambda: threading.current_thread().name)
        return value, name

    value, name = asyncio.run(main())
    assert value == 32 and name.startswith("ours_")
