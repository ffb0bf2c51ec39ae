"""Fault scenarios at the push level, counted: real redis-server, real push_server nodes, many pages.

Shared by ``tests/faults/test_cluster_faults.py`` (small sizes, asserted) and the
benchmark's ``faults`` item (larger sizes, reported). Each scenario returns its
figures as a dict; every (page, message) pair is counted:

- ``lost``: acknowledged (200) messages a page that should have them never got;
- ``duplicated``: extra copies of a message on one page;
- ``seconds_to_whole``: from the fault's end until every node answers for every page.

The processes are the suite's own (:mod:`tests.servers`); pages are
:class:`tests.ws_client.Browser` connections with a reader that records what arrives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp

from push_client import PushConnectionError, PushUnavailableError

from ..servers import TIMEOUT, PushServerProcess, RedisServer
from ..ws_client import Browser

GROUP = "room"
#: What a node's 503 says when it delivered the push to its own pages only (Redis away).
LOCAL_ONLY = "delivered to this node's clients only"


class Page:
    """One simulated page: records every numbered message, resync frame and its close code."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.client_id = browser.client_id
        self.node = browser.node
        self.numbers: list[int] = []
        self.resyncs: list[str] = []
        self.close_code: int | None = None
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        ws = self.browser.ws
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if isinstance(data, dict) and "n" in data:
                self.numbers.append(data["n"])
            elif isinstance(data, dict) and data.get("type") == "resync":
                self.resyncs.append(data["reason"])
        self.close_code = ws.close_code


@contextlib.contextmanager
def cluster(
    nodes: int, *flags: str, node_timeout: float = 10.0
) -> Iterator[tuple[RedisServer, list[PushServerProcess]]]:
    """A redis-server and ``nodes`` push_server nodes on it, all stopped afterwards."""
    redis = RedisServer().start()
    try:
        with started_nodes(redis.url, nodes, *flags, node_timeout=node_timeout) as servers:
            yield redis, servers
    finally:
        redis.stop()


