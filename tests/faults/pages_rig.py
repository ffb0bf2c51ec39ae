"""Cluster faults as pages see them: the web app, simulated pages on several nodes, Redis trouble; counted.

The whole chain is real: redis-server, push_server nodes (:func:`cluster_rig.cluster`),
the web app (:class:`tests.web_app.live.Live`, its push_client pointed at node 0)
and pages following docs/delivery.md (:class:`tests.faults.page.Page`) spread
over the nodes, several of them posting through the web app throughout. Every
(page, message) pair of every stored message is counted after the pages' own
catch-up: ``lost`` (never shown), ``duplicated`` (shown twice).

Shared by ``tests/faults/test_cluster_pages.py`` (small, asserted) and the
benchmark's ``faults`` item (larger, reported).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ..servers import TIMEOUT, PushServerProcess, RedisServer, free_port
from ..web_app.live import Live
from .cluster_rig import cluster, until_whole
from .page import NotStored, Page, tally, until, visible

#: Pages wait out an outage, their reconnect backoff and the catch-ups.
SETTLE = TIMEOUT * 4


class RedisLink:
    """A TCP relay between one node and Redis: :meth:`cut` severs that node alone (a partition), :meth:`mend` heals it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def mend(self) -> RedisLink:
        """Accept connections (again) on the same port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="redis-link").start()
        return self

    def cut(self) -> None:
        """Refuse new connections and end the open ones: the node sees Redis gone; Redis and the other nodes do not."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                near, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                far = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                near.close()
                continue
            with self._lock:
                self._sockets.update((near, far))
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def web_app(api_node: PushServerProcess, **config: Any) -> Iterator[Live]:
    """The web app (SQLite in a temporary folder), its push_client pointed at ``api_node``; ``config``: more settings."""
    with (
        tempfile.TemporaryDirectory(prefix="webchat-faults-") as folder,
        Live(
            # Hundreds of pages register and post from one address: the abuse limits would refuse them.
            api_node,
            Path(folder) / "instance",
            None,
            RATE_LIMIT_REGISTRATIONS="off",
            RATE_LIMIT_POSTS="off",
            **config,
        ) as live,
    ):
        yield live


@contextlib.asynccontextmanager
async def open_room(live: Live, servers: list[PushServerProcess], count: int) -> AsyncIterator[tuple[list[Page], int]]:
    """``count`` registered pages in one room, page *i* connected to node *i mod n*, each bound; closed afterwards."""
    pages = [Page(live.url, servers[i % len(servers)].ws_url, f"page{i}") for i in range(count)]
    try:
        for start in range(0, count, 25):
            await asyncio.gather(*(page.register() for page in pages[start : start + 25]))
        room_id = await pages[0].create_room("faults")
        for start in range(0, count, 25):
            await asyncio.gather(*(page.open(room_id) for page in pages[start : start + 25]))
        await until(
            lambda: all(page.binds >= 1 and page.delivery and page.delivery.idle for page in pages),
            "bound",
            SETTLE + count / 20,
        )
        yield pages, room_id
    finally:
        await asyncio.gather(*(page.close() for page in pages))


def told_lost_and_restored(pages: list[Page]) -> int:
    """How many pages heard first ``redis_lost`` and last ``redis_restored`` on their sockets."""
    return sum(1 for page in pages if page.resyncs[:1] == ["redis_lost"] and page.resyncs[-1:] == ["redis_restored"])


