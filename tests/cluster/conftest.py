"""Fixtures of the cluster suite: push_server nodes over a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from ..servers import PushServerProcess, RedisServer, started_redis
from ..waiting import eventually  # noqa: F401 - the suite's tests import it from here
from ..ws_client import Browser

#: Lease timeout of the tests that kill or freeze a node, so deaths are noticed quickly.
NODE_TIMEOUT = 2.0
#: Lease timeout of the others: long enough that a busy shared CI machine never
#: makes a live node miss its lease (and get reaped) in the middle of a test.
RELAXED_NODE_TIMEOUT = 10.0


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so tests sharing the session Redis never meet."""
    return f"c{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone: it may stop and restart it."""
    with started_redis() as server:
        yield server


@pytest.fixture
def nodes(make_push_server: type[PushServerProcess]) -> Callable[..., list[PushServerProcess]]:
    """Start ``count`` nodes on ``redis`` under ``prefix``, in parallel: ``nodes(redis, prefix, 3)``."""

    def start(
        redis: RedisServer, prefix: str, count: int, *flags: str, node_timeout: float = RELAXED_NODE_TIMEOUT
    ) -> list[PushServerProcess]:
        servers = [
            make_push_server(
                "--redis-url", redis.url, "--redis-prefix", prefix, "--node-timeout", str(node_timeout), *flags
            )
            for _ in range(count)
        ]
        # Starting them one by one would wait for each interpreter in turn.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda server: server.start(), servers))
        return servers

    return start


@pytest.fixture
async def browsers() -> AsyncIterator[Callable[..., Any]]:
    """Open browsers: ``await browsers(node)`` → Browser, after its ``init``."""
    async with aiohttp.ClientSession() as session:
        opened: list[Browser] = []

        async def open_browser(server: PushServerProcess) -> Browser:
            browser = await Browser.open(session, server.ws_url)
            opened.append(browser)
            return browser

        yield open_browser
        for browser in opened:
            await browser.close()


async def call(server: PushServerProcess, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call the sync PushClient of ``server`` off the event loop."""

    def run() -> Any:
        with server.client() as client:
            return getattr(client, method)(*args, **kwargs)

    return await asyncio.to_thread(run)
