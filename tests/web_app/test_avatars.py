"""Avatars: uploading a picture, serving it, and its URL carried on messages and member lists (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from flask import Flask
from sqlalchemy import event, func, select
from werkzeug.test import TestResponse

from web_app.models import Avatar, get_db

from .conftest import Visitor
from .live import TINY_PNG, Live, _png, make_app, receive_until

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

OTHER_PNG = _png(2, 2, (200, 30, 30))


def _upload(visitor: Visitor, data: bytes | None, filename: str = "me.png") -> TestResponse:
    form: dict[str, Any] = {}
    if data is not None:
        form["file"] = (io.BytesIO(data), filename)
    return visitor.post("/avatar", data=form, content_type="multipart/form-data")


def _say(visitor: Visitor, room_id: int, content: str) -> dict[str, Any]:
    answer = visitor.post("/say", {"room_id": room_id, "type": "all", "content": content})
    assert answer.status_code == 502, answer.json  # no push server: stored, not pushed
    return answer.json["message"]  # type: ignore[no-any-return]


def _avatars(app: Flask) -> int:
    with app.app_context():
        return get_db().scalar(select(func.count()).select_from(Avatar)) or 0


def test_uploaded_avatar_is_served_as_a_picture(member: Visitor) -> None:
    """POST /avatar stores the picture; its URL serves those bytes with the sniffed type and safe headers."""
    answer = _upload(member, TINY_PNG, filename="evil.html")
    assert answer.status_code == 200, answer.json
    url = answer.json["avatar"]
    assert url == f"/avatars/{member.uid}?v=1"
    picture = member.client.get(url)
    assert picture.status_code == 200
    assert picture.data == TINY_PNG
    assert picture.mimetype == "image/png"
    assert picture.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in picture.headers["Content-Security-Policy"]


def test_a_new_upload_replaces_the_picture_under_a_new_url(app: Flask, member: Visitor) -> None:
    """A second upload bumps the version in the URL (so caches see it) and serves the new bytes."""
    assert _upload(member, TINY_PNG).status_code == 200
    answer = _upload(member, OTHER_PNG)
    assert answer.json["avatar"] == f"/avatars/{member.uid}?v=2"
    assert member.client.get(answer.json["avatar"]).data == OTHER_PNG
    assert _avatars(app) == 1


def test_messages_carry_their_authors_avatar(new_visitor: Callable[[], Visitor]) -> None:
    """Messages of a user with a picture carry ``avatar`` (answer and history); others carry none."""
    alice, bob = new_visitor(), new_visitor()
    alice.register()
    bob.register()
    room_id = alice.create_room()
    url = _upload(alice, TINY_PNG).json["avatar"]
    said = _say(alice, room_id, "with a face")
    assert said["avatar"] == url
    plain = _say(bob, room_id, "initials for me")
    assert "avatar" not in plain
    history = bob.get(f"/rooms/{room_id}/messages").json["messages"]
    assert [m.get("avatar") for m in history] == [url, None]


def test_going_back_to_initials(app: Flask, member: Visitor) -> None:
    """DELETE /avatar removes the picture: its URL is gone and messages carry no avatar."""
    room_id = member.create_room()
    url = _upload(member, TINY_PNG).json["avatar"]
    answer = member.client.delete("/avatar", headers={"X-CSRFToken": member.csrf, "Accept": "application/json"})
    assert answer.status_code == 200 and answer.json == {"avatar": None}
    assert member.get(url).status_code == 404
    assert "avatar" not in _say(member, room_id, "plain again")
    assert _avatars(app) == 0


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (None, 400),
        (b"", 400),
        (b"<html><script>alert(1)</script></html>", 415),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 415),
        (b"GIF8" + b"\x00" * 20, 415),
    ],
)
def test_bad_avatar_upload_is_refused(app: Flask, member: Visitor, data: bytes | None, status: int) -> None:
    """A missing, empty or non-image upload gets its 4xx JSON error and changes nothing."""
    answer = _upload(member, data)
    assert answer.status_code == status
    assert isinstance(answer.json["error"], str) and answer.json["error"]
    assert _avatars(app) == 0


def test_oversized_avatar_is_refused_stating_the_limit(instance: Path, db_url: str | None) -> None:
    """An avatar over MAX_AVATAR_BYTES gets 413 naming the limit, and the earlier picture stays."""
    app = make_app(instance, db_url, MAX_AVATAR_BYTES=2048, PUSH_SECRET="x", PUSH_API_URL="http://127.0.0.1:9")
    caller = Visitor(app.test_client())
    caller.register()
    url = _upload(caller, TINY_PNG).json["avatar"]
    answer = _upload(caller, TINY_PNG + b"\x00" * 2048)
    assert answer.status_code == 413
    assert "2 KiB" in answer.json["error"]
    assert caller.client.get(url).data == TINY_PNG


def test_avatars_need_a_login(visitor: Visitor, member: Visitor) -> None:
    """Anonymous callers can neither upload nor fetch a picture."""
    url = _upload(member, TINY_PNG).json["avatar"]
    assert visitor.get(url).status_code == 401
    assert _upload(visitor, TINY_PNG).status_code == 401
    assert member.get("/avatars/999999").status_code == 404


def test_history_with_avatars_costs_no_query_per_message(app: Flask, new_visitor: Callable[[], Visitor]) -> None:
    """A page of history from several users with pictures is read with the same few queries as one message."""
    users = [new_visitor() for _ in range(3)]
    for user in users:
        user.register()
        _upload(user, TINY_PNG)
    room_id = users[0].create_room()
    _say(users[0], room_id, "first")
    engine = app.extensions["webchat_db"].kw["bind"]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        users[0].get(f"/rooms/{room_id}/messages")
        few = len(statements)
        for i in range(12):
            _say(users[i % 3], room_id, f"m{i}")
        statements.clear()
        history = users[0].get(f"/rooms/{room_id}/messages").json["messages"]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(history) == 13 and all(m["avatar"] for m in history)
    assert len(statements) == few


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session for the test's WebSockets."""
    async with aiohttp.ClientSession() as http:
        yield http


async def test_member_list_carries_avatars(live: Live, session: aiohttp.ClientSession) -> None:
    """/bind's answer and the pushed ``flush`` frame carry ``avatars``: {uid: url} for members with a picture."""
    alice, bob = live.user("alice"), live.user("bob")
    answer = await asyncio.to_thread(alice.post, "/avatar", None, files={"file": ("a.png", TINY_PNG, "image/png")})
    assert answer.status_code == 200, answer.text
    url = answer.json()["avatar"]
    room_id = await asyncio.to_thread(alice.create_room, "faces")
    alice_ws, _ = await alice.connect(session, live.push.ws_url, room_id)
    ws = await session.ws_connect(live.push.ws_url)
    init = await ws.receive_json(timeout=5)
    bound = await asyncio.to_thread(bob.bind, init["client_id"], room_id)
    assert bound.json()["avatars"] == {alice.uid: url}
    frame = await receive_until(alice_ws, lambda f: f.get("type") == "flush" and bob.uid in f["users_list"])
    assert frame["avatars"] == {alice.uid: url}
    assert frame["users_list"] == {alice.uid: "alice", bob.uid: "bob"}
