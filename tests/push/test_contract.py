"""The push core's contract (SPEC §2-§3), run against every backend."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from push_client import AsyncBatch, AsyncPushClient, PushClient

from ..servers import TIMEOUT, PushServerProcess
from ..waiting import until


async def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Make a call of either client: AsyncPushClient's is awaited, PushClient's runs in a thread."""
    if isinstance(getattr(function, "__self__", None), (AsyncPushClient, AsyncBatch)):
        return await function(*args, **kwargs)
    return await asyncio.to_thread(function, *args, **kwargs)


@pytest.fixture(params=["sync", "async"])
async def push(server: PushServerProcess, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A client of the module's server, each face in turn: PushClient, then AsyncPushClient (call it with ``call``)."""
    if request.param == "sync":
        client = server.client()
        yield client
        client.close()
    else:
        async with AsyncPushClient(server.api_url, secret=server.secret) as async_client:
            yield async_client


@contextlib.asynccontextmanager
async def batch_of(push: Any, **options: Any) -> AsyncIterator[Any]:
    """``push.batch()`` of either client, used the way each is meant to be (``with`` / ``async with``)."""
    if isinstance(push, AsyncPushClient):
        async with push.batch(**options) as batch:
            yield batch
    else:
        batch = push.batch(**options)
        with batch:
            yield batch
            # Sending blocks: it happens in a thread, and __exit__ then finds nothing left to send.
            await asyncio.to_thread(batch.send)


# -- connecting ----------------------------------------------------------------------------


async def test_init_is_the_first_frame_with_an_unguessable_id(browsers: Any) -> None:
    """Every connection first receives init with a URL-safe id of at least 128 random bits."""
    ids = {(await browsers()).client_id for _ in range(20)}
    assert len(ids) == 20
    for client_id in ids:
        # 22 base64url characters hold 132 bits; anything shorter cannot hold 128.
        assert re.fullmatch(r"[A-Za-z0-9_\-.~]{22,}", client_id), client_id


async def test_registered_before_init(browsers: Any, push: PushClient) -> None:
    """By the time init arrives, the API already sees the client online."""
    browser = await browsers()
    assert await call(push.is_online, browser.client_id) is True


# -- pushes ------------------------------------------------------------------------------


async def test_message_types_arrive_as_sent(browsers: Any, push: PushClient) -> None:
    """str arrives as text, bytes as binary, and JSON values JSON-encoded as text."""
    browser = await browsers()
    await call(push.send_to_client, browser.client_id, "plain text")
    await call(push.send_to_client, browser.client_id, b"\x00\xffbinary")
    await call(push.send_to_client, browser.client_id, {"a": [1, "é"]})
    await call(push.send_to_client, browser.client_id, [1, 2])
    await call(push.send_to_client, browser.client_id, 42)
    first = await browser.receive()
    assert (first.type, first.data) == (aiohttp.WSMsgType.TEXT, "plain text")
    second = await browser.receive()
    assert (second.type, second.data) == (aiohttp.WSMsgType.BINARY, b"\x00\xffbinary")
    assert await browser.json() == {"a": [1, "é"]}
    assert await browser.json() == [1, 2]
    assert await browser.json() == 42


async def test_send_to_all_with_only_and_exclude(fresh_server: Any, browsers: Any) -> None:
    """send_to_all reaches everyone, or only the listed clients, minus the excluded."""
    push = fresh_server.client()
    a, b, c = [await browsers(fresh_server) for _ in range(3)]
    await call(push.send_to_all, "everyone")
    for browser in (a, b, c):
        assert (await browser.receive()).data == "everyone"
    await call(push.send_to_all, "some", client_ids=[a.client_id, b.client_id], exclude_client_ids=[b.client_id])
    assert (await a.receive()).data == "some"
    await b.nothing()
    await c.nothing()
    await call(push.send_to_all, "not c", exclude_client_ids=[c.client_id])
    assert (await a.receive()).data == "not c"
    assert (await b.receive()).data == "not c"
    await c.nothing()


async def test_send_to_uid_reaches_every_connection_of_the_uid(browsers: Any, push: PushClient, name: Any) -> None:
    """A uid's every connection gets send_to_uid; a list of uids reaches each connection once."""
    tab1, tab2, other, stranger = [await browsers() for _ in range(4)]
    uid, uid2 = name("u"), name("v")
    await call(push.bind_uid, tab1.client_id, uid)
    await call(push.bind_uid, tab2.client_id, uid)
    await call(push.bind_uid, other.client_id, uid2)
    await call(push.send_to_uid, uid, "to u")
    assert (await tab1.receive()).data == "to u"
    assert (await tab2.receive()).data == "to u"
    await other.nothing(0.1)
    await call(push.send_to_uid, [uid, uid2, uid], "to both")
    for browser in (tab1, tab2, other):
        assert (await browser.receive()).data == "to both"
        await browser.nothing(0.1)
    await stranger.nothing(0.1)


async def test_int_uids_and_groups_come_back_as_str(browsers: Any, push: PushClient) -> None:
    """uids and groups given as int are the same as their str form."""
    browser = await browsers()
    number = int(time.time() * 1000)
    await call(push.bind_uid, browser.client_id, number)
    await call(push.join_group, browser.client_id, number)
    assert await call(push.get_uid_by_client_id, browser.client_id) == str(number)
    assert await call(push.get_client_id_by_uid, str(number)) == [browser.client_id]
    assert await call(push.get_client_id_list_by_group, str(number)) == [browser.client_id]
    await call(push.send_to_group, str(number), "hi")
    assert (await browser.receive()).data == "hi"


async def test_send_to_group_with_several_groups_and_exclusions(browsers: Any, push: PushClient, name: Any) -> None:
    """send_to_group reaches members of any listed group once each, minus the excluded."""
    a, b, c, outsider = [await browsers() for _ in range(4)]
    g1, g2 = name("g1"), name("g2")
    for browser in (a, b):
        await call(push.join_group, browser.client_id, g1)
    for browser in (b, c):
        await call(push.join_group, browser.client_id, g2)
    await call(push.send_to_group, g1, "g1")
    assert (await a.receive()).data == "g1"
    assert (await b.receive()).data == "g1"
    await call(push.send_to_group, [g1, g2], "both", exclude_client_ids=[a.client_id])
    assert (await b.receive()).data == "both"
    assert (await c.receive()).data == "both"
    for browser in (a, b, c, outsider):
        await browser.nothing(0.15)


async def test_offline_targets_are_not_errors(push: PushClient, name: Any) -> None:
    """Every operation on an offline client does nothing and raises nothing; queries answer empty."""
    ghost = "A" * 22
    await call(push.send_to_client, ghost, "x")
    await call(push.send_to_uid, name("nobody"), "x")
    await call(push.send_to_group, name("empty"), "x")
    await call(push.bind_uid, ghost, "u")
    await call(push.unbind_uid, ghost, "u")
    await call(push.join_group, ghost, name("g"))
    await call(push.leave_group, ghost, name("g"))
    await call(push.set_session, ghost, {"a": 1})
    await call(push.update_session, ghost, {"a": 1})
    await call(push.close_client, ghost, "bye")
    assert await call(push.get_session, ghost) is None
    assert await call(push.is_online, ghost) is False
    assert await call(push.get_uid_by_client_id, ghost) is None
    assert await call(push.get_client_id_by_uid, "u") == []
    assert await call(push.get_client_id_list_by_group, name("g")) == []
    assert await call(push.get_client_count_by_group, name("g")) == 0


# -- uids, groups, sessions ------------------------------------------------------------------


async def test_a_client_has_at_most_one_uid(browsers: Any, push: PushClient, name: Any) -> None:
    """Binding a new uid replaces the old one; unbinding a uid the client lacks does nothing."""
    browser = await browsers()
    first, second = name("first"), name("second")
    await call(push.bind_uid, browser.client_id, first)
    await call(push.bind_uid, browser.client_id, second)
    assert await call(push.get_uid_by_client_id, browser.client_id) == second
    assert await call(push.is_uid_online, first) is False
    assert await call(push.get_client_id_by_uid, first) == []
    await call(push.unbind_uid, browser.client_id, first)
    assert await call(push.get_uid_by_client_id, browser.client_id) == second
    await call(push.unbind_uid, browser.client_id, second)
    assert await call(push.get_uid_by_client_id, browser.client_id) is None
    assert await call(push.is_uid_online, second) is False


async def test_group_membership_and_queries(browsers: Any, push: PushClient, name: Any) -> None:
    """join/leave/ungroup change membership, and the group queries count clients and distinct uids."""
    a, b, c = [await browsers() for _ in range(3)]
    group, uid = name("room"), name("ann")
    await call(push.bind_uid, a.client_id, uid)
    await call(push.bind_uid, b.client_id, uid)
    for browser in (a, b, c):
        await call(push.join_group, browser.client_id, group)
    assert sorted(await call(push.get_client_id_list_by_group, group)) == sorted(
        [a.client_id, b.client_id, c.client_id]
    )
    assert await call(push.get_client_count_by_group, group) == 3
    assert await call(push.get_uid_list_by_group, group) == [uid]
    assert await call(push.get_uid_count_by_group, group) == 1
    assert group in await call(push.get_all_group_id_list)
    await call(push.leave_group, c.client_id, group)
    assert await call(push.get_client_count_by_group, group) == 2
    await call(push.ungroup, group)
    assert await call(push.get_client_count_by_group, group) == 0
    assert group not in await call(push.get_all_group_id_list)
    assert await call(push.is_online, a.client_id) is True
    await call(push.send_to_group, group, "after ungroup")
    for browser in (a, b, c):
        await browser.nothing(0.1)


async def test_sessions_replace_merge_and_read(browsers: Any, push: PushClient, name: Any) -> None:
    """set_session replaces, update_session merges, and sessions are readable per client and per group."""
    a, b = await browsers(), await browsers()
    group = name("room")
    assert await call(push.get_session, a.client_id) == {}
    await call(push.set_session, a.client_id, {"name": "ann", "room": 1})
    await call(push.update_session, a.client_id, {"room": 2, "tags": ["x"]})
    assert await call(push.get_session, a.client_id) == {"name": "ann", "room": 2, "tags": ["x"]}
    await call(push.set_session, a.client_id, {"only": True})
    assert await call(push.get_session, a.client_id) == {"only": True}
    await call(push.join_group, a.client_id, group)
    await call(push.join_group, b.client_id, group)
    assert await call(push.get_client_sessions_by_group, group) == {a.client_id: {"only": True}, b.client_id: {}}


async def test_cluster_wide_lists(fresh_server: Any, browsers: Any) -> None:
    """The get_all_* queries list every live client, bound uid and non-empty group."""
    push = fresh_server.client()
    a, b = await browsers(fresh_server), await browsers(fresh_server)
    await call(push.bind_uid, a.client_id, "u1")
    await call(push.join_group, b.client_id, "g1")
    assert sorted(await call(push.get_all_client_id_list)) == sorted([a.client_id, b.client_id])
    assert await call(push.get_all_client_count) == 2
    assert await call(push.get_all_uid_list) == ["u1"]
    assert await call(push.get_all_uid_count) == 1
    assert await call(push.get_all_group_id_list) == ["g1"]
    await a.close()
    await until(lambda: push.get_all_client_count() == 1, what="the closed client to leave the count")
    assert await call(push.get_all_uid_list) == []


# -- departures ----------------------------------------------------------------------------


async def test_leave_signals_go_to_each_group_once(browsers: Any, push: PushClient, name: Any) -> None:
    """A departing client's groups each get one leave signal; the others and outsiders get none."""
    leaver, mate, outsider = [await browsers() for _ in range(3)]
    g1, g2, uid = name("g1"), name("g2"), name("u")
    await call(push.bind_uid, leaver.client_id, uid)
    for group in (g1, g2):
        await call(push.join_group, leaver.client_id, group)
        await call(push.join_group, mate.client_id, group)
    await leaver.close()
    signals = [await mate.json(), await mate.json()]
    assert sorted(signals, key=lambda s: s["group"]) == [
        {"type": "leave", "group": g1, "uid": uid},
        {"type": "leave", "group": g2, "uid": uid},
    ]
    await mate.nothing()
    await outsider.nothing(0.1)
    assert await call(push.is_online, leaver.client_id) is False
    assert await call(push.get_client_id_list_by_group, g1) == [mate.client_id]
    assert await call(push.is_uid_online, uid) is False


async def test_leave_signal_of_an_unbound_client_has_null_uid(browsers: Any, push: PushClient, name: Any) -> None:
    """A client that never bound a uid leaves with "uid": null, and its id is never shown."""
    leaver, mate = await browsers(), await browsers()
    group = name("g")
    await call(push.join_group, leaver.client_id, group)
    await call(push.join_group, mate.client_id, group)
    await leaver.close()
    message = await mate.receive()
    assert leaver.client_id not in message.data
    assert message.data == f'{{"type":"leave","group":"{group}","uid":null}}'


async def test_close_client_sends_the_message_then_closes(browsers: Any, push: PushClient, name: Any) -> None:
    """close_client delivers its message, closes the socket, and the groups hear the leave."""
    target, mate = await browsers(), await browsers()
    group = name("g")
    await call(push.join_group, target.client_id, group)
    await call(push.join_group, mate.client_id, group)
    await call(push.close_client, target.client_id, {"type": "kicked"})
    assert await target.json() == {"type": "kicked"}
    closing = await target.ws.receive(timeout=TIMEOUT)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert await mate.json() == {"type": "leave", "group": group, "uid": None}
    assert await call(push.is_online, target.client_id) is False


# -- batch ---------------------------------------------------------------------------------


async def test_batch_runs_many_operations_in_one_request(browsers: Any, push: PushClient, name: Any) -> None:
    """A batch applies its calls in order and hands back each result."""
    browser = await browsers()
    group = name("g")
    async with batch_of(push) as batch:
        batch.bind_uid(browser.client_id, name("u"))
        batch.join_group(browser.client_id, group)
        count = batch.get_client_count_by_group(group)
        online = batch.is_online(browser.client_id)
        batch.send_to_group(group, "from a batch")
    assert count.value == 1
    assert online.value is True
    assert (await browser.receive()).data == "from a batch"


async def test_consecutive_pushes_in_a_batch_arrive_in_order_to_the_right_members(
    browsers: Any, push: PushClient, name: Any
) -> None:
    """Runs of pushes in a batch (merged by the server) reach exactly whom each push names, in order."""
    early, late, other = [await browsers() for _ in range(3)]
    group = name("g")
    async with batch_of(push) as batch:
        batch.join_group(early.client_id, group)
        batch.send_to_group(group, "one")
        batch.send_to_group(group, b"two")
        batch.send_to_group(group, {"three": 3})
        batch.join_group(late.client_id, group)
        batch.send_to_group(group, "four")
        batch.send_to_group(group, "five", exclude_client_ids=[early.client_id])
        batch.send_to_group(group, "six", exclude_client_ids=[early.client_id])
        batch.send_to_client(other.client_id, "seven")
        batch.send_to_client(other.client_id, "eight")
        batch.send_to_client(early.client_id, "nine")
        batch.send_to_group(group, "ten")
        batch.send_to_group(group, "eleven")
    assert [(await early.receive()).data for _ in range(3)] == ["one", b"two", '{"three":3}']
    assert [(await early.receive()).data for _ in range(4)] == ["four", "nine", "ten", "eleven"]
    assert [(await late.receive()).data for _ in range(5)] == ["four", "five", "six", "ten", "eleven"]
    assert [(await other.receive()).data for _ in range(2)] == ["seven", "eight"]
    for browser in (early, late, other):
        await browser.nothing()


async def test_a_malformed_batch_changes_nothing(browsers: Any, push: PushClient, name: Any) -> None:
    """One bad operation refuses the whole batch: the good ones before it are not applied."""
    from push_client import PushRequestError

    browser = await browsers()
    group = name("g")
    batch = push.batch()
    batch.join_group(browser.client_id, group)
    batch.send_to_group(group, "must not arrive")
    batch._op("bind_uid", (browser.client_id, {"not": "an id"}))
    with pytest.raises(PushRequestError) as refused:
        await call(batch.send)
    assert refused.value.status == 400
    assert "operations[2].uid" in refused.value.message
    assert await call(push.get_client_count_by_group, group) == 0
    await browser.nothing()


# -- cluster view and idempotency (raw signed calls: push_client learns them separately) ------


def signed_call(server: Any, path: str, payload: Any) -> Any:
    """POST ``payload`` signed to ``path`` on ``server``; the decoded answer (asserting 200)."""
    import json

    import requests

    import push_protocol

    body = json.dumps(payload).encode()
    headers = push_protocol.sign_request(server.secret, "POST", path, body)
    response = requests.post(server.api_url + path, data=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


async def test_get_nodes_lists_the_live_node_with_its_connections(fresh_server: Any, browsers: Any) -> None:
    """get_nodes answers the cluster's live nodes: here one, holding the connections opened on it."""
    import push_protocol

    for _ in range(2):
        await browsers(fresh_server)
    answer = await call(signed_call, fresh_server, push_protocol.operation_path("get_nodes"), {})
    (node,) = answer["result"]
    assert node["connections"] == 2
    assert isinstance(node["node"], str) and node["node"]
    assert time.time() - 600 < node["started"] <= time.time()
    batch = await call(signed_call, fresh_server, push_protocol.BATCH_PATH, {"operations": [["get_nodes"]]})
    assert batch["results"][0][0]["node"] == node["node"]


async def test_an_idempotency_key_applies_a_push_once(server: Any, browsers: Any, name: Any) -> None:
    """A push or batch repeated with the same idempotency_key is answered as a success and delivered once."""
    import push_protocol

    browser = await browsers()
    key = name("key")
    args = {"client_id": browser.client_id, "message": {"text": "once"}, "idempotency_key": key}
    for _ in range(2):
        answer = await call(signed_call, server, push_protocol.operation_path("send_to_client"), args)
        assert answer == {"result": None}
    assert (await browser.receive()).data == "once"
    group = name("g")
    batch = {
        "operations": [["join_group", browser.client_id, group], ["send_to_group", group, {"text": "batch once"}]],
        "idempotency_key": name("batch-key"),
    }
    for _ in range(2):
        answer = await call(signed_call, server, push_protocol.BATCH_PATH, batch)
        assert answer == {"results": [None, None], "errors": []}
    assert (await browser.receive()).data == "batch once"
    # The same key on a compact push in another batch is the same key: not applied again.
    compact = {"operations": [["send_to_client", browser.client_id, {"text": "once"}, key]]}
    await call(signed_call, server, push_protocol.BATCH_PATH, compact)
    await browser.nothing()


async def test_an_idempotency_key_is_claimed_only_by_a_valid_request(server: Any, browsers: Any, name: Any) -> None:
    """A refused request does not use up its key: the corrected retry with the same key is applied."""
    import json

    import requests

    import push_protocol

    browser = await browsers()
    key = name("key")
    path = push_protocol.operation_path("send_to_client")
    bad = json.dumps({"client_id": browser.client_id, "message": {"text": 1}, "idempotency_key": key}).encode()
    headers = push_protocol.sign_request(server.secret, "POST", path, bad)
    refused = await call(requests.post, server.api_url + path, data=bad, headers=headers, timeout=TIMEOUT)
    assert refused.status_code == 400
    args = {"client_id": browser.client_id, "message": {"text": "applied"}, "idempotency_key": key}
    await call(signed_call, server, path, args)
    assert (await browser.receive()).data == "applied"


# -- idempotency keys and nodes through both clients --------------------------------------


async def test_a_repeated_key_pushes_once(browsers: Any, push: Any, name: Any) -> None:
    """A push sent twice with one idempotency key, alone or as a batch, is delivered once."""
    browser = await browsers()
    key = name("key")
    await call(push.send_to_client, browser.client_id, "once", idempotency_key=key)
    await call(push.send_to_client, browser.client_id, "once", idempotency_key=key)
    batch_key = name("batch-key")
    for _ in range(2):
        async with batch_of(push, idempotency_key=batch_key) as batch:
            batch.send_to_client(browser.client_id, "batched once")
    assert (await browser.receive()).data == "once"
    assert (await browser.receive()).data == "batched once"
    await browser.nothing()


async def test_get_nodes_lists_the_live_node(push: Any) -> None:
    """get_nodes() lists this server's node with its connection count and start time."""
    nodes = await call(push.get_nodes)
    assert nodes and all(set(node) == {"node", "connections", "started"} for node in nodes)
    assert all(isinstance(node["connections"], int) and node["started"] <= time.time() for node in nodes)
