"""The retry of a call whose outcome is unknown, against a tiny asyncio server that drops the first connection.

The server reads each request whole; on the first connection it then closes
without answering (as a server that crashed, or a proxy that gave up, after the
request arrived). Both faces must send the call once more with the same body,
so the same idempotency key, signed anew.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from push_client import AsyncPushClient, PushClient, PushConnectionError

from ..servers import TIMEOUT

SECRET = "retry-test-secret-0123456789"
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"result":null}'


class Dropper:
    """Answers every request, except that it drops the first ``drops`` connections after reading their request."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.bodies: list[bytes] = []
        self.nonces: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
                self.bodies.append(await reader.readexactly(int(fields[b"Content-Length"])))
                self.nonces.append(fields[b"X-Push-Nonce"])
                if index < self.drops:
                    return
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def start(drops: int) -> tuple[Dropper, asyncio.Server, str]:
    dropper = Dropper(drops)
    server = await asyncio.start_server(dropper.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return dropper, server, f"http://127.0.0.1:{port}"


async def push_once(face: str, url: str, **options: Any) -> None:
    """One send_to_group through ``face``."""
    if face == "async":
        async with AsyncPushClient(url, secret=SECRET, timeout=TIMEOUT, **options) as push:
            await push.send_to_group("room", "hello")
    else:
        with PushClient(url, secret=SECRET, timeout=TIMEOUT, **options) as sync_push:
            await asyncio.to_thread(sync_push.send_to_group, "room", "hello")


@pytest.mark.parametrize("face", ["sync", "async"])
async def test_dropped_push_is_sent_again_with_the_same_key(face: str) -> None:
    """A push whose connection was dropped after the request was read is sent once more: same body and key, new nonce."""
    dropper, server, url = await start(drops=1)
    async with server:
        await push_once(face, url)
    assert dropper.connections == 2 and len(dropper.bodies) == 2
    assert dropper.bodies[0] == dropper.bodies[1]
    assert json.loads(dropper.bodies[0])["idempotency_key"]
    assert dropper.nonces[0] != dropper.nonces[1]


@pytest.mark.parametrize("face", ["sync", "async"])
async def test_dropped_twice_is_an_error(face: str) -> None:
    """Dropped again on the retry: PushConnectionError after two tries, not a third."""
    dropper, server, url = await start(drops=5)
    async with server:
        with pytest.raises(PushConnectionError):
            await push_once(face, url)
    assert dropper.connections == 2


@pytest.mark.parametrize("face", ["sync", "async"])
async def test_no_retry_without_retries(face: str) -> None:
    """retries=0: the dropped push is not sent again."""
    dropper, server, url = await start(drops=1)
    async with server:
        with pytest.raises(PushConnectionError):
            await push_once(face, url, retries=0)
    assert dropper.connections == 1
