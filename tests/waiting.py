"""Wait for a condition that something else makes true, with a deadline (never sleep-then-assert)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .servers import TIMEOUT


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