class Posters:
    """Pages posting through the web app until stopped: every third message private to a page on another node.

    ``resend``: a /say that stored nothing (say a 503 while the web app's own
    Redis fails over) is sent again after ``interval``, as a person does with
    the text room.js keeps in the composer; otherwise it fails the poster.
    """

    def __init__(self, posters: list[Page], everyone: list[Page], interval: float, resend: bool = False) -> None:
        self.posters = posters
        self.everyone = everyone
        self.interval = interval
        self.resend = resend
        self.said: list[dict[str, Any]] = []
        #: Message id → the status /say answered (201, or 502 "stored, not pushed").
        self.status_of: dict[int, int] = {}
        #: Status → how many /say answers stored nothing (and were sent again).
        self.not_stored: Counter[int] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Posters:
        self._tasks = [asyncio.get_running_loop().create_task(self._post(page)) for page in self.posters]
        return self

    async def _post(self, page: Page) -> None:
        place = self.everyone.index(page)
        number = 0
        while not self._stop.is_set():
            # Page place+1 is on the next node: private messages cross nodes.
            to = self.everyone[(place + 1) % len(self.everyone)].uid if number % 3 == 2 else None
            try:
                status, message = await page.say(f"{page.name} {number}", to_uid=to)
            except NotStored as refused:
                if not self.resend:
                    raise
                self.not_stored[refused.status] += 1
            else:
                self.status_of[message["id"]] = status
                self.said.append(message)
                number += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def until(self, count: int, timeout: float = SETTLE * 2) -> None:
        """Wait until ``count`` messages are stored; a poster that failed fails this."""
        deadline = time.monotonic() + timeout
        while len(self.said) < count:
            for task in self._tasks:
                if task.done():
                    task.result()  # raises what stopped it
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.said)} of {count} messages stored after {timeout} s")
            await asyncio.sleep(0.02)

    async def finish(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


def figures(pages: list[Page], posting: Posters, counted: dict[str, int], **extra: Any) -> dict[str, Any]:
    """The figures every scenario reports: the tally, the /say answers, pushes missed, pages that reconnected."""
    return {
        **counted,
        "pages": len(pages),
        "messages": len(posting.said),
        "say_statuses": dict(sorted(Counter(posting.status_of.values()).items())),
        # Pairs whose push never reached the page: shown from history (or the poster's own answer).
        "not_pushed": sum(len(visible(page, posting.said) - page.pushed) for page in pages),
        # Pages that had to reconnect: none should (Redis trouble keeps the sockets).
        "reconnected": sum(1 for page in pages if page.binds != 1),
        **extra,
    }


async def redis_restarted_empty(
    pages: int = 15, nodes: int = 3, posters: int = 5, outage: float = 2.0, interval: float = 0.2, after: int = 15
) -> dict[str, Any]:
    """Redis killed for ``outage`` s and restarted empty while ``posters`` pages post through the web app on node 0."""
    with cluster(nodes) as (redis, servers), web_app(servers[0]) as live:
        async with open_room(live, servers, pages) as (opened, room_id):
            posting = Posters(opened[:posters], opened, interval).start()
            try:
                await posting.until(10)
                redis.stop()
                await asyncio.sleep(outage)
                redis.start()
                seconds, undercounts = await until_whole(servers, pages, timeout=30, group=f"room:{room_id}")
                await posting.until(len(posting.said) + after)
            finally:
                await posting.finish()
            counted = await tally(opened, posting.said, SETTLE)
            told = told_lost_and_restored(opened)
            return figures(
                opened,
                posting,
                counted,
                nodes=nodes,
                told=told,
                undercounts=undercounts,
                seconds_to_whole=round(seconds, 2),
            )


async def node_cut_from_redis(
    pages: int = 15,
    nodes: int = 3,
    posters: int = 4,
    outage: float = 2.0,
    interval: float = 0.2,
    after: int = 15,
    node_timeout: float = 10.0,
    reaped: bool = False,
    cut: int = 1,
) -> dict[str, Any]:
    """Node ``cut`` alone loses Redis for ``outage`` s (its link cut) while the others keep it; posts through node 0's web app.

    ``reaped``: keep the link cut (at least ``outage`` s) until the others
    have counted the node dead and departed its clients. ``after=0``: posting
    stops before the link heals, so no later message can reveal a gap.
    """
    redis = RedisServer().start()
    link = RedisLink(redis.port).mend()
    flags = ("--redis-prefix", "faults:", "--node-timeout", str(node_timeout))
    servers = [PushServerProcess("--redis-url", link.url if i == cut else redis.url, *flags) for i in range(nodes)]
    try:
        with concurrent.futures.ThreadPoolExecutor(nodes) as pool:
            list(pool.map(lambda server: server.start(), servers))
        with web_app(servers[0]) as live:
            async with open_room(live, servers, pages) as (opened, room_id):
                cut_off = opened[cut::nodes]
                posting = Posters(opened[:posters], opened, interval).start()
                try:
                    await posting.until(10)
                    link.cut()
                    await until(
                        lambda: all("redis_lost" in page.resyncs for page in cut_off),
                        "the cut node's pages told",
                        SETTLE,
                    )
                    during = len(posting.said)
                    await asyncio.sleep(outage)
                    if reaped:
                        group = f"room:{room_id}"
                        await until_whole(
                            servers[:1], pages - len(cut_off), timeout=node_timeout * 3 + SETTLE, group=group
                        )
                    if not after:
                        await posting.finish()
                    statuses_during = Counter(posting.status_of[m["id"]] for m in posting.said[during:])
                    link.mend()
                    mended = time.monotonic()
                    await until(
                        lambda: all(page.resyncs[-1:] == ["redis_restored"] for page in cut_off), "restored", SETTLE * 2
                    )
                    seconds = time.monotonic() - mended
                    if after:
                        await posting.until(len(posting.said) + after)
                finally:
                    await posting.finish()
                counted = await tally(opened, posting.said, SETTLE)
                return figures(
                    opened,
                    posting,
                    counted,
                    nodes=nodes,
                    say_statuses_while_cut=dict(statuses_during),
                    cut_off_pages=len(cut_off),
                    seconds_to_whole=round(seconds, 2),
                    # Pages of the other nodes told redis_restored (their nodes, or the cut one, refused pushes meanwhile).
                    others_told=sum(1 for page in opened if page not in cut_off and "redis_restored" in page.resyncs),
                )
    finally:
        for server in servers:
            server.stop()
        link.cut()
        redis.stop()
