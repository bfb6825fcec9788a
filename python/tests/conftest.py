"""Shared fixtures: every pool a test makes is shut down after it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def manager() -> Iterator[object]:
    import multiprocessing

    with multiprocessing.Manager() as m:
        yield m
