"""End to end: the real push server, the real web app over HTTP, and WebSocket clients like the page.

Absence is proven without sleeping: after the message someone must not get,
a second message that they must get is sent; the first chat frame they then
receive has to be the second one (a connection's frames arrive in order).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from .live import TINY_PNG, HttpUser, Live, receive_until


def is_chat(frame: dict[str, Any]) -> bool:
    return frame.get("type") in ("all", "to")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session for the test's WebSockets."""
    async with aiohttp.ClientSession() as http:
        yield http


async def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking HTTP call off the event loop, so sockets keep being read meanwhile."""
    return await asyncio.to_thread(function, *args, **kwargs)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_two_users_chat(live: Live, session: aiohttp.ClientSession) -> None:
    """What one user says reaches the other's socket (and their own) as SPEC §5's message, and back."""
    alice, bob = live.user("alice"), live.user("bob")
    room_id = await call(alice.create_room, "general")
    alice_ws, _ = await alice.connect(session, live.push.ws_url, room_id)
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)

    answer = await call(alice.say, room_id, "hi bob")
    assert answer.status_code == 201, answer.text
    stored = answer.json()["message"]
    for ws in (alice_ws, bob_ws):
        frame = await receive_until(ws, is_chat)
        assert frame == stored
    assert set(stored) == {"type", "id", "room_id", "uid", "uname", "content", "created_at", "seq"}
    assert stored["seq"] == 1
    assert (stored["type"], stored["room_id"], stored["uid"], stored["uname"], stored["content"]) == (
        "all",
        room_id,
        alice.uid,
        "alice",
        "hi bob",
    )

    assert (await call(bob.say, room_id, "hi alice")).status_code == 201
    frame = await receive_until(alice_ws, is_chat)
    assert (frame["uname"], frame["content"]) == ("bob", "hi alice")
    assert await call(bob.history, room_id) == [stored, frame]


async def test_bind_pushes_member_list_and_leave_leads_to_flush(live: Live, session: aiohttp.ClientSession) -> None:
    """Binding pushes {uid: name} to the room; a closed socket's leave signal, then /flush, drops it from the list."""
    alice, bob = live.user(), live.user()
    room_id = await call(alice.create_room, "members")
    alice_ws, _ = await alice.connect(session, live.push.ws_url, room_id)
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)
    flush = await receive_until(alice_ws, lambda f: f.get("type") == "flush" and bob.uid in f["users_list"])
    assert flush["users_list"] == {alice.uid: alice.name, bob.uid: bob.name}

    await bob_ws.close()
    leave = await receive_until(alice_ws, lambda f: f.get("type") == "leave")
    assert leave == {"type": "leave", "group": f"room:{room_id}", "uid": bob.uid}
    answer = await call(alice.post, "/flush", {"room_id": room_id})
    assert answer.json() == {"users_list": {alice.uid: alice.name}}
    flush = await receive_until(alice_ws, lambda f: f.get("type") == "flush")
    assert flush["users_list"] == {alice.uid: alice.name}


async def test_private_stays_private(live: Live, session: aiohttp.ClientSession) -> None:
    """A private message reaches its recipient and its sender, and no one else in the room."""
    alice, bob, eve = live.user(), live.user(), live.user()
    room_id = await call(alice.create_room, "whispers")
    alice_ws, _ = await alice.connect(session, live.push.ws_url, room_id)
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)
    eve_ws, _ = await eve.connect(session, live.push.ws_url, room_id)

    answer = await call(alice.say, room_id, "only for bob", to_uid=bob.uid)
    assert answer.status_code == 201, answer.text
    for ws in (bob_ws, alice_ws):
        frame = await receive_until(ws, is_chat)
        assert (frame["type"], frame["content"], frame["to_uid"]) == ("to", "only for bob", bob.uid)

    assert (await call(alice.say, room_id, "for everyone")).status_code == 201
    frame = await receive_until(eve_ws, is_chat)
    assert frame["content"] == "for everyone"
    assert [m["content"] for m in await call(eve.history, room_id)] == ["for everyone"]


async def test_another_room_hears_nothing(live: Live, session: aiohttp.ClientSession) -> None:
    """A message said in one room is not pushed to a socket in another room."""
    alice, bob = live.user(), live.user()
    first = await call(alice.create_room, "first")
    second = await call(alice.create_room, "second")
    alice_ws, _ = await alice.connect(session, live.push.ws_url, first)
    bob_ws, _ = await bob.connect(session, live.push.ws_url, second)

    assert (await call(alice.say, first, "first room only")).status_code == 201
    assert (await call(alice.say, second, "second room")).status_code == 201
    frame = await receive_until(bob_ws, is_chat)
    assert (frame["room_id"], frame["content"]) == (second, "second room")
    assert (await receive_until(alice_ws, is_chat))["content"] == "first room only"


async def test_moving_a_connection_to_another_room_leaves_the_first(live: Live, session: aiohttp.ClientSession) -> None:
    """Binding a connection to a second room takes it out of the first room's group."""
    alice, bob = live.user(), live.user()
    first = await call(alice.create_room, "was-here")
    second = await call(alice.create_room, "now-here")
    bob_ws, client_id = await bob.connect(session, live.push.ws_url, first)
    assert (await call(bob.bind, client_id, second)).status_code == 200
    assert (await call(alice.say, first, "old room")).status_code == 201
    assert (await call(alice.say, second, "new room")).status_code == 201
    assert (await receive_until(bob_ws, is_chat))["content"] == "new room"


