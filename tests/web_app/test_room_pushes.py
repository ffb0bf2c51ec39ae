"""The pushes of typing, reads, edits, deletes and bans, through a real push server, to sockets like the page's.

Absence is proven as in test_e2e: after the frame someone must not get, a
frame they must get follows; the first one of that kind they receive has to
be the second (a connection's frames arrive in order).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from .live import Live, receive_until

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session for the test's WebSockets."""
    async with aiohttp.ClientSession() as http:
        yield http


async def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(function, *args, **kwargs)


def of_type(*types: str) -> Any:
    return lambda frame: frame.get("type") in types


async def test_typing_reaches_others_never_the_sender(live: Live, session: aiohttp.ClientSession) -> None:
    """/typing goes to the room minus all the sender's tabs; with to_uid only to that user."""
    alice, bob, carol = live.user(), live.user(), live.user()
    room_id = await call(alice.create_room, "typing")
    alice_ws, _ = await alice.connect(session, live.push.ws_url, room_id)
    alice_tab2, _ = await alice.connect(session, live.push.ws_url, room_id)
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)
    carol_ws, _ = await carol.connect(session, live.push.ws_url, room_id)

    assert (await call(alice.post, "/typing", {"room_id": room_id})).status_code == 200
    frame = await receive_until(bob_ws, of_type("typing"))
    assert frame == {"type": "typing", "room_id": room_id, "uid": alice.uid, "uname": alice.name}
    await receive_until(carol_ws, of_type("typing"))
    # Privately to carol: bob hears nothing; then bob types and alice's tabs hear bob first.
    assert (await call(alice.post, "/typing", {"room_id": room_id, "to_uid": carol.uid})).status_code == 200
    assert (await receive_until(carol_ws, of_type("typing")))["to_uid"] == carol.uid
    assert (await call(carol.post, "/typing", {"room_id": room_id})).status_code == 200
    assert (await receive_until(bob_ws, of_type("typing")))["uid"] == carol.uid
    for ws in (alice_ws, alice_tab2):
        assert (await receive_until(ws, of_type("typing")))["uid"] == carol.uid


async def test_read_receipts_go_to_the_private_author_and_my_tabs(live: Live, session: aiohttp.ClientSession) -> None:
    """Reading past alice's private message tells alice (with that message's id) and the reader's own tabs."""
    alice, bob = live.user(), live.user()
    room_id = await call(alice.create_room, "reads")
    alice_ws, _ = await alice.connect(session, live.push.ws_url, room_id)
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)
    private = (await call(alice.say, room_id, "psst", to_uid=bob.uid)).json()["message"]["id"]
    public = (await call(alice.say, room_id, "hello all")).json()["message"]["id"]

    answer = await call(bob.post, f"/rooms/{room_id}/read", {"message_id": public})
    assert answer.json() == {"room_id": room_id, "message_id": public, "moved": True}
    assert await receive_until(alice_ws, of_type("read")) == {
        "type": "read",
        "room_id": room_id,
        "uid": bob.uid,
        "message_id": private,
    }
    assert (await receive_until(bob_ws, of_type("read")))["message_id"] == public
    # History tells alice too, after a reload.
    [entry] = [m for m in await call(alice.history, room_id) if m["id"] == private]
    assert entry["seen"] is True
    # Reading again (no move) pushes nothing: alice's next read frame is for the next private message.
    await call(bob.post, f"/rooms/{room_id}/read", {"message_id": public})
    second = (await call(alice.say, room_id, "again", to_uid=bob.uid)).json()["message"]["id"]
    await call(bob.post, f"/rooms/{room_id}/read", {"message_id": second})
    assert (await receive_until(alice_ws, of_type("read")))["message_id"] == second


