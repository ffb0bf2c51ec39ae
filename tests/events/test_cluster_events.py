"""Events across nodes: alternation under churn, node deaths, retries, a Redis restart."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest

from ..scrape import metric
from ..servers import TIMEOUT
from ..waiting import until
from .conftest import GRACE, NODE_TIMEOUT, call
from .receiver import Receiver

pytestmark = pytest.mark.timeout(90)


def transitions(receiver: Receiver, uid: str) -> list[str]:
    return [e["type"] for e in receiver.unique() if e.get("uid") == uid and e["type"] in ("uid_online", "uid_offline")]


async def test_alternation_under_churn_on_two_nodes(
    event_server: Any, redis_server: Any, prefix: str, browsers: Any, receiver: Receiver
) -> None:
    """Many concurrent connects/closes of one uid on two nodes: its online/offline strictly alternate, starting online."""
    nodes = [event_server(redis=redis_server, prefix=prefix) for _ in range(2)]
    rng = random.Random(7)

    async def churn(worker: int) -> None:
        for _ in range(8):
            node = nodes[rng.randrange(2)]
            browser = await browsers(node)
            await call(node, "bind_uid", browser.client_id, "u")
            # Sometimes closed at once, sometimes held past the grace.
            await asyncio.sleep(rng.choice([0, 0.05, GRACE * 1.2]))
            await browser.close()

    await asyncio.gather(*(churn(worker) for worker in range(4)))
    await receiver.wait_for(lambda: transitions(receiver, "u")[-1:] == ["uid_offline"], timeout=GRACE + TIMEOUT)
    seen = transitions(receiver, "u")
    assert seen[0] == "uid_online"
    assert all(a != b for a, b in itertools.pairwise(seen)), seen
    assert len(receiver.of("client_closed")) == 32


async def test_two_tabs_on_two_nodes_one_online(
    event_server: Any, redis_server: Any, prefix: str, browsers: Any, receiver: Receiver
) -> None:
    """Two tabs of one uid on two nodes send one uid_online; closing one sends nothing; closing both sends uid_offline."""
    a, b = (event_server(redis=redis_server, prefix=prefix) for _ in range(2))
    tab_a, tab_b = await browsers(a), await browsers(b)
    await call(a, "bind_uid", tab_a.client_id, "v")
    await call(b, "bind_uid", tab_b.client_id, "v")
    await call(a, "join_group", tab_a.client_id, "room")
    await call(b, "join_group", tab_b.client_id, "room")
    await tab_a.close()
    await receiver.wait_event("client_closed", client_id=tab_a.client_id)
    await asyncio.sleep(GRACE * 1.5)
    assert transitions(receiver, "v") == ["uid_online"]
    assert [e["type"] for e in receiver.unique() if e.get("group") == "room"] == ["group_occupied"]
    await tab_b.close()
    await receiver.wait_event("group_vacated", group="room")
    await receiver.wait_event("uid_offline", uid="v", timeout=GRACE + TIMEOUT)
    assert transitions(receiver, "v") == ["uid_online", "uid_offline"]


async def test_survivor_sends_a_killed_nodes_events(
    event_server: Any, redis_server: Any, prefix: str, browsers: Any, receiver: Receiver
) -> None:
    """A node SIGKILLed with clients bound: the survivor sends their client_closed (uid, groups, session), group_vacated and uid_offline."""
    doomed, survivor = (event_server(redis=redis_server, prefix=prefix) for _ in range(2))
    victims = [await browsers(doomed) for _ in range(3)]
    for number, browser in enumerate(victims):
        await call(survivor, "bind_uid", browser.client_id, f"w{number}")
        await call(survivor, "join_group", browser.client_id, "doomed-room")
        await call(survivor, "set_session", browser.client_id, {"n": number})
    await receiver.wait_for(lambda: len(receiver.of("uid_online")) == 3)
    doomed.kill()
    for number, browser in enumerate(victims):
        closed = await receiver.wait_event(
            "client_closed", client_id=browser.client_id, timeout=NODE_TIMEOUT * 3 + TIMEOUT
        )
        assert (closed["uid"], closed["groups"], closed["session"]) == (f"w{number}", ["doomed-room"], {"n": number})
    await receiver.wait_event("group_vacated", group="doomed-room")
    for number in range(3):
        await receiver.wait_event("uid_offline", uid=f"w{number}", timeout=GRACE + TIMEOUT)


async def test_retries_after_500_and_a_hang(
    event_server: Any, redis_server: Any, prefix: str, browsers: Any, receiver: Receiver
) -> None:
    """A receiver that answers 500, then hangs, then recovers gets every event (deduplicated by id), none lost.

    Meanwhile the node's push_events_pending gauge shows them waiting, and drops to 0 once they are delivered.
    """
    receiver.mode = "fail"
    server = event_server(redis=redis_server, prefix=prefix)
    opened = [await browsers(server) for _ in range(5)]
    for number, browser in enumerate(opened):
        await call(server, "bind_uid", browser.client_id, f"r{number}")
    await receiver.wait_for(lambda: receiver.requests >= 2, timeout=TIMEOUT * 3)
    assert not receiver.events
    pending = lambda: metric(server.api_url, "push_events_pending")  # noqa: E731
    await until(lambda: pending() >= 5, timeout=TIMEOUT * 3, what="5 events pending")
    receiver.mode = "hang"
    failed = receiver.requests
    await receiver.wait_for(lambda: receiver.requests > failed)
    receiver.mode = "ok"
    await receiver.wait_for(lambda: len(receiver.of("uid_online")) == 5, timeout=TIMEOUT * 3)
    assert sorted(e["uid"] for e in receiver.of("uid_online")) == [f"r{n}" for n in range(5)]
    assert len({e["id"] for e in receiver.events}) == len(receiver.unique())
    await until(lambda: pending() == 0, timeout=TIMEOUT * 3, what="nothing pending")


async def test_queued_events_survive_their_nodes_death(
    event_server: Any, redis_server: Any, prefix: str, browsers: Any, receiver: Receiver
) -> None:
    """Events queued (undelivered) on a node that is SIGKILLed are delivered by another node."""
    receiver.mode = "fail"
    doomed = event_server(redis=redis_server, prefix=prefix)
    opened = [await browsers(doomed) for _ in range(4)]
    for number, browser in enumerate(opened):
        await call(doomed, "bind_uid", browser.client_id, f"q{number}")
    # The doomed node is the sender and has failed at least once.
    await receiver.wait_for(lambda: receiver.requests >= 1, timeout=NODE_TIMEOUT * 2 + TIMEOUT)
    survivor = event_server(redis=redis_server, prefix=prefix)
    doomed.kill()
    receiver.mode = "ok"
    await receiver.wait_for(lambda: len(receiver.of("uid_online")) == 4, timeout=NODE_TIMEOUT * 2 + TIMEOUT)
    # And the killed node's clients depart through the survivor.
    await receiver.wait_for(lambda: len(receiver.of("uid_offline")) == 4, timeout=NODE_TIMEOUT * 3 + GRACE + TIMEOUT)
    assert survivor.process is not None and survivor.process.poll() is None


async def test_redis_restarted_empty_sends_no_false_offline(
    event_server: Any, own_redis: Any, prefix: str, browsers: Any, receiver: Receiver
) -> None:
    """Redis restarting empty: the uids still connected get no uid_offline/uid_online; later changes are told as usual."""
    a, b = (event_server(redis=own_redis, prefix=prefix) for _ in range(2))
    tabs = []
    for number in range(6):
        node = (a, b)[number % 2]
        tab = await browsers(node)
        await call(node, "bind_uid", tab.client_id, f"s{number}")
        await call(node, "join_group", tab.client_id, "kept")
        tabs.append(tab)
    await receiver.wait_for(lambda: len(receiver.of("uid_online")) == 6)
    before = len(receiver.unique())
    own_redis.stop()
    own_redis.start()

    async def served() -> bool:
        try:
            return await call(a, "get_all_uid_count") == 6 and await call(b, "get_all_uid_count") == 6
        except Exception:
            return False

    deadline = asyncio.get_running_loop().time() + TIMEOUT * 2
    while not await served():
        assert asyncio.get_running_loop().time() < deadline, "the cluster did not come back"
        await asyncio.sleep(0.1)
    # A newcomer after the restart is told about as usual (the marker that
    # everything the restart could have caused has been sent)...
    second_tab = await browsers(a)
    await call(a, "bind_uid", second_tab.client_id, "s1")
    await call(a, "join_group", second_tab.client_id, "kept")
    newcomer = await browsers(b)
    await call(b, "bind_uid", newcomer.client_id, "fresh")
    await receiver.wait_event("uid_online", uid="fresh", timeout=NODE_TIMEOUT * 2 + TIMEOUT)
    await asyncio.sleep(GRACE * 1.5)
    assert [e for e in receiver.unique()[before:] if e.get("uid") != "fresh"] == []
    # ...and someone leaving after it goes offline once, after the grace.
    await tabs[0].close()
    await receiver.wait_event("uid_offline", uid="s0", timeout=GRACE + TIMEOUT)
    assert transitions(receiver, "s0") == ["uid_online", "uid_offline"]
    assert not receiver.of("group_vacated")
