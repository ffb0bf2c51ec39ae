"""The business app's side of events, as a test needs it: a real HTTP server that checks every signature.

It answers as told (``ok``, ``fail`` with 500, ``hang`` without answering),
keeps every event it was sent (duplicates included: the tests deduplicate by
id, as an app does) and records any request whose signature does not verify.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

import push_protocol

from ..servers import TEST_SECRET, TIMEOUT

PATH = "/push/events"


class Receiver:
    """An aiohttp server on a free port, collecting events."""

    def __init__(self, secret: str = TEST_SECRET) -> None:
        self.secret = secret
        self.mode = "ok"
        self.events: list[dict[str, Any]] = []
        self.requests = 0
        self.bad_signatures: list[str] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        #: Set at stop: a hanging answer ends then, so the server shuts down at once.
        self._release = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._changed:  # tests wait on the count too (wait_for)
            self.requests += 1
            self._changed.notify_all()
        refused = push_protocol.verify_request(self.secret, request.method, request.path, request.headers, body)
        if refused:
            self.bad_signatures.append(refused)
            return web.json_response({"error": refused}, status=401)
        if self.mode == "fail":
            return web.json_response({"error": "told to fail"}, status=500)
        if self.mode == "hang":
            await self._release.wait()
            return web.json_response({"error": "hung"}, status=503)
        async with self._changed:
            self.events.extend(json.loads(body)["events"])
            self._changed.notify_all()
        return web.json_response({"ok": True})

    def unique(self) -> list[dict[str, Any]]:
        """The events deduplicated by id, in the order first received."""
        seen: dict[str, dict[str, Any]] = {}
        for event in self.events:
            seen.setdefault(event["id"], event)
        return list(seen.values())

    def of(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        """The (deduplicated) events of one type whose fields match."""
        return [e for e in self.unique() if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())]

    async def wait_for(self, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        """Wait until ``check()`` (over the events and requests so far) is truthy; fail after ``timeout``."""

        async def until() -> Any:
            async with self._changed:
                while not (result := check()):
                    await self._changed.wait()
                return result

        try:
            return await asyncio.wait_for(until(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"not received within {timeout}s; got {[(e['type'], e.get('uid') or e.get('group')) for e in self.unique()]}"
            ) from None

    async def wait_event(self, kind: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The first event of ``kind`` with these fields, waiting for it."""
        found = await self.wait_for(lambda: self.of(kind, **fields), timeout)
        return found[0]  # type: ignore[no-any-return]
