"""What the app stores and gives back, on SQLite and PostgreSQL alike.

The app here has no push server (its API URL is a closed port), so every
message is stored and then fails to push: the answer says so with a 502, and
the message is in history all the same.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Visitor
from .live import TINY_PNG

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _say(visitor: Visitor, room_id: int, content: str, to_uid: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"room_id": room_id, "type": "to" if to_uid else "all", "content": content}
    if to_uid:
        body["to_uid"] = to_uid
    answer = visitor.post("/say", body)
    assert answer.status_code == 502, answer.json
    assert answer.json["stored"] is True
    return answer.json["message"]  # type: ignore[no-any-return]


def _history(visitor: Visitor, room_id: int, query: str = "") -> list[dict[str, Any]]:
    answer = visitor.get(f"/rooms/{room_id}/messages{query}")
    assert answer.status_code == 200, answer.json
    return answer.json["messages"]  # type: ignore[no-any-return]


def test_failed_push_is_logged_reported_and_the_message_kept(member: Visitor, caplog: pytest.LogCaptureFixture) -> None:
    """A message whose push fails is still stored, the failure is logged, and the caller gets a 502 saying so."""
    room_id = member.create_room()
    with caplog.at_level(logging.ERROR, logger="web_app.chat"):
        message = _say(member, room_id, "still here")
    assert any("stored but not pushed" in record.getMessage() for record in caplog.records)
    assert _history(member, room_id) == [message]


def test_message_has_the_spec_shape(member: Visitor) -> None:
    """A stored message has exactly SPEC §5's fields, with text kept as it was sent."""
    room_id = member.create_room()
    content = "héllo <b>&amp;</b> 👋\nsecond line"
    message = _say(member, room_id, content)
    assert set(message) == {"type", "id", "room_id", "uid", "uname", "content", "created_at", "seq"}
    assert message["type"] == "all"
    assert message["room_id"] == room_id
    assert message["uid"] == member.uid
    assert message["content"] == content
    assert ISO_UTC.fullmatch(message["created_at"])


def test_content_of_exactly_4000_characters_is_accepted(member: Visitor) -> None:
    """4000 characters is the limit, inclusive."""
    room_id = member.create_room()
    assert _say(member, room_id, "é" * 4000)["content"] == "é" * 4000


def test_history_is_oldest_first_with_after_and_limit(member: Visitor) -> None:
    """History lists oldest first; ``after`` pages forward; without it the latest ``limit`` are given."""
    room_id = member.create_room()
    ids = [_say(member, room_id, f"m{i}")["id"] for i in range(5)]
    assert [m["id"] for m in _history(member, room_id)] == ids
    assert [m["id"] for m in _history(member, room_id, f"?after={ids[1]}")] == ids[2:]
    assert [m["id"] for m in _history(member, room_id, f"?after={ids[0]}&limit=2")] == ids[1:3]
    assert [m["id"] for m in _history(member, room_id, "?limit=2")] == ids[3:]
    assert _history(member, room_id, f"?after={ids[-1]}") == []


def test_history_is_per_room(member: Visitor) -> None:
    """A room's history holds only its own messages."""
    first, second = member.create_room(), member.create_room()
    _say(member, first, "in first")
    assert _history(member, second) == []


def test_private_messages_only_for_their_two_parties(new_visitor: Callable[[], Visitor]) -> None:
    """A private message is in the history of its sender and recipient only."""
    alice, bob, eve = new_visitor(), new_visitor(), new_visitor()
    for person in (alice, bob, eve):
        person.register()
    room_id = alice.create_room()
    public = _say(alice, room_id, "hello all")
    private = _say(alice, room_id, "psst bob", to_uid=bob.uid)
    assert private["type"] == "to" and private["to_uid"] == bob.uid
    assert _history(alice, room_id) == [public, private]
    assert _history(bob, room_id) == [public, private]
    assert _history(eve, room_id) == [public]


def _upload(visitor: Visitor, room_id: int, data: bytes, **fields: str) -> Any:
    form: dict[str, Any] = {"file": (io.BytesIO(data), "cat <pic>.png"), **fields}
    return visitor.post(f"/rooms/{room_id}/images", data=form, content_type="multipart/form-data")


def test_image_is_stored_as_a_message_and_served_safely(member: Visitor) -> None:
    """An uploaded image becomes an ``image`` message whose URL serves the bytes with safe headers."""
    room_id = member.create_room()
    answer = _upload(member, room_id, TINY_PNG)
    assert answer.status_code == 502 and answer.json["stored"] is True
    message = answer.json["message"]
    assert message["kind"] == "image"
    assert message["content"] == "cat <pic>.png"
    assert _history(member, room_id) == [message]
    image = member.client.get(message["url"])
    assert image.status_code == 200
    assert image.data == TINY_PNG
    assert image.headers["Content-Type"] == "image/png"
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    assert re.fullmatch(r'inline; filename="image-\d+\.png"', image.headers["Content-Disposition"])
    assert "sandbox" in image.headers["Content-Security-Policy"]


def test_image_type_comes_from_the_bytes_not_the_name(member: Visitor) -> None:
    """A JPEG uploaded as "x.png" with a PNG content type is served as image/jpeg."""
    room_id = member.create_room()
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
    form = {"file": (io.BytesIO(jpeg), "x.png", "image/png")}
    answer = member.post(f"/rooms/{room_id}/images", data=form, content_type="multipart/form-data")
    assert answer.status_code == 502
    assert member.client.get(answer.json["message"]["url"]).headers["Content-Type"] == "image/jpeg"


def test_private_image_is_hidden_from_others(new_visitor: Callable[[], Visitor]) -> None:
    """A private image is served to its two parties and is a 404 to anyone else."""
    alice, bob, eve = new_visitor(), new_visitor(), new_visitor()
    for person in (alice, bob, eve):
        person.register()
    room_id = alice.create_room()
    answer = _upload(alice, room_id, TINY_PNG, type="to", to_uid=bob.uid or "")
    url = answer.json["message"]["url"]
    assert alice.client.get(url).status_code == 200
    assert bob.client.get(url).status_code == 200
    assert eve.get(url).status_code == 404
    assert _history(eve, room_id) == []


def test_rooms_are_listed_and_unique(member: Visitor) -> None:
    """Created rooms are listed in the lobby JSON (online unknown without a push server); names are unique."""
    room_id = member.create_room("Général")
    answer = member.get("/rooms")
    assert {"id": room_id, "name": "Général", "online": None, "unread": 0} in answer.json["rooms"]
    assert member.post("/rooms", {"name": "Général"}).status_code == 409
