"""Many push_server nodes over one real redis-server: one cluster, surviving node deaths and Redis restarts."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from push_client import PushUnavailableError

from ..servers import ROOT, TEST_SECRET, TIMEOUT, RedisServer
from .conftest import NODE_TIMEOUT, call, eventually

pytestmark = pytest.mark.timeout(60)

LOST = {"type": "resync", "reason": "redis_lost"}
RESTORED = {"type": "resync", "reason": "redis_restored"}


async def test_three_nodes_act_as_one(
    redis_server: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """A client on node A is reached and described by calls on nodes B and C."""
    a, b, c = nodes(redis_server, prefix, 3)
    alice, bob = await browsers(a), await browsers(b)
    assert alice.node != bob.node

    await call(c, "bind_uid", alice.client_id, "alice")
    await call(c, "bind_uid", bob.client_id, 7)
    await call(c, "join_group", alice.client_id, "room")
    await call(b, "join_group", bob.client_id, "room")
    await call(a, "set_session", alice.client_id, {"name": "Alice", "n": 1})
    await call(c, "update_session", alice.client_id, {"n": 2})

    await call(c, "send_to_group", "room", {"say": "hi"})
    assert await alice.json() == {"say": "hi"}
    assert await bob.json() == {"say": "hi"}
    await call(a, "send_to_uid", "7", "to bob")
    assert await bob.text() == "to bob"
    await call(b, "send_to_client", alice.client_id, [1, 2])
    assert await alice.json() == [1, 2]
    await call(c, "send_to_all", {"all": True}, exclude_client_ids=[bob.client_id])
    assert await alice.json() == {"all": True}
    await bob.nothing()

    for node in (a, b, c):
        assert sorted(await call(node, "get_client_id_list_by_group", "room")) == sorted(
            [alice.client_id, bob.client_id]
        )
        assert sorted(await call(node, "get_uid_list_by_group", "room")) == ["7", "alice"]
        assert await call(node, "get_uid_count_by_group", "room") == 2
        assert await call(node, "get_session", alice.client_id) == {"name": "Alice", "n": 2}
        assert await call(node, "get_client_sessions_by_group", "room") == {
            alice.client_id: {"name": "Alice", "n": 2},
            bob.client_id: {},
        }
        assert await call(node, "get_client_id_by_uid", "alice") == [alice.client_id]
        assert await call(node, "get_uid_by_client_id", bob.client_id) == "7"
        assert await call(node, "get_all_client_count") == 2
        assert sorted(await call(node, "get_all_uid_list")) == ["7", "alice"]
        assert await call(node, "get_all_group_id_list") == ["room"]

    # A change made on C reaches A's delivery at once: the leave is seen before the push.
    await call(c, "leave_group", alice.client_id, "room")
    await call(b, "send_to_group", "room", "after leave")
    assert await bob.text() == "after leave"
    await alice.nothing()

    await call(c, "join_group", alice.client_id, "room")
    await call(c, "close_client", bob.client_id, "bye")
    assert await bob.text() == "bye"
    assert await alice.json() == {"type": "leave", "group": "room", "uid": "7"}
    assert await call(a, "is_online", bob.client_id) is False
    assert await call(a, "get_all_uid_list") == ["alice"]


async def test_a_stopped_node_leaves_nothing_behind(
    redis_server: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """A node shut down with SIGTERM sends its clients' leave signals to the other nodes at once."""
    a, b = nodes(redis_server, prefix, 2)
    alice, bob = await browsers(a), await browsers(b)
    await call(b, "bind_uid", bob.client_id, "bob")
    for browser in (alice, bob):
        await call(a, "join_group", browser.client_id, "room")
    b.stop()
    assert await alice.json() == {"type": "leave", "group": "room", "uid": "bob"}
    assert await call(a, "get_all_client_id_list") == [alice.client_id]
    assert await call(a, "get_all_uid_count") == 0
    # It retired its lease on the way out: nothing is left for the others to reap.
    import redis

    with redis.Redis.from_url(redis_server.url) as r:
        assert r.smembers(prefix + "nodes") == {alice.node.encode()}
        assert not r.exists(prefix + "lease:" + bob.node)