async def test_one_read_tells_each_private_author_their_latest(live: Live, session: aiohttp.ClientSession) -> None:
    """A read covering two authors' private messages tells each their own latest; a private message to another, no one."""
    alice, bob, carol, dave = live.user(), live.user(), live.user(), live.user()
    room_id = await call(alice.create_room, "two-authors")
    alice_ws, _ = await alice.connect(session, live.push.ws_url, room_id)
    carol_ws, _ = await carol.connect(session, live.push.ws_url, room_id)
    said = {}
    for who, text, to in ((alice, "a1", bob), (carol, "c1", bob), (alice, "a2", bob), (carol, "c-dave", dave)):
        said[text] = (await call(who.say, room_id, text, to_uid=to.uid)).json()["message"]["id"]
    last = (await call(alice.say, room_id, "public")).json()["message"]["id"]

    assert (await call(bob.post, f"/rooms/{room_id}/read", {"message_id": last})).json()["moved"] is True
    assert (await receive_until(alice_ws, of_type("read")))["message_id"] == said["a2"]
    assert (await receive_until(carol_ws, of_type("read")))["message_id"] == said["c1"]
    # Dave reads carol's message to him: carol's next read frame is that one, not another of bob's.
    assert (await call(dave.post, f"/rooms/{room_id}/read", {"message_id": said["c-dave"]})).json()["moved"] is True
    assert await receive_until(carol_ws, of_type("read")) == {
        "type": "read",
        "room_id": room_id,
        "uid": dave.uid,
        "message_id": said["c-dave"],
    }


async def test_edits_and_deletes_are_pushed_to_those_who_saw_them(live: Live, session: aiohttp.ClientSession) -> None:
    """A public edit reaches the room; a private one only its two parties; deletes likewise, with no content."""
    alice, bob, carol = live.user(), live.user(), live.user()
    room_id = await call(alice.create_room, "edits")
    sockets = {}
    for user in (alice, bob, carol):
        sockets[user.name], _ = await user.connect(session, live.push.ws_url, room_id)
    public = (await call(alice.say, room_id, "helo")).json()["message"]["id"]
    private = (await call(alice.say, room_id, "secret", to_uid=bob.uid)).json()["message"]["id"]

    def patch(message_id: int, content: str) -> Any:
        return alice.http.patch(
            f"{alice.base_url}/messages/{message_id}", json={"content": content}, headers={"X-CSRFToken": alice.csrf}
        )

    answer = await call(patch, private, "secret!")
    assert answer.status_code == 200
    edit = answer.json()["change"]
    assert set(edit) == {"type", "id", "room_id", "content", "edited_at", "rev"}
    assert await receive_until(sockets[bob.name], of_type("edit")) == edit
    assert (await call(patch, public, "hello")).status_code == 200
    # Carol's first edit frame is the public one: the private edit never reached her.
    assert (await receive_until(sockets[carol.name], of_type("edit")))["id"] == public

    deleted = await call(alice.http.delete, f"{alice.base_url}/messages/{public}", headers={"X-CSRFToken": alice.csrf})
    assert deleted.json()["change"] == {"type": "delete", "id": public, "room_id": room_id, "rev": 3}
    for user in (alice, bob, carol):
        assert (await receive_until(sockets[user.name], of_type("delete")))["id"] == public
    history = await call(carol.history, room_id)
    assert history == [{"id": public, "room_id": room_id, "deleted": True, "type": "all", "seq": 1, "rev": 3}]


async def test_ban_removes_connections_and_tells_the_member(live: Live, session: aiohttp.ClientSession) -> None:
    """A ban pushes "banned" to every tab of the member, takes them out of the room's group and member list."""
    owner, bob = live.user(), live.user()
    room_id = await call(owner.create_room, "banning")
    owner_ws, _ = await owner.connect(session, live.push.ws_url, room_id)
    bob_ws, _ = await bob.connect(session, live.push.ws_url, room_id)
    bob_lobby = await session.ws_connect(live.push.ws_url)
    lobby_init = await bob_lobby.receive_json(timeout=5)
    assert (await call(bob.post, "/lobby/bind", {"client_id": lobby_init["client_id"]})).status_code == 200

    answer = await call(owner.post, f"/rooms/{room_id}/ban", {"uid": bob.uid, "minutes": 30})
    assert answer.status_code == 200 and answer.json()["pushed"] is True
    banned = await receive_until(bob_ws, of_type("banned"))
    assert banned == {"type": "banned", "room_id": room_id, "uid": bob.uid, "until": answer.json()["until"]}
    await receive_until(bob_lobby, of_type("banned"))
    # The owner hears it too (its member menu follows), then the new member list.
    assert await receive_until(owner_ws, of_type("banned")) == banned
    flush = await receive_until(owner_ws, of_type("flush"))
    assert flush["users_list"] == {owner.uid: owner.name}
    # Bob hears nothing more of the room (nor does his lobby): the next frame either gets is the unban.
    assert (await call(owner.say, room_id, "bob is gone")).status_code == 201
    assert (await call(owner.post, f"/rooms/{room_id}/unban", {"uid": bob.uid})).status_code == 200
    unbanned = {"type": "unbanned", "room_id": room_id, "uid": bob.uid}
    for ws in (bob_ws, bob_lobby):
        assert await receive_until(ws, of_type("all", "to", "unbanned")) == unbanned
    assert await receive_until(owner_ws, of_type("unbanned")) == unbanned
    await bob_lobby.close()


