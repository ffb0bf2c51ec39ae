"""The membership of one node (backends/redis: gate, membership, reaping, resync, claims), in process, against a real redis-server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from push_server.backends.base import BackendUnavailable
from push_server.backends.redis import RedisBackend, format
from push_server.backends.redis.gate import State
from push_server.config import Config
from push_server.websocket.connections import Connections

from ..servers import TEST_SECRET, TIMEOUT, RedisServer
from .conftest import eventually

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def running(redis: RedisServer, prefix: str, node_timeout: float = 10.0) -> AsyncIterator[RedisBackend]:
    """A RedisBackend started in this process (no listener: an empty Connections), stopped afterwards."""
    backend = RedisBackend(
        Config(secret=TEST_SECRET, redis_url=redis.url, redis_prefix=prefix, node_timeout=node_timeout)
    )
    await backend.start(Connections())
    try:
        yield backend
    finally:
        await backend.stop()


@contextlib.asynccontextmanager
async def plain(redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client, to look at (and tamper with) the keys behind the backend's back."""
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def _in_state(backend: RedisBackend, state: State) -> None:
    async def reached() -> bool:
        return backend.gate.state is state

    await eventually(reached, timeout=TIMEOUT * 2, interval=0.02)


async def test_a_node_answers_only_once_up(redis_server: RedisServer, prefix: str) -> None:
    """Before it has joined, a node refuses API commands saying Redis is unreachable; once started it is UP and serves."""
    backend = RedisBackend(Config(secret=TEST_SECRET, redis_url=redis_server.url, redis_prefix=prefix))
    assert backend.gate.state is State.DOWN and not backend.up
    with pytest.raises(BackendUnavailable, match="Redis is unreachable"):
        await backend.get_all_client_count()
    await backend.start(Connections())
    try:
        assert backend.gate.state is State.UP and backend.up
        assert await backend.get_all_client_count() == 0
    finally:
        await backend.stop()
    assert backend.gate.state is State.DOWN


async def test_a_not_whole_note_stops_answers_until_waiting_is_empty(redis_server: RedisServer, prefix: str) -> None:
    """A ``W`` note makes an UP node WAITING (503 naming the awaited node); emptying ``waiting`` (``w``) makes it UP again."""
    async with running(redis_server, prefix) as backend, plain(redis_server) as redis:
        seconds, _ = await redis.time()
        await redis.zadd(prefix + "waiting", {"ghost": seconds * 1000 + 60_000})
        await redis.publish(format.all_channel(prefix), format.encode(format.NOT_WHOLE, []))
        await _in_state(backend, State.WAITING)
        with pytest.raises(BackendUnavailable, match=r"not whole yet.*ghost"):
            await backend.send_to_group(["room"], b"frame")
        # The node still does its own upkeep meanwhile.
        assert await backend.gate.internal("gate") == [b"ghost"]
        await backend.gate.internal("synced", "ghost")  # ghost is written back: the script publishes ``w``
        await _in_state(backend, State.UP)
        assert await backend.get_all_client_count() == 0


async def test_holder_and_retired_notes_name_the_nodes_to_wait_for(redis_server: RedisServer, prefix: str) -> None:
    """``H`` adds a node to those this one would wait for after Redis lost everything; ``R`` removes it."""
    async with running(redis_server, prefix) as backend, plain(redis_server) as redis:
        await redis.publish(format.all_channel(prefix), format.encode(format.HOLDER, ["ghost"]))
        await redis.publish(format.all_channel(prefix), format.encode(format.HOLDER, [backend.node_id]))

        async def known() -> bool:
            return backend.membership.known == ["ghost"]

        await eventually(known, timeout=TIMEOUT)
        await redis.publish(format.all_channel(prefix), format.encode(format.RETIRED, ["ghost"]))

        async def forgotten() -> bool:
            return backend.membership.known == []

        await eventually(forgotten, timeout=TIMEOUT)


async def test_a_dead_nodes_clients_are_reaped(redis_server: RedisServer, prefix: str) -> None:
    """A node whose lease lapses is swept by a live one, and each of its clients leaves every index."""
    async with running(redis_server, prefix, node_timeout=1.0) as backend, plain(redis_server) as redis:
        transport = backend.transport
        await transport.script_now("join", "ghost", "300", transport.pipe.epoch, "unused", "0")
        await transport.script("register", "ghost.c1", "alice")
        await transport.script("join_group", "ghost.c1", "room")
        assert await backend.get_client_count_by_group("room") == 1

        async def reaped() -> bool:
            return not await redis.exists(
                prefix + "u:alice", prefix + "g:room", prefix + "reap:ghost", prefix + "cu:ghost.c1"
            )

        await eventually(reaped, timeout=TIMEOUT * 2)
        assert await backend.get_all_client_count() == 0
        assert await redis.hgetall(prefix + "reaping") == {}
        assert await backend.get_nodes() == [{"node": backend.node_id, "connections": 0, "started": backend.started}]


async def test_write_back_after_redis_lost_everything(redis_server: RedisServer, prefix: str) -> None:
    """After FLUSHALL the node notices at its next command, writes its clients back (uid, groups, session) and serves again."""
    async with running(redis_server, prefix) as backend, plain(redis_server) as redis:
        cid = backend.new_client_id()
        await backend.register(cid, "alice")
        await backend.join_group(cid, "room")
        await backend.set_session(cid, {"name": "Ann"})
        await redis.flushall()
        with pytest.raises(BackendUnavailable):
            await backend.get_all_client_count()  # this tick's epoch check finds a new Redis

        async def restored() -> Any:
            return await backend.get_client_id_list_by_group("room") == [cid]

        await eventually(restored, timeout=TIMEOUT * 2)
        assert await backend.get_uid_by_client_id(cid) == "alice"
        assert await backend.get_session(cid) == {"name": "Ann"}
        assert await redis.zcard(prefix + "waiting") == 0


async def test_keys_are_claimed_once_cluster_wide(redis_server: RedisServer, prefix: str) -> None:
    """A key one node claimed is refused on another until released; then it can be claimed again."""
    async with running(redis_server, prefix) as a, running(redis_server, prefix) as b:
        assert await a.claims.claim("idem:k", 60)
        assert not await b.claims.claim("idem:k", 60)
        await a.claims.release("idem:k")
        assert await b.claims.claim("idem:k", 60)


async def test_keys_claimed_while_redis_is_away_are_written_back(own_redis: RedisServer, prefix: str) -> None:
    """While Redis is down a node claims keys locally (a replay to it is refused); once back, Redis holds them."""
    async with running(own_redis, prefix) as backend:
        own_redis.stop()
        await _in_state(backend, State.DOWN)
        assert await backend.claims.claim("nonce:n1", 60)
        assert not await backend.claims.claim("nonce:n1", 60)
        own_redis.start()
        await _in_state(backend, State.UP)
        async with plain(own_redis) as redis:
            assert await redis.exists(prefix + "nonce:n1")
            assert 0 < await redis.pttl(prefix + "nonce:n1") <= 60_000
        assert not await backend.claims.claim("nonce:n1", 60)
