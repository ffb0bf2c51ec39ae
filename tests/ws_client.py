"""A WebSocket client as a page would be, for the push and cluster suites: connects, reads frames."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from .servers import TIMEOUT

#: What the heartbeat sends idle pages; never what a test waits for.
_PING = '{"type":"ping"}'


class Browser:
    """One open connection, after its ``init`` frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, init: dict[str, Any]) -> None:
        self.ws = ws
        self.init = init
        self.client_id: str = init["client_id"]

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, **kwargs: Any) -> Browser:
        """Connect to ``url`` and read the ``init`` frame the server always sends first."""
        ws = await session.ws_connect(url, **kwargs)
        init = json.loads((await ws.receive(timeout=TIMEOUT)).data)
        assert init["type"] == "init", init
        return cls(ws, init)

    @property
    def node(self) -> str:
        """The cluster node the client is connected to (client ids start with it)."""
        return self.client_id.split(".", 1)[0]

    async def receive(self, timeout: float = TIMEOUT) -> aiohttp.WSMessage:
        """The next data frame (heartbeat pings are skipped)."""
        while True:
            message = await self.ws.receive(timeout=timeout)
            if message.type == aiohttp.WSMsgType.TEXT and message.data == _PING:
                continue
            return message

    async def text(self, timeout: float = TIMEOUT) -> str:
        """The next frame, which must be text."""
        message = await self.receive(timeout)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return str(message.data)

    async def json(self, timeout: float = TIMEOUT) -> Any:
        """The next frame, which must be JSON text."""
        return json.loads(await self.text(timeout))

    async def nothing(self, within: float = 0.3) -> None:
        """Assert that no data frame arrives for a little while."""
        try:
            message = await self.receive(timeout=within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {message}")

    async def close(self) -> None:
        await self.ws.close()