async def test_missed_messages_are_fetched_with_after(live: Live, session: aiohttp.ClientSession) -> None:
    """A user who was away fetches exactly what was said meanwhile with ``messages?after=<last id>``."""
    alice, bob = live.user(), live.user()
    room_id = await call(alice.create_room, "catch-up")
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)
    seen = (await call(alice.say, room_id, "before")).json()["message"]
    assert (await receive_until(bob_ws, is_chat))["id"] == seen["id"]
    await bob_ws.close()

    missed = [(await call(alice.say, room_id, f"while away {i}")).json()["message"] for i in range(3)]
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)
    assert await call(bob.history, room_id, after=seen["id"]) == missed
    assert await call(bob.history, room_id, after=seen["id"], limit=2) == missed[:2]


async def test_hijacking_another_users_client_id_is_refused(live: Live, session: aiohttp.ClientSession) -> None:
    """Binding a client_id bound to someone else is 403, an offline one 409; the victim's binding is untouched."""
    alice, mallory = live.user(), live.user()
    room_id = await call(alice.create_room, "safe")
    alice_ws, alice_client = await alice.connect(session, live.push.ws_url, room_id)

    answer = await call(mallory.bind, alice_client, room_id)
    assert answer.status_code == 403
    assert "error" in answer.json()
    with live.push.client() as push:
        assert push.get_uid_by_client_id(alice_client) == alice.uid

    offline = await call(mallory.bind, secrets.token_urlsafe(24), room_id)
    assert offline.status_code == 409
    assert "error" in offline.json()

    # Alice's socket still belongs to her: a private message to Mallory does not reach it.
    assert (await call(mallory.say, room_id, "to alice", to_uid=alice.uid)).status_code == 201
    assert (await receive_until(alice_ws, is_chat))["content"] == "to alice"


async def test_same_user_may_rebind_their_own_client(live: Live, session: aiohttp.ClientSession) -> None:
    """Binding one's own, already bound client again (a page re-binding) is fine."""
    alice = live.user()
    room_id = await call(alice.create_room, "again")
    _, client_id = await alice.connect(session, live.push.ws_url, room_id)
    assert (await call(alice.bind, client_id, room_id)).status_code == 200


async def test_lobby_shows_live_online_counts(live: Live, session: aiohttp.ClientSession) -> None:
    """The lobby counts distinct online users per room, as the push server sees them."""
    alice, bob = live.user(), live.user()
    busy = await call(alice.create_room, "busy")
    quiet = await call(alice.create_room, "quiet")
    # Keep the sockets referenced: a collected socket is a closed one.
    sockets = [
        await alice.connect(session, live.push.ws_url, busy),
        await alice.connect(session, live.push.ws_url, busy),  # a second tab is the same user
        await bob.connect(session, live.push.ws_url, busy),
    ]
    rooms = {room["id"]: room["online"] for room in (await call(alice.get, "/rooms")).json()["rooms"]}
    assert rooms == {busy: 2, quiet: 0}
    assert len(sockets) == 3


async def test_image_message_is_pushed_and_served(live: Live, session: aiohttp.ClientSession) -> None:
    """An uploaded image is pushed as an ``image`` message whose URL serves the picture to the room."""
    alice, bob = live.user(), live.user()
    room_id = await call(alice.create_room, "pictures")
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)
    answer = await call(alice.post, f"/rooms/{room_id}/images", files={"file": ("dot.png", TINY_PNG, "image/png")})
    assert answer.status_code == 201, answer.text
    frame = await receive_until(bob_ws, is_chat)
    assert frame == answer.json()["message"]
    assert frame["kind"] == "image" and frame["content"] == "dot.png"
    image = await call(bob.get, frame["url"])
    assert image.content == TINY_PNG and image.headers["Content-Type"] == "image/png"


async def test_push_server_down_means_stored_and_reported(live: Live, session: aiohttp.ClientSession) -> None:
    """With the push server stopped, /say stores the message and answers 502; /bind and /flush answer 503."""
    alice = live.user()
    room_id = await call(alice.create_room, "outage")
    live.push.stop()
    answer = await call(alice.say, room_id, "into the void")
    assert answer.status_code == 502
    assert answer.json()["stored"] is True
    assert [m["content"] for m in await call(alice.history, room_id)] == ["into the void"]
    assert (await call(alice.post, "/flush", {"room_id": room_id})).status_code == 503
    assert (await call(alice.bind, "some-client", room_id)).status_code == 503
    assert (await call(alice.get, "/rooms")).json()["rooms"] == [
        # Her own message is not unread for her (web_app/reads.py).
        {"id": room_id, "name": "outage", "online": None, "unread": 0}
    ]


def test_http_user_helper_reads_csrf_from_a_page(live: Live) -> None:
    """A fresh HTTP client finds the CSRF token in a page and can register with it."""
    user = HttpUser(live.url, "fresh")
    assert user.refresh_csrf()
    assert user.register().uid
