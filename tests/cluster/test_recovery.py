"""After Redis comes back: no answer from a partial cluster, pages told, pooled connections fresh."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from push_client import PushUnavailableError
from push_server.backends.redis import RedisBackend
from push_server.config import Config
from push_server.websocket.connections import Connections

from ..servers import TEST_SECRET, TIMEOUT, PushServerProcess, RedisServer
from .conftest import NODE_TIMEOUT, call, eventually

pytestmark = pytest.mark.timeout(90)

LOST = {"type": "resync", "reason": "redis_lost"}
RESTORED = {"type": "resync", "reason": "redis_restored"}


async def _count_or_error(server: PushServerProcess) -> int | str:
    """The room's member count on ``server``, or the 503 message it answered instead."""
    try:
        return int(await call(server, "get_client_count_by_group", "room"))
    except PushUnavailableError as exc:
        return str(exc)


async def test_no_200_until_every_node_has_written_its_clients_back(
    own_redis: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """Redis restarted empty while node C is frozen: A and B answer 503 naming C until C is back, and no answer undercounts."""
    a, b, c = nodes(own_redis, prefix, 3)
    pages = [await browsers(server) for server in (a, b, c) for _ in range(2)]
    for page in pages:
        await call(a, "join_group", page.client_id, "room")
    c_node = pages[-1].node
    assert c.process is not None
    c.process.send_signal(signal.SIGSTOP)
    try:
        own_redis.stop()
        own_redis.start()
        answers: list[int | str] = []

        async def waiting_for_c() -> bool:
            got = await asyncio.gather(_count_or_error(a), _count_or_error(b))
            answers.extend(got)
            return all(isinstance(x, str) and "not whole" in x and c_node in x for x in got)

        # A and B are back in Redis, and refuse to answer for a cluster missing C.
        await eventually(waiting_for_c, timeout=TIMEOUT * 2)
        for page in pages[:4]:
            assert await page.json() == LOST
            await page.nothing(within=0.2)  # not restored while C is missing
    finally:
        c.process.send_signal(signal.SIGCONT)

    async def whole() -> bool:
        got = await asyncio.gather(*(_count_or_error(server) for server in (a, b, c)))
        answers.extend(got)
        return all(x == 6 for x in got)

    await eventually(whole, timeout=TIMEOUT * 3)
    # Never a 200 with fewer members than the room has.
    assert [x for x in answers if isinstance(x, int) and x != 6] == []
    for page in pages[4:]:
        assert await page.json() == LOST
    for page in pages:
        assert await page.json(timeout=TIMEOUT) == RESTORED
    await call(b, "send_to_group", "room", "whole")
    for page in pages:
        assert await page.text() == "whole"


async def test_a_node_that_never_comes_back_is_awaited_one_lease(
    own_redis: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """A node killed during the outage holds the cluster at 503 only until its lease would have run out."""
    a, b, c = nodes(own_redis, prefix, 3, node_timeout=NODE_TIMEOUT)
    pages = [await browsers(server) for server in (a, b, c)]
    for page in pages:
        await call(a, "join_group", page.client_id, "room")
    c.kill()
    own_redis.stop()
    own_redis.start()
    answers: list[int | str] = []

    async def answered() -> bool:
        answers.append(await _count_or_error(a))
        return isinstance(answers[-1], int)

    started = time.monotonic()
    await eventually(answered, timeout=NODE_TIMEOUT + TIMEOUT * 2, interval=0.05)
    assert answers[-1] == 2, answers
    assert any(isinstance(x, str) and pages[2].node in x for x in answers), answers
    assert time.monotonic() - started < NODE_TIMEOUT + TIMEOUT * 2
    for page in pages[:2]:
        assert await page.json() == LOST
        assert await page.json() == RESTORED


async def test_the_first_calls_after_recovery_succeed(
    own_redis: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """Once a node says it is restored, concurrent API calls all succeed: no stale pooled connection answers 503."""
    (a,) = nodes(own_redis, prefix, 1)
    page = await browsers(a)

    def burst() -> list[Any]:
        def one(_: int) -> Any:
            with a.client() as client:
                try:
                    return client.is_online(page.client_id)
                except PushUnavailableError as exc:
                    return str(exc)

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            return list(pool.map(one, range(48)))

    assert await asyncio.to_thread(burst) == [True] * 48  # fills the pool with connections
    for _ in range(3):
        own_redis.stop()
        own_redis.start()
        assert await page.json() == LOST
        assert await page.json(timeout=TIMEOUT * 2) == RESTORED
        assert await asyncio.to_thread(burst) == [True] * 48


class _Unsendable(str):
    """A string the Redis client cannot encode: stands for any non-Redis failure while a pipeline is sent."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        raise ValueError("cannot encode")


async def test_a_pipeline_that_raises_fails_every_request_of_its_tick(redis_server: RedisServer, prefix: str) -> None:
    """An unexpected error while sending a tick's pipeline fails every request of that tick at once; none hangs."""
    backend = RedisBackend(Config(secret=TEST_SECRET, redis_url=redis_server.url, redis_prefix=prefix))
    await backend.start(Connections())
    try:
        assert backend.up
        innocent = asyncio.ensure_future(backend.get_all_client_count())
        culprit = asyncio.ensure_future(backend.is_online(_Unsendable("x.y")))
        done, pending = await asyncio.wait([innocent, culprit], timeout=TIMEOUT)
        assert not pending, "a request of the failed pipeline was left hanging"
        for future in done:
            with pytest.raises(Exception, match="Redis pipeline failed: ValueError"):
                future.result()
        assert await backend.get_all_client_count() == 0  # the next tick is served
    finally:
        await backend.stop()


async def test_a_node_stopped_cleanly_is_not_awaited(
    own_redis: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """A node that retired (SIGTERM) just before Redis lost everything is not waited for: the others answer at once."""
    a, b = nodes(own_redis, prefix, 2)  # node timeout 10 s: waiting for B would take that long
    alice, bob = await browsers(a), await browsers(b)
    for page in (alice, bob):
        await call(a, "join_group", page.client_id, "room")
    b.stop()
    assert await alice.json() == {"type": "leave", "group": "room", "uid": None}
    own_redis.stop()
    own_redis.start()
    assert await alice.json() == LOST
    assert await alice.json(timeout=TIMEOUT) == RESTORED
    assert await call(a, "get_client_count_by_group", "room") == 1


async def _next_resync(page: Any, timeout: float) -> Any:
    """The next resync frame ``page`` receives, skipping others (leave signals); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await page.json(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(frame, dict) and frame.get("type") == "resync":
            return frame


async def test_nodes_that_answered_503_for_a_late_node_tell_their_pages_once_whole(
    own_redis: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """Node C frozen past its lease (reaped) comes back: A and B answer 503 until C has written back, then send their pages redis_restored."""
    a, b, c = nodes(own_redis, prefix, 3, node_timeout=NODE_TIMEOUT)
    pages = [await browsers(server) for server in (a, b, c)]
    for page in pages:
        await call(a, "join_group", page.client_id, "room")
    assert c.process is not None
    c.process.send_signal(signal.SIGSTOP)
    try:

        async def reaped() -> bool:
            return await _count_or_error(a) == 2

        await eventually(reaped, timeout=NODE_TIMEOUT * 3 + TIMEOUT)
    finally:
        c.process.send_signal(signal.SIGCONT)
    # C finds itself reaped and writes its clients back; A and B refuse every push meanwhile
    # (a message stored then was pushed to nobody), so their pages must catch up too.
    assert await _next_resync(pages[2], TIMEOUT * 2) == LOST
    assert await _next_resync(pages[2], TIMEOUT * 2) == RESTORED
    for page in pages[:2]:
        assert await _next_resync(page, TIMEOUT * 2) == RESTORED
    assert await _count_or_error(b) == 3