async def test_the_owners_bind_answer_carries_the_rooms_restrictions(
    live: Live, session: aiohttp.ClientSession
) -> None:
    """/bind tells the room's owner (only) who is muted or banned there and until when; mutes are pushed to both."""
    owner, bob, carol = live.user(), live.user(), live.user()
    room_id = await call(owner.create_room, "restricted")
    owner_ws, owner_client = await owner.connect(session, live.push.ws_url, room_id)
    _carol_ws, carol_client = await carol.connect(session, live.push.ws_url, room_id)
    assert (await call(owner.bind, owner_client, room_id)).json()["restrictions"] == []

    muted = (await call(owner.post, f"/rooms/{room_id}/mute", {"uid": bob.uid})).json()
    banned = (await call(owner.post, f"/rooms/{room_id}/ban", {"uid": carol.uid, "minutes": 5})).json()
    assert await receive_until(owner_ws, of_type("muted")) == {
        "type": "muted",
        "room_id": room_id,
        "uid": bob.uid,
        "until": None,
    }
    assert (await call(owner.bind, owner_client, room_id)).json()["restrictions"] == sorted(
        [
            {"uid": bob.uid, "kind": "muted", "until": None},
            {"uid": carol.uid, "kind": "banned", "until": banned["until"]},
        ],
        key=lambda row: int(row["uid"]),
    )
    assert muted["until"] is None
    # Lifted, it is gone from the answer; a member's own answer never carries any.
    assert (await call(owner.post, f"/rooms/{room_id}/unmute", {"uid": bob.uid})).status_code == 200
    assert await receive_until(owner_ws, of_type("unmuted")) == {"type": "unmuted", "room_id": room_id, "uid": bob.uid}
    assert [row["uid"] for row in (await call(owner.bind, owner_client, room_id)).json()["restrictions"]] == [carol.uid]
    assert (await call(owner.post, f"/rooms/{room_id}/unban", {"uid": carol.uid})).status_code == 200
    assert "restrictions" not in (await call(carol.bind, carol_client, room_id)).json()


async def test_lobby_hears_new_public_messages_of_listed_rooms(live: Live, session: aiohttp.ClientSession) -> None:
    """A lobby connection gets every listed room's public messages, is nobody in the room, and bad binds fail."""
    alice, bob = live.user(), live.user()
    room_id = await call(alice.create_room, "lobbied")
    lobby = await session.ws_connect(live.push.ws_url)
    client_id = (await lobby.receive_json(timeout=5))["client_id"]
    assert (await call(bob.post, "/lobby/bind", {"client_id": 5})).status_code == 400
    assert (await call(bob.post, "/lobby/bind", {"client_id": "nobody-here"})).status_code == 409
    answer = await call(bob.post, "/lobby/bind", {"client_id": client_id})
    assert answer.json() == {"ok": True, "rooms": [room_id]}
    assert (await call(alice.post, "/lobby/bind", {"client_id": client_id})).status_code == 403
    said = (await call(alice.say, room_id, "anyone?")).json()["message"]
    assert await receive_until(lobby, of_type("all")) == said
    assert [room["online"] for room in (await call(bob.get, "/rooms")).json()["rooms"]] == [0]
    await lobby.close()
