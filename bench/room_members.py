"""The ``room`` item's members: simulated pages in worker processes, each timestamping what it receives.

A member is :class:`tests.faults.page.Page` (its own cookies, registration,
history, ``/bind`` on ``init``, docs/delivery.md's gap rule) with two changes:

- its WebSocket is a plain socket read with ``recvmsg`` and the kernel's
  receive timestamp (``SO_TIMESTAMPNS``, CLOCK_REALTIME, as bench/loadgen.py
  does), framed by wsproto (in the bench extra),
  so a message's arrival is when it reached the member's socket, not when
  this process got round to it: 50 members share one event loop here, 100
  browsers would not;
- it does what the room page does alongside, when told to: it marks read as
  templates/static/reads.js does (the position moves to the last message
  shown; ``POST /rooms/<id>/read`` goes :data:`READ_EVERY` plus up to
  :data:`READ_SPREAD` at random after it first moves, carrying the position
  of then, and only if it is past what was sent), and a
  typist sends ``POST /typing`` as templates/static/typing.js does (at most
  one per :data:`TYPING_EVERY` while keys are pressed, none for a 429's
  ``Retry-After``, and at once on the next key after saying a message).

Chat messages are said with the content ``"<tag> <k> ..."``, so every member
knows which phase and which message a frame carries without asking anyone.
The driver (:class:`Crowds`) runs the members in worker processes
(``python -m bench.room_members``) and talks to them in JSON lines over
their stdin and stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Ping, RejectConnection, Request, TextMessage

from bench.systems import ROOT, TMP
from tests.faults.page import Page, until

__all__ = ["READ_EVERY", "READ_SPREAD", "TYPING_EVERY", "Crowds", "content"]

#: reads.js's READ_EVERY_MS and READ_SPREAD_MS: a read goes this long after the position
#: first moves, plus up to READ_SPREAD at random (so at most one a second per member).
READ_EVERY = 1.0
READ_SPREAD = 1.0
#: typing.js's SEND_EVERY_MS: one typing notice per this many seconds at most.
TYPING_EVERY = 3.0
#: A typist presses a key this often (about 60 words a minute); typing.js sends on a key press.
KEYSTROKE = 0.2
#: typing.js's QUIET_DEFAULT_S: silence after a 429 that names no Retry-After.
QUIET_DEFAULT = 60.0
#: A said message's length (the same as item 5's).
MESSAGE_CHARS = 100

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("qq")


def content(tag: str, k: int) -> str:
    """The text of message ``k`` of phase ``tag``."""
    head = f"{tag} {k} "
    return head + "x" * (MESSAGE_CHARS - len(head))


def _key(frame: dict[str, Any]) -> tuple[str, int] | None:
    """(tag, k) of a message said by :func:`content`; None for any other."""
    tag, _, rest = str(frame.get("content")).partition(" ")
    number = rest.split(" ", 1)[0]
    return (tag, int(number)) if number.isdigit() else None


class _TimedSocket:
    """A client WebSocket on a plain socket whose every frame carries the kernel's receive time."""

    def __init__(self, on_frame: Callable[[Any, float], None]) -> None:
        self.on_frame = on_frame
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.closed = asyncio.get_running_loop().create_future()
        self._text: list[str] = []

    async def open(self, url: str) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, (host, port))
        await loop.sock_sendall(self.sock, self.conn.send(Request(host=f"{host}:{port}", target=parts.path or "/")))
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(65536, 64)
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        stamp = time.time()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(value)
                stamp = sec + nsec * 1e-9
        self.conn.receive_data(data or None)
        for event in self.conn.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    text, self._text = "".join(self._text), []
                    self.on_frame(json.loads(text), stamp)
            elif isinstance(event, Ping):
                self._send(self.conn.send(event.response()))
            elif isinstance(event, (CloseConnection, RejectConnection)):
                self._finish()
        if not data:
            self._finish()

    def _send(self, data: bytes) -> None:
        # Pongs and close frames are a few bytes: a loopback socket always takes them whole.
        with contextlib.suppress(OSError):
            self.sock.send(data)

    async def send_str(self, text: str) -> None:
        self._send(self.conn.send(TextMessage(data=text)))

    def _finish(self) -> None:
        if not self.closed.done():
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.closed.set_result(None)

    async def close(self) -> None:
        self._finish()