@contextlib.contextmanager
def started_nodes(
    redis_url: str, nodes: int, *flags: str, node_timeout: float = 10.0
) -> Iterator[list[PushServerProcess]]:
    """``nodes`` push_server nodes on ``redis_url`` (any form: a Sentinel URL too), started together, stopped afterwards."""
    servers = [
        PushServerProcess(
            "--redis-url", redis_url, "--redis-prefix", "faults:", "--node-timeout", str(node_timeout), *flags
        )
        for _ in range(nodes)
    ]
    try:
        with concurrent.futures.ThreadPoolExecutor(nodes) as pool:
            list(pool.map(lambda server: server.start(), servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


async def open_pages(session: aiohttp.ClientSession, servers: list[PushServerProcess], count: int) -> list[Page]:
    """``count`` pages spread evenly over ``servers``, each a member of :data:`GROUP`."""
    pages: list[Page] = []
    for start in range(0, count, 50):
        browsers = await asyncio.gather(
            *(Browser.open(session, servers[i % len(servers)].ws_url) for i in range(start, min(count, start + 50)))
        )
        pages.extend(Page(browser) for browser in browsers)
    await asyncio.to_thread(_join, servers[0], [page.client_id for page in pages])
    return pages


def _join(server: PushServerProcess, client_ids: list[str]) -> None:
    with server.client() as client:
        for client_id in client_ids:
            client.join_group(client_id, GROUP)


class Pusher:
    """Pushes ``{"n": k}`` to :data:`GROUP` for k = 0, 1, ... in order, through ``servers`` in turn.

    Each message is retried (on the next node, backing off from 20 ms to
    400 ms) after every 503 until one answers 200; only then is it
    acknowledged and the next one sent.
    """

    def __init__(self, servers: list[PushServerProcess], interval: float, give_up: float = 60.0) -> None:
        self.servers = servers
        self.interval = interval
        self.give_up = give_up
        self.acked: list[int] = []
        #: (message, server index, the 503's text) for every refusal.
        self.refusals: list[tuple[int, int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        clients = [server.client(timeout=TIMEOUT) for server in self.servers]
        try:
            number = 0
            while not self.stop.is_set():
                target = number % len(clients)
                deadline = time.monotonic() + self.give_up
                pause = 0.02
                while True:
                    try:
                        clients[target].send_to_group(GROUP, {"n": number})
                        break
                    except (PushUnavailableError, PushConnectionError) as exc:
                        self.refusals.append((number, target, str(exc)))
                        if time.monotonic() > deadline:
                            raise
                        target = (target + 1) % len(clients)
                        # Backing off as a real caller would (doubling, capped).
                        time.sleep(pause)
                        pause = min(pause * 2, 0.4)
                self.acked.append(number)
                number += 1
                time.sleep(self.interval)
        finally:
            for client in clients:
                client.close()

    async def until(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` messages are acknowledged."""
        await _wait(lambda: len(self.acked) >= count, timeout, f"{count} acknowledged pushes")


async def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        await asyncio.sleep(0.02)


async def _count(server: PushServerProcess, group: str = GROUP) -> int | str:
    def run() -> int | str:
        with server.client(timeout=TIMEOUT) as client:
            try:
                return client.get_client_count_by_group(group)
            except (PushUnavailableError, PushConnectionError) as exc:
                return str(exc)

    return await asyncio.to_thread(run)


async def until_whole(
    servers: list[PushServerProcess], expected: int, timeout: float, group: str = GROUP
) -> tuple[float, int]:
    """Poll ``group``'s count on every node until all answer ``expected``: (seconds, 200 answers that undercounted)."""
    started = time.monotonic()
    undercounts = 0
    while time.monotonic() - started < timeout:
        answers = await asyncio.gather(*(_count(server, group) for server in servers))
        undercounts += sum(1 for answer in answers if isinstance(answer, int) and answer < expected)
        if all(answer == expected for answer in answers):
            return time.monotonic() - started, undercounts
        await asyncio.sleep(0.05)
    raise AssertionError(f"the cluster was not whole within {timeout}s (expected {expected})")


def _tally(pages: list[Page], acked: list[int]) -> dict[str, int]:
    """Lost and duplicated (page, message) pairs over ``pages`` for the acknowledged messages."""
    wanted = set(acked)
    lost = duplicated = 0
    for page in pages:
        counts = Counter(page.numbers)
        lost += len(wanted - counts.keys())
        duplicated += sum(n - 1 for n in counts.values() if n > 1)
    return {"pairs": len(pages) * len(wanted), "lost": lost, "duplicated": duplicated}


async def _delivered(pages: list[Page], acked: list[int], timeout: float) -> None:
    """Wait (up to ``timeout``) until every page holds every acknowledged message; never fails."""
    wanted = set(acked)
    with contextlib.suppress(AssertionError):
        await _wait(lambda: all(wanted <= set(page.numbers) for page in pages), timeout, "complete delivery")


async def redis_restarted_empty(
    pages: int = 30, nodes: int = 3, outage: float = 2.0, interval: float = 0.02
) -> dict[str, Any]:
    """Scenario (a): Redis killed for ``outage`` s and restarted empty under a retrying pusher."""
    with cluster(nodes) as (redis, servers):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            opened = await open_pages(session, servers, pages)
            pusher = Pusher(servers, interval)
            pushing = asyncio.ensure_future(asyncio.to_thread(pusher.run))
            try:
                await pusher.until(10)
                redis.stop()
                await asyncio.sleep(outage)
                redis.start()
                seconds, undercounts = await until_whole(servers, pages, timeout=30)
                await _wait(
                    lambda: all(page.resyncs[-1:] == ["redis_restored"] for page in opened),
                    TIMEOUT * 2,
                    "redis_restored on every page",
                )
                await pusher.until(len(pusher.acked) + 10)
            finally:
                pusher.stop.set()
                await pushing
            await _delivered(opened, pusher.acked, TIMEOUT)
            figures = _tally(opened, pusher.acked)
            # A 503 that says "delivered to this node's clients only" did deliver
            # there: the retry that follows is a duplicate those pages expect
            # (and drop by message id). Any other duplicate is a fault.
            node_of_server = {index: opened[index].node for index in range(len(servers))}
            local = {(n, node_of_server[target]) for n, target, text in pusher.refusals if LOCAL_ONLY in text}
            unexplained = sum(
                count - 1
                for page in opened
                for n, count in Counter(page.numbers).items()
                if count > 1 and (n, page.node) not in local
            )
            return {
                **figures,
                "pages": pages,
                "nodes": nodes,
                "messages": len(pusher.acked),
                "refusals": len(pusher.refusals),
                "unexplained_duplicates": unexplained,
                "undercounts": undercounts,
                "seconds_to_whole": round(seconds, 2),
                # redis_lost first and redis_restored last; a page may hear redis_restored
                # twice (again when a node that refused pushes meanwhile is back).
                "resyncs_in_order": sum(
                    1
                    for page in opened
                    if page.resyncs[:2] == ["redis_lost", "redis_restored"]
                    and set(page.resyncs[2:]) <= {"redis_restored"}
                ),
            }


async def node_killed(
    pages: int = 30, nodes: int = 3, messages: int = 150, interval: float = 0.005, node_timeout: float = 2.0
) -> dict[str, Any]:
    """Scenario (b): one node SIGKILLed while a numbered stream goes to a group spanning every node."""
    with cluster(nodes, node_timeout=node_timeout) as (_redis, servers):
        victim, survivors = servers[-1], servers[:-1]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            opened = await open_pages(session, servers, pages)
            victim_node = opened[len(servers) - 1].node
            kept = [page for page in opened if page.node != victim_node]
            pusher = Pusher(survivors, interval)
            pushing = asyncio.ensure_future(asyncio.to_thread(pusher.run))
            try:
                await pusher.until(messages // 3)
                victim.kill()
                seconds, _ = await until_whole(survivors, len(kept), timeout=node_timeout * 3 + TIMEOUT)
                await pusher.until(messages)
            finally:
                pusher.stop.set()
                await pushing
            await _delivered(kept, pusher.acked, TIMEOUT)
            return {
                **_tally(kept, pusher.acked),
                "pages": len(kept),
                "nodes": nodes,
                "messages": len(pusher.acked),
                "refusals": len(pusher.refusals),
                "out_of_order": sum(1 for page in kept if page.numbers != sorted(page.numbers)),
                "seconds_to_whole": round(seconds, 2),
            }


async def slow_consumer(
    pages: int = 200, nodes: int = 2, messages: int = 60, max_pending: int = 65536
) -> dict[str, Any]:
    """Scenario (c): one page of a group never reads; it is dropped, the others get every message."""
    from ..push.conftest import raw_handshake, read_frame

    with cluster(nodes, "--max-pending-bytes", str(max_pending)) as (_redis, servers):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            opened = await open_pages(session, servers, pages - 1)
            stuck, _ = await asyncio.to_thread(raw_handshake, servers[0].ws_port, "/ws", "", 4096)
            try:
                stuck_id = json.loads(read_frame(stuck)[1])["client_id"]
                await asyncio.to_thread(_join, servers[0], [stuck_id])
                padding = "x" * 1000
                big = "y" * 500_000
                with servers[0].client() as push, servers[1 % nodes].client() as other:
                    for n in range(messages):
                        # The stream goes through both nodes; halfway, the stuck page is
                        # sent far more than its kernel buffers and its bound can hold.
                        await asyncio.to_thread(
                            (push if n % 2 else other).send_to_group, GROUP, {"n": n, "pad": padding}
                        )
                        if n == messages // 2:
                            for _ in range(8):
                                await asyncio.to_thread(push.send_to_client, stuck_id, big)
                    await _delivered(opened, list(range(messages)), TIMEOUT * 2)
                    dropped = not await asyncio.to_thread(push.is_online, stuck_id)
            finally:
                stuck.close()
            return {**_tally(opened, list(range(messages))), "pages": pages, "slow_page_dropped": dropped}


def _handshake_many(port: int, count: int) -> list[socket.socket]:
    from ..push.conftest import raw_handshake, read_frame

    sockets = []
    for _ in range(count):
        sock, head = raw_handshake(port)
        assert head.startswith(b"HTTP/1.1 101"), head
        read_frame(sock)  # init
        sockets.append(sock)
    return sockets


def _close_code(sock: socket.socket) -> int | None:
    """Read frames until the close frame; its status code (None if the socket ended without one)."""
    from ..push.conftest import read_frame

    try:
        while True:
            opcode, payload = read_frame(sock)
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
    except (ConnectionError, OSError):
        return None
    finally:
        sock.close()


async def idle_then_sigterm(connections: int = 2000) -> dict[str, Any]:
    """Scenario (d): ``connections`` idle pages on one node, then SIGTERM: how many got close code 1001."""
    # Every test page comes from 127.0.0.1: lift the per-address limit (1,000 by default).
    with cluster(1, "--max-connections-per-ip", "0") as (_redis, servers):
        (server,) = servers
        sockets: list[socket.socket] = []
        try:
            # Four threads: the handshakes overlap.
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                parts = [connections // 4 + (1 if i < connections % 4 else 0) for i in range(4)]
                for part in pool.map(lambda count: _handshake_many(server.ws_port, count), parts):
                    sockets.extend(part)
            started = time.monotonic()
            await asyncio.to_thread(server.stop)
            stopped = time.monotonic() - started
            codes = Counter(await asyncio.to_thread(lambda: [_close_code(sock) for sock in sockets]))
        finally:
            for sock in sockets:
                sock.close()
        return {
            "connections": connections,
            "closed_1001": codes.get(1001, 0),
            "codes": dict(codes),
            "seconds_to_stop": round(stopped, 2),
        }
