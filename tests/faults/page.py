"""A simulated chat page: docs/delivery.md's rule, as templates/static/delivery.js and room.js follow it.

One ``Page`` is one browser tab in one room: its own cookies, a WebSocket to
the push server (reconnecting with backoff), ``/bind`` on every ``init``, live
frames, ``/say``, and catch-ups through the web app's history. It records
every message it shows (``shown``: id → times shown) so a test can count lost
and duplicated (browser, message) pairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

__all__ = ["Delivery", "NotStored", "Page", "tally", "until", "visible"]

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')

PAGE = 200
GAP_GRACE = 0.3
RETRY = 1.0
RETRY_CAP = 15.0
IDLE_ROUNDS = 3
# Shorter than the page's (0.5 s doubling to 15 s) so a restart is waited out quickly.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 1.0


class NotStored(AssertionError):
    """/say refused and stored nothing (room.js shows the error and keeps the text in the composer)."""

    def __init__(self, status: int, data: Any) -> None:
        super().__init__(f"/say answered {status}: {data}")
        self.status = status


class _Stream:
    def __init__(self) -> None:
        self.head = 0
        self.pending: dict[int, int] = {}  # seq → id

    def advance(self) -> None:
        while self.head + 1 in self.pending:
            del self.pending[self.head + 1]
            self.head += 1


class Delivery:
    """delivery.js, line for line: cursor, per-conversation seq heads, catch-up, dedup by id."""

    def __init__(self, room_id: int, my_uid: str, fetch_after: Any) -> None:
        self.room_id = room_id
        self.my_uid = my_uid
        self.fetch_after = fetch_after  # async (cursor, limit) -> list of messages; raises on failure
        self.shown: dict[int, int] = {}  # id → times shown (a duplicate would show as 2)
        self.seen: set[int] = set()
        self.cursor = 0
        self.max_seen = 0
        self.streams: dict[str, _Stream] = {}
        self.running: asyncio.Task[None] | None = None
        self.again = False
        self.gap_timer: asyncio.TimerHandle | None = None
        self.retry_timer: asyncio.TimerHandle | None = None
        self.retry_delay = RETRY
        self.catch_ups = 0

    def stream_of(self, msg: dict[str, Any]) -> str:
        if msg.get("type") != "to":
            return "all"
        return "to:" + (str(msg["to_uid"]) if str(msg["uid"]) == self.my_uid else str(msg["uid"]))

    def note_seq(self, msg: dict[str, Any]) -> None:
        seq = msg.get("seq")
        if not isinstance(seq, int):
            return
        stream = self.streams.setdefault(self.stream_of(msg), _Stream())
        if seq > stream.head:
            stream.pending[seq] = msg["id"]
        stream.advance()

    def settle(self, up_to: int) -> None:
        for stream in self.streams.values():
            for seq, id_ in stream.pending.items():
                if id_ <= up_to and seq > stream.head:
                    stream.head = seq
            stream.pending = {seq: id_ for seq, id_ in stream.pending.items() if seq > stream.head}
            stream.advance()

    def has_gap(self) -> bool:
        return any(stream.pending for stream in self.streams.values())

    def receive(self, msg: Any) -> None:
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), int) or msg.get("room_id") != self.room_id:
            return
        if msg["id"] in self.seen:
            return
        self.seen.add(msg["id"])
        self.max_seen = max(self.max_seen, msg["id"])
        self.shown[msg["id"]] = self.shown.get(msg["id"], 0) + 1
        self.note_seq(msg)

    def receive_live(self, msg: Any) -> None:
        self.receive(msg)
        if self.has_gap() and self.gap_timer is None and self.running is None:
            self.gap_timer = asyncio.get_running_loop().call_later(GAP_GRACE, self._gap_due)

    def _gap_due(self) -> None:
        self.gap_timer = None
        if self.has_gap():
            self.catch_up()

    async def _fetch_page(self) -> bool:
        messages = await self.fetch_after(self.cursor, PAGE)
        for msg in messages:
            self.receive(msg)
        if messages:
            last = messages[-1]["id"]
            self.settle(last)
            self.cursor = max(self.cursor, last)
        return len(messages) < PAGE

    def catch_up(self) -> None:
        if self.running is not None:
            self.again = True
            return
        if self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None
        self.running = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        self.catch_ups += 1
        try:
            idle = 0
            while True:
                self.again = False
                before = self.cursor
                while not await self._fetch_page():
                    pass
                if not self.again and self.has_gap():
                    idle = idle + 1 if self.cursor == before else 0
                    if idle >= IDLE_ROUNDS:
                        self.settle(self.max_seen)
                    else:
                        if idle:
                            await asyncio.sleep(GAP_GRACE)
                        self.again = self.has_gap()
                if not self.again:
                    break
            self.retry_delay = RETRY
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError):
            if self.retry_timer is None:
                self.retry_timer = asyncio.get_running_loop().call_later(self.retry_delay, self._retry_due)
                self.retry_delay = min(self.retry_delay * 2, RETRY_CAP)
        finally:
            self.running = None

    def _retry_due(self) -> None:
        self.retry_timer = None
        self.catch_up()

    def start(self, messages: list[dict[str, Any]]) -> None:
        for msg in messages:
            self.receive(msg)
        if messages:
            self.cursor = max(self.cursor, messages[-1]["id"])
            self.settle(self.cursor)

    @property
    def idle(self) -> bool:
        """No catch-up running or due."""
        return self.running is None and self.gap_timer is None and self.retry_timer is None


class Page:
    """One browser tab in a room, logged in as ``name``: room.js's connection loop around a Delivery."""

    def __init__(self, web_url: str, ws_url: str, name: str) -> None:
        self.web_url = web_url
        self.ws_url = ws_url
        self.name = name
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.uid = ""
        self.delivery: Delivery | None = None
        self.binds = 0
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._bind_task: asyncio.Task[None] | None = None
        self.room_id = 0
        #: The reasons of the resync frames received, in order.
        self.resyncs: list[str] = []
        #: Ids of the chat messages that arrived as pushed frames (the others came from history or our own answers).
        self.pushed: set[int] = set()

    async def register(self) -> Page:
        async with self.http.get(self.web_url + "/login") as answer:
            match = _CSRF_META.search(await answer.text())
            assert match
            self.csrf = match.group(1)
        body = {"name": self.name, "password": "correct horse battery"}
        async with self.http.post(self.web_url + "/register", json=body, headers=self._headers()) as answer:
            data = await answer.json()
            assert answer.status == 200, data
        self.csrf, self.uid = data["csrf_token"], str(data["uid"])
        return self

    def _headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.csrf, "Accept": "application/json"}

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(self.web_url + path, json=body, headers=self._headers()) as answer:
            return answer.status, await answer.json()

    async def create_room(self, name: str) -> int:
        status, data = await self.post("/rooms", {"name": name})
        assert status == 201, data
        return int(data["id"])

    async def _history(self, room_id: int, query: str) -> list[dict[str, Any]]:
        url = f"{self.web_url}/rooms/{room_id}/messages?{query}"
        async with self.http.get(url, headers={"Accept": "application/json"}) as answer:
            if answer.status != 200:
                raise RuntimeError(f"history answered {answer.status}")
            return (await answer.json())["messages"]  # type: ignore[no-any-return]

    async def history(self) -> list[dict[str, Any]]:
        """Every message of the room this page may see, as stored (``after=`` page by page)."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = await self._history(self.room_id, f"after={messages[-1]['id'] if messages else 0}&limit={PAGE}")
            messages.extend(batch)
            if len(batch) < PAGE:
                return messages

    async def open(self, room_id: int) -> None:
        """Load the latest history, then keep a socket open (room.js's loadRecent().then(connect))."""

        async def fetch_after(after: int, limit: int) -> list[dict[str, Any]]:
            return await self._history(room_id, f"after={after}&limit={limit}")

        self.room_id = room_id
        self.delivery = Delivery(room_id, self.uid, fetch_after)
        self.delivery.start(await self._history(room_id, "limit=50"))
        self._task = asyncio.get_running_loop().create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        attempt = 0
        while True:
            try:
                async with self.http.ws_connect(self.ws_url, heartbeat=None) as ws:
                    self._ws = ws
                    async for frame in ws:
                        if frame.type != aiohttp.WSMsgType.TEXT:
                            break
                        if await self._handle(ws, json.loads(frame.data)):
                            attempt = 0
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
            self._ws = None
            ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
            attempt += 1
            await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, frame: Any) -> bool:
        """One frame (room.js's handleFrame); True for an init, whose bind runs alongside later frames."""
        assert self.delivery is not None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "init":
            # Not awaited here: live frames keep being read while /bind is on its way.
            self._bind_task = asyncio.get_running_loop().create_task(self._bind(ws, frame["client_id"]))
            return True
        if kind in ("all", "to"):
            if isinstance(frame.get("id"), int):
                self.pushed.add(frame["id"])
            self.delivery.receive_live(frame)
        elif kind == "resync":
            self.resyncs.append(str(frame.get("reason")))
            self.delivery.catch_up()
        elif kind == "ping":
            await ws.send_str(json.dumps({"type": "pong"}))
        return False

    async def _bind(self, ws: aiohttp.ClientWebSocketResponse, client_id: str) -> None:
        assert self.delivery is not None
        try:
            status, _ = await self.post("/bind", {"client_id": client_id, "room_id": self.room_id})
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = 0
        if self._ws is not ws:
            return
        if status != 200:
            await ws.close()  # the loop reconnects with backoff
            return
        self.binds += 1
        self.delivery.catch_up()

    async def say(self, content: str, to_uid: str | None = None) -> tuple[int, dict[str, Any]]:
        """room.js's say(): 201 → a live message; 502 stored → shown, and a catch-up. The status and message."""
        assert self.delivery is not None
        body: dict[str, Any] = {"room_id": self.room_id, "type": "to" if to_uid else "all", "content": content}
        if to_uid:
            body["to_uid"] = to_uid
        status, data = await self.post("/say", body)
        if status == 201:
            self.delivery.receive_live(data["message"])
        elif data.get("stored"):
            self.delivery.receive(data["message"])
            self.delivery.catch_up()
        else:
            raise NotStored(status, data)
        return status, data["message"]

    @property
    def shown(self) -> dict[int, int]:
        assert self.delivery is not None
        return self.delivery.shown

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.delivery is not None and self.delivery.running is not None:
            self.delivery.running.cancel()
        await self.http.close()


