"""Helpers of the operations suite: read a node's /metrics and /healthz."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

# The browser suite's fixtures, for test_admin_page.py (pytest finds fixtures by their name here;
# imported into the test module itself, each test's parameter would redefine the import).
from ..browser.conftest import browser, live, windows  # noqa: F401
from ..servers import TIMEOUT


def scrape(api_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a node's /metrics, by (name, sorted labels)."""
    answer = requests.get(api_url + "/metrics", timeout=TIMEOUT)
    answer.raise_for_status()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(api_url: str, name: str, **labels: str) -> float:
    """One sample's value (0 when it has not appeared yet)."""
    return scrape(api_url).get((name, tuple(sorted(labels.items()))), 0.0)


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
