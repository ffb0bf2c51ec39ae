"""The cluster's message format (backends/redis/format.py): round trips with no Redis, and the Lua side against a real one."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
import redis.asyncio as aioredis

from push_server.backends.redis import format, lua
from push_server.backends.redis.transport import Transport

from ..servers import TIMEOUT, RedisServer

#: One message of every kind, as a node would publish or receive it: (kind, header, payload).
EXAMPLES: list[tuple[str, Any, bytes]] = [
    (format.CLIENTS, [["n1.a", "n1.b"]], b"\x81\x02hi"),
    (format.UIDS, [["alice", "bob"]], b"\x81\x00"),
    (format.GROUPS, [["room:1", "room:2"], ["n1.a"]], b"\x82\x03\x00\xff\n"),
    (format.ALL, [[]], b"\x81\x05hello"),
    (format.CLOSE, ["n1.a"], b""),
    (format.LEAVE, ["room:1", False, "n1.a"], b""),
    (format.BIND, ["n1.a", "ünïcode uid"], b""),
    (format.UNBIND, ["n1.a"], b""),
    (format.JOIN, ["n1.a", "room\nwith newline"], b""),
    (format.PART, ["n1.a", "room:1"], b""),
    (format.UNGROUP, ["room:1"], b""),
    (format.SESSION, ["n1.a"], b'{"name":"Ann","n":[1,2]}'),
    (format.MERGE, ["n1.a"], b'{"k":null}'),
    (format.NOT_WHOLE, [], b""),
    (format.MAYBE_WHOLE, [], b""),
    (format.HOLDER, ["n1"], b""),
    (format.RETIRED, ["n1"], b""),
    (format.REFUSED, ["n1"], b""),
]


def test_every_kind_is_documented_once_and_has_an_example() -> None:
    """The kinds are single distinct letters, each in the module's table, each covered here."""
    assert all(len(kind) == 1 for kind in format.KINDS)
    assert {kind for kind, _, _ in EXAMPLES} == format.KINDS
    doc = format.__doc__ or ""
    for kind in format.KINDS:
        assert f"``{kind}``  " in doc, f"kind {kind!r} missing from format.py's table"


@pytest.mark.parametrize(("kind", "head", "payload"), EXAMPLES, ids=[kind for kind, _, _ in EXAMPLES])
def test_encode_decode_round_trip(kind: str, head: Any, payload: bytes) -> None:
    """A message decodes to the kind, header and payload it was encoded from, payload bytes untouched."""
    message = format.encode(kind, head, payload)
    assert message.count(b"\n", 0, message.index(b"\n") + 1) == 1  # the header holds no raw newline
    assert format.decode(message) == (kind, head, payload)


def test_dispatcher_hands_each_kind_to_its_handler() -> None:
    """The dispatcher calls the handler of the message's kind with the decoded header and the raw payload."""
    seen: list[tuple[str, Any, bytes]] = []
    handlers = {kind: (lambda k: lambda h, p: seen.append((k, h, p)))(kind) for kind in format.KINDS}
    dispatch = format.dispatcher(handlers)
    for kind, head, payload in EXAMPLES:
        dispatch(format.encode(kind, head, payload))
    assert seen == EXAMPLES


def test_a_bad_message_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A message with no handler or no header end is logged and dropped; the next one is still handled."""
    got: list[Any] = []
    dispatch = format.dispatcher({format.CLIENTS: lambda h, p: got.append(h)})
    with caplog.at_level(logging.ERROR):
        dispatch(b"u[[]]\nframe")  # a kind this node has no handler for
        dispatch(b"c[[]]")  # no newline: no header end
        dispatch(format.encode(format.CLIENTS, [["n.a"]]))
    assert got == [[["n.a"]]]
    assert caplog.text.count("bad cluster message") == 2


def test_unknown_kinds_are_refused() -> None:
    """decode refuses a kind the table does not list, and a dispatcher cannot be built for one."""
    with pytest.raises(ValueError, match="unknown kind"):
        format.decode(b"Z[]\n")
    with pytest.raises(ValueError, match="unknown kinds"):
        format.dispatcher({"Z": lambda h, p: None})


def test_session_encodings_round_trip() -> None:
    """A session survives the script's flat [key, JSON value, ...] encoding, nested values and non-ASCII included."""
    session = {"name": "Zoë", "n": 3, "tags": ["a", {"b": None}], "ok": True}
    flat = format.session_args(session)
    assert flat[0::2] == list(session)
    assert format.session_from_pairs([key.encode() for key in flat]) == session


def test_node_of() -> None:
    """A client id names its node before the first dot; anything else is not one of ours."""
    assert format.node_of("abc.def") == "abc"
    assert format.node_of("abc.def.ghi") == "abc"
    for foreign in ("abc", ".def", "abc.", ""):
        assert format.node_of(foreign) is None


def test_the_script_publishes_only_documented_kinds() -> None:
    """Every message the Lua script builds starts with a kind format.py documents (the two sides cannot drift)."""
    built = set(re.findall(r"'([A-Za-z])(?:' \.\.|\[\])", lua.SCRIPT))
    built |= {kind for pair in re.findall(r"\(replace and '(\w)' or '(\w)'\)", lua.SCRIPT) for kind in pair}
    assert built, "no message found in the script: this test's patterns need updating"
    assert built <= format.KINDS, f"the script builds undocumented kinds: {sorted(built - format.KINDS)}"
    assert {"L", "b", "B", "j", "l", "x", "s", "m", "u", "g", "W", "w", "H", "R"} <= built


async def test_messages_built_by_the_script_decode(redis_server: RedisServer, prefix: str) -> None:
    """The mirror updates and leave signals the Lua script publishes decode to the documented headers."""
    transport = Transport(redis_server.url, prefix)
    listener = aioredis.Redis.from_url(redis_server.url)
    pubsub = listener.pubsub()
    try:
        await pubsub.subscribe(format.node_channel(prefix, "n1"), format.all_channel(prefix))
        cid = "n1.client"
        await transport.script("register", cid, "")
        await transport.script("bind_uid", cid, "alice")
        await transport.script("join_group", cid, "room")
        await transport.script("set_session", cid, '{"a":1}', "a", "1")
        await transport.script("unregister", "n1.other", "")  # not a client: publishes nothing
        await transport.script("register", "n2.peer", "")
        await transport.script("join_group", "n2.peer", "room")
        await transport.script("unregister", "n2.peer", "n2")  # n1 holds members of room: a leave signal
        expected = [
            (format.HOLDER, ["n1"], b""),
            (format.BIND, [cid, "alice"], b""),
            (format.JOIN, [cid, "room"], b""),
            (format.SESSION, [cid], b'{"a":1}'),
            (format.HOLDER, ["n2"], b""),
            (format.LEAVE, ["room", False, "n2.peer"], b""),
        ]
        got = []
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while len(got) < len(expected) and asyncio.get_running_loop().time() < deadline:
            # None for a subscription's confirmation (and on a time-out): read on.
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=TIMEOUT / 10)
            if message is not None:
                got.append(format.decode(message["data"]))
        assert got == expected
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
        await transport.close()


async def test_transport_keys_live_under_the_prefix() -> None:
    """Every key and channel is under the configured prefix, so clusters sharing one Redis never meet."""
    transport = Transport("redis://127.0.0.1:1/0", "app1:")
    assert transport.key("g:", "room") == "app1:g:room"
    assert format.node_channel("app1:", "n1") == "app1:node:n1"
    assert format.all_channel("app1:") == "app1:all"
    await transport.close()
