"""Events on one node: every type, the grace, signatures (the receiver checks each request)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ..servers import TIMEOUT
from .conftest import GRACE, call
from .receiver import Receiver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Both backends: flags for event_server."""
    if request.param == "memory":
        return {}
    return {"redis": request.getfixturevalue("redis_server"), "prefix": request.getfixturevalue("prefix")}


async def test_every_type(event_server: Any, backend: dict[str, Any], browsers: Any, receiver: Receiver) -> None:
    """bind → uid_online, join → group_occupied, a text frame → client_message, close → client_closed, group_vacated, then uid_offline after the grace."""
    server = event_server("--forward-client-messages", "1", **backend)
    browser = await browsers(server)
    cid = browser.client_id
    await call(server, "bind_uid", cid, "alice")
    await call(server, "join_group", cid, "room:1")
    await call(server, "set_session", cid, {"name": "Alice"})
    online = await receiver.wait_event("uid_online", uid="alice")
    await receiver.wait_event("group_occupied", group="room:1")
    await browser.ws.send_str('{"type":"pong"}')
    await browser.ws.send_str("hello 🙂")
    message = await receiver.wait_event("client_message", client_id=cid)
    assert message["uid"] == "alice" and message["data"] == "hello 🙂"
    await browser.close()
    closed = await receiver.wait_event("client_closed", client_id=cid)
    assert closed["uid"] == "alice" and closed["groups"] == ["room:1"] and closed["session"] == {"name": "Alice"}
    await receiver.wait_event("group_vacated", group="room:1")
    offline = await receiver.wait_event("uid_offline", uid="alice", timeout=GRACE + 5)
    assert offline["time"] - closed["time"] >= GRACE * 0.9
    assert len(receiver.of("client_message")) == 1, "a pong is not forwarded"
    kinds = [e["type"] for e in receiver.unique()]
    assert kinds.index("uid_online") < kinds.index("uid_offline")
    for event in receiver.unique():
        assert isinstance(event["id"], str) and isinstance(event["time"], float | int), event
    assert online["time"] <= offline["time"]


async def test_reload_within_grace_sends_nothing(
    event_server: Any, backend: dict[str, Any], browsers: Any, receiver: Receiver
) -> None:
    """A page reload (close, reconnect and bind within the grace) sends neither uid_offline nor a second uid_online."""
    server = event_server(**backend)
    first = await browsers(server)
    await call(server, "bind_uid", first.client_id, "bob")
    await receiver.wait_event("uid_online", uid="bob")
    await first.close()
    await receiver.wait_event("client_closed", client_id=first.client_id)
    second = await browsers(server)
    await call(server, "bind_uid", second.client_id, "bob")
    # A marker event after the grace: everything bob's reload caused is in by then.
    await asyncio.sleep(GRACE * 2)
    marker = await browsers(server)
    await call(server, "bind_uid", marker.client_id, "marker")
    await receiver.wait_event("uid_online", uid="marker")
    assert [e["type"] for e in receiver.unique() if e.get("uid") == "bob" and e["type"].startswith("uid_")] == [
        "uid_online"
    ]


async def test_unbind_and_rebind_check_the_old_uid(
    event_server: Any, backend: dict[str, Any], browsers: Any, receiver: Receiver
) -> None:
    """Binding a connection to another uid (or unbinding it) takes the old uid offline after the grace."""
    server = event_server(**backend)
    browser = await browsers(server)
    await call(server, "bind_uid", browser.client_id, "carol")
    await receiver.wait_event("uid_online", uid="carol")
    await call(server, "bind_uid", browser.client_id, "dave")
    await receiver.wait_event("uid_online", uid="dave")
    await receiver.wait_event("uid_offline", uid="carol", timeout=GRACE + 5)
    await call(server, "unbind_uid", browser.client_id, "dave")
    await receiver.wait_event("uid_offline", uid="dave", timeout=GRACE + 5)
    await call(server, "join_group", browser.client_id, "g")
    await receiver.wait_event("group_occupied", group="g")
    await call(server, "ungroup", "g")
    await receiver.wait_event("group_vacated", group="g")


async def test_full_queue_drops_new_events_and_says_so(
    event_server: Any, backend: dict[str, Any], browsers: Any, receiver: Receiver
) -> None:
    """With the receiver down and the queue at its bound, new events are dropped, counted in the log, and the queued ones still arrive."""
    receiver.mode = "fail"
    server = event_server("--events-queue-max", "3", **backend)
    for number in range(6):
        browser = await browsers(server)
        await call(server, "bind_uid", browser.client_id, f"x{number}")

    # The log is a file another process writes: nothing to wait on but the file itself.
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while "dropped since start: the queue is full" not in server.log():
        assert asyncio.get_running_loop().time() < deadline, "the drop was not logged"
        await asyncio.sleep(0.05)
    receiver.mode = "ok"
    await receiver.wait_for(lambda: len(receiver.of("uid_online")) == 3)
    await asyncio.sleep(0.5)
    assert sorted(e["uid"] for e in receiver.of("uid_online")) == ["x0", "x1", "x2"]
