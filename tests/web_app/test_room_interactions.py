"""Typing, read positions, edits and deletes, bans and mutes: every bad input a JSON 4xx, nothing half-stored.

The app here pushes to a closed port, so whatever is stored is stored without
its push (502 "stored" for edits and deletes); tests/web_app/test_room_pushes.py
checks the pushes against a real push server.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select, update

from web_app.models import Message, ReadPosition, Restriction, Room, get_db, utcnow

from .conftest import Visitor
from .live import TINY_PNG

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


def _count(app: Flask, table: Any) -> int:
    with app.app_context():
        return int(get_db().scalar(select(func.count()).select_from(table)) or 0)


def _store(app: Flask, room_id: int, user_id: str, content: str, to_id: str | None = None) -> int:
    """A message stored directly (the /say path needs a push server; storing is what matters here)."""
    from web_app.models import store_message

    with app.app_context():
        message = Message(
            room_id=room_id,
            user_id=int(user_id),
            type="to" if to_id else "all",
            to_id=int(to_id) if to_id else None,
            kind="text",
            content=content,
        )
        store_message(get_db(), message)
        return message.id


@pytest.fixture
def owner(member: Visitor) -> Visitor:
    return member


@pytest.fixture
def other(new_visitor: Callable[[], Visitor]) -> Visitor:
    v = new_visitor()
    assert v.register().status_code == 200
    return v


@pytest.fixture
def room(owner: Visitor) -> int:
    return owner.create_room()


# -- typing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"room_id": "one"}, 400),
        ({"room_id": 0}, 400),
        ({"room_id": 999}, 404),
        ({"room_id": "ROOM", "to_uid": "bob"}, 400),
        ({"room_id": "ROOM", "to_uid": 999}, 404),
        ({"room_id": "ROOM", "to_uid": "ME"}, 400),
        ({"room_id": "ROOM"}, 503),
    ],
)
def test_typing_bad_input_and_push_down(owner: Visitor, room: int, body: dict[str, Any], status: int) -> None:
    """/typing refuses bad rooms and recipients with JSON 4xx, and says 503 when the push server is down."""
    body = {key: room if value == "ROOM" else owner.uid if value == "ME" else value for key, value in body.items()}
    answer = owner.post("/typing", body)
    assert answer.status_code == status
    assert "error" in answer.json


def test_typing_needs_login(visitor: Visitor, room: int) -> None:
    """Anonymous callers get 401."""
    assert visitor.post("/typing", {"room_id": room}).status_code == 401


# -- read positions -----------------------------------------------------------


def test_read_position_moves_forward_only(app: Flask, owner: Visitor, other: Visitor, room: int) -> None:
    """One row per user and room; a smaller message_id never moves it back."""
    ids = [_store(app, room, owner.uid or "", f"m{i}") for i in range(3)]
    assert other.post(f"/rooms/{room}/read", {"message_id": ids[1]}).json["moved"] is True
    assert other.post(f"/rooms/{room}/read", {"message_id": ids[0]}).json == {
        "room_id": room,
        "message_id": ids[1],
        "moved": False,
    }
    assert other.post(f"/rooms/{room}/read", {"message_id": ids[2]}).json["moved"] is True
    assert _count(app, ReadPosition) == 1
    with app.app_context():
        assert get_db().scalar(select(ReadPosition.message_id)) == ids[2]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"message_id": "x"}, 400),
        ({"message_id": -1}, 400),
        ({"message_id": 2**60}, 400),
        ({"message_id": 999}, 404),
        ({"message_id": "OTHER_ROOM"}, 404),
    ],
)
def test_read_bad_input(app: Flask, owner: Visitor, room: int, body: dict[str, Any], status: int) -> None:
    """Bad message ids, and messages of another room, are refused; no position is stored."""
    elsewhere = owner.create_room()
    foreign = _store(app, elsewhere, owner.uid or "", "elsewhere")
    if body.get("message_id") == "OTHER_ROOM":
        body = {"message_id": foreign}
    answer = owner.post(f"/rooms/{room}/read", body)
    assert answer.status_code == status and "error" in answer.json
    assert owner.post("/rooms/999/read", {"message_id": foreign}).status_code == 404
    assert _count(app, ReadPosition) == 0


def test_lobby_unread_counts(app: Flask, owner: Visitor, other: Visitor, new_visitor: Callable[[], Visitor]) -> None:
    """unread counts others' messages after your position that you may see: not yours, not others' private ones."""
    third = new_visitor()
    third.register()
    busy, quiet = owner.create_room(), owner.create_room()
    first = _store(app, busy, owner.uid or "", "one")
    _store(app, busy, owner.uid or "", "two")
    _store(app, busy, owner.uid or "", "for other", to_id=other.uid)
    _store(app, busy, owner.uid or "", "for third", to_id=third.uid)
    _store(app, busy, other.uid or "", "other's own")
    unread = {room["id"]: room["unread"] for room in other.get("/rooms").json["rooms"]}
    assert unread == {busy: 3, quiet: 0}
    other.post(f"/rooms/{busy}/read", {"message_id": first})
    assert {room["id"]: room["unread"] for room in other.get("/rooms").json["rooms"]}[busy] == 2
    assert {room["id"]: room["unread"] for room in third.get("/rooms").json["rooms"]}[busy] == 4


def test_unread_counts_use_each_rooms_own_position(app: Flask, owner: Visitor, other: Visitor) -> None:
    """With positions in several rooms, each room counts from its own (one query, no cross-talk)."""
    rooms = [owner.create_room() for _ in range(3)]
    stored = {room: [_store(app, room, owner.uid or "", f"m{i}") for i in range(4)] for room in rooms}
    other.post(f"/rooms/{rooms[0]}/read", {"message_id": stored[rooms[0]][0]})
    other.post(f"/rooms/{rooms[1]}/read", {"message_id": stored[rooms[1]][2]})
    unread = {room["id"]: room["unread"] for room in other.get("/rooms").json["rooms"]}
    assert unread == {rooms[0]: 3, rooms[1]: 1, rooms[2]: 4}


def test_unread_count_stops_at_the_cap(app: Flask, owner: Visitor, other: Visitor, room: int) -> None:
    """A room with more than UNREAD_MAX unread messages says UNREAD_MAX."""
    app.config["UNREAD_MAX"] = 5
    for i in range(7):
        _store(app, room, owner.uid or "", f"m{i}")
    assert other.get("/rooms").json["rooms"][0]["unread"] == 5


def test_lobby_queries_do_not_grow_with_rooms(app: Flask, owner: Visitor, other: Visitor) -> None:
    """GET /rooms costs the same number of SQL statements for 2 rooms as for 40 (unread is one query)."""
    engine = app.extensions["webchat_db"].kw["bind"]
    statements: list[str] = []

    def counted(*args: Any) -> None:
        statements.append(args[2])

    def lobby_statements() -> list[str]:
        statements.clear()
        event.listen(engine, "before_cursor_execute", counted)
        try:
            assert other.get("/rooms").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", counted)
        return list(statements)

    def new_room(n: int) -> int:
        # Stored directly: 40 POST /rooms from one address would pass RATE_LIMIT_ROOMS.
        with app.app_context():
            room = Room(name=f"lobby-{n}", created_by=int(owner.uid or 0))
            get_db().add(room)
            get_db().commit()
            return room.id

    for n in range(2):
        room_id = new_room(n)
        _store(app, room_id, owner.uid or "", "hello")
    few = lobby_statements()
    for n in range(2, 40):
        room_id = new_room(n)
        _store(app, room_id, owner.uid or "", "hello")
    many = lobby_statements()
    assert len(many) == len(few)
    # The user's row, the rooms, and the unread counts of all of them.
    assert len([s for s in many if "read_positions" in s]) == 1
    assert len(many) <= 3, many


# -- edits and deletes --------------------------------------------------------


def test_edit_is_stored_and_shown_in_history(app: Flask, owner: Visitor, room: int) -> None:
    """An edit is stored even when it cannot be pushed (502 stored); history carries the new text and edited_at."""
    message_id = _store(app, room, owner.uid or "", "typo")
    answer = owner.client.patch(
        f"/messages/{message_id}", json={"content": "fixed"}, headers={"X-CSRFToken": owner.csrf}
    )
    assert answer.status_code == 502 and answer.json["stored"] is True
    change = answer.json["change"]
    assert (change["type"], change["id"], change["content"], change["rev"]) == ("edit", message_id, "fixed", 1)
    [entry] = owner.get(f"/rooms/{room}/messages").json["messages"]
    assert entry["content"] == "fixed" and entry["edited_at"] == change["edited_at"] and entry["rev"] == 1


def _patch(v: Visitor, message_id: int, body: Any) -> Any:
    return v.client.patch(f"/messages/{message_id}", json=body, headers={"X-CSRFToken": v.csrf})


def _delete(v: Visitor, message_id: int) -> Any:
    return v.client.delete(f"/messages/{message_id}", headers={"X-CSRFToken": v.csrf})


@pytest.mark.parametrize(
    ("body", "status"),
    [({}, 400), ({"content": 5}, 400), ({"content": " "}, 400), ({"content": "x" * 4001}, 400), ([1], 400)],
)
def test_edit_bad_input(app: Flask, owner: Visitor, room: int, body: Any, status: int) -> None:
    """Bad content is refused and the message is unchanged."""
    message_id = _store(app, room, owner.uid or "", "original")
    answer = _patch(owner, message_id, body)
    assert answer.status_code == status and "error" in answer.json
    assert owner.get(f"/rooms/{room}/messages").json["messages"][0]["content"] == "original"


def test_edit_and_delete_permissions(
    app: Flask, owner: Visitor, other: Visitor, new_visitor: Callable[[], Visitor]
) -> None:
    """Only the author edits; the author or the room's owner deletes; others' private messages do not exist."""
    third = new_visitor()
    third.register()
    room = owner.create_room()
    mine = _store(app, room, other.uid or "", "other's message")
    private = _store(app, room, other.uid or "", "secret", to_id=owner.uid)
    assert _patch(owner, mine, {"content": "owner rewrites"}).status_code == 403
    assert _patch(third, private, {"content": "x"}).status_code == 404
    assert _delete(third, private).status_code == 404
    assert _delete(third, mine).status_code == 403
    assert _patch(other, 999, {"content": "x"}).status_code == 404
    assert _delete(other, 999).status_code == 404
    texts = [m.get("content") for m in owner.get(f"/rooms/{room}/messages").json["messages"]]
    assert texts == ["other's message", "secret"]
    # The owner deletes someone else's message: gone for everyone, content included.
    assert _delete(owner, mine).status_code == 502
    entry = other.get(f"/rooms/{room}/messages").json["messages"][0]
    assert entry == {"id": mine, "room_id": room, "deleted": True, "type": "all", "seq": 1, "rev": 1}
    with app.app_context():
        assert get_db().get(Message, mine).content == ""  # type: ignore[union-attr]
    # A deleted message can be neither edited nor deleted again.
    assert _patch(other, mine, {"content": "back"}).status_code == 404
    assert _delete(other, mine).status_code == 404


def test_images_cannot_be_edited(app: Flask, owner: Visitor, room: int) -> None:
    """PATCH of an image message is a 400."""
    with app.app_context():
        from web_app.models import Image, store_message

        db = get_db()
        image = Image(content_type="image/png", data=TINY_PNG)
        db.add(image)
        db.flush()
        message = Message(
            room_id=room, user_id=int(owner.uid or 0), type="all", kind="image", content="a.png", image_id=image.id
        )
        store_message(db, message)
        message_id = message.id
    assert _patch(owner, message_id, {"content": "b.png"}).status_code == 400


def test_changes_feed_lists_edits_and_deletes_in_change_order(
    app: Flask, owner: Visitor, other: Visitor, room: int
) -> None:
    """/changes?after=n gives every message changed after change n, oldest change first; without after, only rev."""
    a, b, c = (_store(app, room, owner.uid or "", text) for text in ("a", "b", "c"))
    secret = _store(app, room, owner.uid or "", "hush", to_id=other.uid)
    assert owner.get(f"/rooms/{room}/changes").json == {"rev": 0, "messages": []}
    _patch(owner, b, {"content": "b2"})
    _delete(owner, a)
    _patch(owner, b, {"content": "b3"})
    _patch(owner, secret, {"content": "hush2"})
    feed = owner.get(f"/rooms/{room}/changes?after=0").json
    assert feed["rev"] == 4
    assert [(m["id"], m["rev"]) for m in feed["messages"]] == [(a, 2), (b, 3), (secret, 4)]
    assert [(m["id"], m["rev"]) for m in owner.get(f"/rooms/{room}/changes?after=2").json["messages"]] == [
        (b, 3),
        (secret, 4),
    ]
    # Someone else's private change is not theirs to see.
    third_view = other.get(f"/rooms/{room}/changes?after=0").json["messages"]
    assert [m["id"] for m in third_view] == [a, b, secret]
    assert c not in [m["id"] for m in feed["messages"]]
    for bad in ("after=-1", "after=x", "limit=0", "limit=201"):
        answer = owner.get(f"/rooms/{room}/changes?{bad}")
        assert answer.status_code == 400 and "error" in answer.json


# -- moderation ---------------------------------------------------------------


@pytest.mark.parametrize("action", ["ban", "unban", "mute", "unmute"])
def test_moderation_bad_input(app: Flask, owner: Visitor, other: Visitor, room: int, action: str) -> None:
    """Only the owner may act, on someone else who exists, for a sane time; nothing is stored otherwise."""
    assert other.post(f"/rooms/{room}/{action}", {"uid": owner.uid}).status_code == 403
    for body, status in [({}, 400), ({"uid": "x"}, 400), ({"uid": 999}, 404), ({"uid": owner.uid}, 400)]:
        answer = owner.post(f"/rooms/{room}/{action}", body)
        assert answer.status_code == status and "error" in answer.json
    assert owner.post(f"/rooms/999/{action}", {"uid": other.uid}).status_code == 404
    if action in ("ban", "mute"):
        for minutes in (0, -5, "soon", 10**9):
            assert owner.post(f"/rooms/{room}/{action}", {"uid": other.uid, "minutes": minutes}).status_code == 400
    assert _count(app, Restriction) == 0


def test_ban_refuses_bind_say_typing_images_and_history_until_it_ends(
    app: Flask, owner: Visitor, other: Visitor, room: int
) -> None:
    """A banned member gets 403 on /bind, /say, /typing, images and history; once it ends they are back."""
    answer = owner.post(f"/rooms/{room}/ban", {"uid": other.uid, "minutes": 5})
    assert answer.status_code == 200 and answer.json["kind"] == "banned" and answer.json["until"]
    before = _count(app, Message)
    refused = [
        other.post("/bind", {"client_id": "abc", "room_id": room}),
        other.post("/say", {"room_id": room, "type": "all", "content": "let me in"}),
        other.post("/typing", {"room_id": room}),
        other.post(f"/rooms/{room}/images", data={"file": (io.BytesIO(TINY_PNG), "a.png")}),
        other.get(f"/rooms/{room}/messages"),
    ]
    for answer in refused:
        assert answer.status_code == 403 and "banned" in answer.json["error"], answer.json
    assert _count(app, Message) == before
    # Another room is not affected.
    elsewhere = owner.create_room()
    assert other.post("/typing", {"room_id": elsewhere}).status_code == 503
    # The ban ends (moved into the past here rather than waiting five minutes).
    with app.app_context():
        db = get_db()
        db.execute(update(Restriction).values(until=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert other.get(f"/rooms/{room}/messages").status_code == 200
    assert other.post("/say", {"room_id": room, "type": "all", "content": "back"}).status_code == 502


def test_mute_refuses_posting_only_and_unmute_lifts_it(app: Flask, owner: Visitor, other: Visitor, room: int) -> None:
    """A muted member reads history but /say, /typing and images answer 403; unmute lifts it."""
    assert owner.post(f"/rooms/{room}/mute", {"uid": other.uid}).json["until"] is None
    assert other.get(f"/rooms/{room}/messages").status_code == 200
    assert other.post("/say", {"room_id": room, "type": "all", "content": "hi"}).status_code == 403
    assert other.post("/typing", {"room_id": room}).status_code == 403
    # Bind is allowed (the push server being down here is the 503).
    assert other.post("/bind", {"client_id": "abc", "room_id": room}).status_code == 503
    assert owner.post(f"/rooms/{room}/unmute", {"uid": other.uid}).json["lifted"] is True
    assert _count(app, Restriction) == 0
    assert other.post("/say", {"room_id": room, "type": "all", "content": "hi"}).status_code == 502


def test_a_new_ban_replaces_the_last(app: Flask, owner: Visitor, other: Visitor, room: int) -> None:
    """Banning twice keeps one row: the latest terms."""
    owner.post(f"/rooms/{room}/ban", {"uid": other.uid, "minutes": 5})
    assert owner.post(f"/rooms/{room}/ban", {"uid": other.uid}).json["until"] is None
    assert _count(app, Restriction) == 1


def test_a_messages_table_from_before_edits_gets_its_columns(app: Flask, owner: Visitor, room: int) -> None:
    """A database made before edits existed gains edited_at, deleted and rev at the next start, messages kept."""
    from sqlalchemy import text

    from web_app.schema import create_tables

    message_id = _store(app, room, owner.uid or "", "old message")
    engine = app.extensions["webchat_db"].kw["bind"]
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_messages_room_rev"))
        for column in ("edited_at", "deleted", "rev"):
            conn.execute(text(f"ALTER TABLE messages DROP COLUMN {column}"))
    create_tables(engine)
    assert _patch(owner, message_id, {"content": "new message"}).status_code == 502
    [entry] = owner.get(f"/rooms/{room}/messages").json["messages"]
    assert (entry["content"], entry["rev"]) == ("new message", 1)
