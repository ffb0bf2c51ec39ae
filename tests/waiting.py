"""Wait for a condition that something else makes true, with a deadline (never sleep-then-assert)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .servers import TIMEOUT

T = TypeVar("T")


def wait_until(check: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Poll ``check`` until it holds, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def until(check: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Like :func:`wait_until`, in a coroutine: ``check`` (blocking) runs in a thread, the loop keeps running."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = TIMEOUT, interval: float = 0.1) -> T:
    """Await ``check()`` until it returns something true, and return that; fail after ``timeout`` seconds.

    An exception from ``check`` counts as "not yet" (a node answers 503 while it
    reconnects); the last result or exception is in the failure's message. The
    checks are mostly calls to real servers, hence the longer default interval.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = await check()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last result: {last!r}")
