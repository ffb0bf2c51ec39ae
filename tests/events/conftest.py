"""Fixtures of the events suite: a signature-checking receiver, push servers that send to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from ..servers import PushServerProcess, RedisServer, started_redis
from ..ws_client import Browser
from .receiver import Receiver

#: Short grace and lease so the suite stays fast; the defaults are 5 s and 10 s.
GRACE = 0.6
NODE_TIMEOUT = 2.0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """The business app's events endpoint; every request's signature is checked."""
    server = await Receiver().start()
    yield server
    await server.stop()
    assert not server.bad_signatures, server.bad_signatures


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own."""
    return f"e{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone (it may restart it)."""
    with started_redis() as server:
        yield server


@pytest.fixture
def event_server(make_push_server: type[PushServerProcess], receiver: Receiver) -> Callable[..., PushServerProcess]:
    """A push server sending events to the receiver: ``event_server(*flags, redis=None, prefix=..)``."""

    def start(
        *flags: str, redis: RedisServer | None = None, prefix: str = "push:", begin: bool = True
    ) -> PushServerProcess:
        cluster = (
            ["--redis-url", redis.url, "--redis-prefix", prefix, "--node-timeout", str(NODE_TIMEOUT)] if redis else []
        )
        server = make_push_server(
            "--events-url", receiver.url, "--offline-grace", str(GRACE), "--events-timeout", "1", *cluster, *flags
        )
        return server.start() if begin else server

    return start


@pytest.fixture
async def browsers() -> AsyncIterator[Callable[..., Any]]:
    """Open browsers: ``await browsers(node)`` → Browser after its ``init``."""
    async with aiohttp.ClientSession() as session:
        opened: list[Browser] = []

        async def open_browser(server: PushServerProcess, query: str = "") -> Browser:
            browser = await Browser.open(session, server.ws_url + query)
            opened.append(browser)
            return browser

        yield open_browser
        for browser in opened:
            await browser.close()


async def call(server: PushServerProcess, method: str, *args: Any) -> Any:
    """Call the sync PushClient of ``server`` off the event loop."""

    def run() -> Any:
        with server.client() as client:
            return getattr(client, method)(*args)

    return await asyncio.to_thread(run)