async def test_a_killed_node_is_reaped_once(
    redis_server: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """SIGKILL a node: within the node timeout its clients leave, signalled once on every other node, and presence is clean."""
    a, b, c = nodes(redis_server, prefix, 3, node_timeout=NODE_TIMEOUT)
    victim, other_victim, bob, carol = await browsers(a), await browsers(a), await browsers(b), await browsers(c)
    await call(c, "bind_uid", victim.client_id, "vic")
    await call(c, "set_session", victim.client_id, {"x": 1})
    for browser in (victim, other_victim, bob, carol):
        await call(c, "join_group", browser.client_id, "room")
    await call(c, "join_group", victim.client_id, "side")
    await call(c, "join_group", bob.client_id, "side")

    a.kill()
    started = time.monotonic()
    # Each survivor hears each departure once per shared group, from exactly one reaper.
    expected_bob = sorted([("room", "vic"), ("room", None), ("side", "vic")], key=str)
    got_bob = sorted(
        [(m["group"], m["uid"]) for m in [await bob.json(timeout=NODE_TIMEOUT + TIMEOUT) for _ in range(3)]], key=str
    )
    assert got_bob == expected_bob
    got_carol = sorted(
        [(m["group"], m["uid"]) for m in [await carol.json(timeout=NODE_TIMEOUT + TIMEOUT) for _ in range(2)]], key=str
    )
    assert got_carol == sorted([("room", "vic"), ("room", None)], key=str)
    assert time.monotonic() - started < NODE_TIMEOUT * 3
    await bob.nothing(within=NODE_TIMEOUT)
    await carol.nothing(within=0.1)

    for node in (b, c):
        assert sorted(await call(node, "get_all_client_id_list")) == sorted([bob.client_id, carol.client_id])
        assert sorted(await call(node, "get_client_id_list_by_group", "room")) == sorted(
            [bob.client_id, carol.client_id]
        )
        assert await call(node, "get_client_id_list_by_group", "side") == [bob.client_id]
        assert await call(node, "is_uid_online", "vic") is False
        assert await call(node, "get_all_uid_list") == []
        assert await call(node, "get_session", victim.client_id) is None
        assert await call(node, "get_uid_count_by_group", "room") == 0
    # Deliveries to the survivors are unaffected.
    await call(b, "send_to_group", "room", "still here")
    assert await bob.text() == "still here"
    assert await carol.text() == "still here"


async def test_redis_outage_keeps_local_delivery_and_fails_fast(
    own_redis: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """With Redis gone, a node still delivers to its own clients and API calls fail within 2 s with PushUnavailableError."""
    (a,) = nodes(own_redis, prefix, 1)
    alice = await browsers(a)
    await call(a, "join_group", alice.client_id, "room")
    own_redis.stop()

    started = time.monotonic()
    with pytest.raises(PushUnavailableError):
        await call(a, "is_online", alice.client_id)
    with pytest.raises(PushUnavailableError):
        await call(a, "join_group", alice.client_id, "other")
    # A group push reaches this node's members, and says it could not reach the others.
    with pytest.raises(PushUnavailableError):
        await call(a, "send_to_group", "room", "local")
    assert time.monotonic() - started < 2 * 3
    # The page is told first that pushes from other nodes may be lost.
    assert await alice.json() == LOST
    assert await alice.text() == "local"
    # A push to a client of this very node is complete without Redis.
    await call(a, "send_to_client", alice.client_id, "direct")
    assert await alice.text() == "direct"

    for method, args in [
        ("get_all_client_count", ()),
        ("bind_uid", (alice.client_id, "u")),
        ("get_session", (alice.client_id,)),
    ]:
        started = time.monotonic()
        with pytest.raises(PushUnavailableError):
            await call(a, method, *args)
        assert time.monotonic() - started < 2


async def test_redis_restarted_empty_is_refilled(
    own_redis: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """Redis restarted empty: the nodes write their clients back and everything answers and delivers again."""
    a, b = nodes(own_redis, prefix, 2)
    alice, bob = await browsers(a), await browsers(b)
    await call(a, "bind_uid", alice.client_id, "alice")
    await call(a, "set_session", alice.client_id, {"name": "Alice"})
    for browser in (alice, bob):
        await call(b, "join_group", browser.client_id, "room")

    own_redis.stop()
    own_redis.start()

    # Each page hears that pushes may have been lost, then that its node is whole again.
    for browser in (alice, bob):
        assert await browser.json() == LOST
        assert await browser.json(timeout=30) == RESTORED

    async def whole() -> bool:
        members = await call(b, "get_client_id_list_by_group", "room")
        return sorted(members) == sorted([alice.client_id, bob.client_id])

    await eventually(whole, timeout=30)
    for node in (a, b):
        assert await eventually(functools.partial(call, node, "get_session", alice.client_id), timeout=5) == {
            "name": "Alice"
        }
        assert await call(node, "get_client_id_by_uid", "alice") == [alice.client_id]
        assert sorted(await call(node, "get_all_client_id_list")) == sorted([alice.client_id, bob.client_id])
        assert await call(node, "get_uid_list_by_group", "room") == ["alice"]
    await call(b, "send_to_group", "room", "back")
    assert await alice.text() == "back"
    assert await bob.text() == "back"
    await call(a, "send_to_uid", "alice", "uid back")
    assert await alice.text() == "uid back"
    # Departures are signalled again.
    await bob.ws.close()
    assert await alice.json() == {"type": "leave", "group": "room", "uid": None}


async def test_two_prefixes_on_one_redis_do_not_meet(
    redis_server: RedisServer, nodes: Callable[..., Any], browsers: Any
) -> None:
    """Two apps with different prefixes on one Redis see and reach only their own clients."""
    (first,) = nodes(redis_server, "appone:", 1)
    (second,) = nodes(redis_server, "apptwo:", 1)
    one, two = await browsers(first), await browsers(second)
    for server, browser in ((first, one), (second, two)):
        await call(server, "join_group", browser.client_id, "room")
        await call(server, "bind_uid", browser.client_id, "same-uid")
    await call(first, "send_to_all", "one only")
    await call(first, "send_to_group", "room", "room one")
    await call(first, "send_to_uid", "same-uid", "uid one")
    assert [await one.text() for _ in range(3)] == ["one only", "room one", "uid one"]
    await two.nothing()
    assert await call(first, "get_all_client_id_list") == [one.client_id]
    assert await call(second, "get_client_id_list_by_group", "room") == [two.client_id]
    assert await call(second, "is_online", one.client_id) is False
    await call(second, "send_to_client", one.client_id, "cross")
    await one.nothing()


async def test_workers_share_the_ports_as_one_cluster(
    redis_server: RedisServer, prefix: str, make_push_server: Any, browsers: Any
) -> None:
    """``--workers 2`` serves clients from both processes, and any API call reaches all of them."""
    server = make_push_server("--redis-url", redis_server.url, "--redis-prefix", prefix, "--workers", "2").start()
    opened = []
    # The kernel spreads connections by their source port: a few are enough to
    # meet both workers, once both listen (the second may start a little later
    # than the first on a busy machine: 40 connections at once all met one).
    deadline = asyncio.get_running_loop().time() + TIMEOUT * 2
    while len({browser.node for browser in opened}) < 2 and asyncio.get_running_loop().time() < deadline:
        opened.append(await browsers(server))
        if len(opened) % 10 == 0:
            await asyncio.sleep(0.2)
    assert len({browser.node for browser in opened}) == 2, "every connection went to one worker"
    for browser in opened:
        await call(server, "join_group", browser.client_id, "room")
    assert await call(server, "get_client_count_by_group", "room") == len(opened)
    for _ in range(3):  # the API port is shared too: each call may land on either worker
        await call(server, "send_to_group", "room", "to all workers")
        for browser in opened:
            assert await browser.text() == "to all workers"
    # SIGTERM to the parent stops both workers cleanly.
    assert server.stop() == 0
    assert server.process is not None
    assert not _children(server.process.pid)


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent, ...); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


async def test_a_dead_worker_is_replaced(
    redis_server: RedisServer, prefix: str, make_push_server: Any, browsers: Any
) -> None:
    """A worker killed outright is replaced by a new one, and its clients are reaped by the cluster."""
    server = make_push_server(
        "--redis-url", redis_server.url, "--redis-prefix", prefix, "--workers", "2", "--node-timeout", str(NODE_TIMEOUT)
    ).start()
    assert server.process is not None
    workers = await eventually(lambda: _two(_children(server.process.pid)), timeout=TIMEOUT)
    # Workers need MIN_UPTIME before a death counts as a crash rather than a broken start.
    from push_server.workers import MIN_UPTIME

    opened = [await browsers(server) for _ in range(12)]  # all 12 on one worker: 1 in 2,048
    await asyncio.sleep(MIN_UPTIME)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    replaced = await eventually(lambda: _two(_children(server.process.pid) - {victim}), timeout=TIMEOUT)
    assert victim not in replaced and len(replaced) == 2

    async def survives(browser: Any) -> bool:
        try:
            message = await browser.ws.receive(timeout=0.5)
        except asyncio.TimeoutError:
            return True
        return message.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)

    alive = {b.client_id for b, ok in zip(opened, await asyncio.gather(*map(survives, opened)), strict=True) if ok}
    assert len(alive) < len(opened), "the killed worker held none of the clients"

    async def reaped() -> bool:
        return set(await call(server, "get_all_client_id_list")) == alive

    await eventually(reaped, timeout=NODE_TIMEOUT * 3)
    browser = await browsers(server)  # the ports still serve, whichever worker answers
    assert await call(server, "is_online", browser.client_id)


async def _two(pids: set[int]) -> set[int] | None:
    return pids if len(pids) == 2 else None


def test_workers_refuse_without_redis() -> None:
    """``--workers 2`` without Redis exits at once with a message saying why."""
    result = subprocess.run(
        [sys.executable, "-m", "push_server", "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        env={"PATH": "/usr/bin:/bin", "PUSH_SECRET": TEST_SECRET},
    )
    assert result.returncode != 0
    assert "PUSH_REDIS_URL" in result.stderr


async def test_pushes_travel_only_to_the_nodes_of_their_recipients(
    redis_server: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """A push to a client, uid or group is published on the channels of the nodes holding recipients, no others."""
    import redis

    a, b, c = nodes(redis_server, prefix, 3)
    alice, bob = await browsers(a), await browsers(b)
    await call(c, "bind_uid", alice.client_id, "alice")
    await call(c, "join_group", alice.client_id, "room")
    watcher = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    watcher.psubscribe(prefix + "node:*")
    assert watcher.get_message(timeout=TIMEOUT) is None  # the subscription is confirmed (and skipped)
    try:
        await call(c, "send_to_group", "room", "g")
        await call(b, "send_to_uid", "alice", "u")
        await call(c, "send_to_client", alice.client_id, "c")
        assert [await alice.text() for _ in range(3)] == ["g", "u", "c"]
        await bob.nothing(within=0.1)
        channels = []
        deadline = time.monotonic() + 1.0  # three expected, and time for any stray one
        while time.monotonic() < deadline:
            message = watcher.get_message(timeout=0.1)
            if message is not None:
                channels.append(message["channel"].decode())
        assert channels == [f"{prefix}node:{alice.node}"] * 3
    finally:
        watcher.close()


async def test_a_node_stalled_past_its_lease_writes_its_clients_back(
    redis_server: RedisServer, prefix: str, nodes: Callable[..., Any], browsers: Any
) -> None:
    """A node frozen longer than the node timeout is reaped, then, awake again, puts its live clients back."""
    a, b = nodes(redis_server, prefix, 2, node_timeout=NODE_TIMEOUT)
    alice, bob = await browsers(a), await browsers(b)
    for browser in (alice, bob):
        await call(b, "join_group", browser.client_id, "room")
    await call(b, "bind_uid", alice.client_id, "alice")
    assert a.process is not None
    a.process.send_signal(signal.SIGSTOP)
    try:
        # The others count it dead and say so.
        assert await bob.json(timeout=NODE_TIMEOUT * 2 + TIMEOUT) == {"type": "leave", "group": "room", "uid": "alice"}
        assert await call(b, "get_all_client_id_list") == [bob.client_id]
    finally:
        a.process.send_signal(signal.SIGCONT)

    async def back() -> bool:
        return sorted(await call(b, "get_client_id_list_by_group", "room")) == sorted([alice.client_id, bob.client_id])

    await eventually(back, timeout=NODE_TIMEOUT * 3)
    # Its pages missed the pushes made while it was counted dead: they are told to catch up.
    assert await alice.json() == LOST
    assert await alice.json(timeout=NODE_TIMEOUT * 3) == RESTORED
    # B answered 503 while A wrote its clients back (pushes refused): its pages catch up too.
    assert await bob.json() == RESTORED
    assert await call(b, "get_uid_by_client_id", alice.client_id) == "alice"
    await call(b, "send_to_group", "room", "welcome back")
    assert await alice.text() == "welcome back"
    assert await bob.text() == "welcome back"


async def test_workers_stop_when_their_parent_dies(
    redis_server: RedisServer, prefix: str, make_push_server: Any
) -> None:
    """Workers whose parent is killed outright shut down rather than linger on the ports."""
    server = make_push_server("--redis-url", redis_server.url, "--redis-prefix", prefix, "--workers", "2").start()
    assert server.process is not None
    parent = server.process.pid
    workers = await eventually(lambda: _two(_children(parent)), timeout=TIMEOUT)
    server.kill()

    async def all_gone() -> bool:
        # Gone, or a zombie waiting for its (killed) parent's reaper.
        return all((fields := _stat(pid)) is None or fields[0] == "Z" for pid in workers)

    await eventually(all_gone, timeout=TIMEOUT * 2)
