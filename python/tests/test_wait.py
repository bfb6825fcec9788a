"""wait and as_completed, over ours and the stdlib's futures mixed."""

from __future__ import annotations

import concurrent.futures as std
import gc
import threading
import weakref

import pytest

import concurrent_futures_rs as cf


def test_wait_first_completed_mixed() -> None:
    ours = cf.Future()
    theirs = std.Future()
    pending = cf.Future()
    threading.Timer(0.01, theirs.set_result, (1,)).start()
    done, not_done = cf.wait([ours, theirs, pending], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert done == {theirs}
    assert not_done == {ours, pending}


def test_wait_all_and_first_exception() -> None:
    a, b = cf.Future(), std.Future()
    a.set_result(1)
    b.set_exception(ValueError())
    c = cf.Future()
    done, not_done = cf.wait([a, b, c], timeout=30, return_when=cf.FIRST_EXCEPTION)
    assert done == {a, b} and not_done == {c}
    result = cf.wait([a, b, c], timeout=0)
    assert result.not_done == {c}
    with pytest.raises(ValueError):
        cf.wait([a], return_when="SOMETIMES")


def test_wait_leaves_no_waiter_on_stdlib_futures() -> None:
    f = std.Future()
    cf.wait([f], timeout=0)
    assert f._waiters == []


def test_as_completed_order_and_timeout() -> None:
    done = cf.Future()
    done.set_result(0)
    later = std.Future()
    never = cf.Future()
    threading.Timer(0.01, later.set_result, (1,)).start()
    seen = []
    with pytest.raises(std.TimeoutError, match=r"^1 \(of 3\) futures unfinished$"):
        for f in cf.as_completed([done, later, never, done], timeout=1):
            seen.append(f)
    assert seen == [done, later]


def test_as_completed_keeps_no_yielded_future() -> None:
    fs = [cf.Future() for _ in range(3)]
    for f in fs:
        f.set_result(None)
    refs = []
    for f in cf.as_completed(fs):
        fs.remove(f)
        refs.append(weakref.ref(f))
        del f
        gc.collect()
        assert refs[-1]() is None


def test_as_completed_is_lazy_like_a_generator() -> None:
    f = cf.Future()
    it = cf.as_completed([f], timeout=0)
    f.set_result(1)  # before the first next(): the timeout starts there
    assert list(it) == [f]