class Member(Page):
    """One room page, timestamping every pushed chat message; it reads and types when told to."""

    def __init__(self, web_url: str, ws_url: str, name: str) -> None:
        super().__init__(web_url, ws_url, name)
        #: (tag, k) → when its pushed frame reached this member's socket (time.time() clock).
        self.arrivals: dict[tuple[str, int], float] = {}
        self.duplicates = 0
        self.frames: Counter[str] = Counter()
        #: (kind, status, seconds) of each read and typing request.
        self.calls: list[tuple[str, int, float]] = []
        self.reading = False
        self.position = 0
        self._stored = 0  # the position last sent (reads.js's `stored`)
        self.disconnects = 0
        #: Requests sent again after a closed kept-alive connection, and requests that failed, by kind and error.
        self.resent = 0
        self.failures: Counter[str] = Counter()
        self._read_timer: asyncio.TimerHandle | None = None
        self._last_typing = 0.0
        self._quiet_until = 0.0
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def _connect_loop(self) -> None:
        # One socket for the whole run: a drop is not retried but shows as missing pairs.
        ws = _TimedSocket(self._frame)
        await ws.open(self.ws_url)
        self._ws = ws  # type: ignore[assignment]
        await ws.closed
        self._ws = None
        self.disconnects += 1

    def _frame(self, frame: Any, stamp: float) -> None:
        kind = str(frame.get("type")) if isinstance(frame, dict) else "?"
        self.frames[kind] += 1
        if kind == "read" and str(frame.get("uid")) == self.uid:  # reads.js: the server has it
            self._stored = max(self._stored, int(frame.get("message_id") or 0))
        key = _key(frame) if kind == "all" else None
        if key is not None:
            if key in self.arrivals:
                self.duplicates += 1
            else:
                self.arrivals[key] = stamp
        # The page's own handling (room.js's handleFrame), then reads.js's check after a message is shown.
        self._spawn(self._handle_frame(frame, kind))

    async def _handle_frame(self, frame: Any, kind: str) -> None:
        await self._handle(self._ws, frame)  # type: ignore[arg-type]
        if kind in ("all", "to"):
            self._shown()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _shown(self) -> None:
        """reads.js's check() and send(): the position moves to the last message shown; its read waits."""
        if not self.reading or self.delivery is None:
            return
        self.position = max(self.position, self.delivery.max_seen)
        if self.position > self._stored and self._read_timer is None:
            delay = READ_EVERY + random.random() * READ_SPREAD
            self._read_timer = asyncio.get_running_loop().call_later(delay, self._send_read)

    def _send_read(self) -> None:
        self._read_timer = None
        if self.position > self._stored:
            self._stored = self.position
            self._spawn(self._timed("read", f"/rooms/{self.room_id}/read", {"message_id": self.position}))

    async def _post(self, path: str, body: Any) -> tuple[int, Any]:
        """Page.post, sent again once if the kept-alive connection it went out on was closed under it.

        gunicorn closes a connection idle for 2 s (``--keep-alive``), about a
        member's time between two reads; a browser resends a request that
        failed that way before any answer came, and so does a member.
        """
        try:
            return await self.post(path, body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            self.resent += 1
            return await self.post(path, body)

    async def _timed(self, kind: str, path: str, body: Any) -> tuple[int, Any]:
        began = time.monotonic()
        try:
            status, data = await self._post(path, body)
        except Exception as exc:  # counted as status 0 with its kind; the page would shrug it off too
            status, data = 0, None
            self.failures[f"{kind}: {type(exc).__name__}"] += 1
        self.calls.append((kind, status, time.monotonic() - began))
        return status, data

    async def type_for(self, stop: asyncio.Event, first_key: float) -> None:
        """typing.js's input handler, one key press every KEYSTROKE seconds until ``stop``."""
        await asyncio.sleep(first_key)
        while not stop.is_set():
            now = time.monotonic()
            if now - self._last_typing >= TYPING_EVERY and now >= self._quiet_until:
                self._last_typing = now
                self._spawn(self._typing())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), KEYSTROKE)

    async def _typing(self) -> None:
        status, data = await self._timed("typing", "/typing", {"room_id": self.room_id})
        if status == 429:
            wait = data.get("retry_after") if isinstance(data, dict) else None
            self._quiet_until = time.monotonic() + (
                wait if isinstance(wait, (int, float)) and wait > 0 else QUIET_DEFAULT
            )

    async def say_at(self, when: float, tag: str, k: int) -> dict[str, Any]:
        """Say message ``k`` of ``tag`` at ``when`` (time.time() clock), as the composer does; what happened."""
        await asyncio.sleep(max(0.0, when - time.time()))
        began = time.time()
        status, data = await self._post("/say", {"room_id": self.room_id, "type": "all", "content": content(tag, k)})
        took = time.time() - began
        if status in (201, 502) and isinstance(data, dict) and self.delivery is not None:
            self.delivery.receive_live(data["message"])  # room.js shows the answer's message
        self._last_typing = 0.0  # typing.sent(): the next key press says so again at once
        return {"k": k, "at": began, "call_s": took, "status": status}

    async def settle(self, timeout: float) -> None:
        """Stop reading; wait for the read still waiting to go (the page would send it) and the requests on their way."""
        self.reading = False  # so no read starts waiting after this one
        if self._read_timer is not None:
            await asyncio.sleep(max(0.0, self._read_timer.when() - asyncio.get_running_loop().time()) + 0.01)
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)

    async def close(self) -> None:
        if isinstance(self._ws, _TimedSocket):
            await self._ws.close()
        await super().close()


