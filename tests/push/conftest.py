"""Fixtures of the push-core contract suite, parametrised over both backends."""

from __future__ import annotations

import base64
import importlib.util
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from ..servers import TIMEOUT, PushServerProcess, RedisServer
from ..ws_client import Browser

# "asyncio" is the memory backend on asyncio's own event loop: the server picks
# uvloop when it is installed, and both loops must keep the contract.
BACKENDS = ["memory", "asyncio", "redis"]


def backend_flags(backend: str, request: pytest.FixtureRequest) -> list[str]:
    """Flags that run a push server on ``backend`` (Redis: the suite's own, a fresh prefix)."""
    if backend == "memory":
        return []
    if backend == "asyncio":
        return ["--event-loop", "asyncio"]
    if importlib.util.find_spec("push_server.backends.redis") is None:
        pytest.skip("the Redis backend is not written yet")
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    return ["--redis-url", redis_server.url, "--redis-prefix", f"t{uuid.uuid4().hex[:8]}:"]


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[PushServerProcess]:
    """One push server per backend, shared by a module's tests (they use fresh names)."""
    with PushServerProcess(*backend_flags(request.param, request)) as process:
        yield process


@pytest.fixture(params=BACKENDS)
def fresh_server(request: pytest.FixtureRequest) -> Iterator[PushServerProcess]:
    """A push server of the test's own, for assertions about everything it holds."""
    with PushServerProcess(*backend_flags(request.param, request)) as process:
        yield process


@pytest.fixture
def push(server: PushServerProcess) -> Any:
    """A PushClient for the module's server."""
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def name() -> Any:
    """Fresh uid/group names, so tests sharing a server never meet."""
    prefix = uuid.uuid4().hex[:8]
    return lambda label="": f"{prefix}-{label}"


@pytest.fixture
async def browsers(server: PushServerProcess) -> AsyncIterator[Any]:
    """Open browsers on the module's server: ``await browsers()`` → Browser."""
    async with aiohttp.ClientSession() as session:
        opened: list[Browser] = []

        async def open_browser(target: PushServerProcess = server, query: str = "", **kwargs: Any) -> Browser:
            browser = await Browser.open(session, target.ws_url + query, **kwargs)
            opened.append(browser)
            return browser

        yield open_browser
        for browser in opened:
            await browser.close()


def raw_handshake(
    port: int, path: str = "/ws", headers: str = "", rcvbuf: int | None = None
) -> tuple[socket.socket, bytes]:
    """Open a WebSocket by hand (for clients that misbehave); return the socket and the reply head."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return sock, head


def masked_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    """A client frame, masked as browsers send them (or not, to break the rules)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, (0x80 if mask else 0) | length))
    elif length < 65536:
        header = bytes((first, (0x80 if mask else 0) | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, (0x80 if mask else 0) | 127)) + length.to_bytes(8, "big")
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One server frame from a raw socket: (opcode, payload)."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return first & 0x0F, exactly(length)