async def until(condition: Any, what: str, timeout: float) -> None:
    """Wait for ``condition()`` to hold, checking as the pages work; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout} s")
        await asyncio.sleep(0.02)


def visible(page: Page, said: Iterable[dict[str, Any]]) -> set[int]:
    """The ids ``page`` may see: every public message and the private ones it is a party to."""
    return {m["id"] for m in said if m["type"] == "all" or page.uid in (m["uid"], m.get("to_uid"))}


async def tally(pages: list[Page], said: list[dict[str, Any]], timeout: float) -> dict[str, int]:
    """Wait until every page holds what it may see and is idle (or ``timeout``); then count every (page, message) pair.

    ``lost``: pairs never shown; ``duplicated``: extra showings; ``extra``:
    messages shown to a page that may not see them (always a fault).
    """

    def whole() -> bool:
        return all(visible(page, said) <= set(page.shown) and page.delivery and page.delivery.idle for page in pages)

    with contextlib.suppress(AssertionError):  # counted below: the numbers say what is missing
        await until(whole, "every message on every page", timeout)
    return {
        "pairs": sum(len(visible(page, said)) for page in pages),
        "lost": sum(len(visible(page, said) - set(page.shown)) for page in pages),
        "duplicated": sum(times - 1 for page in pages for times in page.shown.values()),
        "extra": sum(len(set(page.shown) - visible(page, said)) for page in pages),
    }