class _Crowd:
    """One worker process's members, driven by the commands of :class:`Crowds`."""

    def __init__(self) -> None:
        self.members: list[Member] = []

    async def register(self, web_url: str, ws_url: str, names: list[str]) -> list[str]:
        self.members = [Member(web_url, ws_url, name) for name in names]
        for start in range(0, len(self.members), 10):
            await asyncio.gather(*(m.register() for m in self.members[start : start + 10]))
        return [m.uid for m in self.members]

    async def create_room(self, name: str) -> int:
        return await self.members[0].create_room(name)

    async def open(self, room_id: int, timeout: float) -> None:
        for start in range(0, len(self.members), 10):
            await asyncio.gather(*(m.open(room_id) for m in self.members[start : start + 10]))
        await until(
            lambda: all(m.binds >= 1 and m.delivery is not None and m.delivery.idle for m in self.members),
            "every member bound",
            timeout,
        )

    async def phase(
        self, tag: str, count: int, says: list[tuple[int, float, int]], typists: list[int], side: bool, timeout: float
    ) -> dict[str, Any]:
        """Say ``says`` ((k, when, member)); with ``side``, read and type too; wait for all ``count`` messages."""
        for m in self.members:
            m.frames.clear()
            m.calls.clear()
            m.failures.clear()
            m.resent = 0
            m.reading = side
        stop = asyncio.Event()
        first = min((when for _, when, _ in says), default=time.time())
        last = max((when for _, when, _ in says), default=time.time())
        # Typists start one by one over the first half of the phase (at most one throttle period):
        # people do not all start typing at once.
        spread = min(TYPING_EVERY, (last - first) / 2) / max(len(typists), 1)
        typing = [
            asyncio.create_task(self.members[i].type_for(stop, first - time.time() + spread * (n + random.random())))
            for n, i in enumerate(typists)
            if side
        ]
        said = await asyncio.gather(*(self.members[i].say_at(when, tag, k) for k, when, i in says))

        def complete() -> bool:
            return all(sum(1 for key in m.arrivals if key[0] == tag) >= count for m in self.members)

        with contextlib.suppress(AssertionError):  # what is missing is counted by the caller
            await until(complete, f"all {count} messages of {tag}", max(1.0, last + timeout - time.time()))
        stop.set()
        await asyncio.gather(*typing)
        await asyncio.gather(*(m.settle(timeout) for m in self.members))
        return {
            "said": said,
            "arrivals": [{str(k): at for (t, k), at in m.arrivals.items() if t == tag} for m in self.members],
            "calls": [call for m in self.members for call in m.calls],
            "frames": dict(sum((m.frames for m in self.members), Counter())),
            "duplicates": sum(m.duplicates for m in self.members),
            "resent": sum(m.resent for m in self.members),
            "failures": dict(sum((m.failures for m in self.members), Counter())),
            "disconnects": sum(m.disconnects for m in self.members),
        }

    async def close(self) -> None:
        await asyncio.gather(*(m.close() for m in self.members), return_exceptions=True)


async def _serve() -> None:
    """Answer the driver's commands, one JSON line each way: ``[command, args]`` → ``["ok", value]``."""
    crowd = _Crowd()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command, args = json.loads(line) if line else ("stop", {})
        try:
            answer = ["ok", None if command == "stop" else await getattr(crowd, command)(**args)]
        except Exception as exc:
            answer = ["error", f"{type(exc).__name__}: {exc}"]
        if command == "stop":
            await crowd.close()
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if command == "stop":
            return


class Crowds:
    """Members in ``workers`` processes (``python -m bench.room_members``); each command goes to all at once."""

    def __init__(self, workers: int) -> None:
        TMP.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[str]] = []
        for i in range(workers):
            with open(TMP / f"room-members-{i}.log", "w") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.room_members"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                        text=True,
                    )
                )

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def ask(self, command: str, args: list[dict[str, Any]], timeout: float) -> list[Any]:
        """Send ``command`` with ``args[i]`` to worker ``i`` (to the first ``len(args)`` workers); their answers."""
        procs = self.procs[: len(args)]
        for proc, one in zip(procs, args, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps([command, one]) + "\n")
            proc.stdin.flush()
        deadline = time.monotonic() + timeout
        answers = []
        for proc in procs:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else ""
            if not line:
                raise TimeoutError(f"a member worker did not answer {command} in {timeout:.0f} s (see {TMP})")
            status, value = json.loads(line)
            if status != "ok":
                raise RuntimeError(f"{command} failed in a member worker: {value}")
            answers.append(value)
        return answers

    def stop(self) -> None:
        """Close every member and end the workers."""
        with contextlib.suppress(OSError, TimeoutError, RuntimeError, ValueError):
            self.ask("stop", [{}] * len(self.procs), 10)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


if __name__ == "__main__":
    asyncio.run(_serve())
